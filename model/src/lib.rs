//! Parapet's domain vocabulary: what an intent, a step, a target and a decision are.
//!
//! Every type here is valid by construction: the fallible constructors are the only way to build
//! the newtypes, so code past the API boundary never re-checks input. Nothing here does I/O.
//!
//! # Layout
//! - [`address`]: addresses in their one canonical form; the special-purpose ranges.
//! - [`intent`]: intents, detections, steps, targets and their validated parts.
//! - [`decision`]: the guardrails' verdict and its reasons.
//! - [`finding`]: an OCSF Detection Finding carried as evidence, checked for what OCSF requires.
//! - [`Invalid`]: the error that names the offending field.

#![forbid(unsafe_code)]

pub mod address;
pub mod decision;
pub mod finding;
pub mod intent;
pub mod serde_time;

pub use address::Address;
pub use decision::{Decision, Outcome, Reason};
pub use finding::Finding;
pub use intent::{
    ActionKind, Confidence, Detection, Intent, IntentId, IntentRequest, Severity, Step, Target,
    limits,
};

/// Input that cannot become a domain value, with the path of the field at fault
/// (`steps[0].target.id`), so an API error can point at it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Invalid {
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

impl Invalid {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }

    /// Places a nested error under `parent`: `target.id` under `steps[2]` is `steps[2].target.id`.
    #[must_use]
    pub fn under(mut self, parent: &str) -> Self {
        self.field = if self.field.is_empty() {
            parent.to_owned()
        } else {
            format!("{parent}.{}", self.field)
        };
        self
    }
}
