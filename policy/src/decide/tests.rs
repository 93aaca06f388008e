use std::{
    collections::BTreeMap,
    time::{Duration, SystemTime},
};

use parapet_model::{Confidence, Outcome, Severity, Step, Target};

use super::*;
use crate::rules::Suppression;

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

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn decide(policy: &str, det: &Detection, steps: &[Step]) -> Decision {
    decide_with(
        policy,
        det,
        steps,
        &KillSwitches::default(),
        &Ledger::default(),
        now(),
    )
}

fn decide_with(
    policy: &str,
    det: &Detection,
    steps: &[Step],
    kill_switches: &KillSwitches,
    ledger: &Ledger,
    now: SystemTime,
) -> Decision {
    Policy::from_toml(policy).unwrap().decide(DecisionInput {
        detection: det,
        steps,
        now,
        kill_switches,
        ledger,
        suppressions: &Suppressions::default(),
        demoted: &Default::default(),
        approved: false,
        ceiling: None,
    })
}

fn with_attrs(mut s: Step, attrs: &[(&str, &str)]) -> Step {
    s.target.attributes = attrs
        .iter()
        .map(|(k, v)| ((*k).into(), (*v).into()))
        .collect();
    s
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

#[test]
fn the_kill_switch_stops_everything_or_one_kind() {
    let det = detection("c2", Severity::Critical, 1.0);
    let s = [step("block_ip", "ip", "192.0.2.7")];
    let all = KillSwitches {
        global: true,
        ..Default::default()
    };
    let d = decide_with(POLICY, &det, &s, &all, &Ledger::default(), now());
    assert_eq!(d.outcome, Outcome::Deny);
    assert_eq!(d.reasons[0].guardrail, guardrail::KILL_SWITCH);
    assert_eq!(d.reasons[0].message, "the global kill switch is on");
    let other = KillSwitches {
        kinds: ["isolate_host".parse().unwrap()].into(),
        ..Default::default()
    };
    assert_eq!(
        decide_with(POLICY, &det, &s, &other, &Ledger::default(), now()).outcome,
        Outcome::Execute
    );
    let this = KillSwitches {
        kinds: ["block_ip".parse().unwrap()].into(),
        ..Default::default()
    };
    assert_eq!(
        decide_with(POLICY, &det, &s, &this, &Ledger::default(), now()).outcome,
        Outcome::Deny
    );
}

const PROTECTED: &str = r#"
[[detections]]
id = "c2"
[detections.actions]
block_ip = "auto"
isolate_host = "auto"

[[protected]]
name = "domain controllers"
tags = ["domain-controller"]
effect = "deny"

[[protected]]
name = "payment network"
cidrs = ["10.20.0.0/24"]
effect = "approval"

[[protected]]
name = "hq executives' laptops"
attributes = { site = "hq", role = "executive" }
action_kinds = ["isolate_host"]
effect = "approval"
"#;

#[test]
fn protected_targets_match_by_tag_cidr_and_attributes() {
    let det = detection("c2", Severity::Critical, 1.0);
    let outcome = |s: Step| {
        let d = decide(PROTECTED, &det, &[s]);
        (
            d.outcome,
            d.reasons
                .iter()
                .find(|r| r.guardrail == guardrail::PROTECTED_TARGET)
                .map(|r| r.message.clone()),
        )
    };
    let dc = with_attrs(
        step("isolate_host", "host", "dc01"),
        &[("tags", "windows, domain-controller"), ("ip", "10.1.1.1")],
    );
    assert_eq!(
        outcome(dc),
        (
            Outcome::Deny,
            Some("`host:dc01` is protected by `domain controllers` and is never acted on".into())
        )
    );
    // inside the block, or a block overlapping it
    assert_eq!(
        outcome(step("block_ip", "ip", "10.20.0.9")).0,
        Outcome::AwaitApproval
    );
    assert_eq!(
        outcome(step("block_ip", "ip", "10.20.0.0/24")).0,
        Outcome::AwaitApproval
    );
    assert_eq!(
        outcome(step("block_ip", "ip", "10.21.0.9")),
        (Outcome::Execute, None)
    );
    // every attribute must match, and only for the kinds listed
    let exec = with_attrs(
        step("isolate_host", "host", "ceo-laptop"),
        &[("site", "hq"), ("role", "executive"), ("ip", "10.9.9.9")],
    );
    assert_eq!(outcome(exec.clone()).0, Outcome::AwaitApproval);
    let mut branch = exec.clone();
    branch
        .target
        .attributes
        .insert("site".into(), "branch".into());
    assert_eq!(outcome(branch).0, Outcome::Execute);
    let mut blocked = exec;
    blocked.kind = "block_ip".parse().unwrap();
    assert_eq!(outcome(blocked).0, Outcome::Execute);
}

#[test]
fn a_second_threshold_refuses_to_act_at_all() {
    let policy = POLICY.replace(
        "min_confidence = 0.8",
        "min_confidence = 0.8\napproval_min_confidence = 0.4",
    );
    let s = [step("block_ip", "ip", "192.0.2.7")];
    assert_eq!(
        decide(&policy, &detection("c2", Severity::High, 0.9), &s).outcome,
        Outcome::Execute
    );
    assert_eq!(
        decide(&policy, &detection("c2", Severity::High, 0.5), &s).outcome,
        Outcome::AwaitApproval
    );
    let d = decide(&policy, &detection("c2", Severity::High, 0.3), &s);
    assert_eq!(d.outcome, Outcome::Deny);
    assert_eq!(
        d.reasons.last().unwrap().message,
        "confidence 0.3 is below 0.4: not acting at all"
    );
    // an approval tier below the floor is refused too
    let s = [step("isolate_host", "host", "web-1")];
    assert_eq!(
        decide(&policy, &detection("c2", Severity::High, 0.3), &s).outcome,
        Outcome::Deny
    );
}

#[test]
fn a_change_freeze_in_its_time_zone_asks_for_approval() {
    let policy = format!(
        "{POLICY}\n[[freezes]]\nname = \"year end\"\nstart = \"2027-01-15T09:00\"\nend = \"2027-01-15T17:00\"\ntime_zone = \"America/New_York\"\naction_kinds = [\"block_ip\"]\n"
    );
    let det = detection("c2", Severity::Critical, 1.0);
    let s = [step("block_ip", "ip", "192.0.2.7")];
    // 09:00 in New York in January is 14:00 UTC
    let t = |h: u64, m: u64| {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_799_971_200 + h * 3600 + m * 60)
    };
    let at = |time| {
        decide_with(
            &policy,
            &det,
            &s,
            &KillSwitches::default(),
            &Ledger::default(),
            time,
        )
        .outcome
    };
    assert_eq!(at(t(13, 59)), Outcome::Execute);
    assert_eq!(at(t(14, 0)), Outcome::AwaitApproval);
    assert_eq!(at(t(21, 59)), Outcome::AwaitApproval);
    assert_eq!(at(t(22, 0)), Outcome::Execute);
}

