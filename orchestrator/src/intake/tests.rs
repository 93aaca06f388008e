#![allow(clippy::unwrap_used, clippy::panic)]

use serde_json::json;

use super::*;

fn intake(preset: &str, map: &[(&str, &str)]) -> Intake {
    let mut toml = format!("name = \"in\"\npreset = \"{preset}\"\nsource = \"siem\"\n[map]\n");
    for (k, v) in map {
        toml.push_str(&format!("{k} = \"{v}\"\n"));
    }
    toml::from_str(&toml).unwrap()
}

fn submitted(items: Vec<Item>) -> Vec<pb::SubmitIntentRequest> {
    items
        .into_iter()
        .map(|i| match i {
            Item::Submit(r) => *r,
            other => panic!("expected a submission, got {other:?}"),
        })
        .collect()
}

fn one(intake: &Intake, payload: serde_json::Value) -> pb::SubmitIntentRequest {
    let mut all = submitted(map(intake, &payload).unwrap());
    assert_eq!(all.len(), 1);
    all.remove(0)
}

fn target(r: &pb::SubmitIntentRequest) -> (&str, &str, &str) {
    let step = &r.steps[0];
    let t = step.target.as_ref().unwrap();
    (step.kind.as_str(), t.kind.as_str(), t.id.as_str())
}

/// Alertmanager's webhook payload (version 4), as its documentation shows it.
fn alertmanager_group() -> serde_json::Value {
    json!({
        "version": "4",
        "groupKey": "{}:{alertname=\"C2Beacon\"}",
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "parapet",
        "groupLabels": {"alertname": "C2Beacon"},
        "commonLabels": {"alertname": "C2Beacon"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": "C2Beacon", "detection": "edr.c2_beacon", "action": "block_ip",
                           "target": "198.51.100.7", "severity": "critical", "ttl": "4h"},
                "annotations": {"summary": "beacon to known C2", "confidence": "0.93"},
                "startsAt": "2026-12-08T01:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus:9090/graph?g0.expr=beacon",
                "fingerprint": "a1b2c3d4e5f60718"
            },
            {
                "status": "resolved",
                "labels": {"alertname": "C2Beacon", "action": "block_ip", "target": "198.51.100.8"},
                "annotations": {},
                "startsAt": "2026-12-08T00:00:00Z",
                "endsAt": "2026-12-08T00:30:00Z",
                "generatorURL": "",
                "fingerprint": "ffff000011112222"
            },
            {
                "status": "firing",
                "labels": {"alertname": "HostCompromise", "action": "isolate_host",
                           "severity": "high", "confidence": "90%"},
                "annotations": {},
                "startsAt": "2026-12-08T01:00:00Z",
                "fingerprint": "0123456789abcdef"
            }
        ]
    })
}

#[test]
fn alertmanager_maps_each_firing_alert_and_skips_resolved_ones() {
    let items = map(&intake("alertmanager", &[]), &alertmanager_group()).unwrap();
    assert_eq!(items.len(), 3);
    let Item::Submit(r) = &items[0] else {
        panic!("{:?}", items[0])
    };
    let d = r.detection.as_ref().unwrap();
    assert_eq!(d.rule_id, "edr.c2_beacon");
    assert_eq!(d.severity, pb::Severity::Critical as i32);
    assert_eq!(d.confidence, 0.93);
    assert_eq!(d.title, "beacon to known C2");
    assert_eq!(target(r), ("block_ip", "ip", "198.51.100.7"));
    assert_eq!(r.ttl, Some(Duration::from_secs(4 * 3600).into()));
    assert_eq!(
        r.idempotency_key,
        "in:a1b2c3d4e5f60718:2026-12-08T01:00:00Z"
    );
    assert_eq!(r.source, "siem");
    assert!(
        r.reason.contains("http://prometheus:9090/graph"),
        "{}",
        r.reason
    );
    assert!(matches!(items[1], Item::Skip("resolved")));
    // no target label: named by path and preset, and the good alert is not dropped
    let Item::Invalid(e) = &items[2] else {
        panic!("{:?}", items[2])
    };
    assert_eq!(e.field, "alerts[2].target");
    assert!(e.message.starts_with("alertmanager:"), "{e}");
}

