//! The state derived from the log, kept in a [`Kv`] store: intent records and the indexes that
//! answer queries without reading the whole log.
//!
//! Key layout, one [`key::Table`] per prefix; a prefix has one meaning and is never reused
//! (`t` and `d`, the intents by target and by detection of layout 3, are retired):
//!
//! | key                                     | value                    |
//! |-----------------------------------------|--------------------------|
//! | `m` `applied`                           | last applied seq (BE)    |
//! | `m` `head`                              | last applied seq (BE), its hash |
//! | `m` `layout`                            | this layout's number ([`LAYOUT`])  |
//! | `m` `tally`                             | live intents by state and first action kind |
//! | `c` seq                                 | the chain's hash at seq (every 1024th) |
//! | `e` seq                                 | the entry                |
//! | `i` intent                              | the record of an ended intent |
//! | `k` source `\0` idempotency key         | intent                   |
//! | `n` intent seq                          | last seq (BE): entries of an intent, seq to last |
//! | `T` target kind `\0` target id `\0` seq | last seq (BE): entries by target, in order |
//! | `D` rule id `\0` seq                    | last seq (BE): entries by detection, in order |
//! | `l` intent                              | the record of an intent not yet ended |
//! | `w` intent                              | (intents awaiting approval) |
//! | `s` `k` action kind, or `*`             | seq of the engaging entry (engaged kill switches) |
//! | `s` `d` rule id                         | (demoted detections)     |
//! | `s` `r` rule id                         | when it was last restored (ms, BE) |
//! | `j` rule id `\0` intent                 | its latest verdict and action kinds |
//! | `b` operation id                        | an unfinished bulk rollback: members, reason, actor |
//! | `x` rule `\0` target kind `\0` target id | suppressed until, and by whom |
//!
//! Numbers are big-endian and intents are their 16 UUIDv7 bytes, so keys sort by time. The
//! entries of one append are consecutive, so `n`, `T` and `D` keep one key per append, at its
//! first entry, whose value is its last (an empty value: the key's entry alone).
//! Strings cannot contain `\0`: validation refuses control characters.
//!
//! A record lives under `l` until its intent ends, then under `i`: start-up, the TTL timers and
//! the gauges read the live ones without walking every intent there ever was, and a batch
//! writes one key per live intent it touched. The tally and `w` change only when a state does,
//! so gauges and status read a few keys instead of every live record. An index of another
//! layout is rebuilt from the log when the journal opens.

use std::{collections::HashMap, io, sync::Arc, time::SystemTime};

use itertools::Itertools;
use parapet_model::IntentId;

use super::{
    Entry, decode, encode,
    kv::{Batch, Kv},
};
use crate::lifecycle::{Event, IntentEvent, IntentRecord, State, SystemEvent};
use key::Table;

pub(super) mod key {
    use parapet_model::IntentId;

