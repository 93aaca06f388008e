//! A ceiling for agents: an identity's `max_tier` holds its intents to less autonomy than the
//! detection's tier, until a person approves; everyone else is untouched.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use parapet_orchestrator::service::{Identity, Role};
use parapet_proto::v1 as pb;
use parapet_tests::{Parapet, block};

/// The example policy, and an agent `triage-agent` held to approval.
async fn with_agent() -> Parapet {
    Parapet::start_configured(None, |c, _| {
        c.auth.identities = vec![Identity {
            name: "triage-agent".into(),
            roles: [Role::Detector].into(),
            detections: None,
            action_kinds: None,
            max_tier: Some(parapet_policy::Tier::Approval),
        }];
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn an_agent_held_to_approval_waits_for_a_person_where_others_act() {
    let p = with_agent().await;
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

#[tokio::test]
async fn what_if_says_what_would_happen_and_does_nothing() {
    let p = with_agent().await;
    let journaled = || async { p.entries(pb::QueryJournalRequest::default()).await.len() };
    let before = journaled().await;
    // a domain controller: the example policy protects it, and the answer names the rule
    let mut dc = block("w-1", "192.0.2.77");
    dc.steps[0].target.as_mut().unwrap().attributes =
        [("tags".to_owned(), "domain-controller".to_owned())].into();
    let decision = p.intents().what_if(dc).await.unwrap().into_inner();
    assert_eq!(decision.outcome, pb::Outcome::Deny as i32);
    assert!(
        decision
            .reasons
            .iter()
            .any(|r| r.guardrail == "protected_target" && r.message.contains("domain controllers")),
        "{:?}",
        decision.reasons
    );
    // an agent held to approval: would wait
    let mut agents = block("w-2", "198.51.100.41");
    agents.source = "triage-agent".into();
    let decision = p.intents().what_if(agents).await.unwrap().into_inner();
    assert_eq!(decision.outcome, pb::Outcome::AwaitApproval as i32);
    // one that would act: says so, and does not
    let decision = p
        .intents()
        .what_if(block("w-3", "198.51.100.42"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(decision.outcome, pb::Outcome::Execute as i32);
    assert!(!p.edl("block").await.contains("198.51.100.42"));
    // nothing journaled, no budget taken
    assert_eq!(journaled().await, before);
    let status = p
        .admin()
        .get_status(pb::GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(
        status.budgets.iter().all(|b| b.active == 0),
        "{:?}",
        status.budgets
    );
    // a bad address is refused by name, as a submission's is
    let e = p
        .intents()
        .what_if(block("w-4", "012.024.0.5"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(
        e.message().starts_with("steps[0].target.id"),
        "{}",
        e.message()
    );
}
