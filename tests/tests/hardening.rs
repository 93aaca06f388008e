//! Parapet tried as an attacker and a careless operator would try it, over a real gRPC client:
//! each row names a case, and asserts the refusal and its reason (or the decision and its
//! guardrail). Rows are kept in tables so a new case is one more line.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{collections::BTreeMap, time::Duration};

use futures::{FutureExt, future::BoxFuture};
use parapet_actions::{
    config::AdapterConfig,
    webhook::{RequestTemplate, WebhookConfig},
};
use parapet_tests::{Parapet, block, step, v1 as pb};
use prost::bytes::{Buf, BufMut};
use tonic::{Code, Status};

const POLICY: &str = r#"
[[detections]]
id = "edr.c2_beacon"
[detections.actions]
block_ip = "auto"
isolate_host = "auto"
suspend_user = "auto"

[[protected]]
name = "payment network"
cidrs = ["10.20.0.0/24"]
effect = "approval"
"#;

fn intent(key: &str, steps: Vec<pb::Step>) -> pb::SubmitIntentRequest {
    let mut r = block(key, "198.51.100.1");
    r.steps = steps;
    r
}

/// The guardrail and message of a decision's reasons that stood against acting.
fn against(resp: &pb::SubmitIntentResponse) -> Vec<String> {
    resp.decision
        .as_ref()
        .unwrap()
        .reasons
        .iter()
        .filter(|r| r.effect != pb::Outcome::Execute as i32)
        .map(|r| format!("{}: {}", r.guardrail, r.message))
        .collect()
}

/// A webhook adapter for `suspend_user`, pointing at a server that is never reached (every
/// row here is refused before anything is sent).
fn webhook() -> AdapterConfig {
    let template = |method: &str| RequestTemplate {
        method: method.into(),
        url: "http://127.0.0.1:9/users/{{target.id}}/suspend".into(),
        headers: BTreeMap::new(),
        body: None,
    };
    AdapterConfig::Webhook(WebhookConfig {
        name: "directory".into(),
        kinds: vec!["suspend_user".parse().unwrap()],
        execute: template("POST"),
        rollback: template("DELETE"),
        secret_file: None,
        secret_env: None,
        timeout: Duration::from_secs(1),
        retries: 0,
    })
}