#[test]
fn global_shadow_mode_records_and_never_acts() {
    let policy = POLICY.replace(
        "unknown_detection = \"deny\"",
        "unknown_detection = \"deny\"\nshadow = true",
    );
    let d = decide(
        &policy,
        &detection("c2", Severity::Critical, 1.0),
        &[step("block_ip", "ip", "192.0.2.7")],
    );
    assert_eq!(d.outcome, Outcome::Shadow);
    assert_eq!(d.reasons.last().unwrap().guardrail, guardrail::SHADOW_MODE);
}

const BUDGETS: &str = r#"
[[detections]]
id = "c2"
[detections.actions]
isolate_host = "auto"

[[budgets]]
name = "isolations per site"
action_kinds = ["isolate_host"]
scope = "site"
max_per_window = 2
window = "1h"
max_active = 3

[[budgets]]
name = "fleet share"
max_active_percent = 10

[fleet]
global = 20
"#;

fn host(name: &str, site: &str) -> Step {
    with_attrs(
        step("isolate_host", "host", name),
        &[("site", site), ("ip", "192.0.2.1")],
    )
}

#[test]
fn budgets_refuse_past_their_limits_and_say_when_to_retry() {
    let policy = Policy::from_toml(&BUDGETS.replace("global = 20", "global = 100")).unwrap();
    let det = detection("c2", Severity::Critical, 1.0);
    let mut ledger = Ledger::default();
    let decide_at = |ledger: &Ledger, steps: &[Step], t: SystemTime| {
        policy.decide(DecisionInput {
            detection: &det,
            steps,
            now: t,
            kill_switches: &KillSwitches::default(),
            suppressions: &Suppressions::default(),
            demoted: &Default::default(),
            approved: false,
            ceiling: None,
            ledger,
        })
    };
    let t0 = now();
    for (n, minutes) in [(0, 0u64), (1, 10)] {
        let steps = [host(&format!("h{n}"), "hq")];
        let at = t0 + Duration::from_secs(minutes * 60);
        let d = decide_at(&ledger, &steps, at);
        assert_eq!(d.outcome, Outcome::Execute, "{d:?}");
        ledger.reserve(
            parapet_model::IntentId::generate(),
            at,
            None,
            &policy.claims(&steps),
        );
    }
    // a third in the same hour at hq is refused; the first leaves the window at t0 + 1h
    let t = t0 + Duration::from_secs(20 * 60);
    let d = decide_at(&ledger, &[host("h2", "hq")], t);
    assert_eq!(d.outcome, Outcome::Deny);
    assert_eq!(d.retry_after, Some(Duration::from_secs(40 * 60)));
    let refusal = d
        .reasons
        .iter()
        .find(|r| r.effect == Outcome::Deny)
        .unwrap();
    assert_eq!(
        refusal.message,
        "budget `isolations per site` (site=hq): 2 of 2 used in the last 1h, 1 more asked; a slot frees in 40m"
    );
    // another site has its own budget
    assert_eq!(
        decide_at(&ledger, &[host("b1", "branch")], t).outcome,
        Outcome::Execute
    );
    // and after the window, hq has room again
    assert_eq!(
        decide_at(&ledger, &[host("h2", "hq")], t0 + Duration::from_secs(3601)).outcome,
        Outcome::Execute
    );
}

