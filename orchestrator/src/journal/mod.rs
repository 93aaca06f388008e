//! The journal: every step of every intent, durable before anything depends on it.
//!
//! One writer thread owns the [`Log`]. Callers send it the events of one intent; it gathers
//! whatever requests are waiting, checks each against the lifecycle state machine and the
//! idempotency keys, writes them all with a single `fdatasync` (group commit), applies them to
//! the derived state in one atomic [`Kv`] write, announces them to watchers, and only then
//! answers. So an answer means: on disk, indexed, and visible to every reader.
//!
//! On open, entries the index has not seen yet are replayed from the log, so a crash between the
//! two writes loses nothing.
//!
//! Entries form a hash chain: each carries the BLAKE3 hash of the previous entry's stored bytes,
//! so changing, removing, inserting or reordering one breaks the chain after it. The index keeps
//! the head and a checkpoint every [`CHECKPOINT_EVERY`] entries; [`verify`] walks the stored
//! records against them.
//!
//! # Layout
//! - [`log`]: the segment log, the journal of record.
//! - [`kv`]: the ordered store for derived state (sled, or memory in tests).
//! - [`index`]: what is derived and how it is keyed.

#[cfg(test)]
pub(crate) mod fixtures;
pub mod index;
pub mod kv;
pub mod log;
mod query;
pub mod retention;
pub mod verify;

use std::{io, sync::Arc, thread, time::SystemTime};

use parapet_model::{IntentId, serde_time};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use tokio::sync::{broadcast, mpsc, oneshot};

pub use index::Index;
use index::Stager;
use kv::Kv;
use log::{Hash, Log, LogReader};
pub use query::Query;

use crate::{
    clock::SharedClock,
    lifecycle::{Event, IntentEvent, IntentRecord, InvalidTransition, SystemEvent},
};

/// One journaled event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Position in the journal: dense, starting at 1.
    pub seq: u64,
    #[serde(with = "serde_time::time")]
    pub time: SystemTime,
    /// The intent the event is about; none for events about Parapet itself.
    pub intent_id: Option<IntentId>,
    /// Who caused it: a source, an operator, or `parapet` itself (timers, recovery).
    pub actor: String,
    pub event: Event,
    /// The hash of the previous entry's stored bytes (of the retention anchor for the first
    /// entry kept; zero for entry 1).
    pub prev: Hash,
}

/// The hash of an entry as stored: what the next entry carries as `prev`.
pub fn hash(stored: &[u8]) -> Hash {
    *blake3::hash(stored).as_bytes()
}

impl Entry {
    /// This entry's hash, from its canonical (stored) encoding.
    pub fn hash(&self) -> io::Result<Hash> {
        encode(self).map(|b| hash(&b))
    }
}

/// Hashes in hex, as people and other tools see them.
pub fn hex(hash: &Hash) -> String {
    blake3::Hash::from_bytes(*hash).to_hex().to_string()
}

/// Reads a hash written by [`hex`].
pub fn parse_hex(text: &str) -> Option<Hash> {
    blake3::Hash::from_hex(text).ok().map(|h| *h.as_bytes())
}

/// The index keeps the chain's hash at every entry whose sequence number is a multiple of this.
pub const CHECKPOINT_EVERY: u64 = 1024;

/// Told of every batch written: its entries with the records after them, and how long the
/// write took.
pub trait Observer: Send + Sync + 'static {
    fn committed(&self, entries: &[(&Entry, Option<&IntentRecord>)], took: Took);
}

/// How long one group commit took, by part.
#[derive(Debug, Clone, Copy)]
pub struct Took {
    /// The whole commit: writing the records to the log and its `fdatasync`, with the index
    /// written meanwhile.
    pub sync: std::time::Duration,
    /// The index write alone.
    pub index: std::time::Duration,
}

type SharedObserver = Arc<parking_lot::RwLock<Option<Arc<dyn Observer>>>>;

