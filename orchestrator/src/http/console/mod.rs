//! The operator console under `/console/`: pages for people, on the same service and roles as
//! the APIs. Every action is a plain form (it works with JavaScript off); every page is
//! rendered on the server with maud, which escapes what it prints (titles and evidence come
//! from detections, that is from attackers).
//!
//! - Sign-in: a bearer token from the token file (`/console/login`), or the client
//!   certificate under mutual TLS, or nothing under `--insecure` on loopback (a banner says
//!   so). A session is a random id in an `HttpOnly`, `SameSite=Strict` cookie (`Secure` under
//!   TLS), kept in memory, expiring, ended by signing out. A detector cannot sign in.
//! - Every state-changing form carries the session's CSRF token; every answer carries a strict
//!   Content-Security-Policy (no script at all), `X-Frame-Options: DENY`, `nosniff`.
//!
//! Pages: pending approvals (approve, reject), active actions (roll back one, or a selection
//! after its preview), an intent's story, the journal (search, page, verify, export), the
//! status (kill switch), the detections (precision, and whether each has earned a promotion).

mod more;
mod pages;

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Bytes,
    extract::{Path, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use parking_lot::Mutex;

use super::{Connection, api::Front};
use crate::{
    error::Error,
    service::{Caller, Change, Operation, Role, approvals::Answer},
};

const COOKIE: &str = "parapet_session";
/// How long a session lasts from sign-in.
const SESSION: Duration = Duration::from_secs(8 * 3600);
/// Sessions kept at most; the oldest go first.
const MAX_SESSIONS: usize = 10_000;

/// One signed-in person.
#[derive(Clone)]
struct Session {
    caller: Caller,
    csrf: String,
    expires: Instant,
    /// The SHA-256 of the token signed in with: the session ends when the token does.
    token: Option<[u8; 32]>,
}

#[derive(Default)]
pub struct Sessions(Mutex<HashMap<String, Session>>);

impl Sessions {
    fn open(&self, caller: Caller, token: Option<[u8; 32]>) -> (String, Session) {
        let session = Session {
            caller,
            csrf: random(),
            expires: Instant::now() + SESSION,
            token,
        };
        let id = random();
        let mut map = self.0.lock();
        let now = Instant::now();
        map.retain(|_, s| s.expires > now);
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        map.insert(id.clone(), session.clone());
        (id, session)
    }

    /// A session in force: not expired, and signed in with a token still in the token file.
    fn get(&self, id: &str, auth: &crate::auth::Authenticator) -> Option<Session> {
        let mut map = self.0.lock();
        let session = map.get(id).filter(|s| s.expires > Instant::now())?;
        if session.token.is_some_and(|t| !auth.holds_token(&t)) {
            map.remove(id);
            return None;
        }
        Some(session.clone())
    }

    fn close(&self, id: &str) {
        self.0.lock().remove(id);
    }
}

fn random() -> String {
    let mut bytes = [0u8; 32];
    // without randomness no session can be safe: refuse them all
    if getrandom::fill(&mut bytes).is_err() {
        return String::new();
    }
    hex::encode(bytes)
}

#[derive(Clone)]
pub struct Console {
    front: Front,
    sessions: Arc<Sessions>,
}

pub fn router(front: Front) -> Router {
    let console = Console {
        front,
        sessions: Arc::new(Sessions::default()),
    };
    Router::new()
        .route("/console", get(|| async { Redirect::to("/console/") }))
        .route("/console/", get(start))
        .route("/console/login", get(login_form).post(login))
        .route("/console/logout", post(logout))
        .route("/console/pending", get(pending))
        .route("/console/intents/{id}/{verb}", post(answer))
        .route("/console/intents/{id}", get(more::intent))
        .route("/console/active", get(more::active))
        .route("/console/rollback/{id}", post(more::rollback))
        .route("/console/rollback-selected", post(more::rollback_selected))
        .route("/console/journal", get(more::journal))
        .route("/console/journal/verify", post(more::verify))
        .route("/console/journal/export", get(more::export))
        .route("/console/status", get(more::status))
        .route("/console/kill-switch", post(more::kill_switch))
        .route("/console/detections", get(more::detections))
        .route("/console/console.css", get(css))
        .route("/console/favicon.svg", get(favicon))
        .route("/console/live.js", get(live_js))
        .route("/console/events", get(events))
        .layer(middleware::from_fn(headers))
        .with_state(console)
}

/// The headers every console answer carries.
async fn headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; \
             img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn css() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("console.css"),
    )
        .into_response()
}

async fn live_js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("live.js"),
    )
        .into_response()
}

