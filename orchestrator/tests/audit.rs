//! The auditor's journal through the real binary: the hash chain catches an edit of the stored
//! bytes and a deleted entry, across a restart.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use common::Server;
use serde_json::Value;

fn submit(server: &Server, key: &str, ip: &str) {
    let out = server.run(&[
        "submit",
        "--source",
        "xdr",
        "--detection",
        "edr.c2_beacon",
        "--severity",
        "critical",
        "--confidence",
        "0.95",
        "--action",
        "block_ip",
        "--target",
        &format!("ip:{ip}"),
        "--key",
        key,
        "--wait",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The records of the journal's first segment: (crc-checked) payloads, in order.
fn records(segment: &Path) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(segment).unwrap();
    let (mut out, mut at) = (Vec::new(), 0);
    while at < bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        out.push(bytes[at + 8..at + 8 + len].to_vec());
        at += 8 + len;
    }
    out
}

/// Writes records back as the journal stores them, checksums recomputed: what someone
/// editing the file with care would do.
fn write_records(segment: &Path, records: &[Vec<u8>]) {
    let mut bytes = Vec::new();
    for r in records {
        bytes.extend_from_slice(&(r.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&crc32fast::hash(r).to_le_bytes());
        bytes.extend_from_slice(r);
    }
    std::fs::write(segment, bytes).unwrap();
}

fn segment(data: &Path) -> std::path::PathBuf {
    data.join("journal").join(format!("{:020}.log", 1))
}

fn verify(server: &Server) -> (bool, Value) {
    let out = server.run(&["journal", "verify", "--json"]);
    let report = serde_json::from_slice(&out.stdout).unwrap();
    (out.status.success(), report)
}

/// A server with three blocks journaled, stopped; then its data directory.
fn journaled() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(&dir.path().join("data"), None);
    for (key, ip) in [
        ("a", "198.51.100.1"),
        ("b", "198.51.100.2"),
        ("c", "198.51.100.3"),
    ] {
        submit(&server, key, ip);
    }
    let (ok, report) = verify(&server);
    assert!(ok, "{report}");
    let head = report["head"].as_str().unwrap().to_owned();
    server.terminate();
    (dir, head)
}

#[test]
fn verify_finds_an_entry_edited_on_disk() {
    let (dir, head) = journaled();
    let data = dir.path().join("data");
    let mut stored = records(&segment(&data));
    // the second block's address, changed in place in whichever entry first names it
    let (n, at) = stored
        .iter()
        .enumerate()
        .find_map(|(n, r)| {
            r.windows(12)
                .position(|w| w == b"198.51.100.2")
                .map(|at| (n, at))
        })
        .unwrap();
    stored[n][at + 11] = b'9';
    write_records(&segment(&data), &stored);

    let server = Server::start_in(&data, None);
    let (ok, report) = verify(&server);
    assert!(!ok);
    let first = &report["breaks"][0];
    assert_eq!(first["kind"], "modified", "{report}");
    assert_eq!(first["seq"], n as u64 + 1, "{report}");
    // the hash kept from before the edit no longer matches either
    let out = server.run(&["journal", "verify", "--expect", &head]);
    assert!(!out.status.success());
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.contains("modified"), "{table}");
    let said = String::from_utf8(out.stderr).unwrap();
    assert!(
        said.contains(&format!("entry {} modified", n + 1)),
        "{said}"
    );
}

