//! Parapet at incident scale, as users run it: the `parapet serve` binary on a fresh directory,
//! driven over gRPC on loopback.
//!
//! `cargo bench -p parapet-orchestrator --bench scale` (`ACTIVE`, `BULK`, `ENTRIES` change the
//! sizes: 100,000 active blocks, a bulk rollback of 10,000, a journal of 1,000,000 entries)
//!
//! 1. `ACTIVE` EDL blocks submitted (64 in flight) until all are in force: the server's resident
//!    set then;
//! 2. `BULK` more from another source, then one `RollbackSelected` of that source: the time
//!    from the call to the last block lifted, and the EDL list checked;
//! 3. shadow intents until the journal holds `ENTRIES` entries; a stop (SIGTERM) and a start:
//!    the time from spawning the process to health `SERVING`, and the resident set then.
//!
//! A CrowdSec bouncer reads the decision stream throughout: its start-up pull once the
//! `ACTIVE` blocks are in force (time, bytes), and the pulls that carry the bulk's blocks and
//! then their rollback (each change in the first pull after it).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use parapet_proto::v1::{
    self as pb, admin_client::AdminClient, intents_client::IntentsClient,
    rollbacks_client::RollbacksClient,
};
use tonic::transport::Channel;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

const BIN: &str = env!("CARGO_BIN_EXE_parapet");
const POLICY: &str = include_str!("../../tests/bench-policy.toml");

