//! Demotion follows its rule exactly: for any sequence of verdicts, clock moves and
//! restorations, a detection is demoted from the moment the README's rule holds over its
//! window (more than `demote_above` of at least `demote_min_verdicts` verdicts false, counting
//! the latest verdict per intent given in the last `demote_window`, after its last restoration),
//! and stays so until an operator restores it.

use std::time::{Duration, SystemTime};

use parapet_model::IntentRequest;
use proptest::prelude::*;

use super::super::*;
use crate::{
    clock::{Clock as _, ManualClock},
    lifecycle::Verdict,
};

const POLICY: &str = r#"
[[detections]]
id = "d0"
[detections.actions]
block_ip = "shadow"

[[detections]]
id = "d1"
[detections.actions]
block_ip = "shadow"

[verdicts]
demote_above = 0.5
demote_window = "2h"
demote_min_verdicts = 3
"#;

const WINDOW: Duration = Duration::from_secs(2 * 3600);
const MIN: usize = 3;
const ABOVE: f64 = 0.5;

#[derive(Debug, Clone)]
enum Op {
    /// A new intent of detection `d` judged a false positive (or not).
    Verdict { d: usize, false_positive: bool },
    /// The same intent as the n-th verdict judged again, the other way.
    Rejudge(usize),
    /// Minutes pass.
    Advance(u64),
    /// An operator restores detection `d` (if it is demoted).
    Restore(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0usize..2, any::<bool>()).prop_map(|(d, false_positive)| Op::Verdict { d, false_positive }),
        1 => (0usize..64).prop_map(Op::Rejudge),
        3 => (1u64..90).prop_map(Op::Advance),
        1 => (0usize..2).prop_map(Op::Restore),
    ]
}

/// What the README says, kept beside the engine.
#[derive(Default)]
struct Model {
    /// Per intent: detection, latest verdict time, false positive.
    verdicts: Vec<(usize, SystemTime, bool)>,
    restored: [Option<SystemTime>; 2],
    demoted: [bool; 2],
}

impl Model {
    fn holds(&self, d: usize, now: SystemTime) -> bool {
        let start = now - WINDOW;
        let since = self.restored[d].map_or(start, |r| r.max(start));
        let counted: Vec<bool> = self
            .verdicts
            .iter()
            .filter(|(vd, at, _)| *vd == d && *at > since && *at <= now)
            .map(|(_, _, fp)| *fp)
            .collect();
        let fp = counted.iter().filter(|f| **f).count();
        counted.len() >= MIN && fp as f64 / counted.len() as f64 > ABOVE
    }

    /// Time moves from `from` to `to`: the rule is looked at whenever a true positive leaves.
    fn advance(&mut self, from: SystemTime, to: SystemTime) {
        for d in 0..2 {
            let mut exits: Vec<SystemTime> = self
                .verdicts
                .iter()
                .filter(|(vd, _, fp)| *vd == d && !fp)
                .map(|(_, at, _)| *at + WINDOW)
                .filter(|t| *t > from && *t <= to)
                .collect();
            exits.sort();
            for t in exits {
                if !self.demoted[d] && self.holds(d, t) {
                    self.demoted[d] = true;
                }
            }
        }
    }
}

fn request(n: usize, d: usize) -> IntentRequest {
    let ip = format!("198.51.100.{}", n % 250);
    let rule = format!("d{d}");
    crate::journal::fixtures::request(
        &format!("k{n}"),
        "s",
        &rule,
        "block_ip",
        &ip,
        Default::default(),
        None,
    )
}

/// Waits for the engine's demoted set to be the model's: timers that a clock move woke may
/// still be at work. A set that never comes to agree fails.
async fn agree(engine: &Engine, model: &Model, trace: &[String]) -> Result<(), TestCaseError> {
    let want: Vec<String> = (0..2)
        .filter(|d| model.demoted[*d])
        .map(|d| format!("d{d}"))
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        if engine.demoted() == want {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    prop_assert_eq!(engine.demoted(), want, "{:#?}", trace);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn a_detection_is_demoted_exactly_when_the_rule_holds(ops in prop::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let clock = ManualClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000));
            let engine = super::engine_on(POLICY, dir.path(), &clock).await;
            let mut model = Model::default();
            let mut intents = Vec::new();
            let mut trace = Vec::new();
            for op in ops {
                match op.clone() {
                    Op::Verdict { d, false_positive } => {
                        let n = intents.len();
                        let id = engine.submit(request(n, d), true).await.unwrap().record.intent.id;
                        let verdict = if false_positive { Verdict::FalsePositive } else { Verdict::TruePositive };
                        engine.judge(id, "analyst", verdict, "").await.unwrap();
                        intents.push((id, d, false_positive));
                        model.verdicts.push((d, clock.now(), false_positive));
                        if !model.demoted[d] && model.holds(d, clock.now()) {
                            model.demoted[d] = true;
                        }
                    }
                    Op::Rejudge(i) if !intents.is_empty() => {
                        let i = i % intents.len();
                        let (id, d, was) = intents[i];
                        let verdict = if was { Verdict::TruePositive } else { Verdict::FalsePositive };
                        engine.judge(id, "analyst", verdict, "").await.unwrap();
                        intents[i].2 = !was;
                        model.verdicts[i] = (d, clock.now(), !was);
                        if !model.demoted[d] && model.holds(d, clock.now()) {
                            model.demoted[d] = true;
                        }
                    }
                    Op::Rejudge(_) => {}
                    Op::Advance(minutes) => {
                        let from = clock.now();
                        clock.advance(Duration::from_secs(minutes * 60));
                        model.advance(from, clock.now());
                    }
                    Op::Restore(d) if model.demoted[d] => {
                        engine.set_demoted(&format!("d{d}"), false, "operator", "rule fixed").await.unwrap();
                        model.demoted[d] = false;
                        model.restored[d] = Some(clock.now());
                    }
                    Op::Restore(_) => {}
                }
                trace.push(format!("{op:?} at {:?}: model {:?}", clock.now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs() - 1_800_000_000, model.demoted));
                agree(&engine, &model, &trace).await?;
            }
            engine.stop().await;
            Ok::<(), TestCaseError>(())
        })?;
    }
}
