//! What one caller can take from Parapet besides budgets: streams held open, and refusals
//! journaled. A detector that misbehaves (or is turned against Parapet) can neither slow
//! everyone's submissions with thousands of watches nor fill the disk with denied intents.

use std::{collections::HashMap, num::NonZeroU32, sync::Arc, time::Duration};

use governor::{
    Quota, RateLimiter, clock::Clock as _, middleware::NoOpMiddleware,
    state::keyed::DefaultKeyedStateStore,
};
use parking_lot::Mutex;

use super::{Error, Result};
use crate::clock::SharedClock;

/// governor reads Parapet's clock, so tests move these limits with the rest of time.
#[derive(Clone)]
struct GovernorClock(SharedClock);

impl governor::clock::Clock for GovernorClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        self.0
            .now()
            .duration_since(std::time::SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
    }
}

/// The limits, as configured (`[limits]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    /// `Watch` streams one caller may hold open.
    pub watches_per_caller: usize,
    /// `Watch` streams open in all.
    pub watches: usize,
    /// Denied intents one source may have journaled per minute, and at once.
    pub denials_per_minute: NonZeroU32,
    pub denial_burst: NonZeroU32,
}

impl Default for RequestLimits {
    fn default() -> Self {
        Self {
            watches_per_caller: 16,
            watches: 256,
            denials_per_minute: NonZeroU32::new(600).unwrap_or(NonZeroU32::MIN),
            denial_burst: NonZeroU32::new(100).unwrap_or(NonZeroU32::MIN),
        }
    }
}

type Keyed =
    RateLimiter<String, DefaultKeyedStateStore<String>, GovernorClock, NoOpMiddleware<Duration>>;

pub(super) struct Limits {
    config: RequestLimits,
    watching: Arc<Mutex<Watching>>,
    denials: Keyed,
    clock: GovernorClock,
}

#[derive(Default)]
struct Watching {
    by: HashMap<String, usize>,
    total: usize,
}

/// One open `Watch` stream; dropping it (the stream ends) gives its place back.
pub struct WatchPermit {
    watching: Arc<Mutex<Watching>>,
    who: String,
}

impl Drop for WatchPermit {
    fn drop(&mut self) {
        let mut w = self.watching.lock();
        w.total = w.total.saturating_sub(1);
        if let Some(n) = w.by.get_mut(&self.who) {
            *n -= 1;
            if *n == 0 {
                w.by.remove(&self.who);
            }
        }
    }
}

impl Limits {
    pub(super) fn new(config: RequestLimits, clock: SharedClock) -> Self {
        let clock = GovernorClock(clock);
        let quota = Quota::per_minute(config.denials_per_minute).allow_burst(config.denial_burst);
        Self {
            config,
            watching: Arc::default(),
            denials: RateLimiter::new(quota, DefaultKeyedStateStore::default(), clock.clone()),
            clock,
        }
    }

    /// A place for one more stream of `who`, or why there is none.
    pub(super) fn watch(&self, who: &str) -> Result<WatchPermit> {
        let mut w = self.watching.lock();
        let mine = w.by.get(who).copied().unwrap_or(0);
        if mine >= self.config.watches_per_caller {
            return Err(Error::Exhausted(format!(
                "`{who}` holds {mine} watch streams already, the most one caller may: close one first"
            )));
        }
        if w.total >= self.config.watches {
            return Err(Error::Exhausted(format!(
                "{} watch streams are open, the most Parapet serves: try again later",
                w.total
            )));
        }
        *w.by.entry(who.to_owned()).or_insert(0) += 1;
        w.total += 1;
        Ok(WatchPermit {
            watching: self.watching.clone(),
            who: who.to_owned(),
        })
    }

    /// Counts one denied intent of `source` against its quota; refuses when none is left.
    pub(super) fn denial(&self, source: &str) -> Result<()> {
        // a source nobody vouches for (insecure mode) may be any string: forget the quiet ones
        if self.denials.len() > 10_000 {
            self.denials.retain_recent();
        }
        match self.denials.check_key(&source.to_owned()) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                Err(Error::Exhausted(format!(
                    "source `{source}` had more than {} intents denied in a minute; denied intents are not journaled for it until {}s from now",
                    self.config.denials_per_minute,
                    wait.as_secs().max(1)
                )))
            }
        }
    }
}
