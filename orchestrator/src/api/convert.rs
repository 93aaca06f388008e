//! Conversions between the generated protobuf types and the domain, in one place. Incoming
//! messages are validated here into domain types; bad input becomes an [`Invalid`] naming the
//! field as the client spelled it (`steps[0].target.id`).

use std::time::{Duration, SystemTime};

use parapet_model::{
    Confidence, Decision, Detection, Intent, IntentRequest, Invalid, Outcome, Reason, Severity,
    Step, Target,
};
use parapet_proto::{v1 as pb, wkt};

use crate::{
    filter::IntentFilter,
    lifecycle::{IntentRecord, State, StepState},
    service::{
        admin::{Compaction, KillSwitch, Status},
        journal::{Hash, Hashed, Query, Replay, Report, hex},
    },
};

pub fn intent_request(req: pb::SubmitIntentRequest) -> Result<IntentRequest, Invalid> {
    let detection = req
        .detection
        .ok_or_else(|| Invalid::new("", "is required"))
        .and_then(detection)
        .map_err(|e| e.under("detection"))?;
    let steps = req
        .steps
        .into_iter()
        .enumerate()
        .map(|(i, s)| step(s).map_err(|e| e.under(&format!("steps[{i}]"))))
        .collect::<Result<Vec<_>, _>>()?;
    let ttl = req
        .ttl
        .map(|d| duration(d).map_err(|e| e.under("ttl")))
        .transpose()?;
    let request = IntentRequest::new(
        req.idempotency_key,
        req.source,
        detection,
        steps,
        ttl,
        req.reason,
    )?;
    Ok(match req.finding.as_str() {
        "" => request,
        text => request.with_finding(parapet_model::Finding::parse(text)?),
    })
}

fn detection(d: pb::Detection) -> Result<Detection, Invalid> {
    let severity = severity(d.severity).map_err(|e| e.under("severity"))?;
    let confidence = Confidence::try_from(d.confidence).map_err(|e| e.under("confidence"))?;
    Detection::new(d.rule_id, severity, confidence, d.title)
}

pub fn severity(value: i32) -> Result<Severity, Invalid> {
    match pb::Severity::try_from(value) {
        Ok(pb::Severity::Informational) => Ok(Severity::Informational),
        Ok(pb::Severity::Low) => Ok(Severity::Low),
        Ok(pb::Severity::Medium) => Ok(Severity::Medium),
        Ok(pb::Severity::High) => Ok(Severity::High),
        Ok(pb::Severity::Critical) => Ok(Severity::Critical),
        Ok(pb::Severity::Unspecified) => Err(Invalid::new("", "is required")),
        Err(_) => Err(Invalid::new("", format!("`{value}` is not a severity"))),
    }
}

fn step(s: pb::Step) -> Result<Step, Invalid> {
    let kind = s.kind.parse().map_err(|e: Invalid| e.under("kind"))?;
    let target = s
        .target
        .ok_or_else(|| Invalid::new("target", "is required"))
        .and_then(|t| {
            Target::new(t.kind, t.id, t.attributes.into_iter().collect())
                .map_err(|e| e.under("target"))
        })?;
    Step::new(kind, target, s.params.into_iter().collect())
}

/// A duration as protobuf defines it: `nanos` within a second, no negative part.
fn duration(d: wkt::Duration) -> Result<Duration, Invalid> {
    if !(0..1_000_000_000).contains(&d.nanos) {
        return Err(Invalid::new(
            "nanos",
            format!("{} is not within 0..999999999", d.nanos),
        ));
    }
    let seconds =
        u64::try_from(d.seconds).map_err(|_| Invalid::new("seconds", "must not be negative"))?;
    Ok(Duration::new(seconds, d.nanos as u32))
}

pub fn pb_duration(d: Duration) -> wkt::Duration {
    if d.as_secs() > i64::MAX as u64 {
        return wkt::Duration {
            seconds: i64::MAX,
            nanos: 0,
        };
    }
    d.into()
}

