//! The lifecycle of an intent, as one state machine.
//!
//! ```text
//! received → decided → executing → active → expiring    → rolled_back
//!          ↘ awaiting_approval      ↘ failed   ↘ rolling_back ↗   ↘ rollback_failed
//!          ↘ denied | shadowed
//! ```
//!
//! Every change is an [`Event`]; [`IntentRecord::apply`] is the only place that changes state, and
//! the journal writer calls it *before* the event is written, so an impossible transition is
//! refused instead of recorded. The same function rebuilds the state from the journal on start.

use std::time::{Duration, SystemTime};

use parapet_actions::RollbackHandle;
use parapet_model::{ActionKind, Decision, Intent, IntentId, Outcome, serde_time};
use parapet_policy::Seen;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum State {
    Received,
    Decided,
    AwaitingApproval,
    Executing,
    Active,
    Expiring,
    RollingBack,
    RolledBack,
    Denied,
    Shadowed,
    Rejected,
    Failed,
    RollbackFailed,
}

impl State {
    /// Whether nothing more will happen without an operator.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::RolledBack
                | Self::Denied
                | Self::Shadowed
                | Self::Rejected
                | Self::Failed
                | Self::RollbackFailed
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Received => "received",
            Self::Decided => "decided",
            Self::AwaitingApproval => "awaiting_approval",
            Self::Executing => "executing",
            Self::Active => "active",
            Self::Expiring => "expiring",
            Self::RollingBack => "rolling_back",
            Self::RolledBack => "rolled_back",
            Self::Denied => "denied",
            Self::Shadowed => "shadowed",
            Self::Rejected => "rejected",
            Self::Failed => "failed",
            Self::RollbackFailed => "rollback_failed",
        }
    }
}

/// Why actions are being undone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RollbackCause {
    /// The TTL passed.
    Ttl,
    /// An operator asked.
    Operator,
    /// A later step of the plan failed; the earlier ones are undone.
    Compensation,
    /// An operator judged the intent a false positive.
    Verdict,
}

/// An operator's later judgement of an intent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    TruePositive,
    FalsePositive,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TruePositive => "true_positive",
            Self::FalsePositive => "false_positive",
        }
    }
}

/// A change to an intent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IntentEvent {
    Received {
        intent: Intent,
    },
    Decided {
        decision: Decision,
        /// What the guardrails saw: with the intent and the policy digest, enough to decide again.
        seen: Box<Seen>,
    },
    StepStarted {
        step: u32,
    },
    StepSucceeded {
        step: u32,
        handle: RollbackHandle,
    },
    StepFailed {
        step: u32,
        error: String,
        retryable: bool,
    },
    Activated {
        #[serde(with = "serde_time::opt_time")]
        expires_at: Option<SystemTime>,
    },
    TtlExtended {
        #[serde(with = "serde_time::duration")]
        ttl: Duration,
        #[serde(with = "serde_time::time")]
        expires_at: SystemTime,
    },
    RollbackStarted {
        cause: RollbackCause,
        reason: String,
    },
    StepRolledBack {
        step: u32,
    },
    StepRollbackFailed {
        step: u32,
        error: String,
    },
    RolledBack,
    Failed {
        error: String,
    },
    RollbackFailed {
        error: String,
    },
    /// A person approved a waiting intent; `decision` is the guardrails' re-check at that moment.
    Approved {
        by: String,
        reason: String,
        decision: Decision,
        seen: Box<Seen>,
    },
    /// A waiting intent went unanswered too long and passes to the next group of approvers.
    Escalated {
        level: u32,
        group: String,
    },
    /// A person rejected a waiting intent, or it waited too long.
    Rejected {
        by: String,
        reason: String,
    },
    /// A person judged the detection behind the intent; changes no state.
    Judged {
        by: String,
        verdict: Verdict,
        note: String,
        /// For a false positive: until when this detection is suppressed on these targets.
        #[serde(with = "serde_time::opt_time")]
        suppress_until: Option<SystemTime>,
    },
}

