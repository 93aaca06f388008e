//! Undoing on request and on expiry, and the durable TTL timer.

use std::{collections::BTreeSet, time::SystemTime};

use parapet_model::IntentId;
use tokio::sync::mpsc;

use super::{Engine, Error, Result, SYSTEM_ACTOR};
use crate::lifecycle::{IntentEvent, IntentRecord, RollbackCause, State};

/// What the timer wakes for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Deadline {
    /// An intent's TTL, or a waiting intent's escalation or timeout.
    Intent(IntentId),
    /// A verdict leaves a detection's demotion window.
    Demotion(String),
}

/// How soon an expiry the journal could not take is tried again.
const EXPIRY_RETRY: std::time::Duration = std::time::Duration::from_secs(5);

/// The answer to a rollback request.
#[derive(Debug, Clone)]
pub struct RolledBack {
    pub record: IntentRecord,
    /// Nothing was left to undo (already rolled back, never acted, or rolling back already).
    pub noop: bool,
}

impl Engine {
    /// Rolls back an intent's actions, last first. Journaled with who asked and why before
    /// anything is undone. Idempotent: a repeat, or a rollback of an intent that never acted,
    /// changes nothing. Runs in the background unless `wait` is set.
    pub async fn rollback(
        &self,
        id: IntentId,
        actor: &str,
        reason: &str,
        wait: bool,
    ) -> Result<RolledBack> {
        self.rollback_because(id, actor, reason, wait, RollbackCause::Operator)
            .await
    }

    /// As [`Engine::rollback`], journaling `cause` as the reason it started.
    pub(super) async fn rollback_because(
        &self,
        id: IntentId,
        actor: &str,
        reason: &str,
        wait: bool,
        cause: RollbackCause,
    ) -> Result<RolledBack> {
        // Let an execution or expiry in progress finish first; then the state is settled.
        self.wait_settled(id).await?;
        let guard = self.inner.locks.lock(id).await;
        let record = self.record(id)?;
        match record.state {
            State::Active | State::RollbackFailed => {}
            State::AwaitingApproval => {
                return Err(Error::FailedPrecondition(format!(
                    "intent {id} is awaiting approval and has not acted: nothing to roll back"
                )));
            }
            _ => {
                drop(guard);
                return Ok(RolledBack { record, noop: true });
            }
        }
        let started = IntentEvent::RollbackStarted {
            cause,
            reason: reason.to_owned(),
        };
        let record = self
            .inner
            .store
            .append(id, actor, vec![started])
            .await?
            .record;
        let engine = self.clone();
        let work = async move {
            let _guard = guard;
            if let Err(e) = engine.undo(id, record).await {
                tracing::error!(intent = %id, error = %e, "rollback stopped; it resumes on restart");
            }
        };
        if wait {
            work.await;
            return Ok(RolledBack {
                record: self.record(id)?,
                noop: false,
            });
        }
        let record = self.record(id)?;
        self.spawn(work);
        Ok(RolledBack {
            record,
            noop: false,
        })
    }

    /// Rolls back an intent whose TTL has passed, unless it was extended or already undone;
    /// rejects one that waited too long for approval.
    async fn expire(&self, id: IntentId) {
        // another holder of the store may be expiring it (replicas): then it is theirs
        let work = format!("intent {id}");
        let ttl = self.inner.config.adapter_timeout.saturating_mul(4);
        let Some(lease) = self.inner.leases.claim(&work, &self.inner.holder, ttl) else {
            tracing::debug!(intent = %id, "its deadline is another holder's to handle");
            return;
        };
        self.expire_held(id).await;
        self.inner.leases.release(&lease);
    }

    /// As `expire`, with the intent's lease held.
    async fn expire_held(&self, id: IntentId) {
        let _guard = self.inner.locks.lock(id).await;
        let Ok(record) = self.record(id) else { return };
        if record.state == State::AwaitingApproval {
            if let Err(e) = self.chase(record).await {
                tracing::error!(intent = %id, error = %e, "could not escalate or reject a waiting intent");
            }
            return;
        }
        let due = record.expires_at.is_some_and(|at| at <= self.now());
        if record.state != State::Active || !due {
            return;
        }
        let ttl = record.intent.ttl.map(humantime::format_duration);
        let started = IntentEvent::RollbackStarted {
            cause: RollbackCause::Ttl,
            reason: format!(
                "ttl of {} passed",
                ttl.map(|t| t.to_string()).unwrap_or_default()
            ),
        };
        let result = match self
            .inner
            .store
            .append(id, SYSTEM_ACTOR, vec![started])
            .await
        {
            Ok(appended) => self.undo(id, appended.record).await.map(drop),
            Err(e @ crate::journal::AppendError::Unavailable(_)) => {
                // nothing started (a disk full, say): try again until the journal takes it
                tracing::warn!(intent = %id, error = %e, "expiry could not be journaled; trying again in {EXPIRY_RETRY:?}");
                self.schedule(self.now() + EXPIRY_RETRY, id);
                return;
            }
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::error!(intent = %id, error = %e, "expiry stopped; it resumes on restart");
        }
    }

