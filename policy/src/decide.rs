//! The guardrails and the order they run in.
//!
//! Every guardrail reports what it saw, so a decision always explains itself. The outcome is the
//! most restrictive effect any guardrail asked for (`deny` > `shadow` > `await_approval` >
//! `execute`). The order:
//!
//! 1. [`guardrail::KILL_SWITCH`]: is the kill switch on, globally or for a step's action kind?
//! 2. [`guardrail::INVENTORY`]: is the detection documented? Unknown detections get the policy's
//!    `unknown_detection` (approval or deny), never `execute`.
//!    Then [`guardrail::SUPPRESSION`]: per step, was this detection on this target judged a
//!    false positive recently?
//! 3. [`guardrail::TARGET_SCOPE`]: per step, is an address block narrower than the minimum prefix?
//! 4. [`guardrail::PROTECTED_TARGET`]: per step, does a protection rule match the target?
//! 5. [`guardrail::AUTONOMY_TIER`]: per step, the detection × action kind tier.
//! 6. [`guardrail::THRESHOLD`]: severity and confidence against the detection's minimums for
//!    acting alone (below: approval) and for acting at all (below: deny).
//! 7. [`guardrail::CHANGE_FREEZE`]: per step, is its action kind frozen now? Then approval.
//! 8. [`guardrail::SHADOW_MODE`]: is the policy in shadow mode as a whole?
//! 9. [`guardrail::BUDGET`]: only for an intent that would otherwise execute: would it take a
//!    budget past its limit? The engine then checks 10, `rate_limit`, and reserves.
//!
//! Budgets and rate limits are consulted only for intents that would execute, because only those
//! consume them.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    time::{Duration, SystemTime},
};

use parapet_model::{ActionKind, Decision, Detection, Outcome, Reason, Step, address::overlap};

use crate::{
    Policy, Tier, UnknownDetection,
    ledger::{Claim, Ledger},
    rules::{Budget, ProtectedEffect, Suppressions},
};

/// Stable guardrail names, as they appear in [`Reason::guardrail`].
pub mod guardrail {
    pub const KILL_SWITCH: &str = "kill_switch";
    pub const INVENTORY: &str = "inventory";
    pub const SUPPRESSION: &str = "suppression";
    pub const TARGET_SCOPE: &str = "target_scope";
    pub const PROTECTED_TARGET: &str = "protected_target";
    pub const AUTONOMY_TIER: &str = "autonomy_tier";
    pub const THRESHOLD: &str = "threshold";
    pub const CHANGE_FREEZE: &str = "change_freeze";
    pub const SHADOW_MODE: &str = "shadow_mode";
    pub const BUDGET: &str = "budget";
    pub const RATE_LIMIT: &str = "rate_limit";
}

/// Which kill switches are on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KillSwitches {
    pub global: bool,
    pub kinds: BTreeSet<ActionKind>,
}

impl KillSwitches {
    pub fn stops(&self, kind: &ActionKind) -> bool {
        self.global || self.kinds.contains(kind)
    }
}

/// Everything a decision depends on besides the policy.
#[derive(Debug, Clone, Copy)]
pub struct DecisionInput<'a> {
    pub detection: &'a Detection,
    pub steps: &'a [Step],
    pub now: SystemTime,
    pub kill_switches: &'a KillSwitches,
    pub ledger: &'a Ledger,
    pub suppressions: &'a Suppressions,
    /// Detections demoted after too many false positives: their `auto` tiers act as `approval`.
    pub demoted: &'a BTreeSet<String>,
    /// A person approved the intent: findings that ask for approval are satisfied.
    pub approved: bool,
    /// The most autonomy the submitting source may have (an agent's `max_tier`): a step whose
    /// tier allows more is held to this.
    pub ceiling: Option<Tier>,
}

