//! What SIEMs and SOAR tools send, from the real senders where they run here: Prometheus
//! Alertmanager (Debian's) notifying Parapet's webhook intake; each other preset fed its
//! platform's documented payload with curl; OpenC2 commands built and responses checked by the
//! `openc2` package.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::{
    net::TcpListener,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::Server;
use serde_json::{Value, json};

fn post(url: &str, body: &Value) -> (u16, Value) {
    common::post_json(url, &[], &body.to_string())
}

fn get(url: &str) -> String {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10"])
        .arg(url)
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

/// The intents Parapet holds from `source`.
fn intents(server: &Server, source: &str) -> Vec<Value> {
    let page: Value = serde_json::from_str(&get(&format!(
        "http://{}/v1/intents?source={source}",
        server.http
    )))
    .unwrap();
    page["intents"].as_array().cloned().unwrap_or_default()
}

/// How many `received` entries the journal holds: every intent ever journaled.
fn received(server: &Server) -> usize {
    get(&format!(
        "http://{}/v1/journal?events=received",
        server.http
    ))
    .lines()
    .count()
}

fn start(dir: &Path, config: &str, policy: Option<&str>) -> Server {
    let path = dir.join("parapet.toml");
    std::fs::write(&path, config).unwrap();
    let policy = policy.map(|text| {
        let p = dir.join("policy.toml");
        std::fs::write(&p, text).unwrap();
        p
    });
    Server::start_with(
        &dir.join("data"),
        policy.as_deref(),
        &["--config", path.to_str().unwrap()],
        &[],
    )
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "waited for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Alertmanager {
    child: Child,
    url: String,
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Alertmanager {
    /// Debian's Alertmanager, routing every alert to `webhook`, re-sending a firing group
    /// every 2 s.
    fn start(dir: &Path, webhook: &str) -> Self {
        let config = format!(
            "route:\n  receiver: parapet\n  group_by: ['alertname']\n  group_wait: 1s\n  \
             group_interval: 1s\n  repeat_interval: 2s\nreceivers:\n  - name: parapet\n    \
             webhook_configs:\n      - url: '{webhook}'\n        send_resolved: true\n"
        );
        std::fs::write(dir.join("alertmanager.yml"), config).unwrap();
        let port = free_port();
        let child = Command::new("prometheus-alertmanager")
            .arg(format!(
                "--config.file={}",
                dir.join("alertmanager.yml").display()
            ))
            .arg(format!("--storage.path={}", dir.join("am-data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus-alertmanager (scripts/install-test-deps installs it)");
        let am = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        wait_until("Alertmanager to be ready", || {
            get(&format!("{}/-/ready", am.url)).contains("OK")
        });
        am
    }

    /// Alerts as Prometheus posts them to Alertmanager's API.
    fn fire(&self, alerts: &Value) {
        let (status, body) = post(&format!("{}/api/v2/alerts", self.url), alerts);
        assert_eq!(status, 200, "{body}");
    }

    /// Notifications sent to the webhook so far, successful or not.
    fn notifications(&self) -> u64 {
        get(&format!("{}/metrics", self.url))
            .lines()
            .find(|l| {
                l.starts_with("alertmanager_notifications_total")
                    && l.contains("integration=\"webhook\"")
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse::<f64>().ok())
            .map_or(0, |n| n as u64)
    }
}

#[test]
fn alertmanager_notifies_a_group_and_its_refires_and_resolution_make_no_more() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        dir.path(),
        "[[intake]]\nname = \"am\"\npreset = \"alertmanager\"\nsource = \"alertmanager\"\n",
        None,
    );
    let am = Alertmanager::start(dir.path(), &format!("http://{}/v1/ingest/am", server.http));
    let alert = |target: Option<&str>, ends: Option<&str>| {
        let mut labels = json!({
            "alertname": "C2Beacon", "detection": "edr.c2_beacon", "action": "block_ip",
            "severity": "critical", "confidence": "0.95", "ttl": "4h",
            "instance": target.unwrap_or("none"),
        });
        if let Some(t) = target {
            labels["target"] = t.into();
        }
        let mut a = json!({
            "labels": labels,
            "annotations": {"summary": "beacon to a known C2 address"},
            "startsAt": "2026-12-08T00:00:00Z",
            "generatorURL": "http://prometheus:9090/graph?g0.expr=beacon"
        });
        if let Some(e) = ends {
            a["endsAt"] = e.into();
        }
        a
    };
    // one group: a good alert and one without a target
    am.fire(&json!([
        alert(Some("198.51.100.44"), None),
        alert(None, None)
    ]));
    wait_until("the block", || {
        intents(&server, "alertmanager")
            .iter()
            .any(|i| i["state"] == "INTENT_STATE_ACTIVE")
    });
    let first = intents(&server, "alertmanager");
    assert_eq!(first.len(), 1, "{first:?}");
    let intent = &first[0];
    assert_eq!(intent["detection"]["ruleId"], "edr.c2_beacon");
    assert_eq!(intent["steps"][0]["target"]["id"], "198.51.100.44");
    assert_eq!(intent["ttl"], "14400s");
    assert!(
        intent["idempotencyKey"]
            .as_str()
            .unwrap()
            .starts_with("am:")
    );
    assert!(server.edl_blocking("198.51.100.44"));
    let journaled = received(&server);

    // Alertmanager re-sends the firing group: the same alerts, no second intent
    let sent = am.notifications();
    wait_until("a re-fire", || am.notifications() >= sent + 2);
    assert_eq!(intents(&server, "alertmanager").len(), 1);
    assert_eq!(received(&server), journaled);

    // resolved: Alertmanager says so, and nothing is created (the block keeps its TTL)
    let past = "2026-12-08T00:00:01Z";
    am.fire(&json!([
        alert(Some("198.51.100.44"), Some(past)),
        alert(None, Some(past))
    ]));
    let sent = am.notifications();
    wait_until("the resolution", || am.notifications() > sent);
    assert_eq!(received(&server), journaled);
    assert!(server.edl_blocking("198.51.100.44"));
}

#[test]
fn each_preset_maps_its_platforms_documented_payload() {
    let dir = tempfile::tempdir().unwrap();
    let config = "\
[[intake]]\nname = \"splunk\"\npreset = \"splunk\"\nsource = \"splunk\"\n\
[[intake]]\nname = \"kibana\"\npreset = \"elastic\"\nsource = \"elastic\"\n\
[intake.map]\naction = \"=block_ip\"\n\
[[intake]]\nname = \"sentinel\"\npreset = \"sentinel\"\nsource = \"sentinel\"\n\
[intake.map]\ndetection = \"=edr.c2_beacon\"\n\
[[intake]]\nname = \"wazuh\"\npreset = \"wazuh\"\nsource = \"wazuh\"\n\
[intake.map]\ndetection = \"=ids.ssh_bruteforce\"\naction = \"=block_ip\"\nconfidence = \"=0.9\"\n\
[[intake]]\nname = \"tip\"\npreset = \"generic\"\nsource = \"tip\"\n\
[intake.map]\ndetection = \"/feed\"\naction = \"=block_ip\"\ntarget = \"/indicator/value\"\n\
severity = \"=high\"\nconfidence = \"/indicator/confidence\"\nidempotency_key = \"/indicator/id\"\n";
    let server = start(dir.path(), config, None);
    let base = format!("http://{}/v1/ingest", server.http);
    let ok = |name: &str, body: Value| {
        let (status, answer) = post(&format!("{base}/{name}"), &body);
        assert_eq!(status, 200, "{name}: {answer}");
        answer["results"].as_array().unwrap().clone()
    };
    let target_of = |source: &str| -> Vec<String> {
        intents(&server, source)
            .iter()
            .map(|i| i["steps"][0]["target"]["id"].as_str().unwrap().to_owned())
            .collect()
    };

    // Splunk's webhook alert action: the first result row and the search
    ok(
        "splunk",
        json!({
            "result": {"src_ip": "198.51.100.51", "action": "block_ip", "severity": "high",
                       "confidence": "0.85", "count": "120"},
            "sid": "scheduler__admin__search__RMD5c1_at_1733619600_42",
            "results_link": "http://splunk:8000/app/search/@go?sid=scheduler__admin__search__RMD5c1",
            "search_name": "ids.ssh_bruteforce", "owner": "admin", "app": "search"
        }),
    );
    assert_eq!(target_of("splunk"), ["198.51.100.51"]);

    // Kibana's webhook connector with the README's body: the rule and context.alerts
    let results = ok(
        "kibana",
        json!({
            "rule": {"id": "5b1ea3c0", "name": "C2 beacon"},
            "alerts": [
                {"kibana.alert.rule.rule_id": "edr.c2_beacon", "kibana.alert.severity": "critical",
                 "kibana.alert.risk_score": 95, "kibana.alert.uuid": "a1",
                 "kibana.alert.reason": "beacon", "source": {"ip": "198.51.100.52"}},
                {"kibana.alert.rule.rule_id": "edr.c2_beacon", "kibana.alert.severity": "critical",
                 "kibana.alert.risk_score": 95, "kibana.alert.uuid": "a2"}
            ]
        }),
    );
    assert!(results[0]["intentId"].as_str().is_some(), "{results:?}");
    assert_eq!(
        results[1]["error"]["errors"][0]["field"],
        "alerts[1].target"
    );
    assert_eq!(target_of("elastic"), ["198.51.100.52"]);

    // Sentinel's alert trigger body (SecurityAlert), from a Logic App's HTTP action
    ok(
        "sentinel",
        json!({
            "AlertDisplayName": "Beacon to a known C2 address", "AlertType": "c7d1_4e2a",
            "Severity": "High", "ConfidenceScore": 0.9,
            "SystemAlertId": "5f0a0b1c-2d3e-4f50-8a9b-0c1d2e3f4a5b",
            "AlertLink": "https://portal.azure.com/#asset/alert",
            "ExtendedProperties": {"action": "block_ip"},
            "Entities": [{"$id": "1", "Type": "ip", "Address": "198.51.100.53"},
                         {"$id": "2", "Type": "host", "HostName": "web-1"}]
        }),
    );
    assert_eq!(target_of("sentinel"), ["198.51.100.53"]);

    // Wazuh's alert as its integration scripts pass it on
    ok(
        "wazuh",
        json!({
            "timestamp": "2026-12-08T01:02:03.000+0000",
            "rule": {"level": 10, "description": "sshd: brute force trying to get access to the system",
                     "id": "5712", "groups": ["syslog", "sshd", "authentication_failures"]},
            "agent": {"id": "001", "name": "web-1", "ip": "10.0.0.5"},
            "manager": {"name": "wazuh-manager"},
            "id": "1733619723.1234567",
            "full_log": "Dec  8 01:02:03 web-1 sshd[123]: Failed password for root from 198.51.100.54 port 22 ssh2",
            "data": {"srcip": "198.51.100.54", "srcuser": "root"},
            "location": "/var/log/auth.log"
        }),
    );
    assert_eq!(target_of("wazuh"), ["198.51.100.54"]);

    ok(
        "tip",
        json!({"feed": "edr.c2_beacon",
        "indicator": {"id": "ind-9", "value": "198.51.100.55", "confidence": 0.97}}),
    );
    assert_eq!(target_of("tip"), ["198.51.100.55"]);

    // what cannot be mapped is refused, naming the field and the preset; nothing is journaled
    let before = received(&server);
    let (status, problem) = post(&format!("{base}/tip"), &json!({"feed": "edr.c2_beacon"}));
    assert_eq!(status, 400, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "target");
    assert!(
        problem["errors"][0]["detail"]
            .as_str()
            .unwrap()
            .starts_with("generic:")
    );
    let (status, problem) = post(&format!("{base}/splunk"), &json!({"sid": "x"}));
    assert_eq!(status, 400);
    assert!(
        problem["errors"][0]["detail"]
            .as_str()
            .unwrap()
            .starts_with("splunk:"),
        "{problem}"
    );
    let (status, _) = post(&format!("{base}/nosuch"), &json!({}));
    assert_eq!(status, 404);
    assert_eq!(received(&server), before);
}

/// Sends OpenC2 commands built by the `openc2` package and checks each response with it;
/// prints one JSON line per response.
const OPENC2_CLIENT: &str = r#"
import json, sys, urllib.request
import openc2
from openc2.v10 import Args, Command, Features, IPv4Address, IPv4Connection, IPv6Address, SLPFActuator, SLPFTarget

url = sys.argv[1]

def send(body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/openc2+json;version=1.0"})
    try:
        with urllib.request.urlopen(req) as r:
            http, text, ctype = r.status, r.read().decode(), r.headers["Content-Type"]
    except urllib.error.HTTPError as e:
        http, text, ctype = e.code, e.read().decode(), e.headers["Content-Type"]
    assert ctype.startswith("application/openc2+json"), ctype
    return http, json.loads(text)

def command(cmd):
    http, answer = send(json.loads(cmd.serialize()))
    response = openc2.parse(json.dumps(answer))  # validates it as an OpenC2 response
    assert isinstance(response, openc2.v10.Response), type(response)
    print(json.dumps({"http": http, "response": answer}))
    return answer

command(Command(action="query", target=Features(["versions", "profiles", "pairs", "rate_limit"])))
command(Command(action="query", target=Features([])))
denied = command(Command(action="deny", target=IPv4Connection(src_addr="198.51.100.81"),
                         args=Args(duration=3600000), actuator=SLPFActuator(), command_id="c-1"))
command(Command(action="deny", target=IPv6Address(ipv6_net="2001:db8:1::/48")))
command(Command(action="deny", target=IPv4Address(ipv4_net="10.0.0.0/8")))
command(Command(action="deny", target=IPv4Address(ipv4_net="192.0.2.3")))
command(Command(action="deny", target=IPv4Connection(src_addr="198.51.100.82", dst_port=443)))
command(Command(action="allow", target=IPv4Address(ipv4_net="198.51.100.81")))
rule = str(denied["results"]["slpf"]["rule_number"])
command(Command(action="delete", target=SLPFTarget(rule_number=rule), actuator=SLPFActuator()))
# the message envelope of the HTTPS transfer, its request id answered
http, answer = send({"headers": {"request_id": "r-42", "from": "soar", "created": 1733619723000},
                     "body": {"openc2": {"request": json.loads(Command(action="query",
                         target=Features(["versions"])).serialize())}}})
openc2.parse(json.dumps(answer["body"]["openc2"]["response"]))
print(json.dumps({"http": http, "response": answer}))
"#;

#[test]
fn openc2_commands_from_an_independent_implementation() {
    let dir = tempfile::tempdir().unwrap();
    // the example policy, with the OpenC2 detection in its inventory
    let policy = format!(
        "{}\n[[detections]]\nid = \"openc2\"\nowner = \"soar@example.com\"\n\
         [detections.actions]\nblock_ip = \"auto\"\n",
        include_str!("../../policy/example.toml")
    );
    let server = start(
        dir.path(),
        "[openc2]\ndetection = \"openc2\"\n",
        Some(&policy),
    );
    let out = Command::new("python3")
        .args(["-c", OPENC2_CLIENT])
        .arg(format!("http://{}/.well-known/openc2", server.http))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let answers: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let status = |i: usize| answers[i]["response"]["status"].as_u64().unwrap();
    let text = |i: usize| {
        answers[i]["response"]["status_text"]
            .as_str()
            .unwrap_or_default()
    };

    let features = &answers[0]["response"]["results"];
    assert_eq!(features["versions"], json!(["1.0"]));
    assert_eq!(features["profiles"], json!(["slpf"]));
    assert_eq!(features["pairs"]["deny"][0], "ipv4_net");
    assert_eq!(features["rate_limit"], 600.0);
    assert_eq!(
        (status(1), answers[1]["response"].get("results")),
        (200, None)
    );
    // a deny of the connection's source: a block, numbered
    assert_eq!(status(2), 200, "{}", text(2));
    let rule = answers[2]["response"]["results"]["slpf"]["rule_number"]
        .as_u64()
        .unwrap();
    let id = text(2).strip_prefix("intent ").unwrap();
    let acted = get(&format!(
        "http://{}/v1/journal?intentId={id}&events=step_succeeded",
        server.http
    ));
    assert_eq!(acted.lines().count(), 1, "{acted}");
    assert_eq!(status(3), 200, "{}", text(3));
    // the guardrails: a /8 is too broad (denied, with the reason); the management network
    // waits for a person (processing, with the intent's id)
    assert_eq!((status(4), answers[4]["http"].as_u64()), (403, Some(403)));
    assert!(text(4).contains("target_scope"), "{}", text(4));
    assert_eq!(status(5), 102);
    assert!(
        text(5).contains("awaits approval") && text(5).contains("protected"),
        "{}",
        text(5)
    );
    // a deny narrowed to a port would be blocked wider than asked: refused
    assert_eq!(status(6), 400);
    assert!(text(6).contains("dst_port"), "{}", text(6));
    assert_eq!(status(7), 501);
    assert!(text(7).contains("deny ipv4_net"), "{}", text(7));
    // delete by the rule number rolls the block back
    assert_eq!(status(8), 200, "{}", text(8));
    assert!(text(8).contains("rolled_back"), "{}", text(8));
    assert!(!server.edl_blocking("198.51.100.81"));
    let envelope = &answers[9]["response"];
    assert_eq!(envelope["headers"]["request_id"], "r-42");
    assert_eq!(envelope["body"]["openc2"]["response"]["status"], 200);
    // the rule number is the intent's, stable: the journal entry that received it
    let journal = get(&format!(
        "http://{}/v1/journal?events=received",
        server.http
    ));
    let entry: Value = journal
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|e| e["payloadJson"].as_str().unwrap().contains("198.51.100.81"))
        .unwrap();
    assert_eq!(entry["seq"], rule.to_string());
}
