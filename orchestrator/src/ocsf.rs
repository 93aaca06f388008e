//! The journal as OCSF events, for a SIEM: each step that acted or was undone becomes a
//! Remediation Activity event (category 7) of the class its action belongs to, with the
//! entry's place in the hash chain under `unmapped.parapet`.
//!
//! | action kind          | class                             | activity    |
//! |----------------------|-----------------------------------|-------------|
//! | `block_ip`           | 7004 Network Remediation Activity | 1 Isolate   |
//! | `isolate_host`       | 7004 Network Remediation Activity | 1 Isolate   |
//! | `revoke_credentials` | 7001 Remediation Activity         | 2 Evict     |
//! | `quarantine_file`    | 7002 File Remediation Activity    | 1 Isolate   |
//! | `kill_process`       | 7003 Process Remediation Activity | 2 Evict     |
//! | any other            | 7001 Remediation Activity         | 99 Other    |
//!
//! An undo is the same class with activity 3 Restore. `type_uid` is class × 100 + activity.

use std::time::SystemTime;

use parapet_model::{Severity, Step};
use serde_json::{Value, json};

use crate::{
    journal::{Entry, hex, log::Hash},
    lifecycle::{Event, IntentEvent, IntentRecord},
};

/// The OCSF schema version the events follow.
pub const VERSION: &str = "1.4.0";

const ISOLATE: (u8, &str) = (1, "Isolate");
const EVICT: (u8, &str) = (2, "Evict");
const RESTORE: (u8, &str) = (3, "Restore");
const OTHER: (u8, &str) = (99, "Other");

/// The class and activity of an action kind.
fn class_of(step: &Step) -> (u32, &'static str, (u8, &'static str)) {
    match step.kind.as_str() {
        "block_ip" | "isolate_host" => (7004, "Network Remediation Activity", ISOLATE),
        "revoke_credentials" => (7001, "Remediation Activity", EVICT),
        "quarantine_file" => (7002, "File Remediation Activity", ISOLATE),
        "kill_process" => (7003, "Process Remediation Activity", EVICT),
        _ => (7001, "Remediation Activity", OTHER),
    }
}

