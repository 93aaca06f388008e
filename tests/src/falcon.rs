//! A local stand-in for the CrowdStrike Falcon API (the vendor cloud cannot be reached from
//! the tests), speaking the documented requests and answers of the calls Parapet makes:
//! `POST /oauth2/token` (client credentials, form-encoded), `GET /devices/entities/devices/v2`,
//! `POST /devices/entities/devices-actions/v2?action_name=contain|lift_containment` with
//! `{"ids": [..]}`. Errors come as `{"errors": [{"code": .., "message": ".."}]}`; a rate limit as
//! 429 with `X-RateLimit-RetryAfter` (Unix seconds).

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    sync::Arc,
    time::{Duration, SystemTime},
};

use axum::{
    Form, Json, Router,
    extract::{Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use parking_lot::Mutex;
use serde_json::{Value, json};

pub const CLIENT_ID: &str = "parapet-test-client";
pub const CLIENT_SECRET: &str = "falcon-client-secret-do-not-log";

/// The fake's state, for tests to arrange and inspect.
#[derive(Default)]
pub struct FalconState {
    /// device id → `normal` or `contained`.
    pub devices: Mutex<BTreeMap<String, String>>,
    pub tokens: Mutex<BTreeSet<String>>,
    pub tokens_issued: Mutex<u32>,
    /// Answer this many action calls with 429 first.
    pub rate_limited: Mutex<u32>,
    /// Every action call, as `action_name device`.
    pub actions: Mutex<Vec<String>>,
}

pub struct FakeFalcon {
    pub addr: SocketAddr,
    pub state: Arc<FalconState>,
}

impl FakeFalcon {
    pub async fn start() -> Self {
        let state = Arc::new(FalconState::default());
        let app = Router::new()
            .route("/oauth2/token", post(token))
            .route("/devices/entities/devices/v2", get(device))
            .route("/devices/entities/devices-actions/v2", post(action))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, state }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn add_device(&self, id: &str, status: &str) {
        self.state
            .devices
            .lock()
            .insert(id.to_owned(), status.to_owned());
    }

    pub fn status(&self, id: &str) -> Option<String> {
        self.state.devices.lock().get(id).cloned()
    }

    /// Invalidates every token given so far, as an expiry would.
    pub fn revoke_tokens(&self) {
        self.state.tokens.lock().clear();
    }
}

fn errors(status: StatusCode, message: &str) -> Response {
    let body = json!({"meta": {}, "resources": [], "errors": [{"code": status.as_u16(), "message": message}]});
    (status, Json(body)).into_response()
}

async fn token(
    State(s): State<Arc<FalconState>>,
    Form(form): Form<BTreeMap<String, String>>,
) -> Response {
    let ok = form.get("client_id").map(String::as_str) == Some(CLIENT_ID)
        && form.get("client_secret").map(String::as_str) == Some(CLIENT_SECRET);
    if !ok {
        return errors(StatusCode::FORBIDDEN, "access denied, authorization failed");
    }
    let mut issued = s.tokens_issued.lock();
    *issued += 1;
    let token = format!("token-{}", *issued);
    s.tokens.lock().insert(token.clone());
    let body = json!({"access_token": token, "token_type": "bearer", "expires_in": 1799});
    (StatusCode::CREATED, Json(body)).into_response()
}

fn authorized(s: &FalconState, headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| s.tokens.lock().contains(t))
}

async fn device(
    State(s): State<Arc<FalconState>>,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    if !authorized(&s, &headers) {
        return errors(
            StatusCode::UNAUTHORIZED,
            "access denied, invalid bearer token",
        );
    }
    let id = q.get("ids").cloned().unwrap_or_default();
    match s.devices.lock().get(&id) {
        Some(status) => Json(
            json!({"meta": {}, "resources": [{"device_id": id, "status": status}], "errors": []}),
        )
        .into_response(),
        None => errors(StatusCode::NOT_FOUND, "Device not found"),
    }
}

async fn action(
    State(s): State<Arc<FalconState>>,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
    Json(body): Json<Value>,
) -> Response {
    if !authorized(&s, &headers) {
        return errors(
            StatusCode::UNAUTHORIZED,
            "access denied, invalid bearer token",
        );
    }
    {
        let mut limited = s.rate_limited.lock();
        if *limited > 0 {
            *limited -= 1;
            let at = SystemTime::now() + Duration::from_secs(1);
            let secs = at.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
            let mut resp = errors(StatusCode::TOO_MANY_REQUESTS, "API rate limit exceeded");
            resp.headers_mut()
                .insert("x-ratelimit-retryafter", secs.to_string().parse().unwrap());
            return resp;
        }
    }
    let name = q.get("action_name").cloned().unwrap_or_default();
    let status = match name.as_str() {
        "contain" => "contained",
        "lift_containment" => "normal",
        _ => return errors(StatusCode::BAD_REQUEST, "unknown action_name"),
    };
    let ids: Vec<String> = body["ids"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    let mut devices = s.devices.lock();
    if let Some(missing) = ids.iter().find(|id| !devices.contains_key(*id)) {
        return errors(
            StatusCode::NOT_FOUND,
            &format!("Device {missing} not found"),
        );
    }
    let mut resources = Vec::new();
    for id in &ids {
        devices.insert(id.clone(), status.to_owned());
        s.actions.lock().push(format!("{name} {id}"));
        resources.push(json!({"id": id, "path": ""}));
    }
    (
        StatusCode::ACCEPTED,
        Json(json!({"meta": {}, "resources": resources, "errors": []})),
    )
        .into_response()
}
