//! Intents: submit one, read one, list them, follow them as they change.

use std::{sync::Arc, time::SystemTime};

use futures::StreamExt as _;
use parapet_model::{IntentId, IntentRequest};
use tokio::sync::broadcast::error::RecvError;
use tracing::Instrument as _;

use super::{Answers, Caller, Error, Operation, Result, Service, bounded, intent_id};
use crate::{filter::IntentFilter, lifecycle::IntentRecord};

/// A submission: the intent, whether to answer only once it has run, and the caller's trace.
pub struct Submit {
    pub intent: IntentRequest,
    pub wait: bool,
    pub trace: opentelemetry::Context,
}

pub use crate::engine::Submitted;

/// One page of a listing: intents newest first.
#[derive(Debug, Clone, Default)]
pub struct List {
    pub filter: IntentFilter,
    /// Intents per page: 100 when 0, at most 1,000.
    pub page_size: u32,
    /// The last intent of the page before; empty for the first page.
    pub page_token: String,
}

pub struct Page {
    pub intents: Vec<IntentRecord>,
    /// The token of the next page; empty on the last.
    pub next_page_token: String,
}

/// One change of an intent, with its record after it.
#[derive(Debug, Clone)]
pub struct Change {
    pub record: Arc<IntentRecord>,
    pub seq: u64,
    pub time: SystemTime,
    /// The journal event (`received`, `activated`, ...), or `current` for the state a watch
    /// of one intent starts with.
    pub event: &'static str,
}

impl Service {
    pub async fn submit(&self, caller: &Caller, req: Submit) -> Result<Submitted> {
        self.authorize(caller, Operation::Submit)?;
        let intent = req.intent;
        let kinds: Vec<&str> = intent.steps.iter().map(|s| s.kind.as_str()).collect();
        caller.may_submit(&intent.source, &intent.detection.rule_id, &kinds)?;
        let span = tracing::info_span!(
            "intent.submit",
            intent_id = tracing::field::Empty,
            detection = %intent.detection.rule_id,
            source = %intent.source,
            outcome = tracing::field::Empty,
            duplicate = tracing::field::Empty,
        );
        crate::telemetry::trace::set_parent(&span, req.trace);
        let submitted = self
            .engine
            .submit(intent, req.wait)
            .instrument(span.clone())
            .await?;
        let r = &submitted.record;
        span.record("intent_id", tracing::field::display(r.intent.id));
        span.record("duplicate", submitted.duplicate);
        if let Some(d) = &r.decision {
            span.record("outcome", d.outcome.as_str());
        }
        tracing::debug!(parent: &span, state = r.state.as_str(), "intent submitted");
        Ok(submitted)
    }

    /// The decision an intent would get now, with nothing done; a detector asks about its own
    /// source, detections and kinds only, as it submits.
    pub fn what_if(
        &self,
        caller: &Caller,
        intent: IntentRequest,
    ) -> Result<parapet_model::Decision> {
        self.authorize(caller, Operation::WhatIf)?;
        let kinds: Vec<&str> = intent.steps.iter().map(|s| s.kind.as_str()).collect();
        caller.may_submit(&intent.source, &intent.detection.rule_id, &kinds)?;
        self.engine.what_if(intent)
    }

    /// One intent; a detector's request for another source's is not found, so it learns
    /// nothing of others' intents.
    pub fn get_intent(&self, caller: &Caller, id: &str) -> Result<IntentRecord> {
        self.authorize(caller, Operation::GetIntent)?;
        let id = intent_id(id, "intent_id")?;
        self.readable(caller, id)
    }

    /// An intent's number: the sequence number of the journal entry that received it. Stable
    /// and a small integer, for protocols that name what they created by one (OpenC2's
    /// `slpf:rule_number`).
    pub fn intent_number(&self, caller: &Caller, id: IntentId) -> Result<u64> {
        self.authorize(caller, Operation::GetIntent)?;
        self.readable(caller, id)?;
        self.received_seq(id)
    }

    /// The intent a source submitted under an idempotency key, if any (the sources Parapet
    /// pulls from find their intents so).
    pub fn intent_by_key(&self, source: &str, key: &str) -> Result<Option<IntentId>> {
        Ok(self.engine.state().by_idempotency_key(source, key)?)
    }

    /// The sequence number of the entry that received `id`.
    pub(super) fn received_seq(&self, id: IntentId) -> Result<u64> {
        let query = crate::journal::Query {
            intent: Some(id),
            events: vec!["received".into()],
            limit: 1,
            ..Default::default()
        };
        let found = self.engine.state().query(&query)?;
        found.first().map(|e| e.seq).ok_or(Error::NotFound {
            what: "intent",
            name: id.to_string(),
        })
    }

