//! CrowdSec's Local API as its bouncers use it, so an existing bouncer (firewall, nginx,
//! HAProxy, a custom script) enforces Parapet's blocks unchanged: its `api_url` points here,
//! its key (from `parapet bouncer add`) goes in `X-Api-Key`.
//!
//! - `GET /v1/decisions/stream?startup=true|false`: `{"new": [...], "deleted": [...]}`, each
//!   change once per bouncer ([`crate::service::bouncers`]); `scopes`, `origins`,
//!   `scenarios_containing` and `scenarios_not_containing` narrow it as LAPI's do.
//! - `GET /v1/decisions` with `ip`, `range`, `scope`, `value`, `type`: a list, or `null` when
//!   nothing matches, as LAPI answers.
//! - `POST /v1/usage-metrics`: what newer bouncers report; accepted and let go.
//!
//! An unknown or missing key is 403 `{"message": "access forbidden"}`, as LAPI answers it.

use std::time::{Duration, SystemTime};

use axum::{
    Router,
    extract::{Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use ipnet::IpNet;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    error::Error,
    service::{
        Service,
        bouncers::Bouncer,
        decisions::{Changes, Decision},
    },
};

/// A decision without a TTL is announced for this long: bouncers need a duration, and set
/// their own timeouts from it.
const NO_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

pub fn router(service: Service) -> Router {
    Router::new()
        .route("/v1/decisions/stream", get(stream))
        .route("/v1/decisions", get(decisions))
        .route("/v1/usage-metrics", post(usage_metrics))
        .with_state(service)
}

fn forbidden() -> Response {
    (
        StatusCode::FORBIDDEN,
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"message":"access forbidden"}"#,
    )
        .into_response()
}

fn failure(e: Error) -> Response {
    match e {
        Error::Forbidden(_) | Error::Unauthenticated(_) => forbidden(),
        e => {
            tracing::error!(error = %e, "decision stream failed");
            let body = json!({ "message": e.to_string() }).to_string();
            (StatusCode::INTERNAL_SERVER_ERROR, body).into_response()
        }
    }
}

/// The bouncer a request's key names; a wrong key is counted (`cause="bouncer_key"`), as a
/// guessed one would be.
fn identify(service: &Service, headers: &HeaderMap) -> Result<std::sync::Arc<Bouncer>, Error> {
    let key = headers.get("x-api-key").and_then(|v| v.to_str().ok());
    service
        .bouncer(key)
        .inspect_err(|e| service.count_refused(e.code(), "bouncer_key"))
}

#[derive(Debug, Default, Deserialize)]
struct StreamQuery {
    startup: Option<String>,
    /// Comma-separated, as go-cs-bouncer sends them.
    scopes: Option<String>,
    origins: Option<String>,
    scenarios_containing: Option<String>,
    scenarios_not_containing: Option<String>,
}

async fn stream(
    State(service): State<Service>,
    headers: HeaderMap,
    Query(q): Query<StreamQuery>,
) -> Response {
    let bouncer = match identify(&service, &headers) {
        Ok(b) => b,
        Err(_) => return forbidden(),
    };
    let startup = q.startup.as_deref() == Some("true");
    let version = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let pulled =
        tokio::task::spawn_blocking(move || service.bouncer_pull(&bouncer, startup, &version))
            .await;
    let changes = match pulled {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return failure(e),
        Err(e) => return failure(Error::Storage(std::io::Error::other(e))),
    };
    let keep = |d: &&Decision| wanted(&q, d);
    let Changes { new, deleted, .. } = changes;
    let now = SystemTime::now();
    let list = |ds: &[Decision], gone: bool| -> Value {
        let out: Vec<Value> = ds
            .iter()
            .filter(keep)
            .map(|d| decision(d, now, gone))
            .collect();
        if out.is_empty() {
            Value::Null
        } else {
            Value::Array(out)
        }
    };
    json_response(json!({ "new": list(&new, false), "deleted": list(&deleted, true) }))
}

/// Whether the stream's filters let a decision through.
fn wanted(q: &StreamQuery, d: &Decision) -> bool {
    let words = |s: &Option<String>| -> Vec<String> {
        s.as_deref()
            .unwrap_or_default()
            .split(',')
            .map(|w| w.trim().to_lowercase())
            .filter(|w| !w.is_empty())
            .collect()
    };
    let scopes = words(&q.scopes);
    if !scopes.is_empty() && !scopes.iter().any(|s| s == &scope(&d.net).to_lowercase()) {
        return false;
    }
    let origins = words(&q.origins);
    if !origins.is_empty() && !origins.iter().any(|o| o == "parapet") {
        return false;
    }
    let scenario = d.scenario.to_lowercase();
    let containing = words(&q.scenarios_containing);
    if !containing.is_empty() && !containing.iter().any(|c| scenario.contains(c)) {
        return false;
    }
    !words(&q.scenarios_not_containing)
        .iter()
        .any(|c| scenario.contains(c))
}

