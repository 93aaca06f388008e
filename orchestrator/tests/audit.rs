//! The auditor's journal through the real binary: the hash chain catches an edit of the stored
//! bytes and a deleted entry, across a restart.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use common::Server;
use serde_json::Value;

/// Blocks `ip` from the example policy's `edr.c2_beacon` and waits; returns the intent.
fn submit_with(server: &Server, ip: &str, extra: &[&str]) -> Value {
    let target = format!("ip:{ip}");
    let args = [
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
        &target,
        "--wait",
    ];
    server.json(&[&args[..], extra].concat()).remove(0)
}

fn submit(server: &Server, key: &str, ip: &str) {
    submit_with(server, ip, &["--key", key]);
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
    let (dir, head) = journaled();
    let data = dir.path().join("data");
    let mut stored = records(&segment(&data));
    let offset: usize = stored[..4].iter().map(|r| 8 + r.len()).sum();
    stored.remove(4);
    write_records(&segment(&data), &stored);

    // the server will not start on it, and says where
    let said = common::refused_start(&data, &[]);
    assert!(
        said.contains(&format!(
            "`{}` at byte {offset} (entry 5)",
            segment(&data).display()
        )) && said.contains("out of its place"),
        "{said}"
    );
    // an auditor's offline walk names the break, and so does a point kept earlier
    let data_dir = data.display().to_string();
    let out = common::run(&[
        "journal",
        "verify",
        "--data-dir",
        &data_dir,
        "--expect",
        &head,
        "--json",
    ]);
    assert!(!out.status.success());
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
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

/// The attributes OCSF 1.x requires of a Remediation Activity event of each class (7001 base,
/// 7002 File, 7003 Process, 7004 Network), and the rules between them.
fn assert_remediation_event(e: &Value) {
    for field in [
        "activity_id",
        "category_uid",
        "class_uid",
        "severity_id",
        "time",
        "type_uid",
        "metadata",
        "command_uid",
    ] {
        assert!(!e[field].is_null(), "`{field}` is required: {e}");
    }
    assert_eq!(e["category_uid"], 7, "{e}");
    let class = e["class_uid"].as_u64().unwrap();
    let activity = e["activity_id"].as_u64().unwrap();
    assert!([7001, 7002, 7003, 7004].contains(&class), "{e}");
    assert!([0, 1, 2, 3, 4, 99].contains(&activity), "{e}");
    assert_eq!(
        e["type_uid"].as_u64().unwrap(),
        class * 100 + activity,
        "{e}"
    );
    assert!((0..=6).contains(&e["severity_id"].as_u64().unwrap()), "{e}");
    assert!(
        [0, 1, 2, 3, 4, 5, 6, 99].contains(&e["status_id"].as_u64().unwrap()),
        "{e}"
    );
    assert!(
        e["time"].as_u64().unwrap() > 1_600_000_000_000,
        "time is in milliseconds: {e}"
    );
    assert!(e["metadata"]["version"].is_string(), "{e}");
    assert!(e["metadata"]["product"]["name"].is_string(), "{e}");
    let required = match class {
        7002 => Some("file"),
        7003 => Some("process"),
        7004 => Some("connection_info"),
        _ => None,
    };
    if let Some(field) = required {
        assert!(
            e[field].is_object(),
            "class {class} requires `{field}`: {e}"
        );
    }
    if class == 7004 {
        assert!(e["connection_info"]["direction_id"].is_u64(), "{e}");
    }
}

const FINDING: &str = r#"{
  "class_uid": 2004, "category_uid": 2, "activity_id": 1, "type_uid": 200401,
  "severity_id": 5, "time": 1764600000000,
  "metadata": {"version": "1.4.0", "product": {"name": "XDR", "vendor_name": "Example"}},
  "finding_info": {"uid": "xdr-42", "title": "Beacon to a known C2"}
}"#;