    /// The intent an [`Self::intent_number`] names, if the caller may read it.
    pub fn intent_by_number(&self, caller: &Caller, number: u64) -> Result<IntentRecord> {
        self.authorize(caller, Operation::GetIntent)?;
        let missing = || Error::NotFound {
            what: "intent number",
            name: number.to_string(),
        };
        let query = crate::journal::Query {
            after_seq: number.checked_sub(1).ok_or_else(missing)?,
            limit: 1,
            ..Default::default()
        };
        let entry = self.engine.state().query(&query)?.into_iter().next();
        match entry {
            Some(e) if e.seq == number && e.event.kind() == "received" => {
                let id = e.intent_id.ok_or_else(missing)?;
                self.readable(caller, id).map_err(|_| missing())
            }
            _ => Err(missing()),
        }
    }

    fn readable(&self, caller: &Caller, id: IntentId) -> Result<IntentRecord> {
        let record = self.engine.record(id)?;
        if !caller.reads(&record.intent.source) {
            return Err(Error::NotFound {
                what: "intent",
                name: id.to_string(),
            });
        }
        Ok(record)
    }

    /// The intents a filter selects that the caller may read, newest first, a page at a time.
    pub fn list_intents(&self, caller: &Caller, req: &List) -> Result<Page> {
        self.authorize(caller, Operation::ListIntents)?;
        let page_size = bounded(req.page_size, 100, 1000, "page_size")?;
        let before = match req.page_token.as_str() {
            "" => None,
            token => Some(intent_id(token, "page_token")?),
        };
        let mut intents = Vec::new();
        let mut more = false;
        for record in self.engine.state().records_newest_first(before) {
            let record = record?;
            if !caller.reads(&record.intent.source) || !req.filter.matches(&record) {
                continue;
            }
            if intents.len() == page_size {
                more = true;
                break;
            }
            intents.push(record);
        }
        let next_page_token = match (more, intents.last()) {
            (true, Some(last)) => last.intent.id.to_string(),
            _ => String::new(),
        };
        Ok(Page {
            intents,
            next_page_token,
        })
    }

    /// Changes to the intents the caller may read (or to one intent, starting with its current
    /// state and ending when it does), as they are journaled. A watcher that falls too far
    /// behind is told so and must watch again; the stream ends when Parapet stops.
    pub fn watch(&self, caller: &Caller, intent: &str) -> Result<Answers<Change>> {
        self.authorize(caller, Operation::Watch)?;
        let permit = self.engine.watch_permit(&caller.counted_as())?;
        let only = match intent {
            "" => None,
            id => Some(intent_id(id, "intent_id")?),
        };
        // Subscribe before reading the current state, so no change falls in between.
        let changes = self.engine.store().subscribe();
        let current = only.map(|id| self.readable(caller, id)).transpose()?;
        let (caller, stop) = (caller.clone(), self.stopping());
        let last_seq = current.as_ref().map_or(0, |r| r.last_seq);
        let first = current.map(|record| Change {
            seq: record.last_seq,
            time: record.updated_at,
            event: "current",
            record: Arc::new(record),
        });
        let ended = first.as_ref().is_some_and(|c| c.record.state.is_final());
        struct Follow {
            changes: tokio::sync::broadcast::Receiver<crate::journal::Change>,
            _permit: crate::engine::WatchPermit,
            done: bool,
        }
        let follow = Follow {
            changes,
            _permit: permit,
            done: ended,
        };
        let rest = futures::stream::unfold(follow, move |mut f| {
            let (caller, stop) = (caller.clone(), stop.clone());
            async move {
                loop {
                    if f.done {
                        return None;
                    }
                    let change = tokio::select! {
                        () = stop.cancelled() => return None,
                        change = f.changes.recv() => change,
                    };
                    let change = match change {
                        Ok(c) => c,
                        Err(RecvError::Closed) => return None,
                        Err(RecvError::Lagged(n)) => {
                            f.done = true;
                            return Some((Err(Error::Lagged(n)), f));
                        }
                    };
                    let (Some(id), Some(record)) = (change.entry.intent_id, change.record) else {
                        continue;
                    };
                    if only.is_some_and(|only| only != id)
                        || change.entry.seq <= last_seq
                        || !caller.reads(&record.intent.source)
                    {
                        continue;
                    }
                    // A watch of one intent ends with it; the record is the one after its
                    // request.
                    f.done = only.is_some()
                        && record.state.is_final()
                        && record.last_seq == change.entry.seq;
                    let change = Change {
                        seq: change.entry.seq,
                        time: change.entry.time,
                        event: change.entry.event.kind(),
                        record,
                    };
                    return Some((Ok(change), f));
                }
            }
        });
        Ok(futures::stream::iter(first.map(Ok)).chain(rest).boxed())
    }
}
