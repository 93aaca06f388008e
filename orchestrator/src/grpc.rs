//! The gRPC services: decode, call the engine, map the result. Nothing else happens here.

use std::{pin::Pin, time::SystemTime};

use parapet_model::{
    IntentId, Invalid,
    intent::{check_text, limits},
};
use parapet_proto::v1::{
    self as pb, admin_server, approvals_server, intents_server, journal_server, rollbacks_server,
    verdicts_server,
};
use tokio::sync::{broadcast::error::RecvError, mpsc};
use tokio_stream::{Stream, StreamExt, wrappers::ReceiverStream};
use tonic::{Request, Response, Status};

use tracing::Instrument as _;

use crate::{
    auth::Caller,
    engine::{Engine, Error, Selector},
    pb as conv,
};

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        match e {
            Error::Invalid(invalid) => Status::invalid_argument(invalid.to_string()),
            Error::NotFound(_) => Status::not_found(e.to_string()),
            Error::IdempotencyConflict { .. } => Status::already_exists(e.to_string()),
            Error::FailedPrecondition(_) | Error::Refused(_) => {
                Status::failed_precondition(e.to_string())
            }
            Error::Forbidden(_) => Status::permission_denied(e.to_string()),
            Error::ShuttingDown => Status::unavailable(e.to_string()),
            Error::Exhausted(_) => Status::resource_exhausted(e.to_string()),
            Error::Journal(_) | Error::Storage(_) => {
                tracing::error!(error = %e, "request failed");
                Status::unavailable(e.to_string())
            }
        }
    }
}

fn invalid(field: &str) -> impl FnOnce(Invalid) -> Status + '_ {
    move |e| Status::invalid_argument(e.under(field).to_string())
}

/// A reason is kept in the journal with what it caused, so changes must give one, and it is
/// free text within the limits of any other.
fn required_reason(reason: &str) -> Result<(), Status> {
    if reason.trim().is_empty() {
        return Err(Status::invalid_argument(
            "reason: is required; it is kept in the journal",
        ));
    }
    text(reason, limits::MAX_TEXT_LEN, "reason")
}

/// Free text a person gave: bounded, without control or bidirectional characters.
fn text(value: &str, max: usize, field: &str) -> Result<(), Status> {
    check_text(value, max).map_err(invalid(field))
}

/// Who the journal records: the caller's identity, or (without authentication) the name it
/// gives, which is then bounded text like any other.
fn actor<'a>(caller: &'a Caller, requested_by: &'a str) -> Result<&'a str, Status> {
    text(requested_by, limits::MAX_ID_LEN, "requested_by")?;
    Ok(caller.actor(requested_by))
}

/// A count a client may set: `default` when unset, refused above `max`.
fn bounded(value: u32, default: usize, max: u32, field: &str) -> Result<usize, Status> {
    match value {
        0 => Ok(default),
        n if n <= max => Ok(n as usize),
        n => Err(Status::invalid_argument(format!(
            "{field}: {n} exceeds the limit of {max}"
        ))),
    }
}

