//! An OCSF Detection Finding (class 2004) carried by an intent as its evidence.
//!
//! Parapet checks the attributes OCSF requires of a Detection Finding, and keeps the finding as
//! compact JSON text with the intent, unchanged otherwise: it is the detection platform's
//! record of what it saw, for the auditor to read beside Parapet's own.

use serde_json::{Map, Value};

use crate::{Invalid, limits};

/// A validated Detection Finding, as compact JSON. In JSON it is the finding itself; in the
/// journal's binary encoding, its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding(String);

impl serde::Serialize for Finding {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            let value: Value = serde_json::from_str(&self.0).map_err(serde::ser::Error::custom)?;
            value.serialize(s)
        } else {
            s.serialize_str(&self.0)
        }
    }
}

impl<'de> serde::Deserialize<'de> for Finding {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let value = Value::deserialize(d)?;
            Self::parse(&value.to_string()).map_err(serde::de::Error::custom)
        } else {
            Ok(Self(String::deserialize(d)?))
        }
    }
}

pub const DETECTION_FINDING: i64 = 2004;
const FINDINGS_CATEGORY: i64 = 2;

impl Finding {
    /// Parses and checks a finding. Errors name the attribute, under `finding`.
    pub fn parse(text: &str) -> Result<Self, Invalid> {
        let bad = |field: &str, message: String| {
            Invalid::new(
                if field.is_empty() {
                    "finding".to_owned()
                } else {
                    format!("finding.{field}")
                },
                message,
            )
        };
        if text.len() > limits::MAX_FINDING_BYTES {
            return Err(bad(
                "",
                format!(
                    "is {} bytes; at most {}",
                    text.len(),
                    limits::MAX_FINDING_BYTES
                ),
            ));
        }
        let value: Value =
            serde_json::from_str(text).map_err(|e| bad("", format!("is not JSON: {e}")))?;
        let Value::Object(event) = &value else {
            return Err(bad("", "must be a JSON object (one OCSF event)".into()));
        };
        let class = int(event, "class_uid").map_err(|m| bad("class_uid", m.to_string()))?;
        if class != DETECTION_FINDING {
            return Err(bad(
                "class_uid",
                format!("is {class}; a Detection Finding is {DETECTION_FINDING}"),
            ));
        }
        let category =
            int(event, "category_uid").map_err(|m| bad("category_uid", m.to_string()))?;
        if category != FINDINGS_CATEGORY {
            return Err(bad(
                "category_uid",
                format!("is {category}; Findings are category {FINDINGS_CATEGORY}"),
            ));
        }
        let activity = int(event, "activity_id").map_err(|m| bad("activity_id", m.to_string()))?;
        if !matches!(activity, 0..=3 | 99) {
            return Err(bad(
                "activity_id",
                format!(
                    "is {activity}; one of 0 (Unknown), 1 (Create), 2 (Update), 3 (Close), 99 (Other)"
                ),
            ));
        }
        let type_uid = int(event, "type_uid").map_err(|m| bad("type_uid", m.to_string()))?;
        if type_uid != class * 100 + activity {
            return Err(bad(
                "type_uid",
                format!(
                    "is {type_uid}; class_uid × 100 + activity_id is {}",
                    class * 100 + activity
                ),
            ));
        }
        let severity = int(event, "severity_id").map_err(|m| bad("severity_id", m.to_string()))?;
        if !matches!(severity, 0..=6 | 99) {
            return Err(bad("severity_id", format!("is {severity}; 0 to 6, or 99")));
        }
        let time = int(event, "time").map_err(|m| bad("time", m.to_string()))?;
        if time < 0 {
            return Err(bad("time", "must be milliseconds since 1970".into()));
        }
        let metadata = object(event, "metadata").map_err(|m| bad("metadata", m.to_string()))?;
        text_of(metadata, "version").map_err(|m| bad("metadata.version", m.to_string()))?;
        let product =
            object(metadata, "product").map_err(|m| bad("metadata.product", m.to_string()))?;
        if product.get("name").is_none() && product.get("uid").is_none() {
            return Err(bad("metadata.product", "needs a `name` or a `uid`".into()));
        }
        let info = object(event, "finding_info").map_err(|m| bad("finding_info", m.to_string()))?;
        text_of(info, "uid").map_err(|m| bad("finding_info.uid", m.to_string()))?;
        text_of(info, "title").map_err(|m| bad("finding_info.title", m.to_string()))?;
        Ok(Self(value.to_string()))
    }

