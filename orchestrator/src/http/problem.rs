//! Errors as `application/problem+json` (RFC 9457): the one mapping of Parapet's errors to
//! HTTP answers, for every route.

use std::time::Duration;

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::{error::Error, service::lists::Scheme};

pub const CONTENT_TYPE: &str = "application/problem+json";

/// One field at fault, named by its path in the request message (`steps[0].target.id`), as
/// the gRPC front door names it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FieldProblem {
    pub field: String,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    /// The canonical name of the error (`InvalidArgument`, `PermissionDenied`, ...), as gRPC
    /// would answer it.
    pub code: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldProblem>,
    /// Members particular to a problem (the decision of a refusal, the intent it journaled).
    #[serde(flatten)]
    pub extensions: Map<String, Value>,
    #[serde(skip)]
    pub retry_after: Option<Duration>,
    #[serde(skip)]
    pub challenge: Option<Scheme>,
}

impl Problem {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            kind: "about:blank",
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail: detail.into(),
            code,
            errors: Vec::new(),
            extensions: Map::new(),
            retry_after: None,
            challenge: None,
        }
    }

    /// A request at fault in one field.
    pub fn invalid(field: &str, detail: impl Into<String>) -> Self {
        Error::invalid(field, detail).into()
    }

    pub fn with(mut self, member: &str, value: impl Into<Value>) -> Self {
        self.extensions.insert(member.to_owned(), value.into());
        self
    }

    /// The scheme a 401 asks the client for.
    pub fn challenge(mut self, scheme: Scheme) -> Self {
        self.challenge = Some(scheme);
        self
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl From<Error> for Problem {
    fn from(e: Error) -> Self {
        if e.is_internal() {
            tracing::error!(error = %e, "request failed");
        }
        let status = status_of(&e);
        let mut problem = Problem::new(status, e.code(), e.to_string());
        match &e {
            Error::Invalid(i) => problem.errors.push(FieldProblem {
                field: i.field.clone(),
                detail: i.message.clone(),
            }),
            Error::Refused(d) => problem.retry_after = d.retry_after,
            Error::Exhausted(_) => problem.retry_after = Some(Duration::from_secs(1)),
            Error::IdempotencyConflict { existing, .. } => {
                problem = problem.with("intentId", existing.to_string());
            }
            Error::Unauthenticated(_) => problem.challenge = Some(Scheme::Bearer),
            _ => {}
        }
        problem
    }
}

/// The HTTP status of an error, for every page and answer.
pub fn status_of(e: &Error) -> StatusCode {
    match e {
        Error::Invalid(_) => StatusCode::BAD_REQUEST,
        Error::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
        Error::Forbidden(_) => StatusCode::FORBIDDEN,
        Error::NotFound { .. } => StatusCode::NOT_FOUND,
        Error::IdempotencyConflict { .. } => StatusCode::CONFLICT,
        Error::Refused(d) if d.retry_after.is_some() => StatusCode::TOO_MANY_REQUESTS,
        Error::FailedPrecondition(_) | Error::Refused(_) => StatusCode::CONFLICT,
        Error::Exhausted(_) => StatusCode::TOO_MANY_REQUESTS,
        // a follower too slow for the changes: it may start again at once
        Error::Lagged(_) => StatusCode::CONFLICT,
        Error::ShuttingDown | Error::Journal(_) | Error::Storage(_) => {
            StatusCode::SERVICE_UNAVAILABLE
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(after) = self.retry_after {
            // whole seconds, rounded up: never sooner than the guardrail said
            let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        if status == StatusCode::UNAUTHORIZED {
            let challenge = match self.challenge.unwrap_or(Scheme::Bearer) {
                Scheme::Basic => "Basic realm=\"parapet\", charset=\"UTF-8\"",
                Scheme::Bearer => "Bearer realm=\"parapet\"",
            };
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        response
    }
}
