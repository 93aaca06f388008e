//! Reading the journal back with filters, in journal order, a page at a time.
//!
//! One filter drives the walk through an index whose keys are in journal order: the intent's
//! entries, the entries of intents acting on a target, or of a detection; without any of them,
//! the entries themselves from the start time. The other filters are checked on each entry and
//! its intent's record. So a query by target or detection reads only that target's or
//! detection's entries, however long the journal is.

use std::{collections::HashMap, io, sync::Arc, time::SystemTime};

use parapet_model::IntentId;

use super::{Entry, Index, decode, index::key};
use crate::{filter::IntentFilter, lifecycle::IntentRecord};

/// Which entries to read. Filters combine: an entry must match all that are set.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// The entries of this intent.
    pub intent: Option<IntentId>,
    /// The entries of intents this filter matches (in their current record).
    pub intents: IntentFilter,
    /// Who caused the entry.
    pub actor: Option<String>,
    /// Only entries of these kinds (`received`, `step_succeeded`, ...); all when empty.
    pub events: Vec<String>,
    /// Entries written in `[since, until)`.
    pub since: Option<SystemTime>,
    pub until: Option<SystemTime>,
    /// Only entries after this sequence number: the cursor for the next page.
    pub after_seq: u64,
    pub limit: usize,
}

impl Query {
    /// Whether a filter about the entry's intent is set: entries about Parapet itself fail it.
    fn about_intents(&self) -> bool {
        self.intent.is_some() || !self.intents.is_empty()
    }
}

impl Index {
    /// Calls `f` with each matching entry in journal order until it returns `false`.
    pub fn each_match(&self, q: &Query, f: &mut dyn FnMut(Entry) -> bool) -> io::Result<()> {
        let start = match q.since {
            Some(since) => self.first_seq_at(since)?.saturating_sub(1).max(q.after_seq),
            None => q.after_seq,
        };
        let mut records: HashMap<IntentId, Option<Arc<IntentRecord>>> = HashMap::new();
        let mut check = |entry: Entry| -> io::Result<bool> {
            if q.until.is_some_and(|u| entry.time >= u) {
                return Ok(false);
            }
            if q.since.is_some_and(|s| entry.time < s)
                || q.actor.as_ref().is_some_and(|a| &entry.actor != a)
                || (!q.events.is_empty() && !q.events.iter().any(|k| k == entry.event.kind()))
            {
                return Ok(true);
            }
            if q.about_intents() {
                let Some(id) = entry.intent_id else {
                    return Ok(true);
                };
                if q.intent.is_some_and(|i| i != id) {
                    return Ok(true);
                }
                let record = match records.get(&id) {
                    Some(r) => r.clone(),
                    None => {
                        let r = self.record(id)?.map(Arc::new);
                        records.insert(id, r.clone());
                        r
                    }
                };
                if !record.is_some_and(|r| q.intents.matches(&r)) {
                    return Ok(true);
                }
            }
            Ok(f(entry))
        };
        let driver = match (&q.intent, &q.intents.target, &q.intents.detection) {
            (Some(id), _, _) => Some(key::intent_entries(*id)),
            (None, Some((kind, id)), _) => Some(key::target_entries(kind, id)),
            (None, None, Some(rule)) => Some(key::detection_entries(rule)),
            (None, None, None) => None,
        };
        match driver {
            Some(prefix) => {
                let first = start.saturating_add(1);
                let mut from = [&prefix[..], &first.to_be_bytes()].concat();
                // an append that began before `first` may reach past it
                if let Some(pair) = self.kv.scan(&prefix, Some(&from), true).next() {
                    let pair = pair?;
                    if super::index::seq_range(&pair)?.1 >= first {
                        from = pair.0;
                    }
                }
                'walk: for pair in self.kv.scan(&prefix, Some(&from), false) {
                    let (lo, hi) = super::index::seq_range(&pair?)?;
                    for seq in lo.max(first)..=hi {
                        let Some(entry) = self.entry(seq)? else {
                            continue;
                        };
                        if !check(entry)? {
                            break 'walk;
                        }
                    }
                }
            }
            None => {
                let from = key::entry(start.saturating_add(1));
                for pair in self.kv.scan(key::Table::Entry.prefix(), Some(&from), false) {
                    let (_, v) = pair?;
                    if !check(decode(&v)?)? {
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// The first sequence number whose entry is at or after `t`: entry times never decrease,
    /// so a binary search over the dense sequence finds it in a few reads.
    fn first_seq_at(&self, t: SystemTime) -> io::Result<u64> {
        let (mut lo, mut hi) = (self.first_seq()?, self.applied_seq()? + 1);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.entry(mid)? {
                Some(e) if e.time < t => lo = mid + 1,
                _ => hi = mid,
            }
        }
        Ok(lo)
    }

    /// The first entry kept (after retention, the one after the anchor).
    pub fn first_seq(&self) -> io::Result<u64> {
        Ok(
            match self.kv.scan(key::Table::Entry.prefix(), None, false).next() {
                Some(pair) => {
                    let (k, _) = pair?;
                    let seq: [u8; 8] = k[1..9].try_into().map_err(io::Error::other)?;
                    u64::from_be_bytes(seq)
                }
                None => self.applied_seq()? + 1,
            },
        )
    }
}

#[cfg(test)]
mod tests;
