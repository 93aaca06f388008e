//! The MCP server: AI agents call Parapet's operations as tools, each under the caller's own
//! identity and roles, through the same guardrails, budgets and journal as any detector.
//!
//! One handler, two ways to the service ([`Backend`]): in the server, Streamable HTTP at `/mcp`
//! on the HTTP listener ([`router`]), each request under the identity its bearer token or
//! client certificate authenticated; and `parapet mcp` on stdio, calling a server over gRPC
//! with the CLI's credentials. Tools take and answer `parapet.v1` messages in their proto3
//! JSON mapping, as the JSON API does, with schemas generated from the descriptors and their
//! comments. What came from detections or remote systems (titles, evidence, adapters'
//! answers) is data in a result, never part of a description or of the server's
//! instructions, which are fixed text.

use std::sync::{Arc, LazyLock};

use axum::{
    Router,
    extract::{Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};
use futures::StreamExt as _;
use parapet_proto::v1::{
    self as pb, admin_client::AdminClient, approvals_client::ApprovalsClient,
    intents_client::IntentsClient, journal_client::JournalClient,
    rollbacks_client::RollbacksClient,
};
use rmcp::{
    ErrorData, RoleServer, ServerHandler,
    model::{
        CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
        JsonObject, ListResourceTemplatesResult, ListResourcesResult, ListToolsResult,
        PaginatedRequestParams, ReadResourceRequestParams, ReadResourceResponse,
        ReadResourceResult, Resource, ResourceContents, ResourceTemplate, ServerCapabilities,
        ServerConfig, Tool, ToolAnnotations,
    },
    service::RequestContext,
    transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
    },
};
use serde::Serialize;
use serde_json::{Map, Value, json};
use tonic::{Code, Status};

use crate::{
    api,
    grpc::client::Conn,
    http::{api::Front, problem::Problem, schema::SCHEMA},
    service::{Caller, Service, lists::Scheme},
};

/// Where the tools' calls go.
#[derive(Clone)]
pub enum Backend {
    /// The service itself, under the caller each HTTP request authenticated.
    Local(Service),
    /// A Parapet server over gRPC, under the connection's credentials.
    Remote(Conn),
}

/// The MCP server's handler.
#[derive(Clone)]
pub struct Parapet {
    backend: Backend,
}

