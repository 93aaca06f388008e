//! Rate limits as data: one GCRA cell per limit and key, advanced only by the times given.
//!
//! The generic cell rate algorithm keeps, for each key, the theoretical arrival time (TAT) of
//! the next request. With `T = per / max` between requests and room for `burst` at once, a
//! request at `now` is allowed when `now >= TAT - T·(burst − 1)`; allowing it moves the TAT to
//! `max(TAT, now) + T`. A refusal says when the earliest next request will be allowed. A cell
//! whose TAT has passed is the same as none, so such cells are dropped.

use std::{
    collections::HashMap,
    time::{Duration, SystemTime},
};

use parapet_model::{Intent, Outcome, Reason};

use crate::{
    guardrail,
    rules::{RateKey, RateLimit},
    seen::RateSeen,
};

/// The cells of every rate limit, by limit name and key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateCells {
    /// The theoretical arrival time, as time since the Unix epoch, by limit and key.
    tat: HashMap<String, HashMap<String, Duration>>,
    /// Cells kept after the last pruning: the next is due when they have doubled.
    kept: usize,
}

/// The rate limits' answer about one intent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RateCheck {
    /// One reason per limit and key, allowing or refusing.
    pub reasons: Vec<Reason>,
    pub seen: Vec<RateSeen>,
    /// Whether any limit refused.
    pub denied: bool,
    /// When every refusing limit allows again.
    pub retry_after: Option<Duration>,
}

/// The time between two requests of a limit, and the tolerance its burst gives.
fn interval(rule: &RateLimit) -> (Duration, Duration) {
    let t = (rule.per.0 / rule.max.get()).max(Duration::from_nanos(1));
    let burst = rule.burst.unwrap_or(rule.max).get();
    (t, t.saturating_mul(burst - 1))
}

fn since_epoch(t: SystemTime) -> Duration {
    t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default()
}

impl RateCells {
    /// Asks one cell for a request at `now`, as `cell` stands (its TAT, `None` for a cell
    /// never used): the cell's TAT after it (`Ok`) or how long until it would allow.
    fn answer(
        rule: &RateLimit,
        cell: Option<Duration>,
        now: SystemTime,
    ) -> Result<Duration, Duration> {
        let (t, tau) = interval(rule);
        let now = since_epoch(now);
        let cell = cell.unwrap_or(now);
        let earliest = cell.saturating_sub(tau);
        if now < earliest {
            return Err(earliest - now);
        }
        Ok(cell.max(now).saturating_add(t))
    }

    /// One cell asked and, when it allows, taken.
    #[cfg(test)]
    fn take_one(&mut self, rule: &RateLimit, key: &str, now: SystemTime) -> Result<(), Duration> {
        let cell = self
            .tat
            .get(rule.name.as_str())
            .and_then(|c| c.get(key))
            .copied();
        let tat = Self::answer(rule, cell, now)?;
        self.tat
            .entry(rule.name.clone())
            .or_default()
            .insert(key.to_owned(), tat);
        Ok(())
    }

    /// Checks every limit the intent falls under (its source, its detection, each step's
    /// action kind), taking a cell from each that allows.
    pub fn take(&mut self, limits: &[RateLimit], intent: &Intent, now: SystemTime) -> RateCheck {
        let (check, taken) = self.check(limits, intent, now);
        for ((limit, key), tat) in taken {
            self.tat.entry(limit).or_default().insert(key, tat);
        }
        check
    }

    /// What [`Self::take`] would answer, taking nothing.
    pub fn peek(&self, limits: &[RateLimit], intent: &Intent, now: SystemTime) -> RateCheck {
        self.check(limits, intent, now).0
    }

