//! The one error every operation answers with, whatever the front door.
//!
//! Each kind says what the caller should do about it (fix the request, authenticate, wait,
//! retry elsewhere); an invalid request carries the path of the field at fault. Each transport
//! maps it once: `grpc::status` to a gRPC status.

use std::io;

use parapet_model::{Decision, IntentId, Invalid, Outcome};

use crate::journal::AppendError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed; the field path says where.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// Nobody known is calling.
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller is known and may not do this.
    #[error("{0}")]
    Forbidden(String),
    #[error("{what} `{name}` not found")]
    NotFound { what: &'static str, name: String },
    #[error("idempotency key `{key}` was already used for a different request (intent {existing})")]
    IdempotencyConflict { key: String, existing: IntentId },
    /// The request is well formed but the state of things does not allow it.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The guardrails refuse now; the decision says why and when to retry.
    #[error("the guardrails refuse: {}", refusal(.0))]
    Refused(Decision),
    /// A caller's limit is reached (streams open, denied intents journaled).
    #[error("{0}")]
    Exhausted(String),
    /// A follower fell this many changes behind and must start again.
    #[error("watch fell {0} changes behind; watch again")]
    Lagged(u64),
    #[error("parapet is shutting down")]
    ShuttingDown,
    #[error("journal: {0}")]
    Journal(#[from] AppendError),
    #[error("storage: {0}")]
    Storage(#[from] io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An invalid request, at `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid(Invalid::new(field, message))
    }

    /// The path of the field at fault, for an invalid request.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Invalid(i) if !i.field.is_empty() => Some(&i.field),
            _ => None,
        }
    }

    /// The kind of error by its canonical name (the `google.rpc.Code` names), as refusals are
    /// journaled and counted.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "InvalidArgument",
            Self::Unauthenticated(_) => "Unauthenticated",
            Self::Forbidden(_) => "PermissionDenied",
            Self::NotFound { .. } => "NotFound",
            Self::IdempotencyConflict { .. } => "AlreadyExists",
            Self::FailedPrecondition(_) | Self::Refused(_) => "FailedPrecondition",
            Self::Exhausted(_) => "ResourceExhausted",
            Self::Lagged(_) => "Aborted",
            Self::ShuttingDown | Self::Journal(_) | Self::Storage(_) => "Unavailable",
        }
    }

    /// Whether the fault is Parapet's own (storage, journal), worth a log line.
    pub fn is_internal(&self) -> bool {
        matches!(self, Self::Journal(_) | Self::Storage(_))
    }
}

/// A refusal's reasons in one line, for an error message.
pub fn refusal(decision: &Decision) -> String {
    let objections: Vec<_> = decision
        .reasons
        .iter()
        .filter(|r| r.effect == Outcome::Deny || r.effect == Outcome::Shadow)
        .map(|r| format!("{}: {}", r.guardrail, r.message))
        .collect();
    objections.join("; ")
}
