//! The JSON API as a client sees it: the real binary, `curl` against every route, the answers
//! checked against the OpenAPI document the server serves (with Python's `jsonschema`), and
//! the problems checked field by field.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::{
    cell::RefCell,
    collections::BTreeSet,
    path::Path,
    process::{Command, Stdio},
};

use common::Server;
use serde_json::{Value, json};

/// One answer: status, headers (names lowercased), body.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    fn lines(&self) -> Vec<Value> {
        self.body
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `curl -i` with `args`; the last response's status, headers and body.
fn curl(args: &[&str]) -> Reply {
    // a watch never ends by itself: what came within a second is what it said
    let seconds = if args.iter().any(|a| a.contains(":watch")) {
        "1"
    } else {
        "10"
    };
    let out = Command::new("curl")
        .args(["-s", "-i", "--max-time", seconds])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("curl");
    let mut text = String::from_utf8(out.stdout).unwrap();
    // an interim answer (100 Continue) comes before the final one
    while text.starts_with("HTTP/1.1 1") {
        text = text
            .split_once("\r\n\r\n")
            .map_or(String::new(), |(_, rest)| rest.to_owned());
    }
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_lowercase(), v.trim().to_owned()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// Calls the API on `server` and remembers the route, to hold against the OpenAPI document.
struct Api<'a> {
    base: String,
    called: RefCell<BTreeSet<(String, String)>>,
    /// (schema, instance) pairs to validate against the document.
    checked: RefCell<Vec<(String, Value)>>,
    _server: &'a Server,
}

impl<'a> Api<'a> {
    fn new(server: &'a Server) -> Self {
        Self {
            base: format!("http://{}", server.http),
            called: RefCell::default(),
            checked: RefCell::default(),
            _server: server,
        }
    }

    /// `method path` as the route's template (for the record) and the path with its values.
    fn call(&self, method: &str, route: &str, path: &str, body: Option<Value>) -> Reply {
        self.called
            .borrow_mut()
            .insert((method.to_lowercase(), route.to_owned()));
        let url = format!("{}{path}", self.base);
        let text = body.map(|b| b.to_string());
        let mut args = vec!["-X", method];
        if let Some(t) = &text {
            args.extend(["-H", "content-type: application/json", "--data-binary", t]);
        }
        args.push(&url);
        curl(&args)
    }

    fn check(&self, schema: &str, v: &Value) {
        self.checked
            .borrow_mut()
            .push((schema.to_owned(), v.clone()));
    }

    fn expect(&self, status: u16, reply: Reply, schema: &str) -> Value {
        assert_eq!(reply.status, status, "{}", reply.body);
        let v = reply.json();
        self.check(schema, &v);
        v
    }
}

