use std::{collections::BTreeMap, time::SystemTime};

use crate::lifecycle::IntentEvent;
use parapet_model::{Confidence, Detection, IntentId, IntentRequest, Severity, Step, Target};

use super::*;

fn intent(steps: usize) -> Intent {
    let step = Step::new(
        "block_ip".parse().unwrap(),
        Target::new("ip".into(), "192.0.2.1".into(), BTreeMap::new()).unwrap(),
        BTreeMap::new(),
    )
    .unwrap();
    let det = Detection::new(
        "d".into(),
        Severity::High,
        Confidence::try_from(0.9).unwrap(),
        String::new(),
    )
    .unwrap();
    IntentRequest::new(
        "k".into(),
        "s".into(),
        det,
        vec![step; steps],
        None,
        String::new(),
    )
    .unwrap()
    .into_intent(IntentId::generate(), SystemTime::UNIX_EPOCH)
}

fn decided(outcome: Outcome) -> IntentEvent {
    IntentEvent::Decided {
        decision: Decision {
            outcome,
            reasons: vec![],
            policy_digest: "sha256:x".into(),
            retry_after: None,
        },
        seen: Box::new(parapet_policy::Seen::nothing(SystemTime::UNIX_EPOCH)),
    }
}

fn handle() -> RollbackHandle {
    RollbackHandle {
        adapter: "edl".into(),
        data: "{}".into(),
    }
}

fn run(rec: &mut IntentRecord, events: &[IntentEvent]) -> Result<(), InvalidTransition> {
    for (i, e) in events.iter().enumerate() {
        rec.apply(e, i as u64 + 2, SystemTime::UNIX_EPOCH)?;
    }
    Ok(())
}

#[test]
fn a_plan_runs_to_active_and_rolls_back() {
    let mut rec = IntentRecord::received(intent(2), 1);
    run(
        &mut rec,
        &[
            decided(Outcome::Execute),
            IntentEvent::StepStarted { step: 0 },
            IntentEvent::StepSucceeded {
                step: 0,
                handle: handle(),
            },
            IntentEvent::StepStarted { step: 1 },
            IntentEvent::StepSucceeded {
                step: 1,
                handle: handle(),
            },
            IntentEvent::Activated { expires_at: None },
        ],
    )
    .unwrap();
    assert_eq!(rec.state, State::Active);
    run(
        &mut rec,
        &[
            IntentEvent::RollbackStarted {
                cause: RollbackCause::Operator,
                reason: "fp".into(),
            },
            IntentEvent::StepRolledBack { step: 1 },
        ],
    )
    .unwrap();
    // not every step is undone yet
    assert!(
        rec.apply(&IntentEvent::RolledBack, 9, SystemTime::UNIX_EPOCH)
            .is_err()
    );
    rec.apply(
        &IntentEvent::StepRolledBack { step: 0 },
        9,
        SystemTime::UNIX_EPOCH,
    )
    .unwrap();
    rec.apply(&IntentEvent::RolledBack, 10, SystemTime::UNIX_EPOCH)
        .unwrap();
    assert_eq!(rec.state, State::RolledBack);
    assert!(rec.state.is_final());
    assert_eq!(rec.last_seq, 10);
}

#[test]
fn a_refused_event_changes_nothing() {
    let mut rec = IntentRecord::received(intent(1), 1);
    run(&mut rec, &[decided(Outcome::Deny)]).unwrap();
    let before = rec.clone();
    let err = rec
        .apply(&IntentEvent::StepStarted { step: 0 }, 3, SystemTime::now())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "`step_started` is not possible while the intent is `denied`"
    );
    assert_eq!(rec, before);
}

#[test]
fn outcomes_lead_to_their_states() {
    for (outcome, state) in [
        (Outcome::Execute, State::Decided),
        (Outcome::AwaitApproval, State::AwaitingApproval),
        (Outcome::Shadow, State::Shadowed),
        (Outcome::Deny, State::Denied),
    ] {
        let mut rec = IntentRecord::received(intent(1), 1);
        run(&mut rec, &[decided(outcome)]).unwrap();
        assert_eq!(rec.state, state);
    }
}