impl Policy {
    /// Decides what to do with an intent. Pure: same policy and input, same decision.
    pub fn decide(&self, input: DecisionInput<'_>) -> Decision {
        let mut reasons = Vec::new();
        let det = input.detection;
        let known = self.detections.get(&det.rule_id);

        for (i, step) in input.steps.iter().enumerate() {
            if input.kill_switches.stops(&step.kind) {
                let which = if input.kill_switches.global {
                    "the global kill switch is on".to_owned()
                } else {
                    format!("the kill switch for `{}` is on", step.kind)
                };
                reasons.push(reason(
                    guardrail::KILL_SWITCH,
                    Outcome::Deny,
                    Some(i),
                    which,
                ));
            }
        }

        reasons.push(match (known, self.unknown_detection) {
            (Some(d), _) => reason(
                guardrail::INVENTORY,
                Outcome::Execute,
                None,
                format!(
                    "detection `{}` is in the inventory (owner `{}`)",
                    d.id, d.owner
                ),
            ),
            (None, unknown) => reason(
                guardrail::INVENTORY,
                match unknown {
                    UnknownDetection::Approval => Outcome::AwaitApproval,
                    UnknownDetection::Deny => Outcome::Deny,
                },
                None,
                format!("detection `{}` is not in the inventory", det.rule_id),
            ),
        });

        for (i, step) in input.steps.iter().enumerate() {
            if let Some(s) = input.suppressions.get(&det.rule_id, step, input.now) {
                reasons.push(reason(
                    guardrail::SUPPRESSION,
                    Outcome::Deny,
                    Some(i),
                    format!(
                        "`{}` on `{}:{}` was judged a false positive by `{}`; suppressed until {}",
                        det.rule_id,
                        step.target.kind,
                        step.target.id,
                        s.by,
                        humantime::format_rfc3339_seconds(s.until)
                    ),
                ));
            }
        }

        for (i, step) in input.steps.iter().enumerate() {
            reasons.extend(self.target_scope(i, step));
        }

        for (i, step) in input.steps.iter().enumerate() {
            for rule in self.protected.iter().filter(|r| r.matches(step)) {
                let (effect, then) = match rule.effect {
                    ProtectedEffect::Approval => (Outcome::AwaitApproval, "needs approval"),
                    ProtectedEffect::Deny => (Outcome::Deny, "is never acted on"),
                };
                reasons.push(reason(
                    guardrail::PROTECTED_TARGET,
                    effect,
                    Some(i),
                    format!(
                        "`{}:{}` is protected by `{}` and {then}",
                        step.target.kind, step.target.id, rule.name
                    ),
                ));
            }
        }

        if let Some(d) = known {
            let mut tiers = BTreeSet::new();
            for (i, step) in input.steps.iter().enumerate() {
                let tier = d
                    .actions
                    .get(&step.kind)
                    .copied()
                    .unwrap_or(Tier::Forbidden);
                tiers.insert(tier);
                let demoted = tier == Tier::Auto && input.demoted.contains(&d.id);
                // tiers are ordered from the most autonomy to none: a ceiling holds the step
                // to the ceiling's tier when the step's allows more
                let held = input
                    .ceiling
                    .filter(|c| *c > tier && tier != Tier::Forbidden && *c != Tier::Forbidden);
                let acting = match (held, demoted) {
                    (Some(c), _) => c,
                    (None, true) => Tier::Approval,
                    (None, false) => tier,
                };
                let effect = match acting {
                    Tier::Auto => Outcome::Execute,
                    Tier::Approval => Outcome::AwaitApproval,
                    Tier::Shadow => Outcome::Shadow,
                    Tier::Forbidden => Outcome::Deny,
                };
                let granted = if let Some(c) = held {
                    format!(
                        ", held to `{}`: the submitting source's ceiling (max_tier)",
                        c.as_str()
                    )
                } else if demoted {
                    ", demoted to `approval` after too many false positives".to_owned()
                } else if d.actions.contains_key(&step.kind) {
                    String::new()
                } else {
                    " (not granted)".to_owned()
                };
                reasons.push(reason(
                    guardrail::AUTONOMY_TIER,
                    effect,
                    Some(i),
                    format!(
                        "`{}` × `{}` is `{}`{granted}",
                        d.id,
                        step.kind,
                        tier.as_str()
                    ),
                ));
            }
            if tiers.contains(&Tier::Auto) || tiers.contains(&Tier::Approval) {
                reasons.push(threshold(d, det, tiers.contains(&Tier::Auto)));
            }
        }

        for (i, step) in input.steps.iter().enumerate() {
            for freeze in self.freezes.iter().filter(|f| f.applies(step, input.now)) {
                reasons.push(reason(
                    guardrail::CHANGE_FREEZE,
                    Outcome::AwaitApproval,
                    Some(i),
                    format!(
                        "`{}` is frozen by `{}`: a person must approve",
                        step.kind, freeze.name
                    ),
                ));
            }
        }

        if self.shadow {
            reasons.push(reason(
                guardrail::SHADOW_MODE,
                Outcome::Shadow,
                None,
                "the policy is in shadow mode: recording what would be done".into(),
            ));
        }

        // An approval satisfies every finding that asked for one.
        let effect = |r: &Reason| match r.effect {
            Outcome::AwaitApproval if input.approved => Outcome::Execute,
            e => e,
        };
        let mut retry_after = None;
        if reasons.iter().all(|r| effect(r) == Outcome::Execute) {
            retry_after = self.budgets_allow(input, &mut reasons);
        }

        let outcome = reasons.iter().map(effect).max().unwrap_or(Outcome::Deny);
        Decision {
            outcome,
            reasons,
            policy_digest: self.digest.clone(),
            retry_after: retry_after.filter(|_| outcome == Outcome::Deny),
        }
    }

