//! Who may do what, over real TLS: certificates made here (a CA, the server's, one client
//! certificate per role), a token made with `parapet token create`, and every RPC called by
//! every role.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::{collections::BTreeSet, path::Path};

use common::{BIN, Server, pki::Pki};
use parapet_proto::v1::{
    self as pb, admin_client::AdminClient, approvals_client::ApprovalsClient,
    intents_client::IntentsClient, journal_client::JournalClient,
    rollbacks_client::RollbacksClient, verdicts_client::VerdictsClient,
};
use tonic::{Code, transport::Channel};

const ROLES: [&str; 5] = ["detector", "operator", "approver", "auditor", "admin"];

/// A server with TLS, client certificates for each role, a restricted detector `xdr`, and the
/// token file; returns it with its gRPC port.
fn secure_server(dir: &Path, pki: &Pki, tokens: &Path) -> (Server, u16) {
    secure_server_with(dir, pki, tokens, "")
}

/// As [`secure_server`], with more of the config file.
fn secure_server_with(dir: &Path, pki: &Pki, tokens: &Path, more: &str) -> (Server, u16) {
    let mut config = format!(
        "[tls]\ncert = \"{}\"\nkey = \"{}\"\nclient_ca = \"{}\"\n\n[auth]\ntokens = \"{}\"\n",
        pki.path("server.pem"),
        pki.path("server.key"),
        pki.path("ca.pem"),
        tokens.display()
    );
    for role in ROLES {
        config.push_str(&format!(
            "[[auth.identities]]\nname = \"{role}-1\"\nroles = [\"{role}\"]\n"
        ));
    }
    config.push_str(
        "[[auth.identities]]\nname = \"xdr\"\nroles = [\"detector\"]\ndetections = [\"edr.c2_beacon\"]\naction_kinds = [\"block_ip\"]\n",
    );
    config.push_str(more);
    let server = Server::configured(dir, &config, true);
    let port = server.grpc.rsplit(':').next().unwrap().parse().unwrap();
    (server, port)
}

fn block(source: &str, rule: &str, kind: &str, ip: &str) -> pb::SubmitIntentRequest {
    pb::SubmitIntentRequest {
        idempotency_key: format!("{source}-{rule}-{kind}-{ip}"),
        source: source.into(),
        detection: Some(pb::Detection {
            rule_id: rule.into(),
            severity: pb::Severity::Critical.into(),
            confidence: 0.95,
            title: String::new(),
        }),
        steps: vec![pb::Step {
            kind: kind.into(),
            target: Some(pb::Target {
                kind: "ip".into(),
                id: ip.into(),
                ..Default::default()
            }),
            params: Default::default(),
        }],
        ttl: None,
        reason: "test".into(),
        wait: true,
        finding: String::new(),
    }
}

fn code<T>(r: Result<T, tonic::Status>) -> Code {
    match r {
        Ok(_) => Code::Ok,
        Err(s) => s.code(),
    }
}

