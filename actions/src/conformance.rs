//! The conformance kit: the rules of `CONFORMANCE.md`, checked against an adapter and the real
//! system it drives. Each adapter's tests describe their system as a [`Subject`] and call
//! [`run`], plus the error checks that fit ([`permanent`], [`transient`], [`bounded`]).
//!
//! Checks fail by panicking with the rule's number, as test assertions do.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::{sync::Arc, time::Duration};

use parapet_model::{IntentId, Step, Target};

use crate::{Action, BoxFuture, DynAdapter, RollbackHandle};

/// An adapter under test and a way to look at the system it acts on.
pub trait Subject: Send + Sync {
    /// Opens the adapter on its saved state, as Parapet does at each start.
    fn open(&self) -> BoxFuture<'_, Arc<dyn DynAdapter>>;
    /// The `n`-th of several steps on distinct targets (`n` up to 5).
    fn step(&self, n: u32) -> Step;
    /// Whether the `n`-th step's action is in force, read from the system itself.
    fn in_force(&self, n: u32) -> BoxFuture<'_, bool>;
}

fn action_of(intent: IntentId, step: &Step) -> Action<'_> {
    Action {
        intent_id: intent,
        step_index: 0,
        step,
        ttl: Some(Duration::from_secs(3600)),
    }
}

/// A step for adapters' tests: `kind` on the target `target_kind:id` with `attrs`.
pub fn step(kind: &str, target_kind: &str, id: &str, attrs: &[(&str, &str)]) -> Step {
    let attributes = attrs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Step::new(
        kind.parse().unwrap(),
        Target::new(target_kind.into(), id.into(), attributes).unwrap(),
        Default::default(),
    )
    .unwrap()
}

/// The step as the first step of a new intent, without a TTL.
pub fn action(step: &Step) -> Action<'_> {
    Action {
        intent_id: IntentId::generate(),
        step_index: 0,
        step,
        ttl: None,
    }
}

/// Checks rules 1 to 4 and 9 in turn.
pub async fn run(subject: &dyn Subject) {
    judged(subject).await;
    idempotent(subject).await;
    handle_survives_restart(subject).await;
    undo_is_idempotent(subject).await;
    shared_target(subject).await;
}

async fn execute(adapter: &dyn DynAdapter, intent: IntentId, step: &Step) -> RollbackHandle {
    adapter
        .execute(action_of(intent, step))
        .await
        .unwrap_or_else(|e| panic!("execute failed: {e}"))
}

async fn rollback(adapter: &dyn DynAdapter, handle: &RollbackHandle) {
    adapter
        .rollback(handle)
        .await
        .unwrap_or_else(|e| panic!("rollback failed: {e}"));
}

/// Rule 9: every field an adapter declares it acts on as an address holds one, in the
/// canonical form the guardrails judged.
pub async fn judged(subject: &dyn Subject) {
    let adapter = subject.open().await;
    for i in 0..6 {
        let step = subject.step(i);
        let judged: Vec<_> = step.target.addresses().collect();
        for field in adapter.addresses(&step) {
            let value = step.target.get(&field).unwrap_or_else(|| {
                panic!("rule 9: step {i} has no `{field}`, which the adapter acts on")
            });
            assert!(
                judged
                    .iter()
                    .any(|(f, a)| *f == field && a.to_string() == value),
                "rule 9: `{field}` = `{value}` is acted on but is not an address the guardrails judge"
            );
        }
    }
}

/// Rule 1: the same step executed twice acts once, and one rollback undoes it.
pub async fn idempotent(subject: &dyn Subject) {
    let adapter = subject.open().await;
    let step = subject.step(0);
    let intent = IntentId::generate();
    let first = execute(adapter.as_ref(), intent, &step).await;
    assert!(
        subject.in_force(0).await,
        "rule 1: the action is not in force after execute"
    );
    let second = execute(adapter.as_ref(), intent, &step).await;
    assert_eq!(
        first.adapter, second.adapter,
        "rule 1: a repeat came back from another adapter"
    );
    rollback(adapter.as_ref(), &second).await;
    assert!(
        !subject.in_force(0).await,
        "rule 1: one rollback did not undo an execution repeated twice: it acted twice"
    );
}