    /// The budget units an intent's steps would take, one per step per budget covering it.
    pub fn claims(&self, steps: &[Step]) -> Vec<Claim> {
        let mut claims = Vec::new();
        for budget in &self.budgets {
            for step in steps.iter().filter(|s| budget.covers(s)) {
                claims.push((budget.name.clone(), budget.scope_of(step).to_owned()));
            }
        }
        claims
    }

    /// Checks every budget the steps fall under; returns when the refusing budgets all have a
    /// slot again, if that can be known.
    fn budgets_allow(
        &self,
        input: DecisionInput<'_>,
        reasons: &mut Vec<Reason>,
    ) -> Option<Duration> {
        let mut units: BTreeMap<Claim, u32> = BTreeMap::new();
        for claim in self.claims(input.steps) {
            *units.entry(claim).or_default() += 1;
        }
        let mut waits = Vec::new();
        for (claim, n) in units {
            let Some(budget) = self.budgets.iter().find(|b| b.name == claim.0) else {
                continue;
            };
            let (effect, message, wait) =
                budget_check(budget, &self.fleet_size(budget, &claim.1), &claim, n, input);
            if effect == Outcome::Deny {
                waits.push(wait);
            }
            reasons.push(reason(guardrail::BUDGET, effect, None, message));
        }
        // Known only if every refusing budget can say when it frees.
        waits
            .into_iter()
            .collect::<Option<Vec<_>>>()
            .and_then(|w| w.into_iter().max())
    }

    fn fleet_size(&self, budget: &Budget, value: &str) -> Option<u64> {
        self.fleet.size(&budget.scope, value)
    }

    /// Every address the step reaches, judged: not broader than the minimum prefix, not a
    /// special-purpose range the policy does not allow, not Parapet's own.
    fn target_scope(&self, i: usize, step: &Step) -> Vec<Reason> {
        let mut found = Vec::new();
        let deny =
            |message: String| reason(guardrail::TARGET_SCOPE, Outcome::Deny, Some(i), message);
        for (address, net, how) in crate::rules::reaches(step) {
            let seen = match how {
                None => format!("`{address}`"),
                Some(how) => format!("`{address}` reaches `{net}` ({how}), which"),
            };
            let min = if net.addr().is_ipv4() {
                self.min_prefix_v4
            } else {
                self.min_prefix_v6
            };
            if net.prefix_len() < min {
                found.push(deny(format!(
                    "{seen} is broader than the policy's minimum prefix /{min}"
                )));
                continue;
            }
            for special in parapet_model::address::special() {
                if !overlap(&special.range, &net)
                    || self.allow_special.iter().any(|a| a.allows(&special, &net))
                {
                    continue;
                }
                found.push(deny(format!(
                    "{seen} is in `{}`, {}: special-purpose addresses are refused unless the policy allows `{}`",
                    special.range, special.what, special.name
                )));
            }
            for (own, what) in self.own.iter().filter(|(own, _)| overlap(own, &net)) {
                found.push(deny(format!(
                    "{seen} holds `{own}`, Parapet's own address ({what}): acting on it would cut Parapet off"
                )));
            }
        }
        found.dedup();
        found
    }
}

