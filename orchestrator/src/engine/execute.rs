//! Running a plan's steps, and undoing them.

use std::time::SystemTime;

use parapet_actions::{Action, Error as ActionError};
use parapet_model::IntentId;
use tracing::Instrument as _;

use tokio_util::sync::CancellationToken;

use super::{Engine, SYSTEM_ACTOR};
use crate::{
    journal::AppendError,
    lifecycle::{IntentEvent, IntentRecord, RollbackCause, State, StepState},
};

impl Engine {
    /// Runs the steps of a decided intent in order, each journaled before it acts. If a step
    /// fails, the steps done are undone in reverse order and the intent ends `failed`.
    /// Safe to call again after a crash: steps already done are skipped, and a step that was
    /// started is repeated, which adapters treat as one action.
    pub(super) async fn execute(&self, id: IntentId) {
        let span = self.intent_span("intent.execute", id);
        async {
            let _guard = self.inner.locks.lock(id).await;
            if let Err(e) = self.execute_locked(id).await {
                tracing::error!(intent = %id, error = %e, "execution stopped; it resumes on restart");
            }
        }
        .instrument(span)
        .await;
    }

    /// A span for work on an intent, in the intent's own trace: a child of the span in force,
    /// or else of the submission's trace.
    pub(super) fn intent_span(&self, name: &'static str, id: IntentId) -> tracing::Span {
        let record = self.record(id).ok();
        let span = tracing::info_span!(
            "intent",
            otel.name = name,
            intent_id = %id,
            detection = tracing::field::Empty,
            outcome = tracing::field::Empty,
            cause = tracing::field::Empty,
        );
        if let Some(r) = &record {
            span.record("detection", r.intent.detection.rule_id.as_str());
            if let Some(d) = &r.decision {
                span.record("outcome", d.outcome.as_str());
            }
            if tracing::Span::current().is_none() {
                crate::telemetry::trace::continue_from(&span, r.intent.trace.as_deref());
            }
        }
        span
    }

    pub(super) async fn execute_locked(&self, id: IntentId) -> Result<(), AppendError> {
        let Ok(mut record) = self.record(id) else {
            return Ok(());
        };
        if !matches!(record.state, State::Decided | State::Executing) {
            return Ok(());
        }
        let steps = record.intent.steps.len();
        for i in 0..steps {
            match record.steps[i].state {
                StepState::Done => continue,
                StepState::Pending | StepState::Executing => {}
                // A failure was journaled but not its consequence: finish that.
                _ => return self.fail(id, record).await,
            }
            let step = i as u32;
            let kind = &record.intent.steps[i].kind;
            if self.inner.guards.lock().kill_switches.stops(kind) {
                // Engaged after the decision: this step must not start, and those done are undone.
                let refused = IntentEvent::StepFailed {
                    step,
                    retryable: false,
                    error: format!("the kill switch stops `{kind}`"),
                };
                record = self
                    .append_all(id, vec![IntentEvent::StepStarted { step }, refused])
                    .await?;
                return self.fail(id, record).await;
            }
            record = self.append(id, IntentEvent::StepStarted { step }).await?;
            let mut events = vec![match self.act(&record, step).await {
                Ok(handle) => IntentEvent::StepSucceeded { step, handle },
                // Stopping: a failure a retry could mend is no failure yet; the step stays
                // started, and the next start repeats it.
                Err(e) if e.retryable() && self.inner.shutdown.is_cancelled() => {
                    tracing::warn!(intent = %id, step, error = %e, "stopping: the step is left in flight");
                    return Ok(());
                }
                Err(e) => IntentEvent::StepFailed {
                    step,
                    retryable: e.retryable(),
                    error: e.message,
                },
            }];
            // The last success and the activation share one journal write.
            if i + 1 == steps && matches!(events[0], IntentEvent::StepSucceeded { .. }) {
                let expires_at = record.intent.ttl.map(|ttl| self.now() + ttl);
                events.push(IntentEvent::Activated { expires_at });
            }
            record = self.append_all(id, events).await?;
            if record.steps[i].state == StepState::Failed {
                return self.fail(id, record).await;
            }
        }
        if record.state == State::Executing {
            // Every step was done before a restart; only the activation is missing.
            let expires_at = record.intent.ttl.map(|ttl| self.now() + ttl);
            record = self
                .append(id, IntentEvent::Activated { expires_at })
                .await?;
        }
        if let Some(at) = record.expires_at {
            self.schedule(at, id);
        }
        Ok(())
    }