/// What a successful append wrote.
#[derive(Debug, Clone)]
pub struct Appended {
    pub first_seq: u64,
    pub last_seq: u64,
    /// The intent's record after the events.
    pub record: IntentRecord,
}

/// What the writer answers: an append of system events has no record.
type Written = (u64, u64, Option<IntentRecord>);

/// A journaled change, as announced to watchers.
#[derive(Debug, Clone)]
pub struct Change {
    pub entry: Entry,
    /// The intent's record after the change; none for system events.
    pub record: Option<Arc<IntentRecord>>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum AppendError {
    /// A `Received` event reused an idempotency key; nothing was written.
    #[error("idempotency key already used by intent {0}")]
    Duplicate(IntentId),
    #[error(transparent)]
    Invalid(#[from] InvalidTransition),
    #[error("intent {0} is not in the journal")]
    UnknownIntent(IntentId),
    #[error("intent {0} is already in the journal")]
    AlreadyReceived(IntentId),
    /// An entry read back whose event is not of its kind: an intent's entry holding a system
    /// event, or the other way round.
    #[error("an entry's event is not of its kind (intent or system)")]
    NotAnIntentEvent,
    /// The journal could not write; it refuses further appends rather than guess what is on disk.
    #[error("journal unavailable: {0}")]
    Unavailable(String),
}

/// What the writer thread is asked to do.
enum Job {
    Append(Request),
    /// Carry out a compaction: journal it, then remove the segments.
    Compact {
        plan: retention::Plan,
        actor: String,
        reply: oneshot::Sender<io::Result<()>>,
    },
}

struct Request {
    /// `None` for system events.
    intent_id: Option<IntentId>,
    actor: String,
    events: Vec<Event>,
    reply: oneshot::Sender<Result<Written, AppendError>>,
}

/// Handle to the journal; cheap to clone.
#[derive(Clone)]
pub struct Journal {
    tx: mpsc::Sender<Job>,
    index: Index,
    reader: Arc<dyn LogReader>,
    /// Held by a verification and by a compaction, so neither sees the other half done.
    walks: Arc<tokio::sync::Mutex<()>>,
    observer: SharedObserver,
    changes: broadcast::Sender<Change>,
    /// The writer thread; it ends once every handle is dropped.
    writer: Arc<parking_lot::Mutex<Option<thread::JoinHandle<()>>>>,
    /// What went wrong with writing, shared with the writer.
    trouble: Arc<parking_lot::Mutex<Trouble>>,
    reserve: u64,
    /// Who holds which work: this process, the one that holds the data directory.
    leases: Arc<crate::store::leases::LocalLeases>,
}

/// Free space kept by default for what is in flight once new intents are refused: the
/// rollbacks, step results and system events still to be journaled, and the index.
pub const RESERVE: u64 = 64 << 20;

/// Settings of the journal itself.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Below this many bytes free on the log's disk, new intents are refused (everything
    /// else is still written): the disk never fills under Parapet's own feet.
    pub reserve: u64,
}

impl Default for Options {
    fn default() -> Self {
        Self { reserve: RESERVE }
    }
}

/// Whether the journal can take appends now; health follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    Writing,
    /// Free space is below the reserve: new intents are refused until space is freed.
    LowSpace {
        free: u64,
        reserve: u64,
    },
    /// The last write did not reach the disk (it was full) and a probe still fails.
    Unwritable(String),
    /// A sync failed: what is on disk is unknown, so nothing more is written until a restart.
    Failed(String),
}

#[derive(Debug, Default)]
struct Trouble {
    /// A sync failed: permanent.
    failed: Option<String>,
    /// The last append could not be written (and was cut off again); cleared by the next
    /// write that succeeds, or a probe.
    unwritten: Option<String>,
}

/// Requests gathered into one sync at most; more wait for the next.
const MAX_BATCH: usize = 4096;

impl Journal {
    /// Opens the journal, replays into the index what it has not seen, and starts the writer.
    pub fn open(log: Box<dyn Log>, kv: Arc<dyn Kv>, clock: SharedClock) -> io::Result<Self> {
        Self::open_with(log, kv, clock, Options::default())
    }

