//! On start, pick up whatever the journal shows unfinished.

use parapet_model::IntentId;

use super::Engine;
use parapet_model::Outcome;

use crate::lifecycle::{Event, IntentRecord, State};

impl Engine {
    /// Resumes every intent the journal shows in flight and re-arms the TTL timers. A TTL that
    /// passed while Parapet was down fires at once.
    pub(super) fn recover(&self, live: Vec<IntentRecord>) {
        let (mut resumed, mut timers) = (0usize, 0usize);
        for record in live {
            let id = record.intent.id;
            match record.state {
                State::Active => {
                    if let Some(at) = record.expires_at {
                        self.schedule(at, id);
                        timers += 1;
                    }
                }
                State::AwaitingApproval => {
                    self.schedule_waiting(&record);
                    timers += 1;
                }
                State::Received
                | State::Decided
                | State::Executing
                | State::Expiring
                | State::RollingBack => {
                    let engine = self.clone();
                    self.spawn(async move { engine.resume(id).await });
                    resumed += 1;
                }
                _ => {}
            }
        }
        if resumed + timers > 0 {
            tracing::info!(resumed, timers, "recovered intents from the journal");
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
                match self.append(id, Event::Decided { decision, seen }).await {
                    Ok(_) if outcome == Outcome::Execute => self.execute_locked(id).await,
                    Ok(r) => {
                        if r.state == State::AwaitingApproval {
                            self.schedule_waiting(&r);
                        }
                        Ok(())
                    }
                    Err(e) => {
                        self.inner.guards.lock().ledger.release(id);
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