    /// The tables the index keeps, each under its own key prefix (never reused).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Table {
        /// The index's own settings: [`APPLIED`], [`HEAD`], [`LAYOUT`], [`TALLY`], constants
        /// (a test checks they are under this prefix).
        #[cfg_attr(not(test), allow(dead_code))]
        Meta,
        /// The chain's hash at every 1024th entry.
        Checkpoint,
        Entry,
        /// The records of ended intents.
        Ended,
        /// The records of intents not yet ended.
        Live,
        Idempotency,
        /// One key per append of an intent: its first entry, and its last as the value.
        IntentEntries,
        TargetEntries,
        DetectionEntries,
        Waiting,
        KillSwitch,
        Demoted,
        Restored,
        Verdict,
        Bulk,
        Suppression,
    }

    impl Table {
        pub const fn prefix(self) -> &'static [u8] {
            match self {
                Self::Meta => b"m",
                Self::Checkpoint => b"c",
                Self::Entry => b"e",
                Self::Ended => b"i",
                Self::Live => b"l",
                Self::Idempotency => b"k",
                Self::IntentEntries => b"n",
                Self::TargetEntries => b"T",
                Self::DetectionEntries => b"D",
                Self::Waiting => b"w",
                Self::KillSwitch => b"sk",
                Self::Demoted => b"sd",
                Self::Restored => b"sr",
                Self::Verdict => b"j",
                Self::Bulk => b"b",
                Self::Suppression => b"x",
            }
        }

        /// A key of this table: its prefix, then the parts as they are.
        pub fn key(self, parts: &[&[u8]]) -> Vec<u8> {
            let mut key = self.prefix().to_vec();
            for part in parts {
                key.extend_from_slice(part);
            }
            key
        }
    }

    /// Every table, to check the prefixes against each other.
    #[cfg(test)]
    pub const TABLES: [Table; 16] = [
        Table::Meta,
        Table::Checkpoint,
        Table::Entry,
        Table::Ended,
        Table::Live,
        Table::Idempotency,
        Table::IntentEntries,
        Table::TargetEntries,
        Table::DetectionEntries,
        Table::Waiting,
        Table::KillSwitch,
        Table::Demoted,
        Table::Restored,
        Table::Verdict,
        Table::Bulk,
        Table::Suppression,
    ];

    pub const APPLIED: &[u8] = b"mapplied";
    pub const HEAD: &[u8] = b"mhead";
    pub const LAYOUT: &[u8] = b"mlayout";
    pub const TALLY: &[u8] = b"mtally";

    pub fn checkpoint(seq: u64) -> Vec<u8> {
        Table::Checkpoint.key(&[&seq.to_be_bytes()])
    }

    pub fn entry(seq: u64) -> Vec<u8> {
        Table::Entry.key(&[&seq.to_be_bytes()])
    }

    pub fn intent(id: IntentId) -> Vec<u8> {
        Table::Ended.key(&[id.as_bytes()])
    }

    pub fn idempotency(source: &str, key: &str) -> Vec<u8> {
        Table::Idempotency.key(&[source.as_bytes(), b"\0", key.as_bytes()])
    }

    /// The appends of an intent; the sequence number follows.
    pub fn intent_entries(id: IntentId) -> Vec<u8> {
        Table::IntentEntries.key(&[id.as_bytes()])
    }

    pub fn intent_entry(id: IntentId, seq: u64) -> Vec<u8> {
        Table::IntentEntries.key(&[id.as_bytes(), &seq.to_be_bytes()])
    }

    /// The entries of intents acting on a target; the sequence number follows.
    pub fn target_entries(kind: &str, target: &str) -> Vec<u8> {
        Table::TargetEntries.key(&[kind.as_bytes(), b"\0", target.as_bytes(), b"\0"])
    }

    /// The entries of a detection's intents; the sequence number follows.
    pub fn detection_entries(rule: &str) -> Vec<u8> {
        Table::DetectionEntries.key(&[rule.as_bytes(), b"\0"])
    }

    pub fn live(id: IntentId) -> Vec<u8> {
        Table::Live.key(&[id.as_bytes()])
    }

    pub fn waiting(id: IntentId) -> Vec<u8> {
        Table::Waiting.key(&[id.as_bytes()])
    }

    /// A bulk rollback not yet finished.
    pub fn bulk(op: &str) -> Vec<u8> {
        Table::Bulk.key(&[op.as_bytes()])
    }

    /// The verdicts on a detection's intents; the intent follows.
    pub fn verdicts(rule: &str) -> Vec<u8> {
        Table::Verdict.key(&[rule.as_bytes(), b"\0"])
    }

    /// The latest verdict on an intent, under its detection.
    pub fn verdict(rule: &str, id: IntentId) -> Vec<u8> {
        Table::Verdict.key(&[rule.as_bytes(), b"\0", id.as_bytes()])
    }

    /// A detection suppressed on a target after a false positive.
    pub fn suppression(rule: &str, kind: &str, target: &str) -> Vec<u8> {
        let parts: [&[u8]; 5] = [
            rule.as_bytes(),
            b"\0",
            kind.as_bytes(),
            b"\0",
            target.as_bytes(),
        ];
        Table::Suppression.key(&parts)
    }

    /// An engaged kill switch: the action kind, or `*` for all kinds.
    pub fn kill_switch(kind: Option<&parapet_model::ActionKind>) -> Vec<u8> {
        Table::KillSwitch.key(&[kind.map_or("*", |k| k.as_str()).as_bytes()])
    }

    pub fn demoted(rule: &str) -> Vec<u8> {
        Table::Demoted.key(&[rule.as_bytes()])
    }

    pub fn restored(rule: &str) -> Vec<u8> {
        Table::Restored.key(&[rule.as_bytes()])
    }

    /// The intent id at the end of an index key.
    pub fn trailing_id(key: &[u8]) -> Option<IntentId> {
        let tail: [u8; 16] = key.get(key.len().checked_sub(16)?..)?.try_into().ok()?;
        Some(IntentId::from_bytes(tail))
    }
}

