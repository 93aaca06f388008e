//! One decision in process: 20 detections, 10 budgets, 3 protection rules, a freeze, and a
//! ledger holding 1,000 active units. `cargo bench -p parapet-policy --bench decide`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    collections::BTreeMap,
    fmt::Write,
    hint::black_box,
    time::{Duration, Instant, SystemTime},
};

use parapet_model::{Confidence, Detection, IntentId, Severity, Step, Target};
use parapet_policy::{DecisionInput, KillSwitches, Ledger, Policy};

fn policy_text() -> String {
    let mut text = String::from("[defaults]\nunknown_detection = \"approval\"\n");
    for d in 0..20 {
        write!(
            text,
            "[[detections]]\nid = \"rule.{d}\"\nattack = [\"T1071.001\"]\nowner = \"team\"\nmin_severity = \"medium\"\nmin_confidence = 0.7\n[detections.actions]\nblock_ip = \"auto\"\nisolate_host = \"approval\"\n\n"
        )
        .unwrap();
    }
    for b in 0..10 {
        write!(
            text,
            "[[budgets]]\nname = \"budget {b}\"\naction_kinds = [\"block_ip\"]\nscope = \"site\"\nmax_per_window = 100000\nwindow = \"1h\"\nmax_active = 100000\n\n"
        )
        .unwrap();
    }
    text.push_str(
        "[[protected]]\nname = \"dcs\"\ntags = [\"domain-controller\"]\neffect = \"deny\"\n\n",
    );
    text.push_str(
        "[[protected]]\nname = \"payments\"\ncidrs = [\"10.20.0.0/16\"]\neffect = \"approval\"\n\n",
    );
    text.push_str("[[protected]]\nname = \"execs\"\nattributes = { role = \"executive\" }\neffect = \"approval\"\n\n");
    text.push_str("[[freezes]]\nname = \"year end\"\nstart = \"2030-12-20T00:00\"\nend = \"2031-01-03T00:00\"\ntime_zone = \"Europe/Berlin\"\n");
    text
}

fn main() {
    let policy = Policy::from_toml(&policy_text()).unwrap();
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let target = |n: u32| {
        let attrs: BTreeMap<String, String> = [
            ("site".to_owned(), format!("site-{}", n % 20)),
            ("tags".to_owned(), "linux,web".to_owned()),
        ]
        .into();
        Target::new(
            "ip".into(),
            format!("198.51.{}.{}", n / 250 % 250, n % 250),
            attrs,
        )
        .unwrap()
    };
    let step = |n: u32| Step::new("block_ip".parse().unwrap(), target(n), BTreeMap::new()).unwrap();
    let mut ledger = Ledger::default();
    for n in 0..1000 {
        let steps = [step(n)];
        ledger.reserve(IntentId::generate(), now, None, &policy.claims(&steps));
    }
    let detection = Detection::new(
        "rule.7".into(),
        Severity::High,
        Confidence::try_from(0.93).unwrap(),
        String::new(),
    )
    .unwrap();
    let steps = [step(4242)];
    let switches = KillSwitches::default();
    let suppressions = parapet_policy::rules::Suppressions::default();
    let input = DecisionInput {
        detection: &detection,
        steps: &steps,
        now,
        kill_switches: &switches,
        ledger: &ledger,
        suppressions: &suppressions,
        demoted: &Default::default(),
        approved: false,
        ceiling: None,
    };

    for _ in 0..10_000 {
        black_box(policy.decide(black_box(input)));
    }
    let mut times = Vec::with_capacity(200_000);
    for _ in 0..200_000 {
        let t = Instant::now();
        black_box(policy.decide(black_box(input)));
        times.push(t.elapsed());
    }
    times.sort_unstable();
    let pct = |p: f64| times[((times.len() as f64 * p) as usize).min(times.len() - 1)];
    let decision = policy.decide(input);
    println!(
        "decide (20 detections, 10 budgets, 3 protections, 1,000 active units): median {:.2} µs, p99 {:.2} µs, p99.9 {:.2} µs; outcome {:?} with {} reasons",
        pct(0.5).as_secs_f64() * 1e6,
        pct(0.99).as_secs_f64() * 1e6,
        pct(0.999).as_secs_f64() * 1e6,
        decision.outcome,
        decision.reasons.len(),
    );
}
