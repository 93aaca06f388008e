//! The guardrails and the order they run in.
//!
//! Every guardrail runs and reports what it saw, even after one has already asked to deny, so a
//! decision always explains itself completely. The outcome is the most restrictive effect any
//! guardrail asked for (`deny` > `shadow` > `await_approval` > `execute`). The order:
//!
//! 1. [`guardrail::INVENTORY`]: is the detection documented? Unknown detections get the policy's
//!    `unknown_detection` (approval or deny), never `execute`.
//! 2. [`guardrail::TARGET_SCOPE`]: per step, is an address block narrower than the policy's
//!    minimum prefix? Broader targets (`0.0.0.0/0`, a /8) are denied.
//! 3. [`guardrail::AUTONOMY_TIER`]: per step, the detection × action kind tier.
//! 4. [`guardrail::THRESHOLD`]: severity and confidence against the detection's minimum for
//!    acting alone; below it, `auto` becomes `approval`.

use ipnet::IpNet;
use parapet_model::{Decision, Detection, Outcome, Reason, Step};

use crate::{Policy, Tier, UnknownDetection};

/// Stable guardrail names, as they appear in [`Reason::guardrail`].
pub mod guardrail {
    pub const INVENTORY: &str = "inventory";
    pub const TARGET_SCOPE: &str = "target_scope";
    pub const AUTONOMY_TIER: &str = "autonomy_tier";
    pub const THRESHOLD: &str = "threshold";
}

/// Everything a decision depends on besides the policy.
#[derive(Debug, Clone, Copy)]
pub struct DecisionInput<'a> {
    pub detection: &'a Detection,
    pub steps: &'a [Step],
}

impl Policy {
    /// Decides what to do with an intent. Pure: same policy and input, same decision.
    pub fn decide(&self, input: DecisionInput<'_>) -> Decision {
        let mut reasons = Vec::new();
        let det = input.detection;
        let known = self.detections.get(&det.rule_id);

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
            if let Some(r) = self.target_scope(i, step) {
                reasons.push(r);
            }
        }

        if let Some(d) = known {
            let mut any_auto = false;
            for (i, step) in input.steps.iter().enumerate() {
                let tier = d
                    .actions
                    .get(&step.kind)
                    .copied()
                    .unwrap_or(Tier::Forbidden);
                any_auto |= tier == Tier::Auto;
                let effect = match tier {
                    Tier::Auto => Outcome::Execute,
                    Tier::Approval => Outcome::AwaitApproval,
                    Tier::Shadow => Outcome::Shadow,
                    Tier::Forbidden => Outcome::Deny,
                };
                let granted = if d.actions.contains_key(&step.kind) {
                    ""
                } else {
                    " (not granted)"
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
            if any_auto {
                reasons.push(threshold(d.min_severity, d.min_confidence, det));
            }
        }

        Decision {
            outcome: reasons
                .iter()
                .map(|r| r.effect)
                .max()
                .unwrap_or(Outcome::Deny),
            reasons,
            policy_digest: self.digest.clone(),
            retry_after: None,
        }
    }

    fn target_scope(&self, i: usize, step: &Step) -> Option<Reason> {
        let candidates = std::iter::once(&step.target.id).chain(step.target.attributes.get("ip"));
        for value in candidates {
            let Ok(net) = value.parse::<IpNet>() else {
                continue;
            };
            let min = match net {
                IpNet::V4(_) => self.min_prefix_v4,
                IpNet::V6(_) => self.min_prefix_v6,
            };
            if net.prefix_len() < min {
                return Some(reason(
                    guardrail::TARGET_SCOPE,
                    Outcome::Deny,
                    Some(i),
                    format!("`{net}` is broader than the policy's minimum prefix /{min}"),
                ));
            }
        }
        None
    }
}

fn threshold(
    min_severity: Option<parapet_model::Severity>,
    min_confidence: Option<parapet_model::Confidence>,
    det: &Detection,
) -> Reason {
    let mut short = Vec::new();
    if let Some(min) = min_severity.filter(|min| det.severity < *min) {
        short.push(format!(
            "severity `{}` is below `{}`",
            det.severity.as_str(),
            min.as_str()
        ));
    }
    if let Some(min) = min_confidence.filter(|min| det.confidence < *min) {
        short.push(format!(
            "confidence {} is below {}",
            det.confidence.get(),
            min.get()
        ));
    }
    if short.is_empty() {
        reason(
            guardrail::THRESHOLD,
            Outcome::Execute,
            None,
            format!(
                "severity `{}` and confidence {} meet the minimum for acting alone",
                det.severity.as_str(),
                det.confidence.get()
            ),
        )
    } else {
        reason(
            guardrail::THRESHOLD,
            Outcome::AwaitApproval,
            None,
            format!("{}: not acting alone", short.join(", ")),
        )
    }
}

fn reason(guardrail: &str, effect: Outcome, step: Option<usize>, message: String) -> Reason {
    Reason {
        guardrail: guardrail.to_owned(),
        effect,
        message,
        step: step.and_then(|s| u32::try_from(s).ok()),
    }
}

#[cfg(test)]
mod tests;