#[tokio::test]
async fn a_guardrail_judges_every_address_in_every_notation() {
    let p = Parapet::start_with_adapters(POLICY, vec![webhook()])
        .await
        .unwrap();
    let ip = |id: &str| step("block_ip", "ip", id, &[]);
    let host = |id: &str, addr: &str| step("isolate_host", "host", id, &[("ip", addr)]);
    // (case, steps, outcome, a reason it must give)
    let rows: Vec<(&str, Vec<pb::Step>, pb::Outcome, &str)> = vec![
        (
            "a harmless id over a /16 in the attribute the adapter blocks",
            vec![host("192.0.2.200", "10.20.0.0/16")],
            pb::Outcome::Deny,
            "target_scope: `10.20.0.0/16` is broader than the policy's minimum prefix /24",
        ),
        (
            "the attribute inside the protected network",
            vec![host("192.0.2.200", "10.20.0.7")],
            pb::Outcome::AwaitApproval,
            "protected_target: `host:192.0.2.200` is protected by `payment network`",
        ),
        (
            "IPv4-mapped",
            vec![ip("::ffff:10.20.0.5")],
            pb::Outcome::AwaitApproval,
            "protected_target: `ip:10.20.0.5` is protected by `payment network`",
        ),
        (
            "IPv4-mapped in hexadecimal",
            vec![ip("::ffff:a14:5")],
            pb::Outcome::AwaitApproval,
            "protected_target: `ip:10.20.0.5`",
        ),
        (
            "NAT64",
            vec![ip("64:ff9b::10.20.0.5")],
            pb::Outcome::AwaitApproval,
            "protected_target: `ip:10.20.0.5`",
        ),
        (
            "6to4",
            vec![ip("2002:a14:5::1")],
            pb::Outcome::AwaitApproval,
            "protected_target: `ip:2002:a14:5::1` is protected by `payment network`",
        ),
        (
            "a mapped block obeys the IPv4 floor",
            vec![ip("::ffff:10.20.0.0/112")],
            pb::Outcome::Deny,
            "target_scope: `10.20.0.0/16` is broader than the policy's minimum prefix /24",
        ),
        (
            "all of IPv4, mapped",
            vec![ip("::ffff:0:0/96")],
            pb::Outcome::Deny,
            "target_scope: `0.0.0.0/0` is broader",
        ),
        (
            "the cloud metadata address",
            vec![ip("169.254.169.254")],
            pb::Outcome::Deny,
            "target_scope: `169.254.169.254` is in `169.254.0.0/16`, link-local (cloud metadata services live here): special-purpose addresses are refused unless the policy allows `link_local`",
        ),
        (
            "loopback",
            vec![ip("127.0.0.1")],
            pb::Outcome::Deny,
            "target_scope: `127.0.0.1` is in `127.0.0.0/8`, loopback",
        ),
        (
            "loopback, mapped",
            vec![host("ws-1", "::ffff:127.0.0.1")],
            pb::Outcome::Deny,
            "target_scope: `127.0.0.1` is in `127.0.0.0/8`, loopback",
        ),
        (
            "IPv6 loopback",
            vec![ip("::1")],
            pb::Outcome::Deny,
            "target_scope: `::1` is in `::1/128`, loopback",
        ),
        (
            "unspecified",
            vec![ip("0.0.0.0")],
            pb::Outcome::Deny,
            "target_scope: `0.0.0.0` is in `0.0.0.0/8`, unspecified",
        ),
        (
            "IPv6 link-local",
            vec![ip("fe80::1")],
            pb::Outcome::Deny,
            "target_scope: `fe80::1` is in `fe80::/10`, link-local",
        ),
        (
            "multicast",
            vec![ip("224.0.0.251")],
            pb::Outcome::Deny,
            "target_scope: `224.0.0.251` is in `224.0.0.0/4`, multicast",
        ),
        (
            "broadcast",
            vec![ip("255.255.255.255")],
            pb::Outcome::Deny,
            "target_scope: `255.255.255.255` is in `255.255.255.255/32`, broadcast",
        ),
    ];
    for (i, (case, steps, outcome, says)) in rows.into_iter().enumerate() {
        let resp = p
            .submit(intent(&format!("g{i}"), steps))
            .await
            .unwrap_or_else(|e| panic!("{case}: {e:?}"));
        let reasons = against(&resp);
        assert_eq!(
            resp.decision.as_ref().unwrap().outcome,
            outcome as i32,
            "{case}: {reasons:?}"
        );
        assert!(
            reasons.iter().any(|r| r.starts_with(says)),
            "{case}: {reasons:?}"
        );
    }
    // nothing of it reached the lists
    assert_eq!(p.edl("block").await, "");
    assert_eq!(p.edl("quarantine").await, "");
}

/// A gRPC call of raw bytes, as a broken or hostile client sends them.
async fn raw_call(p: &Parapet, method: &'static str, body: Vec<u8>) -> Result<Vec<u8>, Status> {
    #[derive(Clone, Default)]
    struct Raw;
    impl tonic::codec::Codec for Raw {
        type Encode = Vec<u8>;
        type Decode = Vec<u8>;
        type Encoder = Raw;
        type Decoder = Raw;
        fn encoder(&mut self) -> Raw {
            Raw
        }
        fn decoder(&mut self) -> Raw {
            Raw
        }
    }
    impl tonic::codec::Encoder for Raw {
        type Item = Vec<u8>;
        type Error = Status;
        fn encode(
            &mut self,
            item: Vec<u8>,
            dst: &mut tonic::codec::EncodeBuf<'_>,
        ) -> Result<(), Status> {
            dst.put_slice(&item);
            Ok(())
        }
    }
    impl tonic::codec::Decoder for Raw {
        type Item = Vec<u8>;
        type Error = Status;
        fn decode(
            &mut self,
            src: &mut tonic::codec::DecodeBuf<'_>,
        ) -> Result<Option<Vec<u8>>, Status> {
            Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
        }
    }
    let mut grpc = tonic::client::Grpc::new(p.channel.clone());
    grpc.ready().await.unwrap();
    grpc.unary(
        tonic::Request::new(body),
        tonic::codegen::http::uri::PathAndQuery::from_static(method),
        Raw,
    )
    .await
    .map(tonic::Response::into_inner)
}

