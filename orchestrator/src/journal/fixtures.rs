//! Intents and events the journal's and the stores' tests are made of.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, SystemTime},
};

use parapet_actions::RollbackHandle;
use parapet_model::{
    Confidence, Decision, Detection, Intent, IntentId, IntentRequest, Outcome, Severity, Step,
    Target,
};

use crate::{
    clock::{ManualClock, SharedClock},
    lifecycle::IntentEvent,
};

pub(crate) fn clock() -> SharedClock {
    Arc::new(ManualClock::new(
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
    ))
}

/// An intent blocking 192.0.2.1 for detection `c2`, from `siem`.
pub(crate) fn intent(key: &str) -> Intent {
    varied(key, "siem", "c2", "block_ip", "192.0.2.1")
}

pub(crate) fn submitted(intent: &Intent) -> Vec<IntentEvent> {
    vec![
        IntentEvent::Received {
            intent: intent.clone(),
        },
        IntentEvent::Decided {
            decision: Decision {
                outcome: Outcome::Execute,
                reasons: vec![],
                policy_digest: "sha256:0".into(),
                retry_after: None,
            },
            seen: Box::new(parapet_policy::Seen::nothing(SystemTime::UNIX_EPOCH)),
        },
    ]
}

pub(crate) fn executed() -> Vec<IntentEvent> {
    vec![
        IntentEvent::StepStarted { step: 0 },
        IntentEvent::StepSucceeded {
            step: 0,
            handle: RollbackHandle {
                adapter: "edl".into(),
                data: "{}".into(),
            },
        },
        IntentEvent::Activated { expires_at: None },
    ]
}

/// A request for one step, `kind` on the address `ip` (with `attributes`), for detection
/// `rule` from `source`.
pub(crate) fn request(
    key: &str,
    source: &str,
    rule: &str,
    kind: &str,
    ip: &str,
    attributes: BTreeMap<String, String>,
    ttl: Option<Duration>,
) -> IntentRequest {
    let target = Target::new("ip".into(), ip.into(), attributes).unwrap();
    let step = Step::new(kind.parse().unwrap(), target, BTreeMap::new()).unwrap();
    let det = Detection::new(
        rule.into(),
        Severity::High,
        Confidence::try_from(0.9).unwrap(),
        String::new(),
    )
    .unwrap();
    IntentRequest::new(
        key.into(),
        source.into(),
        det,
        vec![step],
        ttl,
        String::new(),
    )
    .unwrap()
}

pub(crate) fn varied(key: &str, source: &str, rule: &str, kind: &str, ip: &str) -> Intent {
    request(key, source, rule, kind, ip, BTreeMap::new(), None)
        .into_intent(IntentId::generate(), SystemTime::UNIX_EPOCH)
}

pub(crate) fn decided(intent: &Intent, outcome: Outcome) -> Vec<IntentEvent> {
    let mut events = submitted(intent);
    if let IntentEvent::Decided { decision, .. } = &mut events[1] {
        decision.outcome = outcome;
    }
    events
}

/// The stored chain walked against the index.
pub(crate) fn walk(journal: &crate::journal::Journal) -> crate::journal::verify::Report {
    crate::journal::verify::verify(journal.reader().as_ref(), Some(journal.index()), &[]).unwrap()
}
