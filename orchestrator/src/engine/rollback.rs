//! Undoing on request and on expiry, and the durable TTL timer.

use std::{collections::BTreeSet, time::SystemTime};

use parapet_model::IntentId;
use tokio::sync::mpsc;

use super::{Engine, Error, Result, SYSTEM_ACTOR};
use crate::lifecycle::{Event, IntentRecord, RollbackCause, State};

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
        let started = Event::RollbackStarted {
            cause: RollbackCause::Operator,
            reason: reason.to_owned(),
        };
        let record = self
            .inner
            .journal
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
        let _guard = self.inner.locks.lock(id).await;
        let Ok(record) = self.record(id) else { return };
        if record.state == State::AwaitingApproval {
            let timeout = self.policy().approvals.timeout.clone();
            if record.intent.received_at + timeout.0 <= self.now() {
                let rejected = Event::Rejected {
                    by: SYSTEM_ACTOR.into(),
                    reason: format!("no answer within {}", timeout.1),
                };
                if let Err(e) = self
                    .inner
                    .journal
                    .append(id, SYSTEM_ACTOR, vec![rejected])
                    .await
                {
                    tracing::error!(intent = %id, error = %e, "could not reject a stale intent");
                }
            }
            return;
        }
        let due = record.expires_at.is_some_and(|at| at <= self.now());
        if record.state != State::Active || !due {
            return;
        }
        let ttl = record.intent.ttl.map(humantime::format_duration);
        let started = Event::RollbackStarted {
            cause: RollbackCause::Ttl,
            reason: format!(
                "ttl of {} passed",
                ttl.map(|t| t.to_string()).unwrap_or_default()
            ),
        };
        let result = match self
            .inner
            .journal
            .append(id, SYSTEM_ACTOR, vec![started])
            .await
        {
            Ok(appended) => self.undo(id, appended.record).await.map(drop),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::error!(intent = %id, error = %e, "expiry stopped; it resumes on restart");
        }
    }

    /// Asks the timer to expire `id` at `at`. Deadlines are not stored here: they live in the
    /// intent's record, so a restart finds them again.
    pub(super) fn schedule(&self, at: SystemTime, id: IntentId) {
        let _ = self.inner.timers.send((at, id));
    }

    /// The timer: one task for all deadlines, woken by the clock or a new deadline.
    pub(super) async fn run_timers(&self, mut rx: mpsc::UnboundedReceiver<(SystemTime, IntentId)>) {
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
                    while let Some(&(at, id)) = due.first() {
                        if at > now {
                            break;
                        }
                        due.pop_first();
                        let engine = self.clone();
                        self.spawn(async move { engine.expire(id).await });
                    }
                }
            }
        }
    }
}