type Call<'a> = BoxFuture<'a, Result<(), Status>>;

/// One call of a generated client, as a row's future.
macro_rules! call {
    ($client:expr, $method:ident, $request:expr) => {{
        let mut client = $client;
        let request = $request;
        async move { client.$method(request).await.map(drop) }.boxed()
    }};
}

fn done<T>(r: Result<T, Status>) -> Result<(), Status> {
    r.map(drop)
}

#[tokio::test]
async fn every_rpc_refuses_bad_input_by_name_and_nothing_panics() {
    let p = Parapet::start_with_adapters(POLICY, vec![webhook()])
        .await
        .unwrap();
    let waiting = p
        .submit(intent(
            "waits",
            vec![step("block_ip", "ip", "10.20.0.9", &[])],
        ))
        .await
        .unwrap()
        .intent_id;
    let at = |seconds: i64, nanos: i32| Some(parapet_proto::wkt::Timestamp { seconds, nanos });
    let ttl = |seconds: i64, nanos: i32| Some(parapet_proto::wkt::Duration { seconds, nanos });
    let answer = |reason: String| pb::AnswerRequest {
        intent_id: waiting.clone(),
        reason,
        ..Default::default()
    };
    let submit = |r: pb::SubmitIntentRequest| -> Call<'_> { p.submit(r).map(done).boxed() };
    let with_target = |key: &str, kind: &str, target_kind: &str, id: &str| {
        intent(key, vec![step(kind, target_kind, id, &[])])
    };
    // an AnswerRequest whose `reason` (field 2) is not UTF-8
    let mut not_utf8 = Vec::new();
    not_utf8.put_u8(2 << 3 | 2);
    not_utf8.put_u8(3);
    not_utf8.put_slice(&[0xff, 0xfe, 0x41]);
    let huge = "x".repeat(2 << 20);
    // (case, call, code, what the message must say)
    let rows: Vec<(&str, Call<'_>, Code, &str)> = vec![
        (
            "shorthand CIDR for a script or a webhook",
            submit(with_target("b1", "block_ip", "ip", "10/8")),
            Code::InvalidArgument,
            "steps[0].target.id: `10/8` is not an IP address or CIDR block",
        ),
        (
            "all addresses, shorthand",
            submit(with_target("b2", "block_ip", "ip", "0/0")),
            Code::InvalidArgument,
            "steps[0].target.id: `0/0` is not an IP address",
        ),
        (
            "octal quads",
            submit(with_target("b3", "block_ip", "ip", "012.024.0.5")),
            Code::InvalidArgument,
            "steps[0].target.id: `012.024.0.5` is not an IP address",
        ),
        (
            "an address with a command after it",
            submit(with_target("b4", "block_ip", "ip", "10.20.0.5;x")),
            Code::InvalidArgument,
            "steps[0].target.id: `10.20.0.5;x` is not an IP address",
        ),
        (
            "a webhook target that climbs out of its path",
            submit(with_target("b5", "suspend_user", "user", "..")),
            Code::InvalidArgument,
            "steps[0].target.id: the `directory` webhook refuses this step: `{{target.id}}` = `..` cannot go into the URL",
        ),
        (
            "a webhook target with a slash",
            submit(with_target(
                "b6",
                "suspend_user",
                "user",
                "jane/../../admin",
            )),
            Code::InvalidArgument,
            "steps[0].target.id: the `directory` webhook refuses this step",
        ),
        (
            "a webhook target with an encoded slash",
            submit(with_target("b7", "suspend_user", "user", "jane%2fadmin")),
            Code::InvalidArgument,
            "steps[0].target.id: the `directory` webhook refuses this step",
        ),
        (
            "a reason that reads backwards",
            submit({
                let mut r = block("b8", "198.51.100.8");
                r.reason = "routine \u{202E}kcolb".into();
                r
            }),
            Code::InvalidArgument,
            "reason: contains the bidirectional control character U+202E",
        ),
        (
            "a source with a hidden character",
            submit({
                let mut r = block("b9", "198.51.100.9");
                r.source = "xdr\u{200B}".into();
                r
            }),
            Code::InvalidArgument,
            "source: contains whitespace, control or invisible formatting characters",
        ),
        (
            "a TTL whose nanoseconds are a second",
            submit({
                let mut r = block("b10", "198.51.100.10");
                r.ttl = ttl(60, 1_000_000_000);
                r
            }),
            Code::InvalidArgument,
            "ttl.nanos: 1000000000 is not within 0..999999999",
        ),
        (
            "an approval with a reason of five kilobytes",
            call!(p.approvals(), approve, answer("x".repeat(5000))),
            Code::InvalidArgument,
            "reason: is longer than 1024 bytes",
        ),
        (
            "an approval of two megabytes",
            call!(p.approvals(), approve, answer(huge.clone())),
            Code::OutOfRange,
            "",
        ),
        (
            "a rejection reading backwards",
            call!(p.approvals(), reject, answer("no \u{202E}".into())),
            Code::InvalidArgument,
            "reason: contains the bidirectional control character",
        ),
        (
            "a kill switch of two megabytes",
            call!(
                p.admin(),
                set_kill_switch,
                pb::SetKillSwitchRequest {
                    engaged: true,
                    reason: huge.clone(),
                    ..Default::default()
                }
            ),
            Code::OutOfRange,
            "",
        ),
        (
            "a verdict note of five kilobytes",
            call!(
                p.verdicts(),
                judge,
                pb::VerdictRequest {
                    intent_id: waiting.clone(),
                    verdict: pb::VerdictKind::FalsePositive as i32,
                    note: "x".repeat(5000),
                    ..Default::default()
                }
            ),
            Code::InvalidArgument,
            "note: is longer than 1024 bytes",
        ),
        (
            "a name of a kilobyte",
            call!(
                p.rollbacks(),
                rollback,
                pb::RollbackRequest {
                    intent_id: waiting.clone(),
                    reason: "r".into(),
                    requested_by: "x".repeat(1000),
                    ..Default::default()
                }
            ),
            Code::InvalidArgument,
            "requested_by: is longer than 256 bytes",
        ),
        (
            "demoting a detection nobody knows",
            call!(
                p.admin(),
                set_demotion,
                pb::SetDemotionRequest {
                    detection: "nope.nothing".into(),
                    demoted: true,
                    reason: "test".into(),
                    ..Default::default()
                }
            ),
            Code::InvalidArgument,
            "detection: `nope.nothing` is not a detection of the policy's inventory",
        ),
        (
            "a bulk rollback since the year 36812",
            call!(
                p.rollbacks(),
                rollback_selected,
                pb::RollbackSelectedRequest {
                    since: at(1 << 40, 0),
                    reason: "r".into(),
                    ..Default::default()
                }
            ),
            Code::InvalidArgument,
            "since.seconds: 1099511627776 is not between 1970 and 9999",
        ),
        (
            "a query with nanoseconds below zero",
            call!(
                p.journal(),
                query,
                pb::QueryJournalRequest {
                    since: at(1_800_000_000, -1),
                    ..Default::default()
                }
            ),
            Code::InvalidArgument,
            "since.nanos: -1 is not within 0..999999999",
        ),
        (
            "garbage for a message",
            raw_call(&p, "/parapet.v1.Intents/Submit", vec![0xff; 64])
                .map(done)
                .boxed(),
            Code::InvalidArgument,
            "the message does not decode",
        ),
        (
            "a string that is not UTF-8",
            raw_call(&p, "/parapet.v1.Approvals/Approve", not_utf8)
                .map(done)
                .boxed(),
            Code::InvalidArgument,
            "the message does not decode",
        ),
    ];
    for (case, call, code, says) in rows {
        let err = call.await.expect_err(case);
        assert_eq!(err.code(), code, "{case}: {err:?}");
        assert!(
            err.message().starts_with(says),
            "{case}: got `{}`, expected `{says}`",
            err.message()
        );
    }
    // still serving, and the intent that waits is untouched
    let still = p.get(&waiting).await;
    assert_eq!(still.state, pb::IntentState::AwaitingApproval as i32);
    p.submit(block("after", "198.51.100.200")).await.unwrap();
}

