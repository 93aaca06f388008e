//! The storage boundary: what the engine and the service need from storage, and nothing of
//! how it is kept.
//!
//! - [`Store`]: the journal of record: an intent's events ([`IntentEvent`]) or one event about
//!   Parapet itself ([`SystemEvent`]), never mixed. Appends are checked against the intent's state machine
//!   (and a `Received`'s idempotency key), chained, made durable in one order with every other
//!   append, and only then answered and announced to [`Store::subscribe`]rs.
//! - [`Leases`]: who holds which piece of work (a TTL's expiry, say) for a while, with fencing
//!   tokens; the embedded store holds them in its process ([`leases::LocalLeases`]).
//! - [`State`]: what is derived from the journal: records, the lookups by key, target and
//!   detection, what waits and what is live, the guardrails' inputs, the entries themselves.
//!   Always as of some entry the store has acknowledged; never ahead of what it answered.
//!
//! The embedded implementation is [`crate::journal::Journal`] (the segment log, `fdatasync`'d,
//! with the derived state in sled or in memory). A new store implements both traits and passes
//! [`conformance`](self), the suite every implementation runs (`conformance.rs`).

#[cfg(test)]
pub(crate) mod conformance;
pub mod leases;

use std::{io, sync::Arc, time::SystemTime};

use futures::future::BoxFuture;
pub use leases::{Lease, Leases};
use parapet_model::{ActionKind, IntentId};
use tokio::sync::broadcast;

use crate::{
    journal::{
        AppendError, Appended, Change, Condition, Entry, Index, Journal, Observer, Query,
        index::{Judgement, OpenBulk, SuppressionRecord, Tally},
        log::Hash,
        retention::{Compaction, Retention},
        verify::Report,
    },
    lifecycle::{IntentEvent, IntentRecord, SystemEvent},
};

/// Records, one at a time, as a store reads them.
pub type Records<'a> = Box<dyn Iterator<Item = io::Result<IntentRecord>> + 'a>;

/// The journal of record.
pub trait Store: Send + Sync + 'static {
    /// Journals events of one intent atomically; answers once they are durable and the
    /// derived state holds them.
    fn append<'a>(
        &'a self,
        intent: IntentId,
        actor: &'a str,
        events: Vec<IntentEvent>,
    ) -> BoxFuture<'a, Result<Appended, AppendError>>;

    /// Journals an event about Parapet itself; answers with its sequence number.
    fn append_system<'a>(
        &'a self,
        actor: &'a str,
        event: SystemEvent,
    ) -> BoxFuture<'a, Result<u64, AppendError>>;

    /// Every change from now on, each once the derived state holds it.
    fn subscribe(&self) -> broadcast::Receiver<Change>;

    /// Walks the stored chain; `expected` are points an auditor kept.
    fn verify(&self, expected: Vec<(u64, Hash)>) -> BoxFuture<'_, io::Result<Report>>;

    /// Removes what the retention rules allow from the front of the journal.
    fn compact<'a>(
        &'a self,
        rules: Retention,
        now: SystemTime,
        actor: &'a str,
    ) -> BoxFuture<'a, io::Result<Option<Compaction>>>;

    /// Whether appends can be written now.
    fn condition(&self) -> Condition;

    /// From now on, tells `observer` of every batch written.
    fn observe(&self, observer: Arc<dyn Observer>);

    /// The derived state.
    fn state(&self) -> Arc<dyn State>;

    /// Who holds which work (timers, deadlines, bulk rollbacks).
    fn leases(&self) -> Arc<dyn Leases>;
}

/// What is derived from the journal.
pub trait State: Send + Sync + 'static {
    /// The last entry the state holds.
    fn applied_seq(&self) -> io::Result<u64>;
    /// The first entry kept (after retention, the one after the anchor).
    fn first_seq(&self) -> io::Result<u64>;
    fn entry(&self, seq: u64) -> io::Result<Option<Entry>>;
    /// The entries after `after_seq`, in order.
    fn entries(&self, after_seq: u64) -> Box<dyn Iterator<Item = io::Result<Entry>> + '_>;
    /// Calls `f` with each entry a query matches, in journal order, until it returns `false`.
    fn each_match(&self, query: &Query, f: &mut dyn FnMut(Entry) -> bool) -> io::Result<()>;

    /// The entries a query matches, in journal order, at most its limit.
    fn query(&self, query: &Query) -> io::Result<Vec<Entry>> {
        let mut out = Vec::new();
        if query.limit > 0 {
            self.each_match(query, &mut |e| {
                out.push(e);
                out.len() < query.limit
            })?;
        }
        Ok(out)
    }

    fn record(&self, id: IntentId) -> io::Result<Option<IntentRecord>>;
    /// The intent a source's idempotency key was first used for.
    fn by_idempotency_key(&self, source: &str, key: &str) -> io::Result<Option<IntentId>>;
    /// Intents not yet ended.
    fn live_records(&self) -> Records<'_>;
    /// Every intent, newest first, starting after `before`.
    fn records_newest_first(&self, before: Option<IntentId>) -> Records<'_>;
    /// Intents waiting for a person, oldest first.
    fn waiting(&self) -> io::Result<Vec<IntentRecord>>;
    fn oldest_waiting(&self) -> io::Result<Option<IntentRecord>>;
    /// Live intents by state and the action kind of their first step.
    fn tally(&self) -> io::Result<Tally>;

    /// Engaged kill switches (`None`: the global one) and the entries that engaged them.
    fn kill_switches(&self) -> io::Result<Vec<(Option<ActionKind>, Entry)>>;
    fn suppressions(&self) -> io::Result<Vec<SuppressionRecord>>;
    fn demoted(&self) -> io::Result<Vec<String>>;
    /// The latest verdict on each judged intent, by detection.
    fn judgements(&self) -> io::Result<Vec<(String, Judgement)>>;
    fn judgements_of(&self, rule: &str) -> io::Result<Vec<Judgement>>;
    /// When a detection was last restored after a demotion.
    fn restored_at(&self, rule: &str) -> io::Result<Option<SystemTime>>;
    fn open_bulk_rollbacks(&self) -> io::Result<Vec<OpenBulk>>;
}

