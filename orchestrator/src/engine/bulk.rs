//! Rolling back everything a selector matches, as one journaled operation that a restart resumes.

use futures::StreamExt;
use parapet_model::IntentId;
use tokio::sync::mpsc;

use super::{Engine, Error, Result};
use crate::{
    filter::IntentFilter,
    lifecycle::{State, SystemEvent},
};

/// How one member of a bulk rollback ended.
#[derive(Debug, Clone)]
pub struct Progress {
    pub intent_id: IntentId,
    pub state: Option<State>,
    pub error: Option<String>,
    pub done: u32,
    pub total: u32,
}

/// A started bulk rollback: its id, its members, and its progress as it happens.
pub struct BulkRollback {
    pub op: String,
    pub members: Vec<IntentId>,
    pub progress: mpsc::Receiver<Progress>,
}

impl Engine {
    /// Rolls back every active intent the filter matches, `concurrency` at a time. The
    /// operation and its members are journaled before anything is undone; the work goes on if
    /// whoever asked goes away, and a restart resumes it.
    pub async fn bulk_rollback(
        &self,
        selector: &IntentFilter,
        by: &str,
        reason: &str,
        concurrency: usize,
    ) -> Result<BulkRollback> {
        if selector.is_empty() {
            return Err(Error::invalid(
                "selector",
                "give at least one of detection, source, action_kind, target, since, until",
            ));
        }
        let mut members = Vec::new();
        for r in self.inner.state.live_records() {
            let r = r?;
            if r.state == State::Active && selector.matches(&r) {
                members.push(r.intent.id);
            }
        }
        let op = uuid::Uuid::now_v7().to_string();
        let started = SystemEvent::BulkRollbackStarted {
            op: op.clone(),
            selector: selector.to_string(),
            reason: reason.to_owned(),
            members: members.clone(),
        };
        self.inner.store.append_system(by, started).await?;
        let (tx, progress) = mpsc::channel(64);
        let engine = self.clone();
        let (run_op, run_members, by, reason) = (
            op.clone(),
            members.clone(),
            by.to_owned(),
            reason.to_owned(),
        );
        self.spawn(async move {
            engine
                .run_bulk(run_op, run_members, by, reason, concurrency, Some(tx))
                .await;
        });
        Ok(BulkRollback {
            op,
            members,
            progress,
        })
    }

    pub(super) async fn run_bulk(
        &self,
        op: String,
        members: Vec<IntentId>,
        by: String,
        reason: String,
        concurrency: usize,
        progress: Option<mpsc::Sender<Progress>>,
    ) {
        let total = members.len() as u32;
        let why = format!("bulk rollback {op}: {reason}");
        let mut results = futures::stream::iter(members)
            .map(|id| {
                let (by, why) = (&by, &why);
                async move { (id, self.rollback(id, by, why, true).await) }
            })
            .buffer_unordered(concurrency.max(1));
        let (mut done, mut failed) = (0, 0);
        while let Some((intent_id, result)) = results.next().await {
            done += 1;
            let (state, error) = match result {
                Ok(r) if r.record.state == State::RollbackFailed => {
                    (Some(r.record.state), r.record.error.clone())
                }
                Ok(r) => (Some(r.record.state), None),
                Err(e) => (None, Some(e.to_string())),
            };
            failed += u32::from(error.is_some());
            if let Some(tx) = &progress {
                let _ = tx
                    .send(Progress {
                        intent_id,
                        state,
                        error,
                        done,
                        total,
                    })
                    .await;
            }
        }
        let finished = SystemEvent::BulkRollbackFinished {
            op: op.clone(),
            rolled_back: done - failed,
            failed,
        };
        if let Err(e) = self.inner.store.append_system(&by, finished).await {
            tracing::error!(%op, error = %e, "bulk rollback not closed; it resumes on restart");
        }
    }

    /// Resumes bulk rollbacks a stop interrupted: members already rolled back are no-ops.
    pub(super) fn resume_bulk(&self) -> Result<()> {
        for open in self.inner.state.open_bulk_rollbacks()? {
            tracing::info!(op = %open.op, members = open.members.len(), "resuming a bulk rollback");
            let engine = self.clone();
            self.spawn(async move {
                engine
                    .run_bulk(open.op, open.members, open.actor, open.reason, 8, None)
                    .await;
            });
        }
        Ok(())
    }
}
