//! Submit throughput and latency over real gRPC on loopback, with every acknowledged intent
//! fsync'd to the journal.
//!
//! `cargo bench -p parapet-tests --bench submit -- [SECONDS] [IN_FLIGHT] [CONNECTIONS]`
//! (`PARAPET_BENCH_MODE=journal|decide|wait` runs one mode only)
//!
//! Three modes:
//! - `journal`: intents that wait for approval: decision and journal only, no adapter work;
//! - `decide`: Submit answers once intent and decision are durable, the EDL block follows in
//!   the background;
//! - `wait`: Submit answers once the block is active.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use parapet_orchestrator::{clock::SystemClock, config::Config, server};
use parapet_proto::v1::intents_client::IntentsClient;
use parapet_tests::block;
use tonic::transport::Channel;

const BENCH_POLICY: &str = r#"
[[detections]]
id = "edr.c2_beacon"
min_severity = "high"
min_confidence = 0.8
[detections.actions]
block_ip = "auto"

[[protected]]
name = "domain controllers"
tags = ["domain-controller"]
effect = "deny"

[[budgets]]
name = "blocks at once"
action_kinds = ["block_ip"]
max_active = 10000000

[[rate_limits]]
name = "per source"
key = "source"
max = 100000000
per = "1m"
"#;

fn arg(n: usize, default: u64) -> u64 {
    std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let seconds = arg(0, 5);
    let in_flight = arg(1, 64);
    let connections = arg(2, 4);
    let only = std::env::var("PARAPET_BENCH_MODE").ok();
    for mode in [Mode::Journal, Mode::Decide, Mode::Wait] {
        if only
            .as_ref()
            .is_some_and(|m| *m != format!("{mode:?}").to_lowercase())
        {
            continue;
        }
        run(mode, Duration::from_secs(seconds), in_flight, connections).await;
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Journal,
    Decide,
    Wait,
}

async fn run(mode: Mode, duration: Duration, in_flight: u64, connections: u64) {
    let dir = tempfile::tempdir().unwrap();
    // The example policy's guardrails, with limits no benchmark reaches: every intent is decided
    // in full, and none is refused by a rate limit.
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, BENCH_POLICY).unwrap();
    let config = Config {
        grpc_addr: "127.0.0.1:0".parse().unwrap(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().join("data"),
        policy: Some(policy),
        // plaintext on loopback, as the figures always were: the network, not TLS, is measured
        auth: parapet_orchestrator::config::AuthConfig {
            insecure: true,
            ..Default::default()
        },
        ..Config::default()
    };
    let running = server::start(&config, Arc::new(SystemClock)).await.unwrap();
    let mut channels = Vec::new();
    for _ in 0..connections {
        let channel = Channel::from_shared(format!("http://{}", running.grpc_addr))
            .unwrap()
            .connect()
            .await
            .unwrap();
        channels.push(channel);
    }

    let next = Arc::new(AtomicU64::new(0));
    let warmup = Duration::from_secs(1);
    let start = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..in_flight {
        let mut client = IntentsClient::new(channels[(w % connections) as usize].clone());
        let next = next.clone();
        workers.spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let elapsed = start.elapsed();
                if elapsed > warmup + duration {
                    return latencies;
                }
                let n = next.fetch_add(1, Ordering::Relaxed);
                let ip = format!("10.{}.{}.{}", (n >> 16) & 255, (n >> 8) & 255, n & 255);
                let mut req = block(&format!("bench-{n}"), &ip);
                req.wait = mode == Mode::Wait;
                if mode == Mode::Journal {
                    req.detection.as_mut().unwrap().rule_id = "not.in.inventory".into();
                }
                let t = Instant::now();
                client.submit(req).await.unwrap();
                if elapsed >= warmup {
                    latencies.push(t.elapsed());
                }
            }
        });
    }
    let mut all = Vec::new();
    while let Some(l) = workers.join_next().await {
        all.extend(l.unwrap());
    }
    all.sort_unstable();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    println!(
        "submit mode={:<8} in_flight={in_flight} connections={connections}: {:>7.0} intents/s  p50 {:>6.2} ms  p99 {:>6.2} ms  p99.9 {:>6.2} ms  ({} in {:?})",
        format!("{mode:?}").to_lowercase(),
        all.len() as f64 / duration.as_secs_f64(),
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        pct(0.999).as_secs_f64() * 1e3,
        all.len(),
        duration,
    );
    drop(channels);
    running.shutdown().await.unwrap();
}