fn severity(s: Severity) -> (u8, &'static str) {
    match s {
        Severity::Informational => (1, "Informational"),
        Severity::Low => (2, "Low"),
        Severity::Medium => (3, "Medium"),
        Severity::High => (4, "High"),
        Severity::Critical => (5, "Critical"),
    }
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The entry with its chain hashes, as one JSON object: the `jsonl` export.
pub fn entry_json(e: &Entry, hash: &Hash) -> Value {
    let event = match serde_json::to_value(&e.event) {
        Ok(Value::Object(map)) => map.into_iter().next().map_or(Value::Null, |(_, v)| v),
        _ => Value::Null,
    };
    json!({
        "seq": e.seq,
        "time": humantime::format_rfc3339_millis(e.time).to_string(),
        "intent_id": e.intent_id.map(|id| id.to_string()),
        "kind": e.event.kind(),
        "actor": e.actor,
        "event": event,
        "hash": hex(hash),
        "prev_hash": hex(&e.prev),
    })
}

/// The Remediation Activity event of an entry, if the entry is a step acting or being undone.
pub fn remediation(e: &Entry, hash: &Hash, record: &IntentRecord) -> Option<Value> {
    let (step, restore, ok, error) = match &e.event {
        Event::Intent(IntentEvent::StepSucceeded { step, .. }) => (*step, false, true, None),
        Event::Intent(IntentEvent::StepFailed { step, error, .. }) => {
            (*step, false, false, Some(error))
        }
        Event::Intent(IntentEvent::StepRolledBack { step }) => (*step, true, true, None),
        Event::Intent(IntentEvent::StepRollbackFailed { step, error }) => {
            (*step, true, false, Some(error))
        }
        _ => return None,
    };
    let intent = &record.intent;
    let s = intent.steps.get(step as usize)?;
    let (class_uid, class_name, acted) = class_of(s);
    let (activity_id, activity_name) = if restore { RESTORE } else { acted };
    let (severity_id, severity_name) = severity(intent.detection.severity);
    let (status_id, status) = if ok { (1, "Success") } else { (6, "Error") };
    let adapter = record
        .steps
        .get(step as usize)
        .and_then(|r| r.handle.as_ref())
        .map(|h| h.acted_by());
    let verb = if restore { "undo" } else { "do" };
    let mut event = json!({
        "class_uid": class_uid,
        "class_name": class_name,
        "category_uid": 7,
        "category_name": "Remediation",
        "activity_id": activity_id,
        "activity_name": activity_name,
        "type_uid": class_uid * 100 + u32::from(activity_id),
        "type_name": format!("{class_name}: {activity_name}"),
        "severity_id": severity_id,
        "severity": severity_name,
        "status_id": status_id,
        "status": status,
        "time": millis(e.time),
        "message": format!(
            "{verb} {} on {} {} for detection {}",
            s.kind, s.target.kind, s.target.id, intent.detection.rule_id
        ),
        "command_uid": format!("{}/{step}", intent.id),
        "metadata": {
            "version": VERSION,
            "uid": e.seq.to_string(),
            "sequence": e.seq,
            "correlation_uid": intent.id.to_string(),
            "log_name": "journal",
            "product": {
                "name": "Parapet",
                "vendor_name": "Parapet",
                "version": env!("CARGO_PKG_VERSION"),
            },
        },
        "unmapped": {
            "parapet": {
                "seq": e.seq,
                "hash": hex(hash),
                "prev_hash": hex(&e.prev),
                "intent_id": intent.id.to_string(),
                "step": step,
                "action_kind": s.kind.as_str(),
                "target": {"kind": s.target.kind, "id": s.target.id},
                "detection": intent.detection.rule_id,
                "source": intent.source,
                "actor": e.actor,
                "adapter": adapter,
            },
        },
    });
    if let Some(error) = error {
        event["status_detail"] = error.as_str().into();
    }
    if class_uid == 7004 {
        let version = if s.target.id.contains(':') { 6 } else { 4 };
        // the connection is not known; only the address family is
        event["connection_info"] = json!({"direction_id": 0, "protocol_ver_id": version});
    }
    if class_uid == 7002 {
        event["file"] = file(s);
    }
    if class_uid == 7003 {
        event["process"] = process(s);
    }
    Some(event)
}

/// OCSF's `file`: the bare name in `name`, the whole path (when the id is one) in `path`.
fn file(s: &Step) -> Value {
    let id = s.target.id.as_str();
    let name = id
        .rsplit(['/', '\\'])
        .next()
        .filter(|n| !n.is_empty())
        .unwrap_or(id);
    let mut file = json!({"name": name, "type_id": 1, "type": "Regular File"});
    if name != id {
        file["path"] = id.into();
    }
    file
}

/// OCSF's `process`, which needs a `pid` or a `uid`: a numeric id is the pid, any other the
/// uid; a name only where the target says one (attribute `name`).
fn process(s: &Step) -> Value {
    let id = s.target.id.as_str();
    let mut process = match id.parse::<i32>() {
        Ok(pid) if pid >= 0 => json!({"pid": pid}),
        _ => json!({"uid": id}),
    };
    if let Some(name) = s.target.attributes.get("name") {
        process["name"] = name.as_str().into();
    }
    process
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeMap;

    use parapet_model::{Confidence, Detection, IntentId, IntentRequest, Target};

    use super::*;

    fn record(kind: &str, target: (&str, &str)) -> IntentRecord {
        let step = Step::new(
            kind.parse().unwrap(),
            Target::new(target.0.into(), target.1.into(), BTreeMap::new()).unwrap(),
            BTreeMap::new(),
        )
        .unwrap();
        let det = Detection::new(
            "idp.token_theft".into(),
            Severity::High,
            Confidence::try_from(0.9).unwrap(),
            String::new(),
        )
        .unwrap();
        let intent = IntentRequest::new(
            "k".into(),
            "siem".into(),
            det,
            vec![step],
            None,
            String::new(),
        )
        .unwrap()
        .into_intent(IntentId::generate(), SystemTime::UNIX_EPOCH);
        IntentRecord::received(intent, 1)
    }

    fn entry(event: impl Into<Event>) -> Entry {
        Entry {
            seq: 7,
            time: SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_764_600_000),
            intent_id: None,
            actor: "parapet".into(),
            event: event.into(),
            prev: [0; 32],
        }
    }

    #[test]
    fn each_action_kind_has_its_class_and_activity() {
        let handle = parapet_actions::RollbackHandle {
            adapter: "directory".into(),
            data: "{}".into(),
        };
        let done = entry(IntentEvent::StepSucceeded { step: 0, handle });
        let cases = [
            ("revoke_credentials", ("user", "alice"), 7001, 2),
            ("block_ip", ("ip", "2001:db8::1"), 7004, 1),
            ("kill_process", ("process", "evil.exe"), 7003, 2),
            ("quarantine_file", ("file", "/tmp/x"), 7002, 1),
            ("disable_mfa_bypass", ("user", "bob"), 7001, 99),
        ];
        for (kind, target, class, activity) in cases {
            let e = remediation(&done, &[0; 32], &record(kind, target)).unwrap();
            assert_eq!(
                (e["class_uid"].as_u64(), e["activity_id"].as_u64()),
                (Some(class), Some(activity)),
                "{kind}"
            );
            assert_eq!(
                e["type_uid"].as_u64(),
                Some(class * 100 + activity),
                "{kind}"
            );
            assert_eq!(e["time"], 1_764_600_000_000_u64);
            assert_eq!(e["severity_id"], 4);
        }
        let v6 = remediation(&done, &[0; 32], &record("block_ip", ("ip", "2001:db8::1"))).unwrap();
        assert_eq!(v6["connection_info"]["protocol_ver_id"], 6);
    }

    #[test]
    fn an_undo_restores_and_a_failure_says_why() {
        let r = record("revoke_credentials", ("user", "alice"));
        let undone = remediation(
            &entry(IntentEvent::StepRolledBack { step: 0 }),
            &[0; 32],
            &r,
        )
        .unwrap();
        assert_eq!(
            (undone["activity_id"].as_u64(), undone["type_uid"].as_u64()),
            (Some(3), Some(700103))
        );
        let failed = entry(IntentEvent::StepFailed {
            step: 0,
            error: "ldap: busy".into(),
            retryable: true,
        });
        let failed = remediation(&failed, &[0; 32], &r).unwrap();
        assert_eq!(
            (
                failed["status_id"].as_u64(),
                failed["status_detail"].as_str()
            ),
            (Some(6), Some("ldap: busy"))
        );
        assert!(remediation(&entry(IntentEvent::RolledBack), &[0; 32], &r).is_none());
    }
}