#[test]
fn verify_finds_a_deleted_entry() {
    let (dir, _) = journaled();
    let data = dir.path().join("data");
    let mut stored = records(&segment(&data));
    stored.remove(4);
    write_records(&segment(&data), &stored);

    let server = Server::start_in(&data, None);
    let (ok, report) = verify(&server);
    assert!(!ok);
    assert_eq!(report["breaks"][0]["kind"], "removed", "{report}");
    assert_eq!(report["breaks"][0]["seq"], 5, "{report}");
    assert!(
        report["breaks"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("entry 5 is missing")
    );
}

#[test]
fn an_untouched_journal_verifies_and_keeps_its_head() {
    let (dir, head) = journaled();
    let server = Server::start_in(&dir.path().join("data"), None);
    let out = server.run(&["journal", "verify", "--expect", &head]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("chain intact: entries 1 to "), "{text}");
    // a malformed hash is refused with the field named
    let out = server.run(&["journal", "verify", "--expect", "3:nothex"]);
    let said = String::from_utf8(out.stderr).unwrap();
    assert!(
        said.contains("InvalidArgument") && said.contains("expect[0].hash"),
        "{said}"
    );
}

#[test]
fn journal_query_filters_and_pages_from_the_command_line() {
    let (dir, _) = journaled();
    let server = Server::start_in(&dir.path().join("data"), None);
    let by_target = server.json(&["journal", "query", "--target", "ip:198.51.100.2"]);
    let intent = by_target[0]["intent_id"].as_str().unwrap().to_owned();
    assert!(by_target.iter().all(|e| e["intent_id"] == intent.as_str()));
    assert_eq!(by_target[0]["kind"], "received");
    assert!(by_target.iter().any(|e| e["kind"] == "step_succeeded"));
    assert!(
        by_target
            .iter()
            .all(|e| e["hash"].as_str().unwrap().len() == 64)
    );

    let decided = server.json(&[
        "journal",
        "query",
        "--detection",
        "edr.c2_beacon",
        "--event",
        "decided",
        "--outcome",
        "execute",
        "--source",
        "xdr",
    ]);
    assert_eq!(decided.len(), 3);
    let out = server.run(&[
        "journal", "query", "--event", "decided", "--limit", "2", "--json",
    ]);
    let said = String::from_utf8(out.stderr).unwrap();
    let last = serde_json::from_str::<Value>(
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .last()
            .unwrap(),
    )
    .unwrap()["seq"]
        .clone();
    assert!(said.contains(&format!("--after {last}")), "{said}");
    let rest = server.json(&[
        "journal",
        "query",
        "--event",
        "decided",
        "--after",
        &last.to_string(),
    ]);
    assert_eq!(rest.len(), 1);
    assert!(
        server
            .json(&["journal", "query", "--actor", "nobody"])
            .is_empty()
    );

    let out = server.run(&["journal", "query", "--event", "exploded"]);
    let said = String::from_utf8(out.stderr).unwrap();
    assert!(
        said.contains("InvalidArgument") && said.contains("events[0]"),
        "{said}"
    );
}

fn policy(tier: &str, max_active: u32) -> String {
    format!(
        r#"
[[detections]]
id = "edr.c2_beacon"
[detections.actions]
block_ip = "{tier}"

[[budgets]]
name = "blocks at once"
action_kinds = ["block_ip"]
max_active = {max_active}
"#
    )
}

#[test]
fn policy_replay_shows_what_another_policy_would_have_done() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let current = write("current.toml", policy("auto", 2));
    let server = Server::start_in(&dir.path().join("data"), Some(Path::new(&current)));
    for (key, ip) in [
        ("a", "198.51.100.1"),
        ("b", "198.51.100.2"),
        ("c", "198.51.100.3"),
    ] {
        submit(&server, key, ip);
    }
    // two blocks fit the budget, the third was denied by it
    let decided = server.json(&["journal", "query", "--event", "decided"]);
    let outcomes: Vec<_> = decided
        .iter()
        .map(|e| e["payload"]["decision"]["outcome"].clone())
        .collect();
    assert_eq!(outcomes, ["execute", "execute", "deny"]);
    // the decision record holds what the guardrails saw
    let seen = &decided[2]["payload"]["seen"];
    assert_eq!(seen["budgets"][0]["budget"], "blocks at once");
    assert_eq!(seen["budgets"][0]["active"], 2);
    assert_eq!(seen["kill_switch_global"], false);

    let replay = |file: &str| -> Vec<Value> {
        server.json(&["policy", "replay", "--policy", file, "--since", "1h"])
    };
    // the same policy decides the same: the replay's budgets follow the real ones
    let same = replay(&current);
    assert_eq!(same.len(), 1, "{same:?}");
    assert_eq!(
        (same[0]["decided"].as_u64(), same[0]["changed"].as_u64()),
        (Some(3), Some(0))
    );

    // a tighter budget would have denied the second block too
    let tight = replay(&write("tight.toml", policy("auto", 1)));
    assert_eq!(tight.len(), 2, "{tight:?}");
    assert_eq!(
        (tight[0]["before"].as_str(), tight[0]["after"].as_str()),
        (Some("execute"), Some("deny"))
    );
    assert!(
        tight[0]["why"].as_str().unwrap().contains("blocks at once"),
        "{tight:?}"
    );
    assert!(tight[0]["steps"].as_str().unwrap().contains("198.51.100.2"));

    // asking for approval: nothing acts, so nothing fills the budget, and all three wait
    let ask = replay(&write("ask.toml", policy("approval", 2)));
    let moved: Vec<_> = ask[..ask.len() - 1]
        .iter()
        .map(|c| (c["before"].clone(), c["after"].clone()))
        .collect();
    assert_eq!(
        moved,
        [
            ("execute".into(), "await_approval".into()),
            ("execute".into(), "await_approval".into()),
            ("deny".into(), "await_approval".into())
        ]
    );

    // nothing since a minute from now
    let later = server.json(&[
        "policy",
        "replay",
        "--policy",
        &current,
        "--since",
        "2099-01-01T00:00:00Z",
    ]);
    assert_eq!(later[0]["decided"], 0);

    // a broken policy is refused before anything is sent
    let broken = write("broken.toml", "[[detections]]\nid = 3\n".into());
    let out = server.run(&["policy", "replay", "--policy", &broken, "--since", "1h"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("broken.toml"));
}
