//! A ceiling for agents: an identity's `max_tier` holds its intents to less autonomy than the
//! detection's tier, until a person approves; everyone else is untouched.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use parapet_orchestrator::service::{Identity, Role};
use parapet_proto::v1 as pb;
use parapet_tests::{Parapet, block};

#[tokio::test]
async fn an_agent_held_to_approval_waits_for_a_person_where_others_act() {
    let p = Parapet::start_configured(None, |c, _| {
        c.auth.identities = vec![Identity {
            name: "triage-agent".into(),
            roles: [Role::Detector].into(),
            detections: None,
            action_kinds: None,
            max_tier: Some(parapet_policy::Tier::Approval),
        }];
    })
    .await
    .unwrap();
    // the example policy's edr.c2_beacon × block_ip is `auto`
    let others = p.submit(block("x-1", "198.51.100.31")).await.unwrap();
    assert_eq!(others.state, pb::IntentState::Active as i32);

    let mut req = block("a-1", "198.51.100.32");
    req.source = "triage-agent".into();
    let held = p.submit(req).await.unwrap();
    assert_eq!(held.state, pb::IntentState::AwaitingApproval as i32);
    let tier = held
        .decision
        .unwrap()
        .reasons
        .into_iter()
        .find(|r| r.guardrail == "autonomy_tier")
        .unwrap();
    assert!(
        tier.message.contains("held to `approval`") && tier.message.contains("max_tier"),
        "{}",
        tier.message
    );
    assert!(!p.edl("block").await.contains("198.51.100.32"));

    // a person approves: it acts
    p.approvals()
        .approve(pb::AnswerRequest {
            intent_id: held.intent_id.clone(),
            reason: "checked the beacon".into(),
            requested_by: "alice".into(),
        })
        .await
        .unwrap();
    let acted = p.wait_for(&held.intent_id, pb::IntentState::Active).await;
    assert_eq!(acted.state, pb::IntentState::Active as i32);
    assert!(p.edl("block").await.contains("198.51.100.32"));
}
