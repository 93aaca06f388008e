//! What the guardrails saw when they decided, kept with the decision.
//!
//! With the intent (journaled just before) and the policy (named by its digest), a [`Seen`]
//! holds everything a decision depended on: the kill switches, the detection's demotion, the
//! suppressions that matched, the budget usage and the rate limiters' answers. An auditor reads
//! it to understand a decision; [`Seen::state`] gives the state back to decide again.

use std::{
    collections::BTreeSet,
    time::{Duration, SystemTime},
};

use parapet_model::{ActionKind, Detection, Step, serde_time};
use serde::{Deserialize, Serialize};

use crate::{
    DecisionInput, KillSwitches, Policy,
    rules::{Suppression, Suppressions},
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Seen {
    #[serde(with = "serde_time::time")]
    pub now: SystemTime,
    /// A person had approved the intent (the re-check at approval).
    pub approved: bool,
    pub kill_switch_global: bool,
    /// Action kinds whose own kill switch was on.
    pub kill_switch_kinds: Vec<ActionKind>,
    /// The detection was demoted: its `auto` tiers acted as `approval`.
    pub demoted: bool,
    /// Suppressions in force on the intent's steps.
    pub suppressed: Vec<SuppressionSeen>,
    /// Usage of every budget the steps fall under, before this intent.
    pub budgets: Vec<BudgetSeen>,
    /// What each rate limiter answered; consulted only for an intent that would execute.
    pub rate_limits: Vec<RateSeen>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuppressionSeen {
    pub step: u32,
    #[serde(with = "serde_time::time")]
    pub until: SystemTime,
    pub by: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetSeen {
    pub budget: String,
    pub scope_value: String,
    /// Units held by active intents.
    pub active: u32,
    /// Units taken within the budget's window, when it has one.
    pub in_window: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateSeen {
    pub limit: String,
    pub key: String,
    pub allowed: bool,
    #[serde(with = "serde_time::opt_duration")]
    pub retry_after: Option<Duration>,
}

impl Seen {
    /// A decision that saw no guardrail state at all: no switch, suppression or usage.
    pub fn nothing(now: SystemTime) -> Self {
        Self {
            now,
            approved: false,
            kill_switch_global: false,
            kill_switch_kinds: Vec::new(),
            demoted: false,
            suppressed: Vec::new(),
            budgets: Vec::new(),
            rate_limits: Vec::new(),
        }
    }

    /// Captures what `input` holds that bears on this intent under `policy`.
    pub fn capture(policy: &Policy, input: &DecisionInput<'_>) -> Self {
        let rule = &input.detection.rule_id;
        let mut budgets: Vec<BudgetSeen> = Vec::new();
        for claim in policy.claims(input.steps) {
            if budgets
                .iter()
                .any(|b| b.budget == claim.0 && b.scope_value == claim.1)
            {
                continue;
            }
            let window = policy
                .budgets
                .iter()
                .find(|b| b.name == claim.0)
                .and_then(|b| b.window.as_ref())
                .map(|w| w.0);
            let in_window = window.map(|w| {
                let since = input.now.checked_sub(w).unwrap_or(SystemTime::UNIX_EPOCH);
                input.ledger.taken_since(&claim, since).0
            });
            budgets.push(BudgetSeen {
                active: input.ledger.active(&claim),
                in_window,
                budget: claim.0,
                scope_value: claim.1,
            });
        }
        Self {
            now: input.now,
            approved: input.approved,
            kill_switch_global: input.kill_switches.global,
            kill_switch_kinds: input.kill_switches.kinds.iter().cloned().collect(),
            demoted: input.demoted.contains(rule),
            suppressed: input
                .steps
                .iter()
                .enumerate()
                .filter_map(|(i, step)| {
                    let s = input.suppressions.get(rule, step, input.now)?;
                    Some(SuppressionSeen {
                        step: i as u32,
                        until: s.until,
                        by: s.by.clone(),
                    })
                })
                .collect(),
            budgets,
            rate_limits: Vec::new(),
        }
    }

    /// The state this decision saw, but for budgets: those come from `ledger`, which a replay
    /// keeps under the policy it replays.
    pub fn state(&self, detection: &Detection, steps: &[Step]) -> SeenState {
        let mut suppressions = Suppressions::default();
        for s in &self.suppressed {
            if let Some(step) = steps.get(s.step as usize) {
                let by = s.by.clone();
                suppressions.insert(&detection.rule_id, step, Suppression { until: s.until, by });
            }
        }
        SeenState {
            kill_switches: KillSwitches {
                global: self.kill_switch_global,
                kinds: self.kill_switch_kinds.iter().cloned().collect(),
            },
            suppressions,
            demoted: if self.demoted {
                [detection.rule_id.clone()].into()
            } else {
                BTreeSet::new()
            },
        }
    }
}

/// The guardrails' state rebuilt from a [`Seen`], to decide again with.
pub struct SeenState {
    pub kill_switches: KillSwitches,
    pub suppressions: Suppressions,
    pub demoted: BTreeSet<String>,
}

impl SeenState {
    /// The conditions a decision saw, to decide again under another policy, with the
    /// submitting source's ceiling as it is now (ceilings are the callers', not the policy's).
    pub fn conditions<'a>(
        &'a self,
        seen: &Seen,
        ceiling: Option<crate::Tier>,
    ) -> crate::Conditions<'a> {
        crate::Conditions {
            kill_switches: &self.kill_switches,
            suppressions: &self.suppressions,
            demoted: &self.demoted,
            approved: seen.approved,
            ceiling,
        }
    }
}
