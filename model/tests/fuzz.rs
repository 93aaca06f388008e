//! OCSF Detection Finding parsing under hostile input: never a panic; a finding accepted has
//! everything OCSF requires; a refusal names the attribute. `PROPTEST_CASES=N` for longer runs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use parapet_model::Finding;
use proptest::prelude::*;
use serde_json::{Value, json};

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "\\PC{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A valid finding with one attribute replaced by anything.
fn damaged() -> impl Strategy<Value = Value> {
    let keys = [
        "class_uid",
        "category_uid",
        "activity_id",
        "type_uid",
        "severity_id",
        "time",
        "metadata",
        "finding_info",
    ];
    (prop::sample::select(keys.to_vec()), json_value()).prop_map(|(key, v)| {
        let mut f = json!({
            "class_uid": 2004, "category_uid": 2, "activity_id": 1, "type_uid": 200401,
            "severity_id": 3, "time": 1_764_600_000_000_i64,
            "metadata": {"version": "1.4.0", "product": {"name": "x"}},
            "finding_info": {"uid": "u", "title": "t"},
        });
        f[key] = v;
        f
    })
}

fn accepted_is_complete(f: &Finding) {
    let v: Value = serde_json::from_str(f.as_json()).unwrap();
    assert_eq!(v["class_uid"], 2004);
    let activity = v["activity_id"].as_i64().unwrap();
    assert_eq!(v["type_uid"].as_i64().unwrap(), 200400 + activity);
    assert!(v["finding_info"]["uid"].is_string() && v["finding_info"]["title"].is_string());
    assert!(v["metadata"]["version"].is_string());
}

proptest! {
    #[test]
    fn any_text_is_accepted_complete_or_refused_by_name(text in "\\PC{0,300}") {
        match Finding::parse(&text) {
            Ok(f) => accepted_is_complete(&f),
            Err(e) => prop_assert!(e.field.starts_with("finding"), "{e}"),
        }
    }

    #[test]
    fn any_json_is_accepted_complete_or_refused_by_name(v in json_value()) {
        match Finding::parse(&v.to_string()) {
            Ok(f) => accepted_is_complete(&f),
            Err(e) => prop_assert!(e.field.starts_with("finding"), "{e}"),
        }
    }

    #[test]
    fn a_damaged_attribute_is_named(v in damaged()) {
        match Finding::parse(&v.to_string()) {
            Ok(f) => accepted_is_complete(&f),
            Err(e) => prop_assert!(e.field.starts_with("finding."), "{e}"),
        }
    }
}
