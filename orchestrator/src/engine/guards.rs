//! The guardrails' state: budget usage, kill switches, rate limiters and the circuit breaker's
//! tally. One mutex guards it all, so a decision and its budget reservation are one step that no
//! concurrent submission can split. Never held across an await.

use std::{
    collections::{HashMap, VecDeque},
    time::{Duration, SystemTime},
};

use governor::{
    Quota, RateLimiter, clock::Clock as _, middleware::NoOpMiddleware,
    state::keyed::DefaultKeyedStateStore,
};
use parapet_model::{ActionKind, Intent, Outcome, Reason};
use parapet_policy::{
    KillSwitches, Ledger, Policy, guardrail,
    rules::{CircuitBreaker, RateKey, RateLimit, Suppressions},
    seen::RateSeen,
};

use crate::clock::SharedClock;

#[derive(Default)]
pub(super) struct Guards {
    pub ledger: Ledger,
    pub kill_switches: KillSwitches,
    /// Detection × target pairs judged false positives, denied for a while.
    pub suppressions: Suppressions,
    /// Detections demoted to approval after too many false positives.
    pub demoted: std::collections::BTreeSet<String>,
    pub limiters: Vec<Limiter>,
    /// Adapter calls per action kind: when, and whether they failed.
    pub calls: HashMap<ActionKind, VecDeque<(SystemTime, bool)>>,
}

/// governor reads Parapet's clock, so tests move rate limits with the rest of time.
#[derive(Clone)]
pub(super) struct GovernorClock(pub SharedClock);

impl governor::clock::Clock for GovernorClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        self.0
            .now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
    }
}

pub(super) struct Limiter {
    rule: RateLimit,
    limiter: RateLimiter<
        String,
        DefaultKeyedStateStore<String>,
        GovernorClock,
        NoOpMiddleware<Duration>,
    >,
    clock: GovernorClock,
}

impl Limiter {
    pub fn new(rule: &RateLimit, clock: &SharedClock) -> Self {
        let quota = Quota::with_period(rule.per.0 / rule.max.get())
            .unwrap_or_else(|| Quota::per_second(rule.max))
            .allow_burst(rule.burst.unwrap_or(rule.max));
        let clock = GovernorClock(clock.clone());
        Self {
            rule: rule.clone(),
            limiter: RateLimiter::new(quota, DefaultKeyedStateStore::default(), clock.clone()),
            clock,
        }
    }
}

/// Builds the rate limiters a policy asks for.
pub(super) fn limiters(policy: &Policy, clock: &SharedClock) -> Vec<Limiter> {
    policy
        .rate_limits
        .iter()
        .map(|r| Limiter::new(r, clock))
        .collect()
}

/// Checks the rate limits, taking a token from each that allows: the reasons, and how long until
/// every refusing limit allows again.
pub(super) fn rate_limit(
    guards: &Guards,
    intent: &Intent,
) -> (Vec<Reason>, Option<Duration>, Vec<RateSeen>) {
    let mut reasons = Vec::new();
    let mut seen = Vec::new();
    let mut wait = None;
    for l in &guards.limiters {
        let rule = &l.rule;
        let keys: Vec<String> = match rule.key {
            RateKey::Source => vec![intent.source.clone()],
            RateKey::Detection => vec![intent.detection.rule_id.clone()],
            RateKey::ActionKind => intent.steps.iter().map(|s| s.kind.to_string()).collect(),
        };
        let per = humantime::format_duration(rule.per.0);
        for key in keys {
            let answer = l.limiter.check_key(&key);
            seen.push(RateSeen {
                limit: rule.name.clone(),
                key: key.clone(),
                allowed: answer.is_ok(),
                retry_after: answer
                    .as_ref()
                    .err()
                    .map(|n| n.wait_time_from(l.clock.now())),
            });
            let (effect, message) = match answer {
                Ok(()) => (
                    Outcome::Execute,
                    format!(
                        "rate limit `{}` ({key}): within {} per {per}",
                        rule.name, rule.max
                    ),
                ),
                Err(not_until) => {
                    let after = not_until.wait_time_from(l.clock.now());
                    wait = wait.max(Some(after));
                    let secs =
                        Duration::from_secs(after.as_secs() + u64::from(after.subsec_nanos() > 0));
                    (
                        Outcome::Deny,
                        format!(
                            "rate limit `{}` ({key}): more than {} per {per}; retry in {}",
                            rule.name,
                            rule.max,
                            humantime::format_duration(secs)
                        ),
                    )
                }
            };
            reasons.push(Reason {
                guardrail: guardrail::RATE_LIMIT.to_owned(),
                effect,
                message,
                step: None,
            });
        }
    }
    (reasons, wait, seen)
}

/// Records an adapter call; returns the reason to trip the breaker for its kind, if it should.
pub(super) fn tally(
    guards: &mut Guards,
    breaker: Option<&CircuitBreaker>,
    kind: &ActionKind,
    now: SystemTime,
    failed: bool,
) -> Option<String> {
    let breaker = breaker?;
    let calls = guards.calls.entry(kind.clone()).or_default();
    calls.push_back((now, failed));
    let since = now
        .checked_sub(breaker.window.0)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    while calls.front().is_some_and(|(t, _)| *t < since) {
        calls.pop_front();
    }
    let total = calls.len() as u32;
    let failures = calls.iter().filter(|(_, f)| *f).count() as u32;
    let tripped = failed
        && total >= breaker.min_calls
        && f64::from(failures) / f64::from(total) > breaker.max_failure_rate
        && !guards.kill_switches.stops(kind);
    tripped.then(|| {
        format!(
            "circuit breaker: {failures} of {total} `{kind}` calls failed in the last {}",
            humantime::format_duration(breaker.window.0)
        )
    })
}
