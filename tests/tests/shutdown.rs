//! A graceful stop: health says NOT_SERVING and new intents are refused while the adapter
//! calls in flight finish; nothing is rolled back, and the action is in force after a restart.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use axum::{Router, routing::post};
use parapet_tests::{Parapet, block, step, v1 as pb};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

const POLICY: &str = r#"
[[detections]]
id = "edr.c2_beacon"
[detections.actions]
block_ip = "auto"
suspend_user = "auto"
"#;

/// An accounts API that takes its time over each suspension.
async fn slow_api() -> String {
    let app = Router::new().route(
        "/{user}/{verb}",
        post(|| async {
            tokio::time::sleep(Duration::from_millis(800)).await;
            axum::http::StatusCode::NO_CONTENT
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_drains_and_leaves_actions_in_force() {
    let url = slow_api().await;
    let webhook = serde_json::from_value(serde_json::json!({
        "type": "webhook", "name": "accounts", "kinds": ["suspend_user"],
        "execute": {"url": format!("{url}/{{{{target.id}}}}/suspend")},
        "rollback": {"url": format!("{url}/{{{{target.id}}}}/unsuspend")},
    }))
    .unwrap();
    let p = Parapet::start_with_adapters(POLICY, vec![webhook])
        .await
        .unwrap();
    let mut req = block("slow", "198.51.100.1");
    req.steps = vec![step("suspend_user", "user", "mallory", &[])];
    req.wait = false;
    let id = p.submit(req).await.unwrap().intent_id;

    let channel = p.channel.clone();
    let stopping = tokio::spawn(p.stop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let health = HealthClient::new(channel.clone())
        .check(HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(health.status, 2, "NOT_SERVING while draining");
    let refused = pb::intents_client::IntentsClient::new(channel)
        .submit(block("late", "198.51.100.2"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");

    let p = stopping.await.unwrap().start().await;
    let intent = p.get(&id).await;
    assert_eq!(
        intent.state,
        pb::IntentState::Active as i32,
        "finished, not rolled back"
    );
    let health = HealthClient::new(p.channel.clone())
        .check(HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(health.status, 1, "SERVING once started");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_gives_a_hung_adapter_its_timeout_once_and_leaves_the_step_in_flight() {
    // an accounts API that accepts the connection and never answers
    let hole = parapet_tests::black_hole().await;
    let webhook: parapet_actions::config::AdapterConfig =
        serde_json::from_value(serde_json::json!({
            "type": "webhook", "name": "accounts", "kinds": ["suspend_user"],
            "execute": {"url": format!("http://{hole}/{{{{target.id}}}}/suspend")},
            "rollback": {"url": format!("http://{hole}/{{{{target.id}}}}/unsuspend")},
            "timeout": "60s", "retries": 0,
        }))
        .unwrap();
    let p = Parapet::start_configured(Some(POLICY), |c, _| {
        c.adapter_timeout = Duration::from_secs(2);
        c.adapters = vec![webhook];
    })
    .await
    .unwrap();
    let mut req = block("hung", "198.51.100.1");
    req.steps = vec![step("suspend_user", "user", "mallory", &[])];
    req.wait = false;
    let id = p.submit(req).await.unwrap().intent_id;
    p.wait_for(&id, pb::IntentState::Executing).await;

    // each attempt would time out after 2 s and be tried again three times (more than 8 s in
    // all); a stop gives the call in flight its 2 s once, and does not retry
    let started = std::time::Instant::now();
    let stopped = p.stop().await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(6), "the stop took {took:?}");

    // not failed, not compensated: the step was left in flight, and the next start repeats it
    let p = stopped.start().await;
    let story = p.story(&id).await;
    assert!(
        !story.iter().any(|e| e == "step_failed" || e == "failed"),
        "{story:?}"
    );
    assert_eq!(p.get(&id).await.state, pb::IntentState::Executing as i32);
}
