use std::collections::BTreeMap;

use super::*;

fn step(kind: &str, id: &str) -> Step {
    Step::new(
        kind.parse().unwrap(),
        Target::new("ip".into(), id.into(), BTreeMap::new()).unwrap(),
        BTreeMap::new(),
    )
    .unwrap()
}

fn detection() -> Detection {
    Detection::new(
        "edr.c2".into(),
        Severity::High,
        Confidence::try_from(0.9).unwrap(),
        String::new(),
    )
    .unwrap()
}

#[test]
fn confidence_outside_unit_interval_is_refused() {
    assert!(Confidence::try_from(1.01).is_err());
    assert!(Confidence::try_from(-0.1).is_err());
    assert!(Confidence::try_from(f64::NAN).is_err());
    assert_eq!(Confidence::try_from(1.0).unwrap().get(), 1.0);
}

#[test]
fn action_kind_names_are_restricted() {
    assert!("block_ip".parse::<ActionKind>().is_ok());
    for bad in ["", "Block", "1x", "block-ip", "a b", &"x".repeat(65)] {
        assert!(bad.parse::<ActionKind>().is_err(), "{bad:?} accepted");
    }
}

#[test]
fn nested_errors_name_the_full_field_path() {
    let err = Target::new("ip".into(), String::new(), BTreeMap::new()).unwrap_err();
    assert_eq!(err.under("steps[2].target").field, "steps[2].target.id");
    let mut attrs = BTreeMap::new();
    attrs.insert("Site".into(), "hq".into());
    let err = Target::new("ip".into(), "10.0.0.1".into(), attrs).unwrap_err();
    assert_eq!(err.field, "attributes.key `Site`");
}

#[test]
fn intent_requests_need_steps_within_limits() {
    let new = |steps: Vec<Step>, ttl| {
        IntentRequest::new(
            "k".into(),
            "siem".into(),
            detection(),
            steps,
            ttl,
            String::new(),
        )
    };
    assert_eq!(new(vec![], None).unwrap_err().field, "steps");
    let many = vec![step("block_ip", "192.0.2.1"); limits::MAX_STEPS + 1];
    assert_eq!(new(many, None).unwrap_err().field, "steps");
    let one = vec![step("block_ip", "192.0.2.1")];
    assert_eq!(
        new(one.clone(), Some(Duration::ZERO)).unwrap_err().field,
        "ttl"
    );
    assert!(new(one, Some(Duration::from_secs(60))).is_ok());
}

#[test]
fn ids_refuse_whitespace_and_oversize() {
    let err = IntentRequest::new(
        "has space".into(),
        "siem".into(),
        detection(),
        vec![step("block_ip", "192.0.2.1")],
        None,
        String::new(),
    )
    .unwrap_err();
    assert_eq!(err.field, "idempotency_key");
    let long = "a".repeat(limits::MAX_ID_LEN + 1);
    let err = Detection::new(
        long,
        Severity::Low,
        Confidence::try_from(0.1).unwrap(),
        String::new(),
    )
    .unwrap_err();
    assert_eq!(err.field, "rule_id");
}

#[test]
fn intent_ids_round_trip_through_text() {
    let id = IntentId::generate();
    assert_eq!(id.to_string().parse::<IntentId>().unwrap(), id);
    assert!("nope".parse::<IntentId>().is_err());
}

#[test]
fn addresses_in_a_target_are_kept_in_their_canonical_form() {
    let attrs = BTreeMap::from([
        ("ip".to_owned(), "::ffff:10.20.0.5".to_owned()),
        ("gateway".to_owned(), "64:ff9b::a14:1".to_owned()),
        ("site".to_owned(), "hq".to_owned()),
    ]);
    let t = Target::new("host".into(), "::FFFF:192.0.2.200".into(), attrs).unwrap();
    assert_eq!(t.id, "192.0.2.200");
    assert_eq!(t.attributes["ip"], "10.20.0.5");
    assert_eq!(t.attributes["gateway"], "10.20.0.1");
    assert_eq!(t.attributes["site"], "hq");
    let named: Vec<String> = t
        .addresses()
        .map(|(field, a)| format!("{field}={a}"))
        .collect();
    assert_eq!(
        named,
        [
            "target.id=192.0.2.200",
            "target.attributes.gateway=10.20.0.1",
            "target.attributes.ip=10.20.0.5"
        ]
    );
}

#[test]
fn an_ip_target_and_the_ip_attribute_must_hold_addresses() {
    for (kind, id, ip, field) in [
        ("ip", "10/8", None, "id"),
        ("ip", "012.024.0.5", None, "id"),
        ("ip", "10.20.0.5;x", None, "id"),
        ("host", "ws-1", Some("0/0"), "attributes.ip"),
        ("host", "ws-1", Some("10.20.0.5/16"), "attributes.ip"),
    ] {
        let attrs = ip
            .map(|ip| BTreeMap::from([("ip".to_owned(), ip.to_owned())]))
            .unwrap_or_default();
        let err = Target::new(kind.into(), id.into(), attrs).unwrap_err();
        assert_eq!(err.field, field, "{kind} {id} {ip:?}: {err}");
    }
}
