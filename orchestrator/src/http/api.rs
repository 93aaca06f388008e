//! The JSON API: every operation of `parapet.v1` on a route of its own, in the style of
//! `google.api.http` annotations, speaking the proto3 JSON mapping of the same messages
//! (`grpcurl`'s field names). Each route decodes its request message (from the body, or for
//! a `GET` from the query string), calls the same [`crate::api`] function the gRPC method
//! calls, and encodes the answer; a stream is NDJSON, one message per line.
//!
//! [`routes`] is the one table: the router is built from it, and so is the OpenAPI document.

use std::{pin::Pin, sync::Arc};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
    routing::any,
};
use futures::{StreamExt as _, future::BoxFuture};
use parapet_proto::v1 as pb;
use serde::{Serialize, de::DeserializeOwned};

use super::{Connection, problem::Problem, schema::SCHEMA};
use crate::{
    api,
    auth::Authenticator,
    error::Error,
    service::{Answers, Caller, Operation, Service},
};

/// What the API routes share: the operations, and how callers are recognised.
#[derive(Clone)]
pub struct Front {
    pub service: Service,
    pub auth: Arc<Authenticator>,
    pub intakes: Arc<super::intake::Intakes>,
    pub openc2: Arc<crate::config::OpenC2Config>,
}

impl Front {
    /// Who is calling, from the `Authorization` header or the connection's client
    /// certificate; a refusal is journaled as gRPC's are.
    pub fn caller(&self, request: &Request, what: &str) -> Result<Caller, Error> {
        self.identify(request.headers(), request.extensions().get(), what)
    }

    pub fn identify(
        &self,
        headers: &HeaderMap,
        connection: Option<&Connection>,
        what: &str,
    ) -> Result<Caller, Error> {
        let peer = connection.map(|c| c.peer);
        let certificate = connection.and_then(|c| c.certificate.as_deref());
        let authorization = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
        // without authentication anyone here may do anything: a web page that rebinds its
        // own name to 127.0.0.1 must not be anyone
        let rebound = self.auth.is_insecure()
            && headers
                .get(header::HOST)
                .is_some_and(|host| !super::loopback_host(host.as_bytes()));
        if rebound {
            return Err(Error::Forbidden(
                "this Parapet runs without authentication and answers requests for a loopback \
                 name only (localhost, 127.0.0.1, [::1])"
                    .to_owned(),
            ))
            .inspect_err(|e| self.service.refused("", peer, what, e));
        }
        self.auth
            .identify(authorization, certificate, peer)
            .inspect_err(|e| self.service.refused("", peer, what, e))
    }
}

/// One call of a route: who, and what they sent.
pub struct Call {
    pub service: Service,
    pub caller: Caller,
    /// The path's `{intent_id}`, when the route has one.
    pub id: String,
    pub query: String,
    pub body: Bytes,
    pub trace: opentelemetry::Context,
}

/// A route's answer.
pub enum Reply {
    Message(StatusCode, HeaderMap, Vec<u8>),
    Problem(Problem),
    Stream(Answers<Vec<u8>>),
}

pub type Handler = fn(Call) -> BoxFuture<'static, Result<Reply, Error>>;

/// One route of the API.
pub struct Route {
    pub method: Method,
    /// As the OpenAPI document writes it: `/v1/intents/{intent_id}:rollback`.
    pub path: &'static str,
    pub operation: Operation,
    /// The request and response messages' full names.
    pub request: &'static str,
    pub response: &'static str,
    /// Whether the answer is a stream of `response` (NDJSON).
    pub streams: bool,
    pub summary: &'static str,
    pub call: Handler,
}