#[test]
fn a_failed_step_compensates_then_fails() {
    let mut rec = IntentRecord::received(intent(2), 1);
    run(
        &mut rec,
        &[
            decided(Outcome::Execute),
            IntentEvent::StepStarted { step: 0 },
            IntentEvent::StepSucceeded {
                step: 0,
                handle: handle(),
            },
            IntentEvent::StepStarted { step: 1 },
            IntentEvent::StepFailed {
                step: 1,
                error: "down".into(),
                retryable: true,
            },
        ],
    )
    .unwrap();
    // failing outright would leave step 0 in force
    assert!(
        rec.clone()
            .apply(
                &IntentEvent::Failed { error: "x".into() },
                9,
                SystemTime::now()
            )
            .is_err()
    );
    run(
        &mut rec,
        &[
            IntentEvent::RollbackStarted {
                cause: RollbackCause::Compensation,
                reason: String::new(),
            },
            IntentEvent::StepRolledBack { step: 0 },
        ],
    )
    .unwrap();
    // compensation ends as failed, never as rolled back
    assert!(
        rec.clone()
            .apply(&IntentEvent::RolledBack, 9, SystemTime::now())
            .is_err()
    );
    rec.apply(
        &IntentEvent::Failed {
            error: "step 1: down".into(),
        },
        9,
        SystemTime::now(),
    )
    .unwrap();
    assert_eq!(rec.state, State::Failed);
}

#[test]
fn ttl_expiry_and_extension_only_while_active() {
    let mut rec = IntentRecord::received(intent(1), 1);
    let later = SystemTime::now();
    let extend = IntentEvent::TtlExtended {
        ttl: Duration::from_secs(60),
        expires_at: later,
    };
    run(
        &mut rec,
        &[
            decided(Outcome::Execute),
            IntentEvent::StepStarted { step: 0 },
        ],
    )
    .unwrap();
    assert!(rec.clone().apply(&extend, 9, later).is_err());
    run(
        &mut rec,
        &[
            IntentEvent::StepSucceeded {
                step: 0,
                handle: handle(),
            },
            IntentEvent::Activated {
                expires_at: Some(SystemTime::UNIX_EPOCH),
            },
        ],
    )
    .unwrap();
    rec.apply(&extend, 9, later).unwrap();
    assert_eq!(rec.expires_at, Some(later));
    rec.apply(
        &IntentEvent::RollbackStarted {
            cause: RollbackCause::Ttl,
            reason: String::new(),
        },
        10,
        later,
    )
    .unwrap();
    assert_eq!(rec.state, State::Expiring);
    // an operator cannot start a second rollback of one in progress
    let op = IntentEvent::RollbackStarted {
        cause: RollbackCause::Operator,
        reason: String::new(),
    };
    assert!(rec.clone().apply(&op, 11, later).is_err());
}

#[test]
fn a_failed_rollback_can_be_retried_by_an_operator() {
    let mut rec = IntentRecord::received(intent(1), 1);
    run(
        &mut rec,
        &[
            decided(Outcome::Execute),
            IntentEvent::StepStarted { step: 0 },
            IntentEvent::StepSucceeded {
                step: 0,
                handle: handle(),
            },
            IntentEvent::Activated { expires_at: None },
            IntentEvent::RollbackStarted {
                cause: RollbackCause::Operator,
                reason: String::new(),
            },
            IntentEvent::StepRollbackFailed {
                step: 0,
                error: "timeout".into(),
            },
            IntentEvent::RollbackFailed {
                error: "step 0: timeout".into(),
            },
            IntentEvent::RollbackStarted {
                cause: RollbackCause::Operator,
                reason: "retry".into(),
            },
            IntentEvent::StepRolledBack { step: 0 },
            IntentEvent::RolledBack,
        ],
    )
    .unwrap();
    assert_eq!(rec.state, State::RolledBack);
}