#[derive(Debug, Default, Deserialize)]
struct DecisionsQuery {
    ip: Option<String>,
    range: Option<String>,
    scope: Option<String>,
    value: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

async fn decisions(
    State(service): State<Service>,
    headers: HeaderMap,
    Query(q): Query<DecisionsQuery>,
) -> Response {
    let bouncer = match identify(&service, &headers) {
        Ok(b) => b,
        Err(_) => return forbidden(),
    };
    let parse = |text: &Option<String>, what: &str| -> Result<Option<IpNet>, String> {
        match text {
            None => Ok(None),
            Some(t) => parapet_model::address::Address::parse(t)
                .map(|a| Some(a.net()))
                .map_err(|e| format!("{what}: {e}")),
        }
    };
    let (ip, range) = match (parse(&q.ip, "ip"), parse(&q.range, "range")) {
        (Ok(ip), Ok(range)) => (ip, range),
        (Err(e), _) | (_, Err(e)) => {
            let body = json!({ "message": e }).to_string();
            return (StatusCode::BAD_REQUEST, body).into_response();
        }
    };
    let all = match tokio::task::spawn_blocking(move || service.bouncer_decisions(&bouncer)).await {
        Ok(Ok(all)) => all,
        Ok(Err(e)) => return failure(e),
        Err(e) => return failure(Error::Storage(std::io::Error::other(e))),
    };
    let now = SystemTime::now();
    let matching: Vec<Value> = all
        .iter()
        .filter(|d| ip.is_none_or(|ip| d.net.contains(&ip)))
        .filter(|d| range.is_none_or(|r| d.net.contains(&r)))
        .filter(|d| {
            q.scope
                .as_deref()
                .is_none_or(|s| s.eq_ignore_ascii_case(scope(&d.net)))
        })
        .filter(|d| q.value.as_deref().is_none_or(|v| v == value(&d.net)))
        .filter(|_| q.kind.as_deref().is_none_or(|t| t == "ban"))
        .map(|d| decision(d, now, false))
        .collect();
    json_response(if matching.is_empty() {
        Value::Null
    } else {
        Value::Array(matching)
    })
}

async fn usage_metrics(State(service): State<Service>, headers: HeaderMap) -> Response {
    match identify(&service, &headers) {
        Ok(_) => StatusCode::CREATED.into_response(),
        Err(_) => forbidden(),
    }
}

fn json_response(v: Value) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], v.to_string()).into_response()
}

fn scope(net: &IpNet) -> &'static str {
    if net.prefix_len() == net.max_prefix_len() {
        "Ip"
    } else {
        "Range"
    }
}

fn value(net: &IpNet) -> String {
    if net.prefix_len() == net.max_prefix_len() {
        net.addr().to_string()
    } else {
        net.to_string()
    }
}

/// A decision as LAPI writes it; a deleted one has no time left.
fn decision(d: &Decision, now: SystemTime, gone: bool) -> Value {
    let left = match d.until {
        _ if gone => Duration::ZERO,
        Some(until) => until
            .duration_since(now)
            .unwrap_or_default()
            .max(Duration::from_secs(1)),
        None => NO_TTL,
    };
    let mut v = json!({
        "id": d.id,
        "origin": "parapet",
        "type": "ban",
        "scope": scope(&d.net),
        "value": value(&d.net),
        "duration": go_duration(left),
        "scenario": d.scenario,
        "simulated": false,
    });
    if let Some(until) = d.until {
        v["until"] = humantime::format_rfc3339_seconds(until).to_string().into();
    }
    v
}

/// A duration as Go writes and reads them: `3h59m58s`.
fn go_duration(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}h{}m{}s", s / 3600, s / 60 % 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_go_reads_them() {
        assert_eq!(go_duration(Duration::from_secs(4 * 3600 - 2)), "3h59m58s");
        assert_eq!(go_duration(Duration::from_secs(59)), "0h0m59s");
        assert_eq!(go_duration(NO_TTL), "8760h0m0s");
    }
}
