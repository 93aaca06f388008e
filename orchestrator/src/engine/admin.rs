//! What operators and admins change about Parapet itself: kill switches and the policy.

use std::{sync::Arc, time::SystemTime};

use parapet_model::ActionKind;
use parapet_policy::{Ledger, Policy, Usage, rules::Budget};

use super::{Engine, Error, Result, guards};
use crate::{
    journal::{Entry, Query},
    lifecycle::{Event, IntentRecord, State},
};

/// An engaged kill switch and the journal entry that engaged it.
#[derive(Debug, Clone)]
pub struct KillSwitch {
    /// `None` for the global switch.
    pub kind: Option<ActionKind>,
    pub engaged_by: Entry,
}

/// What `parapet status` shows.
#[derive(Debug, Clone)]
pub struct Status {
    pub policy: Arc<Policy>,
    pub kill_switches: Vec<KillSwitch>,
    /// One row per budget and scope value in use; a budget nothing uses has one row of zeros.
    pub budgets: Vec<BudgetRow>,
}

/// A budget's usage in one scope.
#[derive(Debug, Clone)]
pub struct BudgetRow {
    pub budget: Budget,
    pub scope_value: String,
    pub active: u32,
    /// Units taken within the budget's window, if it has one.
    pub used_in_window: Option<u32>,
    /// The active limit its percentage gives with the fleet size, if both are known.
    pub max_from_percent: Option<u64>,
}

impl Engine {
    /// Engages or releases a kill switch, journaled with who and why. Engaging stops new
    /// executions at once; rollbacks still run. Releasing also forgets the circuit breaker's
    /// tally for the kind, so it starts afresh.
    pub async fn set_kill_switch(
        &self,
        kind: Option<ActionKind>,
        engaged: bool,
        actor: &str,
        reason: &str,
    ) -> Result<Vec<KillSwitch>> {
        let _admin = self.inner.admin.lock().await;
        let event = Event::KillSwitch {
            kind: kind.clone(),
            engaged,
            reason: reason.to_owned(),
        };
        self.inner.journal.append_system(actor, event).await?;
        {
            let mut g = self.inner.guards.lock();
            match &kind {
                None => g.kill_switches.global = engaged,
                Some(k) if engaged => {
                    g.kill_switches.kinds.insert(k.clone());
                }
                Some(k) => {
                    g.kill_switches.kinds.remove(k);
                    g.calls.remove(k);
                }
            }
        }
        self.kill_switches()
    }

    /// Demotes a detection's `auto` tiers to `approval`, or restores them; journaled.
    pub async fn set_demoted(
        &self,
        rule: &str,
        demoted: bool,
        actor: &str,
        reason: &str,
    ) -> Result<()> {
        let _admin = self.inner.admin.lock().await;
        // a detection the policy does not know can only be let go of (it may have left the
        // inventory while demoted), never demoted: that would journal a name nobody uses
        let known = self.policy().detections.contains_key(rule)
            || self.inner.guards.lock().demoted.contains(rule);
        if !known {
            return Err(Error::Invalid(parapet_model::Invalid::new(
                "detection",
                format!(
                    "`{}` is not a detection of the policy's inventory, nor demoted",
                    parapet_model::intent::clip(rule)
                ),
            )));
        }
        let event = Event::DetectionDemoted {
            rule: rule.to_owned(),
            demoted,
            reason: reason.to_owned(),
        };
        self.inner.journal.append_system(actor, event).await?;
        let mut g = self.inner.guards.lock();
        if demoted {
            g.demoted.insert(rule.to_owned());
        } else {
            g.demoted.remove(rule);
        }
        Ok(())
    }

    /// Detections demoted to approval.
    pub fn demoted(&self) -> Vec<String> {
        self.inner.guards.lock().demoted.iter().cloned().collect()
    }

    pub fn kill_switches(&self) -> Result<Vec<KillSwitch>> {
        Ok(self
            .inner
            .journal
            .index()
            .kill_switches()?
            .into_iter()
            .map(|(kind, engaged_by)| KillSwitch { kind, engaged_by })
            .collect())
    }

    pub fn status(&self) -> Result<Status> {
        let policy = self.policy();
        let now = self.now();
        let usage: Vec<Usage> = self.inner.guards.lock().ledger.usage();
        let mut budgets = Vec::new();
        for budget in &policy.budgets {
            let mut rows: Vec<(String, u32, Vec<SystemTime>)> = usage
                .iter()
                .filter(|u| u.budget == budget.name)
                .map(|u| (u.scope.clone(), u.active, u.taken.clone()))
                .collect();
            if rows.is_empty() {
                rows.push((String::new(), 0, Vec::new()));
            }
            for (scope_value, active, taken) in rows {
                let used_in_window = budget.window.as_ref().map(|w| {
                    let since = now.checked_sub(w.0).unwrap_or(SystemTime::UNIX_EPOCH);
                    taken.iter().filter(|t| **t >= since).count() as u32
                });
                let max_from_percent = budget.max_active_percent.and_then(|pct| {
                    let size = policy.fleet.size(&budget.scope, &scope_value)?;
                    Some((pct / 100.0 * size as f64).floor() as u64)
                });
                budgets.push(BudgetRow {
                    budget: budget.clone(),
                    scope_value,
                    active,
                    used_in_window,
                    max_from_percent,
                });
            }
        }
        Ok(Status {
            policy,
            kill_switches: self.kill_switches()?,
            budgets,
        })
    }

