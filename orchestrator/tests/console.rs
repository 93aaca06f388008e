//! The console in a real browser: Debian's Chromium driven by `playwright-core`
//! (`tests/browser/console.mjs`) against the binary with TLS, tokens and roles.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::{path::Path, process::Command};

use common::{Server, pki::Pki, token};
use serde_json::{Value, json};

fn get(url: &str, token: &str) -> Value {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10", "-H"])
        .arg(format!("Authorization: Bearer {token}"))
        .arg(url)
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn people_approve_and_reject_in_a_browser_within_their_roles() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), &[]);
    let tokens = dir.path().join("tokens.toml");
    let approver = token(&tokens, "approver-1", "approver");
    let auditor = token(&tokens, "auditor-1", "auditor");
    let detector = token(&tokens, "siem", "detector");
    let operator = token(&tokens, "oncall-1", "operator");
    let config = format!(
        "[tls]\n{}[auth]\ntokens = \"{}\"\n",
        pki.server_tls(),
        tokens.display()
    );
    let server = Server::configured(dir.path(), &config, true);
    let base = format!("http://{}", server.http);
    // two isolations wait for a person; their title is a detection's, an attacker's text
    let submit = |key: &str, host: &str, ip: &str| {
        let (status, answer) = common::post_json(
            &format!("{base}/v1/intents"),
            &[format!("Authorization: Bearer {detector}")],
            &json!({
                "idempotencyKey": key, "source": "siem",
                "detection": {"ruleId": "edr.c2_beacon", "severity": "SEVERITY_CRITICAL",
                              "confidence": 0.95, "title": "<script>alert(1)</script>"},
                "steps": [{"kind": "isolate_host", "target": {"kind": "host", "id": host,
                           "attributes": {"ip": ip, "site": "hq"}}}],
                "ttl": "3600s", "reason": "beacon"
            })
            .to_string(),
        );
        assert_eq!(status, 202, "{answer}");
        answer["intentId"].as_str().unwrap().to_owned()
    };
    let to_approve = submit("c1", "web-1", "192.0.2.201");
    let to_reject = submit("c2", "web-2", "192.0.2.202");
    // and three blocks in force, for the operator to roll back
    let block = |key: &str, ip: &str| {
        let (status, answer) = common::post_json(
            &format!("{base}/v1/intents"),
            &[format!("Authorization: Bearer {detector}")],
            &json!({
                "idempotencyKey": key, "source": "siem",
                "detection": {"ruleId": "edr.c2_beacon", "severity": "SEVERITY_CRITICAL", "confidence": 0.95},
                "steps": [{"kind": "block_ip", "target": {"kind": "ip", "id": ip}}],
                "ttl": "3600s", "reason": "beacon", "wait": true
            })
            .to_string(),
        );
        assert_eq!(status, 201, "{answer}");
        answer["intentId"].as_str().unwrap().to_owned()
    };
    let to_roll_back = block("b1", "198.51.100.61");
    block("b2", "198.51.100.62");
    block("b3", "198.51.100.63");
    // a screenshot of each page; `PARAPET_SCREENSHOTS=docs/console` (from the repository's
    // root) refreshes the README's
    let shots = match std::env::var_os("PARAPET_SCREENSHOTS") {
        Some(d) => Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(d),
        None => dir.path().join("screenshots"),
    };
    std::fs::create_dir_all(&shots).unwrap();

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/browser/console.mjs");
    let out = Command::new("node")
        .arg(&script)
        .args([&base, &approver, &auditor, &detector, &operator])
        .args([&to_approve, &to_reject, &to_roll_back])
        .arg(&shots)
        .output()
        .expect("node (scripts/install-test-deps installs playwright-core and chromium)");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();

    assert_eq!(seen["approverUrl"], "/console/pending");
    assert_eq!(seen["title"], "Pending approval");
    // the detection's title is text on the page, never run
    assert!(
        seen["shownTitles"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "<script>alert(1)</script>"),
        "{seen}"
    );
    assert_eq!(seen["dialogs"], 0);
    assert!(
        seen["noScriptApprove"]
            .as_str()
            .unwrap()
            .starts_with("approved"),
        "{seen}"
    );
    // live: what was submitted while the page was open appeared on it
    assert_eq!(seen["liveSubmit"], 202);
    assert_eq!(
        seen["rowsAfter"].as_u64().unwrap(),
        seen["rowsBefore"].as_u64().unwrap() + 1
    );
    assert_eq!(seen["consoleErrors"], json!([]), "{seen}");
    assert!(
        seen["afterApprove"]
            .as_str()
            .unwrap()
            .starts_with("approved"),
        "{seen}"
    );
    assert!(
        seen["afterReject"]
            .as_str()
            .unwrap()
            .starts_with("rejected"),
        "{seen}"
    );
    let headers = &seen["approverHeaders"];
    assert!(
        headers["content-security-policy"]
            .as_str()
            .unwrap()
            .contains("default-src 'none'")
    );
    assert_eq!(headers["x-frame-options"], "DENY");
    // an auditor sees no buttons, and its forged POST is refused; so is a form without CSRF
    assert_eq!(seen["auditorButtons"], 0);
    assert_eq!(seen["forgedStatus"], 403);
    assert_eq!(seen["noCsrfStatus"], 403);
    // the operator: one rolled back, then the selection after its preview, all gone; the
    // kill switch engaged and released
    assert!(
        seen["afterRollback"]
            .as_str()
            .unwrap()
            .starts_with("rolled back"),
        "{seen}"
    );
    assert_eq!(
        seen["preview"], 4,
        "the two approved isolations and two blocks: {seen}"
    );
    assert_eq!(seen["previewButton"], "Roll back these 4");
    assert!(
        seen["bulk"]
            .as_str()
            .unwrap()
            .contains("4 of 4 intents dealt with, 0 failed"),
        "{seen}"
    );
    assert_eq!(seen["activeAfter"], 0);
    assert_eq!(seen["engaged"], "kill switch engaged");
    assert!(
        seen["engagedList"].as_str().unwrap().contains("drill"),
        "{seen}"
    );
    assert_eq!(seen["released"], "kill switch released");
    // the detections' volumes: six intents of edr.c2_beacon
    let volumes: Vec<&str> = seen["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(volumes.len(), 1, "{volumes:?}");
    let cells: Vec<&str> = volumes[0].split_whitespace().collect();
    assert_eq!(cells[..2], ["edr.c2_beacon", "6"], "{volumes:?}");
    // the auditor's journal and story
    assert!(seen["journalRows"].as_u64().unwrap() > 10, "{seen}");
    assert!(
        seen["verified"]
            .as_str()
            .unwrap()
            .starts_with("The chain is intact"),
        "{seen}"
    );
    let story: Vec<&str> = seen["story"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for kind in ["received", "decided", "approved", "activated"] {
        assert!(story.contains(&kind), "{kind} in {story:?}");
    }
    for page in [
        "pending",
        "active",
        "intent",
        "journal",
        "status",
        "detections",
    ] {
        assert!(shots.join(format!("{page}.png")).exists(), "{page}.png");
    }
    // a detector cannot sign in; signing out ends the session
    assert_eq!(seen["detectorUrl"], "/console/login");
    assert!(
        seen["detectorError"].as_str().unwrap().contains("detector"),
        "{seen}"
    );
    assert_eq!(seen["afterSignOut"], "/console/login");

    // what the browser did, as gRPC sees it: the approved isolation acted (its story above
    // has `activated`) and went with the bulk rollback; the rejected one never acted; each
    // by its person
    let grpc_port: u16 = server.grpc.rsplit(':').next().unwrap().parse().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let state = rt.block_on(async {
        let channel = pki.channel(grpc_port, None).await;
        let mut request = tonic::Request::new(parapet_proto::v1::GetIntentRequest {
            intent_id: to_approve.clone(),
        });
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {approver}").parse().unwrap(),
        );
        parapet_proto::v1::intents_client::IntentsClient::new(channel)
            .get(request)
            .await
            .unwrap()
            .into_inner()
            .state
    });
    drop(rt);
    assert_eq!(state, parapet_proto::v1::IntentState::RolledBack as i32);
    assert_eq!(
        get(&format!("{base}/v1/intents/{to_reject}"), &approver)["state"],
        "INTENT_STATE_REJECTED"
    );
    let journal = Command::new("curl")
        .args(["-s", "-H"])
        .arg(format!("Authorization: Bearer {auditor}"))
        .arg(format!(
            "{base}/v1/journal?intentId={to_approve}&events=approved"
        ))
        .output()
        .unwrap();
    let entry: Value = serde_json::from_slice(&journal.stdout).unwrap();
    assert_eq!(entry["actor"], "approver-1");
    assert!(
        entry["payloadJson"]
            .as_str()
            .unwrap()
            .contains("seen the beacon")
    );
}