/// Rule 2: the handle, through JSON and a restart, is all a new adapter needs to undo.
pub async fn handle_survives_restart(subject: &dyn Subject) {
    let step = subject.step(1);
    let json = {
        let adapter = subject.open().await;
        let handle = execute(adapter.as_ref(), IntentId::generate(), &step).await;
        serde_json::to_string(&handle).unwrap()
    };
    assert!(
        subject.in_force(1).await,
        "rule 2: the action is not in force after execute"
    );
    let handle: RollbackHandle = serde_json::from_str(&json).unwrap();
    let reopened = subject.open().await;
    rollback(reopened.as_ref(), &handle).await;
    assert!(
        !subject.in_force(1).await,
        "rule 2: a reopened adapter did not undo the action from its journaled handle"
    );
}

/// Rule 3: undoing twice succeeds, and the second time touches nothing, not even another
/// intent's action on another target.
pub async fn undo_is_idempotent(subject: &dyn Subject) {
    let adapter = subject.open().await;
    let (mine, other) = (subject.step(2), subject.step(3));
    let handle = execute(adapter.as_ref(), IntentId::generate(), &mine).await;
    let kept = execute(adapter.as_ref(), IntentId::generate(), &other).await;
    rollback(adapter.as_ref(), &handle).await;
    rollback(adapter.as_ref(), &handle).await;
    assert!(
        !subject.in_force(2).await,
        "rule 3: the action is back after a second rollback"
    );
    assert!(
        subject.in_force(3).await,
        "rule 3: rolling back one action twice undid another"
    );
    rollback(adapter.as_ref(), &kept).await;
}

/// Rule 4: two intents on one target; the first rollback leaves it in force for the second.
pub async fn shared_target(subject: &dyn Subject) {
    let adapter = subject.open().await;
    let step = subject.step(4);
    let a = execute(adapter.as_ref(), IntentId::generate(), &step).await;
    let b = execute(adapter.as_ref(), IntentId::generate(), &step).await;
    rollback(adapter.as_ref(), &a).await;
    assert!(
        subject.in_force(4).await,
        "rule 4: rolling back one intent undid another intent's action on the same target"
    );
    rollback(adapter.as_ref(), &b).await;
    assert!(
        !subject.in_force(4).await,
        "rule 4: the last rollback did not undo the action"
    );

    // One intent letting go while another takes hold, at the same moment: the newcomer's
    // action must stand, whichever goes first.
    let step = subject.step(5);
    for _ in 0..5 {
        let a = execute(adapter.as_ref(), IntentId::generate(), &step).await;
        let (_, b) = tokio::join!(
            rollback(adapter.as_ref(), &a),
            execute(adapter.as_ref(), IntentId::generate(), &step)
        );
        assert!(
            subject.in_force(5).await,
            "rule 4: a rollback racing another intent's execution undid it"
        );
        rollback(adapter.as_ref(), &b).await;
    }
}

/// Rule 5: a step the system refuses fails permanently.
pub async fn permanent(adapter: &dyn DynAdapter, step: &Step) -> String {
    match adapter.execute(action_of(IntentId::generate(), step)).await {
        Ok(h) => panic!("rule 5: expected a refusal, got a handle {h:?}"),
        Err(e) => {
            assert!(
                !e.retryable(),
                "rule 5: a refusal was called retryable: {e}"
            );
            e.message
        }
    }
}

/// Rule 5: an unreachable or failing system gives a transient error.
pub async fn transient(adapter: &dyn DynAdapter, step: &Step) -> String {
    match adapter.execute(action_of(IntentId::generate(), step)).await {
        Ok(h) => panic!("rule 5: expected a failure, got a handle {h:?}"),
        Err(e) => {
            assert!(
                e.retryable(),
                "rule 5: an unreachable system's error was called permanent: {e}"
            );
            e.message
        }
    }
}

/// Rule 6: against a system that never answers, execute ends with a transient error. The
/// guard only keeps a broken adapter from hanging the suite; it is not a measurement.
pub async fn bounded(adapter: &dyn DynAdapter, step: &Step, configured: Duration) -> String {
    let guard = configured * 5 + Duration::from_secs(5);
    match tokio::time::timeout(
        guard,
        adapter.execute(action_of(IntentId::generate(), step)),
    )
    .await
    {
        Err(_) => {
            panic!("rule 6: execute did not end within {guard:?} (configured {configured:?})")
        }
        Ok(Ok(h)) => panic!("rule 6: expected a timeout, got a handle {h:?}"),
        Ok(Err(e)) => {
            assert!(e.retryable(), "rule 6: a timeout was called permanent: {e}");
            e.message
        }
    }
}
