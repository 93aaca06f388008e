//! Decisions from the policy file, each with its reasons.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use parapet_tests::{Parapet, block, reason, step, v1 as pb};

fn reasons(resp: &pb::SubmitIntentResponse) -> Vec<(String, i32)> {
    resp.decision
        .as_ref()
        .unwrap()
        .reasons
        .iter()
        .map(|r| (r.guardrail.clone(), r.effect))
        .collect()
}

#[tokio::test]
async fn an_unknown_detection_never_acts_alone() {
    let p = Parapet::start().await;
    let mut req = block("u1", "198.51.100.90");
    req.detection.as_mut().unwrap().rule_id = "made.up".into();
    let resp = p.submit(req).await.unwrap();
    assert_eq!(
        resp.decision.as_ref().unwrap().outcome,
        pb::Outcome::AwaitApproval as i32
    );
    assert_eq!(resp.state, pb::IntentState::AwaitingApproval as i32);
    assert_eq!(
        reasons(&resp),
        [("inventory".to_owned(), pb::Outcome::AwaitApproval as i32)]
    );
    assert_eq!(
        resp.decision.unwrap().reasons[0].message,
        "detection `made.up` is not in the inventory"
    );
    assert_eq!(p.edl("block").await, "");
    // nothing to roll back while it waits
    let err = p
        .rollbacks()
        .rollback(pb::RollbackRequest {
            intent_id: resp.intent_id,
            reason: "x".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
}

#[tokio::test]
async fn a_policy_can_deny_unknown_detections() {
    let p = Parapet::start_with_policy(Some("[defaults]\nunknown_detection = \"deny\"\n")).await;
    let mut req = block("u2", "198.51.100.91");
    req.detection.as_mut().unwrap().rule_id = "made.up".into();
    let resp = p.submit(req).await.unwrap();
    assert_eq!(resp.state, pb::IntentState::Denied as i32);
    assert_eq!(p.story(&resp.intent_id).await, ["received", "decided"]);
}

#[tokio::test]
async fn shadow_records_what_would_have_been_done_and_does_nothing() {
    let p = Parapet::start().await;
    let mut req = block("s1", "198.51.100.92");
    req.detection.as_mut().unwrap().rule_id = "ml.anomalous_login".into();
    let resp = p.submit(req).await.unwrap();
    assert_eq!(resp.state, pb::IntentState::Shadowed as i32);
    let intent = p.get(&resp.intent_id).await;
    assert_eq!(intent.steps[0].target.as_ref().unwrap().id, "198.51.100.92");
    assert_eq!(p.edl("block").await, "");
}

#[tokio::test]
async fn broad_address_blocks_are_denied_with_the_reason() {
    let p = Parapet::start().await;
    for (n, cidr) in ["0.0.0.0/0", "10.0.0.0/8", "2001:db8::/32"]
        .iter()
        .enumerate()
    {
        let resp = p.submit(block(&format!("b{n}"), cidr)).await.unwrap();
        assert_eq!(resp.state, pb::IntentState::Denied as i32, "{cidr}");
        let d = resp.decision.unwrap();
        let scope = d
            .reasons
            .iter()
            .find(|r| r.guardrail == "target_scope")
            .unwrap();
        assert_eq!(scope.effect, pb::Outcome::Deny as i32);
        assert!(
            scope
                .message
                .contains("broader than the policy's minimum prefix"),
            "{}",
            scope.message
        );
        assert_eq!(scope.step, Some(0));
    }
    // a /24 is narrow enough under the example policy
    let ok = p.submit(block("b9", "198.51.100.0/24")).await.unwrap();
    assert_eq!(ok.state, pb::IntentState::Active as i32);
    assert_eq!(p.edl("block").await, "198.51.100.0/24\n");
}

#[tokio::test]
async fn below_the_detection_threshold_it_waits_for_a_person() {
    let p = Parapet::start().await;
    let mut req = block("t1", "198.51.100.93");
    req.detection.as_mut().unwrap().confidence = 0.5;
    let resp = p.submit(req).await.unwrap();
    assert_eq!(resp.state, pb::IntentState::AwaitingApproval as i32);
    let threshold = reason(&resp, "threshold");
    assert_eq!(
        threshold.message,
        "confidence 0.5 is below 0.8: not acting alone"
    );
}

#[tokio::test]
async fn an_action_kind_the_detection_was_not_granted_is_denied() {
    let p = Parapet::start().await;
    let mut req = block("f1", "unused");
    req.detection.as_mut().unwrap().rule_id = "ids.ssh_bruteforce".into();
    req.steps = vec![step(
        "isolate_host",
        "host",
        "web-1",
        &[("ip", "192.0.2.5")],
    )];
    let resp = p.submit(req).await.unwrap();
    assert_eq!(resp.state, pb::IntentState::Denied as i32);
    let tier = reason(&resp, "autonomy_tier");
    assert_eq!(
        tier.message,
        "`ids.ssh_bruteforce` × `isolate_host` is `forbidden` (not granted)"
    );
}

#[tokio::test]
async fn a_failing_step_is_compensated_and_the_intent_fails_with_its_cause() {
    // step 1 is a /8 that a careless policy allows; the EDL adapter's own floor (/16) refuses it
    let policy = "[defaults]\nmin_prefix_v4 = 0\n[[detections]]\nid = \"edr.c2_beacon\"\n[detections.actions]\nblock_ip = \"auto\"\n";
    let p = Parapet::start_with_policy(Some(policy)).await;
    let mut req = block("c1", "198.51.100.94");
    req.steps.push(step("block_ip", "ip", "10.0.0.0/8", &[]));
    let resp = p.submit(req).await.unwrap();
    assert_eq!(resp.state, pb::IntentState::Failed as i32);
    let intent = resp.intent.unwrap();
    assert!(
        intent.error.contains("step 1 (`block_ip`) failed"),
        "{}",
        intent.error
    );
    assert_eq!(
        intent.step_status[0].state,
        pb::StepState::RolledBack as i32
    );
    assert_eq!(intent.step_status[1].state, pb::StepState::Failed as i32);
    assert_eq!(p.edl("block").await, "");
    assert_eq!(
        p.story(&intent.intent_id).await,
        [
            "received",
            "decided",
            "step_started",
            "step_succeeded",
            "step_started",
            "step_failed",
            "rollback_started",
            "step_rolled_back",
            "failed"
        ]
    );
}

const GUARDED: &str = r#"
[[detections]]
id = "edr.c2_beacon"
[detections.actions]
block_ip = "auto"
isolate_host = "auto"

[[protected]]
name = "domain controllers"
tags = ["domain-controller"]
effect = "deny"

[[protected]]
name = "payment network"
cidrs = ["10.20.0.0/24"]
effect = "approval"

[[freezes]]
name = "quarter close"
start = "2027-01-15T09:00"
end = "2027-01-15T17:00"
time_zone = "UTC"
action_kinds = ["isolate_host"]
"#;

#[tokio::test]
async fn protected_targets_are_never_acted_on_alone() {
    let p = Parapet::start_with_policy(Some(GUARDED)).await;
    let mut dc = block("p1", "unused");
    dc.steps = vec![step(
        "isolate_host",
        "host",
        "dc01",
        &[("tags", "windows,domain-controller"), ("ip", "10.1.0.5")],
    )];
    let r = p.submit(dc).await.unwrap();
    assert_eq!(r.state, pb::IntentState::Denied as i32);
    let why = reason(&r, "protected_target");
    assert_eq!(
        why.message,
        "`host:dc01` is protected by `domain controllers` and is never acted on"
    );

    let r = p.submit(block("p2", "10.20.0.7")).await.unwrap();
    assert_eq!(r.state, pb::IntentState::AwaitingApproval as i32);
    assert_eq!(p.edl("block").await, "");
}

#[tokio::test]
async fn a_change_freeze_turns_automatic_isolation_into_approval() {
    let p = Parapet::start_with_policy(Some(GUARDED)).await;
    let isolate = |key: &str| {
        let mut req = block(key, "unused");
        req.steps = vec![step(
            "isolate_host",
            "host",
            "web-1",
            &[("ip", "192.0.2.8")],
        )];
        req
    };
    // the test clock starts at 08:00 UTC on 2027-01-15, an hour before the freeze
    assert_eq!(
        p.submit(isolate("f1")).await.unwrap().state,
        pb::IntentState::Active as i32
    );
    p.clock.advance(std::time::Duration::from_secs(3600));
    let frozen = p.submit(isolate("f2")).await.unwrap();
    assert_eq!(frozen.state, pb::IntentState::AwaitingApproval as i32);
    let why = reason(&frozen, "change_freeze");
    assert_eq!(
        why.message,
        "`isolate_host` is frozen by `quarter close`: a person must approve"
    );
    // blocks are not frozen
    assert_eq!(
        p.submit(block("f3", "198.51.100.3")).await.unwrap().state,
        pb::IntentState::Active as i32
    );
}

#[tokio::test]
async fn a_reloaded_policy_decides_new_intents_and_a_broken_one_is_refused() {
    let p = Parapet::start_with_policy(Some(GUARDED)).await;
    let first = p.submit(block("r1", "198.51.100.1")).await.unwrap();
    assert_eq!(first.state, pb::IntentState::Active as i32);
    let old_digest = first.decision.unwrap().policy_digest;

    p.write_policy(&GUARDED.replace(
        "[[detections]]",
        "[defaults]\nshadow = true\n\n[[detections]]",
    ));
    let reloaded = p
        .admin()
        .reload_policy(pb::ReloadPolicyRequest {
            requested_by: "carol".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reloaded.previous_digest, old_digest);
    assert_ne!(reloaded.policy_digest, old_digest);
    let shadowed = p.submit(block("r2", "198.51.100.2")).await.unwrap();
    assert_eq!(shadowed.state, pb::IntentState::Shadowed as i32);
    assert_eq!(
        shadowed.decision.unwrap().policy_digest,
        reloaded.policy_digest
    );
    // the intent decided before keeps its decision and its policy
    assert_eq!(
        p.get(&first.intent_id)
            .await
            .decision
            .unwrap()
            .policy_digest,
        old_digest
    );

    p.write_policy("[[detections]]\nid = \"x\"\n[detections.actions]\nblock_ip = \"sometimes\"\n");
    let err = p
        .admin()
        .reload_policy(pb::ReloadPolicyRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert!(err.message().contains("line 4"), "{}", err.message());
    let still = p.submit(block("r3", "198.51.100.3")).await.unwrap();
    assert_eq!(
        still.decision.unwrap().policy_digest,
        reloaded.policy_digest
    );

    let policy_events: Vec<_> = p
        .entries(pb::QueryJournalRequest::default())
        .await
        .into_iter()
        .filter(|e| e.kind.starts_with("policy_"))
        .map(|e| (e.kind, e.actor))
        .collect();
    assert_eq!(
        policy_events,
        [
            ("policy_loaded".to_owned(), "parapet".to_owned()),
            ("policy_loaded".to_owned(), "carol".to_owned()),
            ("policy_refused".to_owned(), "anonymous".to_owned()),
        ]
    );
}