pub fn timestamp(t: SystemTime) -> wkt::Timestamp {
    parapet_proto::time::timestamp(t)
}

/// The last second protobuf's `Timestamp` may name: 9999-12-31T23:59:59Z.
const LAST_SECOND: i64 = 253_402_300_799;

/// A time as protobuf defines it (`nanos` within a second, 1970 to 9999 here: Parapet has
/// nothing from before), so that no time computation on it can overflow.
pub fn system_time(t: wkt::Timestamp) -> Result<SystemTime, Invalid> {
    if !(0..1_000_000_000).contains(&t.nanos) {
        return Err(Invalid::new(
            "nanos",
            format!("{} is not within 0..999999999", t.nanos),
        ));
    }
    if !(0..=LAST_SECOND).contains(&t.seconds) {
        return Err(Invalid::new(
            "seconds",
            format!("{} is not between 1970 and 9999", t.seconds),
        ));
    }
    parapet_proto::time::system_time(&t).ok_or_else(|| Invalid::new("", "is not a valid timestamp"))
}

pub fn outcome(o: Outcome) -> pb::Outcome {
    match o {
        Outcome::Execute => pb::Outcome::Execute,
        Outcome::AwaitApproval => pb::Outcome::AwaitApproval,
        Outcome::Shadow => pb::Outcome::Shadow,
        Outcome::Deny => pb::Outcome::Deny,
    }
}

pub fn decision(d: &Decision) -> pb::Decision {
    pb::Decision {
        outcome: outcome(d.outcome).into(),
        reasons: d.reasons.iter().map(reason).collect(),
        policy_digest: d.policy_digest.clone(),
        retry_after: d.retry_after.map(pb_duration),
    }
}

fn reason(r: &Reason) -> pb::Reason {
    pb::Reason {
        guardrail: r.guardrail.clone(),
        effect: outcome(r.effect).into(),
        message: r.message.clone(),
        step: r.step,
    }
}

pub fn state(s: State) -> pb::IntentState {
    match s {
        State::Received => pb::IntentState::Received,
        State::Decided => pb::IntentState::Decided,
        State::AwaitingApproval => pb::IntentState::AwaitingApproval,
        State::Executing => pb::IntentState::Executing,
        State::Active => pb::IntentState::Active,
        State::Expiring => pb::IntentState::Expiring,
        State::RollingBack => pb::IntentState::RollingBack,
        State::RolledBack => pb::IntentState::RolledBack,
        State::Denied => pb::IntentState::Denied,
        State::Shadowed => pb::IntentState::Shadowed,
        State::Rejected => pb::IntentState::Rejected,
        State::Failed => pb::IntentState::Failed,
        State::RollbackFailed => pb::IntentState::RollbackFailed,
    }
}

/// The domain state a client's filter names; `None` for `UNSPECIFIED`.
pub fn state_filter(value: i32) -> Result<Option<State>, Invalid> {
    const ALL: [State; 13] = [
        State::Received,
        State::Decided,
        State::AwaitingApproval,
        State::Executing,
        State::Active,
        State::Expiring,
        State::RollingBack,
        State::RolledBack,
        State::Denied,
        State::Shadowed,
        State::Rejected,
        State::Failed,
        State::RollbackFailed,
    ];
    if value == 0 {
        return Ok(None);
    }
    ALL.into_iter()
        .find(|s| state(*s) as i32 == value)
        .map(Some)
        .ok_or_else(|| Invalid::new("", format!("`{value}` is not an intent state")))
}

fn step_state(s: StepState) -> pb::StepState {
    match s {
        StepState::Pending => pb::StepState::Pending,
        StepState::Executing => pb::StepState::Executing,
        StepState::Done => pb::StepState::Done,
        StepState::Failed => pb::StepState::Failed,
        StepState::RollingBack => pb::StepState::RollingBack,
        StepState::RolledBack => pb::StepState::RolledBack,
        StepState::RollbackFailed => pb::StepState::RollbackFailed,
    }
}

