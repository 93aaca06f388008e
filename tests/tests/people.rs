//! People in the loop over gRPC: approvals, rejections, expiry, four eyes, verdicts, suppression.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use parapet_proto::v1::{approvals_client::ApprovalsClient, verdicts_client::VerdictsClient};
use parapet_tests::{Parapet, block, reason, v1 as pb};

const POLICY: &str = r#"
[approvals]
timeout = "1h"
four_eyes = true

[verdicts]
suppress_for = "12h"

[[detections]]
id = "edr.c2_beacon"
[detections.actions]
block_ip = "auto"

[[detections]]
id = "ml.odd_login"
[detections.actions]
block_ip = "approval"

[[budgets]]
name = "one block"
max_active = 1
"#;

fn answer(id: &str, by: &str) -> pb::AnswerRequest {
    pb::AnswerRequest {
        intent_id: id.into(),
        reason: "looked at it".into(),
        requested_by: by.into(),
    }
}

fn waiting(key: &str, ip: &str) -> pb::SubmitIntentRequest {
    let mut req = block(key, ip);
    req.detection.as_mut().unwrap().rule_id = "ml.odd_login".into();
    req
}

#[tokio::test]
async fn an_approved_intent_acts_after_the_guardrails_agree_again() {
    let p = Parapet::start_with_policy(Some(POLICY)).await;
    let mut approvals = ApprovalsClient::new(p.channel.clone());
    let pending = p.submit(waiting("w1", "198.51.100.1")).await.unwrap();
    assert_eq!(pending.state, pb::IntentState::AwaitingApproval as i32);
    let list = approvals
        .list_pending(pb::ListPendingRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.intents.len(), 1);
    assert_eq!(list.intents[0].intent_id, pending.intent_id);

    // the only budget slot is taken meanwhile: the approval is refused and the intent waits
    let other = p.submit(block("a1", "198.51.100.2")).await.unwrap();
    assert_eq!(other.state, pb::IntentState::Active as i32);
    let err = approvals
        .approve(answer(&pending.intent_id, "bob"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert!(
        err.message().contains("budget `one block`"),
        "{}",
        err.message()
    );
    assert_eq!(
        p.get(&pending.intent_id).await.state,
        pb::IntentState::AwaitingApproval as i32
    );

    p.rollback(&other.intent_id, "make room").await;
    let approved = approvals
        .approve(answer(&pending.intent_id, "bob"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        approved.decision.unwrap().outcome,
        pb::Outcome::Execute as i32
    );
    p.wait_for(&pending.intent_id, pb::IntentState::Active)
        .await;
    assert_eq!(p.edl("block").await, "198.51.100.1\n");
    let entry = p.entry_of(&pending.intent_id, "approved").await;
    assert_eq!(entry.actor, "bob");
    assert!(
        approvals
            .list_pending(pb::ListPendingRequest {})
            .await
            .unwrap()
            .into_inner()
            .intents
            .is_empty()
    );
}

#[tokio::test]
async fn four_eyes_and_rejection() {
    let p = Parapet::start_with_policy(Some(POLICY)).await;
    let mut approvals = ApprovalsClient::new(p.channel.clone());
    let mut req = waiting("w2", "198.51.100.3");
    req.source = "alice".into();
    let id = p.submit(req).await.unwrap().intent_id;
    let err = approvals.approve(answer(&id, "alice")).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    assert!(err.message().contains("four-eyes"), "{}", err.message());

    let rejected = approvals
        .reject(answer(&id, "bob"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rejected.state, pb::IntentState::Rejected as i32);
    assert_eq!(p.edl("block").await, "");
    // answered intents cannot be answered again
    let err = approvals.approve(answer(&id, "carol")).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
}

#[tokio::test]
async fn an_unanswered_intent_is_rejected_after_the_timeout_even_across_a_restart() {
    let p = Parapet::start_with_policy(Some(POLICY)).await;
    let first = p
        .submit(waiting("w3", "198.51.100.4"))
        .await
        .unwrap()
        .intent_id;
    let second = p
        .submit(waiting("w4", "198.51.100.5"))
        .await
        .unwrap()
        .intent_id;
    p.clock.advance(Duration::from_secs(61 * 60));
    p.wait_for(&first, pb::IntentState::Rejected).await;
    let entry = p.entry_of(&first, "rejected").await;
    assert_eq!(entry.actor, "parapet");
    assert!(
        entry.payload_json.contains("no answer within 1h"),
        "{}",
        entry.payload_json
    );

    // the same holds for a deadline that passes while Parapet is down
    let third = p
        .submit(waiting("w5", "198.51.100.6"))
        .await
        .unwrap()
        .intent_id;
    let stopped = p.stop().await;
    stopped.clock.advance(Duration::from_secs(2 * 3600));
    let p = stopped.start().await;
    p.wait_for(&third, pb::IntentState::Rejected).await;
    assert_eq!(p.get(&second).await.state, pb::IntentState::Rejected as i32);
}

#[tokio::test]
async fn a_false_positive_rolls_back_and_suppresses_the_same_detection_on_the_same_target() {
    let p = Parapet::start_with_policy(Some(&POLICY.replace("max_active = 1", "max_active = 10")))
        .await;
    let mut verdicts = VerdictsClient::new(p.channel.clone());
    let bad = p
        .submit(block("v1", "198.51.100.7"))
        .await
        .unwrap()
        .intent_id;
    let good = p
        .submit(block("v2", "198.51.100.8"))
        .await
        .unwrap()
        .intent_id;

    let judge = |id: &str, verdict: pb::VerdictKind| pb::VerdictRequest {
        intent_id: id.into(),
        verdict: verdict.into(),
        note: "CDN address".into(),
        requested_by: "alice".into(),
    };
    let judged = verdicts
        .judge(judge(&bad, pb::VerdictKind::FalsePositive))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(judged.state, pb::IntentState::RolledBack as i32);
    verdicts
        .judge(judge(&good, pb::VerdictKind::TruePositive))
        .await
        .unwrap();
    assert_eq!(p.edl("block").await, "198.51.100.8\n");

    // the next detection of the same thing does not act again, even after a restart
    let p = p.stop().await.start().await;
    let again = p.submit(block("v3", "198.51.100.7")).await.unwrap();
    assert_eq!(again.state, pb::IntentState::Denied as i32);
    let why = reason(&again, "suppression");
    assert!(
        why.message.contains("judged a false positive by `alice`"),
        "{}",
        why.message
    );
    // a different target is not suppressed
    assert_eq!(
        p.submit(block("v4", "198.51.100.9")).await.unwrap().state,
        pb::IntentState::Active as i32
    );
    // and the window ends
    p.clock.advance(Duration::from_secs(12 * 3600));
    assert_eq!(
        p.submit(block("v5", "198.51.100.7")).await.unwrap().state,
        pb::IntentState::Active as i32
    );

    let mut verdicts = VerdictsClient::new(p.channel.clone());
    let rows = verdicts
        .precision(pb::PrecisionRequest {})
        .await
        .unwrap()
        .into_inner()
        .rows;
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(
        (
            row.detection.as_str(),
            row.action_kind.as_str(),
            row.tier.as_str()
        ),
        ("edr.c2_beacon", "block_ip", "auto")
    );
    assert_eq!((row.true_positives, row.false_positives), (1, 1));
}

#[tokio::test]
async fn verdicts_on_shadowed_intents_count_toward_precision() {
    let p = Parapet::start().await;
    let mut req = block("s1", "198.51.100.10");
    req.detection.as_mut().unwrap().rule_id = "ml.anomalous_login".into();
    let shadowed = p.submit(req).await.unwrap();
    assert_eq!(shadowed.state, pb::IntentState::Shadowed as i32);
    let mut verdicts = VerdictsClient::new(p.channel.clone());
    let req = pb::VerdictRequest {
        intent_id: shadowed.intent_id.clone(),
        verdict: pb::VerdictKind::TruePositive.into(),
        note: String::new(),
        requested_by: "alice".into(),
    };
    let judged = verdicts.judge(req).await.unwrap().into_inner();
    assert_eq!(judged.state, pb::IntentState::Shadowed as i32);
    let rows = verdicts
        .precision(pb::PrecisionRequest {})
        .await
        .unwrap()
        .into_inner()
        .rows;
    assert_eq!(
        (rows[0].tier.as_str(), rows[0].true_positives),
        ("shadow", 1)
    );
}

#[tokio::test]
async fn a_detection_with_too_many_false_positives_is_demoted_until_restored() {
    let policy = POLICY
        .replace(
            "suppress_for = \"12h\"",
            "suppress_for = \"1m\"\ndemote_above = 0.5\ndemote_min_verdicts = 2",
        )
        .replace("max_active = 1", "max_active = 10");
    let p = Parapet::start_with_policy(Some(&policy)).await;
    let mut verdicts = VerdictsClient::new(p.channel.clone());
    for n in 0..2 {
        let id = p
            .submit(block(&format!("d{n}"), &format!("198.51.100.{n}")))
            .await
            .unwrap()
            .intent_id;
        let req = pb::VerdictRequest {
            intent_id: id,
            verdict: pb::VerdictKind::FalsePositive.into(),
            note: String::new(),
            requested_by: "alice".into(),
        };
        verdicts.judge(req).await.unwrap();
    }
    // two of two verdicts were false positives: auto now needs approval, and says why
    let next = p.submit(block("d2", "198.51.100.20")).await.unwrap();
    assert_eq!(next.state, pb::IntentState::AwaitingApproval as i32);
    let tier = reason(&next, "autonomy_tier");
    assert!(
        tier.message.contains("demoted to `approval`"),
        "{}",
        tier.message
    );
    let demoted = p
        .entries(pb::QueryJournalRequest::default())
        .await
        .into_iter()
        .find(|e| e.kind == "detection_demoted")
        .unwrap();
    assert_eq!(demoted.actor, "parapet");
    assert!(
        demoted.payload_json.contains("2 of 2 verdicts"),
        "{}",
        demoted.payload_json
    );

    // it stays demoted across a restart, until an operator restores it
    let p = p.stop().await.start().await;
    let status = p
        .admin()
        .get_status(pb::GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.demoted_detections, ["edr.c2_beacon"]);
    let req = pb::SetDemotionRequest {
        detection: "edr.c2_beacon".into(),
        demoted: false,
        reason: "rule fixed".into(),
        requested_by: "carol".into(),
    };
    assert!(
        p.admin()
            .set_demotion(req)
            .await
            .unwrap()
            .into_inner()
            .demoted_detections
            .is_empty()
    );
    assert_eq!(
        p.submit(block("d3", "198.51.100.30")).await.unwrap().state,
        pb::IntentState::Active as i32
    );
}

#[tokio::test]
async fn an_unanswered_intent_escalates_group_by_group_and_the_webhook_hears_of_it() {
    // a webhook that records what it is sent
    let (tx, mut heard) = tokio::sync::mpsc::unbounded_channel::<String>();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: String| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(body);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let policy = POLICY.replace(
        "four_eyes = true",
        "four_eyes = true\ngroups = [\"soc-l1\", \"soc-l2\", \"soc-lead\"]\n[approvals.escalate_after]\ncritical = \"15m\"",
    );
    let p = Parapet::start_with(Some(&policy), Some(hook)).await;
    let id = p
        .submit(waiting("e1", "198.51.100.40"))
        .await
        .unwrap()
        .intent_id;

    p.clock.advance(Duration::from_secs(15 * 60));
    let first = tokio::time::timeout(Duration::from_secs(10), heard.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        first.contains(&id) && first.contains("\"group\":\"soc-l2\""),
        "{first}"
    );
    let entry = p.entry_of(&id, "escalated").await;
    assert!(
        entry.payload_json.contains("soc-l2"),
        "{}",
        entry.payload_json
    );

    p.clock.advance(Duration::from_secs(15 * 60));
    let second = tokio::time::timeout(Duration::from_secs(10), heard.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        second.contains("\"group\":\"soc-lead\"") && second.contains("\"level\":2"),
        "{second}"
    );
    // the last group has nobody to escalate to; the intent still waits for an answer
    assert_eq!(
        p.get(&id).await.state,
        pb::IntentState::AwaitingApproval as i32
    );
    let escalations = p
        .entries(pb::QueryJournalRequest {
            intent_id: id.clone(),
            ..Default::default()
        })
        .await
        .into_iter()
        .filter(|e| e.kind == "escalated")
        .count();
    assert_eq!(escalations, 2);
}

#[tokio::test]
async fn a_true_positive_that_reaches_the_minimum_demotes_too_and_old_verdicts_do_not_count_twice()
{
    // the reported case: FP, FP, TP with a minimum of three and a limit of one half
    let policy = POLICY
        .replace(
            "suppress_for = \"12h\"",
            "suppress_for = \"1m\"\ndemote_above = 0.5\ndemote_window = \"7d\"\ndemote_min_verdicts = 3",
        )
        .replace("max_active = 1", "max_active = 10");
    let p = Parapet::start_with_policy(Some(&policy)).await;
    let mut verdicts = VerdictsClient::new(p.channel.clone());
    let mut judge = async |n: usize, kind: pb::VerdictKind| {
        let id = p
            .submit(block(&format!("v{n}"), &format!("198.51.100.{n}")))
            .await
            .unwrap()
            .intent_id;
        verdicts
            .judge(pb::VerdictRequest {
                intent_id: id,
                verdict: kind.into(),
                note: String::new(),
                requested_by: "alice".into(),
            })
            .await
            .unwrap();
    };
    judge(1, pb::VerdictKind::FalsePositive).await;
    judge(2, pb::VerdictKind::FalsePositive).await;
    let status = || async {
        p.admin()
            .get_status(pb::GetStatusRequest {})
            .await
            .unwrap()
            .into_inner()
            .demoted_detections
    };
    assert!(
        status().await.is_empty(),
        "two verdicts are below the minimum"
    );
    judge(3, pb::VerdictKind::TruePositive).await;
    assert_eq!(status().await, ["edr.c2_beacon"], "2 of 3 false");

    // restored: the verdicts before the restoration are not held against it again
    p.admin()
        .set_demotion(pb::SetDemotionRequest {
            detection: "edr.c2_beacon".into(),
            demoted: false,
            reason: "rule fixed".into(),
            requested_by: "carol".into(),
        })
        .await
        .unwrap();
    p.clock.advance(std::time::Duration::from_secs(1));
    judge(4, pb::VerdictKind::TruePositive).await;
    assert!(status().await.is_empty());
}