/// Server-sent events: one `change` per journaled change of an intent the person may read,
/// while the page is open (a watch, bounded per person as any other).
async fn events(State(console): State<Console>, request: Request) -> Response {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use futures::StreamExt as _;
    let conn = request.extensions().get::<Connection>().cloned();
    let (s, _) = match session(&console, request.headers(), conn.as_ref()) {
        Ok(s) => s,
        Err(_) => return StatusCode::UNAUTHORIZED.into_response(),
    };
    match console.front.service.watch(&s.caller, "") {
        Ok(changes) => {
            let events = changes.map(|c| {
                let data = match c {
                    Ok(c) => serde_json::json!({
                        "intent": c.record.intent.id.to_string(),
                        "state": c.record.state.as_str(),
                        "event": c.event,
                    }),
                    Err(e) => serde_json::json!({ "error": e.to_string() }),
                };
                Ok::<_, std::convert::Infallible>(
                    Event::default().event("change").data(data.to_string()),
                )
            });
            Sse::new(events)
                .keep_alive(KeepAlive::default())
                .into_response()
        }
        Err(e) => error_page(&e, Some(&s)),
    }
}

async fn favicon() -> Response {
    (
        [(header::CONTENT_TYPE, "image/svg+xml")],
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><path d="M2 14V6h2V3h2v3h4V3h2v3h2v8z" fill="#0b57d0"/></svg>"##,
    )
        .into_response()
}

fn cookie_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_owned())
}

fn set_cookie(id: &str, tls: bool, max_age: u64) -> HeaderValue {
    let secure = if tls { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}={id}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Who may use the console: anyone the service knows but a detector alone.
fn admitted(caller: &Caller) -> Result<(), Error> {
    match &caller.identity {
        Some(id) if id.roles.iter().all(|r| *r == Role::Detector) => Err(Error::Forbidden(
            format!("`{}` is a detector: the console is for people", id.name),
        )),
        _ => Ok(()),
    }
}

/// The page's session: the cookie's, or (with a client certificate, or without authentication
/// under `--insecure`) one opened now. `Err` is where to send the visitor.
fn session(
    console: &Console,
    headers: &HeaderMap,
    conn: Option<&Connection>,
) -> Result<(Session, Option<HeaderValue>), Box<Response>> {
    if let Some(s) =
        cookie_of(headers).and_then(|id| console.sessions.get(&id, &console.front.auth))
    {
        return Ok((s, None));
    }
    // a certificate, or no authentication at all, needs no form; anyone else is sent to it
    // without a refusal journaled for merely arriving
    let has_certificate = conn.is_some_and(|c| c.certificate.is_some());
    let by_connection = if has_certificate || console.front.auth.is_insecure() {
        console
            .front
            .identify(&host_only(headers), conn, "console")
            .ok()
    } else {
        None
    };
    match by_connection {
        Some(caller) => {
            if let Err(e) = admitted(&caller) {
                return Err(Box::new(error_page(&e, None)));
            }
            let (id, s) = console.sessions.open(caller, None);
            let tls = conn.is_some_and(|c| c.tls);
            Ok((s, Some(set_cookie(&id, tls, SESSION.as_secs()))))
        }
        None => Err(Box::new(Redirect::to("/console/login").into_response())),
    }
}

fn with_cookie(mut response: Response, cookie: Option<HeaderValue>) -> Response {
    if let Some(c) = cookie {
        response.headers_mut().insert(header::SET_COOKIE, c);
    }
    response
}

fn error_page(e: &Error, session: Option<&Session>) -> Response {
    if e.is_internal() {
        tracing::error!(error = %e, "console request failed");
    }
    let code = super::problem::status_of(e);
    let who = session.map(|s| &s.caller);
    (code, pages::error(who, code, &e.to_string())).into_response()
}

/// The first page the person may open.
async fn start(State(console): State<Console>, request: Request) -> Response {
    let conn = request.extensions().get::<Connection>().cloned();
    match session(&console, request.headers(), conn.as_ref()) {
        Ok((s, cookie)) => {
            with_cookie(Redirect::to(pages::home(&s.caller)).into_response(), cookie)
        }
        Err(to) => *to,
    }
}

async fn login_form(State(console): State<Console>, request: Request) -> Response {
    let conn = request.extensions().get::<Connection>().cloned();
    // already in: nothing to sign in to
    if let Ok((s, _)) = session(&console, request.headers(), conn.as_ref()) {
        return Redirect::to(pages::home(&s.caller)).into_response();
    }
    pages::login(None).into_response()
}

/// A request's `Host` alone: what the connection and a presented token are identified with,
/// never a bearer token the browser might carry.
fn host_only(headers: &HeaderMap) -> HeaderMap {
    let mut only = HeaderMap::new();
    if let Some(host) = headers.get(header::HOST) {
        only.insert(header::HOST, host.clone());
    }
    only
}

/// The form's fields.
fn form(body: &Bytes) -> HashMap<String, String> {
    form_urlencoded::parse(body).into_owned().collect()
}

async fn login(State(console): State<Console>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let conn = parts.extensions.get::<Connection>().cloned();
    let Ok(body) = super::api::read_body(body).await else {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    let fields = form(&body);
    let token = fields.get("token").map(|t| t.trim()).unwrap_or_default();
    let mut presented = host_only(&parts.headers);
    if let Ok(v) = HeaderValue::from_str(&format!("Bearer {token}")) {
        presented.insert(header::AUTHORIZATION, v);
    }
    let caller = console
        .front
        .identify(&presented, conn.as_ref(), "POST /console/login")
        .and_then(|c| admitted(&c).map(|()| c));
    match caller {
        Ok(caller) => {
            let home = pages::home(&caller);
            let signed_in_with = crate::auth::token_hash(token);
            let (id, _) = console.sessions.open(caller, Some(signed_in_with));
            let tls = conn.is_some_and(|c| c.tls);
            with_cookie(
                Redirect::to(home).into_response(),
                Some(set_cookie(&id, tls, SESSION.as_secs())),
            )
        }
        // the form again, saying why (a page, not an HTTP error: a browser reports those)
        Err(e) => pages::login(Some(&e.to_string())).into_response(),
    }
}

async fn logout(State(console): State<Console>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = super::api::read_body(body).await.unwrap_or_default();
    if let Some(id) = cookie_of(&parts.headers)
        && let Some(s) = console.sessions.get(&id, &console.front.auth)
        && csrf_ok(&s, &form(&body))
    {
        console.sessions.close(&id);
    }
    let tls = parts.extensions.get::<Connection>().is_some_and(|c| c.tls);
    with_cookie(
        Redirect::to("/console/login").into_response(),
        Some(set_cookie("", tls, 0)),
    )
}

fn csrf_ok(session: &Session, fields: &HashMap<String, String>) -> bool {
    use subtle::ConstantTimeEq as _;
    let given = fields.get("csrf").map(String::as_str).unwrap_or_default();
    !session.csrf.is_empty() && bool::from(given.as_bytes().ct_eq(session.csrf.as_bytes()))
}

async fn pending(State(console): State<Console>, request: Request) -> Response {
    let conn = request.extensions().get::<Connection>().cloned();
    let (s, cookie) = match session(&console, request.headers(), conn.as_ref()) {
        Ok(s) => s,
        Err(to) => return *to,
    };
    let notice = request.uri().query().and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "done")
            .map(|(_, v)| v.into_owned())
    });
    let page = match console.front.service.list_pending(&s.caller) {
        Ok(intents) => {
            let may_answer = s.caller.may(Operation::Approve).is_ok();
            pages::pending(&s, &intents, may_answer, notice.as_deref(), insecure(&s))
                .into_response()
        }
        Err(e) => error_page(&e, Some(&s)),
    };
    with_cookie(page, cookie)
}