fn pb_severity(s: Severity) -> pb::Severity {
    match s {
        Severity::Informational => pb::Severity::Informational,
        Severity::Low => pb::Severity::Low,
        Severity::Medium => pb::Severity::Medium,
        Severity::High => pb::Severity::High,
        Severity::Critical => pb::Severity::Critical,
    }
}

fn pb_step(s: &Step) -> pb::Step {
    pb::Step {
        kind: s.kind.to_string(),
        target: Some(pb::Target {
            kind: s.target.kind.clone(),
            id: s.target.id.clone(),
            attributes: s.target.attributes.clone().into_iter().collect(),
        }),
        params: s.params.clone().into_iter().collect(),
    }
}

fn pb_detection(d: &Detection) -> pb::Detection {
    pb::Detection {
        rule_id: d.rule_id.clone(),
        severity: pb_severity(d.severity).into(),
        confidence: d.confidence.get(),
        title: d.title.clone(),
    }
}

pub fn intent(r: &IntentRecord) -> pb::Intent {
    let i: &Intent = &r.intent;
    pb::Intent {
        intent_id: i.id.to_string(),
        idempotency_key: i.idempotency_key.clone(),
        source: i.source.clone(),
        detection: Some(pb_detection(&i.detection)),
        steps: i.steps.iter().map(pb_step).collect(),
        ttl: i.ttl.map(pb_duration),
        reason: i.reason.clone(),
        decision: r.decision.as_ref().map(decision),
        state: state(r.state).into(),
        step_status: r
            .steps
            .iter()
            .map(|s| pb::StepStatus {
                state: step_state(s.state).into(),
                adapter: s.handle.as_ref().map(|h| h.acted_by()).unwrap_or_default(),
                error: s.error.clone().unwrap_or_default(),
            })
            .collect(),
        created_at: Some(timestamp(i.received_at)),
        updated_at: Some(timestamp(r.updated_at)),
        expires_at: r.expires_at.map(timestamp),
        error: r.error.clone().unwrap_or_default(),
        finding: i
            .finding
            .as_ref()
            .map(|f| f.as_json().to_owned())
            .unwrap_or_default(),
    }
}

pub fn journal_entry(Hashed { entry: e, hash }: &Hashed) -> pb::JournalEntry {
    pb::JournalEntry {
        seq: e.seq,
        time: Some(timestamp(e.time)),
        intent_id: e.intent_id.map(|id| id.to_string()).unwrap_or_default(),
        kind: e.event.kind().to_owned(),
        actor: e.actor.clone(),
        payload_json: payload_json(&e.event),
        hash: hex(hash),
        prev_hash: hex(&e.prev),
    }
}

/// The event's fields as a JSON object (without the variant name, which is `kind`).
fn payload_json(event: &crate::lifecycle::Event) -> String {
    match serde_json::to_value(event) {
        Ok(serde_json::Value::Object(map)) => map
            .into_iter()
            .next()
            .map(|(_, v)| v.to_string())
            .unwrap_or_else(|| "{}".into()),
        _ => "{}".into(),
    }
}

fn chain_point(seq: u64, hash: &Hash) -> pb::ChainPoint {
    pb::ChainPoint {
        seq,
        hash: hex(hash),
    }
}

pub fn verify_report(r: &Report) -> pb::VerifyJournalResponse {
    pb::VerifyJournalResponse {
        ok: r.ok(),
        anchor: Some(chain_point(r.anchor.seq, &r.anchor.hash)),
        head: Some(chain_point(r.head.0, &r.head.1)),
        entries: r.entries,
        checkpoints: r.checkpoints,
        breaks: r
            .problems
            .iter()
            .map(|p| pb::ChainBreak {
                seq: p.seq,
                kind: p.kind.as_str().to_owned(),
                detail: p.detail.clone(),
            })
            .collect(),
    }
}