fn size(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

struct Server {
    child: Child,
    grpc: SocketAddr,
    http: SocketAddr,
}

/// A CrowdSec bouncer's pull of the decision stream: decisions new and deleted, bytes, time.
async fn pull(server: &Server, key: &str, startup: bool) -> (usize, usize, usize, Duration) {
    let started = Instant::now();
    let body = reqwest::Client::new()
        .get(format!(
            "http://{}/v1/decisions/stream?startup={startup}",
            server.http
        ))
        .header("X-Api-Key", key)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let took = started.elapsed();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let count = |k: &str| v[k].as_array().map_or(0, Vec::len);
    (count("new"), count("deleted"), body.len(), took)
}

impl Server {
    fn spawn(dir: &Path) -> Self {
        let (grpc, http) = (free_port(), free_port());
        let log = std::fs::File::create(dir.join(format!("serve-{}.log", grpc.port()))).unwrap();
        let child = Command::new(BIN)
            .arg("serve")
            .arg("--insecure")
            .args(["--grpc-addr", &grpc.to_string()])
            .args(["--http-addr", &http.to_string()])
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg("--policy")
            .arg(dir.join("policy.toml"))
            .arg("--config")
            .arg(dir.join("parapet.toml"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Self { child, grpc, http }
    }

    /// Polls health until `SERVING`.
    async fn ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            assert!(
                Instant::now() < deadline,
                "parapet serve never became ready"
            );
            if let Ok(channel) = Channel::from_shared(format!("http://{}", self.grpc))
                .unwrap()
                .connect()
                .await
            {
                let mut health = HealthClient::new(channel);
                let status = health
                    .check(HealthCheckRequest {
                        service: String::new(),
                    })
                    .await
                    .map(|r| r.into_inner().status);
                if status.is_ok_and(|s| s == ServingStatus::Serving as i32) {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.grpc))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    /// Resident set and its peak, in MiB.
    fn memory(&self) -> (f64, f64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kib = |field: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap()
        };
        (kib("VmRSS:") / 1024.0, kib("VmHWM:") / 1024.0)
    }

    async fn metric(&self, name: &str) -> f64 {
        let text = reqwest::get(format!("http://{}/metrics", self.http))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    }

    async fn active_blocks(&self) -> u64 {
        let status = AdminClient::new(self.channel().await)
            .get_status(pb::GetStatusRequest {})
            .await
            .unwrap()
            .into_inner();
        status
            .active_by_kind
            .get("block_ip")
            .copied()
            .unwrap_or_default()
    }

    fn stop(mut self) {
        let pid = self.child.id().to_string();
        let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(killed.success());
        assert!(self.child.wait().unwrap().success(), "parapet serve failed");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // after a failed run: never leave a server behind (a no-op once stopped)
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Submits `count` intents numbered from `first`, 64 in flight over 4 connections.
async fn submit(server: &Server, first: u64, count: u64, source: &str, detection: &str) -> f64 {
    let mut channels = Vec::new();
    for _ in 0..4 {
        channels.push(server.channel().await);
    }
    let next = Arc::new(AtomicU64::new(first));
    let end = first + count;
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..64 {
        let mut client = IntentsClient::new(channels[w % 4].clone());
        let (next, source, detection) = (next.clone(), source.to_owned(), detection.to_owned());
        workers.spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= end {
                    return;
                }
                let ip = format!("10.{}.{}.{}", (n >> 16) & 255, (n >> 8) & 255, n & 255);
                let request = pb::SubmitIntentRequest {
                    idempotency_key: format!("alert-{n}"),
                    source: source.clone(),
                    detection: Some(pb::Detection {
                        rule_id: detection.clone(),
                        severity: pb::Severity::Critical as i32,
                        confidence: 0.93,
                        title: "beacon to known C2".into(),
                    }),
                    steps: vec![pb::Step {
                        kind: "block_ip".into(),
                        target: Some(pb::Target {
                            kind: "ip".into(),
                            id: ip,
                            attributes: Default::default(),
                        }),
                        params: Default::default(),
                    }],
                    ttl: Some(parapet_proto::wkt::Duration {
                        seconds: 24 * 3600,
                        nanos: 0,
                    }),
                    reason: "beacon to known C2".into(),
                    wait: false,
                    finding: String::new(),
                };
                client.submit(request).await.unwrap();
            }
        });
    }
    while workers.join_next().await.is_some() {}
    count as f64 / started.elapsed().as_secs_f64()
}

async fn until_active(server: &Server, count: u64) -> Duration {
    let started = Instant::now();
    while server.active_blocks().await < count {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    started.elapsed()
}

#[tokio::main]
async fn main() {
    let (active, bulk, entries) = (
        size("ACTIVE", 100_000),
        size("BULK", 10_000),
        size("ENTRIES", 1_000_000),
    );
    // reqwest is built without a TLS provider of its own
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tmp = tempfile::tempdir().unwrap();
    // SCALE_DIR keeps the data directory, to start a server over it again by hand
    let dir = std::env::var_os("SCALE_DIR").map_or_else(|| tmp.path().to_owned(), PathBuf::from);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("policy.toml"), POLICY).unwrap();
    std::fs::write(
        dir.join("parapet.toml"),
        "[crowdsec]\nbouncers = \"bouncers.toml\"\n",
    )
    .unwrap();
    let _ = std::fs::remove_file(dir.join("bouncers.toml"));
    let added = Command::new(BIN)
        .args(["bouncer", "add", "bench", "--file"])
        .arg(dir.join("bouncers.toml"))
        .output()
        .unwrap();
    assert!(added.status.success());
    let key = String::from_utf8(added.stdout).unwrap().trim().to_owned();

    let spawned = Instant::now();
    let server = Server::spawn(&dir);
    server.ready().await;
    println!(
        "fresh start: ready in {:.0} ms, resident {:.0} MiB",
        spawned.elapsed().as_secs_f64() * 1e3,
        server.memory().0
    );

    let rate = submit(&server, 0, active, "xdr", "edr.c2_beacon").await;
    let settled = until_active(&server, active).await;
    let (rss, peak) = server.memory();
    // the allocator hands pages freed after the burst back to the kernel within ten seconds
    tokio::time::sleep(Duration::from_secs(12)).await;
    let (steady, _) = server.memory();
    println!(
        "{active} blocks: submitted at {rate:.0}/s, all in force {:.1} s later; resident {rss:.0} MiB at once (peak {peak:.0} MiB), {steady:.0} MiB 12 s later",
        settled.as_secs_f64()
    );

    let (new, _, bytes, took) = pull(&server, &key, true).await;
    assert_eq!(new as u64, active, "the start-up pull misses decisions");
    println!(
        "a bouncer's start-up pull of {new} decisions: {:.0} ms, {:.1} MiB ({} bytes each)",
        took.as_secs_f64() * 1e3,
        bytes as f64 / (1 << 20) as f64,
        bytes / new.max(1)
    );

    if bulk > 0 {
        bulk_rollback(&server, active, bulk, &key).await;
    }

    let mut n = active + bulk;
    loop {
        let written = server.metric("parapet_journal_entries_total").await as u64;
        if written >= entries {
            break;
        }
        // a shadowed intent writes three entries
        let more = (entries - written).div_ceil(3).min(50_000);
        submit(&server, n, more, "xdr", "bench.watch").await;
        n += more;
    }
    server.stop();

    let spawned = Instant::now();
    let server = Server::spawn(&dir);
    server.ready().await;
    let ready = spawned.elapsed();
    tokio::time::sleep(Duration::from_secs(12)).await;
    let (rss, _) = server.memory();
    let on_disk = disk_usage(&dir.join("data"));
    println!(
        "restart over {entries}+ entries ({:.0} MiB on disk): ready in {:.0} ms, resident {rss:.0} MiB 12 s later",
        on_disk as f64 / (1 << 20) as f64,
        ready.as_secs_f64() * 1e3
    );
    assert_eq!(
        server.active_blocks().await,
        active,
        "blocks lost in the restart"
    );
    server.stop();
}

fn disk_usage(path: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(path).unwrap().flatten() {
        let meta = entry.metadata().unwrap();
        total += if meta.is_dir() {
            disk_usage(&entry.path())
        } else {
            meta.len()
        };
    }
    total
}

/// Submits `bulk` blocks from one source and rolls them all back with one `RollbackSelected`.
async fn bulk_rollback(server: &Server, active: u64, bulk: u64, key: &str) {
    submit(server, active, bulk, "bulk-sensor", "edr.c2_beacon").await;
    until_active(server, active + bulk).await;
    let (new, deleted, _, took) = pull(server, key, false).await;
    assert_eq!((new as u64, deleted), (bulk, 0), "the pull after the bulk");
    println!(
        "the bouncer's next pull: the {new} new blocks in {:.0} ms",
        took.as_secs_f64() * 1e3
    );
    let started = Instant::now();
    let mut progress = RollbacksClient::new(server.channel().await)
        .rollback_selected(pb::RollbackSelectedRequest {
            source: "bulk-sensor".into(),
            reason: "bench: the sensor was wrong".into(),
            requested_by: "bench".into(),
            concurrency: 64,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let (mut total, mut done, mut failed) = (0, 0, 0);
    while let Some(p) = progress.message().await.unwrap() {
        total = total.max(p.total);
        done = done.max(p.done);
        failed += u32::from(!p.error.is_empty());
    }
    let took = started.elapsed();
    let listed = reqwest::get(format!("http://{}/edl/block", server.http))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .lines()
        .count() as u64;
    assert_eq!(
        (total, done, failed, listed),
        (bulk as u32, bulk as u32, 0, active),
        "the bulk rollback left the EDL list wrong"
    );
    println!(
        "bulk rollback of {bulk} EDL blocks: {:.2} s end to end ({:.0} intents/s)",
        took.as_secs_f64(),
        bulk as f64 / took.as_secs_f64()
    );
    let (new, deleted, _, took) = pull(server, key, false).await;
    assert_eq!(
        (new, deleted as u64),
        (0, bulk),
        "the pull after the rollback"
    );
    println!(
        "the bouncer's next pull: the {deleted} rollbacks in {:.0} ms",
        took.as_secs_f64() * 1e3
    );
}