    /// A waiting intent's deadlines: rejected after the timeout; before that, escalated to the
    /// next group of approvers each time its severity's time passes, with the webhook told.
    async fn chase(&self, record: IntentRecord) -> Result<(), crate::journal::AppendError> {
        let id = record.intent.id;
        let policy = self.policy();
        let approvals = &policy.approvals;
        let now = self.now();
        if record.intent.received_at + approvals.timeout.0 <= now {
            let rejected = IntentEvent::Rejected {
                by: SYSTEM_ACTOR.into(),
                reason: format!("no answer within {}", approvals.timeout.1),
            };
            return self
                .inner
                .store
                .append(id, SYSTEM_ACTOR, vec![rejected])
                .await
                .map(drop);
        }
        let (severity, since) = (record.intent.detection.severity, record.intent.received_at);
        let level = record.escalation + 1;
        let Some(due) = approvals.escalation_due(severity, since, level) else {
            return Ok(());
        };
        if due > now {
            return Ok(());
        }
        let group = approvals.groups[level as usize].clone();
        let escalated = IntentEvent::Escalated {
            level,
            group: group.clone(),
        };
        let record = self
            .inner
            .store
            .append(id, SYSTEM_ACTOR, vec![escalated])
            .await?
            .record;
        if let Some(next) = approvals.escalation_due(severity, since, level + 1) {
            self.schedule(next, id);
        }
        if let Some(url) = self.inner.config.approvals_webhook.clone() {
            let body = serde_json::json!({
                "event": "approval_escalated",
                "intent_id": id.to_string(),
                "group": group,
                "level": level,
                "detection": record.intent.detection.rule_id,
                "severity": severity.as_str(),
                "steps": record.intent.steps.iter().map(|s| format!("{} {}:{}", s.kind, s.target.kind, s.target.id)).collect::<Vec<_>>(),
                "waiting_since": humantime::format_rfc3339_seconds(since).to_string(),
            });
            self.spawn(async move { notify(&url, body).await });
        }
        Ok(())
    }

    /// Arms the deadlines of an intent that waits for approval.
    pub(super) fn schedule_waiting(&self, record: &IntentRecord) {
        for at in self.waiting_deadlines(record) {
            self.schedule(at, record.intent.id);
        }
    }

    /// When a waiting intent times out, and when it is next escalated, if it will be.
    pub(super) fn waiting_deadlines(&self, record: &IntentRecord) -> Vec<SystemTime> {
        let approvals = &self.policy().approvals;
        let since = record.intent.received_at;
        let escalation = approvals.escalation_due(
            record.intent.detection.severity,
            since,
            record.escalation + 1,
        );
        std::iter::once(since + approvals.timeout.0)
            .chain(escalation)
            .collect()
    }

    /// Asks the timer to expire `id` at `at`. Deadlines are not stored here: they live in the
    /// intent's record, so a restart finds them again.
    pub(super) fn schedule(&self, at: SystemTime, id: IntentId) {
        let _ = self.inner.timers.send((at, Deadline::Intent(id)));
    }

    /// Asks the timer to evaluate `rule`'s demotion again at `at`, when a verdict leaves the
    /// window.
    pub(super) fn schedule_demotion_check(&self, at: SystemTime, rule: &str) {
        let _ = self
            .inner
            .timers
            .send((at, Deadline::Demotion(rule.to_owned())));
    }

    /// The timer: one task for all deadlines, woken by the clock or a new deadline.
    pub(super) async fn run_timers(&self, mut rx: mpsc::UnboundedReceiver<(SystemTime, Deadline)>) {
        let mut due = BTreeSet::new();
        loop {
            let next = due.first().map(|(at, _)| *at);
            let sleep = async {
                match next {
                    Some(at) => self.inner.clock.sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = self.inner.shutdown.cancelled() => return,
                msg = rx.recv() => match msg {
                    Some(deadline) => { due.insert(deadline); }
                    None => return,
                },
                () = sleep => {
                    let now = self.now();
                    while due.first().is_some_and(|(at, _)| *at <= now) {
                        let Some((at, deadline)) = due.pop_first() else { break };
                        let engine = self.clone();
                        match deadline {
                            Deadline::Intent(id) => {
                                self.spawn(async move { engine.expire(id).await });
                            }
                            Deadline::Demotion(rule) => {
                                self.spawn(async move {
                                    if let Err(e) = engine.consider_demotion(&rule, at).await {
                                        tracing::error!(%rule, error = %e, "could not evaluate a detection's demotion");
                                    }
                                });
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Posts an escalation to the approvers' webhook, retrying what a retry can help.
async fn notify(url: &str, body: serde_json::Value) {
    use backon::{ExponentialBuilder, Retryable};
    let client = reqwest::Client::new();
    let post = || async {
        let resp = client
            .post(url)
            .header("content-type", "application/json")
            .body(body.to_string())
            .timeout(std::time::Duration::from_secs(10))
            .send()
            .await?;
        resp.error_for_status().map(drop)
    };
    let retryable = |e: &reqwest::Error| {
        e.status()
            .is_none_or(|s| s.is_server_error() || s.as_u16() == 429)
    };
    let backoff = ExponentialBuilder::default()
        .with_max_times(3)
        .with_jitter();
    if let Err(e) = post.retry(backoff).when(retryable).await {
        tracing::warn!(error = %e, "the approvals webhook did not take an escalation");
    }
}