/// A journal query from its request, each field checked.
pub fn journal_query(req: pb::QueryJournalRequest) -> Result<Query, Invalid> {
    let time = |t: Option<wkt::Timestamp>, field: &str| {
        t.map(|t| system_time(t).map_err(|e| e.under(field)))
            .transpose()
    };
    let text = |s: String| Some(s).filter(|s| !s.is_empty());
    let outcome = match pb::Outcome::try_from(req.outcome) {
        Ok(pb::Outcome::Unspecified) => None,
        Ok(pb::Outcome::Execute) => Some(Outcome::Execute),
        Ok(pb::Outcome::AwaitApproval) => Some(Outcome::AwaitApproval),
        Ok(pb::Outcome::Shadow) => Some(Outcome::Shadow),
        Ok(pb::Outcome::Deny) => Some(Outcome::Deny),
        Err(_) => {
            return Err(Invalid::new(
                "outcome",
                format!("{} is not an outcome", req.outcome),
            ));
        }
    };
    Ok(Query {
        intent: match text(req.intent_id) {
            Some(id) => Some(id.parse().map_err(|e: Invalid| e.under("intent_id"))?),
            None => None,
        },
        intents: crate::filter::IntentFilter {
            target: target(req.target)?,
            detection: text(req.detection),
            source: text(req.source),
            action_kind: text(req.action_kind),
            outcome,
            ..Default::default()
        },
        actor: text(req.actor),
        events: req.events,
        since: time(req.since, "since")?,
        until: time(req.until, "until")?,
        after_seq: req.after_seq,
        limit: match req.limit {
            0 => usize::MAX,
            n => n as usize,
        },
    })
}

/// A target to filter by: both kind and id, or nothing.
pub fn target(t: Option<pb::Target>) -> Result<Option<(String, String)>, Invalid> {
    match t {
        Some(t) if t.kind.is_empty() || t.id.is_empty() => {
            Err(Invalid::new("target", "needs both kind and id"))
        }
        Some(t) => Ok(Some((t.kind, t.id))),
        None => Ok(None),
    }
}

pub fn replay(r: &Replay, digest: &str) -> pb::ReplayPolicyResponse {
    pb::ReplayPolicyResponse {
        policy_digest: digest.to_owned(),
        decided: r.decided,
        outcomes: r
            .outcomes
            .iter()
            .map(|((before, after), n)| pb::OutcomeChange {
                before: outcome(*before).into(),
                after: outcome(*after).into(),
                intents: *n,
            })
            .collect(),
        changed: r
            .changed
            .iter()
            .map(|c| pb::ReplayedIntent {
                intent_id: c.intent.id.to_string(),
                seq: c.seq,
                source: c.intent.source.clone(),
                detection: Some(pb_detection(&c.intent.detection)),
                steps: c.intent.steps.iter().map(pb_step).collect(),
                before: Some(decision(&c.before)),
                after: Some(decision(&c.after)),
            })
            .collect(),
    }
}

fn text(s: &str) -> Option<String> {
    Some(s.to_owned()).filter(|s| !s.is_empty())
}

fn time(t: Option<wkt::Timestamp>, field: &str) -> Result<Option<SystemTime>, Invalid> {
    t.map(|t| system_time(t).map_err(|e| e.under(field)))
        .transpose()
}

