//! The console's pages. maud escapes every value it prints.

use std::time::SystemTime;

use axum::http::StatusCode;
use maud::{DOCTYPE, Markup, html};

use super::Session;
use crate::{api::convert, lifecycle::IntentRecord, service::Caller};

fn who(caller: &Caller) -> String {
    match &caller.identity {
        Some(id) => {
            let roles: Vec<&str> = id.roles.iter().map(|r| r.as_str()).collect();
            format!("{} ({})", id.name, roles.join(", "))
        }
        None => "anyone on this machine".to_owned(),
    }
}

fn layout(title: &str, session: Option<&Session>, insecure: bool, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Parapet" }
                link rel="stylesheet" href="/console/console.css";
                link rel="icon" href="/console/favicon.svg" type="image/svg+xml";
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
                            a href="/console/pending" { "Pending" }
                        }
                        span.muted { "Signed in as " (who(&s.caller)) }
                        form method="post" action="/console/logout" {
                            input type="hidden" name="csrf" value=(s.csrf);
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main { h1 { (title) } (body) }
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