    /// As [`open`](Self::open), with settings.
    pub fn open_with(
        log: Box<dyn Log>,
        kv: Arc<dyn Kv>,
        clock: SharedClock,
        options: Options,
    ) -> io::Result<Self> {
        let index = Index::new(kv.clone());
        let reader = log.reader();
        let next_seq = replay(log.as_ref(), &index, kv.as_ref())?;
        let anchor = reader.anchor()?;
        if anchor.seq > 0 && index.first_seq()? <= anchor.seq {
            // a crash cut the last compaction short between the log and the index
            retention::forget(&index, anchor.seq)?;
        }
        let last_hash = match log.last() {
            Some(bytes) => hash(bytes),
            None => reader.anchor()?.hash,
        };
        let (tx, rx) = mpsc::channel(MAX_BATCH);
        let (changes, _) = broadcast::channel(4096);
        let observer = SharedObserver::default();
        let trouble = Arc::new(parking_lot::Mutex::new(Trouble::default()));
        let leases = Arc::new(crate::store::leases::LocalLeases::new(clock.clone()));
        let writer = Writer {
            reader: reader.clone(),
            reserve: options.reserve,
            trouble: trouble.clone(),
            observer: observer.clone(),
            log,
            kv,
            index: index.clone(),
            clock,
            next_seq,
            last_hash,
            last_time: SystemTime::UNIX_EPOCH,
            changes: changes.clone(),
        };
        let writer = thread::Builder::new()
            .name("parapet-journal".into())
            .spawn(move || writer.run(rx))?;
        Ok(Self {
            tx,
            index,
            reader,
            walks: Arc::default(),
            observer,
            changes,
            writer: Arc::new(parking_lot::Mutex::new(Some(writer))),
            trouble,
            reserve: options.reserve,
            leases,
        })
    }

    /// Who holds which work.
    pub fn leases(&self) -> Arc<dyn crate::store::Leases> {
        self.leases.clone()
    }

    /// Whether appends can be written now. After a write the disk refused, probes the disk
    /// (a small write, synced, removed) so that health recovers once space is freed.
    pub fn condition(&self) -> Condition {
        let (failed, unwritten) = {
            let trouble = self.trouble.lock();
            (trouble.failed.clone(), trouble.unwritten.clone())
        };
        if let Some(why) = failed {
            return Condition::Failed(why);
        }
        // probed without the lock, which the writer takes on every batch
        if let Some(why) = unwritten {
            if self.reader.probe().is_err() {
                return Condition::Unwritable(why);
            }
            let mut trouble = self.trouble.lock();
            if trouble.unwritten.as_ref() == Some(&why) {
                trouble.unwritten = None;
            }
        }
        match self.reader.free_space() {
            Ok(Some(free)) if free < self.reserve => Condition::LowSpace {
                free,
                reserve: self.reserve,
            },
            _ => Condition::Writing,
        }
    }

    /// Journals events of one intent atomically; resolves once they are durable and indexed.
    pub async fn append(
        &self,
        intent_id: IntentId,
        actor: &str,
        events: Vec<IntentEvent>,
    ) -> Result<Appended, AppendError> {
        let events = events.into_iter().map(Event::Intent).collect();
        let (first_seq, last_seq, record) = self.send(Some(intent_id), actor, events).await?;
        let record = record.ok_or(AppendError::UnknownIntent(intent_id))?;
        Ok(Appended {
            first_seq,
            last_seq,
            record,
        })
    }

    /// Journals an event about Parapet itself (kill switch, policy); returns its sequence number.
    pub async fn append_system(&self, actor: &str, event: SystemEvent) -> Result<u64, AppendError> {
        Ok(self.send(None, actor, vec![Event::System(event)]).await?.1)
    }