/// Calls one RPC with a minimal request; the code it answers.
async fn call(ch: &Channel, method: &str, who: &str) -> Code {
    let id = "01a23389-788d-7144-aae5-07e4be5f12b9".to_owned();
    let reason = "matrix".to_owned();
    match method {
        "Intents/Submit" => code(
            IntentsClient::new(ch.clone())
                .submit(block(who, "edr.c2_beacon", "block_ip", "198.51.100.9"))
                .await,
        ),
        "Intents/WhatIf" => code(
            IntentsClient::new(ch.clone())
                .what_if(block(who, "edr.c2_beacon", "block_ip", "198.51.100.9"))
                .await,
        ),
        "Intents/Get" => code(
            IntentsClient::new(ch.clone())
                .get(pb::GetIntentRequest { intent_id: id })
                .await,
        ),
        "Intents/List" => code(
            IntentsClient::new(ch.clone())
                .list(pb::ListIntentsRequest::default())
                .await,
        ),
        "Intents/Watch" => code(
            IntentsClient::new(ch.clone())
                .watch(pb::WatchIntentsRequest {
                    intent_id: String::new(),
                })
                .await,
        ),
        "Rollbacks/Rollback" => code(
            RollbacksClient::new(ch.clone())
                .rollback(pb::RollbackRequest {
                    intent_id: id,
                    reason,
                    ..Default::default()
                })
                .await,
        ),
        "Rollbacks/RollbackSelected" => code(
            RollbacksClient::new(ch.clone())
                .rollback_selected(pb::RollbackSelectedRequest {
                    detection: "none".into(),
                    reason,
                    ..Default::default()
                })
                .await,
        ),
        "Journal/Query" => code(
            JournalClient::new(ch.clone())
                .query(pb::QueryJournalRequest {
                    limit: 1,
                    ..Default::default()
                })
                .await,
        ),
        "Journal/Verify" => code(
            JournalClient::new(ch.clone())
                .verify(pb::VerifyJournalRequest::default())
                .await,
        ),
        "Journal/Export" => code(
            JournalClient::new(ch.clone())
                .export(pb::ExportJournalRequest::default())
                .await,
        ),
        "Journal/ReplayPolicy" => code(
            JournalClient::new(ch.clone())
                .replay_policy(pb::ReplayPolicyRequest {
                    policy_toml: "[[detections]]\nid = \"x\"\n".into(),
                    since: Some(parapet_proto::wkt::Timestamp::default()),
                    until: None,
                })
                .await,
        ),
        "Approvals/ListPending" => code(
            ApprovalsClient::new(ch.clone())
                .list_pending(pb::ListPendingRequest::default())
                .await,
        ),
        "Approvals/Approve" => code(
            ApprovalsClient::new(ch.clone())
                .approve(pb::AnswerRequest {
                    intent_id: id,
                    reason,
                    ..Default::default()
                })
                .await,
        ),
        "Approvals/Reject" => code(
            ApprovalsClient::new(ch.clone())
                .reject(pb::AnswerRequest {
                    intent_id: id,
                    reason,
                    ..Default::default()
                })
                .await,
        ),
        "Verdicts/Judge" => code(
            VerdictsClient::new(ch.clone())
                .judge(pb::VerdictRequest {
                    intent_id: id,
                    ..Default::default()
                })
                .await,
        ),
        "Verdicts/Precision" => code(
            VerdictsClient::new(ch.clone())
                .precision(pb::PrecisionRequest::default())
                .await,
        ),
        "Admin/SetKillSwitch" => code(
            AdminClient::new(ch.clone())
                .set_kill_switch(pb::SetKillSwitchRequest {
                    action_kind: "isolate_host".into(),
                    engaged: false,
                    reason,
                    ..Default::default()
                })
                .await,
        ),
        "Admin/ReloadPolicy" => code(
            AdminClient::new(ch.clone())
                .reload_policy(pb::ReloadPolicyRequest::default())
                .await,
        ),
        "Admin/GetStatus" => code(
            AdminClient::new(ch.clone())
                .get_status(pb::GetStatusRequest::default())
                .await,
        ),
        "Admin/GetPolicy" => code(
            AdminClient::new(ch.clone())
                .get_policy(pb::GetPolicyRequest::default())
                .await,
        ),
        "Admin/SetDemotion" => code(
            AdminClient::new(ch.clone())
                .set_demotion(pb::SetDemotionRequest {
                    detection: "edr.c2_beacon".into(),
                    demoted: false,
                    reason,
                    ..Default::default()
                })
                .await,
        ),
        "Admin/CompactJournal" => code(
            AdminClient::new(ch.clone())
                .compact_journal(pb::CompactJournalRequest::default())
                .await,
        ),
        other => panic!("no call for {other}"),
    }
}