impl Store for Journal {
    fn append<'a>(
        &'a self,
        intent: IntentId,
        actor: &'a str,
        events: Vec<IntentEvent>,
    ) -> BoxFuture<'a, Result<Appended, AppendError>> {
        Box::pin(Journal::append(self, intent, actor, events))
    }

    fn append_system<'a>(
        &'a self,
        actor: &'a str,
        event: SystemEvent,
    ) -> BoxFuture<'a, Result<u64, AppendError>> {
        Box::pin(Journal::append_system(self, actor, event))
    }

    fn subscribe(&self) -> broadcast::Receiver<Change> {
        Journal::subscribe(self)
    }

    fn verify(&self, expected: Vec<(u64, Hash)>) -> BoxFuture<'_, io::Result<Report>> {
        Box::pin(Journal::verify(self, expected))
    }

    fn compact<'a>(
        &'a self,
        rules: Retention,
        now: SystemTime,
        actor: &'a str,
    ) -> BoxFuture<'a, io::Result<Option<Compaction>>> {
        Box::pin(Journal::compact(self, rules, now, actor))
    }

    fn condition(&self) -> Condition {
        Journal::condition(self)
    }

    fn observe(&self, observer: Arc<dyn Observer>) {
        Journal::observe(self, observer);
    }

    fn state(&self) -> Arc<dyn State> {
        Arc::new(self.index().clone())
    }

    fn leases(&self) -> Arc<dyn Leases> {
        Journal::leases(self)
    }
}

impl State for Index {
    fn applied_seq(&self) -> io::Result<u64> {
        Index::applied_seq(self)
    }

    fn first_seq(&self) -> io::Result<u64> {
        Index::first_seq(self)
    }

    fn entry(&self, seq: u64) -> io::Result<Option<Entry>> {
        Index::entry(self, seq)
    }

    fn entries(&self, after_seq: u64) -> Box<dyn Iterator<Item = io::Result<Entry>> + '_> {
        Box::new(Index::entries(self, after_seq))
    }

    fn each_match(&self, query: &Query, f: &mut dyn FnMut(Entry) -> bool) -> io::Result<()> {
        Index::each_match(self, query, f)
    }

    fn record(&self, id: IntentId) -> io::Result<Option<IntentRecord>> {
        Index::record(self, id)
    }

    fn by_idempotency_key(&self, source: &str, key: &str) -> io::Result<Option<IntentId>> {
        Index::by_idempotency_key(self, source, key)
    }

    fn live_records(&self) -> Records<'_> {
        Box::new(Index::live_records(self))
    }

    fn records_newest_first(&self, before: Option<IntentId>) -> Records<'_> {
        Box::new(Index::records_newest_first(self, before))
    }

    fn waiting(&self) -> io::Result<Vec<IntentRecord>> {
        Index::waiting(self)
    }

    fn oldest_waiting(&self) -> io::Result<Option<IntentRecord>> {
        Index::oldest_waiting(self)
    }

    fn tally(&self) -> io::Result<Tally> {
        Index::tally(self)
    }

    fn kill_switches(&self) -> io::Result<Vec<(Option<ActionKind>, Entry)>> {
        Index::kill_switches(self)
    }

    fn suppressions(&self) -> io::Result<Vec<SuppressionRecord>> {
        Index::suppressions(self)
    }

    fn demoted(&self) -> io::Result<Vec<String>> {
        Index::demoted(self)
    }

    fn judgements(&self) -> io::Result<Vec<(String, Judgement)>> {
        Index::judgements(self)
    }

    fn judgements_of(&self, rule: &str) -> io::Result<Vec<Judgement>> {
        Index::judgements_of(self, rule)
    }

    fn restored_at(&self, rule: &str) -> io::Result<Option<SystemTime>> {
        Index::restored_at(self, rule)
    }

    fn open_bulk_rollbacks(&self) -> io::Result<Vec<OpenBulk>> {
        Index::open_bulk_rollbacks(self)
    }
}