fn insecure(s: &Session) -> bool {
    s.caller.identity.is_none()
}

/// A posted form's session and fields, its CSRF token checked; else where to answer.
async fn posted(
    console: &Console,
    request: Request,
) -> Result<(Session, HashMap<String, String>), Box<Response>> {
    let (parts, body) = request.into_parts();
    let Some(s) =
        cookie_of(&parts.headers).and_then(|c| console.sessions.get(&c, &console.front.auth))
    else {
        return Err(Box::new(Redirect::to("/console/login").into_response()));
    };
    let Ok(body) = super::api::read_body(body).await else {
        return Err(Box::new(StatusCode::PAYLOAD_TOO_LARGE.into_response()));
    };
    let fields = form(&body);
    if !csrf_ok(&s, &fields) {
        let e =
            Error::Forbidden("the form's CSRF token is missing or wrong; reload the page".into());
        return Err(Box::new(error_page(&e, Some(&s))));
    }
    Ok((s, fields))
}

async fn answer(
    State(console): State<Console>,
    Path((id, verb)): Path<(String, String)>,
    request: Request,
) -> Response {
    let (s, fields) = match posted(&console, request).await {
        Ok(p) => p,
        Err(to) => return *to,
    };
    let req = Answer {
        intent_id: id.clone(),
        change: Change {
            reason: fields.get("reason").cloned().unwrap_or_default(),
            requested_by: String::new(),
        },
    };
    let done = match verb.as_str() {
        "approve" => console.front.service.approve(&s.caller, &req).await,
        "reject" => console.front.service.reject(&s.caller, &req).await,
        _ => Err(Error::NotFound {
            what: "action",
            name: verb.clone(),
        }),
    };
    match done {
        Ok(record) => {
            let done = if verb == "approve" {
                "approved"
            } else {
                "rejected"
            };
            let notice = format!("{done} {}: {}", record.intent.id, record.state.as_str());
            let query: String = form_urlencoded::Serializer::new(String::new())
                .append_pair("done", &notice)
                .finish();
            Redirect::to(&format!("/console/pending?{query}")).into_response()
        }
        Err(e) => error_page(&e, Some(&s)),
    }
}