impl Parapet {
    pub fn new(backend: Backend) -> Self {
        Self { backend }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    SubmitIntent,
    WhatIf,
    GetIntent,
    ListIntents,
    ListPending,
    QueryJournal,
    RollbackIntent,
    GetStatus,
}

/// One tool: what it does, what it takes and answers, and what it may change.
struct Spec {
    kind: Kind,
    name: &'static str,
    title: &'static str,
    description: &'static str,
    /// The request message its arguments are (`.parapet.v1.…`).
    request: &'static str,
    /// The response message its result is; `None` for `query_journal`'s list of entries.
    response: Option<&'static str>,
    read_only: bool,
    destructive: bool,
    idempotent: bool,
    /// Whether it reaches beyond Parapet (adapters acting on firewalls, hosts, accounts).
    open_world: bool,
}

const SPECS: [Spec; 8] = [
    Spec {
        kind: Kind::SubmitIntent,
        name: "submit_intent",
        title: "Submit a response intent",
        description: "Ask Parapet to act on a detection: block an address, isolate a host, \
            disable an account. The guardrails decide first (inventory, autonomy tier, \
            thresholds, protected targets, budgets, rate limits, kill switch, freezes); the \
            answer carries the decision with every reason and the policy's digest, and the \
            intent's state: ACTIVE or EXECUTING when it acted, AWAITING_APPROVAL when a person \
            must approve, SHADOWED or DENIED when it did not act. `source` must be your own \
            identity's name. A repeat with the same `idempotencyKey` returns the first intent \
            and does nothing again. Call what_if first to see the decision without acting.",
        request: ".parapet.v1.SubmitIntentRequest",
        response: Some(".parapet.v1.SubmitIntentResponse"),
        read_only: false,
        destructive: true,
        idempotent: true,
        open_world: true,
    },
    Spec {
        kind: Kind::WhatIf,
        name: "what_if",
        title: "What would the guardrails decide?",
        description: "The decision an intent would get now, with no side effect: nothing is \
            journaled, no budget or rate limit is consumed, no adapter is called. The \
            reasons name each guardrail's finding: the autonomy tier, a protected rule the \
            target matches, a threshold, and which budget or rate limit would refuse; \
            `retryAfter` says when a limit frees. Takes the same arguments as submit_intent.",
        request: ".parapet.v1.SubmitIntentRequest",
        response: Some(".parapet.v1.Decision"),
        read_only: true,
        destructive: false,
        idempotent: true,
        open_world: false,
    },
    Spec {
        kind: Kind::GetIntent,
        name: "get_intent",
        title: "Get one intent",
        description: "One intent as it stands: its detection, steps, decision and reasons, \
            state, each step's status, and when its actions expire. A detector reads only \
            its own intents.",
        request: ".parapet.v1.GetIntentRequest",
        response: Some(".parapet.v1.Intent"),
        read_only: true,
        destructive: false,
        idempotent: true,
        open_world: false,
    },
    Spec {
        kind: Kind::ListIntents,
        name: "list_intents",
        title: "List intents",
        description: "Intents, newest first, filtered by state, detection or source, a page \
            at a time (`nextPageToken` continues). A detector lists only its own.",
        request: ".parapet.v1.ListIntentsRequest",
        response: Some(".parapet.v1.ListIntentsResponse"),
        read_only: true,
        destructive: false,
        idempotent: true,
        open_world: false,
    },
    Spec {
        kind: Kind::ListPending,
        name: "list_pending",
        title: "List intents awaiting approval",
        description: "Intents waiting for a person's approval, oldest first. Needs the \
            approver, operator or auditor role.",
        request: ".parapet.v1.ListPendingRequest",
        response: Some(".parapet.v1.ListPendingResponse"),
        read_only: true,
        destructive: false,
        idempotent: true,
        open_world: false,
    },
    Spec {
        kind: Kind::QueryJournal,
        name: "query_journal",
        title: "Query the journal",
        description: "Journal entries in journal order, every filter set must match; at most \
            `limit` (default 100, at most 1000). When more may follow, `nextAfterSeq` is the \
            `afterSeq` of the next page. Needs the auditor role.",
        request: ".parapet.v1.QueryJournalRequest",
        response: None,
        read_only: true,
        destructive: false,
        idempotent: true,
        open_world: false,
    },
    Spec {
        kind: Kind::RollbackIntent,
        name: "rollback_intent",
        title: "Roll back an intent",
        description: "Undo an intent's actions now, last step first (unblock, release from \
            isolation, re-enable). Rolling back what is already rolled back does nothing \
            (`noop`). Needs the operator role.",
        request: ".parapet.v1.RollbackRequest",
        response: Some(".parapet.v1.RollbackResponse"),
        read_only: false,
        destructive: true,
        idempotent: true,
        open_world: true,
    },
    Spec {
        kind: Kind::GetStatus,
        name: "get_status",
        title: "What the guardrails hold now",
        description: "The policy's digest, kill switches, budget usage, rate limits, demoted \
            detections, intents in force and awaiting approval, adapters, and recent errors. \
            A detector sees the counts and errors of its own intents only.",
        request: ".parapet.v1.GetStatusRequest",
        response: Some(".parapet.v1.GetStatusResponse"),
        read_only: true,
        destructive: false,
        idempotent: true,
        open_world: false,
    },
];

/// How many journal entries `query_journal` answers when not told, and at most.
const DEFAULT_ENTRIES: u32 = 100;
const MAX_ENTRIES: u32 = 1000;

const INSTRUCTIONS: &str = "Parapet stands between you and response actions: every action \
    you ask for passes the guardrails of the policy in force, under your identity's roles, \
    and is journaled. Call what_if before submit_intent to see the decision and its reasons \
    without acting. An intent may wait for a person's approval; that is the policy working, \
    not an error. The policy is the resource parapet://policy, one intent's story \
    parapet://intents/{id}: cite them for what you relied on.";

const POLICY_URI: &str = "parapet://policy";
const INTENT_URI: &str = "parapet://intents/";

/// The tools as `tools/list` answers them.
fn tools() -> &'static [Tool] {
    static TOOLS: LazyLock<Vec<Tool>> = LazyLock::new(|| SPECS.iter().map(tool).collect());
    &TOOLS
}

