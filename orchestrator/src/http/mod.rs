//! The HTTP front door: External Dynamic Lists for firewalls to poll, liveness, and metrics
//! for Prometheus to scrape, each a translation of a service operation.
//!
//! The lists may ask for a bearer token or Basic credentials (what PAN-OS, FortiGate and
//! Check Point can send), and `/metrics` for a token, or be served on an address of its own;
//! [`serve`] holds the listener to its limits.

pub mod serve;

use axum::{
    Router,
    extract::{Path, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use base64::Engine as _;

use crate::{
    error::Error,
    service::{
        Service,
        lists::{Credential, Scheme},
    },
};

/// The main listener's routes; `/metrics` among them unless it is served elsewhere.
pub fn router(service: Service, with_metrics: bool) -> Router {
    let mut router = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/edl", get(lists))
        .route("/edl/{name}", get(list));
    if with_metrics {
        router = router.route("/metrics", get(metrics));
    }
    router.with_state(service)
}

/// `/metrics` alone, for an address of its own.
pub fn metrics_router(service: Service) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(service)
}

/// The one mapping of Parapet's errors to HTTP answers.
fn failure(e: Error, scheme: Scheme) -> Response {
    if e.is_internal() {
        tracing::error!(error = %e, "request failed");
    }
    let status = match &e {
        Error::Invalid(_) => StatusCode::BAD_REQUEST,
        Error::Unauthenticated(_) => {
            let challenge = match scheme {
                Scheme::Basic => "Basic realm=\"parapet\", charset=\"UTF-8\"",
                Scheme::Bearer => "Bearer realm=\"parapet\"",
            };
            let body = format!("{e}\n");
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, challenge)],
                body,
            )
                .into_response();
        }
        Error::Forbidden(_) => StatusCode::FORBIDDEN,
        Error::NotFound { .. } => StatusCode::NOT_FOUND,
        Error::IdempotencyConflict { .. } => StatusCode::CONFLICT,
        Error::FailedPrecondition(_) | Error::Refused(_) => StatusCode::CONFLICT,
        Error::Exhausted(_) | Error::Lagged(_) => StatusCode::TOO_MANY_REQUESTS,
        Error::ShuttingDown | Error::Journal(_) | Error::Storage(_) => {
            StatusCode::SERVICE_UNAVAILABLE
        }
    };
    (status, format!("{e}\n")).into_response()
}

/// What a request's `Authorization` header presents, if anything readable.
fn credential(headers: &HeaderMap) -> Option<Credential> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    if let Some(token) = crate::auth::bearer(value) {
        return Some(Credential::Bearer(token.to_owned()));
    }
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some(Credential::Basic {
        user: user.to_owned(),
        password: password.to_owned(),
    })
}

async fn metrics(State(service): State<Service>, headers: HeaderMap) -> Response {
    match service.metrics(credential(&headers).as_ref()) {
        Ok(body) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(e) => failure(e, Scheme::Bearer),
    }
}

/// The names of the lists served, one per line.
async fn lists(State(service): State<Service>, headers: HeaderMap) -> Response {
    match service.list_names(credential(&headers).as_ref()) {
        Ok(names) => plain(names.join("\n") + "\n"),
        Err(e) => failure(e, service.list_scheme()),
    }
}

/// One list, one entry per line (`NAME` or `NAME.txt`).
async fn list(
    State(service): State<Service>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let name = name.strip_suffix(".txt").unwrap_or(&name);
    match service.list(credential(&headers).as_ref(), name) {
        Ok(body) => plain(body),
        Err(e) => failure(e, service.list_scheme()),
    }
}

fn plain(body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}