/// The latest verdict on one intent, as the precision report counts it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Judgement {
    pub verdict: crate::lifecycle::Verdict,
    pub kinds: Vec<String>,
    /// When the verdict was given.
    pub at: SystemTime,
}

/// A bulk rollback that was started and has not finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenBulk {
    pub op: String,
    pub members: Vec<IntentId>,
    pub reason: String,
    pub actor: String,
}

/// A detection suppressed on a target after a false positive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuppressionRecord {
    pub rule: String,
    pub target_kind: String,
    pub target_id: String,
    pub until: SystemTime,
    pub by: String,
}

/// The key layout this code reads and writes; an index holding another is rebuilt.
pub(super) const LAYOUT: u8 = 4;

/// How many live intents are in each state, by the action kind of their first step.
pub type Tally = std::collections::BTreeMap<(State, String), u64>;

/// What the tally counts an intent under, while it is live.
fn tallied(r: &IntentRecord) -> Option<(State, String)> {
    let kind = r.intent.steps.first().map(|s| s.kind.to_string());
    (!r.state.is_final()).then(|| (r.state, kind.unwrap_or_default()))
}

/// A time as milliseconds since the epoch, for keys and values.
fn millis(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Read access to the derived state.
#[derive(Clone)]
pub struct Index {
    pub(super) kv: Arc<dyn Kv>,
}

impl Index {
    pub(super) fn new(kv: Arc<dyn Kv>) -> Self {
        Self { kv }
    }

    pub fn applied_seq(&self) -> io::Result<u64> {
        Ok(self
            .kv
            .get(key::APPLIED)?
            .and_then(|v| v.try_into().ok())
            .map_or(0, u64::from_be_bytes))
    }

    /// The layout the index was written in; `None` for one written before layouts had numbers.
    pub(super) fn layout(&self) -> io::Result<Option<u8>> {
        Ok(self.kv.get(key::LAYOUT)?.and_then(|v| v.first().copied()))
    }

    pub fn record(&self, id: IntentId) -> io::Result<Option<IntentRecord>> {
        let bytes = match self.kv.get(&key::live(id))? {
            Some(b) => Some(b),
            None => self.kv.get(&key::intent(id))?,
        };
        bytes.map(|b| decode(&b)).transpose()
    }

    pub fn by_idempotency_key(&self, source: &str, key: &str) -> io::Result<Option<IntentId>> {
        Ok(self
            .kv
            .get(&key::idempotency(source, key))?
            .and_then(|v| key::trailing_id(&v)))
    }

    /// The last applied entry and its hash: the head of the chain as the index saw it.
    pub fn head(&self) -> io::Result<(u64, super::log::Hash)> {
        let Some(v) = self.kv.get(key::HEAD)? else {
            return Ok((0, [0; 32]));
        };
        let bad = || io::Error::other("the index's chain head is damaged");
        let seq = u64::from_be_bytes(v.get(..8).ok_or_else(bad)?.try_into().map_err(|_| bad())?);
        let hash = v
            .get(8..40)
            .ok_or_else(bad)?
            .try_into()
            .map_err(|_| bad())?;
        Ok((seq, hash))
    }

    /// The last entry the log had certainly acknowledged when the index last wrote: the one
    /// before the batch it wrote then (that batch was still syncing). Zero when unknown.
    pub fn acknowledged(&self) -> io::Result<u64> {
        Ok(self
            .kv
            .get(key::HEAD)?
            .and_then(|v| v.get(40..48).and_then(|b| b.try_into().ok()))
            .map_or(0, |b| u64::from_be_bytes(b).saturating_sub(1)))
    }

    /// The chain's hash at every checkpointed entry still kept.
    pub fn checkpoints(&self) -> io::Result<Vec<(u64, super::log::Hash)>> {
        self.kv
            .scan(Table::Checkpoint.prefix(), None, false)
            .map(|r| {
                let (k, v) = r?;
                let bad = || io::Error::other("a chain checkpoint in the index is damaged");
                let seq =
                    u64::from_be_bytes(k.get(1..9).ok_or_else(bad)?.try_into().map_err(|_| bad())?);
                Ok((seq, v.as_slice().try_into().map_err(|_| bad())?))
            })
            .collect()
    }

    /// An entry's bytes as the index keeps them (what queries read).
    pub fn entry_bytes(&self, seq: u64) -> io::Result<Option<Vec<u8>>> {
        self.kv.get(&key::entry(seq))
    }

    pub fn entry(&self, seq: u64) -> io::Result<Option<Entry>> {
        self.kv
            .get(&key::entry(seq))?
            .map(|b| decode(&b))
            .transpose()
    }

    /// Entries from `after_seq + 1` on, in order.
    pub fn entries(&self, after_seq: u64) -> impl Iterator<Item = io::Result<Entry>> + '_ {
        let start = key::entry(after_seq.saturating_add(1));
        self.kv
            .scan(Table::Entry.prefix(), Some(&start), false)
            .map(|r| r.and_then(|(_, v)| decode(&v)))
    }

    /// The sequence numbers of an intent's entries, in order.
    pub fn entry_seqs_of(&self, id: IntentId) -> io::Result<Vec<u64>> {
        let prefix = key::intent_entries(id);
        let mut out = Vec::new();
        for pair in self.kv.scan(&prefix, None, false) {
            let (first, last) = seq_range(&pair?)?;
            out.extend(first..=last);
        }
        Ok(out)
    }

    /// The engaged kill switches, each with the entry that engaged it: `None` is the global one.
    pub fn kill_switches(&self) -> io::Result<Vec<(Option<parapet_model::ActionKind>, Entry)>> {
        let mut out = Vec::new();
        let table = Table::KillSwitch.prefix();
        for pair in self.kv.scan(table, None, false) {
            let (k, v) = pair?;
            let seq: [u8; 8] = v.as_slice().try_into().map_err(io::Error::other)?;
            let Some(entry) = self.entry(u64::from_be_bytes(seq))? else {
                continue;
            };
            let name = String::from_utf8_lossy(&k[table.len()..]).into_owned();
            let kind = if name == "*" {
                None
            } else {
                Some(name.parse().map_err(io::Error::other)?)
            };
            out.push((kind, entry));
        }
        Ok(out)
    }

    /// The latest verdict on every judged intent: detection, verdict, the intent's action kinds.
    pub fn judgements(&self) -> io::Result<Vec<(String, Judgement)>> {
        let mut out = Vec::new();
        let table = Table::Verdict.prefix();
        for pair in self.kv.scan(table, None, false) {
            let (k, v) = pair?;
            let rule_end = k.len().saturating_sub(17);
            let rule = String::from_utf8_lossy(&k[table.len()..rule_end]).into_owned();
            out.push((rule, decode(&v)?));
        }
        Ok(out)
    }

    /// Bulk rollbacks started and not finished: (operation, members, reason, actor).
    pub fn open_bulk_rollbacks(&self) -> io::Result<Vec<OpenBulk>> {
        let mut out = Vec::new();
        let table = Table::Bulk.prefix();
        for pair in self.kv.scan(table, None, false) {
            let (k, v) = pair?;
            let (members, reason, actor): (Vec<IntentId>, String, String) = decode(&v)?;
            let op = String::from_utf8_lossy(&k[table.len()..]).into_owned();
            out.push(OpenBulk {
                op,
                members,
                reason,
                actor,
            });
        }
        Ok(out)
    }

    /// The latest verdict on each intent of one detection.
    pub fn judgements_of(&self, rule: &str) -> io::Result<Vec<Judgement>> {
        let prefix = key::verdicts(rule);
        self.kv
            .scan(&prefix, None, false)
            .map(|pair| decode(&pair?.1))
            .collect()
    }

    /// When a detection was last restored after a demotion, if it ever was.
    pub fn restored_at(&self, rule: &str) -> io::Result<Option<SystemTime>> {
        Ok(self
            .kv
            .get(&key::restored(rule))?
            .and_then(|v| v.try_into().ok())
            .map(|b| {
                SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(u64::from_be_bytes(b))
            }))
    }

    /// Detections demoted to approval and not restored.
    pub fn demoted(&self) -> io::Result<Vec<String>> {
        self.kv
            .scan(Table::Demoted.prefix(), None, false)
            .map(|r| {
                r.map(|(k, _)| {
                    String::from_utf8_lossy(&k[Table::Demoted.prefix().len()..]).into_owned()
                })
            })
            .collect()
    }

    /// Every suppression recorded, expired or not.
    pub fn suppressions(&self) -> io::Result<Vec<SuppressionRecord>> {
        let mut out = Vec::new();
        let table = Table::Suppression.prefix();
        for pair in self.kv.scan(table, None, false) {
            let (k, v) = pair?;
            let text = String::from_utf8_lossy(&k[table.len()..]).into_owned();
            let mut parts = text.splitn(3, '\0');
            let (Some(rule), Some(kind), Some(target)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let (until, by): (SystemTime, String) = decode(&v)?;
            out.push(SuppressionRecord {
                rule: rule.to_owned(),
                target_kind: kind.to_owned(),
                target_id: target.to_owned(),
                until,
                by,
            });
        }
        Ok(out)
    }

    /// Live intents by state and first action kind, kept with every batch.
    pub fn tally(&self) -> io::Result<Tally> {
        match self.kv.get(key::TALLY)? {
            Some(bytes) => decode(&bytes),
            None => Ok(Tally::new()),
        }
    }

    /// The records of the intents waiting for approval, oldest first.
    pub fn waiting(&self) -> io::Result<Vec<IntentRecord>> {
        let mut out = Vec::new();
        for id in self.ids(Table::Waiting.prefix())? {
            out.extend(self.record(id)?);
        }
        Ok(out)
    }

    /// The record of the intent that has waited for approval longest.
    pub fn oldest_waiting(&self) -> io::Result<Option<IntentRecord>> {
        let first = self
            .kv
            .scan(Table::Waiting.prefix(), None, false)
            .next()
            .transpose()?;
        match first.and_then(|(k, _)| key::trailing_id(&k)) {
            Some(id) => self.record(id),
            None => Ok(None),
        }
    }

    /// The records of the intents not in a final state, oldest first, read as they are walked.
    pub fn live_records(&self) -> impl Iterator<Item = io::Result<IntentRecord>> + '_ {
        self.kv
            .scan(Table::Live.prefix(), None, false)
            .map(|r| r.and_then(|(_, v)| decode(&v)))
    }

    /// Intent records, newest first, starting below `before` when given: the live and the
    /// ended ones merged by id, which orders them by time.
    pub fn records_newest_first(
        &self,
        before: Option<IntentId>,
    ) -> impl Iterator<Item = io::Result<IntentRecord>> + '_ {
        let under = move |prefix: &'static [u8]| {
            let start = before.map(|b| [prefix, b.as_bytes()].concat());
            self.kv
                .scan(prefix, start.as_deref(), true)
                .filter(move |r| match (r, before) {
                    (Ok((k, _)), Some(b)) => key::trailing_id(k) != Some(b),
                    _ => true,
                })
        };
        // `true` takes the live side's next; an error goes first, so it is reported at once
        under(Table::Live.prefix())
            .merge_by(under(Table::Ended.prefix()), |l, i| match (l, i) {
                (Ok((l, _)), Ok((i, _))) => l[1..] > i[1..],
                (Err(_), _) => true,
                (_, Err(_)) => false,
            })
            .map(|r| r.and_then(|(_, v)| decode(&v)))
    }

    fn ids(&self, prefix: &[u8]) -> io::Result<Vec<IntentId>> {
        self.kv
            .scan(prefix, None, false)
            .map(|r| r.map(|(k, _)| key::trailing_id(&k)))
            .filter_map(Result::transpose)
            .collect()
    }
}

