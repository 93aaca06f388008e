//! The HTTP front door, each route a translation of a service operation:
//!
//! - [`api`]: the JSON API, every operation of `parapet.v1` (`/v1/...`), authenticated and
//!   authorized as gRPC is; [`schema`] reads query strings by the messages' descriptors;
//!   [`openapi`] describes it.
//! - External Dynamic Lists for firewalls to poll, liveness, and metrics for Prometheus to
//!   scrape. The lists may ask for a bearer token or Basic credentials (what PAN-OS, FortiGate
//!   and Check Point can send), and `/metrics` for a token, or be served on an address of its
//!   own.
//! - [`console`]: the operator console for people, under `/console/`.
//! - [`crowdsec`]: CrowdSec's Local API as bouncers use it (`/v1/decisions...`).
//! - [`intake`]: `POST /v1/ingest/{name}`, the webhooks SIEMs send.
//! - [`openc2`]: an OpenC2 consumer (SLPF) at `/.well-known/openc2`.
//! - `/mcp`: the MCP server for AI agents ([`crate::mcp`]).
//! - [`problem`]: every error as `application/problem+json`.
//! - [`serve`] holds the listener to its limits and speaks TLS when configured.

pub mod api;
pub mod console;
pub mod crowdsec;
pub mod intake;
pub mod openapi;
pub mod openc2;
pub mod problem;
pub mod schema;
pub mod serve;

use std::net::SocketAddr;

use axum::{
    Router,
    extract::{Path, State},
    http::{HeaderMap, header},
    response::{IntoResponse, Response},
    routing::get,
};
use base64::Engine as _;

use self::problem::Problem;
use crate::{
    error::Error,
    service::{
        Service,
        lists::{Credential, Scheme},
    },
};

/// The connection a request came on, which the listener puts in each request.
#[derive(Debug, Clone)]
pub struct Connection {
    pub peer: SocketAddr,
    /// The client certificate (DER) presented in the TLS handshake, if any.
    pub certificate: Option<Vec<u8>>,
    /// Whether the connection is TLS (cookies are then `Secure`).
    pub tls: bool,
}

/// The main listener's routes; `/metrics` among them unless it is served elsewhere.
pub fn router(front: api::Front, with_metrics: bool) -> Router {
    let service = front.service.clone();
    let mut router = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/edl", get(lists))
        .route("/edl/{name}", get(list));
    if with_metrics {
        router = router.route("/metrics", get(metrics));
    }
    router
        .with_state(service.clone())
        .merge(crowdsec::router(service))
        .route("/v1/openapi.json", get(openapi::serve))
        .route(
            "/v1/ingest/{name}",
            axum::routing::post(intake::ingest).with_state(front.clone()),
        )
        .route(
            "/.well-known/openc2",
            axum::routing::post(openc2::consume).with_state(front.clone()),
        )
        .merge(console::router(front.clone()))
        .merge(crate::mcp::router(front.clone()))
        .merge(api::router(front.clone()))
        .layer(axum::middleware::from_fn(browsers))
}

/// What the listener refuses of browsers, before any route: outside the console, which has
/// its own CSRF defence, a request a web page sends (an `Origin`, or a fetch from another
/// site) is refused, so a browser holding a client certificate cannot be made to call the
/// API. (Under `--insecure`, [`api::Front`] also wants a loopback `Host`.)
async fn browsers(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let headers = request.headers();
    let path = request.uri().path();
    if path != "/console" && !path.starts_with("/console/") {
        let site = headers
            .get("sec-fetch-site")
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if headers.contains_key(header::ORIGIN) || matches!(site, b"cross-site" | b"same-site") {
            let why = "a request from a web page is refused here: the API is for programs; \
                       people use the console at /console/";
            return Problem::from(Error::Forbidden(why.to_owned())).into_response();
        }
    }
    next.run(request).await
}

/// Whether a `Host` header names this machine: `localhost` (or a name under it), a
/// 127/8 address or `[::1]`, with any port.
pub fn loopback_host(host: &[u8]) -> bool {
    let Ok(host) = std::str::from_utf8(host) else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    let name = name.to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `/metrics` alone, for an address of its own.
pub fn metrics_router(service: Service) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(service)
}

fn failure(e: Error, scheme: Scheme) -> Response {
    Problem::from(e).challenge(scheme).into_response()
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

#[cfg(test)]
mod tests {
    use super::loopback_host;

    #[test]
    fn loopback_hosts_are_this_machines_names_only() {
        for host in [
            "localhost",
            "LOCALHOST:8080",
            "127.0.0.1:8080",
            "127.9.9.9",
            "[::1]:8080",
            "[::1]",
            "ui.localhost:80",
        ] {
            assert!(loopback_host(host.as_bytes()), "{host}");
        }
        for host in [
            "attacker.example",
            "attacker.example:8080",
            "localhost.attacker.example",
            "10.0.0.1:8080",
            "[2001:db8::1]:8080",
            "0.0.0.0",
            "",
        ] {
            assert!(!loopback_host(host.as_bytes()), "{host}");
        }
        assert!(!loopback_host(b"\xfflocalhost"));
    }
}
