//! Detection platforms retry and send duplicates: the same key is one intent, acting once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use parapet_tests::{Parapet, block, v1 as pb};

#[tokio::test]
async fn a_repeated_key_returns_the_same_intent_and_acts_once() {
    let p = Parapet::start().await;
    let first = p.submit(block("same", "198.51.100.80")).await.unwrap();
    let second = p.submit(block("same", "198.51.100.80")).await.unwrap();
    assert!(!first.duplicate);
    assert!(second.duplicate);
    assert_eq!(first.intent_id, second.intent_id);
    let story = p.story(&first.intent_id).await;
    assert_eq!(
        story.iter().filter(|k| *k == "step_started").count(),
        1,
        "{story:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_duplicates_make_one_intent() {
    let p = Parapet::start().await;
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..24 {
        let mut client = p.intents();
        calls.spawn(async move {
            client
                .submit(block("burst", "198.51.100.81"))
                .await
                .unwrap()
                .into_inner()
        });
    }
    let mut ids = std::collections::BTreeSet::new();
    let mut fresh = 0;
    while let Some(r) = calls.join_next().await {
        let r = r.unwrap();
        fresh += usize::from(!r.duplicate);
        ids.insert(r.intent_id);
    }
    assert_eq!(ids.len(), 1);
    assert_eq!(fresh, 1);
    let received = p
        .entries(pb::QueryJournalRequest {
            detection: "edr.c2_beacon".into(),
            ..Default::default()
        })
        .await
        .into_iter()
        .filter(|e| e.kind == "received")
        .count();
    assert_eq!(received, 1);
    assert_eq!(p.edl("block").await, "198.51.100.81\n");
}

#[tokio::test]
async fn a_key_reused_for_a_different_request_is_refused() {
    let p = Parapet::start().await;
    let first = p.submit(block("reused", "198.51.100.82")).await.unwrap();
    let err = p
        .submit(block("reused", "198.51.100.83"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::AlreadyExists);
    assert!(
        err.message().contains(&first.intent_id),
        "{}",
        err.message()
    );
    assert_eq!(p.edl("block").await, "198.51.100.82\n");
}

#[tokio::test]
async fn keys_are_scoped_by_source() {
    let p = Parapet::start().await;
    let a = p.submit(block("k", "198.51.100.84")).await.unwrap();
    let mut other = block("k", "198.51.100.84");
    other.source = "siem".into();
    let b = p.submit(other).await.unwrap();
    assert_ne!(a.intent_id, b.intent_id);
    assert!(!b.duplicate);
}