    /// Reads the policy file again. A valid policy applies to intents decided from now on; an
    /// invalid one is refused and the one in effect stays. Both are journaled.
    pub async fn reload_policy(&self, actor: &str) -> Result<(String, String)> {
        let _admin = self.inner.admin.lock().await;
        let Some(path) = self.inner.config.policy_path.clone() else {
            return Err(Error::FailedPrecondition(
                "Parapet runs on the built-in example policy; start it with --policy to reload one"
                    .into(),
            ));
        };
        let origin = path.display().to_string();
        let loaded = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read `{origin}`: {e}"))
            .and_then(|text| Policy::from_toml(&text).map_err(|e| format!("{origin}: {e}")))
            .and_then(|p| {
                p.check_adapters(|k, route| self.inner.registry.resolve(k, route).map(drop))
                    .map(|()| p)
                    .map_err(|e| format!("{origin}: {e}"))
            });
        let policy = match loaded {
            Ok(p) => p,
            Err(error) => {
                let refused = Event::PolicyRefused {
                    origin,
                    error: error.clone(),
                };
                self.inner.journal.append_system(actor, refused).await?;
                return Err(Error::FailedPrecondition(format!(
                    "policy refused, the previous one stays: {error}"
                )));
            }
        };
        let previous = self.policy().digest().to_owned();
        let policy = policy.with_own_addresses(self.policy().own.clone());
        let event = Event::PolicyLoaded {
            digest: policy.digest().to_owned(),
            origin,
        };
        self.inner.journal.append_system(actor, event).await?;
        let policy = Arc::new(policy);
        *self.inner.policy.write() = policy.clone();
        self.restore_guards(&policy, |_| {})?;
        tracing::info!(digest = policy.digest(), "policy reloaded");
        Ok((previous, policy.digest().to_owned()))
    }

    /// Rebuilds the guardrails' state from the journal: kill switches, rate limiters, and
    /// budget usage (active holders, and what was taken within the longest budget window).
    /// Units count from when the intent was decided, as they did when it was.
    /// Never reset by a restart: what the journal says was used stays used. `each` sees every
    /// live intent's record as it is read, one at a time (start-up resumes them); returns how
    /// many there were.
    pub(super) fn restore_guards(
        &self,
        policy: &Policy,
        mut each: impl FnMut(&IntentRecord),
    ) -> Result<usize> {
        let index = self.inner.journal.index();
        let now = self.now();
        let mut ledger = Ledger::default();
        let mut live = std::collections::HashSet::new();
        for r in index.live_records() {
            let r = r?;
            let holds = matches!(
                r.state,
                State::Decided
                    | State::Executing
                    | State::Active
                    | State::Expiring
                    | State::RollingBack
            );
            if holds {
                let at = r.intent.received_at;
                let until = r.expires_at.or_else(|| r.intent.ttl.map(|t| at + t));
                ledger.reserve(r.intent.id, at, until, &policy.claims(&r.intent.steps));
            }
            live.insert(r.intent.id);
            each(&r);
        }
        let window = policy.longest_window();
        if !window.is_zero() {
            let since = now.checked_sub(window).unwrap_or(SystemTime::UNIX_EPOCH);
            let q = Query {
                since: Some(since),
                limit: usize::MAX,
                ..Query::default()
            };
            for entry in index.query(&q)? {
                let (Some(id), Event::Decided { decision, .. }) = (entry.intent_id, &entry.event)
                else {
                    continue;
                };
                if decision.outcome != parapet_model::Outcome::Execute || live.contains(&id) {
                    continue;
                }
                if let Some(r) = index.record(id)? {
                    ledger.record_taken(r.intent.received_at, &policy.claims(&r.intent.steps));
                }
            }
            ledger.prune(since);
        }
        let mut kill_switches = parapet_policy::KillSwitches::default();
        for (kind, _) in index.kill_switches()? {
            match kind {
                None => kill_switches.global = true,
                Some(k) => {
                    kill_switches.kinds.insert(k);
                }
            }
        }
        let mut suppressions = parapet_policy::rules::Suppressions::default();
        for s in index.suppressions()? {
            if s.until > now {
                let until = parapet_policy::rules::Suppression {
                    until: s.until,
                    by: s.by,
                };
                suppressions.insert_target(&s.rule, &s.target_kind, &s.target_id, until);
            }
        }
        let demoted = index.demoted()?.into_iter().collect();
        let mut g = self.inner.guards.lock();
        g.demoted = demoted;
        g.ledger = ledger;
        g.kill_switches = kill_switches;
        g.suppressions = suppressions;
        g.limiters = guards::limiters(policy, &self.inner.clock);
        Ok(live.len())
    }
}