#[test]
fn the_journal_exports_as_ocsf_remediation_events_that_verify() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(&dir.path().join("data"), None);
    let finding = dir.path().join("finding.json");
    std::fs::write(&finding, FINDING).unwrap();
    let submitted = [submit_with(
        &server,
        "198.51.100.7",
        &["--finding", finding.to_str().unwrap()],
    )];
    let id = submitted[0]["intent_id"].as_str().unwrap().to_owned();
    // the finding is kept with the intent
    let got = server.json(&["get", &id]);
    assert_eq!(got[0]["finding"]["finding_info"]["uid"], "xdr-42");
    let out = server.run(&["rollback", &id, "--reason", "drill", "--yes"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = server.run(&["journal", "export", "--format", "ocsf"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 2, "the block and its undo: {events:?}");
    for e in &events {
        assert_remediation_event(e);
        assert_eq!(e["class_uid"], 7004);
        assert_eq!(e["severity_id"], 5);
        assert_eq!(e["status_id"], 1);
        assert_eq!(e["metadata"]["correlation_uid"], id.as_str());
        assert_eq!(e["unmapped"]["parapet"]["target"]["id"], "198.51.100.7");
    }
    assert_eq!(
        (
            events[0]["activity_id"].as_u64(),
            events[1]["activity_id"].as_u64()
        ),
        (Some(1), Some(3))
    );
    assert_eq!(events[0]["type_uid"], 700401);
    assert_eq!(events[1]["type_uid"], 700403);
    // each event's chain hash is one the journal verifies
    let p = &events[1]["unmapped"]["parapet"];
    let point = format!("{}:{}", p["seq"], p["hash"].as_str().unwrap());
    let out = server.run(&["journal", "verify", "--expect", &point]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // jsonl: every entry, each linked to the one before, into a file with progress
    let file = dir.path().join("journal.jsonl");
    let out = server.run(&["journal", "export", "--output", file.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("exported"),
        "progress on stderr"
    );
    let entries: Vec<Value> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(entries.len() > 5);
    for pair in entries.windows(2) {
        assert_eq!(
            pair[1]["seq"].as_u64().unwrap(),
            pair[0]["seq"].as_u64().unwrap() + 1
        );
        assert_eq!(pair[1]["prev_hash"], pair[0]["hash"]);
    }
    let received = entries.iter().find(|e| e["kind"] == "received").unwrap();
    assert_eq!(
        received["event"]["intent"]["finding"]["finding_info"]["title"],
        "Beacon to a known C2"
    );

    // a finding without what OCSF requires is refused, naming the attribute
    std::fs::write(&finding, FINDING.replace("\"type_uid\": 200401,", "")).unwrap();
    let out = server.run(&[
        "submit",
        "--source",
        "xdr",
        "--detection",
        "edr.c2_beacon",
        "--action",
        "block_ip",
        "--target",
        "ip:198.51.100.8",
        "--finding",
        finding.to_str().unwrap(),
    ]);
    let said = String::from_utf8(out.stderr).unwrap();
    assert!(
        said.contains("InvalidArgument") && said.contains("finding.type_uid: is required"),
        "{said}"
    );
}

fn shadow(server: &Server, n: usize, from: usize) {
    for k in from..from + n {
        let out = server.run(&[
            "submit",
            "--source",
            "ueba",
            "--detection",
            "ml.anomalous_login",
            "--severity",
            "high",
            "--confidence",
            "0.9",
            "--action",
            "block_ip",
            "--target",
            &format!("ip:203.0.113.{}", k % 250),
            "--reason",
            "an unusual login, recorded in shadow",
            "--key",
            &format!("s{k}"),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The sequence number of a compaction's anchor (`SEQ:HASH`).
fn anchor_seq(compacted: &Value) -> u64 {
    let anchor = compacted["anchor"].as_str().unwrap();
    anchor.split(':').next().unwrap().parse().unwrap()
}

#[test]
fn retention_keeps_active_intents_and_the_chain_verifiable() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("parapet.toml");
    std::fs::write(
        &config,
        "[journal]\nsegment_bytes = 4096\nmax_bytes = 4096\ncompact_every = \"1h\"\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let serve =
        |data: &Path| Server::start_with(data, None, &["--config", config.to_str().unwrap()], &[]);
    let server = serve(&data);
    let compact =
        |server: &Server| server.json(&["journal", "compact", "--by", "auditor"])[0].clone();
    let verified = |server: &Server| {
        let (ok, report) = verify(server);
        assert!(ok, "{report}");
        report
    };

    shadow(&server, 10, 0);
    let first = server.json(&["journal", "query", "--source", "ueba", "--limit", "1"])[0].clone();
    submit(&server, "active", "198.51.100.77");
    let active = server.json(&["journal", "query", "--target", "ip:198.51.100.77"]);
    let active_id = active[0]["intent_id"].as_str().unwrap().to_owned();
    let active_first = active[0]["seq"].as_u64().unwrap();
    shadow(&server, 20, 10);

    let c = compact(&server);
    assert_eq!(c["compacted"], true, "{c}");
    let through = anchor_seq(&c);
    assert!(
        through > 0 && through < active_first,
        "the active block pins its entries: {c}"
    );
    assert!(
        c["bytes_after"].as_u64() < c["bytes_before"].as_u64(),
        "{c}"
    );
    // the removed intent is gone, the active one whole, the chain verifies from the anchor
    let gone = first["intent_id"].as_str().unwrap();
    assert!(
        server
            .json(&["journal", "query", "--intent", gone])
            .is_empty()
    );
    assert!(!server.run(&["get", gone]).status.success());
    assert_eq!(
        server
            .json(&["journal", "query", "--intent", &active_id])
            .len(),
        active.len()
    );
    let report = verified(&server);
    assert_eq!(report["anchor"], c["anchor"]);
    // the compaction itself is journaled, by whom asked
    let logged = server.json(&["journal", "query", "--event", "journal_compacted"]);
    assert_eq!(logged[0]["actor"], "auditor");
    assert_eq!(logged[0]["payload"]["through"], through);

    // once the block is rolled back and its last entry is old enough, it may go too
    let out = server.run(&["rollback", &active_id, "--reason", "done", "--yes"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    shadow(&server, 20, 30);
    let c = compact(&server);
    let through = anchor_seq(&c);
    assert!(through >= active_first, "{c}");
    assert!(
        server
            .json(&["journal", "query", "--intent", &active_id])
            .is_empty()
    );
    verified(&server);

    // after a restart the chain still verifies from the anchor and the journal goes on
    server.terminate();
    let server = serve(&data);
    let report = verified(&server);
    assert_eq!(report["anchor"], c["anchor"]);
    shadow(&server, 1, 60);
    verified(&server);
}
