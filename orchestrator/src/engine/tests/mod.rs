//! Budgets under any interleaving of submissions, rollbacks and expiries, checked against the
//! journal itself; and the usage a restart rebuilds equals the usage before it.

use crate::lifecycle::IntentEvent;
use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, SystemTime},
};

use parapet_actions::{
    Registry,
    edl::{Edl, EdlConfig},
};
use parapet_model::{IntentRequest, Outcome, Step};
use parapet_policy::Policy;
use proptest::prelude::*;

use super::*;
use crate::clock::Clock as _;
use crate::{
    clock::ManualClock,
    journal::{Journal, Query, kv::MemKv, log::MemLog},
};

const POLICY: &str = r#"
[[detections]]
id = "d"
[detections.actions]
block_ip = "auto"

[[budgets]]
name = "per site"
scope = "site"
max_active = 3
max_per_window = 4
window = "30m"
"#;

const SITES: [&str; 2] = ["hq", "branch"];

#[derive(Debug, Clone)]
enum Op {
    /// Submit a block at a site, with a TTL in minutes or none.
    Submit { site: usize, ttl: Option<u64> },
    /// Roll back the n-th intent submitted so far, if any.
    Rollback(usize),
    /// Let minutes pass.
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..SITES.len(), prop::option::of(1u64..40)).prop_map(|(site, ttl)| Op::Submit { site, ttl }),
        2 => (0usize..64).prop_map(Op::Rollback),
        1 => (1u64..20).prop_map(Op::Advance),
    ]
}

fn request(n: usize, site: &str, ttl: Option<u64>) -> IntentRequest {
    let ip = format!("198.51.100.{}", n % 250);
    let site = [("site".to_owned(), site.to_owned())].into();
    let ttl = ttl.map(|m| Duration::from_secs(m * 60));
    crate::journal::fixtures::request(&format!("k{n}"), "s", "d", "block_ip", &ip, site, ttl)
}

async fn engine(dir: &std::path::Path, clock: &ManualClock) -> Engine {
    engine_on(POLICY, dir, clock).await
}

/// An engine on `policy`, an in-memory journal and the EDL adapter in `dir`.
async fn engine_on(policy: &str, dir: &std::path::Path, clock: &ManualClock) -> Engine {
    let clock: crate::clock::SharedClock = Arc::new(clock.clone());
    let journal = Journal::open(
        Box::new(MemLog::default()),
        Arc::new(MemKv::default()),
        clock.clone(),
    )
    .unwrap();
    let mut registry = Registry::new();
    registry
        .register(Arc::new(
            Edl::open(EdlConfig::with_default_lists(dir.to_path_buf())).unwrap(),
        ))
        .unwrap();
    let policy = Arc::new(Policy::from_toml(policy).unwrap());
    Engine::start(
        Arc::new(journal),
        policy,
        registry,
        clock,
        EngineConfig::default(),
    )
    .await
    .unwrap()
}

/// What the journal says each site holds and has taken in the window: the truth to check the
/// ledger and the limits against.
fn truth(engine: &Engine, now: SystemTime) -> HashMap<String, (u32, u32)> {
    let index = engine.state();
    let mut out: HashMap<String, (u32, u32)> = HashMap::new();
    let since = now - Duration::from_secs(30 * 60);
    for entry in index
        .query(&Query {
            limit: usize::MAX,
            ..Query::default()
        })
        .unwrap()
    {
        let (Some(id), crate::lifecycle::Event::Intent(IntentEvent::Decided { decision, .. })) =
            (entry.intent_id, &entry.event)
        else {
            continue;
        };
        if decision.outcome != Outcome::Execute {
            continue;
        }
        let record = index.record(id).unwrap().unwrap();
        let site = record.intent.steps[0].target.attributes["site"].clone();
        let slot = out.entry(site).or_default();
        if !record.state.is_final() {
            slot.0 += 1;
        }
        if record.intent.received_at >= since {
            slot.1 += 1;
        }
    }
    out
}

fn ledger_view(engine: &Engine) -> HashMap<String, (u32, u32)> {
    engine
        .status()
        .unwrap()
        .budgets
        .into_iter()
        .filter(|row| !row.scope_value.is_empty())
        .map(|row| {
            (
                row.scope_value,
                (row.active, row.used_in_window.unwrap_or(0)),
            )
        })
        .filter(|(_, usage)| *usage != (0, 0))
        .collect()
}