    async fn send(
        &self,
        intent_id: Option<IntentId>,
        actor: &str,
        events: Vec<Event>,
    ) -> Result<Written, AppendError> {
        let (reply, rx) = oneshot::channel();
        let request = Request {
            intent_id,
            actor: actor.to_owned(),
            events,
            reply,
        };
        let closed = || AppendError::Unavailable("the journal writer has stopped".into());
        self.tx
            .send(Job::Append(request))
            .await
            .map_err(|_| closed())?;
        rx.await.map_err(|_| closed())?
    }

    async fn send_compact(&self, plan: retention::Plan, actor: &str) -> io::Result<()> {
        let (reply, rx) = oneshot::channel();
        let job = Job::Compact {
            plan,
            actor: actor.to_owned(),
            reply,
        };
        let closed = || io::Error::other("the journal writer has stopped");
        self.tx.send(job).await.map_err(|_| closed())?;
        rx.await.map_err(|_| closed())?
    }

    pub fn index(&self) -> &Index {
        &self.index
    }

    /// From now on, tells `observer` of every batch written.
    pub fn observe(&self, observer: Arc<dyn Observer>) {
        *self.observer.write() = Some(observer);
    }

    /// The stored records, read without trusting them; for verification.
    pub fn reader(&self) -> &Arc<dyn LogReader> {
        &self.reader
    }

    /// Walks the hash chain (see [`verify`]); `expected` are points an auditor kept.
    pub async fn verify(&self, expected: Vec<(u64, Hash)>) -> io::Result<verify::Report> {
        let _walk = self.walks.lock().await;
        let (index, reader) = (self.index.clone(), self.reader.clone());
        tokio::task::spawn_blocking(move || {
            verify::verify(reader.as_ref(), Some(&index), &expected)
        })
        .await
        .map_err(io::Error::other)?
    }

    /// The writer thread, to join once every handle is dropped: then the log and the index
    /// store are closed.
    pub fn take_writer(&self) -> Option<thread::JoinHandle<()>> {
        self.writer.lock().take()
    }

    /// Every change from now on. A receiver that falls behind is told how much it missed.
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }
}

fn encode<T: Serialize>(value: &T) -> io::Result<Vec<u8>> {
    postcard::to_stdvec(value).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> io::Result<T> {
    postcard::from_bytes(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Brings the index up to date with the log; returns the next sequence number.
fn replay(log: &dyn Log, index: &Index, kv: &dyn Kv) -> io::Result<u64> {
    let layout = index.layout()?;
    if layout != Some(index::LAYOUT) {
        if index.applied_seq()? > 0 {
            tracing::warn!(
                ?layout,
                expected = index::LAYOUT,
                "the index was written in another layout; rebuilding it from the journal"
            );
            kv.clear()?;
        }
        kv.write(vec![(
            index::key::LAYOUT.to_vec(),
            Some(vec![index::LAYOUT]),
        )])?;
    }
    // entries before the retention anchor are gone on purpose; the index forgot them too
    let applied = index.applied_seq()?.max(log.reader().anchor()?.seq);
    let last = match log.last() {
        Some(bytes) => decode::<Entry>(bytes)?.seq,
        None => applied,
    };
    if applied > last {
        // The index is written while the log syncs; a crash in between can leave it holding
        // entries the log never kept (never acknowledged), but never more than that batch.
        let acknowledged = index.acknowledged()?;
        if last < acknowledged {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the journal ends at entry {last}, but the index saw entries up to {acknowledged} acknowledged: entries {} to {acknowledged} are missing from the log. Parapet will not start on a journal that lost acknowledged entries: restore the data directory from a backup",
                    last + 1
                ),
            ));
        }
        // It is derived: build it again.
        tracing::warn!(
            applied,
            last,
            "the index is ahead of the journal; rebuilding it from the journal"
        );
        kv.clear()?;
        return replay(log, index, kv);
    }
    let mut stager = Stager::new(index);
    let mut staged = 0usize;
    let mut expected = applied + 1;
    let mut chunk_first = expected;
    log.replay(applied + 1, &mut |bytes| {
        let entry: Entry = decode(bytes)?;
        if entry.seq <= applied {
            return Ok(());
        }
        if entry.seq != expected {
            return Err(io::Error::other(format!(
                "journal entry {} follows {}: entries are missing",
                entry.seq,
                expected - 1
            )));
        }
        let record = match entry.intent_id {
            Some(id) => Some(advance(stager.record(id)?, &entry).map_err(|e| {
                io::Error::other(format!(
                    "journal entry {} cannot be applied: {e}",
                    entry.seq
                ))
            })?),
            None => None,
        };
        // replay does not know where appends began: one entry per key
        stager.stage(&entry, bytes, hash(bytes), record.as_ref(), Some(entry.seq));
        expected += 1;
        staged += 1;
        if staged == 10_000 {
            let full = std::mem::replace(&mut stager, Stager::new(index));
            kv.write(full.finish(chunk_first, entry.seq, hash(bytes))?)?;
            staged = 0;
            chunk_first = entry.seq + 1;
        }
        Ok(())
    })?;
    if staged > 0 {
        let head = log.last().map(hash).unwrap_or_default();
        kv.write(stager.finish(chunk_first, expected - 1, head)?)?;
    }
    if expected - 1 != last {
        return Err(io::Error::other(
            "journal replay stopped short of its last entry",
        ));
    }
    if last > applied {
        tracing::info!(
            entries = last - applied,
            "replayed journal entries into the index"
        );
    }
    Ok(last + 1)
}

