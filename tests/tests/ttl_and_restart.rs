//! TTLs fire on time, including ones that passed while Parapet was down; stopping Parapet
//! never lifts a block.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use parapet_tests::{Parapet, block, hours, v1 as pb};

#[tokio::test]
async fn an_action_is_rolled_back_when_its_ttl_passes() {
    let p = Parapet::start().await;
    let mut req = block("ttl-1", "198.51.100.50");
    req.ttl = Some(hours(4));
    let resp = p.submit(req).await.unwrap();
    let intent = resp.intent.unwrap();
    let activated = p.now();
    assert_eq!(
        intent
            .expires_at
            .map(|t| parapet_proto::time::system_time(&t).unwrap()),
        Some(activated + Duration::from_secs(4 * 3600))
    );

    p.clock.advance(Duration::from_secs(4 * 3600 - 60));
    // still in force a minute before the deadline
    assert_eq!(
        p.get(&resp.intent_id).await.state,
        pb::IntentState::Active as i32
    );
    assert_eq!(p.edl("block").await, "198.51.100.50\n");

    p.clock.advance(Duration::from_secs(61));
    p.wait_for(&resp.intent_id, pb::IntentState::RolledBack)
        .await;
    assert_eq!(p.edl("block").await, "");
    let started = p.entry_of(&resp.intent_id, "rollback_started").await;
    assert_eq!(started.actor, "parapet");
    assert!(
        started.payload_json.contains("\"cause\":\"ttl\""),
        "{}",
        started.payload_json
    );
}

#[tokio::test]
async fn a_repeat_extends_the_ttl_and_the_extension_is_what_fires() {
    let p = Parapet::start().await;
    let mut req = block("ttl-2", "198.51.100.51");
    req.ttl = Some(hours(1));
    let first = p.submit(req.clone()).await.unwrap();

    p.clock.advance(Duration::from_secs(30 * 60));
    req.ttl = Some(hours(2));
    let repeat = p.submit(req.clone()).await.unwrap();
    assert!(repeat.duplicate);
    assert_eq!(repeat.intent_id, first.intent_id);
    let expires =
        parapet_proto::time::system_time(&repeat.intent.unwrap().expires_at.unwrap()).unwrap();
    assert_eq!(expires, p.now() + Duration::from_secs(2 * 3600));

    // the original deadline passes: nothing happens
    p.clock.advance(Duration::from_secs(45 * 60));
    assert_eq!(
        p.get(&first.intent_id).await.state,
        pb::IntentState::Active as i32
    );
    // a shorter repeat never shortens it
    req.ttl = Some(hours(1));
    let shorter = p.submit(req).await.unwrap();
    assert_eq!(
        parapet_proto::time::system_time(&shorter.intent.unwrap().expires_at.unwrap()).unwrap(),
        expires
    );

    p.clock.advance(Duration::from_secs(2 * 3600));
    p.wait_for(&first.intent_id, pb::IntentState::RolledBack)
        .await;
    let story = p.story(&first.intent_id).await;
    assert_eq!(
        story.iter().filter(|k| *k == "ttl_extended").count(),
        1,
        "{story:?}"
    );
}

#[tokio::test]
async fn a_ttl_that_passed_while_parapet_was_down_fires_on_start() {
    let p = Parapet::start().await;
    let mut req = block("down-1", "198.51.100.60");
    req.ttl = Some(hours(1));
    let expiring = p.submit(req).await.unwrap().intent_id;
    let lasting = p
        .submit(block("down-2", "198.51.100.61"))
        .await
        .unwrap()
        .intent_id;

    let stopped = p.stop().await;
    // stopping lifted nothing: the lists on disk still hold both
    stopped.clock.advance(Duration::from_secs(3 * 3600));
    let p = stopped.start().await;

    p.wait_for(&expiring, pb::IntentState::RolledBack).await;
    assert_eq!(p.get(&lasting).await.state, pb::IntentState::Active as i32);
    assert_eq!(p.edl("block").await, "198.51.100.61\n");
    // the restored action can still be rolled back by an operator
    p.rollback(&lasting, "incident closed").await;
    assert_eq!(p.edl("block").await, "");
}

#[tokio::test]
async fn active_actions_and_idempotency_survive_a_restart() {
    let p = Parapet::start().await;
    let mut req = block("keep-1", "198.51.100.70");
    req.ttl = Some(hours(8));
    let first = p.submit(req.clone()).await.unwrap();
    let p = p.stop().await.start().await;

    assert_eq!(p.edl("block").await, "198.51.100.70\n");
    let intent = p.get(&first.intent_id).await;
    assert_eq!(intent.state, pb::IntentState::Active as i32);
    assert_eq!(intent.expires_at, first.intent.unwrap().expires_at);
    let again = p.submit(req).await.unwrap();
    assert!(again.duplicate);
    assert_eq!(again.intent_id, first.intent_id);
    // and the timer was re-armed
    p.clock.advance(Duration::from_secs(8 * 3600));
    p.wait_for(&first.intent_id, pb::IntentState::RolledBack)
        .await;
}
