//! Budgets, rate limits, the kill switch and the circuit breaker, over gRPC with the test's clock.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use parapet_tests::{Parapet, block, hours, step, v1 as pb};

const BUDGET: &str = r#"
[[detections]]
id = "edr.c2_beacon"
[detections.actions]
block_ip = "auto"
isolate_host = "auto"

[[budgets]]
name = "blocks at once"
action_kinds = ["block_ip"]
max_active = 5

[[budgets]]
name = "isolations per site"
action_kinds = ["isolate_host"]
scope = "site"
max_per_window = 2
window = "1h"
"#;

fn outcome(r: &pb::SubmitIntentResponse) -> i32 {
    r.decision.as_ref().unwrap().outcome
}

fn isolate(key: &str, host: &str, site: &str) -> pb::SubmitIntentRequest {
    let mut req = block(key, "unused");
    req.steps = vec![step(
        "isolate_host",
        "host",
        host,
        &[("site", site), ("ip", "192.0.2.10")],
    )];
    req
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_submitters_never_exceed_a_budget_by_even_one() {
    let p = Parapet::start_with_policy(Some(BUDGET)).await;
    let mut calls = tokio::task::JoinSet::new();
    for n in 0..64 {
        let mut client = p.intents();
        calls.spawn(async move {
            client
                .submit(block(&format!("k{n}"), &format!("198.51.100.{n}")))
                .await
                .unwrap()
                .into_inner()
        });
    }
    let mut executed = Vec::new();
    let mut refusals = Vec::new();
    while let Some(r) = calls.join_next().await {
        let r = r.unwrap();
        if outcome(&r) == pb::Outcome::Execute as i32 {
            executed.push(r.intent_id);
        } else {
            refusals.push(r.decision.unwrap());
        }
    }
    assert_eq!(executed.len(), 5);
    assert_eq!(refusals.len(), 59);
    let budget = refusals[0]
        .reasons
        .iter()
        .find(|r| r.guardrail == "budget")
        .unwrap();
    assert_eq!(budget.effect, pb::Outcome::Deny as i32);
    assert!(
        budget
            .message
            .starts_with("budget `blocks at once` (global=global): 5 of 5 active"),
        "{}",
        budget.message
    );
    assert_eq!(p.edl("block").await.lines().count(), 5);

    // rolling one back frees its slot
    p.rollback(&executed[0], "done").await;
    let r = p.submit(block("after", "198.51.100.200")).await.unwrap();
    assert_eq!(outcome(&r), pb::Outcome::Execute as i32);
}

#[tokio::test]
async fn a_window_budget_says_when_to_retry_and_survives_a_restart() {
    let p = Parapet::start_with_policy(Some(BUDGET)).await;
    for n in 0..2 {
        let r = p
            .submit(isolate(&format!("i{n}"), &format!("h{n}"), "hq"))
            .await
            .unwrap();
        assert_eq!(outcome(&r), pb::Outcome::Execute as i32);
        p.clock.advance(Duration::from_secs(10 * 60));
    }
    let refused = p.submit(isolate("i2", "h2", "hq")).await.unwrap();
    let d = refused.decision.unwrap();
    assert_eq!(d.outcome, pb::Outcome::Deny as i32);
    // the first isolation leaves the hour 40 minutes from now
    assert_eq!(
        d.retry_after,
        Some(parapet_proto::wkt::Duration {
            seconds: 40 * 60,
            nanos: 0
        })
    );
    // another site is not affected
    assert_eq!(
        outcome(&p.submit(isolate("b0", "b0", "branch")).await.unwrap()),
        pb::Outcome::Execute as i32
    );

    // a restart rebuilds the usage from the journal instead of resetting it
    let p = p.stop().await.start().await;
    let again = p.submit(isolate("i3", "h3", "hq")).await.unwrap();
    assert_eq!(outcome(&again), pb::Outcome::Deny as i32);
    p.clock.advance(Duration::from_secs(41 * 60));
    assert_eq!(
        outcome(&p.submit(isolate("i4", "h4", "hq")).await.unwrap()),
        pb::Outcome::Execute as i32
    );
}

#[tokio::test]
async fn active_budgets_are_restored_after_a_restart_and_freed_by_ttls() {
    let p = Parapet::start_with_policy(Some(BUDGET)).await;
    for n in 0..5 {
        let mut req = block(&format!("k{n}"), &format!("198.51.100.{n}"));
        req.ttl = Some(hours(1));
        p.submit(req).await.unwrap();
    }
    let p = p.stop().await.start().await;
    let status = p
        .admin()
        .get_status(pb::GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    let blocks = status
        .budgets
        .iter()
        .find(|b| b.budget == "blocks at once")
        .unwrap();
    assert_eq!((blocks.active, blocks.max_active), (5, Some(5)));
    let refused = p.submit(block("k5", "198.51.100.5")).await.unwrap();
    let d = refused.decision.unwrap();
    assert_eq!(d.outcome, pb::Outcome::Deny as i32);
    assert_eq!(
        d.retry_after,
        Some(parapet_proto::wkt::Duration {
            seconds: 3600,
            nanos: 0
        })
    );

    p.clock.advance(Duration::from_secs(3600));
    // wait for the expiries to finish, then there is room again
    let list = p
        .intents()
        .list(pb::ListIntentsRequest::default())
        .await
        .unwrap()
        .into_inner();
    for i in list.intents.iter().filter(|i| {
        i.state == pb::IntentState::Active as i32 || i.state == pb::IntentState::Expiring as i32
    }) {
        p.wait_for(&i.intent_id, pb::IntentState::RolledBack).await;
    }
    assert_eq!(
        outcome(&p.submit(block("k6", "198.51.100.6")).await.unwrap()),
        pb::Outcome::Execute as i32
    );
}

#[tokio::test]
async fn rate_limits_refuse_with_retry_after_and_refill_with_time() {
    let policy = format!(
        "{BUDGET}\n[[rate_limits]]\nname = \"per source\"\nkey = \"source\"\nmax = 2\nper = \"1m\"\n"
    );
    let p = Parapet::start_with_policy(Some(&policy)).await;
    for n in 0..2 {
        let r = p
            .submit(block(&format!("r{n}"), &format!("198.51.100.{n}")))
            .await
            .unwrap();
        assert_eq!(outcome(&r), pb::Outcome::Execute as i32);
    }
    let refused = p.submit(block("r2", "198.51.100.2")).await.unwrap();
    let d = refused.decision.unwrap();
    assert_eq!(d.outcome, pb::Outcome::Deny as i32);
    let limit = d
        .reasons
        .iter()
        .find(|r| r.effect == pb::Outcome::Deny as i32)
        .unwrap();
    assert_eq!(limit.guardrail, "rate_limit");
    assert!(
        limit
            .message
            .starts_with("rate limit `per source` (xdr): more than 2 per 1m"),
        "{}",
        limit.message
    );
    assert_eq!(
        d.retry_after,
        Some(parapet_proto::wkt::Duration {
            seconds: 30,
            nanos: 0
        })
    );
    // another source has its own allowance
    let mut other = block("s0", "198.51.100.9");
    other.source = "siem".into();
    assert_eq!(
        outcome(&p.submit(other).await.unwrap()),
        pb::Outcome::Execute as i32
    );
    p.clock.advance(Duration::from_secs(30));
    assert_eq!(
        outcome(&p.submit(block("r3", "198.51.100.3")).await.unwrap()),
        pb::Outcome::Execute as i32
    );
}

#[tokio::test]
async fn the_kill_switch_stops_executions_survives_restarts_and_lets_rollbacks_run() {
    let p = Parapet::start().await;
    let before = p
        .submit(block("before", "198.51.100.1"))
        .await
        .unwrap()
        .intent_id;
    let engaged = p.kill_switch("block_ip", true).await;
    assert_eq!(engaged.engaged.len(), 1);
    assert_eq!(engaged.engaged[0].engaged_by, "bob@soc");

    let stopped = p.submit(block("during", "198.51.100.2")).await.unwrap();
    assert_eq!(stopped.state, pb::IntentState::Denied as i32);
    let reason = &stopped.decision.unwrap().reasons[0];
    assert_eq!(
        (reason.guardrail.as_str(), reason.message.as_str()),
        ("kill_switch", "the kill switch for `block_ip` is on")
    );

    let p = p.stop().await.start().await;
    assert_eq!(
        p.submit(block("after-restart", "198.51.100.3"))
            .await
            .unwrap()
            .state,
        pb::IntentState::Denied as i32
    );
    // undoing is never stopped
    p.rollback(&before, "cleaning up").await;
    assert_eq!(p.edl("block").await, "");

    p.kill_switch("block_ip", false).await;
    assert_eq!(
        p.submit(block("released", "198.51.100.4"))
            .await
            .unwrap()
            .state,
        pb::IntentState::Active as i32
    );
    // the global switch stops every kind
    p.kill_switch("", true).await;
    let r = p.submit(block("global", "198.51.100.5")).await.unwrap();
    assert_eq!(
        r.decision.unwrap().reasons[0].message,
        "the global kill switch is on"
    );
    let kinds: Vec<_> = p
        .entries(pb::QueryJournalRequest::default())
        .await
        .into_iter()
        .filter(|e| e.kind == "kill_switch")
        .map(|e| (e.actor, e.intent_id))
        .collect();
    assert_eq!(kinds.len(), 3);
    assert!(
        kinds
            .iter()
            .all(|(actor, intent)| actor == "bob@soc" && intent.is_empty())
    );
}

#[tokio::test]
async fn the_circuit_breaker_trips_the_kill_switch_for_a_failing_adapter() {
    // a careless policy lets /8 blocks through; the EDL adapter refuses them, so they fail
    let policy = r#"
[defaults]
min_prefix_v4 = 0
[[detections]]
id = "edr.c2_beacon"
[detections.actions]
block_ip = "auto"
[circuit_breaker]
window = "10m"
min_calls = 4
max_failure_rate = 0.5
"#;
    let p = Parapet::start_with_policy(Some(policy)).await;
    p.submit(block("ok", "198.51.100.1")).await.unwrap();
    for n in 0..3 {
        let r = p
            .submit(block(&format!("bad{n}"), &format!("{}.0.0.0/8", 10 + n)))
            .await
            .unwrap();
        assert_eq!(r.state, pb::IntentState::Failed as i32);
    }
    // 3 of 4 calls failed: the breaker engaged the kill switch for block_ip, as `parapet`
    let status = p
        .admin()
        .get_status(pb::GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.kill_switches.len(), 1);
    let k = &status.kill_switches[0];
    assert_eq!(
        (k.action_kind.as_str(), k.engaged_by.as_str()),
        ("block_ip", "parapet")
    );
    assert_eq!(
        k.reason,
        "circuit breaker: 3 of 4 `block_ip` calls failed in the last 10m"
    );
    let r = p.submit(block("next", "198.51.100.2")).await.unwrap();
    assert_eq!(r.state, pb::IntentState::Denied as i32);
    // an operator resets it
    p.kill_switch("block_ip", false).await;
    assert_eq!(
        p.submit(block("again", "198.51.100.3"))
            .await
            .unwrap()
            .state,
        pb::IntentState::Active as i32
    );
}
