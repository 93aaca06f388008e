//! The console's pages. maud escapes every value it prints.

use std::{collections::HashMap, time::SystemTime};

use axum::http::StatusCode;
use maud::{DOCTYPE, Markup, html};

use super::Session;
use parapet_proto::v1 as pb;

use crate::{
    api::convert,
    lifecycle::IntentRecord,
    service::{Caller, Operation, verdicts::PrecisionRow},
};

fn who(caller: &Caller) -> String {
    match &caller.identity {
        Some(id) => {
            let roles: Vec<&str> = id.roles.iter().map(|r| r.as_str()).collect();
            format!("{} ({})", id.name, roles.join(", "))
        }
        None => "anyone on this machine".to_owned(),
    }
}

/// The first page a person's roles open.
pub fn home(caller: &Caller) -> &'static str {
    PAGES
        .iter()
        .find(|(_, _, op)| caller.may(*op).is_ok())
        .map_or("/console/status", |(href, _, _)| href)
}

/// The pages, and the operation each needs.
const PAGES: [(&str, &str, Operation); 5] = [
    ("/console/pending", "Pending", Operation::ListPending),
    ("/console/active", "Active", Operation::ListIntents),
    ("/console/journal", "Journal", Operation::QueryJournal),
    ("/console/status", "Status", Operation::GetStatus),
    ("/console/detections", "Detections", Operation::Precision),
];

/// Pages that follow the journal: their `main` is fetched again when something changes.
const LIVE: [&str; 2] = ["Pending approval", "Active actions"];

fn layout(title: &str, session: Option<&Session>, insecure: bool, body: Markup) -> Markup {
    let live = session.is_some() && LIVE.contains(&title);
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Parapet" }
                link rel="stylesheet" href="/console/console.css";
                link rel="icon" href="/console/favicon.svg" type="image/svg+xml";
                @if live { script src="/console/live.js" defer {} }
            }
            body {
                @if insecure {
                    div.banner role="alert" {
                        "Authentication is off (--insecure): anyone on this machine may act here."
                    }
                }
                header {
                    span.brand { "Parapet" }
                    @if let Some(s) = session {
                        nav aria-label="Pages" {
                            // only what the person's roles open
                            @for (href, label, op) in PAGES {
                                @if s.caller.may(op).is_ok() { a href=(href) { (label) } }
                            }
                        }
                        span.muted { "Signed in as " (who(&s.caller)) }
                        form method="post" action="/console/logout" {
                            input type="hidden" name="csrf" value=(s.csrf);
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main data-live[live] { h1 { (title) } (body) }
            }
        }
    }
}

pub fn login(error: Option<&str>) -> Markup {
    layout(
        "Sign in",
        None,
        false,
        html! {
            @if let Some(e) = error { p.error role="alert" { (e) } }
            form method="post" action="/console/login" {
                p {
                    label for="token" { "Token" } " "
                    input #token type="password" name="token" autocomplete="off" required;
                }
                p.muted { "A bearer token from Parapet's token file (parapet token create)." }
                button type="submit" { "Sign in" }
            }
        },
    )
}

pub fn error(caller: Option<&Caller>, code: StatusCode, message: &str) -> Markup {
    let who = caller.map(who).unwrap_or_default();
    layout(
        code.canonical_reason().unwrap_or("Error"),
        None,
        false,
        html! {
            p.error role="alert" { (message) }
            @if !who.is_empty() { p.muted { "Signed in as " (who) } }
            p { a href="/console/pending" { "Back to the pending intents" } }
        },
    )
}

fn ago(t: SystemTime) -> String {
    let secs = SystemTime::now()
        .duration_since(t)
        .map_or(0, |d| d.as_secs());
    humantime::format_duration(std::time::Duration::from_secs(secs)).to_string()
}

