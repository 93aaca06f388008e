//! The journal never loses what it acknowledged, as an operator meets it through the real
//! binary: a second server on the same directory, a damaged or cut-off journal, and a disk
//! that fills up.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::{BIN, Server, Tmpfs};
use parapet_proto::v1::{
    self as pb, intents_client::IntentsClient, rollbacks_client::RollbacksClient,
};
use tonic::{Code, transport::Channel};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

async fn submit(
    ch: &Channel,
    key: &str,
    ip: &str,
) -> Result<pb::SubmitIntentResponse, tonic::Status> {
    IntentsClient::new(ch.clone())
        .submit(common::block(key, &[ip]))
        .await
        .map(tonic::Response::into_inner)
}

async fn health(ch: &Channel) -> i32 {
    HealthClient::new(ch.clone())
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .status
}

/// Waits (ten seconds at most) for health to say `want`.
async fn health_becomes(ch: &Channel, want: ServingStatus) {
    let started = Instant::now();
    while health(ch).await != want as i32 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "health never became {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn segment(data: &Path, first: u64) -> PathBuf {
    data.join("journal").join(format!("{first:020}.log"))
}

/// Where each record of a segment starts.
fn offsets(bytes: &[u8]) -> Vec<usize> {
    let (mut at, mut out) = (0, Vec::new());
    while at + 8 <= bytes.len() {
        out.push(at);
        at += 8 + u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    }
    out
}

/// A data directory holding `n` acknowledged blocks; returns the verified head.
async fn journaled(data: &Path, n: usize, extra: &[&str]) -> String {
    let server = Server::start_with(data, None, extra, &[]);
    let ch = server.channel().await;
    for i in 0..n {
        submit(&ch, &format!("k{i}"), &format!("198.51.100.{}", i + 1))
            .await
            .unwrap();
    }
    let report = server.json(&["journal", "verify"]).remove(0);
    assert_eq!(report["ok"], true, "{report}");
    drop(ch);
    server.terminate();
    report["head"].as_str().unwrap().to_owned()
}