/// One budget in one scope: the effect, what it saw, and how long until a slot frees.
fn budget_check(
    budget: &Budget,
    fleet: &Option<u64>,
    claim: &Claim,
    n: u32,
    input: DecisionInput<'_>,
) -> (Outcome, String, Option<Duration>) {
    let name = format!("budget `{}` ({}={})", budget.name, budget.scope, claim.1);
    let now = input.now;
    let until = |t: SystemTime| t.duration_since(now).unwrap_or_default();
    // What a passing budget saw, written straight into its message.
    let mut seen = name.clone();
    seen.push(':');
    if let (Some(max), Some(window)) = (budget.max_per_window, &budget.window) {
        let since = now.checked_sub(window.0).unwrap_or(SystemTime::UNIX_EPOCH);
        let (used, oldest) = input.ledger.taken_since(claim, since);
        let window_text = &window.1;
        if used + n > max {
            let wait = oldest.map(|t| until(t + window.0));
            let when = wait
                .map(|w| format!("; a slot frees in {}", humantime::format_duration(round(w))))
                .unwrap_or_default();
            return (
                Outcome::Deny,
                format!(
                    "{name}: {used} of {max} used in the last {window_text}, {n} more asked{when}"
                ),
                wait,
            );
        }
        let _ = write!(seen, " {used} of {max} in the last {window_text},");
    }
    let active = input.ledger.active(claim);
    let next_free = || input.ledger.next_release(claim).map(until);
    if let Some(max) = budget.max_active {
        if active + n > max {
            let wait = next_free();
            let when = wait
                .map(|w| {
                    format!(
                        "; a TTL frees one in {}",
                        humantime::format_duration(round(w))
                    )
                })
                .unwrap_or_default();
            return (
                Outcome::Deny,
                format!("{name}: {active} of {max} active, {n} more asked{when}"),
                wait,
            );
        }
        let _ = write!(seen, " {active} of {max} active,");
    }
    if let Some(pct) = budget.max_active_percent {
        let Some(size) = *fleet else {
            return (
                Outcome::Deny,
                format!("{name}: no fleet size for `{}` to take {pct}% of", claim.1),
                None,
            );
        };
        let allowed = (pct / 100.0 * size as f64).floor() as u64;
        if u64::from(active + n) > allowed {
            let wait = next_free();
            return (
                Outcome::Deny,
                format!("{name}: {active} of {allowed} ({pct}% of {size}) active, {n} more asked"),
                wait,
            );
        }
        let _ = write!(seen, " {active} of {allowed} ({pct}% of {size}) active,");
    }
    seen.pop();
    (Outcome::Execute, seen, None)
}

/// Whole seconds, for messages.
fn round(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs() + u64::from(d.subsec_nanos() > 0))
}

fn threshold(d: &crate::DetectionPolicy, det: &Detection, any_auto: bool) -> Reason {
    let below = |sev: Option<parapet_model::Severity>, conf: Option<parapet_model::Confidence>| {
        let mut short = Vec::new();
        if let Some(min) = sev.filter(|min| det.severity < *min) {
            short.push(format!(
                "severity `{}` is below `{}`",
                det.severity.as_str(),
                min.as_str()
            ));
        }
        if let Some(min) = conf.filter(|min| det.confidence < *min) {
            short.push(format!(
                "confidence {} is below {}",
                det.confidence.get(),
                min.get()
            ));
        }
        short
    };
    let to_ask = below(d.approval_min_severity, d.approval_min_confidence);
    if !to_ask.is_empty() {
        return reason(
            guardrail::THRESHOLD,
            Outcome::Deny,
            None,
            format!("{}: not acting at all", to_ask.join(", ")),
        );
    }
    let alone = below(d.min_severity, d.min_confidence);
    if any_auto && !alone.is_empty() {
        return reason(
            guardrail::THRESHOLD,
            Outcome::AwaitApproval,
            None,
            format!("{}: not acting alone", alone.join(", ")),
        );
    }
    reason(
        guardrail::THRESHOLD,
        Outcome::Execute,
        None,
        format!(
            "severity `{}` and confidence {} meet the minimums",
            det.severity.as_str(),
            det.confidence.get()
        ),
    )
}

pub(crate) fn reason(
    guardrail: &str,
    effect: Outcome,
    step: Option<usize>,
    message: String,
) -> Reason {
    Reason {
        guardrail: guardrail.to_owned(),
        effect,
        message,
        step: step.and_then(|s| u32::try_from(s).ok()),
    }
}

#[cfg(test)]
mod tests;
