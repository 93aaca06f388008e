//! The OCSF export, as a SIEM reads it: every action kind, and every outcome a step can have
//! (acted, failed, undone, not undone), exported over gRPC and validated against the OCSF 1.4
//! schema's own definitions (`tests/ocsf/validate.py`, the schema from PyPI's `pydantic-ocsf`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{collections::BTreeSet, path::Path, time::Duration};

use parapet_actions::{config::AdapterConfig, exec::ExecConfig};
use parapet_tests::{Parapet, block, step, v1 as pb};
use tokio::io::AsyncWriteExt;

const POLICY: &str = r#"
[defaults]
min_prefix_v4 = 0

[[detections]]
id = "edr.c2_beacon"
[detections.actions]
block_ip = "auto"
isolate_host = "auto"
revoke_credentials = "auto"
quarantine_file = "auto"
kill_process = "auto"
disable_mailbox = "auto"
"#;

fn exec() -> AdapterConfig {
    AdapterConfig::Exec(ExecConfig {
        name: "responder".into(),
        command: Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/ar-by-target.py"),
        extra_args: Vec::new(),
        kinds: [
            "revoke_credentials",
            "quarantine_file",
            "kill_process",
            "disable_mailbox",
        ]
        .iter()
        .map(|k| k.parse().unwrap())
        .collect(),
        timeout: Duration::from_secs(10),
        concurrency: 4,
        env: Default::default(),
    })
}

/// Runs a step as one intent, then undoes it if it acted.
async fn run(p: &Parapet, key: &str, one: pb::Step) {
    let mut req = block(key, "198.51.100.1");
    req.steps = vec![one];
    let r = p.submit(req).await.unwrap();
    if r.state == pb::IntentState::Active as i32 {
        p.rollback(&r.intent_id, "done").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_exported_event_is_valid_ocsf() {
    let p = Parapet::start_with_adapters(POLICY, vec![exec()])
        .await
        .unwrap();
    let host = |id: &str, ip: &str| step("isolate_host", "host", id, &[("ip", ip)]);
    let cases = [
        step("block_ip", "ip", "198.51.100.7", &[]),
        step("block_ip", "ip", "2001:db8::7", &[]),
        // the EDL's own floor refuses a /8 the policy lets through
        step("block_ip", "ip", "10.0.0.0/8", &[]),
        host("ws-7", "198.51.100.8"),
        step("revoke_credentials", "user", "alice", &[]),
        step("revoke_credentials", "user", "fail-bob", &[]),
        step("revoke_credentials", "user", "stuck-carol", &[]),
        step("quarantine_file", "file", "/var/tmp/evil.exe", &[]),
        step("quarantine_file", "file", "C:\\Users\\dave\\evil.exe", &[]),
        step("quarantine_file", "file", "fail.bin", &[]),
        step("quarantine_file", "file", "stuck.bin", &[]),
        step("kill_process", "process", "4242", &[("name", "beacon.exe")]),
        step("kill_process", "process", "fail-4243", &[]),
        step("kill_process", "process", "stuck-svc", &[]),
        step("disable_mailbox", "user", "erin", &[]),
        step("disable_mailbox", "user", "fail-frank", &[]),
    ];
    for (i, s) in cases.into_iter().enumerate() {
        run(&p, &format!("c{i}"), s).await;
    }

    let mut stream = p
        .journal()
        .export(pb::ExportJournalRequest {
            query: None,
            format: pb::ExportFormat::Ocsf as i32,
        })
        .await
        .unwrap()
        .into_inner();
    let mut lines = String::new();
    let mut seen = BTreeSet::new();
    while let Some(e) = stream.message().await.unwrap() {
        let v: serde_json::Value = serde_json::from_str(&e.json).unwrap();
        seen.insert((
            v["class_uid"].as_u64().unwrap(),
            v["activity_id"].as_u64().unwrap(),
            v["status_id"].as_u64().unwrap(),
        ));
        lines.push_str(&e.json);
        lines.push('\n');
    }
    // every class, acting and undoing, succeeding and failing
    for class in [7001, 7002, 7003, 7004] {
        for (activity, status) in [
            (1, 1),
            (1, 6),
            (2, 1),
            (2, 6),
            (3, 1),
            (3, 6),
            (99, 1),
            (99, 6),
        ] {
            let expected = matches!(
                (class, activity),
                (7004 | 7002, 1) | (7003, 2) | (_, 3) | (7001, 2 | 99)
            );
            // nothing fails to undo on the lists, and an eviction of credentials always works here
            let impossible = (class == 7004 && (activity, status) == (3, 6))
                || (class == 7001 && activity == 2 && status == 6);
            if expected && !impossible {
                assert!(
                    seen.contains(&(class, activity, status)),
                    "no {class}/{activity}/{status} in {seen:?}"
                );
            }
        }
    }

    let mut validate = tokio::process::Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("ocsf/validate.py"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    validate
        .stdin
        .take()
        .unwrap()
        .write_all(lines.as_bytes())
        .await
        .unwrap();
    let out = validate.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "the export does not follow OCSF 1.4:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // what OCSF means by each field
    let events: Vec<serde_json::Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let process = events.iter().find(|e| e["process"]["pid"] == 4242).unwrap();
    assert_eq!(process["process"]["name"], "beacon.exe");
    assert!(events.iter().any(|e| e["process"]["uid"] == "stuck-svc"));
    let file = events
        .iter()
        .find(|e| e["file"]["path"] == "/var/tmp/evil.exe")
        .unwrap();
    assert_eq!(file["file"]["name"], "evil.exe");
    assert!(events.iter().any(
        |e| e["file"]["name"] == "evil.exe" && e["file"]["path"] == "C:\\Users\\dave\\evil.exe"
    ));
    assert!(
        events
            .iter()
            .any(|e| e["file"]["name"] == "fail.bin" && e["file"].get("path").is_none())
    );
}
