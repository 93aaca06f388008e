//! Auditors read the journal back by intent, target, detection and time, page by page.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use parapet_tests::{Parapet, block, v1 as pb};

#[tokio::test]
async fn queries_filter_by_target_detection_intent_and_time() {
    let p = Parapet::start().await;
    let t0 = p.now();
    let a = p
        .submit(block("a", "198.51.100.1"))
        .await
        .unwrap()
        .intent_id;
    p.clock.advance(Duration::from_secs(3600));
    let t1 = p.now();
    let b = p
        .submit(block("b", "198.51.100.2"))
        .await
        .unwrap()
        .intent_id;
    let mut other = block("c", "198.51.100.1");
    other.detection.as_mut().unwrap().rule_id = "ids.ssh_bruteforce".into();
    let c = p.submit(other).await.unwrap().intent_id;
    p.rollback(&a, "fp").await;

    let intents_of = |entries: Vec<pb::JournalEntry>| {
        let mut ids: Vec<String> = entries.into_iter().map(|e| e.intent_id).collect();
        ids.dedup();
        ids
    };
    let by_target = |kind: &str, id: &str| pb::QueryJournalRequest {
        target: Some(pb::Target {
            kind: kind.into(),
            id: id.into(),
            ..Default::default()
        }),
        ..Default::default()
    };

    // the target's whole history, across intents, in journal order
    let entries = p.entries(by_target("ip", "198.51.100.1")).await;
    assert_eq!(entries.len(), 5 + 5 + 3);
    assert!(entries.windows(2).all(|w| w[0].seq < w[1].seq));
    let ids: std::collections::BTreeSet<_> = entries.iter().map(|e| e.intent_id.clone()).collect();
    assert_eq!(ids, [a.clone(), c.clone()].into());

    let q = pb::QueryJournalRequest {
        detection: "ids.ssh_bruteforce".into(),
        ..Default::default()
    };
    assert_eq!(intents_of(p.entries(q).await), vec![c.clone()]);

    // filters combine
    let mut q = by_target("ip", "198.51.100.1");
    q.detection = "edr.c2_beacon".into();
    assert_eq!(intents_of(p.entries(q).await), vec![a.clone()]);

    // time range: [t0, t1) holds the policy the server started on, then only the first
    // intent's submission and execution
    let q = pb::QueryJournalRequest {
        since: Some(parapet_proto::time::timestamp(t0)),
        until: Some(parapet_proto::time::timestamp(t1)),
        ..Default::default()
    };
    let early = p.entries(q).await;
    assert_eq!(early[0].kind, "policy_loaded");
    assert_eq!(early.len(), 1 + 5);
    assert!(early[1..].iter().all(|e| e.intent_id == a));
    let q = pb::QueryJournalRequest {
        since: Some(parapet_proto::time::timestamp(t1)),
        ..Default::default()
    };
    let late = intents_of(p.entries(q).await);
    assert_eq!(late, [b.clone(), c.clone(), a.clone()]);

    // unknown targets have no history
    assert!(p.entries(by_target("ip", "192.0.2.250")).await.is_empty());
}

#[tokio::test]
async fn pages_continue_after_the_last_sequence_number() {
    let p = Parapet::start().await;
    for n in 0..4 {
        p.submit(block(&format!("k{n}"), &format!("198.51.100.{n}")))
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let q = pb::QueryJournalRequest {
            limit: 7,
            after_seq: after,
            ..Default::default()
        };
        let page = p.entries(q).await;
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 7);
        after = page.last().unwrap().seq;
        seen.extend(page.into_iter().map(|e| e.seq));
    }
    // the policy the server started on, then four intents of five entries
    assert_eq!(seen, (1..=21).collect::<Vec<u64>>());
}