pub fn pending(
    s: &Session,
    intents: &[IntentRecord],
    may_answer: bool,
    notice: Option<&str>,
    insecure: bool,
) -> Markup {
    layout(
        "Pending approval",
        Some(s),
        insecure,
        html! {
            @if let Some(n) = notice { p.notice role="status" { (n) } }
            @if intents.is_empty() {
                p { "Nothing waits for approval." }
            } @else {
                table {
                    thead { tr {
                        th scope="col" { "Detection" }
                        th scope="col" { "Acts on" }
                        th scope="col" { "Why it waits" }
                        th scope="col" { "Waiting" }
                        @if may_answer { th scope="col" { "Answer" } }
                    } }
                    tbody {
                        @for r in intents {
                            @let id = r.intent.id.to_string();
                            @let decision = r.decision.as_ref().map(convert::decision);
                            tr {
                                td {
                                    strong { (r.intent.detection.rule_id) }
                                    br;
                                    span.muted { (r.intent.detection.title) }
                                    br;
                                    span.muted { "from " (r.intent.source) ", intent " (id) }
                                }
                                td {
                                    @for step in &r.intent.steps {
                                        (step.kind) " " (step.target.kind) ":" (step.target.id) br;
                                    }
                                }
                                td { (decision.as_ref().map(convert::objections).unwrap_or_default()) }
                                td { (ago(r.intent.received_at)) }
                                @if may_answer {
                                    td {
                                        @for (verb, label) in [("approve", "Approve"), ("reject", "Reject")] {
                                            form method="post" action={ "/console/intents/" (id) "/" (verb) } {
                                                input type="hidden" name="csrf" value=(s.csrf);
                                                label for={ (verb) "-" (id) } class="muted" { "Reason" }
                                                input id={ (verb) "-" (id) } type="text" name="reason" required;
                                                button type="submit" { (label) }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

fn left(until: Option<SystemTime>) -> String {
    match until {
        None => "no TTL".into(),
        Some(t) => t
            .duration_since(SystemTime::now())
            .map(|d| {
                humantime::format_duration(std::time::Duration::from_secs(d.as_secs())).to_string()
            })
            .unwrap_or_else(|_| "now".into()),
    }
}

fn csrf(s: &Session) -> Markup {
    html! { input type="hidden" name="csrf" value=(s.csrf); }
}

fn text_input(name: &str, label: &str, value: Option<&String>) -> Markup {
    let id = format!("f-{name}");
    html! {
        label for=(id) { (label) } " "
        input id=(id) type="text" name=(name) value=[value];
        " "
    }
}

pub fn active(
    s: &Session,
    intents: &[IntentRecord],
    fields: &HashMap<String, String>,
    selected: bool,
    may_roll_back: bool,
    notice: Option<&str>,
) -> Markup {
    layout(
        "Active actions",
        Some(s),
        s.caller.identity.is_none(),
        html! {
            @if let Some(n) = notice { p.notice role="status" { (n) } }
            form method="get" action="/console/active" role="search" {
                (text_input("detection", "Detection", fields.get("detection")))
                (text_input("source", "Source", fields.get("source")))
                (text_input("target", "Target", fields.get("target")))
                button type="submit" { "Select" }
            }
            @if selected && may_roll_back && !intents.is_empty() {
                form method="post" action="/console/rollback-selected" {
                    (csrf(s))
                    @for name in ["detection", "source", "target"] {
                        @if let Some(v) = fields.get(name) { input type="hidden" name=(name) value=(v); }
                    }
                    p.notice {
                        "These " strong { (intents.len()) } " intents would be rolled back. "
                        label for="bulk-reason" { "Reason" } " "
                        input #bulk-reason type="text" name="reason" required;
                        " "
                        button type="submit" { "Roll back these " (intents.len()) }
                    }
                }
            }
            @if intents.is_empty() {
                p { "Nothing is in force" @if selected { " that the selection names" } "." }
            } @else {
                table {
                    thead { tr {
                        th scope="col" { "Intent" }
                        th scope="col" { "Acts on" }
                        th scope="col" { "TTL left" }
                        @if may_roll_back { th scope="col" { "Roll back" } }
                    } }
                    tbody {
                        @for r in intents {
                            @let id = r.intent.id.to_string();
                            tr {
                                td {
                                    a href={ "/console/intents/" (id) } { (r.intent.detection.rule_id) }
                                    br; span.muted { "from " (r.intent.source) }
                                }
                                td { @for step in &r.intent.steps { (step.kind) " " (step.target.kind) ":" (step.target.id) br; } }
                                td { (left(r.expires_at)) }
                                @if may_roll_back {
                                    td {
                                        form method="post" action={ "/console/rollback/" (id) } {
                                            (csrf(s))
                                            label for={ "rb-" (id) } class="muted" { "Reason" }
                                            input id={ "rb-" (id) } type="text" name="reason" required;
                                            button type="submit" { "Roll back" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

pub fn bulk_done(s: &Session, op: &str, total: u32, done: u32, failed: &[String]) -> Markup {
    layout(
        "Bulk rollback",
        Some(s),
        s.caller.identity.is_none(),
        html! {
            p.notice role="status" {
                "Operation " (op) ": " (done) " of " (total) " intents dealt with, "
                (failed.len()) " failed."
            }
            @if !failed.is_empty() { ul { @for f in failed { li { (f) } } } }
            p { a href="/console/active" { "Back to the active actions" } }
        },
    )
}

pub fn intent(s: &Session, i: &pb::Intent, story: Option<&[pb::JournalEntry]>) -> Markup {
    let state = pb::IntentState::try_from(i.state).map_or("?", |s| s.as_str_name());
    let outcome = i
        .decision
        .as_ref()
        .and_then(|d| pb::Outcome::try_from(d.outcome).ok())
        .map_or("", |o| o.as_str_name());
    layout(
        &format!("Intent {}", i.intent_id),
        Some(s),
        s.caller.identity.is_none(),
        html! {
            dl {
                dt { "State" } dd { (state) }
                dt { "Detection" } dd { (i.detection.as_ref().map(|d| d.rule_id.as_str()).unwrap_or_default()) " — " (i.detection.as_ref().map(|d| d.title.as_str()).unwrap_or_default()) }
                dt { "Source" } dd { (i.source) }
                dt { "Steps" } dd { @for step in &i.steps { (step.kind) " " (step.target.as_ref().map(|t| format!("{}:{}", t.kind, t.id)).unwrap_or_default()) br; } }
                dt { "Decision" } dd { (outcome) }
                @if let Some(d) = &i.decision {
                    dt { "Reasons" } dd { ul { @for r in &d.reasons { li { (r.guardrail) ": " (r.message) } } } }
                    dt { "Policy" } dd { code { (d.policy_digest) } }
                }
                @if !i.error.is_empty() { dt { "Error" } dd { (i.error) } }
            }
            @match story {
                Some(entries) => {
                    h2 { "Its story, from the journal" }
                    table {
                        thead { tr { th scope="col" { "#" } th scope="col" { "Event" } th scope="col" { "Actor" } th scope="col" { "Details" } } }
                        tbody { @for e in entries { tr {
                            td { (e.seq) } td { (e.kind) } td { (e.actor) } td { code { (e.payload_json) } }
                        } } }
                    }
                }
                None => p.muted { "The journal's story of an intent is for auditors." }
            }
        },
    )
}

pub fn journal(
    s: &Session,
    fields: &HashMap<String, String>,
    entries: &[pb::JournalEntry],
    report: Option<&pb::VerifyJournalResponse>,
) -> Markup {
    let next: Option<String> = (entries.len() == 50).then(|| {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in fields.iter().filter(|(k, _)| *k != "after") {
            q.append_pair(k, v);
        }
        q.append_pair(
            "after",
            &entries.last().map(|e| e.seq).unwrap_or(0).to_string(),
        );
        q.finish()
    });
    let export = |format: &str| {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in fields.iter().filter(|(k, _)| *k != "after") {
            q.append_pair(k, v);
        }
        q.append_pair("format", format);
        format!("/console/journal/export?{}", q.finish())
    };
    layout(
        "Journal",
        Some(s),
        s.caller.identity.is_none(),
        html! {
            @if let Some(r) = report {
                @if r.ok {
                    p.notice role="status" { "The chain is intact: " (r.entries) " entries, head " (r.head.as_ref().map(|h| h.seq).unwrap_or(0)) "." }
                } @else {
                    p.error role="alert" { "The chain is broken: " @for b in &r.breaks { (b.seq) ": " (b.kind) " " (b.detail) "; " } }
                }
            }
            form method="get" action="/console/journal" role="search" {
                (text_input("target", "Target", fields.get("target")))
                (text_input("detection", "Detection", fields.get("detection")))
                (text_input("source", "Source", fields.get("source")))
                (text_input("actor", "Actor", fields.get("actor")))
                (text_input("outcome", "Outcome", fields.get("outcome")))
                (text_input("since", "Since", fields.get("since")))
                (text_input("until", "Until", fields.get("until")))
                button type="submit" { "Search" }
            }
            form method="post" action="/console/journal/verify" {
                (csrf(s))
                button type="submit" { "Verify the chain" }
                " " a href=(export("jsonl")) { "Export (JSON lines)" }
                " " a href=(export("ocsf")) { "Export (OCSF)" }
            }
            @if report.is_none() {
                table {
                    thead { tr { th scope="col" { "#" } th scope="col" { "Time" } th scope="col" { "Event" } th scope="col" { "Intent" } th scope="col" { "Actor" } } }
                    tbody { @for e in entries { tr {
                        td { (e.seq) }
                        td { (crate::http::console::pages::time(e.time.as_ref())) }
                        td { (e.kind) }
                        td { @if !e.intent_id.is_empty() { a href={ "/console/intents/" (e.intent_id) } { (e.intent_id) } } }
                        td { (e.actor) }
                    } } }
                }
                @if let Some(q) = next { p { a href={ "/console/journal?" (q) } { "Next page" } } }
            }
        },
    )
}

pub fn time(t: Option<&parapet_proto::wkt::Timestamp>) -> String {
    t.and_then(parapet_proto::time::system_time)
        .map(|t| humantime::format_rfc3339_seconds(t).to_string())
        .unwrap_or_default()
}

pub fn status(
    s: &Session,
    st: &pb::GetStatusResponse,
    policy: &parapet_policy::Policy,
    may_switch: bool,
    notice: Option<&str>,
) -> Markup {
    let now = SystemTime::now();
    let global = st.kill_switches.iter().any(|k| k.action_kind.is_empty());
    layout(
        "Status",
        Some(s),
        s.caller.identity.is_none(),
        html! {
            @if let Some(n) = notice { p.notice role="status" { (n) } }
            h2 { "Kill switch" }
            @if st.kill_switches.is_empty() {
                p { "No kill switch is engaged." }
            } @else {
                ul { @for k in &st.kill_switches {
                    li { strong { @if k.action_kind.is_empty() { "everything" } @else { (k.action_kind) } } " — " (k.reason) " (" (k.engaged_by) ")" }
                } }
            }
            @if may_switch {
                form method="post" action="/console/kill-switch" {
                    (csrf(s))
                    input type="hidden" name="engaged" value=(if global { "false" } else { "true" });
                    label for="ks-reason" { "Reason" } " "
                    input #ks-reason type="text" name="reason" required;
                    " "
                    button type="submit" { @if global { "Release the kill switch" } @else { "Engage the kill switch" } }
                }
            }
            h2 { "Budgets" }
            table {
                thead { tr { th scope="col" { "Budget" } th scope="col" { "Scope" } th scope="col" { "At once" } th scope="col" { "In its window" } th scope="col" { "Most used" } } }
                tbody { @for b in &st.budgets { tr {
                    td { (b.budget) }
                    td { (b.scope) @if !b.scope_value.is_empty() { "=" (b.scope_value) } }
                    td { (b.active) @if let Some(m) = b.max_active { " of " (m) } }
                    td {
                        @if let (Some(used), Some(max)) = (b.used_in_window, b.max_per_window) {
                            (used) " of " (max) " per " (b.window.map(|w| w.seconds / 60).unwrap_or(0)) " min"
                        }
                    }
                    td { @if let Some(u) = b.utilisation { (format!("{:.0}%", u * 100.0)) } }
                } } }
            }
            h2 { "Change freezes" }
            @if policy.freezes.is_empty() {
                p { "None in the policy." }
            } @else {
                ul { @for f in &policy.freezes {
                    li {
                        strong { (f.name) } ": "
                        (humantime::format_rfc3339_seconds(f.start)) " to " (humantime::format_rfc3339_seconds(f.end))
                        @if !f.action_kinds.is_empty() {
                            " (" (f.action_kinds.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")) ")"
                        }
                        @if f.start <= now && now < f.end { " — " strong { "in force now" } }
                    }
                } }
            }
            h2 { "Circuit breaker" }
            @match &policy.circuit_breaker {
                Some(b) => p {
                    "An action kind's kill switch engages itself when more than "
                    (format!("{:.0}%", b.max_failure_rate * 100.0)) " of at least " (b.min_calls)
                    " adapter calls within " (humantime::format_duration(b.window.0)) " fail; it shows above when it has."
                },
                None => p { "None in the policy." },
            }
            h2 { "Rate limits" }
            ul { @for r in &st.rate_limits { li { (r.name) ": " (r.max) " per " (r.per.map(|p| p.seconds).unwrap_or(0)) " s by " (r.key) } } }
            @if !st.demoted_detections.is_empty() {
                h2 { "Demoted detections" }
                p { (st.demoted_detections.join(", ")) }
            }
            h2 { "Adapters" }
            ul { @for a in &st.adapters { li { (a.name) ": " (a.kinds.join(", ")) } } }
            p.muted { "Policy " code { (st.policy_digest) } }
        },
    )
}

/// A detection earns a step up when people judged enough of what it did and it was right.
fn promotion(r: &PrecisionRow) -> &'static str {
    let judged = r.true_positives + r.false_positives;
    let precision = if judged == 0 {
        0.0
    } else {
        f64::from(r.true_positives) / f64::from(judged)
    };
    match r.tier {
        "shadow" if judged >= 20 && precision >= 0.95 => "earned approval",
        "approval" if judged >= 50 && precision >= 0.98 => "earned auto",
        _ if judged < 20 => "too few verdicts yet",
        _ => "stays",
    }
}

pub fn detections(
    s: &Session,
    rows: &[PrecisionRow],
    volumes: &std::collections::BTreeMap<String, crate::service::verdicts::Volume>,
) -> Markup {
    layout(
        "Detections",
        Some(s),
        s.caller.identity.is_none(),
        html! {
            h2 { "The last 30 days" }
            @if volumes.is_empty() {
                p { "No intents in the last 30 days." }
            } @else {
                table {
                    thead { tr {
                        th scope="col" { "Detection" } th scope="col" { "Intents" } th scope="col" { "Executed" }
                        th scope="col" { "Shadow" } th scope="col" { "Approval" } th scope="col" { "Denied" }
                    } }
                    tbody { @for (detection, v) in volumes { tr {
                        td { (detection) } td { (v.received) } td { (v.executed) }
                        td { (v.shadowed) } td { (v.awaiting_or_approved) } td { (v.denied) }
                    } } }
                }
            }
            h2 { "Verdicts" }
            @if rows.is_empty() {
                p { "No verdicts yet: judge intents (parapet verdict) to see precision here." }
            } @else {
                table {
                    thead { tr {
                        th scope="col" { "Detection" } th scope="col" { "Action" } th scope="col" { "Tier" }
                        th scope="col" { "True" } th scope="col" { "False" } th scope="col" { "Precision" } th scope="col" { "Promotion" }
                    } }
                    tbody { @for r in rows {
                        @let judged = r.true_positives + r.false_positives;
                        tr {
                            td { (r.detection) } td { (r.action_kind) } td { (r.tier) }
                            td { (r.true_positives) } td { (r.false_positives) }
                            td { @if judged > 0 { (format!("{:.0}%", 100.0 * f64::from(r.true_positives) / f64::from(judged))) } }
                            td { (promotion(r)) }
                        }
                    } }
                }
            }
        },
    )
}