macro_rules! route {
    ($method:ident $path:literal, $op:ident, $req:ident -> $resp:ident $(, $stream:ident)?; $summary:literal, $call:expr) => {
        Route {
            method: Method::$method,
            path: $path,
            operation: Operation::$op,
            request: concat!(".parapet.v1.", stringify!($req)),
            response: concat!(".parapet.v1.", stringify!($resp)),
            streams: route!(@stream $($stream)?),
            summary: $summary,
            call: |c| Box::pin($call(c)),
        }
    };
    (@stream stream) => { true };
    (@stream) => { false };
}

/// Every route of the API.
pub fn routes() -> &'static [Route] {
    static ROUTES: std::sync::LazyLock<Vec<Route>> = std::sync::LazyLock::new(|| {
        vec![
            route!(POST "/v1/intents", Submit, SubmitIntentRequest -> SubmitIntentResponse;
                "Submit an intent: 201 when it acts or acted, 202 when it waits for approval, \
                 200 for a repeat or a shadowed intent, 403 or 429 (with Retry-After) when the \
                 guardrails deny it", submit),
            route!(POST "/v1/intents:whatIf", WhatIf, SubmitIntentRequest -> Decision;
                "The decision an intent would get now, with nothing done", what_if),
            route!(GET "/v1/intents", ListIntents, ListIntentsRequest -> ListIntentsResponse;
                "List intents, newest first", list),
            route!(GET "/v1/intents/{intent_id}", GetIntent, GetIntentRequest -> Intent;
                "One intent", get),
            route!(GET "/v1/intents/{intent_id}:watch", Watch, WatchIntentsRequest -> IntentEvent, stream;
                "Follow one intent's changes", watch_one),
            route!(GET "/v1/intents:watch", Watch, WatchIntentsRequest -> IntentEvent, stream;
                "Follow every intent's changes", watch),
            route!(POST "/v1/intents/{intent_id}:rollback", Rollback, RollbackRequest -> RollbackResponse;
                "Roll one intent back", rollback),
            route!(POST "/v1/intents:rollback", RollbackSelected, RollbackSelectedRequest -> RollbackProgress, stream;
                "Roll back every intent a filter selects", rollback_selected),
            route!(GET "/v1/approvals", ListPending, ListPendingRequest -> ListPendingResponse;
                "Intents waiting for approval", list_pending),
            route!(POST "/v1/intents/{intent_id}:approve", Approve, AnswerRequest -> Intent;
                "Approve a waiting intent", approve),
            route!(POST "/v1/intents/{intent_id}:reject", Reject, AnswerRequest -> Intent;
                "Reject a waiting intent", reject),
            route!(POST "/v1/intents/{intent_id}:judge", Judge, VerdictRequest -> Intent;
                "Record whether an intent's detection was right", judge),
            route!(GET "/v1/precision", Precision, PrecisionRequest -> PrecisionResponse;
                "Precision per detection and action", precision),
            route!(GET "/v1/journal", QueryJournal, QueryJournalRequest -> JournalEntry, stream;
                "Journal entries in journal order", query_journal),
            route!(POST "/v1/journal:verify", VerifyJournal, VerifyJournalRequest -> VerifyJournalResponse;
                "Verify the journal's hash chain", verify_journal),
            route!(GET "/v1/journal:export", ExportJournal, ExportJournalRequest -> ExportedEvent, stream;
                "Export journal entries (JSONL or OCSF)", export_journal),
            route!(POST "/v1/journal:replay", ReplayPolicy, ReplayPolicyRequest -> ReplayPolicyResponse;
                "What a policy would have decided on the journal's intents", replay_policy),
            route!(POST "/v1/journal:compact", CompactJournal, CompactJournalRequest -> CompactJournalResponse;
                "Compact the journal now", compact_journal),
            route!(GET "/v1/status", GetStatus, GetStatusRequest -> GetStatusResponse;
                "Kill switches, budgets, adapters, the policy", get_status),
            route!(POST "/v1/kill-switch", SetKillSwitch, SetKillSwitchRequest -> SetKillSwitchResponse;
                "Engage or release a kill switch", set_kill_switch),
            route!(GET "/v1/policy", GetPolicy, GetPolicyRequest -> GetPolicyResponse;
                "The policy in force: its text and digest", get_policy),
            route!(POST "/v1/policy:reload", ReloadPolicy, ReloadPolicyRequest -> ReloadPolicyResponse;
                "Reload the policy file", reload_policy),
            route!(POST "/v1/demotions", SetDemotion, SetDemotionRequest -> SetDemotionResponse;
                "Demote a detection to shadow, or lift it", set_demotion),
        ]
    });
    &ROUTES
}

