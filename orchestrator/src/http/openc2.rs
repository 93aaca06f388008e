//! An OpenC2 consumer (Language Specification 1.0, the Stateless Packet Filtering profile, the
//! HTTPS transfer): `POST /.well-known/openc2`, a bare command or a message envelope.
//!
//! - `query features`: versions, profiles, pairs, rate limit.
//! - `deny` an `ipv4_net`, `ipv6_net`, or the source (else destination) address of an
//!   `ipv4_connection`/`ipv6_connection`: a `block_ip` intent under `[openc2] detection`, its TTL
//!   from `args.duration` (ms). Its `slpf:rule_number` is the intent's number (the journal
//!   entry that received it): stable, and an integer as the profile wants.
//! - `delete` an `slpf:rule_number`: rolls that intent back (an operator's right, as ever).
//!
//! Everything else is `501`. The guardrails answer as they answer any intent: a refusal is
//! `403` with the decision's reasons, waiting for approval `102` with the intent's id.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::{
    body::Bytes,
    extract::{Request, State},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use parapet_proto::v1 as pb;
use serde_json::{Map, Value, json};

use super::api::Front;
use crate::{
    error::Error,
    service::{Caller, Change, Operation, rollbacks::Rollback},
};

pub const CONTENT_TYPE: &str = "application/openc2+json;version=1.0";

const SUPPORTED: &str = "Parapet supports: query features; deny ipv4_net, ipv6_net, \
                         ipv4_connection, ipv6_connection; delete slpf:rule_number";

/// The pairs of action and target this consumer carries out.
fn pairs() -> Value {
    json!({
        "query": ["features"],
        "deny": ["ipv4_net", "ipv6_net", "ipv4_connection", "ipv6_connection"],
        "delete": ["slpf:rule_number"],
    })
}

/// An OpenC2 response: a status, why, and results.
struct Answer {
    status: u16,
    text: String,
    results: Option<Map<String, Value>>,
}

impl Answer {
    fn new(status: u16, text: impl Into<String>) -> Self {
        Self {
            status,
            text: text.into(),
            results: None,
        }
    }

    fn ok(results: Map<String, Value>) -> Self {
        Self {
            status: 200,
            text: String::new(),
            results: Some(results),
        }
    }

    fn json(&self) -> Value {
        let mut r = Map::new();
        r.insert("status".into(), self.status.into());
        if !self.text.is_empty() {
            r.insert("status_text".into(), self.text.clone().into());
        }
        if let Some(results) = &self.results {
            r.insert("results".into(), Value::Object(results.clone()));
        }
        Value::Object(r)
    }
}

impl From<Error> for Answer {
    fn from(e: Error) -> Self {
        if e.is_internal() {
            tracing::error!(error = %e, "OpenC2 command failed");
        }
        let status = match &e {
            Error::Invalid(_) | Error::IdempotencyConflict { .. } => 400,
            Error::Unauthenticated(_) => 401,
            Error::Forbidden(_) | Error::Refused(_) => 403,
            Error::NotFound { .. } => 404,
            Error::FailedPrecondition(_) | Error::Lagged(_) => 400,
            Error::Exhausted(_) | Error::ShuttingDown | Error::Journal(_) | Error::Storage(_) => {
                503
            }
        };
        Answer::new(status, e.to_string())
    }
}

pub async fn consume(State(front): State<Front>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let caller = front.identify(
        &parts.headers,
        parts.extensions.get(),
        "POST /.well-known/openc2",
    );
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let (envelope, answer) = match parse(content_type, &body) {
        Err(answer) => (None, answer),
        Ok((envelope, command)) => {
            let answer = match caller {
                Err(e) => Answer::from(e),
                Ok(caller) => execute(&front, &caller, &command).await,
            };
            (envelope, answer)
        }
    };
    respond(envelope.as_ref(), &answer)
}

/// The command, and the envelope's headers when it came in one.
fn parse(content_type: &str, body: &Bytes) -> Result<(Option<Map<String, Value>>, Value), Answer> {
    let media = content_type.split(';').next().unwrap_or_default().trim();
    let known = [
        "application/openc2+json",
        "application/openc2-cmd+json",
        "application/json",
    ];
    if !known.iter().any(|k| media.eq_ignore_ascii_case(k)) {
        return Err(Answer::new(
            400,
            format!("Content-Type must be `{CONTENT_TYPE}`, not `{content_type}`"),
        ));
    }
    if let Some(version) = content_type
        .split(';')
        .skip(1)
        .filter_map(|p| p.trim().strip_prefix("version="))
        .next()
        && version.trim() != "1.0"
    {
        return Err(Answer::new(
            400,
            format!("version {version} is not supported: 1.0"),
        ));
    }
    let mut message: Value = serde_json::from_slice(body)
        .map_err(|e| Answer::new(400, format!("the body is not JSON: {e}")))?;
    if message.get("action").is_some() {
        return Ok((None, message));
    }
    let headers = message
        .get("headers")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    match message.pointer_mut("/body/openc2/request").map(Value::take) {
        Some(command) => Ok((Some(headers), command)),
        None => Err(Answer::new(
            400,
            "neither a command (`action`, `target`) nor a message with body.openc2.request",
        )),
    }
}