#[test]
fn alertmanager_falls_back_to_alertname_and_the_usual_target_kind() {
    let mut group = alertmanager_group();
    let alert = &mut group["alerts"][2]["labels"];
    alert["target"] = "web-1".into();
    let items = submitted(
        map(&intake("alertmanager", &[]), &group)
            .unwrap()
            .into_iter()
            .filter(|i| !matches!(i, Item::Skip(_)))
            .collect(),
    );
    let r = &items[1];
    assert_eq!(r.detection.as_ref().unwrap().rule_id, "HostCompromise");
    assert_eq!(r.detection.as_ref().unwrap().confidence, 0.9);
    assert_eq!(target(r), ("isolate_host", "host", "web-1"));
    assert_eq!(r.ttl, None);
}

#[test]
fn a_map_overrides_a_preset_by_pointer_constant_or_name() {
    let m = intake(
        "alertmanager",
        &[
            ("target", "/annotations/victim"),
            ("action", "=block_ip"),
            ("detection", "rule"),
        ],
    );
    let payload = json!({"alerts": [{
        "status": "firing",
        "labels": {"alertname": "x", "rule": "ids.scan", "severity": "low", "confidence": "0.5"},
        "annotations": {"victim": "2001:db8::1"},
        "startsAt": "2026-12-08T01:00:00Z", "fingerprint": "f"
    }]});
    let r = one(&m, payload.clone());
    assert_eq!(r.detection.unwrap().rule_id, "ids.scan");
    assert_eq!(r.steps[0].target.as_ref().unwrap().id, "2001:db8::1");
    // a pointer that finds nothing says so
    let mut bad = payload;
    bad["alerts"][0]["annotations"] = json!({});
    let Item::Invalid(e) = map(&m, &bad).unwrap().remove(0) else {
        panic!()
    };
    assert_eq!(e.field, "alerts[0].target");
    assert!(e.message.contains("/annotations/victim"), "{e}");
}

#[test]
fn a_payload_without_alerts_is_refused_for_alertmanager() {
    let e = map(&intake("alertmanager", &[]), &json!({"status": "firing"})).unwrap_err();
    assert_eq!(e.field, "alerts");
}

#[test]
fn splunk_reads_the_webhook_alert_action_payload() {
    // Splunk's webhook alert action: the first result row, the search's name and id
    let payload = json!({
        "result": {"src_ip": "203.0.113.9", "action": "block_ip", "severity": "high",
                   "confidence": "0.8", "count": "42"},
        "sid": "scheduler__admin__search__RMD5a1b2_at_1733620800_17",
        "results_link": "https://splunk:8000/app/search/@go?sid=scheduler__admin",
        "search_name": "brute_force_ssh",
        "owner": "admin",
        "app": "search"
    });
    let r = one(&intake("splunk", &[]), payload);
    assert_eq!(r.detection.as_ref().unwrap().rule_id, "brute_force_ssh");
    assert_eq!(target(&r), ("block_ip", "ip", "203.0.113.9"));
    assert_eq!(
        r.idempotency_key,
        "in:scheduler__admin__search__RMD5a1b2_at_1733620800_17"
    );
}

#[test]
fn elastic_reads_each_alert_of_a_kibana_action() {
    // the body the README's Kibana connector sends: the rule and `context.alerts`
    let payload = json!({
        "rule": {"id": "9a1b2c3d", "name": "Outbound C2"},
        "action": "block_ip",
        "alerts": [
            {"kibana.alert.rule.rule_id": "elastic.c2", "kibana.alert.severity": "high",
             "kibana.alert.risk_score": 73, "kibana.alert.uuid": "5e1f",
             "kibana.alert.reason": "network event with destination 192.0.2.1",
             "source": {"ip": "192.0.2.1"}},
            {"kibana": {"alert": {"rule": {"rule_id": "elastic.c2"}, "severity": "medium",
             "risk_score": 47, "uuid": "77aa"}}, "source.ip": "192.0.2.2"}
        ]
    });
    let all = submitted(map(&intake("elastic", &[]), &payload).unwrap());
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].detection.as_ref().unwrap().confidence, 0.73);
    assert_eq!(target(&all[0]), ("block_ip", "ip", "192.0.2.1"));
    assert_eq!(
        all[1].detection.as_ref().unwrap().severity,
        pb::Severity::Medium as i32
    );
    assert_eq!(target(&all[1]), ("block_ip", "ip", "192.0.2.2"));
    assert_eq!(all[1].idempotency_key, "in:77aa");
}

