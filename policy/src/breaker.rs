//! The circuit breaker as data: adapter calls per action kind within the breaker's window, and
//! the rule that trips it.

use std::{
    collections::{HashMap, VecDeque},
    time::SystemTime,
};

use parapet_model::ActionKind;

use crate::rules::CircuitBreaker;

/// Adapter calls per action kind: when, and whether they failed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Calls {
    by_kind: HashMap<ActionKind, VecDeque<(SystemTime, bool)>>,
}

impl Calls {
    /// Records a call of `kind` at `now`; answers why to trip the breaker for the kind when this
    /// failure takes it over its rate. `stopped` when the kind's kill switch is on already.
    pub fn record(
        &mut self,
        breaker: Option<&CircuitBreaker>,
        kind: &ActionKind,
        now: SystemTime,
        failed: bool,
        stopped: bool,
    ) -> Option<String> {
        let breaker = breaker?;
        let calls = self.by_kind.entry(kind.clone()).or_default();
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
            && !stopped
            && total >= breaker.min_calls
            && f64::from(failures) / f64::from(total) > breaker.max_failure_rate;
        tripped.then(|| {
            format!(
                "circuit breaker: {failures} of {total} `{kind}` calls failed in the last {}",
                humantime::format_duration(breaker.window.0)
            )
        })
    }

    /// Forgets a kind's calls (its kill switch was released: it starts afresh).
    pub fn forget(&mut self, kind: &ActionKind) {
        self.by_kind.remove(kind);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::rules::Span;

    #[test]
    fn trips_once_failures_pass_the_rate_with_enough_calls_in_the_window() {
        let breaker = CircuitBreaker {
            window: Span(Duration::from_secs(60), "1m".into()),
            min_calls: 4,
            max_failure_rate: 0.5,
        };
        let kind: ActionKind = "block_ip".parse().unwrap();
        let t = |s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(1_000 + s);
        let mut calls = Calls::default();
        // three failures: too few calls to judge
        for s in 0..3 {
            assert_eq!(calls.record(Some(&breaker), &kind, t(s), true, false), None);
        }
        let why = calls
            .record(Some(&breaker), &kind, t(3), true, false)
            .unwrap();
        assert_eq!(
            why,
            "circuit breaker: 4 of 4 `block_ip` calls failed in the last 1m"
        );
        // already stopped: nothing to trip
        assert_eq!(calls.record(Some(&breaker), &kind, t(4), true, true), None);
        // a minute on, the old calls have left the window
        calls.forget(&kind);
        assert_eq!(
            calls.record(Some(&breaker), &kind, t(100), true, false),
            None
        );
        // a success never trips it, and without a breaker nothing is counted
        assert_eq!(
            calls.record(Some(&breaker), &kind, t(101), false, false),
            None
        );
        assert_eq!(calls.record(None, &kind, t(102), true, false), None);
    }
}
