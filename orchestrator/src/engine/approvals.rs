//! People in the loop: approving and rejecting waiting intents, and judging detections.

use std::{collections::BTreeMap, time::SystemTime};

use parapet_model::{IntentId, Outcome};
use parapet_policy::rules::Suppression;

use super::{Engine, Error, Result};
use crate::lifecycle::{IntentEvent, IntentRecord, State, Verdict};

/// True and false positives of one detection × action kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Precision {
    pub true_positives: u32,
    pub false_positives: u32,
}

impl Engine {
    /// Intents waiting for a person, oldest first.
    pub fn pending(&self) -> Result<Vec<IntentRecord>> {
        Ok(self.inner.state.waiting()?)
    }

    /// How many intents wait for a person, and since when the oldest of them has.
    pub fn pending_summary(&self) -> Result<(u64, Option<std::time::SystemTime>)> {
        let index = &self.inner.state;
        let count = index
            .tally()?
            .iter()
            .filter(|((state, _), _)| *state == State::AwaitingApproval)
            .map(|(_, n)| n)
            .sum();
        let oldest = index.oldest_waiting()?.map(|r| r.intent.received_at);
        Ok((count, oldest))
    }

    /// The counts of one source's intents alone: waiting, since when the oldest has, and
    /// active by action kind. Reads every live record (for a detector's status only).
    pub fn summary_of(
        &self,
        source: &str,
    ) -> Result<(
        u64,
        Option<std::time::SystemTime>,
        std::collections::BTreeMap<String, u64>,
    )> {
        let (mut waiting, mut oldest) = (0, None::<std::time::SystemTime>);
        let mut active = std::collections::BTreeMap::new();
        for record in self.inner.state.live_records() {
            let record = record?;
            if record.intent.source != source {
                continue;
            }
            match record.state {
                State::AwaitingApproval => {
                    waiting += 1;
                    let at = record.intent.received_at;
                    oldest = Some(oldest.map_or(at, |o| o.min(at)));
                }
                State::Active => {
                    if let Some(step) = record.intent.steps.first() {
                        *active.entry(step.kind.to_string()).or_insert(0) += 1;
                    }
                }
                _ => {}
            }
        }
        Ok((waiting, oldest, active))
    }

    /// Approves a waiting intent. The guardrails are checked again now, with the approval
    /// satisfying whatever asked for one; if something now refuses (a budget filled, the kill
    /// switch), the intent keeps waiting and the refusal is returned.
    pub async fn approve(&self, id: IntentId, by: &str, reason: &str) -> Result<IntentRecord> {
        let _guard = self.inner.locks.lock(id).await;
        let record = self.waiting(id)?;
        if self.policy().approvals.four_eyes && record.intent.source == by {
            return Err(Error::Forbidden(format!(
                "four-eyes: `{by}` submitted intent {id} and may not approve it"
            )));
        }
        let (decision, seen) = self.decide(&record.intent, self.now(), true);
        if decision.outcome != Outcome::Execute {
            return Err(Error::Refused(decision));
        }
        let approved = IntentEvent::Approved {
            by: by.to_owned(),
            reason: reason.to_owned(),
            decision,
            seen,
        };
        let record = match self.inner.store.append(id, by, vec![approved]).await {
            Ok(a) => a.record,
            Err(e) => {
                self.inner.guards.lock().allowance.ledger.release(id);
                return Err(e.into());
            }
        };
        let engine = self.clone();
        self.spawn(async move { engine.execute(id).await });
        Ok(record)
    }

    /// Rejects a waiting intent; it never acts.
    pub async fn reject(&self, id: IntentId, by: &str, reason: &str) -> Result<IntentRecord> {
        let _guard = self.inner.locks.lock(id).await;
        self.waiting(id)?;
        let rejected = IntentEvent::Rejected {
            by: by.to_owned(),
            reason: reason.to_owned(),
        };
        Ok(self
            .inner
            .store
            .append(id, by, vec![rejected])
            .await?
            .record)
    }

    fn waiting(&self, id: IntentId) -> Result<IntentRecord> {
        let record = self.record(id)?;
        if record.state != State::AwaitingApproval {
            return Err(Error::FailedPrecondition(format!(
                "intent {id} is `{}`, not awaiting approval",
                record.state.as_str()
            )));
        }
        Ok(record)
    }