#[test]
fn sentinel_reads_the_alert_and_its_entities() {
    // the "Microsoft Sentinel alert" trigger's body (the SecurityAlert schema)
    let payload = json!({
        "AlertDisplayName": "Sign-in from a malicious IP",
        "AlertType": "8d1a6f2e_b3c4",
        "Severity": "High",
        "ConfidenceScore": 0.85,
        "SystemAlertId": "0b7f9f0c-1d2e-4f3a-9b8c-7d6e5f4a3b2c",
        "AlertLink": "https://portal.azure.com/#blade/alert",
        "ExtendedProperties": {"action": "revoke_credentials"},
        "Entities": "[{\"$id\":\"2\",\"Type\":\"ip\",\"Address\":\"203.0.113.50\"},{\"$id\":\"3\",\"Type\":\"account\",\"Name\":\"jdoe\",\"UPNSuffix\":\"example.com\"}]"
    });
    let r = one(&intake("sentinel", &[]), payload.clone());
    assert_eq!(r.detection.as_ref().unwrap().rule_id, "8d1a6f2e_b3c4");
    assert_eq!(
        target(&r),
        ("revoke_credentials", "user", "jdoe@example.com")
    );
    let r = one(
        &intake("sentinel", &[("action", "=block_ip")]),
        payload.clone(),
    );
    assert_eq!(target(&r), ("block_ip", "ip", "203.0.113.50"));
    let mut as_table = payload;
    as_table["ExtendedProperties"] = r#"{"action": "block_ip"}"#.into();
    assert_eq!(
        target(&one(&intake("sentinel", &[]), as_table)).0,
        "block_ip"
    );
}

#[test]
fn wazuh_reads_an_alert_raw_or_as_its_integrations_wrap_it() {
    let alert = json!({
        "timestamp": "2026-12-08T01:02:03.000+0000",
        "rule": {"level": 10, "description": "sshd: brute force trying to get access", "id": "5712",
                 "groups": ["syslog", "sshd", "authentication_failures"]},
        "agent": {"id": "001", "name": "web-1", "ip": "10.0.0.5"},
        "data": {"srcip": "198.51.100.23", "srcuser": "root"},
        "id": "1733619723.1234567",
        "full_log": "Dec  8 01:02:03 web-1 sshd[1]: Failed password for root from 198.51.100.23"
    });
    let m = intake("wazuh", &[("action", "=block_ip"), ("confidence", "=0.9")]);
    let r = one(&m, alert.clone());
    assert_eq!(r.detection.as_ref().unwrap().rule_id, "wazuh.5712");
    assert_eq!(
        r.detection.as_ref().unwrap().severity,
        pb::Severity::High as i32
    );
    assert_eq!(target(&r), ("block_ip", "ip", "198.51.100.23"));
    let wrapped = one(
        &m,
        json!({"severity": 2, "title": "x", "all_fields": alert.clone()}),
    );
    assert_eq!(wrapped.idempotency_key, r.idempotency_key);
    // without a confidence mapped: refused, naming the field and the preset
    let Item::Invalid(e) = map(&intake("wazuh", &[("action", "=block_ip")]), &alert)
        .unwrap()
        .remove(0)
    else {
        panic!()
    };
    assert_eq!(e.field, "confidence");
    assert!(e.message.starts_with("wazuh:") && e.message.contains("[intake.map] confidence"));
}

#[test]
fn generic_is_its_map() {
    let m = intake(
        "generic",
        &[
            ("detection", "/rule"),
            ("target", "/ioc/value"),
            ("action", "=block_ip"),
            ("severity", "=high"),
            ("confidence", "/score"),
            ("idempotency_key", "/event_id"),
        ],
    );
    let r = one(
        &m,
        json!({"rule": "tip.feed", "ioc": {"value": "192.0.2.77"}, "score": 0.99, "event_id": 17}),
    );
    assert_eq!(target(&r), ("block_ip", "ip", "192.0.2.77"));
    assert_eq!(r.idempotency_key, "in:17");
}

#[test]
fn values_that_are_not_what_they_claim_are_refused_by_name() {
    let payload = |severity: &str, confidence: &str, ttl: &str| {
        json!({"alerts": [{"status": "firing", "labels": {"alertname": "a", "action": "block_ip",
            "target": "192.0.2.1", "severity": severity, "confidence": confidence, "ttl": ttl},
            "startsAt": "t", "fingerprint": "f"}]})
    };
    let m = intake("alertmanager", &[]);
    for (p, field) in [
        (payload("urgent", "0.5", "1h"), "alerts[0].severity"),
        (payload("low", "1.5", "1h"), "alerts[0].confidence"),
        (payload("low", "0.5", "soon"), "alerts[0].ttl"),
    ] {
        let Item::Invalid(e) = map(&m, &p).unwrap().remove(0) else {
            panic!()
        };
        assert_eq!(e.field, field, "{e}");
    }
}

