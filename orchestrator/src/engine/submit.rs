//! Submitting an intent: decide, journal, start.

use std::time::SystemTime;

use parapet_model::{Decision, Intent, IntentId, IntentRequest, Outcome};
use parapet_policy::Seen;

use super::{Engine, Error, Result};
use crate::{
    journal::AppendError,
    lifecycle::{IntentEvent, IntentRecord, State},
};

/// The answer to a submission.
#[derive(Debug, Clone)]
pub struct Submitted {
    pub record: IntentRecord,
    /// This repeated an earlier submission; `record` is that one's.
    pub duplicate: bool,
}

impl Engine {
    /// Decides an intent and journals it with its decision; returns once both are durable. An
    /// executable intent then runs in the background, or before returning when `wait` is set.
    pub async fn submit(&self, request: IntentRequest, wait: bool) -> Result<Submitted> {
        // draining for a shutdown: the caller should try again (elsewhere, or once restarted)
        if self.inner.shutdown.is_cancelled() {
            return Err(Error::ShuttingDown);
        }
        self.validate_steps(&self.policy(), &request.steps)?;
        let index = &self.inner.state;
        if let Some(existing) =
            index.by_idempotency_key(&request.source, &request.idempotency_key)?
        {
            return self.repeat(existing, &request, wait).await;
        }
        let id = IntentId::generate();
        let mut intent = request.clone().into_intent(id, self.now());
        intent.trace = crate::telemetry::trace::traceparent(&tracing::Span::current());
        let (decision, seen) = {
            let _span = tracing::info_span!("intent.decide", intent_id = %id).entered();
            self.decide(&intent, intent.received_at, false)
        };
        if decision.outcome == Outcome::Deny
            && let Err(e) = self.inner.limits.denial(&intent.source)
        {
            self.inner
                .metrics
                .refused_call("ResourceExhausted", "denial_quota");
            return Err(e);
        }
        let execute = decision.outcome == Outcome::Execute;
        let waits = decision.outcome == Outcome::AwaitApproval;
        let source = intent.source.clone();
        let events = vec![
            IntentEvent::Received { intent },
            IntentEvent::Decided { decision, seen },
        ];
        let appended = self.inner.store.append(id, &source, events).await;
        if appended.is_err() && execute {
            // Nothing was recorded, so nothing may hold the budget.
            self.inner.guards.lock().allowance.ledger.release(id);
        }
        let record = match appended {
            Ok(appended) => appended.record,
            // Lost a race with a concurrent submission of the same key.
            Err(AppendError::Duplicate(existing)) => {
                return self.repeat(existing, &request, wait).await;
            }
            Err(e) => return Err(e.into()),
        };
        if waits {
            self.schedule_waiting(&record);
        }
        if execute {
            let engine = self.clone();
            let running = self.spawn(async move { engine.execute(id).await });
            if wait {
                running.await.map_err(|_| Error::ShuttingDown)?;
                return Ok(Submitted {
                    record: self.record(id)?,
                    duplicate: false,
                });
            }
        }
        Ok(Submitted {
            record,
            duplicate: false,
        })
    }

    /// Decides, and for an intent that will execute takes its rate-limit cells and budget
    /// units, all under one lock: two concurrent decisions can never both take the last unit
    /// of a budget. `approved` when a person approved the intent just now.
    pub(super) fn decide(
        &self,
        intent: &Intent,
        now: SystemTime,
        approved: bool,
    ) -> (Decision, Box<Seen>) {
        let policy = self.policy();
        // the source's ceiling, wherever the decision is made (on submission, on recovery after
        // a crash cut the journal before the decision, on an approval's re-check)
        let ceiling = self.ceilings().get(&intent.source).copied();
        let (decision, seen) = self
            .inner
            .guards
            .lock()
            .decide(&policy, intent, now, approved, ceiling);
        (decision, Box::new(seen))
    }

    /// Each step as the adapters that would carry it check it (malformed addresses, missing
    /// parameters), naming the step.
    fn validate_steps(
        &self,
        policy: &parapet_policy::Policy,
        steps: &[parapet_model::Step],
    ) -> Result<()> {
        for (i, step) in steps.iter().enumerate() {
            self.inner
                .registry
                .validate(step, policy.route(&step.kind))
                .map_err(|e| e.under(&format!("steps[{i}]")))?;
        }
        Ok(())
    }

    /// The decision `request` would get now, with its reasons, and nothing done: nothing
    /// journaled, no budget or rate taken, no adapter called. Its steps are checked as a
    /// submission's are.
    pub fn what_if(&self, request: IntentRequest) -> Result<Decision> {
        let policy = self.policy();
        self.validate_steps(&policy, &request.steps)?;
        let intent = request.into_intent(IntentId::generate(), self.now());
        let ceiling = self.ceilings().get(&intent.source).copied();
        Ok(self
            .inner
            .guards
            .lock()
            .what_if(&policy, &intent, intent.received_at, ceiling))
    }

    /// A repeated submission returns the first intent and never acts again. A repeat for an
    /// active intent with a TTL extends that TTL (journaled), never shortens it.
    async fn repeat(&self, id: IntentId, request: &IntentRequest, wait: bool) -> Result<Submitted> {
        let record = self.record(id)?;
        let first = &record.intent;
        if first.steps != request.steps || first.detection.rule_id != request.detection.rule_id {
            return Err(Error::IdempotencyConflict {
                key: request.idempotency_key.clone(),
                existing: id,
            });
        }
        let record = match request.ttl {
            Some(ttl) if record.state == State::Active && record.expires_at.is_some() => {
                self.extend_ttl(id, ttl, &request.source).await?
            }
            _ => record,
        };
        let record = if wait {
            self.wait_settled(id).await?
        } else {
            record
        };
        Ok(Submitted {
            record,
            duplicate: true,
        })
    }

    async fn extend_ttl(
        &self,
        id: IntentId,
        ttl: std::time::Duration,
        actor: &str,
    ) -> Result<IntentRecord> {
        let _guard = self.inner.locks.lock(id).await;
        let record = self.record(id)?;
        let Some(current) = record.expires_at.filter(|_| record.state == State::Active) else {
            return Ok(record);
        };
        let Some(expires_at) = self.inner.clock.now().checked_add(ttl) else {
            return Err(Error::invalid("ttl", "ends past what can be told"));
        };
        if expires_at <= current {
            return Ok(record);
        }
        let appended = self
            .inner
            .store
            .append(
                id,
                actor,
                vec![IntentEvent::TtlExtended { ttl, expires_at }],
            )
            .await?;
        // the budget's units free later too, as a restart would rebuild them
        self.inner
            .guards
            .lock()
            .allowance
            .ledger
            .extend(id, expires_at);
        self.schedule(expires_at, id);
        // Systems that expire actions by themselves (kernel timeouts) are told, so they do not
        // lift a block before Parapet would. Journaled first: a failure here is logged, and the
        // block may then lapse early, never late.
        for (i, step) in appended.record.steps.iter().enumerate() {
            if let Some(handle) = step.handle.as_ref().filter(|_| step.needs_rollback())
                && let Err(e) = self.inner.registry.extend(handle, ttl).await
            {
                tracing::warn!(intent = %id, step = i, error = %e, "could not extend the action's own expiry");
            }
        }
        Ok(appended.record)
    }
}