/// An accounts API that repeats the credential it was sent back at its caller, in the forms
/// such APIs do: upper-cased and percent-encoded in the JSON of a success, and in an error
/// where a 300-character excerpt would cut through it.
async fn echoing_api() -> String {
    use axum::{Json, Router, extract::Path, http::HeaderMap, routing::post};
    async fn answer(
        Path((user, _verb)): Path<(String, String)>,
        headers: HeaderMap,
    ) -> (axum::http::StatusCode, Json<serde_json::Value>) {
        let sent = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        if user.starts_with("fail") {
            // `{"error":"` and this much put the cut one character before the secret's end
            let pad = 300 - 10 - "Bearer ".len() - 21;
            return (
                axum::http::StatusCode::BAD_REQUEST,
                Json(serde_json::json!({"error": format!("{}{sent} rejected", "x".repeat(pad))})),
            );
        }
        let encoded: String = sent.bytes().map(|b| format!("%{b:02X}")).collect();
        (
            axum::http::StatusCode::OK,
            Json(serde_json::json!({"id": "r-1", "echo": sent.to_uppercase(), "trace": encoded})),
        )
    }
    let app = Router::new().route("/users/{user}/{verb}", post(answer));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test]
async fn a_credential_an_answer_echoes_reaches_neither_the_journal_nor_an_error() {
    const SECRET: &str = "Sup3r-s3cret-API-token";
    let url = echoing_api().await;
    let p = Parapet::start_configured(Some(POLICY), |c, dir| {
        let secret = dir.join("token");
        std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
        let template = |verb: &str| RequestTemplate {
            method: "POST".into(),
            url: format!("{url}/users/{{{{target.id}}}}/{verb}"),
            headers: [("Authorization".to_owned(), "Bearer {{secret}}".to_owned())].into(),
            body: None,
        };
        c.adapters = vec![AdapterConfig::Webhook(WebhookConfig {
            name: "directory".into(),
            kinds: vec!["suspend_user".parse().unwrap()],
            execute: template("suspend"),
            rollback: template("unsuspend"),
            secret_file: Some(secret),
            secret_env: None,
            timeout: Duration::from_secs(5),
            retries: 0,
        })];
    })
    .await
    .unwrap();
    let ok = p
        .submit(intent(
            "echo",
            vec![step("suspend_user", "user", "mallory", &[])],
        ))
        .await
        .unwrap();
    assert_eq!(ok.state, pb::IntentState::Active as i32);
    let failed = p
        .submit(intent(
            "fail",
            vec![step("suspend_user", "user", "fail-1", &[])],
        ))
        .await
        .unwrap();
    assert_eq!(failed.state, pb::IntentState::Failed as i32);
    // everything the journal holds, as an auditor exports it
    let entries = p.entries(pb::QueryJournalRequest::default()).await;
    let text: String = entries.iter().map(|e| format!("{e:?}\n")).collect();
    assert!(text.contains("[redacted]"), "{text}");
    let folded = text.to_lowercase();
    let encoded: String = SECRET.bytes().map(|b| format!("%{b:02x}")).collect();
    for form in [
        SECRET.to_lowercase(),
        "sup3r-s3cret-api".into(),
        encoded[..30].to_owned(),
    ] {
        assert!(
            !folded.contains(&form),
            "`{form}` is in the journal: {text}"
        );
    }
}