/// The entries an `n`, `T` or `D` key stands for: from the seq ending its key to the one in its
/// value (or that seq alone when the value is empty).
pub(super) fn seq_range((key, value): &super::kv::Pair) -> io::Result<(u64, u64)> {
    let bad = || io::Error::other("an entry-order index key is damaged");
    let tail = key.len().checked_sub(8).ok_or_else(bad)?;
    let first = u64::from_be_bytes(key[tail..].try_into().map_err(|_| bad())?);
    let last = match value.as_slice() {
        [] => first,
        v => u64::from_be_bytes(v.try_into().map_err(|_| bad())?),
    };
    Ok((first, last.max(first)))
}

/// Builds one atomic index write for a batch of entries, keeping the records it changed so
/// later entries of the same batch see them before they are written.
pub(super) struct Stager<'a> {
    index: &'a Index,
    records: HashMap<IntentId, IntentRecord>,
    /// What the tally counted each intent of this batch under before it: `None` for an intent
    /// new in this batch, `Some(None)` for one that had ended.
    before: HashMap<IntentId, Option<Option<(State, String)>>>,
    keys: HashMap<Vec<u8>, IntentId>,
    batch: Batch,
    /// A value that could not be encoded: the batch is not written, never written without it.
    failed: Option<io::Error>,
}