#[test]
fn active_and_percentage_budgets_free_on_release() {
    let policy = Policy::from_toml(BUDGETS).unwrap();
    let det = detection("c2", Severity::Critical, 1.0);
    let mut ledger = Ledger::default();
    let mut ids = Vec::new();
    // 10% of 20 is 2 active at once, across sites
    for (n, site) in ["a", "b"].iter().enumerate() {
        let steps = [host(&format!("h{n}"), site)];
        let d = policy.decide(DecisionInput {
            detection: &det,
            steps: &steps,
            now: now(),
            kill_switches: &KillSwitches::default(),
            suppressions: &Suppressions::default(),
            demoted: &Default::default(),
            approved: false,
            ceiling: None,
            ledger: &ledger,
        });
        assert_eq!(d.outcome, Outcome::Execute);
        let id = parapet_model::IntentId::generate();
        ledger.reserve(
            id,
            now(),
            Some(now() + Duration::from_secs(600)),
            &policy.claims(&steps),
        );
        ids.push(id);
    }
    let steps = [host("h3", "c")];
    let d = policy.decide(DecisionInput {
        detection: &det,
        steps: &steps,
        now: now(),
        kill_switches: &KillSwitches::default(),
        suppressions: &Suppressions::default(),
        demoted: &Default::default(),
        approved: false,
        ceiling: None,
        ledger: &ledger,
    });
    assert_eq!(d.outcome, Outcome::Deny);
    assert_eq!(d.retry_after, Some(Duration::from_secs(600)), "{d:?}");
    ledger.release(ids[0]);
    let d = policy.decide(DecisionInput {
        detection: &det,
        steps: &steps,
        now: now(),
        kill_switches: &KillSwitches::default(),
        suppressions: &Suppressions::default(),
        demoted: &Default::default(),
        approved: false,
        ceiling: None,
        ledger: &ledger,
    });
    assert_eq!(d.outcome, Outcome::Execute);
}

