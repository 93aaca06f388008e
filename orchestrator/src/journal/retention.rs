//! Retention: the oldest segments go once they are older than an age or the journal is larger
//! than a size, so history does not grow without bound.
//!
//! A compaction removes whole segments from the front, and only up to a point where every
//! intent with an entry before it has ended and has no entry after it: an intent still active
//! (or one whose history would be cut in two) keeps everything from its first entry on. The
//! chain is verified first, so retention never erases evidence of tampering; the hash of the
//! last entry removed becomes the log's anchor, which the first entry kept carries as `prev`;
//! and the compaction itself is journaled. The index then forgets what was removed.

use std::{
    collections::{HashMap, HashSet},
    io,
    time::{Duration, SystemTime},
};

use parapet_model::IntentId;

use super::{
    Index, Journal, hash, hex,
    index::key,
    kv::{Batch, Kv},
    log::{Anchor, LogReader},
    verify,
};
use crate::lifecycle::{Event, IntentEvent, SystemEvent};

/// When old entries go. Either limit, or both; none keeps everything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// Entries older than this go.
    pub max_age: Option<Duration>,
    /// The oldest entries go while the journal is larger than this.
    pub max_bytes: Option<u64>,
}

impl Retention {
    pub fn keeps_everything(&self) -> bool {
        self.max_age.is_none() && self.max_bytes.is_none()
    }
}

/// What one compaction removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compaction {
    /// Entries up to this one were removed; the chain now starts after it.
    pub anchor: Anchor,
    pub entries: u64,
    pub intents: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

/// A compaction decided on, for the writer to carry out if nothing changed meanwhile.
pub(super) struct Plan {
    pub anchor: Anchor,
    /// Every intent with an entry up to the anchor: each must still be ended, with no newer entry.
    pub intents: Vec<IntentId>,
    pub entries: u64,
}

impl Journal {
    /// Removes what `rules` let go, if anything may go now. Verifies the chain first and
    /// refuses to remove anything from a chain that does not verify.
    /// `actor` is journaled as who compacted.
    pub async fn compact(
        &self,
        rules: Retention,
        now: SystemTime,
        actor: &str,
    ) -> io::Result<Option<Compaction>> {
        if rules.keeps_everything() {
            return Ok(None);
        }
        let _walk = self.walks.lock().await;
        let (index, reader) = (self.index.clone(), self.reader.clone());
        let planned = tokio::task::spawn_blocking(move || -> io::Result<_> {
            let before = reader.size()?;
            Ok(plan(reader.as_ref(), &index, rules, now)?.map(|p| (p, before)))
        })
        .await
        .map_err(io::Error::other)??;
        let Some((plan, bytes_before)) = planned else {
            return Ok(None);
        };
        let (anchor, entries, intents) = (plan.anchor, plan.entries, plan.intents.len() as u64);
        self.send_compact(plan, actor).await?;
        let (index, reader) = (self.index.clone(), self.reader.clone());
        let bytes_after = tokio::task::spawn_blocking(move || -> io::Result<u64> {
            forget(&index, anchor.seq)?;
            reader.size()
        })
        .await
        .map_err(io::Error::other)??;
        tracing::info!(
            through = anchor.seq,
            entries,
            intents,
            bytes_before,
            bytes_after,
            "journal compacted"
        );
        Ok(Some(Compaction {
            anchor,
            entries,
            intents,
            bytes_before,
            bytes_after,
        }))
    }
}

