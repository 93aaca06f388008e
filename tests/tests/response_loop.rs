//! The whole loop over gRPC: submit, act, serve the list, roll back, read the journal.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use parapet_tests::{Parapet, block, v1 as pb};

#[tokio::test]
async fn a_block_is_served_to_firewalls_and_an_operator_rolls_it_back() {
    let p = Parapet::start().await;
    let resp = p.submit(block("alert-1", "198.51.100.7")).await.unwrap();
    let decision = resp.decision.unwrap();
    assert_eq!(decision.outcome, pb::Outcome::Execute as i32);
    assert!(decision.policy_digest.starts_with("sha256:"));
    let guardrails: Vec<_> = decision
        .reasons
        .iter()
        .map(|r| r.guardrail.as_str())
        .collect();
    assert_eq!(
        guardrails,
        [
            "inventory",
            "autonomy_tier",
            "threshold",
            "budget",
            "rate_limit"
        ]
    );
    assert_eq!(resp.state, pb::IntentState::Active as i32);
    assert_eq!(p.edl("block").await, "198.51.100.7\n");

    let id = resp.intent_id;
    let rolled = p.rollback(&id, "false positive: CDN address").await;
    assert_eq!(rolled.state, pb::IntentState::RolledBack as i32);
    assert!(!rolled.noop);
    assert_eq!(p.edl("block").await, "");

    // a second rollback changes nothing
    let again = p.rollback(&id, "again").await;
    assert!(again.noop);
    assert_eq!(again.state, pb::IntentState::RolledBack as i32);

    assert_eq!(
        p.story(&id).await,
        [
            "received",
            "decided",
            "step_started",
            "step_succeeded",
            "activated",
            "rollback_started",
            "step_rolled_back",
            "rolled_back"
        ]
    );
    let started = p.entry_of(&id, "rollback_started").await;
    assert_eq!(started.actor, "alice@soc");
    assert!(
        started.payload_json.contains("false positive: CDN address"),
        "{}",
        started.payload_json
    );
}

#[tokio::test]
async fn without_wait_submit_answers_once_decided_and_watch_shows_progress() {
    let p = Parapet::start().await;
    let mut req = block("alert-2", "203.0.113.9");
    req.wait = false;
    let resp = p.submit(req).await.unwrap();
    // durable and decided when the answer comes; execution may still be running
    assert!(
        [
            pb::IntentState::Decided,
            pb::IntentState::Executing,
            pb::IntentState::Active
        ]
        .iter()
        .any(|s| *s as i32 == resp.state),
        "{}",
        resp.state
    );
    let active = p.wait_for(&resp.intent_id, pb::IntentState::Active).await;
    assert_eq!(active.step_status[0].state, pb::StepState::Done as i32);
    assert_eq!(active.step_status[0].adapter, "edl");
    assert_eq!(
        p.get(&resp.intent_id).await.state,
        pb::IntentState::Active as i32
    );
}

#[tokio::test]
async fn isolation_puts_the_host_address_on_the_quarantine_list() {
    let policy =
        "[[detections]]\nid = \"edr.ransomware\"\n[detections.actions]\nisolate_host = \"auto\"\n";
    let p = Parapet::start_with_policy(Some(policy)).await;
    let mut req = block("alert-3", "unused");
    req.detection.as_mut().unwrap().rule_id = "edr.ransomware".into();
    req.steps = vec![parapet_tests::step(
        "isolate_host",
        "host",
        "laptop-42",
        &[("ip", "192.0.2.42")],
    )];
    let resp = p.submit(req).await.unwrap();
    assert_eq!(resp.state, pb::IntentState::Active as i32);
    assert_eq!(p.edl("quarantine").await, "192.0.2.42\n");
    assert_eq!(p.edl("block").await, "");
    p.rollback(&resp.intent_id, "host cleaned").await;
    assert_eq!(p.edl("quarantine").await, "");
}

#[tokio::test]
async fn two_intents_on_one_address_do_not_undo_each_other() {
    let p = Parapet::start().await;
    let a = p
        .submit(block("a", "198.51.100.20"))
        .await
        .unwrap()
        .intent_id;
    let b = p
        .submit(block("b", "198.51.100.20"))
        .await
        .unwrap()
        .intent_id;
    p.rollback(&a, "done with a").await;
    assert_eq!(p.edl("block").await, "198.51.100.20\n");
    p.rollback(&b, "done with b").await;
    assert_eq!(p.edl("block").await, "");
}

#[tokio::test]
async fn list_filters_by_state_and_pages_newest_first() {
    let p = Parapet::start().await;
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(
            p.submit(block(&format!("k{n}"), &format!("198.51.100.{n}")))
                .await
                .unwrap()
                .intent_id,
        );
    }
    p.rollback(&ids[1], "fp").await;
    let list = |states: Vec<pb::IntentState>, page_size, page_token: String| {
        let req = pb::ListIntentsRequest {
            states: states.into_iter().map(|s| s as i32).collect(),
            page_size,
            page_token,
            ..Default::default()
        };
        let mut client = p.intents();
        async move { client.list(req).await.unwrap().into_inner() }
    };
    let active = list(vec![pb::IntentState::Active], 0, String::new()).await;
    let got: Vec<_> = active.intents.iter().map(|i| i.intent_id.clone()).collect();
    assert_eq!(
        got,
        [
            ids[4].clone(),
            ids[3].clone(),
            ids[2].clone(),
            ids[0].clone()
        ]
    );

    let first = list(vec![], 2, String::new()).await;
    assert_eq!(first.intents.len(), 2);
    let second = list(vec![], 2, first.next_page_token.clone()).await;
    let third = list(vec![], 2, second.next_page_token.clone()).await;
    assert_eq!(third.intents.len(), 1);
    assert!(third.next_page_token.is_empty());
    let all: Vec<_> = [first, second, third]
        .iter()
        .flat_map(|p| p.intents.iter().map(|i| i.intent_id.clone()))
        .collect();
    let newest_first: Vec<_> = ids.iter().rev().cloned().collect();
    assert_eq!(all, newest_first);
}