#[test]
fn a_percentage_without_a_fleet_size_denies() {
    let policy = BUDGETS.replace("[fleet]\nglobal = 20\n", "");
    let d = decide(
        &policy,
        &detection("c2", Severity::Critical, 1.0),
        &[host("h", "hq")],
    );
    assert_eq!(d.outcome, Outcome::Deny);
    assert!(
        d.reasons
            .iter()
            .any(|r| r.message.contains("no fleet size")),
        "{d:?}"
    );
}

#[test]
fn budgets_are_not_consulted_for_what_will_not_execute() {
    let policy = BUDGETS.replace("isolate_host = \"auto\"", "isolate_host = \"approval\"");
    let d = decide(
        &policy,
        &detection("c2", Severity::Critical, 1.0),
        &[host("h", "hq")],
    );
    assert_eq!(d.outcome, Outcome::AwaitApproval);
    assert!(d.reasons.iter().all(|r| r.guardrail != guardrail::BUDGET));
}

#[test]
fn a_suppressed_detection_and_target_is_denied_until_the_window_ends() {
    let policy = Policy::from_toml(POLICY).unwrap();
    let det = detection("c2", Severity::Critical, 1.0);
    let steps = [step("block_ip", "ip", "192.0.2.7")];
    let mut suppressions = Suppressions::default();
    let until = now() + Duration::from_secs(3600);
    suppressions.insert(
        "c2",
        &steps[0],
        Suppression {
            until,
            by: "alice".into(),
        },
    );
    let at = |t| {
        policy.decide(DecisionInput {
            detection: &det,
            steps: &steps,
            now: t,
            kill_switches: &KillSwitches::default(),
            ledger: &Ledger::default(),
            suppressions: &suppressions,
            demoted: &Default::default(),
            approved: false,
            ceiling: None,
        })
    };
    let d = at(now());
    assert_eq!(d.outcome, Outcome::Deny);
    let r = d
        .reasons
        .iter()
        .find(|r| r.guardrail == guardrail::SUPPRESSION)
        .unwrap();
    assert!(
        r.message.contains("judged a false positive by `alice`"),
        "{}",
        r.message
    );
    assert_eq!(at(until).outcome, Outcome::Execute);
    // another target is not suppressed
    let other = [step("block_ip", "ip", "192.0.2.8")];
    let d = policy.decide(DecisionInput {
        steps: &other,
        ..DecisionInput {
            detection: &det,
            steps: &steps,
            now: now(),
            kill_switches: &KillSwitches::default(),
            ledger: &Ledger::default(),
            suppressions: &suppressions,
            demoted: &Default::default(),
            approved: false,
            ceiling: None,
        }
    });
    assert_eq!(d.outcome, Outcome::Execute);
}

#[test]
fn an_approval_satisfies_what_asked_for_one_but_not_a_denial() {
    let policy = Policy::from_toml(
        BUDGETS
            .replace("isolate_host = \"auto\"", "isolate_host = \"approval\"")
            .as_str(),
    )
    .unwrap();
    let det = detection("c2", Severity::Critical, 1.0);
    let steps = [host("h", "hq")];
    let input = |approved, ledger: &Ledger| {
        policy.decide(DecisionInput {
            detection: &det,
            steps: &steps,
            now: now(),
            kill_switches: &KillSwitches::default(),
            ledger,
            suppressions: &Suppressions::default(),
            demoted: &Default::default(),
            approved,
            ceiling: None,
        })
    };
    assert_eq!(
        input(false, &Ledger::default()).outcome,
        Outcome::AwaitApproval
    );
    let approved = input(true, &Ledger::default());
    assert_eq!(approved.outcome, Outcome::Execute);
    // budgets are checked for an approved intent, and still refuse
    assert!(
        approved
            .reasons
            .iter()
            .any(|r| r.guardrail == guardrail::BUDGET)
    );
    let mut full = Ledger::default();
    for _ in 0..2 {
        full.reserve(
            parapet_model::IntentId::generate(),
            now(),
            None,
            &policy.claims(&steps),
        );
    }
    assert_eq!(input(true, &full).outcome, Outcome::Deny);
}

