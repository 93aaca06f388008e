//! The bouncer API as a bouncer and an operator see it: the binary, keys made with
//! `parapet bouncer`, the Local API routes called with curl.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;

use common::{BIN, Server};
use serde_json::{Value, json};

fn pull(server: &Server, key: &str, query: &str) -> (u16, Value) {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10", "-w", "\n%{http_code}", "-H"])
        .arg(format!("X-Api-Key: {key}"))
        .arg(format!("http://{}{query}", server.http))
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.parse().unwrap(), serde_json::from_str(body).unwrap())
}

fn values(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|d| d["value"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn submit(server: &Server, key: &str, target: &str, ttl: &str) -> String {
    let (status, answer) = common::post_json(
        &format!("http://{}/v1/intents", server.http),
        &[],
        &json!({
            "idempotencyKey": key, "source": "siem",
            "detection": {"ruleId": "edr.c2_beacon", "severity": "SEVERITY_CRITICAL", "confidence": 0.95},
            "steps": [{"kind": "block_ip", "target": {"kind": "ip", "id": target}}],
            "ttl": ttl, "reason": "beacon", "wait": true
        })
        .to_string(),
    );
    assert_eq!(status, 201, "{answer}");
    answer["intentId"].as_str().unwrap().to_owned()
}

#[test]
fn bouncers_read_each_change_once_with_their_own_keys() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bouncers.toml");
    let add = |name: &str| {
        let out = Command::new(BIN)
            .args(["bouncer", "add", name, "--file"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let key = add("gw-1");
    assert!(
        !std::fs::read_to_string(&file).unwrap().contains(&key),
        "kept hashed"
    );
    let config = format!("[crowdsec]\nbouncers = \"{}\"\n", file.display());
    let server = Server::configured(dir.path(), &config, false);

    let first = submit(&server, "b1", "198.51.100.11", "3600s");
    submit(&server, "b2", "198.51.100.0/24", "7200s");
    // start-up: everything in force, with its scope and time left
    let (status, stream) = pull(&server, &key, "/v1/decisions/stream?startup=true");
    assert_eq!(status, 200);
    assert_eq!(stream["deleted"], Value::Null);
    let new = stream["new"].as_array().unwrap();
    assert_eq!(values(&stream["new"]), ["198.51.100.11", "198.51.100.0/24"]);
    assert_eq!(
        (new[0]["scope"].as_str(), new[1]["scope"].as_str()),
        (Some("Ip"), Some("Range"))
    );
    assert_eq!(new[0]["origin"], "parapet");
    assert_eq!(new[0]["type"], "ban");
    assert_eq!(new[0]["scenario"], "edr.c2_beacon");
    assert!(
        new[0]["duration"].as_str().unwrap().starts_with("0h59m"),
        "{}",
        new[0]
    );
    // nothing changed: nothing again
    let (_, again) = pull(&server, &key, "/v1/decisions/stream?startup=false");
    assert_eq!(again, json!({"new": null, "deleted": null}));

    // a longer TTL for a block in force (a repeat extends it): deleted and new again, so a
    // bouncer that keeps the old timeout replaces it
    let (status, _) = common::post_json(
        &format!("http://{}/v1/intents", server.http),
        &[],
        &json!({
            "idempotencyKey": "b2", "source": "siem",
            "detection": {"ruleId": "edr.c2_beacon", "severity": "SEVERITY_CRITICAL", "confidence": 0.95},
            "steps": [{"kind": "block_ip", "target": {"kind": "ip", "id": "198.51.100.0/24"}}],
            "ttl": "14400s", "reason": "beacon"
        })
        .to_string(),
    );
    assert_eq!(status, 200, "a repeat");
    let (_, extended) = pull(&server, &key, "/v1/decisions/stream");
    assert_eq!(values(&extended["deleted"]), ["198.51.100.0/24"]);
    assert_eq!(values(&extended["new"]), ["198.51.100.0/24"]);
    let duration = extended["new"][0]["duration"].as_str().unwrap();
    assert!(duration.starts_with("3h59m"), "{duration}");

    // a rollback and a new block: each once
    let (status, _) = common::post_json(
        &format!("http://{}/v1/intents/{first}:rollback", server.http),
        &[],
        r#"{"reason": "false positive", "wait": true}"#,
    );
    assert_eq!(status, 200);
    submit(&server, "b3", "198.51.100.13", "3600s");
    let (_, changed) = pull(&server, &key, "/v1/decisions/stream");
    assert_eq!(values(&changed["new"]), ["198.51.100.13"]);
    assert_eq!(values(&changed["deleted"]), ["198.51.100.11"]);
    let (_, again) = pull(&server, &key, "/v1/decisions/stream");
    assert_eq!(again, json!({"new": null, "deleted": null}));
    // the stream's filters, as LAPI's
    let (_, ranges) = pull(
        &server,
        &key,
        "/v1/decisions/stream?startup=true&scopes=range",
    );
    assert_eq!(values(&ranges["new"]), ["198.51.100.0/24"]);
    let (_, other) = pull(
        &server,
        &key,
        "/v1/decisions/stream?startup=true&origins=cscli",
    );
    assert_eq!(other["new"], Value::Null);

    // live queries: by address (inside a range too), by value, nothing is null
    let (_, by_ip) = pull(&server, &key, "/v1/decisions?ip=198.51.100.77");
    assert_eq!(values(&by_ip), ["198.51.100.0/24"]);
    let (_, by_value) = pull(&server, &key, "/v1/decisions?scope=ip&value=198.51.100.13");
    assert_eq!(values(&by_value), ["198.51.100.13"]);
    let (_, none) = pull(&server, &key, "/v1/decisions?ip=192.0.2.1");
    assert_eq!(none, Value::Null);
    let (status, bad) = pull(&server, &key, "/v1/decisions?ip=300.1.1.1");
    assert_eq!(status, 400, "{bad}");

    // keys: unknown or missing is 403 as LAPI says it; one added while running works at once,
    // one deleted stops at once
    let (status, body) = pull(&server, "nope", "/v1/decisions/stream?startup=true");
    assert_eq!(
        (status, body),
        (403, json!({"message": "access forbidden"}))
    );
    let late = add("gw-2");
    let (status, _) = pull(&server, &late, "/v1/decisions/stream?startup=true");
    assert_eq!(status, 200);
    let out = Command::new(BIN)
        .args(["bouncer", "delete", "gw-2", "--file"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success());
    let (status, _) = pull(&server, &late, "/v1/decisions/stream");
    assert_eq!(status, 403);

    // the operator's view: who pulled, when, as what
    let listed = server.json(&["bouncer", "list", "--file", file.to_str().unwrap()]);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["name"], "gw-1");
    assert!(listed[0]["version"].as_str().unwrap().starts_with("curl/"));
    assert!(!listed[0]["last_pull"].as_str().unwrap().is_empty());
    let metrics = Command::new("curl")
        .arg(format!("http://{}/metrics", server.http))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&metrics.stdout)
            .lines()
            .any(|l| l.starts_with("parapet_bouncer_pulls_total") && l.contains("gw-1")),
        "pulls are counted per bouncer"
    );
}