fn policy(dir: &Path) -> std::path::PathBuf {
    // the example policy, with a rate limit small enough to reach
    let text = include_str!("../../policy/example.toml")
        .replace("max = 600", "max = 4")
        .replace("burst = 100", "burst = 4");
    let path = dir.join("policy.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn intent(key: &str, source: &str, kind: &str, target_kind: &str, target: &str) -> Value {
    json!({
        "idempotencyKey": key,
        "source": source,
        "detection": {"ruleId": "edr.c2_beacon", "severity": "SEVERITY_CRITICAL", "confidence": 0.95},
        "steps": [{"kind": kind, "target": {"kind": target_kind, "id": target, "attributes": {"site": "hq", "ip": "192.0.2.200"}}}],
        "ttl": "3600s",
        "reason": "beacon",
        "wait": true
    })
}

#[test]
fn every_route_answers_as_its_openapi_document_says() {
    let dir = tempfile::tempdir().unwrap();
    let policy = policy(dir.path());
    let server = Server::start_in(&dir.path().join("data"), Some(&policy));
    let api = Api::new(&server);

    // submit: created, where, and a repeat is the same intent
    let created = api.call(
        "POST",
        "/v1/intents",
        "/v1/intents",
        Some(intent("k1", "xdr", "block_ip", "ip", "198.51.100.7")),
    );
    let location = created.header("location").unwrap().to_owned();
    let first = api.expect(201, created, "parapet.v1.SubmitIntentResponse");
    let id = first["intentId"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/v1/intents/{id}"));
    assert_eq!(first["state"], "INTENT_STATE_ACTIVE");
    let again = api.call(
        "POST",
        "/v1/intents",
        "/v1/intents",
        Some(intent("k1", "xdr", "block_ip", "ip", "198.51.100.7")),
    );
    let again = api.expect(200, again, "parapet.v1.SubmitIntentResponse");
    assert_eq!(
        (again["intentId"].as_str(), again["duplicate"].as_bool()),
        (Some(id.as_str()), Some(true))
    );
    assert!(server.edl_blocking("198.51.100.7"));

    // what would happen, with nothing done: the decision alone
    let r = api.call(
        "POST",
        "/v1/intents:whatIf",
        "/v1/intents:whatIf",
        Some(intent("w1", "xdr", "block_ip", "ip", "198.51.100.8")),
    );
    let would = api.expect(200, r, "parapet.v1.Decision");
    assert_eq!(would["outcome"], "OUTCOME_EXECUTE");
    assert!(!server.edl_blocking("198.51.100.8"));

    // waiting for approval: 202; listed; approved
    let waiting = api.call(
        "POST",
        "/v1/intents",
        "/v1/intents",
        Some(intent("k2", "xdr", "isolate_host", "host", "web-1")),
    );
    let waiting = api.expect(202, waiting, "parapet.v1.SubmitIntentResponse");
    let waiting_id = waiting["intentId"].as_str().unwrap().to_owned();
    let pending = api.call("GET", "/v1/approvals", "/v1/approvals", None);
    let pending = api.expect(200, pending, "parapet.v1.ListPendingResponse");
    assert_eq!(pending["intents"][0]["intentId"], waiting_id.as_str());
    let r = api.call(
        "POST",
        "/v1/intents/{intent_id}:approve",
        &format!("/v1/intents/{waiting_id}:approve"),
        Some(json!({"reason": "seen it"})),
    );
    let approved = api.expect(200, r, "parapet.v1.Intent");
    assert_ne!(approved["state"], "INTENT_STATE_AWAITING_APPROVAL");
    let rejected_one = api.call(
        "POST",
        "/v1/intents",
        "/v1/intents",
        Some(intent("k3", "xdr", "isolate_host", "host", "web-2")),
    );
    let rejected_id = rejected_one.json()["intentId"].as_str().unwrap().to_owned();
    let r = api.call(
        "POST",
        "/v1/intents/{intent_id}:reject",
        &format!("/v1/intents/{rejected_id}:reject"),
        Some(json!({"reason": "no"})),
    );
    assert_eq!(
        api.expect(200, r, "parapet.v1.Intent")["state"],
        "INTENT_STATE_REJECTED"
    );

    // read it back: one, a filtered page, a watch (NDJSON: the current state first)
    let r = api.call(
        "GET",
        "/v1/intents/{intent_id}",
        &format!("/v1/intents/{id}"),
        None,
    );
    assert_eq!(
        api.expect(200, r, "parapet.v1.Intent")["steps"][0]["target"]["id"],
        "198.51.100.7"
    );
    let r = api.call(
        "GET",
        "/v1/intents",
        "/v1/intents?states=INTENT_STATE_ACTIVE&states=INTENT_STATE_REJECTED&source=xdr&pageSize=1",
        None,
    );
    let page = api.expect(200, r, "parapet.v1.ListIntentsResponse");
    assert_eq!(page["intents"].as_array().unwrap().len(), 1);
    assert!(
        page["nextPageToken"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
    );
    let r = api.call(
        "GET",
        "/v1/intents/{intent_id}:watch",
        &format!("/v1/intents/{id}:watch"),
        None,
    );
    assert_eq!(r.header("content-type"), Some("application/x-ndjson"));
    let events = r.lines();
    assert_eq!(
        (events[0]["event"].as_str(), events[0]["intentId"].as_str()),
        (Some("current"), Some(id.as_str()))
    );
    api.check("parapet.v1.IntentEvent", &events[0].clone());
    let r = api.call("GET", "/v1/intents:watch", "/v1/intents:watch", None);
    assert_eq!(r.status, 200);

    // verdicts
    let r = api.call(
        "POST",
        "/v1/intents/{intent_id}:judge",
        &format!("/v1/intents/{id}:judge"),
        Some(json!({"verdict": "VERDICT_KIND_TRUE_POSITIVE"})),
    );
    api.expect(200, r, "parapet.v1.Intent");
    let r = api.call("GET", "/v1/precision", "/v1/precision", None);
    let precision = api.expect(200, r, "parapet.v1.PrecisionResponse");
    assert_eq!(precision["rows"][0]["truePositives"], 1);

    // admin
    let r = api.call("GET", "/v1/status", "/v1/status", None);
    let status = api.expect(200, r, "parapet.v1.GetStatusResponse");
    assert!(
        status["policyDigest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    let r = api.call("GET", "/v1/policy", "/v1/policy", None);
    let policy = api.expect(200, r, "parapet.v1.GetPolicyResponse");
    assert_eq!(policy["policyDigest"], status["policyDigest"]);
    assert!(
        policy["policyToml"]
            .as_str()
            .unwrap()
            .contains("[[detections]]"),
        "{policy}"
    );
    let r = api.call(
        "POST",
        "/v1/kill-switch",
        "/v1/kill-switch",
        Some(json!({"actionKind": "isolate_host", "engaged": true, "reason": "drill"})),
    );
    assert_eq!(
        api.expect(200, r, "parapet.v1.SetKillSwitchResponse")["engaged"][0]["actionKind"],
        "isolate_host"
    );
    let r = api.call(
        "POST",
        "/v1/demotions",
        "/v1/demotions",
        Some(json!({"detection": "ml.anomalous_login", "demoted": true, "reason": "noisy"})),
    );
    api.expect(200, r, "parapet.v1.SetDemotionResponse");
    let r = api.call("POST", "/v1/policy:reload", "/v1/policy:reload", None);
    api.expect(200, r, "parapet.v1.ReloadPolicyResponse");
    // without retention there is nothing to compact, and the problem says so
    let r = api.call("POST", "/v1/journal:compact", "/v1/journal:compact", None);
    let p = api.expect(409, r, "Problem");
    assert!(
        p["detail"].as_str().unwrap().contains("no retention"),
        "{p}"
    );

    // the journal: a query and an export are NDJSON; verify and replay answer once
    let r = api.call(
        "GET",
        "/v1/journal",
        &format!("/v1/journal?intentId={id}&events=received&events=decided"),
        None,
    );
    let entries = r.lines();
    assert_eq!(
        entries
            .iter()
            .map(|e| e["kind"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["received", "decided"]
    );
    api.check("parapet.v1.JournalEntry", &entries[0].clone());
    let r = api.call(
        "GET",
        "/v1/journal:export",
        &format!("/v1/journal:export?format=EXPORT_FORMAT_OCSF&query.intentId={id}&query.limit=1"),
        None,
    );
    let exported = r.lines();
    let ocsf: Value = serde_json::from_str(exported[0]["json"].as_str().unwrap()).unwrap();
    assert!(ocsf["class_uid"].as_u64().is_some(), "{ocsf}");
    let r = api.call("POST", "/v1/journal:verify", "/v1/journal:verify", None);
    assert_eq!(
        api.expect(200, r, "parapet.v1.VerifyJournalResponse")["ok"],
        true
    );
    let r = api.call("POST", "/v1/journal:replay", "/v1/journal:replay", Some(json!({"policyToml": include_str!("../../policy/example.toml"), "since": "2000-01-01T00:00:00Z"})));
    api.expect(200, r, "parapet.v1.ReplayPolicyResponse");

    // roll back one, then in bulk (NDJSON: the operation's total first)
    let r = api.call(
        "POST",
        "/v1/intents/{intent_id}:rollback",
        &format!("/v1/intents/{id}:rollback"),
        Some(json!({"reason": "false positive", "wait": true})),
    );
    assert_eq!(
        api.expect(200, r, "parapet.v1.RollbackResponse")["state"],
        "INTENT_STATE_ROLLED_BACK"
    );
    assert!(!server.edl_blocking("198.51.100.7"));
    let r = api.call(
        "POST",
        "/v1/intents:rollback",
        "/v1/intents:rollback",
        Some(json!({"detection": "edr.c2_beacon", "reason": "bulk"})),
    );
    let progress = r.lines();
    assert!(
        progress[0]["operationId"].as_str().is_some(),
        "{progress:?}"
    );
    api.check("parapet.v1.RollbackProgress", &progress[0].clone());

    problems(&api);

    // the document: 3.1, every route it names is one the server answered above, and back
    let doc = curl(&[&format!("{}/v1/openapi.json", api.base)]).json();
    assert_eq!(doc["openapi"], "3.1.0");
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.clone(), path.clone()))
        })
        .collect();
    assert_eq!(documented, *api.called.borrow());
    validate(&doc, &api.checked.borrow(), dir.path());
}

/// Bad requests, each a problem naming what is wrong.
fn problems(api: &Api) {
    // a field the message does not have, deep in it: named by its path
    let mut bad = intent("p1", "xdr", "block_ip", "ip", "198.51.100.70");
    bad["steps"][0]["target"]["idd"] = "x".into();
    let r = api.call("POST", "/v1/intents", "/v1/intents", Some(bad));
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    let p = api.expect(400, r, "Problem");
    assert_eq!(
        (
            p["status"].as_u64(),
            p["title"].as_str(),
            p["code"].as_str()
        ),
        (Some(400), Some("Bad Request"), Some("InvalidArgument"))
    );
    assert_eq!(p["errors"][0]["field"], "steps[0].target.idd");
    assert!(
        p["errors"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("unknown field"),
        "{p}"
    );
    // a value the service refuses: the same path gRPC names
    let r = api.call(
        "POST",
        "/v1/intents",
        "/v1/intents",
        Some(intent("p2", "xdr", "block_ip", "ip", "012.024.0.5")),
    );
    let p = api.expect(400, r, "Problem");
    assert_eq!(p["errors"][0]["field"], "steps[0].target.id");
    // a JSON name, in camelCase, is the field's path in snake_case
    let mut bad = intent("p3", "xdr", "block_ip", "ip", "198.51.100.71");
    bad["detection"]["ruleId"] = 7.into();
    let p = api.expect(
        400,
        api.call("POST", "/v1/intents", "/v1/intents", Some(bad)),
        "Problem",
    );
    assert_eq!(p["errors"][0]["field"], "detection.rule_id");
    // query parameters are checked too
    let p = api.expect(
        400,
        api.call("GET", "/v1/intents", "/v1/intents?pageSiz=3", None),
        "Problem",
    );
    assert_eq!(p["errors"][0]["field"], "pageSiz");
    let p = api.expect(
        400,
        api.call("GET", "/v1/intents", "/v1/intents?states=ACTIVE", None),
        "Problem",
    );
    assert_eq!(p["errors"][0]["field"], "states[0]");
    // not found, conflict, denied by the guardrails, over a rate limit
    let missing = "01a23389-788d-7144-aae5-07e4be5f12b9";
    let p = api.expect(
        404,
        api.call(
            "GET",
            "/v1/intents/{intent_id}",
            &format!("/v1/intents/{missing}"),
            None,
        ),
        "Problem",
    );
    assert!(p["detail"].as_str().unwrap().contains(missing));
    let p = api.expect(
        409,
        api.call(
            "POST",
            "/v1/intents",
            "/v1/intents",
            Some(intent("k1", "xdr", "block_ip", "ip", "198.51.100.99")),
        ),
        "Problem",
    );
    assert!(p["intentId"].as_str().is_some(), "{p}");
    let p = api.expect(
        403,
        api.call(
            "POST",
            "/v1/intents",
            "/v1/intents",
            Some(intent("p4", "xdr", "block_ip", "ip", "198.0.0.0/8")),
        ),
        "Problem",
    );
    assert_eq!(p["decision"]["outcome"], "OUTCOME_DENY");
    assert!(
        p["detail"].as_str().unwrap().contains("target_scope"),
        "{p}"
    );
    for i in 0..4 {
        let ok = api.call(
            "POST",
            "/v1/intents",
            "/v1/intents",
            Some(intent(
                &format!("f{i}"),
                "flood",
                "block_ip",
                "ip",
                &format!("203.0.113.{i}"),
            )),
        );
        assert_eq!(ok.status, 201, "{}", ok.body);
    }
    let limited = api.call(
        "POST",
        "/v1/intents",
        "/v1/intents",
        Some(intent("f9", "flood", "block_ip", "ip", "203.0.113.9")),
    );
    let after: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&after), "{after}");
    let p = api.expect(429, limited, "Problem");
    assert!(p["detail"].as_str().unwrap().contains("rate_limit"), "{p}");
    // not JSON, a body on a GET, a verb the route lacks
    let r = curl(&[
        "-X",
        "POST",
        "-H",
        "content-type: text/plain",
        "--data",
        "{}",
        &format!("{}/v1/intents", api.base),
    ]);
    assert_eq!(r.status, 400);
    // over the body limit: told at once when the length is given, and when it is not
    let big = std::env::temp_dir().join(format!("parapet-big-{}.json", std::process::id()));
    std::fs::write(&big, vec![b' '; 2 << 20]).unwrap();
    let at_big = format!("@{}", big.display());
    let url = format!("{}/v1/intents", api.base);
    let r = curl(&[
        "-X",
        "POST",
        "-H",
        "content-type: application/json",
        "--data-binary",
        &at_big,
        &url,
    ]);
    assert_eq!(r.status, 413);
    let r = curl(&[
        "-X",
        "POST",
        "-H",
        "content-type: application/json",
        "-H",
        "transfer-encoding: chunked",
        "--data-binary",
        &at_big,
        &url,
    ]);
    assert_eq!(r.status, 413, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    std::fs::remove_file(&big).unwrap();
    let r = curl(&["-X", "DELETE", &format!("{}/v1/status", api.base)]);
    assert_eq!((r.status, r.header("allow")), (405, Some("GET")));
    let r = curl(&[&format!("{}/v1/intents/{missing}:explode", api.base)]);
    assert_eq!(r.status, 404);
}

/// Validates each answer against its schema in the document (JSON Schema 2020-12, as
/// OpenAPI 3.1 uses), with Python's `jsonschema`.
fn validate(doc: &Value, checked: &[(String, Value)], dir: &Path) {
    let cases: Vec<Value> = checked
        .iter()
        .map(|(schema, instance)| json!({"schema": schema, "instance": instance}))
        .collect();
    let file = dir.join("cases.json");
    std::fs::write(&file, json!({"doc": doc, "cases": cases}).to_string()).unwrap();
    let script = r#"
import json, sys
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
data = json.load(open(sys.argv[1]))
doc = data["doc"]
registry = Registry().with_resource("urn:parapet", Resource.from_contents(doc, default_specification=__import__("referencing.jsonschema").jsonschema.DRAFT202012))
bad = 0
for case in data["cases"]:
    schema = {"$ref": "urn:parapet#/components/schemas/" + case["schema"]}
    for e in Draft202012Validator(schema, registry=registry).iter_errors(case["instance"]):
        bad += 1
        print(case["schema"], list(e.absolute_path), e.message)
print("checked", len(data["cases"]))
sys.exit(1 if bad else 0)
"#;
    let out = Command::new("python3")
        .args(["-c", script, file.to_str().unwrap()])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains(&format!("checked {}", checked.len())),
        "{said}"
    );
}
