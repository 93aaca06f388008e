//! Bad input is refused with INVALID_ARGUMENT naming the field, and nothing is written.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use parapet_tests::{Parapet, block, step, v1 as pb};

type Mutate = fn(&mut pb::SubmitIntentRequest);

#[tokio::test]
async fn each_bad_submission_names_its_field_and_leaves_no_trace() {
    let cases: Vec<(&str, Mutate, &str)> = vec![
        (
            "missing key",
            |r| r.idempotency_key.clear(),
            "idempotency_key: is required",
        ),
        (
            "missing source",
            |r| r.source.clear(),
            "source: is required",
        ),
        (
            "missing detection",
            |r| r.detection = None,
            "detection: is required",
        ),
        (
            "missing rule id",
            |r| r.detection.as_mut().unwrap().rule_id.clear(),
            "detection.rule_id: is required",
        ),
        (
            "no severity",
            |r| r.detection.as_mut().unwrap().severity = 0,
            "detection.severity: is required",
        ),
        (
            "unknown severity",
            |r| r.detection.as_mut().unwrap().severity = 42,
            "detection.severity: `42` is not a severity",
        ),
        (
            "confidence above 1",
            |r| r.detection.as_mut().unwrap().confidence = 1.5,
            "detection.confidence: `1.5` is outside 0..1",
        ),
        (
            "confidence below 0",
            |r| r.detection.as_mut().unwrap().confidence = -0.1,
            "detection.confidence:",
        ),
        (
            "confidence NaN",
            |r| r.detection.as_mut().unwrap().confidence = f64::NAN,
            "detection.confidence:",
        ),
        (
            "empty steps",
            |r| r.steps.clear(),
            "steps: at least one step is required",
        ),
        (
            "too many steps",
            |r| r.steps = vec![r.steps[0].clone(); 17],
            "steps: 17 steps exceed the limit of 16",
        ),
        (
            "unknown action kind",
            |r| r.steps[0].kind = "wipe_disk".into(),
            "steps[0].kind: no adapter performs `wipe_disk`",
        ),
        (
            "malformed action kind",
            |r| r.steps[0].kind = "Block IP".into(),
            "steps[0].kind: `Block IP` must be lowercase",
        ),
        (
            "missing target",
            |r| r.steps[0].target = None,
            "steps[0].target: is required",
        ),
        (
            "malformed ip",
            |r| r.steps[0].target.as_mut().unwrap().id = "300.1.2.3".into(),
            "steps[0].target.id: `300.1.2.3` is not an IP address or CIDR block",
        ),
        (
            "host bits set",
            |r| r.steps[0].target.as_mut().unwrap().id = "10.0.0.5/24".into(),
            "steps[0].target.id: `10.0.0.5/24` has host bits set",
        ),
        (
            "host without ip",
            |r| r.steps.push(step("isolate_host", "host", "web-1", &[])),
            "steps[1].target.attributes.ip:",
        ),
        (
            "oversized target id",
            |r| r.steps[0].target.as_mut().unwrap().id = "1".repeat(300),
            "steps[0].target.id: is longer than 256 bytes",
        ),
        (
            "oversized title",
            |r| r.detection.as_mut().unwrap().title = "x".repeat(5000),
            "detection.title: is longer than 1024 bytes",
        ),
        (
            "oversized reason",
            |r| r.reason = "x".repeat(5000),
            "reason: is longer than 1024 bytes",
        ),
        (
            "too many attributes",
            |r| {
                let t = r.steps[0].target.as_mut().unwrap();
                t.attributes = (0..40).map(|i| (format!("a{i}"), "v".into())).collect();
            },
            "steps[0].target.attributes: 40 entries exceed the limit of 32",
        ),
        (
            "negative ttl",
            |r| {
                r.ttl = Some(parapet_proto::wkt::Duration {
                    seconds: -5,
                    nanos: 0,
                })
            },
            "ttl.seconds: must not be negative",
        ),
        (
            "zero ttl",
            |r| {
                r.ttl = Some(parapet_proto::wkt::Duration {
                    seconds: 0,
                    nanos: 0,
                })
            },
            "ttl: must be positive when set",
        ),
        (
            "finding not JSON",
            |r| r.finding = "{not json".into(),
            "finding: is not JSON",
        ),
        (
            "finding of another class",
            |r| r.finding = r#"{"class_uid": 2001}"#.into(),
            "finding.class_uid: is 2001; a Detection Finding is 2004",
        ),
        (
            "oversized finding",
            |r| r.finding = format!("{{\"x\": \"{}\"}}", "a".repeat(70_000)),
            "finding: is 70009 bytes; at most 65536",
        ),
        (
            "control characters",
            |r| r.idempotency_key = "a\u{0}b".into(),
            "idempotency_key: contains whitespace, control or invisible formatting characters",
        ),
    ];
    let p = Parapet::start().await;
    for (name, mutate, expected) in cases {
        let mut req = block("bad", "198.51.100.7");
        mutate(&mut req);
        let err = p.submit(req).await.expect_err(name);
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{name}: {err:?}");
        assert!(
            err.message().starts_with(expected),
            "{name}: got `{}`, expected `{expected}`",
            err.message()
        );
    }
    // nothing half-written: the journal holds no intent, only the policy the server started on
    let entries = p.entries(pb::QueryJournalRequest::default()).await;
    let kinds: Vec<_> = entries
        .iter()
        .map(|e| (e.kind.as_str(), e.intent_id.as_str()))
        .collect();
    assert_eq!(kinds, [("policy_loaded", "")]);
    let ok = p.submit(block("bad", "198.51.100.7")).await.unwrap();
    assert!(!ok.duplicate);
}

