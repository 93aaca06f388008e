//! Leases: work that one holder at a time may do (a TTL's expiry, an approval's deadline, a
//! bulk rollback, retention), claimed for a while. Each change of holder gets a larger fencing
//! token, so an outcome written under a lapsed lease can be told from one written under the
//! current lease.

use std::{collections::HashMap, time::Duration};

use parking_lot::Mutex;

use crate::clock::SharedClock;

/// A claim on one piece of work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub work: String,
    pub holder: String,
    /// Grows with every change of holder of this work.
    pub token: u64,
    pub until: std::time::SystemTime,
}

/// Who holds which work.
pub trait Leases: Send + Sync + 'static {
    /// Claims `work` for `holder` for `ttl` from now: granted when nobody holds it, when the
    /// last holder's claim has lapsed, or (renewed, same token) when `holder` holds it already.
    fn claim(&self, work: &str, holder: &str, ttl: Duration) -> Option<Lease>;

    /// Whether `lease` is still the work's current one: its token is the latest and it has not
    /// lapsed. Checked before an outcome is written under it.
    fn holds(&self, lease: &Lease) -> bool;

    /// Gives the work up before the lease lapses (nothing, if it is no longer the holder's).
    fn release(&self, lease: &Lease);
}

/// Leases within one process: the embedded store's, where one Parapet holds the data
/// directory and so every piece of work.
pub struct LocalLeases {
    clock: SharedClock,
    held: Mutex<HashMap<String, Lease>>,
}

impl LocalLeases {
    pub fn new(clock: SharedClock) -> Self {
        Self {
            clock,
            held: Mutex::default(),
        }
    }
}

impl Leases for LocalLeases {
    fn claim(&self, work: &str, holder: &str, ttl: Duration) -> Option<Lease> {
        let now = self.clock.now();
        let until = now.checked_add(ttl)?;
        let mut held = self.held.lock();
        let token = match held.get(work) {
            Some(l) if l.holder == holder => l.token,
            Some(l) if l.until > now => return None,
            Some(l) => l.token + 1,
            None => 1,
        };
        let lease = Lease {
            work: work.to_owned(),
            holder: holder.to_owned(),
            token,
            until,
        };
        held.insert(work.to_owned(), lease.clone());
        Some(lease)
    }

    fn holds(&self, lease: &Lease) -> bool {
        let now = self.clock.now();
        self.held
            .lock()
            .get(&lease.work)
            .is_some_and(|l| l.token == lease.token && l.holder == lease.holder && l.until > now)
    }

    fn release(&self, lease: &Lease) {
        let mut held = self.held.lock();
        if let Some(l) = held.get_mut(&lease.work)
            && l.token == lease.token
            && l.holder == lease.holder
        {
            // lapsed at once; the token stays, so the next holder's is larger
            l.until = std::time::SystemTime::UNIX_EPOCH;
        }
    }
}