    async fn act(
        &self,
        record: &IntentRecord,
        step: u32,
    ) -> Result<parapet_actions::RollbackHandle, ActionError> {
        let intent = &record.intent;
        let s = &intent.steps[step as usize];
        let adapter = self
            .inner
            .registry
            .resolve(&s.kind, self.policy().route(&s.kind))
            .map_err(|e| ActionError::permanent(e.to_string()))?;
        let action = Action {
            intent_id: intent.id,
            step_index: step,
            step: s,
            ttl: intent.ttl,
        };
        let timeout = self.inner.config.adapter_timeout;
        let started = std::time::Instant::now();
        let span = tracing::info_span!(
            "adapter.execute",
            adapter = adapter.name(),
            kind = s.kind.as_str(),
            target = %format_args!("{}:{}", s.target.kind, s.target.id),
            step,
            result = tracing::field::Empty,
        );
        let result = with_retries(&self.inner.shutdown, || async {
            tokio::time::timeout(timeout, adapter.execute(action))
                .await
                .unwrap_or_else(|_| Err(timed_out(timeout)))
        })
        .instrument(span.clone())
        .await;
        span.record("result", if result.is_ok() { "success" } else { "failure" });
        match &result {
            Ok(_) => tracing::debug!(parent: &span, "adapter acted"),
            Err(e) => tracing::warn!(parent: &span, error = %e, "adapter failed"),
        }
        self.inner.metrics.adapter_call(
            adapter.name(),
            s.kind.as_str(),
            false,
            started.elapsed(),
            result.is_ok(),
        );
        let trip = {
            let policy = self.policy();
            let mut g = self.inner.guards.lock();
            let stopped = g.kill_switches.stops(&s.kind);
            g.calls.record(
                policy.circuit_breaker.as_ref(),
                &s.kind,
                self.now(),
                result.is_err(),
                stopped,
            )
        };
        if let Some(reason) = trip {
            tracing::warn!(kind = %s.kind, %reason, "tripping the kill switch");
            if let Err(e) = self
                .set_kill_switch(Some(s.kind.clone()), true, SYSTEM_ACTOR, &reason)
                .await
            {
                tracing::error!(error = %e, "could not trip the kill switch");
            }
        }
        result
    }

    /// A step failed: undo what was done (compensation), then end `failed` with the cause.
    async fn fail(&self, id: IntentId, record: IntentRecord) -> Result<(), AppendError> {
        let cause = failure_summary(&record);
        if record.steps.iter().any(|s| s.needs_rollback()) {
            let started = IntentEvent::RollbackStarted {
                cause: RollbackCause::Compensation,
                reason: cause,
            };
            let record = self.append(id, started).await?;
            self.undo(id, record).await.map(drop)
        } else {
            self.append(id, IntentEvent::Failed { error: cause })
                .await
                .map(drop)
        }
    }

    /// Undoes the steps still in force, last first; the intent must be expiring or rolling
    /// back. Ends `rolled_back`, `failed` after a compensation, or `rollback_failed`.
    pub(super) async fn undo(
        &self,
        id: IntentId,
        record: IntentRecord,
    ) -> Result<IntentRecord, AppendError> {
        let span = self.intent_span("intent.rollback", id);
        if let Some(cause) = record.rollback_cause {
            span.record("cause", format!("{cause:?}").to_lowercase());
        }
        self.undo_steps(id, record).instrument(span).await
    }

    async fn undo_steps(
        &self,
        id: IntentId,
        mut record: IntentRecord,
    ) -> Result<IntentRecord, AppendError> {
        let undone: Vec<usize> = (0..record.steps.len())
            .rev()
            .filter(|&i| record.steps[i].handle.is_some() && record.steps[i].needs_rollback())
            .collect();
        for (n, &i) in undone.iter().enumerate() {
            let Some(handle) = record.steps[i].handle.clone() else {
                continue;
            };
            let step = i as u32;
            let timeout = self.inner.config.adapter_timeout;
            let started = std::time::Instant::now();
            let s = &record.intent.steps[i];
            let span = tracing::info_span!(
                "adapter.rollback",
                adapter = %handle.acted_by(),
                kind = s.kind.as_str(),
                target = %format_args!("{}:{}", s.target.kind, s.target.id),
                step,
                result = tracing::field::Empty,
            );
            let result = with_retries(&self.inner.shutdown, || async {
                tokio::time::timeout(timeout, self.inner.registry.rollback(&handle))
                    .await
                    .unwrap_or_else(|_| Err(timed_out(timeout)))
            })
            .instrument(span.clone())
            .await;
            span.record("result", if result.is_ok() { "success" } else { "failure" });
            self.inner.metrics.adapter_call(
                &handle.acted_by(),
                record.intent.steps[i].kind.as_str(),
                true,
                started.elapsed(),
                result.is_ok(),
            );
            let event = match result {
                Ok(()) => IntentEvent::StepRolledBack { step },
                Err(e) if e.retryable() && self.inner.shutdown.is_cancelled() => {
                    tracing::warn!(intent = %id, step, error = %e, "stopping: the undo is left in flight");
                    return Ok(record);
                }
                Err(e) => IntentEvent::StepRollbackFailed {
                    step,
                    error: e.message,
                },
            };
            if n + 1 == undone.len() {
                // The last undo and the ending share one journal write.
                let end = ending(&record, Some(&event));
                return self.append_all(id, vec![event, end]).await;
            }
            record = self.append(id, event).await?;
        }
        self.append(id, ending(&record, None)).await
    }

