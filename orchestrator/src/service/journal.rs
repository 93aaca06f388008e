//! The auditor's journal: query it, verify its chain, export it, replay a policy over it.

use std::{collections::HashMap, sync::Arc, time::SystemTime};

use futures::StreamExt as _;
use parapet_model::Invalid;

use super::{Answers, Caller, Error, Operation, Result, Service};
use crate::{journal::parse_hex, lifecycle::Event, store::State};

pub use crate::{
    engine::replay::Replay,
    journal::{Entry, Query, hex, log::Hash, verify::Report},
};

/// An entry with its hash (of its stored bytes), as readers are shown it.
#[derive(Debug, Clone)]
pub struct Hashed {
    pub entry: Entry,
    pub hash: Hash,
}

impl Hashed {
    pub fn of(entry: Entry) -> std::io::Result<Self> {
        let hash = entry.hash()?;
        Ok(Self { entry, hash })
    }
}

/// Entries read ahead of a client that streams a query.
const PAGE: usize = 512;

/// How an export writes each entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The entry as the journal keeps it, as JSON.
    Json,
    /// OCSF Remediation Activity events (intent entries that are actions only).
    Ocsf,
}

/// One exported entry: its JSON, and where the journal stood when the export began.
pub struct Exported {
    pub json: String,
    pub seq: u64,
    pub head_seq: u64,
}

/// The policy to replay, and the time range of the intents to replay it over.
pub struct ReplayPolicy {
    pub policy_toml: String,
    pub since: Option<SystemTime>,
    pub until: Option<SystemTime>,
}

/// Refuses event kinds the journal does not have: a query for one would silently find nothing.
fn check(query: &Query) -> Result<(), Invalid> {
    for (i, kind) in query.events.iter().enumerate() {
        if !Event::KINDS.contains(&kind.as_str()) {
            return Err(Invalid::new(
                format!("events[{i}]"),
                format!(
                    "`{kind}` is not an event kind; one of {}",
                    Event::KINDS.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// Streams what `each` makes of the entries a query matches (`None` skips one), read on a
/// blocking thread a page ahead of the client at most, up to the query's limit.
fn stream_matches<T: Send + 'static>(
    index: Arc<dyn State>,
    query: Query,
    mut each: impl FnMut(&dyn State, Entry) -> std::io::Result<Option<T>> + Send + 'static,
) -> Answers<T> {
    let (tx, rx) = tokio::sync::mpsc::channel(PAGE);
    tokio::task::spawn_blocking(move || {
        let (mut left, mut failed) = (query.limit, None);
        let walked = index.each_match(&query, &mut |e| match each(&*index, e) {
            Ok(Some(item)) => {
                left -= 1;
                tx.blocking_send(Ok(item)).is_ok() && left > 0
            }
            Ok(None) => true,
            Err(err) => {
                failed = Some(err);
                false
            }
        });
        if let Err(e) = walked.and(failed.map_or(Ok(()), Err)) {
            let _ = tx.blocking_send(Err(Error::from(e)));
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx).boxed()
}

impl Service {
    /// The entries a query matches, in journal order.
    pub fn query_journal(&self, caller: &Caller, query: Query) -> Result<Answers<Hashed>> {
        self.authorize(caller, Operation::QueryJournal)?;
        check(&query)?;
        let index = self.engine.state().clone();
        Ok(stream_matches(index, query, |_, e| Hashed::of(e).map(Some)))
    }

    /// Walks the stored chain, checking it also against the `(seq, hash)` points an auditor
    /// kept from earlier walks (hashes in hex, `expect[i].hash` when one is not).
    pub async fn verify_journal(
        &self,
        caller: &Caller,
        expect: &[(u64, String)],
    ) -> Result<Report> {
        self.authorize(caller, Operation::VerifyJournal)?;
        let mut expected = Vec::with_capacity(expect.len());
        for (i, (seq, hash)) in expect.iter().enumerate() {
            let hash = parse_hex(hash).ok_or_else(|| {
                Error::invalid(
                    format!("expect[{i}].hash"),
                    format!("`{hash}` is not a 64-digit hex hash"),
                )
            })?;
            expected.push((*seq, hash));
        }
        Ok(self.engine.store().verify(expected).await?)
    }

    /// The entries a query matches, as JSON lines of the chosen format.
    pub fn export_journal(
        &self,
        caller: &Caller,
        query: Query,
        format: Format,
    ) -> Result<Answers<Exported>> {
        self.authorize(caller, Operation::ExportJournal)?;
        check(&query).map_err(|e| e.under("query"))?;
        let index = self.engine.state().clone();
        let head_seq = index.applied_seq()?;
        let mut records = HashMap::new();
        Ok(stream_matches(index, query, move |index, e| {
            let hash = e.hash()?;
            let json = match format {
                Format::Json => crate::ocsf::entry_json(&e, &hash),
                Format::Ocsf => {
                    let Some(id) = e.intent_id else {
                        return Ok(None);
                    };
                    if records.len() > 4096 {
                        records.clear();
                    }
                    let record = match records.entry(id) {
                        std::collections::hash_map::Entry::Occupied(r) => r.into_mut(),
                        std::collections::hash_map::Entry::Vacant(slot) => {
                            match index.record(id)? {
                                Some(r) => slot.insert(r),
                                None => return Ok(None),
                            }
                        }
                    };
                    match crate::ocsf::remediation(&e, &hash, record) {
                        Some(event) => event,
                        None => return Ok(None),
                    }
                }
            };
            Ok(Some(Exported {
                json: json.to_string(),
                seq: e.seq,
                head_seq,
            }))
        }))
    }

    /// What a policy would have decided about the intents received in the range; nothing
    /// is changed. Answers with the replay and the replayed policy's digest.
    pub async fn replay_policy(
        &self,
        caller: &Caller,
        req: &ReplayPolicy,
    ) -> Result<(Replay, String)> {
        self.authorize(caller, Operation::ReplayPolicy)?;
        let policy = parapet_policy::Policy::from_toml(&req.policy_toml)
            .map_err(|e| Error::invalid("policy_toml", e.to_string()))?;
        let since = req
            .since
            .ok_or_else(|| Error::invalid("since", "is required"))?;
        let index = self.engine.state().clone();
        let digest = policy.digest().to_owned();
        let until = req.until;
        let ceilings = self.engine.ceilings().clone();
        let replay = tokio::task::spawn_blocking(move || {
            crate::engine::replay::replay(&*index, &policy, since, until, &ceilings)
        })
        .await
        .map_err(|e| Error::Storage(std::io::Error::other(e)))??;
        Ok((replay, digest))
    }
}