/// The record after one entry: the only way records change, live or in replay.
fn advance(record: Option<IntentRecord>, entry: &Entry) -> Result<IntentRecord, AppendError> {
    let (Some(id), Event::Intent(event)) = (entry.intent_id, &entry.event) else {
        return Err(AppendError::NotAnIntentEvent);
    };
    match (record, event) {
        (None, IntentEvent::Received { intent }) => {
            Ok(IntentRecord::received(intent.clone(), entry.seq))
        }
        (Some(_), IntentEvent::Received { .. }) => Err(AppendError::AlreadyReceived(id)),
        (Some(mut record), event) => {
            record.apply(event, entry.seq, entry.time)?;
            Ok(record)
        }
        (None, _) => Err(AppendError::UnknownIntent(id)),
    }
}

fn io_unavailable(e: io::Error) -> AppendError {
    AppendError::Unavailable(e.to_string())
}

struct Writer {
    log: Box<dyn Log>,
    /// For the free space on the log's disk.
    reader: Arc<dyn LogReader>,
    reserve: u64,
    trouble: Arc<parking_lot::Mutex<Trouble>>,
    kv: Arc<dyn Kv>,
    index: Index,
    clock: SharedClock,
    next_seq: u64,
    /// The hash of the last entry written: the next entry's `prev`.
    last_hash: Hash,
    /// Entry times never go backwards, even if the wall clock does.
    last_time: SystemTime,
    changes: broadcast::Sender<Change>,
    observer: SharedObserver,
}