/// A server process that a failing test must not leave running.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_the_same_directory_leaves_the_first_ones_journal_alone() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let head = journaled(&data, 5, &[]).await;
    for round in 0..10 {
        let spawn = || {
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
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let (tx, rx) = std::sync::mpsc::channel();
            let pipe = child.stderr.take().unwrap();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
            (Reaped(child), rx)
        };
        let racers = [spawn(), spawn()];
        let mut serving = None;
        let mut refused = None;
        for (mut child, lines) in racers {
            let mut said = Vec::new();
            let outcome = loop {
                match lines.recv_timeout(Duration::from_secs(30)) {
                    Ok(line) if line.starts_with("parapet: listening:") => break Ok(line),
                    Ok(line) => said.push(line),
                    Err(_) => break Err(said.join("\n")),
                }
            };
            match outcome {
                Ok(banner) => {
                    assert!(serving.is_none(), "round {round}: both serve");
                    serving = Some((child, banner));
                }
                Err(said) => {
                    assert!(!child.0.wait().unwrap().success());
                    refused = Some(said);
                }
            }
        }
        let said = refused.unwrap_or_else(|| panic!("round {round}: both started"));
        let (mut child, banner) =
            serving.unwrap_or_else(|| panic!("round {round}: none started: {said}"));
        assert!(
            said.contains(&format!(
                "data directory `{}` is in use by another Parapet (pid {})",
                data.display(),
                child.0.id()
            )),
            "round {round}: {said}"
        );
        // the journal the first one serves is whole
        let grpc = banner
            .split_whitespace()
            .find_map(|w| w.strip_prefix("grpc="))
            .unwrap();
        let out = Command::new(BIN)
            .args([
                "journal",
                "verify",
                "--expect",
                &head,
                "--server",
                &format!("http://{grpc}"),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "round {round}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let _ = Command::new("kill")
            .args(["-TERM", &child.0.id().to_string()])
            .status();
        assert!(child.0.wait().unwrap().success());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_length_field_stops_the_start_and_says_where() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    journaled(&data, 20, &[]).await;
    let path = segment(&data, 1);
    let mut bytes = std::fs::read(&path).unwrap();
    let records = offsets(&bytes);
    let victim = records.len() / 2;
    let at = records[victim];
    bytes[at + 1] ^= 0x10;
    std::fs::write(&path, &bytes).unwrap();
    let said = common::refused_start(&data, &[]);
    assert!(
        said.contains(&format!(
            "`{}` at byte {at} (entry {})",
            path.display(),
            victim + 1
        )) && said.contains("is not a torn write"),
        "{said}"
    );
    // the file is as it was: nothing was cut
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_tail_stops_the_start_and_offline_verify_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let head = journaled(&data, 6, &[]).await;
    let path = segment(&data, 1);
    let bytes = std::fs::read(&path).unwrap();
    let records = offsets(&bytes);
    let kept = records.len() - 3;
    std::fs::write(&path, &bytes[..records[kept]]).unwrap();
    let said = common::refused_start(&data, &[]);
    assert!(
        said.contains(&format!("the journal ends at entry {kept}"))
            && said.contains("its end was cut off"),
        "{said}"
    );
    let out = common::run(&[
        "journal",
        "verify",
        "--data-dir",
        &data.display().to_string(),
        "--expect",
        &head,
        "--json",
    ]);
    assert!(!out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["breaks"][0]["kind"], "removed", "{report}");
    assert_eq!(report["breaks"][0]["seq"], kept + 1, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_in_an_older_segment_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("parapet.toml");
    std::fs::write(&config, "[journal]\nsegment_bytes = 4096\n").unwrap();
    let config = config.display().to_string();
    journaled(&data, 20, &["--config", &config]).await;
    let mut segments: Vec<u64> = std::fs::read_dir(data.join("journal"))
        .unwrap()
        .filter_map(|e| {
            e.unwrap()
                .file_name()
                .to_str()?
                .strip_suffix(".log")?
                .parse()
                .ok()
        })
        .collect();
    segments.sort_unstable();
    assert!(segments.len() >= 3, "{segments:?}");
    let old = segment(&data, segments[0]);
    let mut bytes = std::fs::read(&old).unwrap();
    let at = offsets(&bytes)[2];
    bytes[at + 8 + 5] ^= 0x01;
    std::fs::write(&old, &bytes).unwrap();
    let said = common::refused_start(&data, &["--config", &config]);
    assert!(
        said.contains(&format!("`{}` at byte {at} (entry 3)", old.display()))
            && said.contains("checksum"),
        "{said}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_turns_health_off_and_parapet_recovers_when_space_returns() {
    let disk = Tmpfs::mount(48);
    let data = disk.path.join("data");
    let config = disk.path.join("parapet.toml");
    let reserve: u64 = 4 << 20;
    std::fs::write(&config, format!("[journal]\nreserve_bytes = {reserve}\n")).unwrap();
    let config = config.display().to_string();
    let server = Server::start_with(&data, None, &["--config", &config], &[]);
    let ch = server.channel().await;
    let first = submit(&ch, "before", "198.51.100.1").await.unwrap();
    assert_eq!(health(&ch).await, ServingStatus::Serving as i32);

    // below the reserve: new intents are refused, what is in force can still be undone
    let ballast = disk.fill("ballast", reserve / 2);
    let refused = submit(&ch, "during", "198.51.100.2").await.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(
        refused.message().contains("almost full"),
        "{}",
        refused.message()
    );
    health_becomes(&ch, ServingStatus::NotServing).await;
    let undone = RollbacksClient::new(ch.clone())
        .rollback(pb::RollbackRequest {
            intent_id: first.intent_id.clone(),
            reason: "wrong host".into(),
            wait: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(undone.state, pb::IntentState::RolledBack as i32);

    // at the floor: nothing more is journaled, and it says so
    let floor = disk.fill("floor", reserve / 16);
    let refused = RollbacksClient::new(ch.clone())
        .rollback(pb::RollbackRequest {
            intent_id: first.intent_id.clone(),
            reason: "again".into(),
            wait: true,
            ..Default::default()
        })
        .await;
    // a rollback of what is rolled back already changes nothing and needs no journal
    assert!(refused.is_ok(), "{refused:?}");
    let refused = submit(&ch, "during", "198.51.100.2").await.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable);
    assert!(
        refused.message().contains("nothing more is journaled"),
        "{}",
        refused.message()
    );

    // space returns: serving again without a restart, and the same key goes through
    std::fs::remove_file(floor).unwrap();
    std::fs::remove_file(ballast).unwrap();
    health_becomes(&ch, ServingStatus::Serving).await;
    let after = submit(&ch, "during", "198.51.100.2").await.unwrap();
    assert_eq!(after.state, pb::IntentState::Active as i32);
    assert_eq!(server.edl("block").await, "198.51.100.2\n");
    drop(ch);
    server.terminate();

    // and everything acknowledged is there after a restart, the chain whole
    let server = Server::start_with(&data, None, &["--config", &config], &[]);
    let report = server.json(&["journal", "verify"]).remove(0);
    assert_eq!(report["ok"], true, "{report}");
    let ch = server.channel().await;
    let again = submit(&ch, "during", "198.51.100.2").await.unwrap();
    assert!(again.duplicate);
    drop(ch);
    server.terminate();
}