#[test]
fn a_client_certificate_signs_in_without_a_form() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), &["alice"]);
    let tokens = dir.path().join("tokens.toml");
    std::fs::write(&tokens, "").unwrap();
    let tls = format!(
        "cert = \"{}\"\nkey = \"{}\"\nclient_ca = \"{}\"\n",
        pki.path("server.pem"),
        pki.path("server.key"),
        pki.path("ca.pem")
    );
    let config = format!(
        "[tls]\n{tls}[http.tls]\n{tls}[auth]\ntokens = \"{}\"\n\
         [[auth.identities]]\nname = \"alice\"\nroles = [\"approver\"]\n",
        tokens.display()
    );
    let server = Server::configured(dir.path(), &config, true);
    let port = server.http.rsplit(':').next().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/browser/certificate.mjs");
    let out = Command::new("node")
        .arg(&script)
        .arg(format!("https://localhost:{port}"))
        .args([pki.path("alice.pem"), pki.path("alice.key")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(seen["withCertUrl"], "/console/pending", "{seen}");
    assert_eq!(seen["signedInAs"], "Signed in as alice (approver)");
    assert_eq!(
        seen["cookie"],
        json!({"secure": true, "httpOnly": true, "sameSite": "Strict"})
    );
    assert_eq!(seen["withoutCertUrl"], "/console/login");
}