fn target(kind: &str, id: &str, attrs: &[(&str, &str)]) -> Step {
    let attrs = attrs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Step::new(
        kind.parse().unwrap(),
        Target::new(
            if kind == "block_ip" { "ip" } else { "host" }.into(),
            id.into(),
            attrs,
        )
        .unwrap(),
        BTreeMap::new(),
    )
    .unwrap()
}

/// The guardrails that refused, with their messages.
fn denials(d: &Decision) -> Vec<(String, String)> {
    d.reasons
        .iter()
        .filter(|r| r.effect == Outcome::Deny || r.effect == Outcome::AwaitApproval)
        .map(|r| (r.guardrail.clone(), r.message.clone()))
        .collect()
}

#[test]
fn every_address_a_target_names_is_judged_not_only_its_id() {
    // the id is harmless; the attribute an adapter blocks is a /16 holding the payment network
    let det = detection("c2", Severity::Critical, 1.0);
    let s = target("isolate_host", "192.0.2.200", &[("ip", "10.20.0.0/16")]);
    let d = decide(PROTECTED, &det, &[s]);
    assert_eq!(d.outcome, Outcome::Deny, "{d:?}");
    let found = denials(&d);
    assert!(
        found.contains(&(
            guardrail::TARGET_SCOPE.into(),
            "`10.20.0.0/16` is broader than the policy's minimum prefix /24".into()
        )),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|(g, m)| g == guardrail::PROTECTED_TARGET && m.contains("payment network")),
        "{found:?}"
    );
}

#[test]
fn every_notation_of_a_protected_address_is_protected() {
    let det = detection("c2", Severity::Critical, 1.0);
    for id in [
        "10.20.0.5",
        "::ffff:10.20.0.5",
        "::ffff:a14:5",
        "64:ff9b::10.20.0.5",
        "::ffff:10.20.0.0/120",
        "2002:a14:5::1",
        "::a14:5",
    ] {
        let d = decide(PROTECTED, &det, &[step("block_ip", "ip", id)]);
        assert!(
            denials(&d)
                .iter()
                .any(|(g, m)| g == guardrail::PROTECTED_TARGET && m.contains("payment network")),
            "{id}: {d:?}"
        );
    }
    // a mapped block obeys the IPv4 floor; broad IPv6 blocks over IPv4 space reach all of it
    for (id, says) in [
        ("::ffff:10.20.0.0/112", "`10.20.0.0/16` is broader"),
        ("::ffff:0:0/96", "`0.0.0.0/0` is broader"),
        ("64:ff9b::/96", "`0.0.0.0/0` is broader"),
        ("2002::/16", "`2002::/16` is broader"),
        (
            "2002:a14::/32",
            "reaches `10.20.0.0/16` (6to4), which is broader",
        ),
    ] {
        let d = decide(PROTECTED, &det, &[step("block_ip", "ip", id)]);
        assert_eq!(d.outcome, Outcome::Deny, "{id}: {d:?}");
        assert!(
            denials(&d)
                .iter()
                .any(|(g, m)| g == guardrail::TARGET_SCOPE && m.contains(says)),
            "{id}: {:?}",
            denials(&d)
        );
    }
}