fn respond(envelope: Option<&Map<String, Value>>, answer: &Answer) -> Response {
    let response = answer.json();
    let body = match envelope {
        None => response,
        Some(request) => {
            let mut headers = Map::new();
            if let Some(id) = request.get("request_id") {
                headers.insert("request_id".into(), id.clone());
            }
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis() as u64;
            headers.insert("created".into(), now.into());
            headers.insert("from".into(), "parapet".into());
            if let Some(from) = request.get("from") {
                headers.insert("to".into(), json!([from]));
            }
            json!({ "headers": headers, "body": { "openc2": { "response": response } } })
        }
    };
    // 102 is no final HTTP status; the OpenC2 status in the body says it
    let status = match answer.status {
        102 => StatusCode::OK,
        s => StatusCode::from_u16(s).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
    };
    let mut response = (status, body.to_string()).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    response
}

async fn execute(front: &Front, caller: &Caller, command: &Value) -> Answer {
    let Some(action) = command.get("action").and_then(Value::as_str) else {
        return Answer::new(400, "action: is required");
    };
    let Some((target, value)) = command
        .get("target")
        .and_then(Value::as_object)
        .filter(|t| t.len() == 1)
        .and_then(|t| t.iter().next())
    else {
        return Answer::new(400, "target: must name exactly one target");
    };
    if let Some(actuator) = command.get("actuator").and_then(Value::as_object)
        && !actuator.contains_key("slpf")
    {
        let names: Vec<_> = actuator.keys().cloned().collect();
        return Answer::new(
            501,
            format!("actuator {}: only slpf is supported", names.join(", ")),
        );
    }
    let args = command.get("args").cloned().unwrap_or(Value::Null);
    let result = match (action, target.as_str()) {
        ("query", "features") => features(front, caller, value),
        ("deny", "ipv4_net" | "ipv6_net" | "ipv4_connection" | "ipv6_connection") => {
            deny(front, caller, command, target, value, &args).await
        }
        ("delete", "slpf:rule_number") => delete(front, caller, value).await,
        _ => Ok(Answer::new(
            501,
            format!("`{action} {target}` is not supported. {SUPPORTED}"),
        )),
    };
    result.unwrap_or_else(Answer::from)
}

fn features(front: &Front, caller: &Caller, asked: &Value) -> Result<Answer, Error> {
    front.service.authorize(caller, Operation::GetStatus)?;
    let asked = asked
        .as_array()
        .ok_or_else(|| Error::invalid("target.features", "must be a list"))?;
    let mut results = Map::new();
    for feature in asked {
        match feature.as_str() {
            Some("versions") => {
                results.insert("versions".into(), json!(["1.0"]));
            }
            Some("profiles") => {
                results.insert("profiles".into(), json!(["slpf"]));
            }
            Some("pairs") => {
                results.insert("pairs".into(), pairs());
            }
            Some("rate_limit") => {
                results.insert("rate_limit".into(), rate_limit(front, caller)?.into());
            }
            _ => {
                return Err(Error::invalid(
                    "target.features",
                    format!("{feature} is not a feature: versions, profiles, pairs, rate_limit"),
                ));
            }
        }
    }
    // an empty list asks only whether the consumer is there
    Ok(if results.is_empty() {
        Answer::new(200, "")
    } else {
        Answer::ok(results)
    })
}

/// Commands per minute the tightest of the policy's rate limits allows.
fn rate_limit(front: &Front, caller: &Caller) -> Result<f64, Error> {
    let status = front.service.status(caller)?;
    let per_minute = status
        .policy
        .rate_limits
        .iter()
        .map(|r| f64::from(r.max.get()) * 60.0 / r.per.0.as_secs_f64().max(f64::MIN_POSITIVE))
        .fold(f64::INFINITY, f64::min);
    Ok(if per_minute.is_finite() {
        per_minute
    } else {
        // no limit: as many as the rate limiter's own floor lets through
        f64::from(u32::MAX)
    })
}

/// The address a deny names: the net, or the connection's source (else destination) address;
/// a connection narrowed by port or protocol is refused, as blocking its whole address would
/// do more than was asked.
fn address(target: &str, value: &Value) -> Result<String, Error> {
    let v6 = target.starts_with("ipv6");
    let text = match value {
        Value::String(s) if target.ends_with("_net") => s.clone(),
        Value::Object(c) if target.ends_with("_connection") => {
            for narrowing in ["src_port", "dst_port", "protocol"] {
                if c.contains_key(narrowing) {
                    return Err(Error::invalid(
                        format!("target.{target}.{narrowing}"),
                        "Parapet blocks whole addresses; a deny narrowed by port or \
                         protocol cannot be honoured as asked",
                    ));
                }
            }
            c.get("src_addr")
                .or_else(|| c.get("dst_addr"))
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    Error::invalid(format!("target.{target}"), "needs src_addr or dst_addr")
                })?
                .to_owned()
        }
        _ => {
            return Err(Error::invalid(
                format!("target.{target}"),
                "has the wrong shape",
            ));
        }
    };
    let parsed: Result<ipnet::IpNet, _> = text
        .parse()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
    match parsed {
        Ok(net) if matches!(net, ipnet::IpNet::V6(_)) == v6 => Ok(text),
        _ => Err(Error::invalid(
            format!("target.{target}"),
            format!(
                "`{text}` is not an {} address or net",
                if v6 { "IPv6" } else { "IPv4" }
            ),
        )),
    }
}