/// A change to Parapet itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SystemEvent {
    /// The kill switch, for all action kinds (`kind` unset) or one, was engaged or released.
    KillSwitch {
        kind: Option<ActionKind>,
        engaged: bool,
        reason: String,
    },
    /// A policy took effect; decisions from now on carry its digest.
    PolicyLoaded { digest: String, origin: String },
    /// An operator rolls back every active intent a selector matches, as one operation.
    BulkRollbackStarted {
        op: String,
        selector: String,
        reason: String,
        members: Vec<IntentId>,
    },
    /// A bulk rollback's members have all been dealt with.
    BulkRollbackFinished {
        op: String,
        rolled_back: u32,
        failed: u32,
    },
    /// A detection's `auto` tiers act as `approval` from now on (too many false positives), or
    /// act alone again (`demoted: false`, an operator's reset).
    DetectionDemoted {
        rule: String,
        demoted: bool,
        reason: String,
    },
    /// A policy was offered and refused; the one in effect stays.
    PolicyRefused { origin: String, error: String },
    /// Retention removed the entries up to `through`; the chain of what remains starts from
    /// `anchor`, the hash of entry `through`.
    JournalCompacted {
        through: u64,
        anchor: String,
        entries: u64,
        intents: u64,
    },
    /// A call was refused: unauthenticated, or outside the caller's roles. A security event.
    AccessDenied {
        /// Empty when the caller could not be identified.
        identity: String,
        /// The address the call came from.
        peer: String,
        method: String,
        code: String,
        reason: String,
    },
    /// The token file changed and was read again: who may call, and as what, is now as it
    /// says. Each token as its identity, roles and ceiling, and the first 8 hex digits of its
    /// SHA-256 (never the token).
    TokensChanged {
        added: Vec<String>,
        removed: Vec<String>,
        /// Tokens whose identity, roles or ceiling changed: as they are now.
        changed: Vec<String>,
    },
}

/// A journaled event: about an intent, or about Parapet itself. Encoded as one enum whose
/// variants are the intent events' and then the system events' (`encoding`), as the journal
/// has always kept them.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Intent(IntentEvent),
    System(SystemEvent),
}

impl From<IntentEvent> for Event {
    fn from(e: IntentEvent) -> Self {
        Self::Intent(e)
    }
}

impl From<SystemEvent> for Event {
    fn from(e: SystemEvent) -> Self {
        Self::System(e)
    }
}

impl Event {
    /// Whether this is about Parapet itself rather than an intent.
    pub fn is_system(&self) -> bool {
        matches!(self, Self::System(_))
    }

    /// The intent event, if this is one.
    pub fn intent(&self) -> Option<&IntentEvent> {
        match self {
            Self::Intent(e) => Some(e),
            Self::System(_) => None,
        }
    }

    /// The system event, if this is one.
    pub fn system(&self) -> Option<&SystemEvent> {
        match self {
            Self::System(e) => Some(e),
            Self::Intent(_) => None,
        }
    }
}

/// One table of every event kind: the `kind` of each event type and [`Event::KINDS`] are made
/// from it.
macro_rules! event_kinds {
    (
        intent { $($ip:pat => $iname:literal,)* }
        system { $($sp:pat => $sname:literal,)* }
    ) => {
        impl IntentEvent {
            /// The event's name in the journal and the API.
            pub fn kind(&self) -> &'static str {
                match self {
                    $($ip => $iname,)*
                }
            }
        }

        impl SystemEvent {
            /// The event's name in the journal and the API.
            pub fn kind(&self) -> &'static str {
                match self {
                    $($sp => $sname,)*
                }
            }
        }

        impl Event {
            /// Every value [`Event::kind`] can take.
            pub const KINDS: &'static [&'static str] = &[$($iname,)* $($sname),*];

            /// The event's name in the journal and the API.
            pub fn kind(&self) -> &'static str {
                match self {
                    Self::Intent(e) => e.kind(),
                    Self::System(e) => e.kind(),
                }
            }
        }
    };
}

