//! The HTTP listener: External Dynamic Lists for firewalls to poll, liveness, and metrics for
//! Prometheus to scrape.

use axum::{
    Router,
    extract::{Path, State},
    http::{StatusCode, header},
    response::IntoResponse,
    routing::get,
};
use std::sync::Arc;

use parapet_actions::edl::Edl;

use crate::telemetry::Telemetry;

pub fn router(edl: Edl, telemetry: Arc<Telemetry>) -> Router {
    let lists = Router::new()
        .route("/edl", get(lists))
        .route("/edl/{name}", get(list))
        .with_state(edl);
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .with_state(telemetry)
        .merge(lists)
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
