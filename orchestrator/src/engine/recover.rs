//! On start, pick up whatever the journal shows unfinished.

use std::time::SystemTime;

use parapet_model::IntentId;

use super::Engine;
use parapet_model::Outcome;

use crate::lifecycle::{IntentEvent, IntentRecord, State};

/// What start-up found to pick up again, done once the guardrails stand.
#[derive(Debug, Default)]
pub(super) struct Recovered {
    resume: Vec<IntentId>,
    timers: Vec<(SystemTime, IntentId)>,
}

impl Recovered {
    pub fn resumed(&self) -> usize {
        self.resume.len()
    }

    pub fn timers(&self) -> usize {
        self.timers.len()
    }
}

impl Engine {
    /// Notes what an intent the journal shows unfinished needs: its timers (a TTL that passed
    /// while Parapet was down fires at once), or its work resumed.
    pub(super) fn recover(&self, record: &IntentRecord, found: &mut Recovered) {
        let id = record.intent.id;
        match record.state {
            State::Active => found.timers.extend(record.expires_at.map(|at| (at, id))),
            State::AwaitingApproval => found.timers.extend(
                self.waiting_deadlines(record)
                    .into_iter()
                    .map(|at| (at, id)),
            ),
            State::Received
            | State::Decided
            | State::Executing
            | State::Expiring
            | State::RollingBack => found.resume.push(id),
            _ => {}
        }
    }

    /// Arms the timers and resumes the work [`Self::recover`] found.
    pub(super) fn resume_all(&self, found: Recovered) {
        for (at, id) in found.timers {
            self.schedule(at, id);
        }
        for id in found.resume {
            let engine = self.clone();
            self.spawn(async move { engine.resume(id).await });
        }
    }

    async fn resume(&self, id: IntentId) {
        let _guard = self.inner.locks.lock(id).await;
        let result = match self.record(id) {
            // A crash cut the journal between the intent and its decision; nobody was answered,
            // so it is decided now, on the policy and guardrails in force now.
            Ok(record) if record.state == State::Received => {
                let (decision, seen) = self.decide(&record.intent, self.now(), false);
                let outcome = decision.outcome;
                match self
                    .append(id, IntentEvent::Decided { decision, seen })
                    .await
                {
                    Ok(_) if outcome == Outcome::Execute => self.execute_locked(id).await,
                    Ok(r) => {
                        if r.state == State::AwaitingApproval {
                            self.schedule_waiting(&r);
                        }
                        Ok(())
                    }
                    Err(e) => {
                        self.inner.guards.lock().allowance.ledger.release(id);
                        Err(e)
                    }
                }
            }
            Ok(record) if matches!(record.state, State::Decided | State::Executing) => {
                self.execute_locked(id).await
            }
            Ok(record) if matches!(record.state, State::Expiring | State::RollingBack) => {
                self.undo(id, record).await.map(drop)
            }
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::error!(intent = %id, error = %e, "cannot resume");
                return;
            }
        };
        if let Err(e) = result {
            tracing::error!(intent = %id, error = %e, "resuming stopped; it resumes on restart");
        }
    }
}