event_kinds! {
    intent {
    IntentEvent::Received { .. } => "received",
    IntentEvent::Decided { .. } => "decided",
    IntentEvent::StepStarted { .. } => "step_started",
    IntentEvent::StepSucceeded { .. } => "step_succeeded",
    IntentEvent::StepFailed { .. } => "step_failed",
    IntentEvent::Activated { .. } => "activated",
    IntentEvent::TtlExtended { .. } => "ttl_extended",
    IntentEvent::RollbackStarted { .. } => "rollback_started",
    IntentEvent::StepRolledBack { .. } => "step_rolled_back",
    IntentEvent::StepRollbackFailed { .. } => "step_rollback_failed",
    IntentEvent::RolledBack => "rolled_back",
    IntentEvent::Failed { .. } => "failed",
    IntentEvent::RollbackFailed { .. } => "rollback_failed",
    IntentEvent::Approved { .. } => "approved",
    IntentEvent::Escalated { .. } => "escalated",
    IntentEvent::Rejected { .. } => "rejected",
    IntentEvent::Judged { .. } => "verdict",
    }
    system {
    SystemEvent::KillSwitch { .. } => "kill_switch",
    SystemEvent::BulkRollbackStarted { .. } => "bulk_rollback_started",
    SystemEvent::DetectionDemoted { demoted: true, .. } => "detection_demoted",
    SystemEvent::DetectionDemoted { demoted: false, .. } => "detection_restored",
    SystemEvent::BulkRollbackFinished { .. } => "bulk_rollback_finished",
    SystemEvent::PolicyLoaded { .. } => "policy_loaded",
    SystemEvent::PolicyRefused { .. } => "policy_refused",
    SystemEvent::JournalCompacted { .. } => "journal_compacted",
    SystemEvent::AccessDenied { .. } => "access_denied",
    SystemEvent::TokensChanged { .. } => "tokens_changed",
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StepState {
    Pending,
    Executing,
    Done,
    Failed,
    RollingBack,
    RolledBack,
    RollbackFailed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub state: StepState,
    /// Set once the step succeeded; what undoes it.
    pub handle: Option<RollbackHandle>,
    pub error: Option<String>,
}

/// Step states from which a step can be undone.
const UNDOABLE: &[StepState] = &[
    StepState::Done,
    StepState::RollingBack,
    StepState::RollbackFailed,
];

impl StepRecord {
    /// Whether the step acted and has not been undone yet.
    pub fn needs_rollback(&self) -> bool {
        self.handle.is_some() && UNDOABLE.contains(&self.state)
    }
}

/// An intent and everything that happened to it: the fold of its journal entries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntentRecord {
    pub intent: Intent,
    pub decision: Option<Decision>,
    pub state: State,
    pub steps: Vec<StepRecord>,
    pub expires_at: Option<SystemTime>,
    pub rollback_cause: Option<RollbackCause>,
    pub error: Option<String>,
    /// Who approved or rejected it, and why.
    pub answer: Option<Answer>,
    /// The latest verdict on it.
    pub verdict: Option<(Verdict, String)>,
    /// How many times it escalated while waiting for approval.
    pub escalation: u32,
    pub updated_at: SystemTime,
    /// The journal entry that last changed the record.
    pub last_seq: u64,
}

/// A person's answer to an intent awaiting approval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    pub approved: bool,
    pub by: String,
    pub reason: String,
}

/// An event that is impossible in the intent's current state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{event}` is not possible while the intent is `{state}`")]
pub struct InvalidTransition {
    pub state: &'static str,
    pub event: &'static str,
}

impl IntentRecord {
    /// The record a `Received` event starts.
    pub fn received(intent: Intent, seq: u64) -> Self {
        Self {
            steps: vec![
                StepRecord {
                    state: StepState::Pending,
                    handle: None,
                    error: None,
                };
                intent.steps.len()
            ],
            updated_at: intent.received_at,
            intent,
            decision: None,
            state: State::Received,
            expires_at: None,
            rollback_cause: None,
            error: None,
            answer: None,
            verdict: None,
            escalation: 0,
            last_seq: seq,
        }
    }