#[tokio::test]
async fn bad_ids_and_filters_are_invalid_arguments() {
    let p = Parapet::start().await;
    let err = p
        .intents()
        .get(pb::GetIntentRequest {
            intent_id: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().starts_with("intent_id:"), "{}", err.message());

    let missing = "01900000-0000-7000-8000-000000000000";
    let err = p
        .intents()
        .get(pb::GetIntentRequest {
            intent_id: missing.into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);

    let req = pb::RollbackRequest {
        intent_id: missing.into(),
        reason: String::new(),
        ..Default::default()
    };
    let err = p.rollbacks().rollback(req).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().starts_with("reason: is required"),
        "{}",
        err.message()
    );

    let req = pb::ListIntentsRequest {
        page_size: 5000,
        ..Default::default()
    };
    let err = p.intents().list(req).await.unwrap_err();
    assert!(err.message().starts_with("page_size:"), "{}", err.message());

    let req = pb::QueryJournalRequest {
        target: Some(pb::Target {
            kind: "ip".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let err = p.journal().query(req).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().starts_with("target:"), "{}", err.message());

    let req = pb::QueryJournalRequest {
        events: vec!["decided".into(), "exploded".into()],
        ..Default::default()
    };
    let err = p.journal().query(req).await.unwrap_err();
    assert!(err.message().starts_with("events[1]:"), "{}", err.message());
    let req = pb::ExportJournalRequest {
        query: Some(pb::QueryJournalRequest {
            outcome: 9,
            ..Default::default()
        }),
        format: 1,
    };
    let err = p.journal().export(req).await.unwrap_err();
    assert!(
        err.message().starts_with("query.outcome:"),
        "{}",
        err.message()
    );
    let req = pb::VerifyJournalRequest {
        expect: vec![pb::ChainPoint {
            seq: 1,
            hash: "xyz".into(),
        }],
    };
    let err = p.journal().verify(req).await.unwrap_err();
    assert!(
        err.message().starts_with("expect[0].hash:"),
        "{}",
        err.message()
    );
    let req = pb::ReplayPolicyRequest {
        policy_toml: "[[detections]]\nid = \"a\"\nmin_confidence = 2.0\n".into(),
        since: Some(parapet_proto::wkt::Timestamp::default()),
        until: None,
    };
    let err = p.journal().replay_policy(req).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().starts_with("policy_toml:") && err.message().contains("line 3"),
        "{}",
        err.message()
    );

    // a message over the size limit is refused before it is read
    let mut huge = block("bad", "198.51.100.7");
    huge.steps[0].params = (0..20)
        .map(|i| (format!("p{i}"), "x".repeat(60_000)))
        .collect();
    let err = p.submit(huge).await.unwrap_err();
    assert!(
        matches!(
            err.code(),
            tonic::Code::OutOfRange | tonic::Code::ResourceExhausted | tonic::Code::InvalidArgument
        ),
        "{err:?}"
    );
}