/// The API's routes, on [`routes`]. Routes sharing a path up to the `:verb` are one axum
/// route (axum cannot match a parameter followed by a suffix); [`dispatch`] tells them apart.
pub fn router(front: Front) -> Router {
    let mut groups: Vec<(String, Vec<&'static Route>)> = Vec::new();
    for route in routes() {
        let path = axum_path(route.path);
        match groups.iter_mut().find(|(p, _)| *p == path) {
            Some((_, members)) => members.push(route),
            None => groups.push((path, vec![route])),
        }
    }
    let mut router = Router::new();
    for (path, members) in groups {
        let members: Arc<[&'static Route]> = members.into();
        router = router.route(
            &path,
            any(move |state: State<Front>, request: Request| {
                dispatch(state, members.clone(), request)
            }),
        );
    }
    router.with_state(front)
}

/// `/v1/intents/{intent_id}:rollback` → `/v1/intents/{intent_id}`.
fn axum_path(path: &str) -> String {
    match path.rfind("}:") {
        Some(i) => path[..=i].to_owned(),
        None => path.to_owned(),
    }
}

/// The `{intent_id}` and the `:verb` of a request to one of `members`' paths.
fn split_path<'a>(route: &Route, path: &'a str) -> Option<(String, &'a str)> {
    let Some(open) = route.path.find('{') else {
        return Some((String::new(), ""));
    };
    let tail = path.get(open..)?;
    let (id, verb) = match tail.rfind(':') {
        Some(i) => (&tail[..i], &tail[i..]),
        None => (tail, ""),
    };
    let id = percent_encoding::percent_decode_str(id)
        .decode_utf8()
        .ok()?
        .into_owned();
    Some((id, verb))
}

fn verb(route: &Route) -> &'static str {
    match route.path.rfind("}:") {
        Some(i) => &route.path[i + 1..],
        None => "",
    }
}

async fn dispatch(
    State(front): State<Front>,
    members: Arc<[&'static Route]>,
    request: Request,
) -> Response {
    let path = request.uri().path();
    let Some((id, asked)) = split_path(members[0], path) else {
        return not_found(path);
    };
    let same_verb = || members.iter().filter(move |r| verb(r) == asked);
    let found = same_verb().find(|r| r.method == request.method()).copied();
    let Some(route) = found else {
        let allow: Vec<_> = same_verb().map(|r| r.method.as_str()).collect();
        if allow.is_empty() {
            return not_found(path);
        }
        let mut response = Problem::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "Unimplemented",
            format!("{path} answers {}", allow.join(", ")),
        )
        .into_response();
        if let Ok(v) = HeaderValue::from_str(&allow.join(", ")) {
            response.headers_mut().insert(header::ALLOW, v);
        }
        return response;
    };
    match call(front, route, id, request).await {
        Ok(Reply::Message(status, headers, body)) => {
            let mut response = (status, headers, body).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        Ok(Reply::Problem(p)) => p.into_response(),
        Ok(Reply::Stream(lines)) => ndjson(lines),
        Err(e) => Problem::from(e).into_response(),
    }
}

fn not_found(path: &str) -> Response {
    Problem::new(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("{path} is not a route of this API; see /v1/openapi.json"),
    )
    .into_response()
}

/// Authenticates, authorizes (before anything of the request is read, as gRPC does), reads
/// the request, and calls the route.
async fn call(front: Front, route: &Route, id: String, request: Request) -> Result<Reply, Error> {
    // a refusal is journaled under the operation's name, as gRPC journals it
    let allowed = front
        .caller(&request, route.operation.name())
        .and_then(|caller| {
            front
                .service
                .authorize(&caller, route.operation)
                .map(|()| caller)
        });
    let (parts, body) = request.into_parts();
    let caller = match allowed {
        Ok(caller) => caller,
        Err(e) => {
            discard(body).await;
            return Err(e);
        }
    };
    let body = match read_body(body).await {
        Ok(body) => body,
        Err(problem) => return Ok(Reply::Problem(problem)),
    };
    if !body.is_empty() {
        let json = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            return Err(Error::invalid(
                "",
                "the body must be `Content-Type: application/json`",
            ));
        }
    }
    if route.method == Method::GET && !body.is_empty() {
        return Err(Error::invalid(
            "",
            "a GET takes its request in the query string, not a body",
        ));
    }
    let call = Call {
        service: front.service,
        caller,
        id,
        query: parts.uri.query().unwrap_or_default().to_owned(),
        body,
        trace: crate::telemetry::trace::from_headers(&parts.headers),
    };
    (route.call)(call).await
}