fn tool(spec: &Spec) -> Tool {
    let mut tool = Tool::new(
        spec.name,
        spec.description,
        Arc::new(object(SCHEMA.standalone(spec.request))),
    );
    tool.title = Some(spec.title.to_owned());
    let output = match spec.response {
        Some(message) => SCHEMA.standalone(message),
        None => entries_schema(),
    };
    tool.output_schema = Some(Arc::new(object(output)));
    tool.annotations = Some(
        ToolAnnotations::with_title(spec.title)
            .read_only(spec.read_only)
            .destructive(spec.destructive)
            .idempotent(spec.idempotent)
            .open_world(spec.open_world),
    );
    tool
}

fn object(value: Value) -> JsonObject {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// `query_journal`'s result: the entries and where the next page starts.
fn entries_schema() -> Value {
    let entry = ".parapet.v1.JournalEntry";
    let mut schema = SCHEMA.standalone(entry);
    let mut defs = schema
        .get_mut("$defs")
        .map(Value::take)
        .unwrap_or_else(|| json!({}));
    if let Some(object) = schema.as_object_mut() {
        object.remove("$defs");
    }
    defs["parapet.v1.JournalEntry"] = schema;
    json!({
        "type": "object",
        "properties": {
            "entries": {
                "type": "array",
                "items": { "$ref": "#/$defs/parapet.v1.JournalEntry" },
                "description": "The entries, in journal order.",
            },
            "nextAfterSeq": {
                "type": "string",
                "pattern": "^[0-9]+$",
                "description": "Set when more entries may follow: the `afterSeq` of the next page.",
            },
        },
        "required": ["entries"],
        "additionalProperties": false,
        "$defs": defs,
    })
}

impl ServerHandler for Parapet {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .build(),
        )
        .with_server_info(Implementation::new("parapet", env!("CARGO_PKG_VERSION")))
        .with_instructions(INSTRUCTIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(tools().to_vec()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        tools().iter().find(|t| t.name == name).cloned()
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let Some(spec) = SPECS.iter().find(|s| s.name == request.name) else {
            return Err(ErrorData::invalid_params(
                format!("there is no tool `{}`", request.name),
                None,
            ));
        };
        let caller = self.caller(&context)?;
        let args = Value::Object(request.arguments.unwrap_or_default());
        Ok(match self.call(spec.kind, args, &caller).await {
            Ok(value) => CallToolResult::structured(value),
            Err(status) => CallToolResult::error(vec![ContentBlock::text(failure(&status))]),
        }
        .into())
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let policy = Resource::new(POLICY_URI, "policy")
            .with_title("The policy in force")
            .with_description(
                "The policy file that decides every intent (TOML) and its digest, which each \
                 decision carries.",
            )
            .with_mime_type("application/json");
        Ok(ListResourcesResult::with_all_items(vec![policy]))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let intent = ResourceTemplate::new(format!("{INTENT_URI}{{id}}"), "intent")
            .with_title("One intent's story")
            .with_description(
                "An intent as it stands: its detection, steps, decision with its reasons and \
                 the policy's digest, state, and each step's status.",
            )
            .with_mime_type("application/json");
        Ok(ListResourceTemplatesResult::with_all_items(vec![intent]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let caller = self.caller(&context)?;
        let uri = request.uri;
        let read = if uri == POLICY_URI {
            self.policy(&caller).await
        } else if let Some(id) = uri.strip_prefix(INTENT_URI) {
            let req = json!({ "intentId": id });
            self.call(Kind::GetIntent, req, &caller).await
        } else {
            return Err(ErrorData::resource_not_found(
                format!("no resource `{uri}`: parapet://policy or parapet://intents/{{id}}"),
                None,
            ));
        };
        match read {
            Ok(value) => {
                Ok(
                    ReadResourceResult::new(vec![ResourceContents::TextResourceContents {
                        uri,
                        mime_type: Some("application/json".into()),
                        text: value.to_string(),
                        meta: None,
                    }])
                    .into(),
                )
            }
            Err(status) if status.code() == Code::NotFound => {
                Err(ErrorData::resource_not_found(failure(&status), None))
            }
            Err(status) => Err(ErrorData::invalid_request(failure(&status), None)),
        }
    }
}

/// A failed call as the agent reads it: the gRPC code and what is wrong.
fn failure(status: &Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

impl Parapet {
    /// Who calls: in the server, the caller the HTTP request authenticated as (never anyone
    /// else: a request that was not authenticated is refused); over gRPC, the connection's
    /// credentials speak for the caller and this is not used.
    fn caller(&self, context: &RequestContext<RoleServer>) -> Result<Caller, ErrorData> {
        match self.backend {
            Backend::Remote(_) => Ok(Caller::default()),
            Backend::Local(_) => context
                .extensions
                .get::<axum::http::request::Parts>()
                .and_then(|parts| parts.extensions.get::<Caller>())
                .cloned()
                .ok_or_else(|| {
                    ErrorData::internal_error("the request was not authenticated", None)
                }),
        }
    }

    /// One tool's call: its arguments as the request message, the answer as JSON.
    async fn call(&self, kind: Kind, args: Value, caller: &Caller) -> Result<Value, Status> {
        use Backend::{Local, Remote};
        match (kind, &self.backend) {
            (Kind::SubmitIntent, Local(s)) => {
                let trace = opentelemetry::Context::current();
                json_of(&api::intents::submit(s, caller, decode(args)?, trace).await?)
            }
            (Kind::SubmitIntent, Remote(c)) => json_of(
                IntentsClient::new(c.clone())
                    .submit(decode::<pb::SubmitIntentRequest>(args)?)
                    .await?
                    .get_ref(),
            ),
            (Kind::WhatIf, Local(s)) => json_of(&api::intents::what_if(s, caller, decode(args)?)?),
            (Kind::WhatIf, Remote(c)) => json_of(
                IntentsClient::new(c.clone())
                    .what_if(decode::<pb::SubmitIntentRequest>(args)?)
                    .await?
                    .get_ref(),
            ),
            (Kind::GetIntent, Local(s)) => json_of(&api::intents::get(s, caller, &decode(args)?)?),
            (Kind::GetIntent, Remote(c)) => json_of(
                IntentsClient::new(c.clone())
                    .get(decode::<pb::GetIntentRequest>(args)?)
                    .await?
                    .get_ref(),
            ),
            (Kind::ListIntents, Local(s)) => {
                json_of(&api::intents::list(s, caller, decode(args)?)?)
            }
            (Kind::ListIntents, Remote(c)) => json_of(
                IntentsClient::new(c.clone())
                    .list(decode::<pb::ListIntentsRequest>(args)?)
                    .await?
                    .get_ref(),
            ),
            (Kind::ListPending, Local(s)) => {
                json_of(&api::approvals::list_pending(s, caller, &decode(args)?)?)
            }
            (Kind::ListPending, Remote(c)) => json_of(
                ApprovalsClient::new(c.clone())
                    .list_pending(decode::<pb::ListPendingRequest>(args)?)
                    .await?
                    .get_ref(),
            ),
            (Kind::QueryJournal, backend) => {
                let mut req: pb::QueryJournalRequest = decode(args)?;
                req.limit = match req.limit {
                    0 => DEFAULT_ENTRIES,
                    n => n.min(MAX_ENTRIES),
                };
                let limit = req.limit;
                let entries: Vec<pb::JournalEntry> = match backend {
                    Local(s) => {
                        let mut stream = api::journal::query(s, caller, req)?;
                        let mut entries = Vec::new();
                        while let Some(entry) = stream.next().await {
                            entries.push(entry?);
                        }
                        entries
                    }
                    Remote(c) => {
                        let mut stream =
                            JournalClient::new(c.clone()).query(req).await?.into_inner();
                        let mut entries = Vec::new();
                        while let Some(entry) = stream.message().await? {
                            entries.push(entry);
                        }
                        entries
                    }
                };
                let mut answer = json!({ "entries": json_of(&entries)? });
                if entries.len() >= limit as usize
                    && let Some(last) = entries.last()
                {
                    answer["nextAfterSeq"] = last.seq.to_string().into();
                }
                Ok(answer)
            }
            (Kind::RollbackIntent, Local(s)) => {
                json_of(&api::rollbacks::rollback(s, caller, decode(args)?).await?)
            }
            (Kind::RollbackIntent, Remote(c)) => json_of(
                RollbacksClient::new(c.clone())
                    .rollback(decode::<pb::RollbackRequest>(args)?)
                    .await?
                    .get_ref(),
            ),
            (Kind::GetStatus, Local(s)) => {
                json_of(&api::admin::get_status(s, caller, &decode(args)?)?)
            }
            (Kind::GetStatus, Remote(c)) => json_of(
                AdminClient::new(c.clone())
                    .get_status(decode::<pb::GetStatusRequest>(args)?)
                    .await?
                    .get_ref(),
            ),
        }
    }

    async fn policy(&self, caller: &Caller) -> Result<Value, Status> {
        let req = pb::GetPolicyRequest {};
        match &self.backend {
            Backend::Local(s) => json_of(&api::admin::get_policy(s, caller, &req)?),
            Backend::Remote(c) => {
                json_of(AdminClient::new(c.clone()).get_policy(req).await?.get_ref())
            }
        }
    }
}

/// A tool's arguments as its request message; a mistake names the field.
fn decode<T: serde::de::DeserializeOwned>(args: Value) -> Result<T, Status> {
    Ok(crate::http::api::decode(args)?)
}

fn json_of<T: Serialize + ?Sized>(message: &T) -> Result<Value, Status> {
    serde_json::to_value(message).map_err(|e| Status::internal(e.to_string()))
}

/// `/mcp` on the HTTP listener: Streamable HTTP, stateless (any replica answers any request),
/// each request authenticated as the JSON API's are before MCP reads it.
pub fn router(front: Front) -> Router {
    let service = front.service.clone();
    // Host and Origin are the listener's to check, for every route alike: a web page's request
    // is refused (`http::browsers`), and without authentication so is any Host but a loopback
    // name (`Front::identify`, in `authenticate` below), before MCP sees the request
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_sse_keep_alive(None)
        .disable_allowed_hosts();
    let mcp = StreamableHttpService::new(
        move || Ok(Parapet::new(Backend::Local(service.clone()))),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    Router::new()
        .route_service("/mcp", mcp)
        .layer(axum::middleware::from_fn_with_state(front, authenticate))
}

async fn authenticate(State(front): State<Front>, mut request: Request, next: Next) -> Response {
    match front.caller(&request, "/mcp") {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(e) => {
            crate::http::api::discard(request.into_body()).await;
            refusal(e)
        }
    }
}

/// A request refused before MCP reads it: HTTP's status and challenge, with a JSON-RPC error
/// as the body, which MCP clients show their user (an agent's runtime then says why).
fn refusal(e: crate::error::Error) -> Response {
    let code = match &e {
        crate::error::Error::Unauthenticated(_) => "Unauthenticated",
        crate::error::Error::Forbidden(_) => "PermissionDenied",
        _ => "Unavailable",
    };
    let message = format!("{code}: {e}");
    let mut response = Problem::from(e).challenge(Scheme::Bearer).into_response();
    let body = json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": { "code": -32001, "message": message },
    });
    *response.body_mut() = axum::body::Body::from(body.to_string());
    let headers = response.headers_mut();
    headers.remove(axum::http::header::CONTENT_LENGTH);
    headers.insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every property of every tool's arguments and result says what it is, so an agent
    /// needs nothing but the schema.
    #[test]
    fn every_field_of_every_tool_is_described() {
        fn walk(schema: &Value, path: &str, missing: &mut Vec<String>) {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (name, prop) in props {
                    let here = format!("{path}.{name}");
                    if prop
                        .get("description")
                        .and_then(Value::as_str)
                        .is_none_or(str::is_empty)
                    {
                        missing.push(here.clone());
                    }
                    walk(prop, &here, missing);
                }
            }
            if let Some(defs) = schema.get("$defs").and_then(Value::as_object) {
                for (name, def) in defs {
                    walk(def, &format!("{path}/$defs/{name}"), missing);
                }
            }
        }
        let mut missing = Vec::new();
        for tool in tools() {
            walk(
                &Value::Object((*tool.input_schema).clone()),
                &format!("{} in", tool.name),
                &mut missing,
            );
            if let Some(output) = &tool.output_schema {
                walk(
                    &Value::Object((**output).clone()),
                    &format!("{} out", tool.name),
                    &mut missing,
                );
            }
        }
        assert!(missing.is_empty(), "undescribed: {missing:#?}");
    }

    #[test]
    fn every_tool_says_what_it_does_and_takes_an_object() {
        for tool in tools() {
            assert_eq!(tool.input_schema["type"], "object", "{}", tool.name);
            assert!(tool.description.as_deref().is_some_and(|d| d.len() > 40));
        }
    }
}