#[test]
fn special_purpose_addresses_are_refused_unless_allowed_by_name_or_block() {
    let det = detection("c2", Severity::Critical, 1.0);
    for (id, range, name) in [
        ("0.0.0.0", "0.0.0.0/8", "unspecified"),
        ("::", "::/128", "unspecified"),
        ("127.0.0.1", "127.0.0.0/8", "loopback"),
        ("::1", "::1/128", "loopback"),
        ("::ffff:127.0.0.1", "127.0.0.0/8", "loopback"),
        ("169.254.169.254", "169.254.0.0/16", "link_local"),
        ("fe80::1", "fe80::/10", "link_local"),
        ("224.0.0.251", "224.0.0.0/4", "multicast"),
        ("ff02::1", "ff00::/8", "multicast"),
        ("255.255.255.255", "255.255.255.255/32", "broadcast"),
    ] {
        let d = decide(POLICY, &det, &[step("block_ip", "ip", id)]);
        assert_eq!(d.outcome, Outcome::Deny, "{id}: {d:?}");
        let (g, m) = &denials(&d)[0];
        assert_eq!(g, guardrail::TARGET_SCOPE);
        assert!(
            m.contains(&format!("is in `{range}`")) && m.ends_with(&format!("allows `{name}`")),
            "{id}: {m}"
        );
    }
    let allowing = POLICY.replace(
        "unknown_detection = \"deny\"",
        "unknown_detection = \"deny\"\nallow_special = [\"loopback\", \"169.254.169.254/32\"]",
    );
    for (id, allowed) in [
        ("127.0.0.9", true),
        ("::1", true),
        ("169.254.169.254", true),
        ("169.254.0.1", false),
        ("224.0.0.251", false),
    ] {
        let d = decide(&allowing, &det, &[step("block_ip", "ip", id)]);
        assert_eq!(d.outcome == Outcome::Execute, allowed, "{id}: {d:?}");
    }
    let err = Policy::from_toml("[defaults]\nallow_special = [\"loopbak\"]\n").unwrap_err();
    assert!(err.to_string().contains("`loopbak` is neither"), "{err}");
}

#[test]
fn parapets_own_addresses_are_never_acted_on() {
    let det = detection("c2", Severity::Critical, 1.0);
    let policy = Policy::from_toml(POLICY).unwrap().with_own_addresses(vec![(
        "192.0.2.10/32".parse().unwrap(),
        "the gRPC listener".into(),
    )]);
    let decide = |id: &str| {
        policy.decide(DecisionInput {
            detection: &det,
            steps: &[step("block_ip", "ip", id)],
            now: now(),
            kill_switches: &KillSwitches::default(),
            ledger: &Ledger::default(),
            suppressions: &Suppressions::default(),
            demoted: &Default::default(),
            approved: false,
            ceiling: None,
        })
    };
    let d = decide("192.0.2.0/24");
    assert_eq!(d.outcome, Outcome::Deny);
    assert!(
        denials(&d)[0]
            .1
            .contains("holds `192.0.2.10/32`, Parapet's own address (the gRPC listener)"),
        "{d:?}"
    );
    assert_eq!(decide("192.0.2.11").outcome, Outcome::Execute);
}

mod notations {
    use std::net::Ipv4Addr;

    use proptest::prelude::*;

    use super::*;

    /// An IPv4 address written as one of the notations that mean it.
    fn written(v4: Ipv4Addr, how: u8) -> String {
        let [a, b, c, d] = v4.octets();
        match how {
            0 => v4.to_string(),
            1 => format!("::ffff:{v4}"),
            2 => format!(
                "::ffff:{:x}:{:x}",
                u16::from_be_bytes([a, b]),
                u16::from_be_bytes([c, d])
            ),
            3 => format!("64:ff9b::{v4}"),
            4 => format!("{v4}/32"),
            5 => format!("::FFFF:{v4}/128"),
            _ => format!(
                "64:ff9b::{:x}:{:x}/128",
                u16::from_be_bytes([a, b]),
                u16::from_be_bytes([c, d])
            ),
        }
    }

    const POLICY: &str = r#"
[[detections]]
id = "c2"
[detections.actions]
block_ip = "auto"
isolate_host = "auto"

[[protected]]
name = "payment network"
cidrs = ["10.20.0.0/24", "::ffff:192.0.2.0/120"]
effect = "approval"

[[protected]]
name = "vault"
ids = ["::ffff:198.51.100.7"]
effect = "deny"
"#;