    /// Records a person's verdict on an intent. A false positive rolls the intent back if it
    /// is still in force and suppresses its detection on its targets for the policy's time, so
    /// the next detection of the same thing does not act again; the suppression survives
    /// restarts.
    pub async fn judge(
        &self,
        id: IntentId,
        by: &str,
        verdict: Verdict,
        note: &str,
    ) -> Result<IntentRecord> {
        let record = self.record(id)?;
        let suppress_until = (verdict == Verdict::FalsePositive)
            .then(|| self.now() + self.policy().verdicts.suppress_for.0);
        let judged = IntentEvent::Judged {
            by: by.to_owned(),
            verdict,
            note: note.to_owned(),
            suppress_until,
        };
        let record = match self.inner.store.append(id, by, vec![judged]).await {
            Ok(a) => a.record,
            Err(crate::journal::AppendError::Invalid(_)) => {
                return Err(Error::FailedPrecondition(format!(
                    "intent {id} is `{}` and cannot be judged yet",
                    record.state.as_str()
                )));
            }
            Err(e) => return Err(e.into()),
        };
        if let Some(until) = suppress_until {
            let mut g = self.inner.guards.lock();
            for step in &record.intent.steps {
                g.suppressions.insert(
                    &record.intent.detection.rule_id,
                    step,
                    Suppression {
                        until,
                        by: by.to_owned(),
                    },
                );
            }
        }
        // every verdict changes the share, a true positive as much as a false one
        self.consider_demotion(&record.intent.detection.rule_id, self.now())
            .await?;
        if verdict == Verdict::FalsePositive
            && matches!(
                record.state,
                State::Active | State::RollbackFailed | State::Decided | State::Executing
            )
        {
            let reason = if note.is_empty() {
                "false positive".to_owned()
            } else {
                format!("false positive: {note}")
            };
            let cause = crate::lifecycle::RollbackCause::Verdict;
            return Ok(self
                .rollback_because(id, by, &reason, true, cause)
                .await?
                .record);
        }
        Ok(record)
    }

    /// Demotes a detection whose false positives passed the policy's share of its verdicts in
    /// the window (the last `demote_window` up to `as_of`, and only verdicts after its last
    /// restoration), unless it is demoted already. If the rule does not hold, it can come to
    /// hold by time alone only when a true positive leaves the window: the timer checks again
    /// then, as of that moment.
    pub(super) async fn consider_demotion(&self, rule: &str, as_of: SystemTime) -> Result<()> {
        let policy = self.policy();
        let v = &policy.verdicts;
        let Some(limit) = v.demote_above else {
            return Ok(());
        };
        if self.inner.guards.lock().demoted.contains(rule) {
            return Ok(());
        }
        let index = &self.inner.state;
        let window_start = as_of
            .checked_sub(v.demote_window.0)
            .unwrap_or(std::time::SystemTime::UNIX_EPOCH);
        let since = match index.restored_at(rule)? {
            Some(restored) => restored.max(window_start),
            None => window_start,
        };
        let counted: Vec<_> = index
            .judgements_of(rule)?
            .into_iter()
            .filter(|j| j.at > since && j.at <= as_of)
            .collect();
        let all = counted.len() as u32;
        let false_positives = counted
            .iter()
            .filter(|j| j.verdict == Verdict::FalsePositive)
            .count() as u32;
        // at least the minimum of verdicts, and more than the limit of them false
        if all > 0
            && all >= v.demote_min_verdicts
            && f64::from(false_positives) / f64::from(all) > limit
        {
            let reason = format!(
                "{false_positives} of {all} verdicts in the last {} were false positives",
                v.demote_window.1
            );
            tracing::warn!(%rule, %reason, "demoting a detection to approval");
            return self
                .set_demoted(rule, true, super::SYSTEM_ACTOR, &reason)
                .await;
        }
        // the first true positive to leave may tip the share
        if let Some(leaves) = counted
            .iter()
            .filter(|j| j.verdict == Verdict::TruePositive && j.at > window_start)
            .map(|j| j.at + v.demote_window.0)
            .min()
        {
            self.schedule_demotion_check(leaves, rule);
        }
        Ok(())
    }

    /// True and false positives per detection × action kind, from the latest verdict on each
    /// intent (shadowed ones included).
    pub fn precision(&self) -> Result<BTreeMap<(String, String), Precision>> {
        let mut out: BTreeMap<(String, String), Precision> = BTreeMap::new();
        for (rule, judged) in self.inner.state.judgements()? {
            for kind in judged.kinds {
                let p = out.entry((rule.clone(), kind)).or_default();
                match judged.verdict {
                    Verdict::TruePositive => p.true_positives += 1,
                    Verdict::FalsePositive => p.false_positives += 1,
                }
            }
        }
        Ok(out)
    }
}