    pub(super) async fn append(
        &self,
        id: IntentId,
        event: IntentEvent,
    ) -> Result<IntentRecord, AppendError> {
        self.append_all(id, vec![event]).await
    }

    /// Journals the engine's own events; an intent that ends frees its budget units.
    async fn append_all(
        &self,
        id: IntentId,
        events: Vec<IntentEvent>,
    ) -> Result<IntentRecord, AppendError> {
        let record = self
            .inner
            .store
            .append(id, SYSTEM_ACTOR, events)
            .await?
            .record;
        if record.state.is_final() {
            self.inner.guards.lock().allowance.ledger.release(id);
        }
        Ok(record)
    }

    pub(super) fn now(&self) -> SystemTime {
        self.inner.clock.now()
    }
}

/// Calls an adapter again, with growing pauses, while it fails in a way a retry can help
/// (unreachable, busy, slow); a permanent error fails at once.
/// Calls again while the error says a retry may help, a few times with backoff; not once a
/// stop has begun.
async fn with_retries<T, F, Fut>(stopping: &CancellationToken, call: F) -> Result<T, ActionError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ActionError>>,
{
    use backon::{ExponentialBuilder, Retryable};
    let backoff = ExponentialBuilder::default()
        .with_min_delay(std::time::Duration::from_millis(100))
        .with_max_delay(std::time::Duration::from_secs(5))
        .with_max_times(3)
        .with_jitter();
    call.retry(backoff)
        .when(|e| e.retryable() && !stopping.is_cancelled())
        .await
}

fn timed_out(after: std::time::Duration) -> ActionError {
    ActionError::transient(format!(
        "the adapter did not answer within {}",
        humantime::format_duration(after)
    ))
}

/// The failed step and why, for the intent's error.
fn failure_summary(record: &IntentRecord) -> String {
    record
        .steps
        .iter()
        .enumerate()
        .find(|(_, s)| s.state == StepState::Failed)
        .map(|(i, s)| {
            format!(
                "step {i} (`{}`) failed: {}",
                record.intent.steps[i].kind,
                s.error.as_deref().unwrap_or("unknown error")
            )
        })
        .unwrap_or_else(|| "a step failed".into())
}

/// How an undo ends, given the record before its last step's outcome `last`: `rollback_failed`
/// if any step could not be undone, `failed` after a compensation, else `rolled_back`.
fn ending(record: &IntentRecord, last: Option<&IntentEvent>) -> IntentEvent {
    let mut failures: Vec<(usize, &str)> = record
        .steps
        .iter()
        .enumerate()
        .filter(|(_, s)| s.state == StepState::RollbackFailed)
        .map(|(i, s)| (i, s.error.as_deref().unwrap_or("failed")))
        .collect();
    match last {
        Some(IntentEvent::StepRollbackFailed { step, error }) => {
            failures.retain(|(i, _)| *i != *step as usize);
            failures.push((*step as usize, error));
        }
        Some(IntentEvent::StepRolledBack { step }) => {
            failures.retain(|(i, _)| *i != *step as usize)
        }
        _ => {}
    }
    failures.sort_by_key(|(i, _)| *i);
    if !failures.is_empty() {
        let failures: Vec<String> = failures
            .iter()
            .map(|(i, e)| format!("step {i}: {e}"))
            .collect();
        IntentEvent::RollbackFailed {
            error: failures.join("; "),
        }
    } else if record.rollback_cause == Some(RollbackCause::Compensation) {
        IntentEvent::Failed {
            error: failure_summary(record),
        }
    } else {
        IntentEvent::RolledBack
    }
}
