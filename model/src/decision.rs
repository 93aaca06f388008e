//! The guardrails' verdict on an intent.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What Parapet does with an intent, ordered from least to most restrictive: when guardrails
/// disagree, the most restrictive outcome wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Execute,
    AwaitApproval,
    Shadow,
    Deny,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Execute => "execute",
            Self::AwaitApproval => "await_approval",
            Self::Shadow => "shadow",
            Self::Deny => "deny",
        }
    }
}

/// One guardrail's finding: which guardrail, what it saw, and what it asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    /// Stable name of the guardrail, e.g. `inventory`; clients match on it.
    pub guardrail: String,
    /// The outcome this finding asks for; `Execute` when it saw nothing against acting.
    pub effect: Outcome,
    /// What the guardrail saw, for people.
    pub message: String,
    /// The step the finding is about, when it is about one.
    pub step: Option<u32>,
}

/// The verdict on an intent with everything needed to explain and reproduce it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub outcome: Outcome,
    /// Every finding, in evaluation order, including those that allowed.
    pub reasons: Vec<Reason>,
    /// Digest of the policy that decided, so a decision can be traced to a policy version.
    pub policy_digest: String,
    /// When a limit refused: how long until trying again may succeed.
    #[serde(with = "crate::serde_time::opt_duration")]
    pub retry_after: Option<Duration>,
}
