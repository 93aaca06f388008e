//! Rolling back everything one detection did, as one operation, over gRPC.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use parapet_tests::{Parapet, block, v1 as pb};

#[tokio::test]
async fn a_bulk_rollback_undoes_what_the_selector_matches_and_nothing_else() {
    let p = Parapet::start().await;
    let mut bad = Vec::new();
    for n in 0..20 {
        bad.push(
            p.submit(block(&format!("bad{n}"), &format!("198.51.100.{n}")))
                .await
                .unwrap()
                .intent_id,
        );
    }
    let mut other = block("keep", "203.0.113.1");
    other.detection.as_mut().unwrap().rule_id = "ids.ssh_bruteforce".into();
    let keep = p.submit(other).await.unwrap().intent_id;

    let req = pb::RollbackSelectedRequest {
        detection: "edr.c2_beacon".into(),
        reason: "rule misfired after the feed update".into(),
        requested_by: "alice".into(),
        concurrency: 4,
        ..Default::default()
    };
    let mut stream = p
        .rollbacks()
        .rollback_selected(req)
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert_eq!(first.total, 20);
    assert!(first.intent_id.is_empty());
    let mut seen = Vec::new();
    while let Some(progress) = stream.message().await.unwrap() {
        assert_eq!(progress.operation_id, first.operation_id);
        assert_eq!(
            progress.state,
            pb::IntentState::RolledBack as i32,
            "{}",
            progress.error
        );
        seen.push((progress.done, progress.intent_id));
    }
    assert_eq!(
        seen.iter().map(|s| s.0).collect::<Vec<_>>(),
        (1..=20).collect::<Vec<u32>>()
    );
    let mut ids: Vec<_> = seen.into_iter().map(|s| s.1).collect();
    ids.sort();
    bad.sort();
    assert_eq!(ids, bad);
    assert_eq!(p.edl("block").await, "203.0.113.1\n");
    assert_eq!(p.get(&keep).await.state, pb::IntentState::Active as i32);

    // one operation in the journal, with its members, and each member says which operation
    let system: Vec<_> = p
        .entries(pb::QueryJournalRequest::default())
        .await
        .into_iter()
        .filter(|e| e.kind.starts_with("bulk_rollback"))
        .collect();
    assert_eq!(system.len(), 2);
    assert_eq!(system[0].actor, "alice");
    let started: serde_json::Value = serde_json::from_str(&system[0].payload_json).unwrap();
    assert_eq!(started["selector"], "detection=edr.c2_beacon");
    assert_eq!(started["op"], first.operation_id.as_str());
    assert_eq!(started["members"].as_array().unwrap().len(), 20);
    let finished: serde_json::Value = serde_json::from_str(&system[1].payload_json).unwrap();
    assert_eq!(
        (
            finished["rolled_back"].as_u64(),
            finished["failed"].as_u64()
        ),
        (Some(20), Some(0))
    );
    let member = p.entry_of(&bad[3], "rollback_started").await;
    assert!(
        member.payload_json.contains(&first.operation_id),
        "{}",
        member.payload_json
    );
}

#[tokio::test]
async fn a_bulk_rollback_needs_a_selector_and_a_reason() {
    let p = Parapet::start().await;
    let req = pb::RollbackSelectedRequest {
        reason: "everything".into(),
        ..Default::default()
    };
    let err = p.rollbacks().rollback_selected(req).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().starts_with("selector:"), "{}", err.message());
    let req = pb::RollbackSelectedRequest {
        source: "xdr".into(),
        ..Default::default()
    };
    let err = p.rollbacks().rollback_selected(req).await.unwrap_err();
    assert!(err.message().starts_with("reason:"), "{}", err.message());
}
