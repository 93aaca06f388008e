//! Intent validation under hostile input, as `Submit` receives it: never a panic; what is
//! accepted keeps every limit; what is refused names its field. `PROPTEST_CASES=N` for longer
//! runs than CI's.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use parapet_model::limits;
use parapet_orchestrator::api::convert::intent_request;
use parapet_proto::v1 as pb;
use proptest::prelude::*;

/// Text that is sometimes plausible and sometimes hostile: control characters, long runs,
/// any Unicode.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9_.-]{0,20}",
        prop::collection::vec(any::<char>(), 0..40).prop_map(String::from_iter),
        prop::collection::vec(0u8..32, 1..4).prop_map(|b| b.into_iter().map(char::from).collect()),
        "(10|192|198)\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}(/[0-9]{1,3})?",
        "[0-9a-f:]{2,40}(/[0-9]{1,3})?",
        (1usize..2000).prop_map(|n| "x".repeat(n)),
    ]
}

fn map() -> impl Strategy<Value = std::collections::HashMap<String, String>> {
    // mostly small; sometimes around the limit of 32
    prop_oneof![
        4 => prop::collection::hash_map(text(), text(), 0..4),
        1 => prop::collection::hash_map(text(), text(), 30..36),
    ]
}

fn step() -> impl Strategy<Value = pb::Step> {
    (
        prop_oneof![
            Just("block_ip".to_owned()),
            Just("isolate_host".to_owned()),
            text()
        ],
        prop::option::of((
            prop_oneof![Just("ip".to_owned()), Just("host".to_owned()), text()],
            text(),
            map(),
        )),
        map(),
    )
        .prop_map(|(kind, target, params)| pb::Step {
            kind,
            target: target.map(|(kind, id, attributes)| pb::Target {
                kind,
                id,
                attributes,
            }),
            params,
        })
}

fn request() -> impl Strategy<Value = pb::SubmitIntentRequest> {
    (
        (text(), text(), text()),
        prop::option::of((text(), any::<i32>(), any::<f64>(), text())),
        prop_oneof![
            4 => prop::collection::vec(step(), 0..3),
            1 => prop::collection::vec(step(), 15..18),
        ],
        prop::option::of((any::<i64>(), any::<i32>())),
        prop_oneof![Just(String::new()), text()],
    )
        .prop_map(|((key, source, reason), det, steps, ttl, finding)| {
            pb::SubmitIntentRequest {
                idempotency_key: key,
                source,
                detection: det.map(|(rule_id, severity, confidence, title)| pb::Detection {
                    rule_id,
                    severity,
                    confidence,
                    title,
                }),
                steps,
                ttl: ttl.map(|(seconds, nanos)| parapet_proto::wkt::Duration { seconds, nanos }),
                reason,
                wait: false,
                finding,
            }
        })
}

proptest! {
    #[test]
    fn any_submission_is_valid_within_limits_or_refused_by_field(req in request()) {
        match intent_request(req) {
            Ok(intent) => {
                prop_assert!(!intent.steps.is_empty() && intent.steps.len() <= limits::MAX_STEPS);
                prop_assert!(intent.idempotency_key.len() <= limits::MAX_ID_LEN);
                prop_assert!((0.0..=1.0).contains(&intent.detection.confidence.get()));
                for s in &intent.steps {
                    prop_assert!(s.target.attributes.len() <= limits::MAX_MAP_ENTRIES);
                    prop_assert!(s.params.len() <= limits::MAX_MAP_ENTRIES);
                    prop_assert!(s.target.id.len() <= limits::MAX_ID_LEN);
                }
                prop_assert!(intent.ttl.is_none_or(|t| !t.is_zero() && t <= limits::MAX_TTL));
            }
            Err(e) => prop_assert!(!e.field.is_empty() && !e.message.is_empty(), "{e}"),
        }
    }
}