    /// Applies one event, or refuses it without changing anything.
    pub fn apply(
        &mut self,
        event: &IntentEvent,
        seq: u64,
        time: SystemTime,
    ) -> Result<(), InvalidTransition> {
        let refuse = InvalidTransition {
            state: self.state.as_str(),
            event: event.kind(),
        };
        let mut next = self.clone();
        next.state = match (self.state, event) {
            (State::Received, IntentEvent::Decided { decision, .. }) => {
                next.decision = Some(decision.clone());
                match decision.outcome {
                    Outcome::Execute => State::Decided,
                    Outcome::AwaitApproval => State::AwaitingApproval,
                    Outcome::Shadow => State::Shadowed,
                    Outcome::Deny => State::Denied,
                }
            }
            (
                State::AwaitingApproval,
                IntentEvent::Approved {
                    by,
                    reason,
                    decision,
                    ..
                },
            ) => {
                if decision.outcome != Outcome::Execute {
                    return Err(refuse);
                }
                next.decision = Some(decision.clone());
                next.answer = Some(Answer {
                    approved: true,
                    by: by.clone(),
                    reason: reason.clone(),
                });
                State::Decided
            }
            (State::AwaitingApproval, IntentEvent::Escalated { level, .. })
                if *level > self.escalation =>
            {
                next.escalation = *level;
                State::AwaitingApproval
            }
            (State::AwaitingApproval, IntentEvent::Rejected { by, reason }) => {
                next.answer = Some(Answer {
                    approved: false,
                    by: by.clone(),
                    reason: reason.clone(),
                });
                State::Rejected
            }
            (state, IntentEvent::Judged { by, verdict, .. }) if state != State::Received => {
                next.verdict = Some((*verdict, by.clone()));
                state
            }
            (State::Decided | State::Executing, IntentEvent::StepStarted { step }) => {
                next.step_mut(*step, &[StepState::Pending, StepState::Executing], &refuse)?
                    .state = StepState::Executing;
                State::Executing
            }
            (State::Executing, IntentEvent::StepSucceeded { step, handle }) => {
                let s = next.step_mut(*step, &[StepState::Executing], &refuse)?;
                s.state = StepState::Done;
                s.handle = Some(handle.clone());
                State::Executing
            }
            (State::Executing, IntentEvent::StepFailed { step, error, .. }) => {
                let s = next.step_mut(*step, &[StepState::Executing], &refuse)?;
                s.state = StepState::Failed;
                s.error = Some(error.clone());
                State::Executing
            }
            (State::Executing, IntentEvent::Activated { expires_at }) => {
                if next.steps.iter().any(|s| s.state != StepState::Done) {
                    return Err(refuse);
                }
                next.expires_at = *expires_at;
                State::Active
            }
            (State::Active, IntentEvent::TtlExtended { expires_at, .. }) => {
                next.expires_at = Some(*expires_at);
                State::Active
            }
            (
                State::Active,
                IntentEvent::RollbackStarted {
                    cause: RollbackCause::Ttl,
                    ..
                },
            ) => {
                next.rollback_cause = Some(RollbackCause::Ttl);
                State::Expiring
            }
            (
                State::Active | State::RollbackFailed,
                IntentEvent::RollbackStarted {
                    cause: RollbackCause::Operator | RollbackCause::Verdict,
                    ..
                },
            )
            | (
                State::Executing,
                IntentEvent::RollbackStarted {
                    cause: RollbackCause::Compensation,
                    ..
                },
            ) => {
                let IntentEvent::RollbackStarted { cause, .. } = event else {
                    return Err(refuse);
                };
                next.rollback_cause = Some(*cause);
                next.expires_at = None;
                State::RollingBack
            }
            (State::Expiring | State::RollingBack, IntentEvent::StepRolledBack { step }) => {
                let s = next.step_mut(*step, UNDOABLE, &refuse)?;
                s.state = StepState::RolledBack;
                s.error = None;
                next.state
            }
            (
                State::Expiring | State::RollingBack,
                IntentEvent::StepRollbackFailed { step, error },
            ) => {
                let s = next.step_mut(*step, UNDOABLE, &refuse)?;
                s.state = StepState::RollbackFailed;
                s.error = Some(error.clone());
                next.state
            }
            (State::Expiring | State::RollingBack, IntentEvent::RolledBack)
                if next.rollback_cause != Some(RollbackCause::Compensation) =>
            {
                if next.steps.iter().any(StepRecord::needs_rollback) {
                    return Err(refuse);
                }
                next.expires_at = None;
                State::RolledBack
            }
            (State::Decided | State::Executing, IntentEvent::Failed { error })
                if next.steps.iter().all(|s| !s.needs_rollback()) =>
            {
                next.error = Some(error.clone());
                State::Failed
            }
            (State::RollingBack, IntentEvent::Failed { error })
                if next.rollback_cause == Some(RollbackCause::Compensation)
                    && next.steps.iter().all(|s| !s.needs_rollback()) =>
            {
                next.error = Some(error.clone());
                State::Failed
            }
            (State::Expiring | State::RollingBack, IntentEvent::RollbackFailed { error }) => {
                next.error = Some(error.clone());
                State::RollbackFailed
            }
            _ => return Err(refuse),
        };
        next.updated_at = time;
        next.last_seq = seq;
        *self = next;
        Ok(())
    }

    fn step_mut(
        &mut self,
        step: u32,
        allowed: &[StepState],
        refuse: &InvalidTransition,
    ) -> Result<&mut StepRecord, InvalidTransition> {
        self.steps
            .get_mut(step as usize)
            .filter(|s| allowed.contains(&s.state))
            .ok_or_else(|| refuse.clone())
    }
}

mod encoding;

#[cfg(test)]
mod tests;
