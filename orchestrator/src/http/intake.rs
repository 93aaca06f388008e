//! `POST /v1/ingest/{name}`: a webhook of an `[[intake]]`, authenticated its way, mapped to
//! intents by [`crate::intake`], each submitted through the same operation as `POST
//! /v1/intents`. The answer lists what became of each item, in order.

use std::{
    collections::{BTreeSet, HashMap},
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::{
    extract::{Path, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use hmac::{Hmac, Mac as _};
use serde_json::{Value, json};
use sha2::Sha256;

use super::{api::Front, problem::Problem};
use crate::{
    error::Error,
    intake::{Auth, Intake, Item},
    service::{Caller, Identity, Operation, Role},
};

/// How old a signed request may be, either way, before it is refused as a replay.
pub const SIGNATURE_WINDOW: Duration = Duration::from_secs(300);
pub const SIGNATURE_HEADER: &str = "x-parapet-signature";
pub const TIMESTAMP_HEADER: &str = "x-parapet-timestamp";

/// The configured intakes, by name, with what authenticates their callers.
#[derive(Default)]
pub struct Intakes {
    by_name: HashMap<String, Door>,
}

struct Door {
    intake: Intake,
    /// The HMAC secret, and the identity a correctly signed request acts as: the intake's
    /// source, a detector.
    signed: Option<(Vec<u8>, Arc<Identity>)>,
}

impl Intakes {
    pub fn from_config(intakes: &[Intake]) -> anyhow::Result<Self> {
        let mut by_name = HashMap::new();
        for intake in intakes {
            let signed = match (&intake.auth, &intake.secret_file) {
                (Auth::Hmac, Some(file)) => {
                    let secret = parapet_actions::settings::read_secret(&Some(file.clone()), &None)
                        .map_err(|e| anyhow::anyhow!("intake `{}`: {e}", intake.name))?
                        .unwrap_or_default();
                    anyhow::ensure!(
                        secret.len() >= 32,
                        "intake `{}`: the HMAC secret in `{}` must be at least 32 bytes",
                        intake.name,
                        file.display()
                    );
                    let identity = Identity {
                        name: intake.source.clone(),
                        roles: BTreeSet::from([Role::Detector]),
                        detections: None,
                        action_kinds: None,
                        max_tier: None,
                    };
                    Some((secret.into_bytes(), Arc::new(identity)))
                }
                _ => None,
            };
            by_name.insert(
                intake.name.clone(),
                Door {
                    intake: intake.clone(),
                    signed,
                },
            );
        }
        Ok(Self { by_name })
    }
}

pub async fn ingest(
    State(front): State<Front>,
    Path(name): Path<String>,
    request: Request,
) -> Response {
    match receive(front, &name, request).await {
        Ok(response) => response,
        Err(e) => Problem::from(e).into_response(),
    }
}

async fn receive(front: Front, name: &str, request: Request) -> Result<Response, Error> {
    let Some(door) = front.intakes.by_name.get(name) else {
        return Err(Error::NotFound {
            what: "intake",
            name: name.to_owned(),
        });
    };
    let intake = &door.intake;
    // the route's template, never the URL: a Splunk token is in its query
    let what = format!("POST /v1/ingest/{name}");
    let (parts, body) = request.into_parts();
    let caller = match (&intake.auth, &door.signed) {
        (Auth::Hmac, Some(_)) => None,
        (Auth::QueryToken, _) if !parts.headers.contains_key(header::AUTHORIZATION) => {
            let mut headers = HeaderMap::new();
            if let Some(token) = query_token(parts.uri.query().unwrap_or_default()) {
                let value = HeaderValue::from_str(&format!("Bearer {token}"))
                    .map_err(|_| Error::Unauthenticated("token: not a token".into()))?;
                headers.insert(header::AUTHORIZATION, value);
            }
            Some(front.identify(&headers, parts.extensions.get(), &what)?)
        }
        _ => Some(front.identify(&parts.headers, parts.extensions.get(), &what)?),
    };
    let body = match super::api::read_body(body).await {
        Ok(body) => body,
        Err(problem) => return Ok(problem.into_response()),
    };
    let caller = match (caller, &door.signed) {
        (Some(caller), _) => caller,
        (None, Some((secret, identity))) => {
            let peer = parts.extensions.get::<super::Connection>().map(|c| c.peer);
            verify_signature(&parts.headers, &body, secret, SystemTime::now())
                .inspect_err(|e| front.service.refused(&intake.source, peer, &what, e))?;
            Caller {
                identity: Some(identity.clone()),
                peer,
            }
        }
        (None, None) => return Err(Error::Unauthenticated("no credentials".into())),
    };
    front.service.authorize(&caller, Operation::Submit)?;
    if let Some(id) = &caller.identity
        && id.name != intake.source
    {
        let e = Error::Forbidden(format!(
            "intake `{name}` submits as source `{}`; `{}` may submit only as itself",
            intake.source, id.name
        ));
        front.service.refused(&id.name, caller.peer, &what, &e);
        return Err(e);
    }
    let payload: Value = serde_json::from_slice(&body).map_err(|e| {
        Error::invalid(
            "",
            format!("{}: the body is not JSON: {e}", intake.preset.as_str()),
        )
    })?;
    let items = crate::intake::map(intake, &payload)?;
    let trace = crate::telemetry::trace::from_headers(&parts.headers);
    let mut results = Vec::with_capacity(items.len());
    let mut invalid = Vec::new();
    let mut submitted = 0;
    let mut unavailable = None;
    for item in items {
        match item {
            Item::Skip(why) => results.push(json!({ "skipped": why })),
            Item::Invalid(e) => {
                invalid.push(super::problem::FieldProblem {
                    field: e.field.clone(),
                    detail: e.message.clone(),
                });
                results.push(json!({ "error": Problem::from(Error::Invalid(e)) }));
            }
            Item::Submit(request) => {
                let answer =
                    crate::api::intents::submit(&front.service, &caller, *request, trace.clone())
                        .await;
                match answer {
                    Ok(mut answer) => {
                        submitted += 1;
                        answer.intent = None;
                        results.push(serde_json::to_value(&answer).unwrap_or_default());
                    }
                    Err(e) => {
                        if matches!(
                            e,
                            Error::ShuttingDown | Error::Journal(_) | Error::Storage(_)
                        ) {
                            unavailable = Some(e.to_string());
                        }
                        results.push(json!({ "error": Problem::from(e) }));
                    }
                }
            }
        }
    }
    if let Some(why) = unavailable {
        // the sender retries; what was journaled answers its retry as a repeat
        let problem = Problem::new(StatusCode::SERVICE_UNAVAILABLE, "Unavailable", why)
            .with("results", results);
        return Ok(problem.into_response());
    }
    if submitted == 0 && !invalid.is_empty() && invalid.len() == results.len() {
        let mut problem = Problem::new(
            StatusCode::BAD_REQUEST,
            "InvalidArgument",
            format!(
                "{}: nothing in the payload maps to an intent",
                intake.preset.as_str()
            ),
        );
        problem.errors = invalid;
        return Ok(problem.into_response());
    }
    let body = json!({ "intake": intake.name, "results": results });
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response())
}

/// The `token` parameter of a query string.
fn query_token(query: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
}

/// Checks `X-Parapet-Signature: sha256=HEX`, the HMAC-SHA256 of `TIMESTAMP.BODY`, and that
/// `X-Parapet-Timestamp` (Unix seconds) is within [`SIGNATURE_WINDOW`] of `now`.
pub fn verify_signature(
    headers: &HeaderMap,
    body: &[u8],
    secret: &[u8],
    now: SystemTime,
) -> Result<(), Error> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| Error::Unauthenticated(format!("{name}: is required")))
    };
    let timestamp = header(TIMESTAMP_HEADER)?;
    let signature = header(SIGNATURE_HEADER)?;
    let at: u64 = timestamp
        .trim()
        .parse()
        .map_err(|_| Error::Unauthenticated(format!("{TIMESTAMP_HEADER}: not Unix seconds")))?;
    let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    if now.abs_diff(at) > SIGNATURE_WINDOW.as_secs() {
        return Err(Error::Unauthenticated(format!(
            "{TIMESTAMP_HEADER}: {at} is more than {} s from now; a replay, or a clock off",
            SIGNATURE_WINDOW.as_secs()
        )));
    }
    let given = signature
        .trim()
        .strip_prefix("sha256=")
        .and_then(|h| hex::decode(h).ok())
        .ok_or_else(|| {
            Error::Unauthenticated(format!("{SIGNATURE_HEADER}: expected `sha256=HEX`"))
        })?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret)
        .map_err(|_| Error::Unauthenticated("the intake's secret is unusable".into()))?;
    mac.update(timestamp.trim().as_bytes());
    mac.update(b".");
    mac.update(body);
    // constant time
    mac.verify_slice(&given)
        .map_err(|_| Error::Unauthenticated(format!("{SIGNATURE_HEADER}: does not match")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn signed(secret: &[u8], at: u64, body: &[u8]) -> HeaderMap {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(format!("{at}.").as_bytes());
        mac.update(body);
        let mut headers = HeaderMap::new();
        headers.insert(TIMESTAMP_HEADER, at.to_string().parse().unwrap());
        let sig = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        headers.insert(SIGNATURE_HEADER, sig.parse().unwrap());
        headers
    }

    #[test]
    fn a_signature_holds_for_its_body_and_five_minutes() {
        let secret = [7u8; 32];
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let headers = signed(&secret, 1_800_000_000, b"{}");
        assert!(verify_signature(&headers, b"{}", &secret, now).is_ok());
        let later = now + Duration::from_secs(299);
        assert!(verify_signature(&headers, b"{}", &secret, later).is_ok());
        // another body, another secret, a replay after the window
        let e = verify_signature(&headers, b"{ }", &secret, now).unwrap_err();
        assert!(e.to_string().contains("does not match"), "{e}");
        assert!(verify_signature(&headers, b"{}", &[8u8; 32], now).is_err());
        let e =
            verify_signature(&headers, b"{}", &secret, now + Duration::from_secs(301)).unwrap_err();
        assert!(e.to_string().contains("replay"), "{e}");
        assert!(verify_signature(&HeaderMap::new(), b"{}", &secret, now).is_err());
    }
}
