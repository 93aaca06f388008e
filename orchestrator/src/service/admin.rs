//! Parapet itself: kill switches, status, policy reload, demotion, journal compaction.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use parapet_model::{ActionKind, IntentId, Invalid};
use parapet_policy::Policy;

use super::journal::Hashed;
use super::{Caller, Change, Error, Operation, Result, Service, actor};
use crate::{journal::Query, lifecycle::IntentRecord};

pub use crate::{
    engine::{BudgetRow, KillSwitch},
    journal::retention::Compaction,
};

pub struct SetKillSwitch {
    /// The action kind; the global switch when empty.
    pub action_kind: String,
    pub engaged: bool,
    pub change: Change,
}

pub struct SetDemotion {
    pub detection: String,
    pub demoted: bool,
    pub change: Change,
}

/// What `parapet status` shows; a detector's shows what concerns its own intents.
pub struct Status {
    pub policy: Arc<Policy>,
    pub kill_switches: Vec<KillSwitch>,
    pub budgets: Vec<BudgetRow>,
    pub demoted_detections: Vec<String>,
    /// Intents whose actions are in force, by the action kind of their first step.
    pub active_by_kind: BTreeMap<String, u64>,
    pub pending_approvals: u64,
    /// How long the oldest waiting intent has waited.
    pub oldest_pending: Option<Duration>,
    /// The last failures of the past day, newest first.
    pub recent_errors: Vec<Hashed>,
    /// Each adapter instance and the action kinds it performs.
    pub adapters: BTreeMap<String, Vec<ActionKind>>,
    /// The CrowdSec bouncers seen since start (none for a detector).
    pub bouncers: BTreeMap<String, super::bouncers::Seen>,
    /// The latest refused decisions of each pulled source, newest first.
    pub refused_upstream: Vec<IntentRecord>,
}

/// Refused upstream decisions shown per source.
const REFUSED_UPSTREAM: u32 = 10;

/// Failures shown in a status: at most this many, of the last day.
const RECENT_ERRORS: usize = 5;

impl Service {
    /// Engages or releases a kill switch; answers with the switches engaged after it.
    pub async fn set_kill_switch(
        &self,
        caller: &Caller,
        req: &SetKillSwitch,
    ) -> Result<Vec<KillSwitch>> {
        self.authorize(caller, Operation::SetKillSwitch)?;
        let kind = match req.action_kind.as_str() {
            "" => None,
            text => {
                let kind: ActionKind = text.parse().map_err(|e: Invalid| e.under("action_kind"))?;
                if !self.engine.registry().has_kind(&kind) {
                    return Err(Error::invalid(
                        "action_kind",
                        format!("no adapter performs `{kind}`"),
                    ));
                }
                Some(kind)
            }
        };
        let actor = req.change.checked(caller)?;
        self.engine
            .set_kill_switch(kind, req.engaged, actor, &req.change.reason)
            .await
    }

    /// Reads the policy file again; answers with the digests before and after.
    pub async fn reload_policy(
        &self,
        caller: &Caller,
        requested_by: &str,
    ) -> Result<(String, String)> {
        self.authorize(caller, Operation::ReloadPolicy)?;
        let actor = actor(caller, requested_by)?;
        self.engine.reload_policy(actor).await
    }

    /// Demotes a detection (its `auto` tiers act as `approval`) or lifts that; answers with
    /// the detections demoted after it.
    pub async fn set_demotion(&self, caller: &Caller, req: &SetDemotion) -> Result<Vec<String>> {
        self.authorize(caller, Operation::SetDemotion)?;
        if req.detection.is_empty() {
            return Err(Error::invalid("detection", "is required"));
        }
        let actor = req.change.checked(caller)?;
        self.engine
            .set_demoted(&req.detection, req.demoted, actor, &req.change.reason)
            .await?;
        Ok(self.engine.demoted())
    }

    /// Removes what retention allows from the front of the journal; `None` when nothing may go.
    pub async fn compact_journal(
        &self,
        caller: &Caller,
        requested_by: &str,
    ) -> Result<Option<Compaction>> {
        self.authorize(caller, Operation::CompactJournal)?;
        let by = actor(caller, requested_by)?.to_owned();
        self.engine.compact_journal(&by).await
    }

    /// The policy in force; anyone may read what decides their intents.
    pub fn policy(&self, caller: &Caller) -> Result<std::sync::Arc<parapet_policy::Policy>> {
        self.authorize(caller, Operation::GetPolicy)?;
        Ok(self.engine.policy())
    }

    pub fn status(&self, caller: &Caller) -> Result<Status> {
        self.authorize(caller, Operation::GetStatus)?;
        // a detector sees what concerns its own intents: their errors, their counts
        let own = caller.own_source();
        let index = self.engine.state();
        let mine = |id: Option<IntentId>| -> bool {
            match (own, id) {
                (None, _) => true,
                (Some(source), Some(id)) => index
                    .record(id)
                    .ok()
                    .flatten()
                    .is_some_and(|r| r.intent.source == source),
                (Some(_), None) => false,
            }
        };
        let status = self.engine.status()?;
        let (pending, since, active_by_kind) = match own {
            None => {
                let (pending, since) = self.engine.pending_summary()?;
                (pending, since, self.engine.active_by_kind()?)
            }
            Some(source) => self.engine.summary_of(source)?,
        };
        let now = self.engine.clock_now();
        let errors = Query {
            since: now.checked_sub(Duration::from_secs(24 * 3600)),
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
        let mut recent = std::collections::VecDeque::with_capacity(RECENT_ERRORS);
        index.each_match(&errors, &mut |e| {
            if mine(e.intent_id) {
                if recent.len() == RECENT_ERRORS {
                    recent.pop_front();
                }
                recent.push_back(e);
            }
            true
        })?;
        let recent_errors = recent
            .into_iter()
            .rev()
            .map(Hashed::of)
            .collect::<std::io::Result<_>>()?;
        Ok(Status {
            policy: status.policy,
            kill_switches: status.kill_switches,
            budgets: status.budgets,
            demoted_detections: self.engine.demoted(),
            active_by_kind,
            pending_approvals: pending,
            oldest_pending: since.and_then(|t| now.duration_since(t).ok()),
            recent_errors,
            adapters: self.engine.registry().instances().clone(),
            bouncers: match (
                own,
                self.published.as_ref().and_then(|p| p.bouncers.as_ref()),
            ) {
                (None, Some(b)) => b.seen(),
                _ => BTreeMap::new(),
            },
            refused_upstream: match own {
                None => self.refused_upstream(caller)?,
                Some(_) => Vec::new(),
            },
        })
    }

    fn refused_upstream(&self, caller: &Caller) -> Result<Vec<IntentRecord>> {
        let sources = self
            .published
            .as_ref()
            .map(|p| p.upstream.clone())
            .unwrap_or_default();
        let mut out = Vec::new();
        for source in sources {
            let list = super::intents::List {
                filter: crate::filter::IntentFilter {
                    states: vec![crate::lifecycle::State::Denied],
                    source: Some(source),
                    ..Default::default()
                },
                page_size: REFUSED_UPSTREAM,
                page_token: String::new(),
            };
            out.extend(self.list_intents(caller, &list)?.intents);
        }
        Ok(out)
    }
}