/// Finds the furthest segment boundary the rules want and the intents allow.
pub(super) fn plan(
    reader: &dyn LogReader,
    index: &Index,
    rules: Retention,
    now: SystemTime,
) -> io::Result<Option<Plan>> {
    let segments = reader.segments()?;
    if segments.len() < 2 {
        return Ok(None);
    }
    // the boundaries are the starts of the segments after the first: all before one may go
    let boundaries: Vec<u64> = segments[1..].iter().map(|(start, _)| *start).collect();
    let mut wanted = 0;
    if let Some(max) = rules.max_bytes {
        let mut remaining: u64 = segments.iter().map(|(_, b)| b).sum();
        for ((_, bytes), next) in segments.iter().zip(&boundaries) {
            if remaining <= max {
                break;
            }
            remaining -= bytes;
            wanted = *next;
        }
    }
    if let Some(age) = rules.max_age {
        let cutoff = now.checked_sub(age).unwrap_or(SystemTime::UNIX_EPOCH);
        for &b in &boundaries {
            match index.entry(b - 1)? {
                Some(last) if last.time < cutoff => wanted = wanted.max(b),
                _ => break,
            }
        }
    }
    if wanted == 0 {
        return Ok(None);
    }
    // walk up to it: a boundary may go if no intent seen before it has (or may get) an entry
    // at or after it
    let first = index.first_seq()?;
    let (mut latest, mut seen, mut order) = (0u64, HashSet::new(), Vec::new());
    let mut best: Option<(u64, usize)> = None;
    for entry in index.entries(first.saturating_sub(1)) {
        let entry = entry?;
        if boundaries.contains(&entry.seq) && latest < entry.seq {
            best = Some((entry.seq, order.len()));
        }
        if entry.seq >= wanted {
            break;
        }
        if let Some(id) = entry.intent_id
            && seen.insert(id)
        {
            order.push(id);
            latest = latest.max(match index.record(id)? {
                Some(r) if r.state.is_final() => r.last_seq,
                Some(_) => u64::MAX,
                None => 0,
            });
        }
    }
    let Some((cut, count)) = best else {
        return Ok(None);
    };
    let report = verify::verify(reader, Some(index), &[])?;
    if let Some(p) = report.problems.first() {
        return Err(io::Error::other(format!(
            "the journal's chain is broken (entry {} {}): nothing is removed until it is examined",
            p.seq, p.kind
        )));
    }
    let through = cut - 1;
    let bytes = index
        .entry_bytes(through)?
        .ok_or_else(|| io::Error::other(format!("entry {through} is not in the index")))?;
    order.truncate(count);
    Ok(Some(Plan {
        anchor: Anchor {
            seq: through,
            hash: hash(&bytes),
        },
        intents: order,
        entries: cut - first,
    }))
}

/// The event that records a compaction in the journal.
pub(super) fn event(plan: &Plan) -> Event {
    Event::System(SystemEvent::JournalCompacted {
        through: plan.anchor.seq,
        anchor: hex(&plan.anchor.hash),
        entries: plan.entries,
        intents: plan.intents.len() as u64,
    })
}

/// Whether the plan still holds: every intent it removes is still ended, with nothing newer.
pub(super) fn still_holds(index: &Index, plan: &Plan) -> io::Result<bool> {
    for id in &plan.intents {
        if let Some(r) = index.record(*id)?
            && (!r.state.is_final() || r.last_seq > plan.anchor.seq)
        {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Removes from the index everything derived from entries up to `through`: the entries, their
/// lookups, and the intents they belong to. Safe to repeat (it runs again on open if a crash
/// cut it short).
pub(super) fn forget(index: &Index, through: u64) -> io::Result<()> {
    let kv: &dyn Kv = index.kv.as_ref();
    let mut batch: Batch = Vec::new();
    // what each intent's entries were indexed under, learned from its `received` entry
    let mut keys_of: HashMap<IntentId, (String, Vec<(String, String)>)> = HashMap::new();
    for entry in index.entries(0) {
        let entry = entry?;
        if entry.seq > through {
            break;
        }
        let seq = entry.seq;
        batch.push((key::entry(seq), None));
        if seq.is_multiple_of(super::CHECKPOINT_EVERY) {
            batch.push((key::checkpoint(seq), None));
        }
        if let Some(id) = entry.intent_id {
            if let Event::Intent(IntentEvent::Received { intent }) = &entry.event {
                let rule = intent.detection.rule_id.clone();
                let targets = intent
                    .steps
                    .iter()
                    .map(|s| (s.target.kind.clone(), s.target.id.clone()))
                    .collect::<Vec<_>>();
                batch.push((key::intent(id), None));
                batch.push((key::live(id), None));
                batch.push((
                    key::idempotency(&intent.source, &intent.idempotency_key),
                    None,
                ));
                batch.push((key::verdict(&rule, id), None));
                keys_of.insert(id, (rule, targets));
            }
            batch.push((key::intent_entry(id, seq), None));
            if let Some((rule, targets)) = keys_of.get(&id) {
                let s = seq.to_be_bytes();
                batch.push(([&key::detection_entries(rule)[..], &s].concat(), None));
                for (kind, target) in targets {
                    batch.push(([&key::target_entries(kind, target)[..], &s].concat(), None));
                }
            }
        }
        if batch.len() >= 10_000 {
            kv.write(std::mem::take(&mut batch))?;
        }
    }
    if !batch.is_empty() {
        kv.write(batch)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
