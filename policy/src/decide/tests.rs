use std::collections::BTreeMap;

use parapet_model::{Confidence, Outcome, Severity, Step, Target};

use super::*;

const POLICY: &str = r#"
[defaults]
unknown_detection = "deny"

[[detections]]
id = "c2"
min_severity = "high"
min_confidence = 0.8
[detections.actions]
block_ip = "auto"
isolate_host = "approval"
revoke_credentials = "shadow"
"#;

fn detection(rule: &str, severity: Severity, confidence: f64) -> Detection {
    Detection::new(
        rule.into(),
        severity,
        Confidence::try_from(confidence).unwrap(),
        String::new(),
    )
    .unwrap()
}

fn step(kind: &str, target_kind: &str, id: &str) -> Step {
    Step::new(
        kind.parse().unwrap(),
        Target::new(target_kind.into(), id.into(), BTreeMap::new()).unwrap(),
        BTreeMap::new(),
    )
    .unwrap()
}

fn decide(policy: &str, det: &Detection, steps: &[Step]) -> Decision {
    Policy::from_toml(policy).unwrap().decide(DecisionInput {
        detection: det,
        steps,
    })
}

fn guardrails(d: &Decision) -> Vec<(&str, Outcome)> {
    d.reasons
        .iter()
        .map(|r| (r.guardrail.as_str(), r.effect))
        .collect()
}

#[test]
fn an_auto_tier_above_thresholds_executes_and_says_why() {
    let d = decide(
        POLICY,
        &detection("c2", Severity::Critical, 0.93),
        &[step("block_ip", "ip", "192.0.2.7")],
    );
    assert_eq!(d.outcome, Outcome::Execute);
    assert_eq!(
        guardrails(&d),
        [
            (guardrail::INVENTORY, Outcome::Execute),
            (guardrail::AUTONOMY_TIER, Outcome::Execute),
            (guardrail::THRESHOLD, Outcome::Execute),
        ]
    );
    assert_eq!(d.policy_digest, Policy::from_toml(POLICY).unwrap().digest());
}

#[test]
fn below_threshold_an_auto_tier_waits_for_approval() {
    let d = decide(
        POLICY,
        &detection("c2", Severity::High, 0.5),
        &[step("block_ip", "ip", "192.0.2.7")],
    );
    assert_eq!(d.outcome, Outcome::AwaitApproval);
    let t = d
        .reasons
        .iter()
        .find(|r| r.guardrail == guardrail::THRESHOLD)
        .unwrap();
    assert_eq!(t.message, "confidence 0.5 is below 0.8: not acting alone");
    let d = decide(
        POLICY,
        &detection("c2", Severity::Medium, 0.9),
        &[step("block_ip", "ip", "192.0.2.7")],
    );
    assert_eq!(d.outcome, Outcome::AwaitApproval);
}

#[test]
fn each_tier_maps_to_its_outcome() {
    let det = detection("c2", Severity::Critical, 1.0);
    let outcome = |kind| decide(POLICY, &det, &[step(kind, "host", "web-1")]).outcome;
    assert_eq!(outcome("isolate_host"), Outcome::AwaitApproval);
    assert_eq!(outcome("revoke_credentials"), Outcome::Shadow);
    assert_eq!(outcome("disable_mfa"), Outcome::Deny);
}

#[test]
fn the_most_restrictive_step_decides_the_plan() {
    let det = detection("c2", Severity::Critical, 1.0);
    let d = decide(
        POLICY,
        &det,
        &[
            step("block_ip", "ip", "192.0.2.7"),
            step("isolate_host", "host", "web-1"),
        ],
    );
    assert_eq!(d.outcome, Outcome::AwaitApproval);
    let tiers: Vec<_> = d
        .reasons
        .iter()
        .filter(|r| r.guardrail == guardrail::AUTONOMY_TIER)
        .map(|r| r.step)
        .collect();
    assert_eq!(tiers, [Some(0), Some(1)]);
}

#[test]
fn unknown_detections_follow_the_policy_and_never_execute() {
    let det = detection("who-knows", Severity::Critical, 1.0);
    let s = [step("block_ip", "ip", "192.0.2.7")];
    assert_eq!(decide(POLICY, &det, &s).outcome, Outcome::Deny);
    let approval = POLICY.replace("\"deny\"", "\"approval\"");
    let d = decide(&approval, &det, &s);
    assert_eq!(d.outcome, Outcome::AwaitApproval);
    assert_eq!(
        d.reasons[0].message,
        "detection `who-knows` is not in the inventory"
    );
}

#[test]
fn broad_address_blocks_are_denied_with_all_reasons_kept() {
    let det = detection("c2", Severity::Critical, 1.0);
    for (target, denied) in [
        ("0.0.0.0/0", true),
        ("10.0.0.0/8", true),
        ("198.51.100.0/23", true),
        ("198.51.100.0/24", false),
        ("2001:db8::/32", true),
        ("2001:db8::/48", false),
        ("192.0.2.7", false),
    ] {
        let d = decide(POLICY, &det, &[step("block_ip", "ip", target)]);
        assert_eq!(d.outcome == Outcome::Deny, denied, "{target}: {d:?}");
        if denied {
            // the other guardrails still report
            assert_eq!(d.reasons.len(), 4, "{d:?}");
            assert!(
                d.reasons[1]
                    .message
                    .starts_with(&format!("`{target}` is broader")),
                "{d:?}"
            );
        }
    }
}