/// Every RPC and the roles that may call it: the security model as the README states it.
const MATRIX: &[(&str, &[&str])] = &[
    ("Intents/Submit", &["detector"]),
    ("Intents/WhatIf", &["detector"]),
    ("Intents/Get", &ROLES),
    ("Intents/List", &ROLES),
    ("Intents/Watch", &ROLES),
    ("Rollbacks/Rollback", &["operator"]),
    ("Rollbacks/RollbackSelected", &["operator"]),
    ("Journal/Query", &["auditor"]),
    ("Journal/Verify", &["auditor"]),
    ("Journal/Export", &["auditor"]),
    ("Journal/ReplayPolicy", &["auditor", "admin"]),
    (
        "Approvals/ListPending",
        &["approver", "operator", "auditor"],
    ),
    ("Approvals/Approve", &["approver"]),
    ("Approvals/Reject", &["approver"]),
    ("Verdicts/Judge", &["operator"]),
    ("Verdicts/Precision", &["operator", "auditor", "admin"]),
    ("Admin/SetKillSwitch", &["operator"]),
    ("Admin/ReloadPolicy", &["admin"]),
    ("Admin/GetStatus", &ROLES),
    ("Admin/GetPolicy", &ROLES),
    ("Admin/SetDemotion", &["admin"]),
    ("Admin/CompactJournal", &["admin"]),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_by_every_role_over_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = ROLES.iter().map(|r| format!("{r}-1")).collect();
    let mut clients: Vec<&str> = names.iter().map(String::as_str).collect();
    clients.extend(["xdr", "stranger"]);
    let pki = Pki::new(dir.path(), &clients);
    let tokens = dir.path().join("tokens.toml");
    std::fs::write(&tokens, "").unwrap();
    let (server, port) = secure_server(dir.path(), &pki, &tokens);

    for role in ROLES {
        let who = format!("{role}-1");
        let ch = pki.channel(port, Some(&who)).await;
        for (method, allowed) in MATRIX {
            let got = call(&ch, method, &who).await;
            if allowed.contains(&role) {
                assert!(
                    !matches!(got, Code::PermissionDenied | Code::Unauthenticated),
                    "{role} may call {method}, got {got:?}"
                );
            } else {
                assert_eq!(got, Code::PermissionDenied, "{role} may not call {method}");
            }
        }
    }
    // refusals are journaled at most 10 a second (a burst of 100): let the allowance refill,
    // so that every one of the next is journaled too and can be counted
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    // no certificate and no token, or a certificate naming nobody known: nothing but health
    for anonymous in [
        pki.channel(port, None).await,
        pki.channel(port, Some("stranger")).await,
    ] {
        for (method, _) in MATRIX {
            assert_eq!(
                call(&anonymous, method, "x").await,
                Code::Unauthenticated,
                "{method}"
            );
        }
        let health = tonic_health::pb::health_client::HealthClient::new(anonymous.clone())
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await;
        assert!(health.is_ok());
    }
    // both kinds of refusal are journaled as security events, with who and what (written
    // beside the answer, so the last few may land a moment after it)
    let auditor = pki.channel(port, Some("auditor-1")).await;
    let expected_denied: usize = MATRIX.iter().map(|(_, a)| ROLES.len() - a.len()).sum();
    let expected = (expected_denied, 2 * MATRIX.len());
    let mut counted = (0, 0);
    for _ in 0..500 {
        let mut denied = JournalClient::new(auditor.clone())
            .query(pb::QueryJournalRequest {
                events: vec!["access_denied".into()],
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let (mut permission, mut unauthenticated) = (0, 0);
        while let Some(e) = denied.message().await.unwrap() {
            let payload: serde_json::Value = serde_json::from_str(&e.payload_json).unwrap();
            assert!(
                payload["peer"].as_str().unwrap().starts_with("127.0.0.1:"),
                "{payload}"
            );
            match payload["code"].as_str().unwrap() {
                "PermissionDenied" => permission += 1,
                "Unauthenticated" => unauthenticated += 1,
                other => panic!("{other}"),
            }
        }
        counted = (permission, unauthenticated);
        if counted == expected {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(counted, expected);
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detectors_are_held_to_their_source_detections_and_kinds_and_see_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), &["xdr", "detector-1", "auditor-1"]);
    let tokens = dir.path().join("tokens.toml");
    std::fs::write(&tokens, "").unwrap();
    let (_server, port) = secure_server(dir.path(), &pki, &tokens);
    let xdr = pki.channel(port, Some("xdr")).await;
    let mut client = IntentsClient::new(xdr.clone());
    let ok = client
        .submit(block("xdr", "edr.c2_beacon", "block_ip", "198.51.100.20"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.intent.unwrap().source, "xdr");
    for (req, field) in [
        (
            block("siem", "edr.c2_beacon", "block_ip", "198.51.100.21"),
            "source",
        ),
        (
            block("xdr", "ids.ssh_bruteforce", "block_ip", "198.51.100.22"),
            "detection.rule_id",
        ),
        (
            block("xdr", "edr.c2_beacon", "isolate_host", "198.51.100.23"),
            "steps",
        ),
    ] {
        let err = client.submit(req).await.unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied);
        assert!(err.message().starts_with(field), "{}", err.message());
    }
    // another detector neither lists nor reads xdr's intent
    let other = pki.channel(port, Some("detector-1")).await;
    let listed = IntentsClient::new(other.clone())
        .list(pb::ListIntentsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.intents.is_empty());
    let got = IntentsClient::new(other.clone())
        .get(pb::GetIntentRequest {
            intent_id: ok.intent_id.clone(),
        })
        .await;
    assert_eq!(got.unwrap_err().code(), Code::NotFound);
    // status shows a detector the counts of its own intents only; others see them all
    let status = |ch: &Channel| {
        let ch = ch.clone();
        async move {
            parapet_proto::v1::admin_client::AdminClient::new(ch)
                .get_status(pb::GetStatusRequest::default())
                .await
                .unwrap()
                .into_inner()
        }
    };
    let theirs = status(&other).await;
    assert!(theirs.active_by_kind.is_empty(), "{theirs:?}");
    let own = status(&xdr).await;
    assert_eq!(own.active_by_kind.get("block_ip"), Some(&1), "{own:?}");
    // the journal names the certificate's identity as the actor
    let auditor = pki.channel(port, Some("auditor-1")).await;
    let mut entries = JournalClient::new(auditor)
        .query(pb::QueryJournalRequest {
            intent_id: ok.intent_id.clone(),
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(entries.message().await.unwrap().unwrap().actor, "xdr");

    // the CLI with a client certificate
    let out = std::process::Command::new(BIN)
        .args([
            "--server",
            &format!("https://localhost:{port}"),
            "--ca",
            &pki.path("ca.pem"),
        ])
        .args([
            "--cert",
            &pki.path("xdr.pem"),
            "--cert-key",
            &pki.path("xdr.key"),
        ])
        .args(["get", &ok.intent_id, "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"state\":\"active\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_authenticate_and_never_show() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), &[]);
    let tokens = dir.path().join("tokens.toml");
    let out = std::process::Command::new(BIN)
        .args([
            "token",
            "create",
            "--identity",
            "soc-bot",
            "--role",
            "operator",
            "--role",
            "auditor",
            "--file",
        ])
        .arg(&tokens)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(token.starts_with("parapet_") && token.len() > 60);
    let stored = std::fs::read_to_string(&tokens).unwrap();
    assert!(
        !stored.contains(&token[8..]),
        "the file keeps a hash, not the token"
    );

    let (server, port) = secure_server(dir.path(), &pki, &tokens);
    let url = format!("https://localhost:{port}");
    let cli = |token: &str, args: &[&str]| {
        std::process::Command::new(BIN)
            .args(["--server", &url, "--ca", &pki.path("ca.pem")])
            .args(args)
            .env("PARAPET_TOKEN", token)
            .output()
            .unwrap()
    };
    let status = cli(&token, &["status"]);
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let out = cli(&token, &["kill-switch", "engage", "--reason", "drill"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // a token of the right shape that is not in the file, and a role the token lacks
    let wrong = cli("parapet_00000000", &["status"]);
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("Unauthenticated"));
    let approve = cli(
        &token,
        &[
            "approve",
            "01a23389-788d-7144-aae5-07e4be5f12b9",
            "--reason",
            "x",
        ],
    );
    assert!(String::from_utf8_lossy(&approve.stderr).contains("PermissionDenied"));
    // the operator's identity is the actor, and the token appears nowhere
    let export = cli(&token, &["journal", "export"]);
    let journal = String::from_utf8(export.stdout).unwrap();
    assert!(journal.contains("\"actor\":\"soc-bot\""), "{journal}");
    let said = server.terminate();
    for (what, text) in [
        ("journal", &journal),
        ("server log", &said),
        (
            "errors",
            &String::from_utf8_lossy(&wrong.stderr).into_owned(),
        ),
    ] {
        assert!(!text.contains(&token[8..]), "the token is in the {what}");
    }
}

#[test]
fn the_server_refuses_to_start_open_to_anyone() {
    let dir = tempfile::tempdir().unwrap();
    let serve = |extra: &[&str]| {
        std::process::Command::new(BIN)
            .args(["serve", "--http-addr", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(extra)
            .output()
            .unwrap()
    };
    let out = serve(&["--grpc-addr", "127.0.0.1:0"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("gRPC needs [tls]"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = serve(&["--grpc-addr", "0.0.0.0:0", "--insecure"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("use a loopback address"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The HTTP route of each RPC of [`MATRIX`], with a minimal body.
fn http_route(method: &str, who: &str) -> (&'static str, String, Option<serde_json::Value>) {
    use serde_json::json;
    let id = "01a23389-788d-7144-aae5-07e4be5f12b9";
    let reason = json!({"reason": "matrix"});
    match method {
        "Intents/Submit" => (
            "POST",
            "/v1/intents".into(),
            Some(json!({
                "idempotencyKey": format!("{who}-http"), "source": who,
                "detection": {"ruleId": "edr.c2_beacon", "severity": "SEVERITY_CRITICAL", "confidence": 0.95},
                "steps": [{"kind": "block_ip", "target": {"kind": "ip", "id": "198.51.100.9"}}],
                "reason": "test"
            })),
        ),
        "Intents/WhatIf" => (
            "POST",
            "/v1/intents:whatIf".into(),
            Some(json!({
                "idempotencyKey": format!("{who}-whatif"), "source": who,
                "detection": {"ruleId": "edr.c2_beacon", "severity": "SEVERITY_CRITICAL", "confidence": 0.95},
                "steps": [{"kind": "block_ip", "target": {"kind": "ip", "id": "198.51.100.9"}}],
                "reason": "test"
            })),
        ),
        "Intents/Get" => ("GET", format!("/v1/intents/{id}"), None),
        "Intents/List" => ("GET", "/v1/intents".into(), None),
        "Intents/Watch" => ("GET", "/v1/intents:watch".into(), None),
        "Rollbacks/Rollback" => ("POST", format!("/v1/intents/{id}:rollback"), Some(reason)),
        "Rollbacks/RollbackSelected" => (
            "POST",
            "/v1/intents:rollback".into(),
            Some(json!({"detection": "none", "reason": "matrix"})),
        ),
        "Journal/Query" => ("GET", "/v1/journal?limit=1".into(), None),
        "Journal/Verify" => ("POST", "/v1/journal:verify".into(), None),
        "Journal/Export" => ("GET", "/v1/journal:export?query.limit=1".into(), None),
        "Journal/ReplayPolicy" => (
            "POST",
            "/v1/journal:replay".into(),
            Some(
                json!({"policyToml": "[[detections]]\nid = \"x\"\n", "since": "1970-01-01T00:00:00Z"}),
            ),
        ),
        "Approvals/ListPending" => ("GET", "/v1/approvals".into(), None),
        "Approvals/Approve" => ("POST", format!("/v1/intents/{id}:approve"), Some(reason)),
        "Approvals/Reject" => ("POST", format!("/v1/intents/{id}:reject"), Some(reason)),
        "Verdicts/Judge" => ("POST", format!("/v1/intents/{id}:judge"), None),
        "Verdicts/Precision" => ("GET", "/v1/precision".into(), None),
        "Admin/SetKillSwitch" => (
            "POST",
            "/v1/kill-switch".into(),
            Some(json!({"actionKind": "isolate_host", "engaged": false, "reason": "matrix"})),
        ),
        "Admin/ReloadPolicy" => ("POST", "/v1/policy:reload".into(), None),
        "Admin/GetStatus" => ("GET", "/v1/status".into(), None),
        "Admin/GetPolicy" => ("GET", "/v1/policy".into(), None),
        "Admin/SetDemotion" => (
            "POST",
            "/v1/demotions".into(),
            Some(json!({"detection": "edr.c2_beacon", "demoted": false, "reason": "matrix"})),
        ),
        "Admin/CompactJournal" => ("POST", "/v1/journal:compact".into(), None),
        other => panic!("no route for {other}"),
    }
}

/// curl over HTTPS with the test CA, a client certificate and any more arguments; the
/// status and body.
fn https(pki: &Pki, client: Option<&str>, args: &[&str], url: &str) -> (u16, String) {
    let mut cmd = std::process::Command::new("curl");
    cmd.args(["-s", "--max-time", "5", "-w", "\n%{http_code}"])
        .args(["--cacert", &pki.path("ca.pem")]);
    if let Some(c) = client {
        cmd.args(["--cert", &pki.path(&format!("{c}.pem"))])
            .args(["--key", &pki.path(&format!("{c}.key"))]);
    }
    // a watch goes on; its status line is all this needs
    if url.contains(":watch") {
        cmd.args(["--max-time", "1"]);
    }
    let out = cmd.args(args).arg(url).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

#[test]
fn every_route_by_every_role_over_https_with_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = ROLES.iter().map(|r| format!("{r}-1")).collect();
    let mut clients: Vec<&str> = names.iter().map(String::as_str).collect();
    clients.push("stranger");
    let pki = Pki::new(dir.path(), &clients);
    let tokens = dir.path().join("tokens.toml");
    std::fs::write(&tokens, "").unwrap();
    let https_listener = format!(
        "[http.tls]\ncert = \"{}\"\nkey = \"{}\"\nclient_ca = \"{}\"\n",
        pki.path("server.pem"),
        pki.path("server.key"),
        pki.path("ca.pem")
    );
    let (server, _) = secure_server_with(dir.path(), &pki, &tokens, &https_listener);
    let port = server.http.rsplit(':').next().unwrap();
    let base = format!("https://localhost:{port}");
    let call = |client: Option<&str>, method: &str, who: &str| {
        let (verb, path, body) = http_route(method, who);
        let body = body.map(|b| b.to_string());
        let mut args = vec!["-X", verb];
        if let Some(b) = &body {
            args.extend(["-H", "content-type: application/json", "--data-binary", b]);
        }
        https(&pki, client, &args, &format!("{base}{path}"))
    };
    for role in ROLES {
        let who = format!("{role}-1");
        for (method, allowed) in MATRIX {
            let (status, body) = call(Some(&who), method, &who);
            if allowed.contains(&role) {
                assert!(
                    ![0, 401, 403].contains(&status),
                    "{role} may call {method}, got {status} {body}"
                );
            } else {
                assert_eq!(status, 403, "{role} may not call {method}: {body}");
                let problem: serde_json::Value = serde_json::from_str(&body).unwrap();
                assert_eq!(problem["code"], "PermissionDenied");
            }
        }
    }
    for anonymous in [None, Some("stranger")] {
        for (method, _) in MATRIX {
            let (status, body) = call(anonymous, method, "x");
            assert_eq!(status, 401, "{method} by {anonymous:?}: {body}");
        }
    }
    // plaintext to the TLS listener gets nowhere
    let plain = std::process::Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "5",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .arg(format!("http://localhost:{port}/v1/status"))
        .output()
        .unwrap();
    assert_ne!(String::from_utf8_lossy(&plain.stdout), "200");
    // the refusals are journaled as gRPC's are, with the peer
    let (status, body) = https(
        &pki,
        Some("auditor-1"),
        &[],
        &format!("{base}/v1/journal?events=access_denied"),
    );
    assert_eq!(status, 200);
    let codes: BTreeSet<String> = body
        .lines()
        .map(|l| {
            let e: serde_json::Value = serde_json::from_str(l).unwrap();
            let payload: serde_json::Value =
                serde_json::from_str(e["payloadJson"].as_str().unwrap()).unwrap();
            assert!(payload["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
            payload["code"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(
        codes,
        BTreeSet::from(["PermissionDenied".to_owned(), "Unauthenticated".to_owned()])
    );
    drop(server);
}

fn post(url: &str, headers: &[String], body: &str) -> (u16, serde_json::Value) {
    common::post_json(url, headers, body)
}

#[test]
fn intakes_authenticate_by_token_query_token_or_signature() {
    use hmac::Mac as _;
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), &["auditor-1"]);
    let tokens = dir.path().join("tokens.toml");
    let splunk = common::token(&tokens, "splunk", "detector");
    let am = common::token(&tokens, "alertmanager", "detector");
    let secret = "a-shared-secret-of-at-least-32-bytes!";
    std::fs::write(dir.path().join("hmac.secret"), secret).unwrap();
    let intakes = format!(
        "[[intake]]\nname = \"splunk\"\npreset = \"splunk\"\nsource = \"splunk\"\nauth = \"query_token\"\n\
         [intake.map]\naction = \"=block_ip\"\n\n\
         [[intake]]\nname = \"am\"\npreset = \"alertmanager\"\nsource = \"alertmanager\"\n\n\
         [[intake]]\nname = \"tip\"\npreset = \"generic\"\nsource = \"tip\"\nauth = \"hmac\"\nsecret_file = \"{}\"\n\
         [intake.map]\ndetection = \"=edr.c2_beacon\"\naction = \"=block_ip\"\ntarget = \"/ioc\"\n\
         severity = \"=critical\"\nconfidence = \"=0.99\"\nidempotency_key = \"/id\"\n",
        dir.path().join("hmac.secret").display()
    );
    let (server, port) = secure_server_with(dir.path(), &pki, &tokens, &intakes);
    let base = format!("http://{}/v1/ingest", server.http);
    let splunk_alert = serde_json::json!({
        "result": {"src_ip": "198.51.100.61", "severity": "high", "confidence": "0.9"},
        "sid": "rt_scheduler__admin__search__x_at_1_1", "search_name": "edr.c2_beacon",
        "results_link": "https://splunk:8000/app/search/@go?sid=x", "owner": "admin", "app": "search"
    })
    .to_string();

    // Splunk: the token in the URL, as its webhook alert action can only send it
    let (status, answer) = post(&format!("{base}/splunk?token={splunk}"), &[], &splunk_alert);
    assert_eq!(status, 200, "{answer}");
    assert!(
        answer["results"][0]["intentId"].as_str().is_some(),
        "{answer}"
    );
    let (status, _) = post(
        &format!("{base}/splunk?token=parapet_wrong"),
        &[],
        &splunk_alert,
    );
    assert_eq!(status, 401);
    let (status, _) = post(&format!("{base}/splunk"), &[], &splunk_alert);
    assert_eq!(status, 401);
    // a bearer token only: the query is for Splunk's intake alone
    let am_alert = serde_json::json!({"alerts": [{"status": "firing", "labels": {
        "alertname": "edr.c2_beacon", "action": "block_ip", "target": "198.51.100.62",
        "severity": "critical", "confidence": "0.95"}, "startsAt": "2026-12-08T00:00:00Z",
        "fingerprint": "1"}]})
    .to_string();
    let (status, _) = post(&format!("{base}/am?token={am}"), &[], &am_alert);
    assert_eq!(status, 401);
    let (status, answer) = post(
        &format!("{base}/am"),
        &[format!("Authorization: Bearer {am}")],
        &am_alert,
    );
    assert_eq!(status, 200, "{answer}");
    // one identity may not submit as another's intake
    let (status, answer) = post(
        &format!("{base}/am"),
        &[format!("Authorization: Bearer {splunk}")],
        &am_alert,
    );
    assert_eq!(
        (status, answer["code"].as_str()),
        (403, Some("PermissionDenied")),
        "{answer}"
    );

    // a signature over the timestamp and the body; a replay after five minutes is refused
    let sign = |at: u64, body: &str| {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{at}.{body}").as_bytes());
        vec![
            format!("X-Parapet-Timestamp: {at}"),
            format!(
                "X-Parapet-Signature: sha256={}",
                hex::encode(mac.finalize().into_bytes())
            ),
        ]
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let ioc = r#"{"ioc": "198.51.100.63", "id": "ioc-1"}"#;
    let (status, answer) = post(&format!("{base}/tip"), &sign(now, ioc), ioc);
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = post(&format!("{base}/tip"), &sign(now - 301, ioc), ioc);
    assert_eq!(status, 401, "{answer}");
    assert!(
        answer["detail"].as_str().unwrap().contains("replay"),
        "{answer}"
    );
    let (status, _) = post(
        &format!("{base}/tip"),
        &sign(now, ioc),
        r#"{"ioc": "10.0.0.1", "id": "ioc-2"}"#,
    );
    assert_eq!(status, 401, "another body under the same signature");

    // what was submitted carries its intake's source; the URL's token is nowhere
    let auditor = pki.channel(port, Some("auditor-1"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let journal = rt.block_on(async {
        let ch = auditor.await;
        let mut stream = JournalClient::new(ch)
            .export(pb::ExportJournalRequest::default())
            .await
            .unwrap()
            .into_inner();
        let mut all = String::new();
        while let Some(e) = stream.message().await.unwrap() {
            all.push_str(&e.json);
            all.push('\n');
        }
        all
    });
    for source in [
        "\"source\":\"splunk\"",
        "\"source\":\"alertmanager\"",
        "\"source\":\"tip\"",
    ] {
        assert!(journal.contains(source), "{source} in {journal}");
    }
    // the auditor's connection is still open (its runtime is not polled, so it cannot answer
    // the server's GOAWAY): the stop cuts it and exits cleanly all the same
    let said = server.terminate();
    drop(rt);
    for (what, text) in [("journal", &journal), ("server log", &said)] {
        assert!(
            !text.contains(&splunk[8..]),
            "the Splunk token is in the {what}"
        );
    }
}

/// A browser is not an API client. An insecure Parapet answers loopback names only, so a page
/// that rebinds its own name to 127.0.0.1 reaches nothing; and a request a web page makes
/// (it carries an `Origin`) is refused outside the console, so a browser holding a client
/// certificate or sitting on this machine cannot be made to submit, roll back or reload.
#[test]
fn web_pages_cannot_call_the_api() {
    let server = Server::start();
    let port = server.http.rsplit(':').next().unwrap();
    let curl = |path: &str, headers: &[&str], body: Option<&str>| -> u16 {
        let mut args = Vec::new();
        for h in headers {
            args.extend(["-H", h]);
        }
        if let Some(b) = body {
            args.extend(["-H", "content-type: application/json", "--data-binary", b]);
        }
        common::status_of(&args, &format!("http://127.0.0.1:{port}{path}"))
    };
    let engage = Some(r#"{"engaged": true, "reason": "from a page"}"#);
    // programs, by any loopback name
    assert_eq!(curl("/v1/status", &[], None), 200);
    for host in ["localhost", "127.0.0.1", "[::1]", "app.localhost"] {
        let header = format!("Host: {host}:{port}");
        assert_eq!(curl("/v1/status", &[&header], None), 200, "{host}");
    }
    // a rebound name gets nothing that needs no credentials: not the API, not a console
    // session (it is sent to sign in, and signing in fails)
    let rebound = format!("Host: attacker.example:{port}");
    assert_eq!(curl("/v1/status", &[&rebound], None), 403);
    assert_eq!(curl("/v1/kill-switch", &[&rebound], engage), 403);
    assert_eq!(curl("/console/pending", &[&rebound], None), 303);
    let login = std::process::Command::new("curl")
        .args([
            "-s",
            "-i",
            "--max-time",
            "5",
            "-H",
            &rebound,
            "-d",
            "token=",
        ])
        .arg(format!("http://127.0.0.1:{port}/console/login"))
        .output()
        .unwrap();
    let login = String::from_utf8(login.stdout).unwrap();
    assert!(login.starts_with("HTTP/1.1 200"), "{login}");
    assert!(!login.contains("parapet_session"), "{login}");
    // the lists keep answering firewalls by any name: they have credentials of their own
    assert_eq!(curl("/edl/block", &[&rebound], None), 200);
    // a page's request, even for the right host, is refused outside the console
    let origin = "Origin: https://attacker.example";
    assert_eq!(curl("/v1/kill-switch", &[origin], engage), 403);
    assert_eq!(
        curl("/v1/status", &["Sec-Fetch-Site: cross-site"], None),
        403
    );
    // a person's own navigation is not a page's request
    assert_eq!(curl("/v1/status", &["Sec-Fetch-Site: none"], None), 200);
    let engaged = || {
        // `status --json`: a line per kill switch engaged
        let status = server.json(&["status"]);
        status.iter().any(|line| line.get("engaged_by").is_some())
    };
    assert!(!engaged(), "a page engaged the kill switch");
    // the same call from a program goes through
    assert_eq!(curl("/v1/kill-switch", &[], engage), 200);
    assert!(engaged());
}

/// The token file is read again when it changes: a token removed stops working, one added
/// works, an agent's ceiling raised holds its next intent, all without a restart; a file that
/// no longer reads keeps the tokens as they were.
#[test]
fn token_file_changes_count_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), &[]);
    let tokens = dir.path().join("tokens.toml");
    let leaked = common::token(&tokens, "auditor-1", "auditor");
    let agent = common::token_with(
        &tokens,
        "triage-agent",
        "detector",
        &["--max-tier", "approval"],
    );
    let config = format!(
        "[tls]\n{}[auth]\ntokens = \"{}\"\n",
        pki.server_tls(),
        tokens.display()
    );
    let server = Server::configured(dir.path(), &config, true);
    let base = format!("http://{}", server.http);
    let status = |token: &str| -> u16 {
        let bearer = format!("authorization: Bearer {token}");
        common::status_of(&["-H", &bearer], &format!("{base}/v1/status"))
    };
    let eventually = |what: &str, done: &dyn Fn() -> bool| {
        let started = std::time::Instant::now();
        while !done() {
            assert!(started.elapsed().as_secs() < 10, "waited 10 s for {what}");
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    };
    let submit = |ip: &str| -> (u16, serde_json::Value) {
        let body = serde_json::json!({
            "idempotencyKey": ip, "source": "triage-agent",
            "detection": {"ruleId": "edr.c2_beacon", "severity": "SEVERITY_CRITICAL", "confidence": 0.95},
            "steps": [{"kind": "block_ip", "target": {"kind": "ip", "id": ip}}],
            "reason": "beacon",
        });
        post(
            &format!("{base}/v1/intents"),
            &[format!("authorization: Bearer {agent}")],
            &body.to_string(),
        )
    };
    assert_eq!(status(&leaked), 200);
    // a console session signed in with the token that will leak
    let jar = dir.path().join("cookies");
    let jar_path = jar.to_str().unwrap();
    let console = |args: &[&str], path: &str| -> u16 {
        let mut all = vec!["-b", jar_path, "-c", jar_path];
        all.extend(args);
        common::status_of(&all, &format!("{base}{path}"))
    };
    let form = format!("token={leaked}");
    assert_eq!(console(&["-d", &form], "/console/login"), 303);
    assert_eq!(console(&[], "/console/journal"), 200);
    let (code, held) = submit("198.51.100.81");
    assert_eq!(code, 202, "held to approval: {held}");

    // the leaked token is removed, a new one added, the agent's ceiling lifted
    let text = std::fs::read_to_string(&tokens).unwrap();
    let kept: Vec<&str> = text
        .split("\n[[tokens]]")
        .filter(|entry| !entry.contains("auditor-1"))
        .collect();
    let lifted = kept
        .join("\n[[tokens]]")
        .replace("max_tier = \"approval\"\n", "");
    std::fs::write(&tokens, lifted).unwrap();
    let fresh = common::token(&tokens, "auditor-2", "auditor");
    eventually("the removed token to stop working", &|| {
        status(&leaked) == 401
    });
    // and its console session with it: sent to sign in again
    assert_eq!(console(&[], "/console/journal"), 303);
    eventually("the new token to work", &|| status(&fresh) == 200);
    let (code, acted) = submit("198.51.100.82");
    assert_eq!(code, 201, "the agent's ceiling is lifted: {acted}");
    // the auditors see who may call, and as what, changed; never a token
    let out = std::process::Command::new("curl")
        .args(["-s", "--max-time", "5", "-H"])
        .arg(format!("authorization: Bearer {fresh}"))
        .arg(format!("{base}/v1/journal?events=tokens_changed"))
        .output()
        .unwrap();
    let lines = String::from_utf8(out.stdout).unwrap();
    let changes: Vec<serde_json::Value> = lines
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|e| serde_json::from_str(e["payloadJson"].as_str().unwrap()).unwrap())
        .collect();
    let all = serde_json::Value::Array(changes.clone()).to_string();
    assert!(all.contains("auditor-1 (auditor) sha256:"), "{all}");
    assert!(all.contains("auditor-2 (auditor) sha256:"), "{all}");
    assert!(all.contains("triage-agent (detector) sha256:"), "{all}");
    assert!(!all.contains(&leaked) && !all.contains(&fresh), "{all}");

    // a file that no longer reads changes nothing
    let mut broken = std::fs::read_to_string(&tokens).unwrap();
    broken.push_str("\n[[tokens]]\nname = \"x\"\nsha256 = \"not hex\"\nroles = [\"admin\"]\n");
    std::fs::write(&tokens, broken).unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(status(&fresh), 200);
    assert_eq!(status(&leaked), 401);
}