    pub fn as_json(&self) -> &str {
        &self.0
    }
}

/// What is wrong with the shape of a member.
#[derive(Debug, thiserror::Error)]
enum Shape {
    #[error("is required")]
    Missing,
    #[error("must be an integer, not {0}")]
    NotInteger(Value),
    #[error("must be an object")]
    NotObject,
    #[error("must not be empty")]
    Empty,
    #[error("must be a string")]
    NotString,
}

fn int(event: &Map<String, Value>, key: &str) -> Result<i64, Shape> {
    match event.get(key) {
        None | Some(Value::Null) => Err(Shape::Missing),
        Some(v) => v.as_i64().ok_or_else(|| Shape::NotInteger(v.clone())),
    }
}

fn object<'a>(event: &'a Map<String, Value>, key: &str) -> Result<&'a Map<String, Value>, Shape> {
    match event.get(key) {
        None | Some(Value::Null) => Err(Shape::Missing),
        Some(Value::Object(o)) => Ok(o),
        Some(_) => Err(Shape::NotObject),
    }
}

fn text_of<'a>(event: &'a Map<String, Value>, key: &str) -> Result<&'a str, Shape> {
    match event.get(key) {
        None | Some(Value::Null) => Err(Shape::Missing),
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s),
        Some(Value::String(_)) => Err(Shape::Empty),
        Some(_) => Err(Shape::NotString),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn finding() -> Value {
        serde_json::json!({
            "class_uid": 2004, "category_uid": 2, "activity_id": 1, "type_uid": 200401,
            "severity_id": 5, "time": 1_764_600_000_000_i64,
            "metadata": {"version": "1.4.0", "product": {"name": "XDR", "vendor_name": "Example"}},
            "finding_info": {"uid": "f-1", "title": "Beacon to a known C2"},
            "evidences": [{"dst_endpoint": {"ip": "198.51.100.7"}}],
        })
    }

    #[test]
    fn a_complete_detection_finding_is_kept_whole() {
        let f = Finding::parse(&finding().to_string()).unwrap();
        let back: Value = serde_json::from_str(f.as_json()).unwrap();
        assert_eq!(back, finding());
    }

    #[test]
    fn each_required_attribute_is_named_when_missing_or_wrong() {
        let cases: &[(&str, Value, &str)] = &[
            ("class_uid", Value::Null, "finding.class_uid: is required"),
            (
                "class_uid",
                2001.into(),
                "finding.class_uid: is 2001; a Detection Finding is 2004",
            ),
            ("category_uid", 7.into(), "finding.category_uid: is 7"),
            ("activity_id", 8.into(), "finding.activity_id: is 8"),
            (
                "type_uid",
                200402.into(),
                "finding.type_uid: is 200402; class_uid × 100 + activity_id is 200401",
            ),
            (
                "severity_id",
                "high".into(),
                "finding.severity_id: must be an integer",
            ),
            ("time", Value::Null, "finding.time: is required"),
            ("metadata", Value::Null, "finding.metadata: is required"),
            (
                "finding_info",
                serde_json::json!({"uid": "x"}),
                "finding.finding_info.title: is required",
            ),
            (
                "finding_info",
                serde_json::json!({"title": "t", "uid": ""}),
                "finding.finding_info.uid: must not be empty",
            ),
            (
                "metadata",
                serde_json::json!({"version": "1.4.0"}),
                "finding.metadata.product: is required",
            ),
            (
                "metadata",
                serde_json::json!({"product": {"name": "x"}}),
                "finding.metadata.version: is required",
            ),
        ];
        for (key, value, expected) in cases {
            let mut f = finding();
            if value.is_null() {
                f.as_object_mut().unwrap().remove(*key);
            } else {
                f[*key] = value.clone();
            }
            let err = Finding::parse(&f.to_string()).unwrap_err().to_string();
            assert!(err.starts_with(expected), "{key}: {err}");
        }
        let err = Finding::parse("[1]").unwrap_err().to_string();
        assert!(err.contains("must be a JSON object"), "{err}");
        let err = Finding::parse("{").unwrap_err().to_string();
        assert!(err.starts_with("finding: is not JSON"), "{err}");
        let huge = format!("\"{}\"", "x".repeat(limits::MAX_FINDING_BYTES));
        assert!(
            Finding::parse(&huge)
                .unwrap_err()
                .to_string()
                .contains("bytes; at most")
        );
    }
}