type Reply = (
    oneshot::Sender<Result<Written, AppendError>>,
    Result<Written, AppendError>,
);

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        let mut requests = Vec::with_capacity(MAX_BATCH);
        while let Some(first) = rx.blocking_recv() {
            let mut next = Some(first);
            while let Some(job) = next.take() {
                match job {
                    Job::Append(r) => requests.push(r),
                    Job::Compact { plan, actor, reply } => {
                        // what came before it is written before it
                        self.commit(&mut requests);
                        let _ = reply.send(self.compact(plan, actor));
                    }
                }
                if requests.len() < MAX_BATCH {
                    next = rx.try_recv().ok();
                }
            }
            self.commit(&mut requests);
        }
    }

    /// Journals a compaction, then removes the segments, if the plan still holds.
    fn compact(&mut self, plan: retention::Plan, actor: String) -> io::Result<()> {
        if let Some(why) = &self.trouble.lock().failed {
            return Err(io::Error::other(why.clone()));
        }
        if !retention::still_holds(&self.index, &plan)? {
            return Err(io::Error::other(
                "an intent to be removed changed meanwhile; nothing was removed",
            ));
        }
        if !self.log.segments().contains(&(plan.anchor.seq + 1)) {
            return Err(io::Error::other("the journal's segments changed meanwhile"));
        }
        let (reply, rx) = oneshot::channel();
        let mut requests = vec![Request {
            intent_id: None,
            actor,
            events: vec![retention::event(&plan)],
            reply,
        }];
        self.commit(&mut requests);
        match rx.blocking_recv() {
            Ok(Ok(_)) => self.log.compact(plan.anchor),
            Ok(Err(e)) => Err(io::Error::other(e.to_string())),
            Err(_) => Err(io::Error::other("the compaction was not journaled")),
        }
    }

    /// Writes a batch of requests with one sync and answers each.
    fn commit(&mut self, requests: &mut Vec<Request>) {
        if let Some(why) = self.trouble.lock().failed.clone() {
            for r in requests.drain(..) {
                let _ = r.reply.send(Err(AppendError::Unavailable(why.clone())));
            }
            return;
        }
        self.refuse_new_intents_without_space(requests);
        self.last_time = self.clock.now().max(self.last_time);
        let first_seq = self.next_seq;
        let hash_before = self.last_hash;
        let index = self.index.clone();
        let mut stager = Stager::new(&index);
        let mut records = Vec::new();
        let mut announced = Vec::new();
        let mut replies: Vec<Reply> = Vec::with_capacity(requests.len());

        for r in requests.drain(..) {
            match self.stage(&mut stager, &r, &mut records) {
                Ok((written, entries)) => {
                    announced.push((replies.len(), entries));
                    replies.push((r.reply, Ok(written)));
                }
                Err(e) => replies.push((r.reply, Err(e))),
            }
        }

        if !records.is_empty() {
            let last_seq = self.next_seq - 1;
            let started = std::time::Instant::now();
            let mut indexed = std::time::Duration::ZERO;
            let kv = &self.kv;
            // The index is written while the log syncs: it is never durable on its own, and a
            // crash that leaves it ahead of the log makes the next open rebuild it.
            let written = stager
                .finish(first_seq, last_seq, self.last_hash)
                .map_err(log::Failure::NotWritten)
                .and_then(|batch| {
                    let mut batch = Some(batch);
                    self.log
                        .append(first_seq, &records, self.last_hash, &mut || {
                            let t = std::time::Instant::now();
                            let written = batch.take().map_or(Ok(()), |b| kv.write(b));
                            indexed = t.elapsed();
                            written
                        })
                });
            let failed = match written {
                Ok(()) => None,
                Err(log::Failure::NotWritten(e)) => {
                    tracing::error!(error = %e, "journal write failed and was cut off again; refusing appends until it succeeds");
                    // as if the batch had never been: the next one takes its numbers
                    self.next_seq = first_seq;
                    self.last_hash = hash_before;
                    let why = format!("the journal cannot be written: {e}");
                    self.trouble.lock().unwritten = Some(why.clone());
                    Some(why)
                }
                Err(log::Failure::Unknown(e)) => {
                    tracing::error!(error = %e, "journal sync failed; refusing further appends until a restart");
                    let why = format!("the journal failed to sync (restart Parapet): {e}");
                    self.trouble.lock().failed = Some(why.clone());
                    Some(why)
                }
            };
            if let Some(why) = failed {
                for (reply, result) in replies {
                    let result = result.and(Err(AppendError::Unavailable(why.clone())));
                    let _ = reply.send(result);
                }
                return;
            }
            self.trouble.lock().unwritten = None;
            let took = Took {
                sync: started.elapsed(),
                index: indexed,
            };
            // Checked only now, after the index write: a reader subscribes before it reads the
            // index, so it either sees this batch there or is subscribed by now.
            if let Some(observer) = self.observer.read().as_ref() {
                let written: Vec<(&Entry, Option<&IntentRecord>)> = announced
                    .iter()
                    .filter_map(|(i, entries)| match &replies[*i].1 {
                        Ok((_, _, record)) => {
                            Some(entries.iter().map(move |e| (e, record.as_ref())))
                        }
                        Err(_) => None,
                    })
                    .flatten()
                    .collect();
                observer.committed(&written, took);
            }
            if self.changes.receiver_count() > 0 {
                for (i, entries) in announced {
                    let record = match &replies[i].1 {
                        Ok((_, _, record)) => record.clone().map(Arc::new),
                        Err(_) => continue,
                    };
                    for entry in entries {
                        let _ = self.changes.send(Change {
                            entry,
                            record: record.clone(),
                        });
                    }
                }
            }
        }
        for (reply, result) in replies {
            let _ = reply.send(result);
        }
    }

    /// Below the reserve of free space, new intents are refused before anything is written,
    /// so that what is in flight (executions, rollbacks) can still be journaled; below an
    /// eighth of it, everything is, so that the index store never meets a full disk (it
    /// cannot recover from one without a restart).
    fn refuse_new_intents_without_space(&mut self, requests: &mut Vec<Request>) {
        let new = |r: &Request| {
            matches!(
                r.events.first(),
                Some(Event::Intent(IntentEvent::Received { .. }))
            )
        };
        let free = match self.reader.free_space() {
            Ok(Some(free)) if free < self.reserve => free,
            _ => return,
        };
        let floor = free < self.reserve / 8;
        let why = format!(
            "the disk holding the journal is almost full ({} KiB free, {} KiB kept for what is in flight): {} until space is freed",
            free >> 10,
            self.reserve >> 10,
            if floor {
                "nothing more is journaled"
            } else {
                "new intents are refused"
            }
        );
        for r in requests.extract_if(.., |r| floor || new(r)) {
            let _ = r.reply.send(Err(AppendError::Unavailable(why.clone())));
        }
    }

    /// Checks one request and stages its entries; on refusal nothing is staged.
    fn stage(
        &mut self,
        stager: &mut Stager<'_>,
        r: &Request,
        records: &mut Vec<Vec<u8>>,
    ) -> Result<(Written, Vec<Entry>), AppendError> {
        if let Some(Event::Intent(IntentEvent::Received { intent })) = r.events.first()
            && let Some(holder) = stager
                .holder_of(&intent.source, &intent.idempotency_key)
                .map_err(io_unavailable)?
        {
            return Err(AppendError::Duplicate(holder));
        }
        let mut entries: Vec<Entry> = Vec::with_capacity(r.events.len());
        let mut record = match r.intent_id {
            Some(id) => stager.record(id).map_err(io_unavailable)?,
            None => None,
        };
        for (i, event) in r.events.iter().enumerate() {
            let entry = Entry {
                seq: self.next_seq + i as u64,
                time: self.last_time,
                intent_id: r.intent_id,
                actor: r.actor.clone(),
                event: event.clone(),
                prev: [0; 32],
            };
            if r.intent_id.is_some() {
                record = Some(advance(record, &entry)?);
            }
            entries.push(entry);
        }
        if let (Some(id), None) = (r.intent_id, &record) {
            return Err(AppendError::UnknownIntent(id));
        }
        // chained only now that the request is accepted: a refusal leaves the chain as it was
        let mut encoded = Vec::with_capacity(entries.len());
        let mut prev = self.last_hash;
        for entry in &mut entries {
            entry.prev = prev;
            let bytes = encode(entry).map_err(io_unavailable)?;
            prev = hash(&bytes);
            encoded.push((bytes, prev));
        }
        self.last_hash = prev;
        let last_seq = entries.last().map_or(self.next_seq, |e| e.seq);
        for (i, (entry, (bytes, hash))) in entries.iter().zip(encoded).enumerate() {
            // the record after the whole request is what readers see for every entry of it
            let first = (i == 0).then_some(last_seq);
            stager.stage(entry, &bytes, hash, record.as_ref(), first);
            records.push(bytes);
        }
        let first_seq = self.next_seq;
        self.next_seq += entries.len() as u64;
        Ok(((first_seq, self.next_seq - 1, record), entries))
    }
}

#[cfg(test)]
mod tests;
