//! Budget usage: what each budget has handed out, per scope. Pure bookkeeping with the times it
//! is given; the engine owns one, changes it only while deciding (so a decision and its
//! reservation are one step) and rebuilds it from the journal on start.

use std::{
    collections::{BTreeMap, HashMap, VecDeque, hash_map::Entry},
    time::SystemTime,
};

use parapet_model::IntentId;

/// One unit of a budget claimed by one step: (budget name, scope value).
pub type Claim = (String, String);

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Holders {
    /// The sum of `by.units`, kept so a decision need not add them up.
    units: u32,
    by: BTreeMap<IntentId, Holding>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Holding {
    units: u32,
    /// When the holder's TTL should release it, if it has one: when a slot is expected to free.
    until: Option<SystemTime>,
}

/// Budget usage per budget and scope value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ledger {
    /// When units were taken, oldest first, for limits per window.
    taken: HashMap<Claim, VecDeque<SystemTime>>,
    /// Who holds units now, for limits on what is active at once.
    active: HashMap<Claim, Holders>,
    /// What each intent holds, to release it.
    held: HashMap<IntentId, Vec<Claim>>,
}

/// Usage of one budget in one scope, for reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    pub budget: String,
    pub scope: String,
    pub active: u32,
    pub taken: Vec<SystemTime>,
}

impl Ledger {
    /// Records that `id` takes these units at `at`, held until released.
    pub fn reserve(
        &mut self,
        id: IntentId,
        at: SystemTime,
        until: Option<SystemTime>,
        claims: &[Claim],
    ) {
        for claim in claims {
            push_sorted(self.taken.entry(claim.clone()).or_default(), at);
            let holders = self.active.entry(claim.clone()).or_default();
            holders.units += 1;
            holders
                .by
                .entry(id)
                .or_insert(Holding { units: 0, until })
                .units += 1;
        }
        if !claims.is_empty() {
            // sized to fit: one per active intent, and a vector grown from empty holds four
            match self.held.entry(id) {
                Entry::Occupied(mut held) => held.get_mut().extend(claims.iter().cloned()),
                Entry::Vacant(held) => {
                    held.insert(claims.to_vec());
                }
            }
        }
    }

    /// Moves when `id`'s units are expected to free (its TTL was extended).
    pub fn extend(&mut self, id: IntentId, until: SystemTime) {
        for claim in self.held.get(&id).into_iter().flatten() {
            if let Some(h) = self.active.get_mut(claim).and_then(|h| h.by.get_mut(&id)) {
                h.until = Some(until);
            }
        }
    }

    /// Counts `id`'s units as taken at `at` without holding them: for rebuilding the windows of
    /// intents that are no longer active.
    pub fn record_taken(&mut self, at: SystemTime, claims: &[Claim]) {
        for claim in claims {
            push_sorted(self.taken.entry(claim.clone()).or_default(), at);
        }
    }

    /// Releases what `id` holds (rolled back, expired, failed). Window usage stays: those
    /// targets were acted on.
    pub fn release(&mut self, id: IntentId) {
        for claim in self.held.remove(&id).unwrap_or_default() {
            if let Some(holders) = self.active.get_mut(&claim) {
                if let Some(h) = holders.by.remove(&id) {
                    holders.units -= h.units;
                }
                if holders.by.is_empty() {
                    self.active.remove(&claim);
                }
            }
        }
    }

    /// Forgets units taken before `before`; they count in no window any more.
    pub fn prune(&mut self, before: SystemTime) {
        self.taken.retain(|_, times| {
            while times.front().is_some_and(|t| *t < before) {
                times.pop_front();
            }
            !times.is_empty()
        });
    }

    /// Units taken since `since`, and the oldest of them.
    pub fn taken_since(&self, claim: &Claim, since: SystemTime) -> (u32, Option<SystemTime>) {
        let Some(times) = self.taken.get(claim) else {
            return (0, None);
        };
        let recent: Vec<_> = times.iter().filter(|t| **t >= since).collect();
        (recent.len() as u32, recent.first().map(|t| **t))
    }

    /// Units held now.
    pub fn active(&self, claim: &Claim) -> u32 {
        self.active.get(claim).map_or(0, |h| h.units)
    }

    /// The earliest time a holder's TTL should release a unit, if any holder has a TTL.
    pub fn next_release(&self, claim: &Claim) -> Option<SystemTime> {
        self.active
            .get(claim)?
            .by
            .values()
            .filter_map(|h| h.until)
            .min()
    }

    /// Every budget and scope in use.
    pub fn usage(&self) -> Vec<Usage> {
        let mut claims: Vec<&Claim> = self.taken.keys().chain(self.active.keys()).collect();
        claims.sort();
        claims.dedup();
        claims
            .into_iter()
            .map(|c| Usage {
                budget: c.0.clone(),
                scope: c.1.clone(),
                active: self.active(c),
                taken: self
                    .taken
                    .get(c)
                    .map(|t| t.iter().copied().collect())
                    .unwrap_or_default(),
            })
            .collect()
    }
}

/// Keeps times sorted (they almost always arrive in order, so this appends).
fn push_sorted(times: &mut VecDeque<SystemTime>, at: SystemTime) {
    let pos = times.partition_point(|t| *t <= at);
    times.insert(pos, at);
}
