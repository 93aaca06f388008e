//! Crashes: the server is killed (SIGKILL) or its journal is cut as a crash would leave it, and
//! the next start must finish or fully compensate what was in flight, with the journal telling
//! the story.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::{path::Path, time::Duration};

use common::Server;
use parapet_proto::v1::{
    self as pb, intents_client::IntentsClient, journal_client::JournalClient,
    rollbacks_client::RollbacksClient,
};
use tonic::transport::Channel;

async fn journal(ch: &Channel, q: pb::QueryJournalRequest) -> Vec<pb::JournalEntry> {
    let mut stream = JournalClient::new(ch.clone())
        .query(q)
        .await
        .unwrap()
        .into_inner();
    let mut out = Vec::new();
    while let Some(e) = stream.message().await.unwrap() {
        out.push(e);
    }
    out
}

/// Waits for an intent to leave the states that move on by themselves; ten seconds at most so a
/// broken server cannot hang the suite.
async fn settled(ch: &Channel, id: &str) -> pb::Intent {
    for _ in 0..1000 {
        let i = IntentsClient::new(ch.clone())
            .get(pb::GetIntentRequest {
                intent_id: id.into(),
            })
            .await
            .unwrap()
            .into_inner();
        let moving = [
            pb::IntentState::Decided,
            pb::IntentState::Executing,
            pb::IntentState::RollingBack,
            pb::IntentState::Expiring,
        ];
        if !moving.iter().any(|s| *s as i32 == i.state) {
            return i;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{id} did not settle");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_rollback_killed_midway_finishes_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "[[detections]]\nid = \"edr.c2_beacon\"\n[detections.actions]\nblock_ip = \"auto\"\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let server = Server::start_in(&data, Some(&policy));
    let ch = server.channel().await;
    let mut ids = Vec::new();
    for n in 0..300u32 {
        let ip = format!("10.9.{}.{}", n / 250, n % 250);
        let r = IntentsClient::new(ch.clone())
            .submit(common::block(&format!("k{n}"), &[&ip]))
            .await
            .unwrap()
            .into_inner();
        ids.push(r.intent_id);
    }
    let req = pb::RollbackSelectedRequest {
        detection: "edr.c2_beacon".into(),
        reason: "misfire".into(),
        requested_by: "alice".into(),
        concurrency: 1,
        ..Default::default()
    };
    let mut stream = RollbacksClient::new(ch.clone())
        .rollback_selected(req)
        .await
        .unwrap()
        .into_inner();
    let announced = stream.message().await.unwrap().unwrap();
    assert_eq!(announced.total, 300);
    for _ in 0..5 {
        stream.message().await.unwrap().unwrap();
    }
    server.kill();
    drop(stream);

    let server = Server::start_in(&data, Some(&policy));
    let ch = server.channel().await;
    let mut finished = None;
    for _ in 0..1000 {
        let entries = journal(&ch, pb::QueryJournalRequest::default()).await;
        finished = entries
            .iter()
            .find(|e| e.kind == "bulk_rollback_finished")
            .cloned();
        if let Some(done) = &finished {
            let restarted = entries
                .iter()
                .filter(|e| e.kind == "policy_loaded")
                .nth(1)
                .unwrap()
                .seq;
            // it finished after the restart, so the restart resumed it
            assert!(done.seq > restarted);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let finished = finished.expect("the bulk rollback was never finished");
    assert!(
        finished.payload_json.contains(&announced.operation_id),
        "{}",
        finished.payload_json
    );
    for id in &ids {
        assert_eq!(
            settled(&ch, id).await.state,
            pb::IntentState::RolledBack as i32
        );
    }
    assert_eq!(server.edl("block").await, "");
    drop(ch);
    server.terminate();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The journal's records, as (offset, length) of each.
fn records(segment: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 8 <= segment.len() {
        let len = u32::from_le_bytes(segment[at..at + 4].try_into().unwrap()) as usize;
        out.push((at, 8 + len));
        at += 8 + len;
    }
    out
}

/// The journal's head mark naming entry `seq`, stored as `record`: `[seq LE][BLAKE3][crc32]`.
fn head_mark(seq: u64, record: &[u8]) -> Vec<u8> {
    let mut bytes = seq.to_le_bytes().to_vec();
    bytes.extend_from_slice(blake3::hash(record).as_bytes());
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    bytes
}

/// Runs a plan to its end, then replays every crash point: the journal cut after each of the
/// plan's entries, the index lost, the adapter's lists as the end left them. Each start must
/// bring the intent to the same end.
async fn every_crash_point(policy: &str, ips: &[&str], expect: pb::IntentState, expect_edl: &str) {
    let dir = tempfile::tempdir().unwrap();
    let policy_path = dir.path().join("policy.toml");
    std::fs::write(&policy_path, policy).unwrap();
    let data = dir.path().join("data");
    let server = Server::start_in(&data, Some(&policy_path));
    let ch = server.channel().await;
    let id = IntentsClient::new(ch.clone())
        .submit(common::block("plan", ips))
        .await
        .unwrap()
        .into_inner()
        .intent_id;
    assert_eq!(settled(&ch, &id).await.state, expect as i32);
    let story: Vec<String> = journal(
        &ch,
        pb::QueryJournalRequest {
            intent_id: id.clone(),
            ..Default::default()
        },
    )
    .await
    .into_iter()
    .map(|e| e.kind)
    .collect();
    drop(ch);
    server.terminate();

    let segment = std::fs::read(data.join("journal").join(format!("{:020}.log", 1))).unwrap();
    let cuts = records(&segment);
    // record 0 is the policy the server started on; the plan's entries follow
    for keep in 2..=cuts.len() {
        let crashed = dir.path().join(format!("crash-{keep}"));
        copy_dir(&data, &crashed);
        std::fs::remove_dir_all(crashed.join("index")).unwrap();
        let (at, len) = cuts[keep - 1];
        std::fs::write(
            crashed.join("journal").join(format!("{:020}.log", 1)),
            &segment[..at + len],
        )
        .unwrap();
        // and the head mark the log writes after each sync names the last entry kept
        let record = &segment[at + 8..at + len];
        std::fs::write(
            crashed.join("journal").join("head"),
            head_mark(keep as u64, record),
        )
        .unwrap();

        let server = Server::start_in(&crashed, Some(&policy_path));
        let ch = server.channel().await;
        let intent = settled(&ch, &id).await;
        assert_eq!(
            intent.state, expect as i32,
            "crash after entry {keep}: {intent:?}"
        );
        assert_eq!(
            server.edl("block").await,
            expect_edl,
            "crash after entry {keep}"
        );
        let resumed: Vec<String> = journal(
            &ch,
            pb::QueryJournalRequest {
                intent_id: id.clone(),
                ..Default::default()
            },
        )
        .await
        .into_iter()
        .map(|e| e.kind)
        .collect();
        // the journal keeps what was there before the crash and tells the rest
        assert_eq!(
            resumed[..keep - 1],
            story[..keep - 1],
            "crash after entry {keep}"
        );
        assert_eq!(
            resumed.last(),
            story.last(),
            "crash after entry {keep}: {resumed:?}"
        );
        drop(ch);
        server.terminate();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_cut_short_at_any_point_completes_after_restart() {
    let policy =
        "[[detections]]\nid = \"edr.c2_beacon\"\n[detections.actions]\nblock_ip = \"auto\"\n";
    every_crash_point(
        policy,
        &["198.51.100.1", "198.51.100.2", "198.51.100.3"],
        pb::IntentState::Active,
        "198.51.100.1\n198.51.100.2\n198.51.100.3\n",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_plan_cut_short_at_any_point_is_fully_compensated_after_restart() {
    // the third step is a /8 that a careless policy allows and the EDL adapter refuses
    let policy = "[defaults]\nmin_prefix_v4 = 0\n[[detections]]\nid = \"edr.c2_beacon\"\n[detections.actions]\nblock_ip = \"auto\"\n";
    every_crash_point(
        policy,
        &["198.51.100.1", "198.51.100.2", "10.0.0.0/8"],
        pb::IntentState::Failed,
        "",
    )
    .await;
}