fn intent_id(text: &str, field: &str) -> Result<IntentId, Status> {
    if text.is_empty() {
        return Err(Status::invalid_argument(format!("{field}: is required")));
    }
    text.parse().map_err(invalid(field))
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Serves `parapet.v1.Intents`.
pub struct Intents(pub Engine);

#[tonic::async_trait]
impl intents_server::Intents for Intents {
    async fn submit(
        &self,
        request: Request<pb::SubmitIntentRequest>,
    ) -> Result<Response<pb::SubmitIntentResponse>, Status> {
        let caller = Caller::of(&request);
        let parent = crate::telemetry::trace::from_metadata(request.metadata());
        let req = request.into_inner();
        let wait = req.wait;
        let intent =
            conv::intent_request(req).map_err(|e| Status::invalid_argument(e.to_string()))?;
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
        crate::telemetry::trace::set_parent(&span, parent);
        let submitted = self.0.submit(intent, wait).instrument(span.clone()).await?;
        let r = &submitted.record;
        span.record("intent_id", tracing::field::display(r.intent.id));
        span.record("duplicate", submitted.duplicate);
        if let Some(d) = &r.decision {
            span.record("outcome", d.outcome.as_str());
        }
        tracing::debug!(parent: &span, state = r.state.as_str(), "intent submitted");
        Ok(Response::new(pb::SubmitIntentResponse {
            intent_id: r.intent.id.to_string(),
            decision: r.decision.as_ref().map(conv::decision),
            state: conv::state(r.state).into(),
            duplicate: submitted.duplicate,
            intent: Some(conv::intent(r)),
        }))
    }

    async fn get(
        &self,
        request: Request<pb::GetIntentRequest>,
    ) -> Result<Response<pb::Intent>, Status> {
        let caller = Caller::of(&request);
        let id = intent_id(&request.get_ref().intent_id, "intent_id")?;
        let record = self.0.record(id)?;
        if !caller.reads(&record.intent.source) {
            // not found rather than denied: a detector learns nothing of others' intents
            return Err(Error::NotFound(id.to_string()).into());
        }
        Ok(Response::new(conv::intent(&record)))
    }

    async fn list(
        &self,
        request: Request<pb::ListIntentsRequest>,
    ) -> Result<Response<pb::ListIntentsResponse>, Status> {
        let caller = Caller::of(&request);
        let req = request.into_inner();
        let states = req
            .states
            .iter()
            .map(|s| conv::state_filter(*s).map_err(invalid("states")))
            .collect::<Result<Vec<_>, _>>()?;
        let states: Vec<_> = states.into_iter().flatten().collect();
        let page_size = bounded(req.page_size, 100, 1000, "page_size")?;
        let before = if req.page_token.is_empty() {
            None
        } else {
            Some(intent_id(&req.page_token, "page_token")?)
        };
        let mut intents = Vec::new();
        let mut more = false;
        for record in self.0.journal().index().records_newest_first(before) {
            let record = record.map_err(Error::from)?;
            let keep = caller.reads(&record.intent.source)
                && (states.is_empty() || states.contains(&record.state))
                && (req.detection.is_empty() || record.intent.detection.rule_id == req.detection)
                && (req.source.is_empty() || record.intent.source == req.source);
            if !keep {
                continue;
            }
            if intents.len() == page_size {
                more = true;
                break;
            }
            intents.push(conv::intent(&record));
        }
        let next_page_token = match (more, intents.last()) {
            (true, Some(last)) => last.intent_id.clone(),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListIntentsResponse {
            intents,
            next_page_token,
        }))
    }

    type WatchStream = BoxStream<pb::IntentEvent>;

    async fn watch(
        &self,
        request: Request<pb::WatchIntentsRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let caller = Caller::of(&request);
        // the streams one caller holds are counted: by identity, else by address
        let who = match (&caller.identity, request.remote_addr()) {
            (Some(id), _) => id.name.clone(),
            (None, Some(peer)) => peer.ip().to_string(),
            (None, None) => "anonymous".to_owned(),
        };
        let permit = self.0.watch_permit(&who)?;
        let req = request.into_inner();
        let only = if req.intent_id.is_empty() {
            None
        } else {
            Some(intent_id(&req.intent_id, "intent_id")?)
        };
        let engine = self.0.clone();
        // Subscribe before reading the current state, so no change falls in between.
        let mut changes = engine.journal().subscribe();
        let current = only.map(|id| engine.record(id)).transpose()?;
        if let Some(r) = &current
            && !caller.reads(&r.intent.source)
        {
            return Err(Error::NotFound(r.intent.id.to_string()).into());
        }
        let (tx, rx) = mpsc::channel(64);
        let stop = engine.shutdown_token();
        tokio::spawn(async move {
            let _permit = permit;
            let mut last_seq = 0;
            if let Some(record) = current {
                last_seq = record.last_seq;
                let event = pb::IntentEvent {
                    intent_id: record.intent.id.to_string(),
                    state: conv::state(record.state).into(),
                    seq: record.last_seq,
                    time: Some(conv::timestamp(record.updated_at)),
                    event: "current".into(),
                    intent: Some(conv::intent(&record)),
                };
                if tx.send(Ok(event)).await.is_err() || record.state.is_final() {
                    return;
                }
            }
            loop {
                let change = tokio::select! {
                    () = stop.cancelled() => return,
                    () = tx.closed() => return,
                    change = changes.recv() => change,
                };
                let change = match change {
                    Ok(c) => c,
                    Err(RecvError::Closed) => return,
                    Err(RecvError::Lagged(n)) => {
                        let _ = tx
                            .send(Err(Status::aborted(format!(
                                "watch fell {n} changes behind; watch again"
                            ))))
                            .await;
                        return;
                    }
                };
                let (Some(id), Some(record)) = (change.entry.intent_id, &change.record) else {
                    continue;
                };
                if only.is_some_and(|only| only != id)
                    || change.entry.seq <= last_seq
                    || !caller.reads(&record.intent.source)
                {
                    continue;
                }
                let state = record.state;
                let event = pb::IntentEvent {
                    intent_id: id.to_string(),
                    state: conv::state(state).into(),
                    seq: change.entry.seq,
                    time: Some(conv::timestamp(change.entry.time)),
                    event: change.entry.event.kind().into(),
                    intent: Some(conv::intent(record)),
                };
                if tx.send(Ok(event)).await.is_err() {
                    return;
                }
                // A watch of one intent ends with it; the record is the one after its request.
                if only.is_some() && state.is_final() && record.last_seq == change.entry.seq {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// Serves `parapet.v1.Rollbacks`.
pub struct Rollbacks(pub Engine);

#[tonic::async_trait]
impl rollbacks_server::Rollbacks for Rollbacks {
    type RollbackSelectedStream = BoxStream<pb::RollbackProgress>;

    async fn rollback_selected(
        &self,
        request: Request<pb::RollbackSelectedRequest>,
    ) -> Result<Response<Self::RollbackSelectedStream>, Status> {
        let caller = Caller::of(&request);
        let req = request.into_inner();
        let selector = Self::selector(&req)?;
        required_reason(&req.reason)?;
        let concurrency = bounded(req.concurrency, 8, 64, "concurrency")?;
        let by = actor(&caller, &req.requested_by)?;
        let bulk = self
            .0
            .bulk_rollback(&selector, by, &req.reason, concurrency)
            .await?;
        let op = bulk.op.clone();
        let total = bulk.members.len() as u32;
        let first = pb::RollbackProgress {
            operation_id: op.clone(),
            total,
            ..Default::default()
        };
        let rest = ReceiverStream::new(bulk.progress).map(move |p| {
            Ok(pb::RollbackProgress {
                operation_id: op.clone(),
                total: p.total,
                done: p.done,
                intent_id: p.intent_id.to_string(),
                state: p.state.map_or(0, |s| conv::state(s).into()),
                error: p.error.unwrap_or_default(),
            })
        });
        Ok(Response::new(Box::pin(
            tokio_stream::once(Ok(first)).chain(rest),
        )))
    }

    async fn rollback(
        &self,
        request: Request<pb::RollbackRequest>,
    ) -> Result<Response<pb::RollbackResponse>, Status> {
        let caller = Caller::of(&request);
        let req = request.into_inner();
        let id = intent_id(&req.intent_id, "intent_id")?;
        required_reason(&req.reason)?;
        let actor = actor(&caller, &req.requested_by)?;
        let done = self.0.rollback(id, actor, &req.reason, req.wait).await?;
        Ok(Response::new(pb::RollbackResponse {
            intent_id: id.to_string(),
            state: conv::state(done.record.state).into(),
            noop: done.noop,
        }))
    }
}

impl Rollbacks {
    fn selector(req: &pb::RollbackSelectedRequest) -> Result<Selector, Status> {
        let time =
            |t: Option<prost_types::Timestamp>, field| -> Result<Option<SystemTime>, Status> {
                t.map(|t| conv::system_time(t).map_err(invalid(field)))
                    .transpose()
            };
        let text = |s: &str| Some(s.to_owned()).filter(|s| !s.is_empty());
        Ok(Selector {
            detection: text(&req.detection),
            source: text(&req.source),
            action_kind: match text(&req.action_kind) {
                Some(k) => Some(k.parse().map_err(invalid("action_kind"))?),
                None => None,
            },
            target: match &req.target {
                Some(t) if t.kind.is_empty() || t.id.is_empty() => {
                    return Err(Status::invalid_argument("target: needs both kind and id"));
                }
                Some(t) => Some((t.kind.clone(), t.id.clone())),
                None => None,
            },
            since: time(req.since, "since")?,
            until: time(req.until, "until")?,
        })
    }
}

/// Serves `parapet.v1.Journal`.
pub struct Journal(pub Engine);

/// Entries read ahead of a client that streams a query.
const PAGE: usize = 512;

/// Streams what `each` makes of the entries a query matches (`None` skips one), read on a
/// blocking thread a page ahead of the client at most, up to the query's limit.
fn stream_matches<T: Send + 'static>(
    index: crate::journal::Index,
    query: crate::journal::Query,
    mut each: impl FnMut(&crate::journal::Index, &crate::journal::Entry) -> std::io::Result<Option<T>>
    + Send
    + 'static,
) -> BoxStream<T> {
    let (tx, rx) = tokio::sync::mpsc::channel(PAGE);
    tokio::task::spawn_blocking(move || {
        let (mut left, mut failed) = (query.limit, None);
        let walked = index.each_match(&query, &mut |e| match each(&index, &e) {
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
            let _ = tx.blocking_send(Err(Status::from(Error::from(e))));
        }
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

#[tonic::async_trait]
impl journal_server::Journal for Journal {
    type QueryStream = BoxStream<pb::JournalEntry>;

    async fn query(
        &self,
        request: Request<pb::QueryJournalRequest>,
    ) -> Result<Response<Self::QueryStream>, Status> {
        let query = conv::journal_query(request.into_inner()).map_err(Error::Invalid)?;
        let index = self.0.journal().index().clone();
        Ok(Response::new(stream_matches(index, query, |_, e| {
            Ok(Some(conv::journal_entry(e)))
        })))
    }

    async fn verify(
        &self,
        request: Request<pb::VerifyJournalRequest>,
    ) -> Result<Response<pb::VerifyJournalResponse>, Status> {
        let mut expected = Vec::new();
        for (i, p) in request.into_inner().expect.iter().enumerate() {
            let hash = crate::journal::parse_hex(&p.hash).ok_or_else(|| {
                Status::invalid_argument(format!(
                    "expect[{i}].hash: `{}` is not a 64-digit hex hash",
                    p.hash
                ))
            })?;
            expected.push((p.seq, hash));
        }
        let report = self
            .0
            .journal()
            .verify(expected)
            .await
            .map_err(Error::from)?;
        Ok(Response::new(conv::verify_report(&report)))
    }

    type ExportStream = BoxStream<pb::ExportedEvent>;

    async fn export(
        &self,
        request: Request<pb::ExportJournalRequest>,
    ) -> Result<Response<Self::ExportStream>, Status> {
        let req = request.into_inner();
        let ocsf = match pb::ExportFormat::try_from(req.format) {
            Ok(pb::ExportFormat::Ocsf) => true,
            Ok(_) => false,
            Err(_) => {
                return Err(Status::invalid_argument(format!(
                    "format: {} is not a format",
                    req.format
                )));
            }
        };
        let query = conv::journal_query(req.query.unwrap_or_default())
            .map_err(|e| Error::Invalid(e.under("query")))?;
        let index = self.0.journal().index().clone();
        let head_seq = index.applied_seq().map_err(Error::from)?;
        let mut records = std::collections::HashMap::new();
        let stream = stream_matches(index, query, move |index, e| {
            let json = if ocsf {
                let Some(id) = e.intent_id else {
                    return Ok(None);
                };
                if records.len() > 4096 {
                    records.clear();
                }
                let record = match records.entry(id) {
                    std::collections::hash_map::Entry::Occupied(r) => r.into_mut(),
                    std::collections::hash_map::Entry::Vacant(slot) => match index.record(id)? {
                        Some(r) => slot.insert(r),
                        None => return Ok(None),
                    },
                };
                match crate::ocsf::remediation(e, record) {
                    Some(event) => event,
                    None => return Ok(None),
                }
            } else {
                crate::ocsf::entry_json(e)
            };
            Ok(Some(pb::ExportedEvent {
                json: json.to_string(),
                seq: e.seq,
                head_seq,
            }))
        });
        Ok(Response::new(stream))
    }

    async fn replay_policy(
        &self,
        request: Request<pb::ReplayPolicyRequest>,
    ) -> Result<Response<pb::ReplayPolicyResponse>, Status> {
        let req = request.into_inner();
        let policy = parapet_policy::Policy::from_toml(&req.policy_toml)
            .map_err(|e| Status::invalid_argument(format!("policy_toml: {e}")))?;
        let since = match req.since {
            Some(t) => conv::system_time(t).map_err(invalid("since"))?,
            None => return Err(Status::invalid_argument("since: is required")),
        };
        let until = req
            .until
            .map(|t| conv::system_time(t).map_err(invalid("until")))
            .transpose()?;
        let index = self.0.journal().index().clone();
        let replay = {
            let policy = policy.clone();
            tokio::task::spawn_blocking(move || {
                crate::engine::replay::replay(&index, &policy, since, until)
            })
        }
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(Error::from)?;
        Ok(Response::new(conv::replay(&replay, policy.digest())))
    }
}

/// Serves `parapet.v1.Admin`.
pub struct Admin(pub Engine);

fn kill_switch(k: &crate::engine::KillSwitch) -> pb::KillSwitch {
    let reason = match &k.engaged_by.event {
        crate::lifecycle::Event::KillSwitch { reason, .. } => reason.clone(),
        _ => String::new(),
    };
    pb::KillSwitch {
        action_kind: k.kind.as_ref().map(ToString::to_string).unwrap_or_default(),
        reason,
        engaged_by: k.engaged_by.actor.clone(),
        since: Some(conv::timestamp(k.engaged_by.time)),
        seq: k.engaged_by.seq,
    }
}

#[tonic::async_trait]
impl admin_server::Admin for Admin {
    async fn set_kill_switch(
        &self,
        request: Request<pb::SetKillSwitchRequest>,
    ) -> Result<Response<pb::SetKillSwitchResponse>, Status> {
        let caller = Caller::of(&request);
        let req = request.into_inner();
        let kind = if req.action_kind.is_empty() {
            None
        } else {
            let kind: parapet_model::ActionKind =
                req.action_kind.parse().map_err(invalid("action_kind"))?;
            if !self.0.registry().has_kind(&kind) {
                return Err(Status::invalid_argument(format!(
                    "action_kind: no adapter performs `{kind}`"
                )));
            }
            Some(kind)
        };
        required_reason(&req.reason)?;
        let actor = actor(&caller, &req.requested_by)?;
        let engaged = self
            .0
            .set_kill_switch(kind, req.engaged, actor, &req.reason)
            .await?;
        Ok(Response::new(pb::SetKillSwitchResponse {
            engaged: engaged.iter().map(kill_switch).collect(),
        }))
    }

    async fn reload_policy(
        &self,
        request: Request<pb::ReloadPolicyRequest>,
    ) -> Result<Response<pb::ReloadPolicyResponse>, Status> {
        let caller = Caller::of(&request);
        let req = request.into_inner();
        let actor = actor(&caller, &req.requested_by)?;
        let (previous_digest, policy_digest) = self.0.reload_policy(actor).await?;
        Ok(Response::new(pb::ReloadPolicyResponse {
            previous_digest,
            policy_digest,
        }))
    }

    async fn get_status(
        &self,
        request: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::GetStatusResponse>, Status> {
        let caller = Caller::of(&request);
        // a detector sees what concerns its own intents: their errors, their counts
        let own = caller.own_source().map(str::to_owned);
        let index = self.0.journal().index().clone();
        let mine = |id: Option<IntentId>| -> bool {
            match (&own, id) {
                (None, _) => true,
                (Some(source), Some(id)) => index
                    .record(id)
                    .ok()
                    .flatten()
                    .is_some_and(|r| r.intent.source == *source),
                (Some(_), None) => false,
            }
        };
        let status = self.0.status()?;
        let budgets = status
            .budgets
            .iter()
            .map(|row| pb::BudgetUsage {
                budget: row.budget.name.clone(),
                scope: row.budget.scope.clone(),
                scope_value: row.scope_value.clone(),
                active: row.active,
                max_active: row.budget.max_active,
                used_in_window: row.used_in_window,
                max_per_window: row.budget.max_per_window,
                window: row.budget.window.as_ref().map(|w| conv::pb_duration(w.0)),
                max_active_from_percent: row.max_from_percent,
                utilisation: crate::telemetry::utilisation(row),
            })
            .collect();
        let (pending, since, active_by_kind) = match &own {
            None => {
                let (pending, since) = self.0.pending_summary()?;
                (pending, since, self.0.active_by_kind()?)
            }
            Some(source) => self.0.summary_of(source)?,
        };
        let now = self.0.clock_now();
        let oldest = since.and_then(|t| now.duration_since(t).ok());
        let errors = crate::journal::Query {
            since: now.checked_sub(std::time::Duration::from_secs(24 * 3600)),
            events: [
                "step_failed",
                "failed",
                "rollback_failed",
                "step_rollback_failed",
            ]
            .map(String::from)
            .to_vec(),
            limit: usize::MAX,
            ..Default::default()
        };
        let mut recent = std::collections::VecDeque::new();
        self.0
            .journal()
            .index()
            .each_match(&errors, &mut |e| {
                if !mine(e.intent_id) {
                    return true;
                }
                if recent.len() == 5 {
                    recent.pop_front();
                }
                recent.push_back(conv::journal_entry(&e));
                true
            })
            .map_err(Error::from)?;
        let rate_limits = status
            .policy
            .rate_limits
            .iter()
            .map(|r| pb::RateLimitInfo {
                name: r.name.clone(),
                key: match r.key {
                    parapet_policy::rules::RateKey::Source => "source",
                    parapet_policy::rules::RateKey::Detection => "detection",
                    parapet_policy::rules::RateKey::ActionKind => "action_kind",
                }
                .into(),
                max: r.max.get(),
                per: Some(conv::pb_duration(r.per.0)),
                burst: r.burst.unwrap_or(r.max).get(),
            })
            .collect();
        Ok(Response::new(pb::GetStatusResponse {
            policy_digest: status.policy.digest().to_owned(),
            kill_switches: status.kill_switches.iter().map(kill_switch).collect(),
            budgets,
            rate_limits,
            shadow: status.policy.shadow,
            demoted_detections: self.0.demoted(),
            active_by_kind: active_by_kind.into_iter().collect(),
            pending_approvals: pending as u32,
            oldest_pending: oldest.map(conv::pb_duration),
            recent_errors: recent.into_iter().rev().collect(),
            adapters: self
                .0
                .registry()
                .instances()
                .iter()
                .map(|(name, kinds)| pb::AdapterInstance {
                    name: name.clone(),
                    kinds: kinds.iter().map(ToString::to_string).collect(),
                })
                .collect(),
        }))
    }

    async fn set_demotion(
        &self,
        request: Request<pb::SetDemotionRequest>,
    ) -> Result<Response<pb::SetDemotionResponse>, Status> {
        let caller = Caller::of(&request);
        let req = request.into_inner();
        if req.detection.is_empty() {
            return Err(Status::invalid_argument("detection: is required"));
        }
        required_reason(&req.reason)?;
        self.0
            .set_demoted(
                &req.detection,
                req.demoted,
                actor(&caller, &req.requested_by)?,
                &req.reason,
            )
            .await?;
        Ok(Response::new(pb::SetDemotionResponse {
            demoted_detections: self.0.demoted(),
        }))
    }

    async fn compact_journal(
        &self,
        request: Request<pb::CompactJournalRequest>,
    ) -> Result<Response<pb::CompactJournalResponse>, Status> {
        let caller = Caller::of(&request);
        let by = actor(&caller, &request.get_ref().requested_by)?.to_owned();
        let done = self.0.compact_journal(&by).await?;
        Ok(Response::new(match done {
            None => pb::CompactJournalResponse::default(),
            Some(c) => pb::CompactJournalResponse {
                compacted: true,
                anchor: Some(pb::ChainPoint {
                    seq: c.anchor.seq,
                    hash: crate::journal::hex(&c.anchor.hash),
                }),
                entries: c.entries,
                intents: c.intents,
                bytes_before: c.bytes_before,
                bytes_after: c.bytes_after,
            },
        }))
    }
}

fn answer<'a>(
    caller: &'a Caller,
    req: &'a pb::AnswerRequest,
) -> Result<(IntentId, &'a str), Status> {
    let id = intent_id(&req.intent_id, "intent_id")?;
    required_reason(&req.reason)?;
    Ok((id, actor(caller, &req.requested_by)?))
}

/// Serves `parapet.v1.Approvals`.
pub struct Approvals(pub Engine);

#[tonic::async_trait]
impl approvals_server::Approvals for Approvals {
    async fn list_pending(
        &self,
        _request: Request<pb::ListPendingRequest>,
    ) -> Result<Response<pb::ListPendingResponse>, Status> {
        let intents = self.0.pending()?.iter().map(conv::intent).collect();
        Ok(Response::new(pb::ListPendingResponse { intents }))
    }

    async fn approve(
        &self,
        request: Request<pb::AnswerRequest>,
    ) -> Result<Response<pb::Intent>, Status> {
        let caller = Caller::of(&request);
        let req = request.into_inner();
        let (id, by) = answer(&caller, &req)?;
        Ok(Response::new(conv::intent(
            &self.0.approve(id, by, &req.reason).await?,
        )))
    }

    async fn reject(
        &self,
        request: Request<pb::AnswerRequest>,
    ) -> Result<Response<pb::Intent>, Status> {
        let caller = Caller::of(&request);
        let req = request.into_inner();
        let (id, by) = answer(&caller, &req)?;
        Ok(Response::new(conv::intent(
            &self.0.reject(id, by, &req.reason).await?,
        )))
    }
}

/// Serves `parapet.v1.Verdicts`.
pub struct Verdicts(pub Engine);

#[tonic::async_trait]
impl verdicts_server::Verdicts for Verdicts {
    async fn judge(
        &self,
        request: Request<pb::VerdictRequest>,
    ) -> Result<Response<pb::Intent>, Status> {
        let caller = Caller::of(&request);
        let req = request.into_inner();
        let id = intent_id(&req.intent_id, "intent_id")?;
        let verdict = match pb::VerdictKind::try_from(req.verdict) {
            Ok(pb::VerdictKind::TruePositive) => crate::lifecycle::Verdict::TruePositive,
            Ok(pb::VerdictKind::FalsePositive) => crate::lifecycle::Verdict::FalsePositive,
            _ => {
                return Err(Status::invalid_argument(
                    "verdict: must be TRUE_POSITIVE or FALSE_POSITIVE",
                ));
            }
        };
        let by = actor(&caller, &req.requested_by)?;
        text(&req.note, limits::MAX_TEXT_LEN, "note")?;
        Ok(Response::new(conv::intent(
            &self.0.judge(id, by, verdict, &req.note).await?,
        )))
    }

    async fn precision(
        &self,
        _request: Request<pb::PrecisionRequest>,
    ) -> Result<Response<pb::PrecisionResponse>, Status> {
        let policy = self.0.policy();
        let rows = self
            .0
            .precision()?
            .into_iter()
            .map(|((detection, kind), p)| {
                let tier = policy
                    .detections
                    .get(&detection)
                    .and_then(|d| kind.parse().ok().and_then(|k| d.actions.get(&k).copied()))
                    .map_or(
                        if policy.detections.contains_key(&detection) {
                            "forbidden"
                        } else {
                            "unknown detection"
                        },
                        |t| t.as_str(),
                    );
                pb::PrecisionRow {
                    detection,
                    action_kind: kind,
                    true_positives: p.true_positives,
                    false_positives: p.false_positives,
                    tier: tier.to_owned(),
                }
            })
            .collect();
        Ok(Response::new(pb::PrecisionResponse { rows }))
    }
}
