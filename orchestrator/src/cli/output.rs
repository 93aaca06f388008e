//! How results are printed: a table for people, JSON lines for machines.

use comfy_table::{Table, presets::NOTHING};
use parapet_proto::v1 as pb;
use serde_json::{Value, json};

#[derive(Clone, Copy)]
pub struct Output {
    pub json: bool,
}

impl Output {
    pub fn table(self, header: &[&str], rows: Vec<Vec<String>>) {
        let mut table = Table::new();
        table.load_style(NOTHING).set_header(header.to_vec());
        for row in rows {
            table.add_row(row);
        }
        outln!("{table}");
    }

    pub fn json_line(self, value: &Value) {
        outln!("{value}");
    }
}

pub fn time(t: Option<&parapet_proto::wkt::Timestamp>) -> String {
    t.and_then(parapet_proto::time::system_time)
        .map(|t| humantime::format_rfc3339_seconds(t).to_string())
        .unwrap_or_default()
}

fn duration(d: Option<&parapet_proto::wkt::Duration>) -> Value {
    d.and_then(|d| std::time::Duration::try_from(*d).ok())
        .map_or(Value::Null, |d| {
            humantime::format_duration(d).to_string().into()
        })
}

pub fn state(value: i32) -> String {
    pb::IntentState::try_from(value)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("INTENT_STATE_")
                .to_lowercase()
        })
        .unwrap_or_else(|_| value.to_string())
}

pub fn outcome(value: i32) -> String {
    pb::Outcome::try_from(value)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("OUTCOME_")
                .to_lowercase()
        })
        .unwrap_or_else(|_| value.to_string())
}

fn severity(value: i32) -> String {
    pb::Severity::try_from(value)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("SEVERITY_")
                .to_lowercase()
        })
        .unwrap_or_else(|_| value.to_string())
}

fn step_state(value: i32) -> String {
    pb::StepState::try_from(value)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("STEP_STATE_")
                .to_lowercase()
        })
        .unwrap_or_else(|_| value.to_string())
}

/// `block_ip ip:198.51.100.7`
pub fn step_summary(s: &pb::Step) -> String {
    match &s.target {
        Some(t) => format!("{} {}:{}", s.kind, t.kind, t.id),
        None => s.kind.clone(),
    }
}

pub fn decision_json(d: &pb::Decision) -> Value {
    json!({
        "outcome": outcome(d.outcome),
        "reasons": d.reasons.iter().map(|r| json!({
            "guardrail": r.guardrail,
            "effect": outcome(r.effect),
            "message": r.message,
            "step": r.step,
        })).collect::<Vec<_>>(),
        "policy_digest": d.policy_digest,
        "retry_after": duration(d.retry_after.as_ref()),
    })
}

pub fn intent_json(i: &pb::Intent) -> Value {
    let det = i.detection.clone().unwrap_or_default();
    json!({
        "intent_id": i.intent_id,
        "state": state(i.state),
        "idempotency_key": i.idempotency_key,
        "source": i.source,
        "detection": {
            "rule_id": det.rule_id,
            "severity": severity(det.severity),
            "confidence": det.confidence,
            "title": det.title,
        },
        "steps": i.steps.iter().zip(i.step_status.iter().map(Some).chain(std::iter::repeat(None))).map(|(s, st)| {
            let t = s.target.clone().unwrap_or_default();
            json!({
                "kind": s.kind,
                "target": {"kind": t.kind, "id": t.id, "attributes": t.attributes},
                "params": s.params,
                "state": st.map(|st| step_state(st.state)),
                "adapter": st.map(|st| st.adapter.clone()),
                "error": st.map(|st| st.error.as_str()).filter(|e| !e.is_empty()),
            })
        }).collect::<Vec<_>>(),
        "ttl": duration(i.ttl.as_ref()),
        "reason": i.reason,
        "decision": i.decision.as_ref().map(decision_json),
        "created_at": time(i.created_at.as_ref()),
        "updated_at": time(i.updated_at.as_ref()),
        "expires_at": i.expires_at.as_ref().map(|t| time(Some(t))),
        "error": Some(&i.error).filter(|e| !e.is_empty()),
        "finding": serde_json::from_str::<Value>(&i.finding).ok(),
    })
}

/// The full story of one intent, for people.
pub fn print_intent(i: &pb::Intent) {
    let det = i.detection.clone().unwrap_or_default();
    outln!("intent      {}", i.intent_id);
    outln!("state       {}", state(i.state));
    outln!("source      {} (key {})", i.source, i.idempotency_key);
    outln!(
        "detection   {} severity={} confidence={}{}",
        det.rule_id,
        severity(det.severity),
        det.confidence,
        if det.title.is_empty() {
            String::new()
        } else {
            format!(" \"{}\"", det.title)
        }
    );
    if !i.reason.is_empty() {
        outln!("reason      {}", i.reason);
    }
    if let Value::String(ttl) = duration(i.ttl.as_ref()) {
        outln!("ttl         {ttl}");
    }
    if i.expires_at.is_some() {
        outln!("expires     {}", time(i.expires_at.as_ref()));
    }
    outln!("created     {}", time(i.created_at.as_ref()));
    if !i.error.is_empty() {
        outln!("error       {}", i.error);
    }
    for (n, s) in i.steps.iter().enumerate() {
        let status = i.step_status.get(n);
        let st = status.map(|s| step_state(s.state)).unwrap_or_default();
        let err = status.map(|s| s.error.as_str()).filter(|e| !e.is_empty());
        outln!(
            "step {n}      {} [{st}]{}",
            step_summary(s),
            err.map(|e| format!(" {e}")).unwrap_or_default()
        );
    }
    if let Some(d) = &i.decision {
        print_decision(d);
    }
}

pub fn print_decision(d: &pb::Decision) {
    outln!(
        "decision    {} (policy {})",
        outcome(d.outcome),
        d.policy_digest
    );
    for r in &d.reasons {
        let step = r.step.map(|s| format!(" step {s}")).unwrap_or_default();
        outln!(
            "  {:<14} {}{step}: {}",
            outcome(r.effect),
            r.guardrail,
            r.message
        );
    }
    if let Value::String(after) = duration(d.retry_after.as_ref()) {
        outln!("  retry after {after}");
    }
}
