//! The console's pages beyond the pending approvals: active actions (one or a selection rolled
//! back), an intent's story, the journal, the status with the kill switch, the detections.

use std::collections::HashMap;

use axum::{
    body::Body,
    extract::{Path, Request, State},
    http::header,
    response::{IntoResponse, Redirect, Response},
};
use futures::StreamExt as _;
use parapet_proto::v1 as pb;

use super::{Console, error_page, pages, posted, session, with_cookie};
use crate::{
    api,
    error::Error,
    filter::IntentFilter,
    lifecycle::State as IntentState,
    service::{
        Change, Operation,
        intents::List,
        rollbacks::{Rollback, RollbackSelected},
    },
};

/// The query string's fields.
fn query(request: &Request) -> HashMap<String, String> {
    request
        .uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

fn field(fields: &HashMap<String, String>, name: &str) -> Option<String> {
    fields
        .get(name)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// The selection a form or a query names: detection, source, target (`kind:id` or an address).
pub(super) fn selection(fields: &HashMap<String, String>) -> IntentFilter {
    let target = field(fields, "target").map(|t| match t.split_once(':') {
        Some((kind, id)) if !kind.contains('.') && !kind.contains('/') && kind.len() < 32 => {
            (kind.to_owned(), id.to_owned())
        }
        _ => ("ip".to_owned(), t),
    });
    IntentFilter {
        states: vec![IntentState::Active],
        detection: field(fields, "detection"),
        source: field(fields, "source"),
        target,
        ..Default::default()
    }
}

/// Opens the page's session, or answers where to go instead.
macro_rules! signed_in {
    ($console:expr, $request:expr) => {{
        let conn = $request.extensions().get::<super::Connection>().cloned();
        match session(&$console, $request.headers(), conn.as_ref()) {
            Ok(s) => s,
            Err(to) => return *to,
        }
    }};
}

pub async fn active(State(console): State<Console>, request: Request) -> Response {
    let (s, cookie) = signed_in!(console, request);
    let fields = query(&request);
    let filter = selection(&fields);
    let selected = filter.detection.is_some() || filter.source.is_some() || filter.target.is_some();
    let list = List {
        filter,
        page_size: 1000,
        page_token: String::new(),
    };
    let page = match console.front.service.list_intents(&s.caller, &list) {
        Ok(page) => pages::active(
            &s,
            &page.intents,
            &fields,
            selected,
            s.caller.may(Operation::Rollback).is_ok(),
            field(&fields, "done").as_deref(),
        )
        .into_response(),
        Err(e) => error_page(&e, Some(&s)),
    };
    with_cookie(page, cookie)
}

pub async fn rollback(
    State(console): State<Console>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let (s, fields) = match posted(&console, request).await {
        Ok(p) => p,
        Err(to) => return *to,
    };
    let req = Rollback {
        intent_id: id,
        change: Change {
            reason: fields.get("reason").cloned().unwrap_or_default(),
            requested_by: String::new(),
        },
        wait: true,
    };
    match console.front.service.rollback(&s.caller, &req).await {
        Ok(done) => {
            let notice = format!(
                "rolled back {}: {}",
                done.record.intent.id,
                done.record.state.as_str()
            );
            let q: String = form_urlencoded::Serializer::new(String::new())
                .append_pair("done", &notice)
                .finish();
            Redirect::to(&format!("/console/active?{q}")).into_response()
        }
        Err(e) => error_page(&e, Some(&s)),
    }
}

pub async fn rollback_selected(State(console): State<Console>, request: Request) -> Response {
    let (s, fields) = match posted(&console, request).await {
        Ok(p) => p,
        Err(to) => return *to,
    };
    let req = RollbackSelected {
        filter: selection(&fields),
        change: Change {
            reason: fields.get("reason").cloned().unwrap_or_default(),
            requested_by: String::new(),
        },
        concurrency: 16,
    };
    match console
        .front
        .service
        .rollback_selected(&s.caller, &req)
        .await
    {
        Ok(bulk) => {
            // the operation goes on if the person goes away; this page waits for it
            let mut progress = bulk.progress;
            let (mut done, mut failed) = (0u32, Vec::new());
            while let Some(p) = progress.next().await {
                match p {
                    Ok(p) => {
                        done = done.max(p.done);
                        if let Some(e) = p.error {
                            failed.push(format!("{}: {e}", p.intent_id));
                        }
                    }
                    Err(e) => failed.push(e.to_string()),
                }
            }
            pages::bulk_done(&s, &bulk.operation_id, bulk.total, done, &failed).into_response()
        }
        Err(e) => error_page(&e, Some(&s)),
    }
}

pub async fn intent(
    State(console): State<Console>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let (s, cookie) = signed_in!(console, request);
    let service = &console.front.service;
    let record = match service.get_intent(&s.caller, &id) {
        Ok(r) => r,
        Err(e) => return with_cookie(error_page(&e, Some(&s)), cookie),
    };
    // the story is the journal's, for those who may read it
    let story = if s.caller.may(Operation::QueryJournal).is_ok() {
        let req = pb::QueryJournalRequest {
            intent_id: id.clone(),
            ..Default::default()
        };
        match api::journal::query(service, &s.caller, req) {
            Ok(entries) => Some(
                entries
                    .filter_map(|e| async { e.ok() })
                    .collect::<Vec<_>>()
                    .await,
            ),
            Err(e) => return with_cookie(error_page(&e, Some(&s)), cookie),
        }
    } else {
        None
    };
    with_cookie(
        pages::intent(&s, &api::convert::intent(&record), story.as_deref()).into_response(),
        cookie,
    )
}

/// The journal request a search form names.
fn journal_request(fields: &HashMap<String, String>) -> Result<pb::QueryJournalRequest, Error> {
    let time = |name: &str| -> Result<Option<parapet_proto::wkt::Timestamp>, Error> {
        match field(fields, name) {
            None => Ok(None),
            Some(t) => humantime::parse_rfc3339_weak(&t)
                .map(|t| Some(parapet_proto::time::timestamp(t)))
                .map_err(|_| {
                    Error::invalid(name, format!("`{t}` is not a time (2026-12-08 14:00)"))
                }),
        }
    };
    let outcome = match field(fields, "outcome").as_deref() {
        None => 0,
        Some(o) => pb::Outcome::from_str_name(&format!("OUTCOME_{}", o.to_ascii_uppercase()))
            .ok_or_else(|| Error::invalid("outcome", format!("`{o}` is not an outcome")))?
            as i32,
    };
    let target = field(fields, "target").map(|t| {
        let f = selection(fields);
        let (kind, id) = f.target.unwrap_or(("ip".into(), t));
        pb::Target {
            kind,
            id,
            attributes: Default::default(),
        }
    });
    Ok(pb::QueryJournalRequest {
        target,
        detection: field(fields, "detection").unwrap_or_default(),
        source: field(fields, "source").unwrap_or_default(),
        actor: field(fields, "actor").unwrap_or_default(),
        outcome,
        since: time("since")?,
        until: time("until")?,
        after_seq: field(fields, "after")
            .and_then(|a| a.parse().ok())
            .unwrap_or(0),
        limit: 50,
        ..Default::default()
    })
}

pub async fn journal(State(console): State<Console>, request: Request) -> Response {
    let (s, cookie) = signed_in!(console, request);
    let fields = query(&request);
    let entries = journal_request(&fields)
        .and_then(|req| api::journal::query(&console.front.service, &s.caller, req));
    let page = match entries {
        Ok(stream) => {
            let entries: Vec<_> = stream.filter_map(|e| async { e.ok() }).collect().await;
            pages::journal(&s, &fields, &entries, None).into_response()
        }
        Err(e) => error_page(&e, Some(&s)),
    };
    with_cookie(page, cookie)
}

pub async fn verify(State(console): State<Console>, request: Request) -> Response {
    let (s, _) = match posted(&console, request).await {
        Ok(p) => p,
        Err(to) => return *to,
    };
    let req = pb::VerifyJournalRequest::default();
    match api::journal::verify(&console.front.service, &s.caller, req).await {
        Ok(report) => pages::journal(&s, &HashMap::new(), &[], Some(&report)).into_response(),
        Err(e) => error_page(&e, Some(&s)),
    }
}

/// A selection of the journal as a download: JSON lines, or OCSF.
pub async fn export(State(console): State<Console>, request: Request) -> Response {
    let (s, _) = signed_in!(console, request);
    let fields = query(&request);
    let ocsf = fields.get("format").is_some_and(|f| f == "ocsf");
    let req = match journal_request(&fields) {
        Ok(mut q) => {
            q.limit = 0;
            pb::ExportJournalRequest {
                query: Some(q),
                format: if ocsf {
                    pb::ExportFormat::Ocsf
                } else {
                    pb::ExportFormat::Jsonl
                } as i32,
            }
        }
        Err(e) => return error_page(&e, Some(&s)),
    };
    match api::journal::export(&console.front.service, &s.caller, req) {
        Ok(lines) => {
            let body = lines.map(|l| {
                l.map(|e| format!("{}\n", e.json))
                    .map_err(|e| std::io::Error::other(e.to_string()))
            });
            let name = if ocsf {
                "journal.ocsf.jsonl"
            } else {
                "journal.jsonl"
            };
            (
                [
                    (header::CONTENT_TYPE, "application/x-ndjson".to_owned()),
                    (
                        header::CONTENT_DISPOSITION,
                        format!("attachment; filename=\"{name}\""),
                    ),
                ],
                Body::from_stream(body),
            )
                .into_response()
        }
        Err(e) => error_page(&e, Some(&s)),
    }
}

pub async fn status(State(console): State<Console>, request: Request) -> Response {
    let (s, cookie) = signed_in!(console, request);
    let done = field(&query(&request), "done");
    let page = match console.front.service.status(&s.caller) {
        Ok(domain) => pages::status(
            &s,
            &api::convert::status(&domain),
            &domain.policy,
            s.caller.may(Operation::SetKillSwitch).is_ok(),
            done.as_deref(),
        )
        .into_response(),
        Err(e) => error_page(&e, Some(&s)),
    };
    with_cookie(page, cookie)
}

pub async fn kill_switch(State(console): State<Console>, request: Request) -> Response {
    let (s, fields) = match posted(&console, request).await {
        Ok(p) => p,
        Err(to) => return *to,
    };
    let engaged = fields.get("engaged").is_some_and(|v| v == "true");
    let req = pb::SetKillSwitchRequest {
        action_kind: fields.get("action_kind").cloned().unwrap_or_default(),
        engaged,
        reason: fields.get("reason").cloned().unwrap_or_default(),
        requested_by: String::new(),
    };
    match api::admin::set_kill_switch(&console.front.service, &s.caller, req).await {
        Ok(_) => {
            let what = if engaged { "engaged" } else { "released" };
            Redirect::to(&format!("/console/status?done=kill+switch+{what}")).into_response()
        }
        Err(e) => error_page(&e, Some(&s)),
    }
}

pub async fn detections(State(console): State<Console>, request: Request) -> Response {
    let (s, cookie) = signed_in!(console, request);
    let service = &console.front.service;
    let since = std::time::SystemTime::now() - std::time::Duration::from_secs(30 * 24 * 3600);
    let page = match service
        .precision(&s.caller)
        .and_then(|rows| Ok((rows, service.volumes(&s.caller, since)?)))
    {
        Ok((rows, volumes)) => pages::detections(&s, &rows, &volumes).into_response(),
        Err(e) => error_page(&e, Some(&s)),
    };
    with_cookie(page, cookie)
}