/// What a listing selects.
pub fn intent_filter(req: &pb::ListIntentsRequest) -> Result<IntentFilter, Invalid> {
    let states = req
        .states
        .iter()
        .map(|s| state_filter(*s).map_err(|e| e.under("states")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(IntentFilter {
        states: states.into_iter().flatten().collect(),
        detection: text(&req.detection),
        source: text(&req.source),
        ..IntentFilter::default()
    })
}

/// What a bulk rollback selects.
pub fn selector(req: &pb::RollbackSelectedRequest) -> Result<IntentFilter, Invalid> {
    let action_kind = match text(&req.action_kind) {
        Some(k) => Some(
            k.parse::<parapet_model::ActionKind>()
                .map_err(|e| e.under("action_kind"))?
                .to_string(),
        ),
        None => None,
    };
    Ok(IntentFilter {
        detection: text(&req.detection),
        source: text(&req.source),
        action_kind,
        target: target(req.target.clone())?,
        received_since: time(req.since, "since")?,
        received_until: time(req.until, "until")?,
        ..IntentFilter::default()
    })
}

pub fn kill_switch(k: &KillSwitch) -> pb::KillSwitch {
    let reason = match &k.engaged_by.event {
        crate::lifecycle::Event::System(crate::lifecycle::SystemEvent::KillSwitch {
            reason,
            ..
        }) => reason.clone(),
        _ => String::new(),
    };
    pb::KillSwitch {
        action_kind: k.kind.as_ref().map(ToString::to_string).unwrap_or_default(),
        reason,
        engaged_by: k.engaged_by.actor.clone(),
        since: Some(timestamp(k.engaged_by.time)),
        seq: k.engaged_by.seq,
    }
}

pub fn status(s: &Status) -> pb::GetStatusResponse {
    use parapet_policy::rules::RateKey;
    let budgets = s
        .budgets
        .iter()
        .map(|row| pb::BudgetUsage {
            budget: row.budget.name.clone(),
            scope: row.budget.scope.clone(),
            scope_value: row.scope_value.clone(),
            active: row.active,
            max_active: row.budget.max_active,
            used_in_window: row.used_in_window,
            max_per_window: row.budget.max_per_window,
            window: row.budget.window.as_ref().map(|w| pb_duration(w.0)),
            max_active_from_percent: row.max_from_percent,
            utilisation: row.utilisation(),
        })
        .collect();
    let rate_limits = s
        .policy
        .rate_limits
        .iter()
        .map(|r| pb::RateLimitInfo {
            name: r.name.clone(),
            key: match r.key {
                RateKey::Source => "source",
                RateKey::Detection => "detection",
                RateKey::ActionKind => "action_kind",
            }
            .into(),
            max: r.max.get(),
            per: Some(pb_duration(r.per.0)),
            burst: r.burst.unwrap_or(r.max).get(),
        })
        .collect();
    pb::GetStatusResponse {
        policy_digest: s.policy.digest().to_owned(),
        kill_switches: s.kill_switches.iter().map(kill_switch).collect(),
        budgets,
        rate_limits,
        shadow: s.policy.shadow,
        demoted_detections: s.demoted_detections.clone(),
        active_by_kind: s.active_by_kind.clone().into_iter().collect(),
        pending_approvals: s.pending_approvals as u32,
        oldest_pending: s.oldest_pending.map(pb_duration),
        recent_errors: s.recent_errors.iter().map(journal_entry).collect(),
        adapters: s
            .adapters
            .iter()
            .map(|(name, kinds)| pb::AdapterInstance {
                name: name.clone(),
                kinds: kinds.iter().map(ToString::to_string).collect(),
            })
            .collect(),
        bouncers: s
            .bouncers
            .iter()
            .map(|(name, seen)| pb::BouncerState {
                name: name.clone(),
                last_pull: Some(timestamp(seen.last_pull)),
                version: seen.version.clone(),
                cursor: seen.cursor,
            })
            .collect(),
        refused_upstream: s.refused_upstream.iter().map(intent).collect(),
    }
}

pub fn compaction(c: Compaction) -> pb::CompactJournalResponse {
    pb::CompactJournalResponse {
        compacted: true,
        anchor: Some(pb::ChainPoint {
            seq: c.anchor.seq,
            hash: hex(&c.anchor.hash),
        }),
        entries: c.entries,
        intents: c.intents,
        bytes_before: c.bytes_before,
        bytes_after: c.bytes_after,
    }
}

/// What the guardrails found against acting (every reason that did not say `execute`), in one
/// line, for the front doors that answer a refusal in words.
pub fn objections(decision: &pb::Decision) -> String {
    decision
        .reasons
        .iter()
        .filter(|r| r.effect != pb::Outcome::Execute as i32)
        .map(|r| format!("{}: {}", r.guardrail, r.message))
        .collect::<Vec<_>>()
        .join("; ")
}