    fn outcome(policy: &Policy, s: Step) -> (Outcome, Vec<(String, Outcome)>) {
        let det = detection("c2", Severity::Critical, 1.0);
        let d = policy.decide(DecisionInput {
            detection: &det,
            steps: &[s],
            now: now(),
            kill_switches: &KillSwitches::default(),
            ledger: &Ledger::default(),
            suppressions: &Suppressions::default(),
            demoted: &Default::default(),
            approved: false,
            ceiling: None,
        });
        (
            d.outcome,
            d.reasons
                .iter()
                .map(|r| (r.guardrail.clone(), r.effect))
                .collect(),
        )
    }

    fn interesting() -> impl Strategy<Value = Ipv4Addr> {
        prop_oneof![
            any::<u32>().prop_map(Ipv4Addr::from),
            (0u8..=255).prop_map(|d| Ipv4Addr::new(10, 20, 0, d)),
            (0u8..=255).prop_map(|d| Ipv4Addr::new(192, 0, 2, d)),
            Just(Ipv4Addr::new(198, 51, 100, 7)),
            (0u8..=255).prop_map(|d| Ipv4Addr::new(127, 0, 0, d)),
            (0u8..=255).prop_map(|d| Ipv4Addr::new(169, 254, 169, d)),
        ]
    }

    proptest! {
        /// However an address is written, as the target's id or as its `ip` attribute, the
        /// guardrails decide exactly as for its canonical IPv4 form.
        #[test]
        fn a_decision_does_not_depend_on_the_notation(v4 in interesting(), how in 0u8..7, attr in any::<bool>()) {
            let policy = Policy::from_toml(POLICY).unwrap();
            let text = written(v4, how);
            let (plain, other) = if attr {
                (
                    target("isolate_host", "ws-1", &[("ip", &v4.to_string())]),
                    target("isolate_host", "ws-1", &[("ip", &text)]),
                )
            } else {
                (target("block_ip", &v4.to_string(), &[]), target("block_ip", &text, &[]))
            };
            prop_assert_eq!(outcome(&policy, other), outcome(&policy, plain));
        }
    }
}

#[test]
fn a_ceiling_holds_a_source_to_less_autonomy_and_a_person_still_approves() {
    let policy = Policy::from_toml(
        "[[detections]]\nid = \"c2\"\n[detections.actions]\nblock_ip = \"auto\"\nisolate_host = \"shadow\"\n",
    )
    .unwrap();
    let det = detection("c2", Severity::Critical, 1.0);
    let decide = |steps: &[Step], ceiling, approved| {
        policy.decide(DecisionInput {
            detection: &det,
            steps,
            now: now(),
            kill_switches: &KillSwitches::default(),
            ledger: &Ledger::default(),
            suppressions: &Suppressions::default(),
            demoted: &Default::default(),
            approved,
            ceiling,
        })
    };
    let block = [step("block_ip", "ip", "192.0.2.7")];
    assert_eq!(decide(&block, None, false).outcome, Outcome::Execute);
    assert_eq!(
        decide(&block, Some(Tier::Auto), false).outcome,
        Outcome::Execute
    );
    // held to approval: it waits, and says why
    let held = decide(&block, Some(Tier::Approval), false);
    assert_eq!(held.outcome, Outcome::AwaitApproval);
    let tier = held
        .reasons
        .iter()
        .find(|r| r.guardrail == guardrail::AUTONOMY_TIER)
        .unwrap();
    assert!(
        tier.message.contains("held to `approval`"),
        "{}",
        tier.message
    );
    // a person's approval satisfies it, as any approval finding
    assert_eq!(
        decide(&block, Some(Tier::Approval), true).outcome,
        Outcome::Execute
    );
    // held to shadow: nothing done
    assert_eq!(
        decide(&block, Some(Tier::Shadow), false).outcome,
        Outcome::Shadow
    );
    // a ceiling never raises: a shadow tier stays shadow under an approval ceiling
    let isolate = [host("h", "hq")];
    assert_eq!(
        decide(&isolate, Some(Tier::Approval), false).outcome,
        Outcome::Shadow
    );
}