/// A request's body, within the listener's limit: over it is 413, as a body that says its
/// length up front is told before it is read.
/// Reads and drops a body a refusal does not need, within the listener's limit: a connection
/// closed with a body unread may be reset, and the client then loses the refusal (it sees the
/// server hang up, not a 401).
pub async fn discard(body: Body) {
    let _ = read_body(body).await;
}

pub async fn read_body(body: Body) -> Result<Bytes, Problem> {
    axum::body::to_bytes(body, usize::MAX).await.map_err(|e| {
        // the limit's error, however many layers wrapped it
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        let mut too_large = false;
        while let Some(c) = cause {
            too_large |= c.is::<http_body_util::LengthLimitError>();
            cause = c.source();
        }
        if too_large {
            Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "InvalidArgument",
                "the body is over the listener's limit ([http] max_body_bytes)",
            )
        } else {
            Problem::invalid("", format!("the request body: {e}"))
        }
    })
}

/// NDJSON: one message per line as it comes; an error ends the stream with one line
/// `{"error": PROBLEM}`.
fn ndjson(lines: Answers<Vec<u8>>) -> Response {
    let body = lines.map(|line| {
        let mut bytes = match line {
            Ok(bytes) => bytes,
            Err(e) => serde_json::to_vec(&serde_json::json!({ "error": Problem::from(e) }))
                .unwrap_or_default(),
        };
        bytes.push(b'\n');
        Ok::<_, std::convert::Infallible>(Bytes::from(bytes))
    });
    (
        [
            (header::CONTENT_TYPE, "application/x-ndjson"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

type Stream<T> = Pin<Box<dyn futures::Stream<Item = Result<T, Error>> + Send>>;

impl Call {
    /// The request message from the JSON body; an empty body is the empty message.
    pub fn body<T: DeserializeOwned + Default>(&self) -> Result<T, Error> {
        if self.body.is_empty() {
            return Ok(T::default());
        }
        decode(&mut serde_json::Deserializer::from_slice(&self.body))
    }

    /// The request message from the query string.
    pub fn query<T: DeserializeOwned>(&self, message: &str) -> Result<T, Error> {
        let json = SCHEMA.query(message, &self.query)?;
        decode(json)
    }

    /// The path's intent id into the request's field, which the body must not contradict.
    fn id(&self, field: &mut String) -> Result<(), Error> {
        if !field.is_empty() && *field != self.id {
            return Err(Error::invalid(
                "intent_id",
                "differs from the intent id of the path; give it once",
            ));
        }
        field.clone_from(&self.id);
        Ok(())
    }
}

/// Decodes a message from proto3 JSON; an error names the field by its path in the message,
/// as the gRPC front door does (`steps[0].target.id`).
pub(crate) fn decode<'de, T: DeserializeOwned>(
    from: impl serde::Deserializer<'de, Error = impl std::fmt::Display>,
) -> Result<T, Error> {
    serde_path_to_error::deserialize(from).map_err(|e| {
        let path = field_path(&e.path().to_string());
        let message = e.inner().to_string();
        Error::invalid(path, message)
    })
}

/// A path of JSON names (`steps[0].target.ruleId`) as field names (`rule_id`).
pub fn field_path(path: &str) -> String {
    if path == "." {
        return String::new();
    }
    let mut out = String::with_capacity(path.len() + 4);
    for c in path.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn encode<T: Serialize>(message: &T) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(message).map_err(|e| Error::Storage(std::io::Error::other(e)))
}

fn ok<T: Serialize>(message: &T) -> Result<Reply, Error> {
    Ok(Reply::Message(
        StatusCode::OK,
        HeaderMap::new(),
        encode(message)?,
    ))
}

fn lines<T: Serialize + Send + 'static>(messages: Answers<T>) -> Result<Reply, Error> {
    let lines: Stream<Vec<u8>> = Box::pin(messages.map(|m| m.and_then(|m| encode(&m))));
    Ok(Reply::Stream(lines))
}

async fn submit(c: Call) -> Result<Reply, Error> {
    let req: pb::SubmitIntentRequest = c.body()?;
    let mut answer = api::intents::submit(&c.service, &c.caller, req, c.trace).await?;
    let denied = answer.state == pb::IntentState::Denied as i32;
    if denied && !answer.duplicate {
        let decision = answer.decision.take().unwrap_or_default();
        let limited = decision.retry_after.is_some();
        let status = if limited {
            StatusCode::TOO_MANY_REQUESTS
        } else {
            StatusCode::FORBIDDEN
        };
        let mut problem = Problem::new(
            status,
            "FailedPrecondition",
            format!(
                "the guardrails deny: {}",
                api::convert::objections(&decision)
            ),
        )
        .with("intentId", answer.intent_id.clone())
        .with(
            "decision",
            serde_json::to_value(&decision).unwrap_or_default(),
        );
        problem.kind = "tag:parapet,2026:denied";
        problem.retry_after = decision
            .retry_after
            .and_then(|d| std::time::Duration::try_from(d).ok());
        return Ok(Reply::Problem(problem));
    }
    let body = encode(&answer)?;
    let status = if answer.duplicate {
        StatusCode::OK
    } else if answer.state == pb::IntentState::AwaitingApproval as i32 {
        StatusCode::ACCEPTED
    } else if answer.state == pb::IntentState::Shadowed as i32 {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let mut headers = HeaderMap::new();
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/intents/{}", answer.intent_id)) {
        headers.insert(header::LOCATION, location);
    }
    Ok(Reply::Message(status, headers, body))
}

async fn what_if(c: Call) -> Result<Reply, Error> {
    let req = c.body()?;
    ok(&api::intents::what_if(&c.service, &c.caller, req)?)
}

async fn list(c: Call) -> Result<Reply, Error> {
    let req = c.query(".parapet.v1.ListIntentsRequest")?;
    ok(&api::intents::list(&c.service, &c.caller, req)?)
}

async fn get(c: Call) -> Result<Reply, Error> {
    let mut req: pb::GetIntentRequest = c.query(".parapet.v1.GetIntentRequest")?;
    c.id(&mut req.intent_id)?;
    ok(&api::intents::get(&c.service, &c.caller, &req)?)
}

async fn watch_one(c: Call) -> Result<Reply, Error> {
    let mut req: pb::WatchIntentsRequest = c.query(".parapet.v1.WatchIntentsRequest")?;
    c.id(&mut req.intent_id)?;
    lines(api::intents::watch(&c.service, &c.caller, &req)?)
}

async fn watch(c: Call) -> Result<Reply, Error> {
    let req: pb::WatchIntentsRequest = c.query(".parapet.v1.WatchIntentsRequest")?;
    lines(api::intents::watch(&c.service, &c.caller, &req)?)
}

async fn rollback(c: Call) -> Result<Reply, Error> {
    let mut req: pb::RollbackRequest = c.body()?;
    c.id(&mut req.intent_id)?;
    ok(&api::rollbacks::rollback(&c.service, &c.caller, req).await?)
}

async fn rollback_selected(c: Call) -> Result<Reply, Error> {
    let req = c.body()?;
    lines(api::rollbacks::rollback_selected(&c.service, &c.caller, req).await?)
}

async fn list_pending(c: Call) -> Result<Reply, Error> {
    let req = c.query(".parapet.v1.ListPendingRequest")?;
    ok(&api::approvals::list_pending(&c.service, &c.caller, &req)?)
}

async fn approve(c: Call) -> Result<Reply, Error> {
    let mut req: pb::AnswerRequest = c.body()?;
    c.id(&mut req.intent_id)?;
    ok(&api::approvals::approve(&c.service, &c.caller, req).await?)
}

async fn reject(c: Call) -> Result<Reply, Error> {
    let mut req: pb::AnswerRequest = c.body()?;
    c.id(&mut req.intent_id)?;
    ok(&api::approvals::reject(&c.service, &c.caller, req).await?)
}

async fn judge(c: Call) -> Result<Reply, Error> {
    let mut req: pb::VerdictRequest = c.body()?;
    c.id(&mut req.intent_id)?;
    ok(&api::approvals::judge(&c.service, &c.caller, req).await?)
}

async fn precision(c: Call) -> Result<Reply, Error> {
    let req = c.query(".parapet.v1.PrecisionRequest")?;
    ok(&api::approvals::precision(&c.service, &c.caller, &req)?)
}

async fn query_journal(c: Call) -> Result<Reply, Error> {
    let req = c.query(".parapet.v1.QueryJournalRequest")?;
    lines(api::journal::query(&c.service, &c.caller, req)?)
}

async fn verify_journal(c: Call) -> Result<Reply, Error> {
    let req = c.body()?;
    ok(&api::journal::verify(&c.service, &c.caller, req).await?)
}

async fn export_journal(c: Call) -> Result<Reply, Error> {
    let req = c.query(".parapet.v1.ExportJournalRequest")?;
    lines(api::journal::export(&c.service, &c.caller, req)?)
}

async fn replay_policy(c: Call) -> Result<Reply, Error> {
    let req = c.body()?;
    ok(&api::journal::replay_policy(&c.service, &c.caller, req).await?)
}

async fn compact_journal(c: Call) -> Result<Reply, Error> {
    let req = c.body()?;
    ok(&api::admin::compact_journal(&c.service, &c.caller, req).await?)
}

async fn get_status(c: Call) -> Result<Reply, Error> {
    let req = c.query(".parapet.v1.GetStatusRequest")?;
    ok(&api::admin::get_status(&c.service, &c.caller, &req)?)
}

async fn get_policy(c: Call) -> Result<Reply, Error> {
    let req = c.query(".parapet.v1.GetPolicyRequest")?;
    ok(&api::admin::get_policy(&c.service, &c.caller, &req)?)
}

async fn set_kill_switch(c: Call) -> Result<Reply, Error> {
    let req = c.body()?;
    ok(&api::admin::set_kill_switch(&c.service, &c.caller, req).await?)
}

async fn reload_policy(c: Call) -> Result<Reply, Error> {
    let req = c.body()?;
    ok(&api::admin::reload_policy(&c.service, &c.caller, req).await?)
}

async fn set_demotion(c: Call) -> Result<Reply, Error> {
    let req = c.body()?;
    ok(&api::admin::set_demotion(&c.service, &c.caller, req).await?)
}
