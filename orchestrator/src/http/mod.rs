//! The HTTP listener: External Dynamic Lists for firewalls to poll, liveness, and metrics for
//! Prometheus to scrape.
//!
//! The lists may ask for a bearer token or Basic credentials (what PAN-OS, FortiGate and
//! Check Point can send), and `/metrics` for a token, or be served on an address of its own;
//! [`serve`] holds the listener to its limits.

pub mod serve;

use axum::{
    Router,
    extract::{Path, Request, State},
    http::{HeaderMap, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
};
use base64::Engine as _;
use sha2::{Digest, Sha256};
use std::sync::Arc;

use parapet_actions::edl::Edl;

use crate::telemetry::Telemetry;

/// A credential, kept as its SHA-256: compared by digest, never kept or logged in clear.
#[derive(Clone, PartialEq, Eq)]
pub struct Digest256([u8; 32]);

impl Digest256 {
    pub fn of(secret: &str) -> Self {
        Self(Sha256::digest(secret.as_bytes()).into())
    }
}

impl std::fmt::Debug for Digest256 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Digest256(..)")
    }
}

/// What a reader of the listener must present; open where nothing is set.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// The bearer token `/metrics` asks for.
    pub metrics_token: Option<Digest256>,
    /// The bearer token the lists accept.
    pub edl_token: Option<Digest256>,
    /// The Basic credentials the lists accept: user name and password.
    pub edl_basic: Option<(String, Digest256)>,
}

impl Access {
    /// The credentials the configuration names, read from their files.
    pub fn from_config(config: &crate::config::Config) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let read = |p: &std::path::Path| -> anyhow::Result<Digest256> {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read `{}`", p.display()))?;
            let secret = text.trim();
            anyhow::ensure!(!secret.is_empty(), "`{}` is empty", p.display());
            Ok(Digest256::of(secret))
        };
        let edl = &config.edl_access;
        Ok(Self {
            metrics_token: config
                .http
                .metrics_token_file
                .as_deref()
                .map(read)
                .transpose()?,
            edl_token: edl.token_file.as_deref().map(read).transpose()?,
            edl_basic: match (&edl.username, &edl.password_file) {
                (Some(user), Some(file)) => Some((user.clone(), read(file)?)),
                _ => None,
            },
        })
    }

    fn edl_open(&self) -> bool {
        self.edl_token.is_none() && self.edl_basic.is_none()
    }
}

/// The main listener's routes; `/metrics` among them unless it is served elsewhere.
pub fn router(
    edl: Edl,
    telemetry: Arc<Telemetry>,
    access: Arc<Access>,
    with_metrics: bool,
) -> Router {
    let lists = Router::new()
        .route("/edl", get(lists))
        .route("/edl/{name}", get(list))
        .with_state(edl)
        .layer(middleware::from_fn_with_state(access.clone(), edl_access));
    let mut router = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .merge(lists);
    if with_metrics {
        router = router.merge(metrics_router(telemetry, access));
    }
    router
}

/// `/metrics` alone, for the main listener or an address of its own.
pub fn metrics_router(telemetry: Arc<Telemetry>, access: Arc<Access>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(telemetry)
        .layer(middleware::from_fn_with_state(access, metrics_access))
}

/// The bearer token of a request, if it carries one.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// Basic credentials of a request, if it carries them: user name and password.
fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let encoded = headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

fn unauthorized(challenge: &'static str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, challenge)],
        "credentials required\n",
    )
        .into_response()
}

async fn edl_access(State(access): State<Arc<Access>>, req: Request, next: Next) -> Response {
    if access.edl_open() {
        return next.run(req).await;
    }
    let headers = req.headers();
    let by_token = access
        .edl_token
        .as_ref()
        .zip(bearer(headers))
        .is_some_and(|(want, got)| *want == Digest256::of(got));
    let by_basic = access
        .edl_basic
        .as_ref()
        .zip(basic(headers))
        .is_some_and(|((user, want), (u, p))| *user == u && *want == Digest256::of(&p));
    if by_token || by_basic {
        next.run(req).await
    } else if access.edl_basic.is_some() {
        unauthorized("Basic realm=\"parapet\", charset=\"UTF-8\"")
    } else {
        unauthorized("Bearer realm=\"parapet\"")
    }
}

async fn metrics_access(State(access): State<Arc<Access>>, req: Request, next: Next) -> Response {
    match &access.metrics_token {
        None => next.run(req).await,
        Some(want) if bearer(req.headers()).is_some_and(|got| *want == Digest256::of(got)) => {
            next.run(req).await
        }
        Some(_) => unauthorized("Bearer realm=\"parapet\""),
    }
}

/// Every metric in the Prometheus text format.
async fn metrics(State(t): State<Arc<Telemetry>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        t.render(),
    )
}

/// The names of the lists served, one per line.
async fn lists(State(edl): State<Edl>) -> impl IntoResponse {
    let mut body = edl.list_names().join("\n");
    body.push('\n');
    plain(body)
}

/// One list, one entry per line: what PAN-OS, FortiGate and Check Point expect.
async fn list(State(edl): State<Edl>, Path(name): Path<String>) -> impl IntoResponse {
    let name = name.strip_suffix(".txt").unwrap_or(&name);
    match edl.render(name) {
        Some(body) => plain(body).into_response(),
        None => (StatusCode::NOT_FOUND, format!("no list named `{name}`\n")).into_response(),
    }
}

fn plain(body: String) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
}