#[test]
fn a_long_or_spaced_platform_key_becomes_a_digest() {
    assert_eq!(idempotency_key("am", "abc"), "am:abc");
    let spaced = idempotency_key("am", "a b");
    assert!(spaced.starts_with("am:b3:") && !spaced.contains(' '));
    assert_eq!(
        idempotency_key("am", &"x".repeat(300)).len(),
        "am:b3:".len() + 64
    );
}

#[test]
fn the_config_refuses_what_a_preset_does_not_allow() {
    let parse = |s: &str| toml::from_str::<Intake>(s).unwrap().check();
    assert!(parse("name='a'\npreset='alertmanager'\nsource='s'\nauth='query_token'").is_err());
    assert!(parse("name='a'\npreset='splunk'\nsource='s'\nauth='query_token'").is_ok());
    assert!(parse("name='a'\npreset='generic'\nsource='s'\nauth='hmac'").is_err());
    assert!(parse("name='a/b'\npreset='generic'\nsource='s'").is_err());
    assert!(toml::from_str::<Intake>("name='a'\npreset='nope'\nsource='s'").is_err());
    assert!(
        toml::from_str::<Intake>("name='a'\npreset='generic'\nsource='s'\n[map]\nbogus='x'")
            .is_err()
    );
}

#[test]
fn a_payload_of_too_many_alerts_is_refused_whole() {
    let alert = json!({"status": "firing", "labels": {}});
    let alerts: Vec<_> = (0..=MAX_ITEMS).map(|_| alert.clone()).collect();
    let e = map(&intake("alertmanager", &[]), &json!({ "alerts": alerts })).unwrap_err();
    assert_eq!(e.field, "alerts");
    assert!(e.message.contains("max_alerts"), "{e}");
}

#[test]
fn crowdsec_maps_each_decision_of_each_alert() {
    // the `http` notification plugin's default format, `{{.|toJson}}`: a list of alerts
    let payload = json!([{
        "capacity": 5, "events_count": 6, "leakspeed": "10s",
        "message": "Ip 198.51.100.31 performed 'crowdsecurity/ssh-bf' (6 events over 1s)",
        "scenario": "crowdsecurity/ssh-bf", "scenario_hash": "4441d", "scenario_version": "0.1",
        "simulated": false, "start_at": "2026-12-08T01:00:00Z", "stop_at": "2026-12-08T01:00:01Z",
        "uuid": "1f2e3d4c", "machine_id": "sensor-1",
        "source": {"ip": "198.51.100.31", "scope": "Ip", "value": "198.51.100.31", "cn": "FR"},
        "decisions": [
            {"duration": "3h59m59.52s", "origin": "crowdsec", "scenario": "crowdsecurity/ssh-bf",
             "scope": "Ip", "type": "ban", "value": "198.51.100.31", "uuid": "d-1"},
            {"duration": "4h", "origin": "crowdsec", "scenario": "crowdsecurity/ssh-bf",
             "scope": "Ip", "type": "captcha", "value": "198.51.100.32", "uuid": "d-2"}
        ],
        "events": [{"meta": [{"key": "service", "value": "ssh"}]}]
    }]);
    let m = intake("crowdsec", &[("severity", "=high"), ("confidence", "=0.9")]);
    let mut items = map(&m, &payload).unwrap();
    assert_eq!(items.len(), 2);
    let Item::Invalid(e) = items.remove(1) else {
        panic!()
    };
    assert_eq!(e.field, "decisions[1].action");
    assert!(e.message.contains("not a `ban`"), "{e}");
    let Item::Submit(r) = items.remove(0) else {
        panic!()
    };
    assert_eq!(
        r.detection.as_ref().unwrap().rule_id,
        "crowdsec.crowdsecurity/ssh-bf"
    );
    assert_eq!(target(&r), ("block_ip", "ip", "198.51.100.31"));
    assert_eq!(r.ttl, Some(Duration::from_secs(14_399).into()));
    assert_eq!(r.idempotency_key, "in:d-1");
    let none = map(&m, &json!([{"scenario": "x", "decisions": []}])).unwrap_err();
    assert_eq!(none.field, "decisions");
}