impl<'a> Stager<'a> {
    pub(super) fn new(index: &'a Index) -> Self {
        Self {
            index,
            records: HashMap::new(),
            before: HashMap::new(),
            keys: HashMap::new(),
            batch: Vec::new(),
            failed: None,
        }
    }

    /// The intent already holding this idempotency key, if any, in the store or this batch.
    pub(super) fn holder_of(&self, source: &str, key: &str) -> io::Result<Option<IntentId>> {
        let k = key::idempotency(source, key);
        match self.keys.get(&k) {
            Some(id) => Ok(Some(*id)),
            None => self.index.by_idempotency_key(source, key),
        }
    }

    /// The record as it stands in this batch or the store.
    pub(super) fn record(&mut self, id: IntentId) -> io::Result<Option<IntentRecord>> {
        if let Some(r) = self.records.get(&id) {
            return Ok(Some(r.clone()));
        }
        let r = self.index.record(id)?;
        self.before
            .entry(id)
            .or_insert_with(|| r.as_ref().map(tallied));
        Ok(r)
    }

    /// Stages an entry (already checked against the state machine) and the record after it.
    /// `last_of_append` is given for the first entry of an append: the seq of its last entry,
    /// which the entry-order indexes (`n`, `T`, `D`) record in one key for all of them.
    pub(super) fn stage(
        &mut self,
        entry: &Entry,
        encoded: &[u8],
        hash: super::log::Hash,
        record: Option<&IntentRecord>,
        last_of_append: Option<u64>,
    ) {
        self.batch
            .push((key::entry(entry.seq), Some(encoded.to_vec())));
        if entry.seq.is_multiple_of(super::CHECKPOINT_EVERY) {
            self.batch
                .push((key::checkpoint(entry.seq), Some(hash.to_vec())));
        }
        match &entry.event {
            Event::System(SystemEvent::BulkRollbackStarted {
                op,
                members,
                reason,
                ..
            }) => {
                let open = (members.clone(), reason.clone(), entry.actor.clone());
                self.put(key::bulk(op), encode(&open));
            }
            Event::System(SystemEvent::BulkRollbackFinished { op, .. }) => {
                self.batch.push((key::bulk(op), None))
            }
            Event::System(SystemEvent::DetectionDemoted { rule, demoted, .. }) => {
                self.batch
                    .push((key::demoted(rule), demoted.then(Vec::new)));
                if !demoted {
                    let k = key::restored(rule);
                    let ms = millis(entry.time);
                    self.batch.push((k, Some(ms.to_be_bytes().to_vec())));
                }
            }
            _ => {}
        }
        if let Event::System(SystemEvent::KillSwitch { kind, engaged, .. }) = &entry.event {
            let k = key::kill_switch(kind.as_ref());
            self.batch
                .push((k, engaged.then(|| entry.seq.to_be_bytes().to_vec())));
        }
        let (Some(id), Some(record)) = (entry.intent_id, record) else {
            return;
        };
        if let Some(last) = last_of_append {
            let (seq, last) = (entry.seq.to_be_bytes(), last.to_be_bytes().to_vec());
            self.batch
                .push((key::intent_entry(id, entry.seq), Some(last.clone())));
            let rule = &record.intent.detection.rule_id;
            self.batch.push((
                [&key::detection_entries(rule)[..], &seq].concat(),
                Some(last.clone()),
            ));
            for (n, step) in record.intent.steps.iter().enumerate() {
                let t = &step.target;
                let seen = record.intent.steps[..n]
                    .iter()
                    .any(|s| s.target.kind == t.kind && s.target.id == t.id);
                if !seen {
                    let k = [&key::target_entries(&t.kind, &t.id)[..], &seq].concat();
                    self.batch.push((k, Some(last.clone())));
                }
            }
        }
        if let Event::Intent(IntentEvent::Received { intent }) = &entry.event {
            let k = key::idempotency(&intent.source, &intent.idempotency_key);
            self.keys.insert(k.clone(), id);
            self.batch.push((k, Some(id.as_bytes().to_vec())));
        }
        if let Event::Intent(IntentEvent::Judged {
            by,
            verdict,
            suppress_until,
            ..
        }) = &entry.event
        {
            let rule = &record.intent.detection.rule_id;
            let kinds: Vec<String> = record
                .intent
                .steps
                .iter()
                .map(|s| s.kind.to_string())
                .collect();
            let judged = Judgement {
                verdict: *verdict,
                kinds,
                at: entry.time,
            };
            self.put(key::verdict(rule, id), encode(&judged));
            for step in record
                .intent
                .steps
                .iter()
                .filter(|_| suppress_until.is_some())
            {
                let s = (suppress_until.unwrap_or(entry.time), by.clone());
                let k = key::suppression(rule, &step.target.kind, &step.target.id);
                self.put(k, encode(&s));
            }
        }
        self.records.insert(id, record.clone());
    }