    /// The answer, and the cells an intent that goes ahead would take (a key met twice, as two
    /// steps of one kind, is asked twice, the second after the first).
    fn check(
        &self,
        limits: &[RateLimit],
        intent: &Intent,
        now: SystemTime,
    ) -> (RateCheck, HashMap<(String, String), Duration>) {
        let mut taken: HashMap<(String, String), Duration> = HashMap::new();
        let mut check = RateCheck::default();
        for rule in limits {
            let keys: Vec<&str> = match rule.key {
                RateKey::Source => vec![&intent.source],
                RateKey::Detection => vec![&intent.detection.rule_id],
                RateKey::ActionKind => intent.steps.iter().map(|s| s.kind.as_str()).collect(),
            };
            let per = humantime::format_duration(rule.per.0);
            for key in keys {
                let id = (rule.name.clone(), key.to_owned());
                let cell = taken.get(&id).copied().or_else(|| {
                    self.tat
                        .get(rule.name.as_str())
                        .and_then(|cells| cells.get(key))
                        .copied()
                });
                let answer = Self::answer(rule, cell, now).map(|tat| {
                    taken.insert(id, tat);
                });
                check.seen.push(RateSeen {
                    limit: rule.name.clone(),
                    key: key.to_owned(),
                    allowed: answer.is_ok(),
                    retry_after: answer.err(),
                });
                let (effect, message) = match answer {
                    Ok(()) => (
                        Outcome::Execute,
                        format!(
                            "rate limit `{}` ({key}): within {} per {per}",
                            rule.name, rule.max
                        ),
                    ),
                    Err(after) => {
                        check.denied = true;
                        check.retry_after = check.retry_after.max(Some(after));
                        let secs = Duration::from_secs(
                            after.as_secs() + u64::from(after.subsec_nanos() > 0),
                        );
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
                check.reasons.push(Reason {
                    guardrail: guardrail::RATE_LIMIT.to_owned(),
                    effect,
                    message,
                    step: None,
                });
            }
        }
        (check, taken)
    }

    /// Drops the cells whose TAT has passed: they would answer as no cell does.
    pub fn prune(&mut self, now: SystemTime) {
        let now = since_epoch(now);
        self.tat.retain(|_, cells| {
            cells.retain(|_, tat| *tat > now);
            !cells.is_empty()
        });
        self.kept = self.len();
    }

    /// Prunes once the cells have doubled since the last time, so that keeping them small
    /// costs a constant per request however many keys come and go.
    pub fn prune_when_grown(&mut self, now: SystemTime) {
        if self.len() >= 2 * self.kept.max(512) {
            self.prune(now);
        }
    }

    /// Cells kept.
    pub fn len(&self) -> usize {
        self.tat.values().map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;
    use crate::rules::Span;

    fn rule(max: u32, per: u64, burst: Option<u32>) -> RateLimit {
        RateLimit {
            name: "r".into(),
            key: RateKey::Source,
            max: NonZeroU32::new(max).unwrap(),
            per: Span(Duration::from_secs(per), format!("{per}s")),
            burst: burst.and_then(NonZeroU32::new),
        }
    }

    fn at(secs: f64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs_f64(1_000_000.0 + secs)
    }

    #[test]
    fn a_burst_then_one_per_interval() {
        // 6 per minute, burst 3: three at once, then one every 10 s
        let r = rule(6, 60, Some(3));
        let mut cells = RateCells::default();
        for _ in 0..3 {
            assert_eq!(cells.take_one(&r, "k", at(0.0)), Ok(()));
        }
        assert_eq!(
            cells.take_one(&r, "k", at(0.0)),
            Err(Duration::from_secs(10))
        );
        assert_eq!(
            cells.take_one(&r, "k", at(4.0)),
            Err(Duration::from_secs(6))
        );
        assert_eq!(cells.take_one(&r, "k", at(10.0)), Ok(()));
        assert!(cells.take_one(&r, "k", at(10.0)).is_err());
        // another key has its own cell
        assert_eq!(cells.take_one(&r, "other", at(10.0)), Ok(()));
    }

    #[test]
    fn without_a_burst_the_maximum_is_the_burst() {
        let r = rule(2, 60, None);
        let mut cells = RateCells::default();
        assert!(cells.take_one(&r, "k", at(0.0)).is_ok());
        assert!(cells.take_one(&r, "k", at(0.0)).is_ok());
        assert_eq!(
            cells.take_one(&r, "k", at(0.0)),
            Err(Duration::from_secs(30))
        );
    }

    #[test]
    fn a_refusal_takes_nothing_and_a_passed_cell_is_none() {
        let r = rule(1, 60, None);
        let mut cells = RateCells::default();
        assert!(cells.take_one(&r, "k", at(0.0)).is_ok());
        for _ in 0..5 {
            assert_eq!(
                cells.take_one(&r, "k", at(30.0)),
                Err(Duration::from_secs(30))
            );
        }
        cells.prune(at(59.0));
        assert_eq!(cells.len(), 1, "a cell still ahead is kept");
        assert!(cells.take_one(&r, "k", at(59.0)).is_err());
        cells.prune(at(60.0));
        assert!(cells.is_empty());
        assert!(cells.take_one(&r, "k", at(60.0)).is_ok());
    }
}
