//! The one decision path: decide an intent, and for one that will act, take what it uses.
//!
//! Submissions, approvals and replays all decide through [`Policy::decide_and_take`], so a
//! decision is made the same way wherever it is made: the guardrails first, then (for an
//! intent that would execute) a cell of each rate limit it falls under, then its budget units,
//! held until it ends or its TTL passes. Pure: the same policy, intent, conditions and
//! allowance give the same decision and the same allowance after.

use std::{collections::BTreeSet, time::SystemTime};

use parapet_model::{Decision, Intent, Outcome};

use crate::{
    DecisionInput, KillSwitches, Ledger, Policy, Seen, rate::RateCells, rules::Suppressions,
};

/// What decisions take from: budget units and rate-limit cells.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Allowance {
    pub ledger: Ledger,
    pub rates: RateCells,
}

/// What a decision reads besides the allowance.
#[derive(Debug, Clone, Copy)]
pub struct Conditions<'a> {
    pub kill_switches: &'a KillSwitches,
    pub suppressions: &'a Suppressions,
    /// Detections demoted after too many false positives.
    pub demoted: &'a BTreeSet<String>,
    /// A person approved the intent just now.
    pub approved: bool,
    /// The submitting source's ceiling, if it has one.
    pub ceiling: Option<crate::Tier>,
}

impl<'a> Conditions<'a> {
    /// The decision's input: the intent at `now`, under these conditions and `ledger`.
    fn input(&self, intent: &'a Intent, now: SystemTime, ledger: &'a Ledger) -> DecisionInput<'a> {
        DecisionInput {
            detection: &intent.detection,
            steps: &intent.steps,
            now,
            kill_switches: self.kill_switches,
            ledger,
            suppressions: self.suppressions,
            demoted: self.demoted,
            approved: self.approved,
            ceiling: self.ceiling,
        }
    }
}

/// When an intent that acts at `at` should end: its TTL later, if it has one (and the time
/// can be told).
pub fn ends(intent: &Intent, at: SystemTime) -> Option<SystemTime> {
    intent.ttl.and_then(|ttl| at.checked_add(ttl))
}

impl Allowance {
    /// Takes what an intent that acts at `at` uses, without deciding: a replay following what
    /// really happened. Refusing rate limits take nothing.
    pub fn take(&mut self, policy: &Policy, intent: &Intent, at: SystemTime) {
        self.rates.take(&policy.rate_limits, intent, at);
        self.reserve(policy, intent, at);
    }

    fn reserve(&mut self, policy: &Policy, intent: &Intent, at: SystemTime) {
        let claims = policy.claims(&intent.steps);
        self.ledger
            .reserve(intent.id, at, ends(intent, at), &claims);
    }

    /// Forgets what no decision at `now` can see any more: units taken before the longest
    /// budget window, rate cells whose time has passed (once there are many).
    pub fn prune(&mut self, policy: &Policy, now: SystemTime) {
        if let Some(before) = now.checked_sub(policy.longest_window()) {
            self.ledger.prune(before);
        }
        self.rates.prune_when_grown(now);
    }
}

impl Policy {
    /// What deciding `intent` at `now` would answer, taking nothing: no rate-limit cell, no
    /// budget unit (the allowance is only pruned of what has ended, as any decision would).
    pub fn what_if(
        &self,
        intent: &Intent,
        now: SystemTime,
        conditions: Conditions<'_>,
        allowance: &mut Allowance,
    ) -> Decision {
        allowance.prune(self, now);
        let input = conditions.input(intent, now, &allowance.ledger);
        let mut decision = self.decide(input);
        if decision.outcome == Outcome::Execute {
            let check = allowance.rates.peek(&self.rate_limits, intent, now);
            if check.denied {
                decision.outcome = Outcome::Deny;
                decision.retry_after = check.retry_after;
            }
            decision.reasons.extend(check.reasons);
        }
        decision
    }

    /// Decides an intent at `now`; when it will execute, takes a cell of each rate limit it
    /// falls under (refused by any, it is denied, with when to retry) and then reserves its
    /// budget units until it ends. Returns the decision and what it saw.
    pub fn decide_and_take(
        &self,
        intent: &Intent,
        now: SystemTime,
        conditions: Conditions<'_>,
        allowance: &mut Allowance,
    ) -> (Decision, Seen) {
        allowance.prune(self, now);
        let input = conditions.input(intent, now, &allowance.ledger);
        let mut decision = self.decide(input);
        let mut seen = Seen::capture(self, &input);
        if decision.outcome == Outcome::Execute {
            let check = allowance.rates.take(&self.rate_limits, intent, now);
            seen.rate_limits = check.seen;
            if check.denied {
                decision.outcome = Outcome::Deny;
                decision.retry_after = check.retry_after;
            }
            decision.reasons.extend(check.reasons);
        }
        if decision.outcome == Outcome::Execute {
            allowance.reserve(self, intent, now);
        }
        (decision, seen)
    }
}
