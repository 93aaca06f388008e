//! While Parapet replays its journal at start, health checks are answered, NOT_SERVING; then
//! SERVING.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    sync::Arc,
    time::{Duration, SystemTime},
};

use common::BIN;
use parapet_model::{
    Confidence, Decision, Detection, IntentId, IntentRequest, Outcome, Severity, Step, Target,
};
use parapet_orchestrator::{
    clock::SystemClock,
    journal::{Journal, kv::MemKv, log::FileLog},
    lifecycle::IntentEvent,
};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// A journal of `intents` denied intents, with no index beside it: the next start replays it.
async fn journal_without_index(dir: &std::path::Path, intents: usize) {
    let log = FileLog::open(&dir.join("journal")).unwrap();
    let journal = Journal::open(
        Box::new(log),
        Arc::new(MemKv::default()),
        Arc::new(SystemClock),
    )
    .unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..64 {
        let journal = journal.clone();
        tasks.spawn(async move {
            for k in (worker..intents).step_by(64) {
                let step = Step::new(
                    "block_ip".parse().unwrap(),
                    Target::new(
                        "ip".into(),
                        format!("10.0.{}.{}", k / 250 % 250, k % 250),
                        BTreeMap::new(),
                    )
                    .unwrap(),
                    BTreeMap::new(),
                )
                .unwrap();
                let det = Detection::new(
                    "edr.c2_beacon".into(),
                    Severity::High,
                    Confidence::try_from(0.9).unwrap(),
                    String::new(),
                )
                .unwrap();
                let id = IntentId::generate();
                let intent = IntentRequest::new(
                    format!("k{k}"),
                    "xdr".into(),
                    det,
                    vec![step],
                    None,
                    String::new(),
                )
                .unwrap()
                .into_intent(id, SystemTime::now());
                let decision = Decision {
                    outcome: Outcome::Deny,
                    reasons: vec![],
                    policy_digest: "sha256:x".into(),
                    retry_after: None,
                };
                let events = vec![
                    IntentEvent::Received { intent },
                    IntentEvent::Decided {
                        decision,
                        seen: Box::new(parapet_policy::Seen::nothing(SystemTime::now())),
                    },
                ];
                journal.append(id, "xdr", events).await.unwrap();
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let writer = journal.take_writer().unwrap();
    drop(journal);
    writer.join().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_not_serving_until_the_journal_is_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    journal_without_index(&data, 20_000).await;

    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--insecure",
            "--grpc-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(&data)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let next = || {
        lines
            .recv_timeout(Duration::from_secs(60))
            .expect("serve said nothing more")
    };
    // the log line the start-up listener writes names the address
    let addr = loop {
        let line = next();
        if line.contains("starting: health checks answer NOT_SERVING")
            && let Some(rest) = line.split("grpc_addr=").nth(1)
        {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    let ask = || async {
        let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        HealthClient::new(channel)
            .check(HealthCheckRequest::default())
            .await
            .unwrap()
            .into_inner()
            .status
    };
    assert_eq!(ask().await, 2, "NOT_SERVING while replaying");
    let banner = loop {
        let line = next();
        if line.starts_with("parapet: listening:") {
            break line;
        }
    };
    assert!(banner.contains(&addr));
    let mut serving = false;
    for _ in 0..50 {
        if ask().await == 1 {
            serving = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(serving, "SERVING once started");
    child.kill().unwrap();
    child.wait().unwrap();
}