    /// The write that makes the store reflect everything staged, `first_seq` to `last_seq`.
    /// Stages a value, or notes that it could not be encoded.
    fn put(&mut self, key: Vec<u8>, value: io::Result<Vec<u8>>) {
        match value {
            Ok(bytes) => self.batch.push((key, Some(bytes))),
            Err(e) => {
                self.failed.get_or_insert(e);
            }
        }
    }

    pub(super) fn finish(
        mut self,
        first_seq: u64,
        last_seq: u64,
        head: super::log::Hash,
    ) -> io::Result<Batch> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        let mut tally = None;
        for (id, record) in &self.records {
            let before = self.before.get(id).cloned().flatten();
            let ended_before = matches!(before, Some(None));
            let (was, now) = (before.flatten(), tallied(record));
            let bytes = Some(encode(record)?);
            match (&was, &now) {
                (_, Some(_)) => self.batch.push((key::live(*id), bytes)),
                (Some(_), None) => {
                    self.batch.push((key::live(*id), None));
                    self.batch.push((key::intent(*id), bytes));
                }
                (None, None) => self.batch.push((key::intent(*id), bytes)),
            }
            if was == now {
                continue;
            }
            // a final state taken back (a retried rollback) leaves no ended copy behind
            if ended_before && now.is_some() {
                self.batch.push((key::intent(*id), None));
            }
            let waits = |t: &Option<(State, String)>| {
                t.as_ref()
                    .is_some_and(|(s, _)| *s == State::AwaitingApproval)
            };
            if waits(&was) != waits(&now) {
                self.batch
                    .push((key::waiting(*id), waits(&now).then(Vec::new)));
            }
            let tally = match &mut tally {
                Some(t) => t,
                None => tally.insert(self.index.tally()?),
            };
            if let Some(was) = was
                && let Some(n) = tally.get_mut(&was)
            {
                *n -= 1;
                if *n == 0 {
                    tally.remove(&was);
                }
            }
            if let Some(now) = now {
                *tally.entry(now).or_insert(0) += 1;
            }
        }
        if let Some(tally) = tally {
            self.batch
                .push((key::TALLY.to_vec(), Some(encode(&tally)?)));
        }
        self.batch
            .push((key::APPLIED.to_vec(), Some(last_seq.to_be_bytes().to_vec())));
        let head = [
            &last_seq.to_be_bytes()[..],
            &head,
            &first_seq.to_be_bytes()[..],
        ]
        .concat();
        self.batch.push((key::HEAD.to_vec(), Some(head)));
        Ok(self.batch)
    }
}
