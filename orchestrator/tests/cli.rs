//! The `parapet` binary as a new user runs it: `serve`, then the client commands against it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;

use common::{BIN, Server};

#[tokio::test]
async fn the_walkthrough_works_from_the_command_line() {
    let server = Server::start();
    let submitted = server.json(&[
        "submit",
        "--source",
        "xdr",
        "--detection",
        "edr.c2_beacon",
        "--severity",
        "critical",
        "--confidence",
        "0.93",
        "--action",
        "block_ip",
        "--target",
        "ip:198.51.100.7",
        "--ttl",
        "4h",
        "--reason",
        "beacon to a known C2",
        "--key",
        "alert-1",
        "--wait",
    ]);
    let intent = &submitted[0];
    assert_eq!(intent["state"], "active");
    assert_eq!(intent["decision"]["outcome"], "execute");
    assert_eq!(intent["ttl"], "4h");
    let id = intent["intent_id"].as_str().unwrap().to_owned();
    assert_eq!(server.edl("block").await, "198.51.100.7\n");

    let got = server.json(&["get", &id]);
    assert_eq!(got[0]["steps"][0]["state"], "done");

    let list = server.run(&["list", "--state", "active"]);
    let table = String::from_utf8(list.stdout).unwrap();
    assert!(table.lines().next().unwrap().contains("INTENT"), "{table}");
    assert!(
        table.contains(&id) && table.contains("block_ip ip:198.51.100.7"),
        "{table}"
    );

    // destructive commands want a confirmation; without a terminal, --yes
    let refused = server.run(&["rollback", &id, "--reason", "false positive"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--yes"));
    assert_eq!(server.edl("block").await, "198.51.100.7\n");

    let rolled = server.json(&[
        "rollback",
        &id,
        "--reason",
        "false positive",
        "--by",
        "alice",
        "--yes",
    ]);
    assert_eq!(rolled[0]["state"], "rolled_back");
    assert_eq!(server.edl("block").await, "");

    let entries = server.json(&["journal", "query", "--target", "ip:198.51.100.7"]);
    let kinds: Vec<_> = entries
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.first(), Some(&"received"));
    assert_eq!(kinds.last(), Some(&"rolled_back"));
    let started = entries
        .iter()
        .find(|e| e["kind"] == "rollback_started")
        .unwrap();
    assert_eq!(started["actor"], "alice");
    assert_eq!(started["payload"]["reason"], "false positive");

    let said = server.terminate();
    assert!(said.contains("active actions stay in force"), "{said}");
}

#[tokio::test]
async fn errors_name_the_field_and_exit_non_zero() {
    let server = Server::start();
    let out = server.run(&[
        "submit",
        "--detection",
        "edr.c2_beacon",
        "--action",
        "block_ip",
        "--target",
        "ip:300.1.2.3",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("InvalidArgument") && stderr.contains("steps[0].target.id"),
        "{stderr}"
    );
    server.terminate();
}

#[test]
fn policy_check_points_at_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, "[[detections]]\nid = \"a\"\nmin_confidence = 2.0\n").unwrap();
    let out = Command::new(BIN)
        .args(["policy", "check"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("line 3"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../policy/example.toml");
    let out = Command::new(BIN)
        .args(["policy", "check", example])
        .output()
        .unwrap();
    assert!(out.status.success());
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(
        table.contains("edr.c2_beacon") && table.contains("block_ip=auto"),
        "{table}"
    );
}

#[test]
fn what_if_answers_the_decision_and_does_nothing() {
    let server = Server::start();
    let args = |target: &str, attr: &str| {
        [
            "what-if",
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
            target,
            "--attr",
            attr,
        ]
        .map(str::to_owned)
    };
    let protected = args("ip:192.0.2.77", "tags=domain-controller");
    let out = server.json(&protected.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out[0]["outcome"], "deny");
    assert!(
        out[0]["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["guardrail"] == "protected_target"),
        "{}",
        out[0]
    );
    let fine = args("ip:198.51.100.9", "site=hq");
    let out = server.json(&fine.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out[0]["outcome"], "execute");
    // nothing was submitted
    assert!(server.json(&["list"]).is_empty());
}
