//! Reading the journal back: by intent, target, detection and time, using the indexes.

use std::{collections::BTreeSet, io, time::SystemTime};

use parapet_model::IntentId;

use super::{Entry, Index};

/// Which entries to read. Filters combine: an entry must match all that are set.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub intent: Option<IntentId>,
    /// Target kind and id.
    pub target: Option<(String, String)>,
    pub detection: Option<String>,
    pub since: Option<SystemTime>,
    pub until: Option<SystemTime>,
    /// Only entries after this sequence number: the cursor for the next page.
    pub after_seq: u64,
    pub limit: usize,
}

impl Index {
    /// The matching entries in journal order, at most `limit`.
    pub fn query(&self, q: &Query) -> io::Result<Vec<Entry>> {
        let in_time =
            |e: &Entry| q.since.is_none_or(|s| e.time >= s) && q.until.is_none_or(|u| e.time < u);
        let mut out = Vec::new();
        match self.candidate_intents(q)? {
            Some(intents) => {
                let mut seqs = BTreeSet::new();
                for id in intents {
                    seqs.extend(
                        self.entry_seqs_of(id)?
                            .into_iter()
                            .filter(|s| *s > q.after_seq),
                    );
                }
                for seq in seqs {
                    let Some(entry) = self.entry(seq)? else {
                        continue;
                    };
                    if q.until.is_some_and(|u| entry.time >= u) {
                        break;
                    }
                    if in_time(&entry) {
                        out.push(entry);
                        if out.len() == q.limit {
                            break;
                        }
                    }
                }
            }
            None => {
                let start = match q.since {
                    Some(since) => self.first_seq_at(since)?.saturating_sub(1).max(q.after_seq),
                    None => q.after_seq,
                };
                for entry in self.entries(start) {
                    let entry = entry?;
                    if q.until.is_some_and(|u| entry.time >= u) || out.len() == q.limit {
                        break;
                    }
                    if in_time(&entry) {
                        out.push(entry);
                    }
                }
            }
        }
        Ok(out)
    }

    /// The intents the filters allow, or `None` when no intent-level filter is set.
    fn candidate_intents(&self, q: &Query) -> io::Result<Option<BTreeSet<IntentId>>> {
        let mut sets: Vec<BTreeSet<IntentId>> = Vec::new();
        if let Some(id) = q.intent {
            sets.push([id].into());
        }
        if let Some((kind, id)) = &q.target {
            sets.push(self.intents_by_target(kind, id)?.into_iter().collect());
        }
        if let Some(rule) = &q.detection {
            sets.push(self.intents_by_detection(rule)?.into_iter().collect());
        }
        Ok(sets
            .into_iter()
            .reduce(|a, b| a.intersection(&b).copied().collect()))
    }

    /// The first sequence number whose entry is at or after `t`: entry times never decrease,
    /// so a binary search over the dense sequence finds it in a few reads.
    fn first_seq_at(&self, t: SystemTime) -> io::Result<u64> {
        let (mut lo, mut hi) = (1, self.applied_seq()? + 1);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.entry(mid)? {
                Some(e) if e.time < t => lo = mid + 1,
                _ => hi = mid,
            }
        }
        Ok(lo)
    }
}