async fn deny(
    front: &Front,
    caller: &Caller,
    command: &Value,
    target: &str,
    value: &Value,
    args: &Value,
) -> Result<Answer, Error> {
    front.service.authorize(caller, Operation::Submit)?;
    let address = address(target, value)?;
    for unsupported in ["start_time", "stop_time"] {
        if args.get(unsupported).is_some() {
            return Ok(Answer::new(
                501,
                format!("args.{unsupported} is not supported; give args.duration"),
            ));
        }
    }
    if args.pointer("/slpf/insert_rule").is_some() {
        return Ok(Answer::new(
            501,
            "args.slpf.insert_rule is not supported: Parapet numbers its rules",
        ));
    }
    let ttl = match args.get("duration") {
        None => None,
        Some(ms) => Some(Duration::from_millis(ms.as_u64().ok_or_else(|| {
            Error::invalid("args.duration", "must be a whole number of milliseconds")
        })?)),
    };
    let source = match &caller.identity {
        Some(id) => id.name.clone(),
        None => "openc2".to_owned(),
    };
    let key = command
        .get("command_id")
        .and_then(Value::as_str)
        .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned);
    let request = pb::SubmitIntentRequest {
        idempotency_key: format!("openc2:{key}"),
        source,
        detection: Some(pb::Detection {
            rule_id: front.openc2.detection.clone(),
            severity: pb::Severity::High as i32,
            confidence: 1.0,
            title: format!("OpenC2 deny {target}"),
        }),
        steps: vec![pb::Step {
            kind: "block_ip".into(),
            target: Some(pb::Target {
                kind: "ip".into(),
                id: address,
                attributes: Default::default(),
            }),
            params: Default::default(),
        }],
        ttl: ttl.map(Into::into),
        reason: format!("OpenC2 deny {target}"),
        wait: true,
        ..Default::default()
    };
    let answer = crate::api::intents::submit(
        &front.service,
        caller,
        request,
        opentelemetry::Context::new(),
    )
    .await?;
    let id = crate::service::intent_id(&answer.intent_id, "intent_id")?;
    let number = front.service.intent_number(caller, id)?;
    let mut results = Map::new();
    results.insert("slpf".into(), json!({ "rule_number": number }));
    let decision = answer.decision.unwrap_or_default();
    let reasons = || crate::api::convert::objections(&decision);
    use pb::IntentState as S;
    let state = S::try_from(answer.state).unwrap_or(S::Unspecified);
    Ok(match state {
        S::Active | S::Executing | S::Decided | S::Received => Answer {
            status: 200,
            text: format!("intent {}", answer.intent_id),
            results: Some(results),
        },
        S::AwaitingApproval => Answer {
            status: 102,
            text: format!("intent {} awaits approval: {}", answer.intent_id, reasons()),
            results: Some(results),
        },
        S::Denied | S::Shadowed => Answer::new(
            403,
            format!(
                "the guardrails {} intent {}: {}",
                if state == S::Denied {
                    "deny"
                } else {
                    "only record (shadow)"
                },
                answer.intent_id,
                reasons()
            ),
        ),
        _ => Answer::new(
            500,
            format!(
                "intent {} is {}: {}",
                answer.intent_id,
                state.as_str_name(),
                answer.intent.map(|i| i.error).unwrap_or_default()
            ),
        ),
    })
}

async fn delete(front: &Front, caller: &Caller, value: &Value) -> Result<Answer, Error> {
    front.service.authorize(caller, Operation::Rollback)?;
    // the profile has an integer; some producers send its digits as a string
    let number = value
        .as_u64()
        .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))
        .ok_or_else(|| Error::invalid("target.slpf:rule_number", "must be a rule number"))?;
    let record = front.service.intent_by_number(caller, number)?;
    if record.intent.detection.rule_id != front.openc2.detection {
        return Err(Error::NotFound {
            what: "OpenC2 rule",
            name: number.to_string(),
        });
    }
    let rollback = Rollback {
        intent_id: record.intent.id.to_string(),
        change: Change {
            reason: format!("OpenC2 delete slpf:rule_number {number}"),
            requested_by: "openc2".into(),
        },
        wait: true,
    };
    let done = front.service.rollback(caller, &rollback).await?;
    Ok(Answer::new(
        200,
        format!(
            "intent {} is {}",
            done.record.intent.id,
            done.record.state.as_str()
        ),
    ))
}