/// Whether the ledger agrees with the journal, and no site is past its budget; a TTL the last
/// advance passed may still be expiring (its timer fires, the rollback journals, the budget is
/// released), moving both, so they are compared until that work is done.
async fn agrees(engine: &Engine, now: SystemTime) -> Result<(), String> {
    for attempt in 0.. {
        let truth = truth(engine, now);
        for (site, (active, in_window)) in &truth {
            if *active > 3 || *in_window > 4 {
                return Err(format!(
                    "{site}: {active} active, {in_window} in the window"
                ));
            }
        }
        let truth: HashMap<_, _> = truth.into_iter().filter(|(_, u)| *u != (0, 0)).collect();
        let ledger = ledger_view(engine);
        if ledger == truth {
            return Ok(());
        }
        if attempt >= 10_000 {
            return Err(format!(
                "the ledger {ledger:?} never agreed with the journal {truth:?}"
            ));
        }
        tokio::task::yield_now().await;
        settle(engine).await;
    }
    Ok(())
}

/// Waits until no work is in flight: every intent settled, and every background task (which
/// releases budget units after its last journal write) finished but the timer.
async fn settle(engine: &Engine) {
    let live: Vec<_> = engine
        .state()
        .live_records()
        .map(|r| r.unwrap().intent.id)
        .collect();
    for id in live {
        engine.wait_settled(id).await.unwrap();
    }
    while engine.inner.tasks.len() > 1 {
        tokio::task::yield_now().await;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn no_interleaving_takes_a_budget_past_its_limit(batches in prop::collection::vec(prop::collection::vec(op(), 1..6), 1..8)) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let clock = ManualClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000));
            let engine = engine(dir.path(), &clock).await;
            let mut submitted = Vec::new();
            let mut n = 0;
            for batch in batches {
                // everything in a batch runs at once
                let mut tasks = tokio::task::JoinSet::new();
                for op in batch {
                    match op {
                        Op::Submit { site, ttl } => {
                            n += 1;
                            let e = engine.clone();
                            let req = request(n, SITES[site], ttl);
                            tasks.spawn(async move { e.submit(req, false).await.map(|s| Some(s.record.intent.id)) });
                        }
                        Op::Rollback(i) if !submitted.is_empty() => {
                            let e = engine.clone();
                            let id = submitted[i % submitted.len()];
                            tasks.spawn(async move {
                                match e.rollback(id, "op", "test", false).await {
                                    Ok(_) | Err(Error::FailedPrecondition(_)) => Ok(None),
                                    Err(e) => Err(e),
                                }
                            });
                        }
                        Op::Rollback(_) => {}
                        Op::Advance(minutes) => clock.advance(Duration::from_secs(minutes * 60)),
                    }
                }
                while let Some(r) = tasks.join_next().await {
                    if let Some(id) = r.unwrap().unwrap() {
                        submitted.push(id);
                    }
                }
                settle(&engine).await;
                let now = clock.now();
                // no budget past its limit, and the ledger as the journal says
                if let Err(why) = agrees(&engine, now).await {
                    prop_assert!(false, "{}", why);
                }
                // the index's tally of live intents is their count; a TTL the last advance
                // passed may still be expiring, so compare once the tally holds still
                let index = engine.state();
                for attempt in 0.. {
                    prop_assert!(attempt < 10_000, "the tally never held still");
                    let before = index.tally().unwrap();
                    let mut recount = crate::journal::index::Tally::new();
                    for r in index.live_records() {
                        let r = r.unwrap();
                        let kind = r.intent.steps[0].kind.to_string();
                        *recount.entry((r.state, kind)).or_insert(0) += 1;
                    }
                    if index.tally().unwrap() == before {
                        prop_assert_eq!(before, recount);
                        break;
                    }
                    tokio::task::yield_now().await;
                }
                // what a restart rebuilds from the journal is what the journal says
                engine.restore_guards(&engine.policy(), |_| {}).unwrap();
                if let Err(why) = agrees(&engine, now).await {
                    prop_assert!(false, "rebuilt: {}", why);
                }
            }
            engine.stop().await;
            Ok(())
        })?;
    }
}

/// Fails transiently a set number of times, or permanently, then succeeds.
struct Flaky {
    transient_failures: u32,
    permanent: bool,
    calls: Arc<std::sync::atomic::AtomicU32>,
}

impl parapet_actions::Adapter for Flaky {
    type Handle = ();

    fn name(&self) -> &str {
        "flaky"
    }

    fn kinds(&self) -> Vec<parapet_model::ActionKind> {
        vec!["flaky_action".parse().unwrap()]
    }

    fn validate(&self, _step: &Step) -> Result<(), parapet_model::Invalid> {
        Ok(())
    }

    async fn execute(&self, _action: parapet_actions::Action<'_>) -> parapet_actions::Result<()> {
        let n = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if self.permanent {
            Err(parapet_actions::Error::permanent("refused"))
        } else if n < self.transient_failures {
            Err(parapet_actions::Error::transient("busy"))
        } else {
            Ok(())
        }
    }

    async fn rollback(&self, _handle: ()) -> parapet_actions::Result<()> {
        Ok(())
    }
}

async fn flaky_outcome(transient_failures: u32, permanent: bool) -> (State, u32) {
    let clock: crate::clock::SharedClock = Arc::new(ManualClock::new(SystemTime::UNIX_EPOCH));
    let journal = Journal::open(
        Box::new(MemLog::default()),
        Arc::new(MemKv::default()),
        clock.clone(),
    )
    .unwrap();
    let calls = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let mut registry = Registry::new();
    registry
        .register(Arc::new(Flaky {
            transient_failures,
            permanent,
            calls: calls.clone(),
        }))
        .unwrap();
    let policy = Policy::from_toml(
        "[[detections]]\nid = \"d\"\n[detections.actions]\nflaky_action = \"auto\"\n",
    )
    .unwrap();
    let engine = Engine::start(
        Arc::new(journal),
        Arc::new(policy),
        registry,
        clock,
        EngineConfig::default(),
    )
    .await
    .unwrap();
    let mut req = request(1, "hq", None);
    req.steps[0].kind = "flaky_action".parse().unwrap();
    let state = engine.submit(req, true).await.unwrap().record.state;
    engine.stop().await;
    (state, calls.load(std::sync::atomic::Ordering::SeqCst))
}

#[tokio::test]
async fn transient_adapter_errors_are_retried_and_permanent_ones_fail_fast() {
    assert_eq!(flaky_outcome(2, false).await, (State::Active, 3));
    // three retries after the first call, then the step fails
    assert_eq!(flaky_outcome(10, false).await, (State::Failed, 4));
    assert_eq!(flaky_outcome(0, true).await, (State::Failed, 1));
}

mod demotion;

/// A TTL extended by a repeat holds the budget as long as the block: the next intent is told
/// to retry when the extended TTL ends, before a restart as after it.
#[tokio::test]
async fn an_extended_ttl_holds_the_budget_until_it_ends_before_and_after_a_restart() {
    const ONE_AT_A_TIME: &str = r#"
[[detections]]
id = "d"
[detections.actions]
block_ip = "auto"

[[budgets]]
name = "per site"
scope = "site"
max_active = 1
"#;
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000));
    let engine = engine_on(ONE_AT_A_TIME, dir.path(), &clock).await;
    let first = engine
        .submit(request(1, "hq", Some(10)), true)
        .await
        .unwrap();
    assert_eq!(first.record.state, State::Active);
    clock.advance(Duration::from_secs(5 * 60));
    // the same key again, with a longer TTL: it now ends 30 minutes from here
    let repeat = engine
        .submit(request(1, "hq", Some(30)), false)
        .await
        .unwrap();
    assert!(repeat.duplicate);
    let retry_after = |engine: &Engine, n| {
        let engine = engine.clone();
        async move {
            let denied = engine.submit(request(n, "hq", None), false).await.unwrap();
            let decision = denied.record.decision.unwrap();
            assert_eq!(decision.outcome, Outcome::Deny);
            decision.retry_after
        }
    };
    let thirty_minutes = Some(Duration::from_secs(30 * 60));
    assert_eq!(retry_after(&engine, 2).await, thirty_minutes);
    engine.restore_guards(&engine.policy(), |_| {}).unwrap();
    assert_eq!(retry_after(&engine, 3).await, thirty_minutes);
    engine.stop().await;
}
