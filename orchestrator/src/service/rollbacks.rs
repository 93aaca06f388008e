//! Undoing what was done: one intent, or everything a filter selects.

use futures::StreamExt as _;

use super::{Answers, Caller, Change, Operation, Result, Service, bounded, intent_id};
use crate::filter::IntentFilter;

pub use crate::engine::{Progress, RolledBack};

pub struct Rollback {
    pub intent_id: String,
    pub change: Change,
    /// Answer once the rollback has finished, not once it has begun.
    pub wait: bool,
}

pub struct RollbackSelected {
    /// Which active intents: at least one criterion.
    pub filter: IntentFilter,
    pub change: Change,
    /// Rollbacks at once: 8 when 0, at most 64.
    pub concurrency: u32,
}

/// A bulk rollback begun: its id and members, then each member's outcome as it comes.
pub struct Selected {
    pub operation_id: String,
    pub total: u32,
    pub progress: Answers<Progress>,
}

impl Service {
    pub async fn rollback(&self, caller: &Caller, req: &Rollback) -> Result<RolledBack> {
        self.authorize(caller, Operation::Rollback)?;
        let id = intent_id(&req.intent_id, "intent_id")?;
        let actor = req.change.checked(caller)?;
        self.engine
            .rollback(id, actor, &req.change.reason, req.wait)
            .await
    }

    /// Journals the operation with its members before anything is undone; the work goes on
    /// if the caller goes away, and a restart resumes it.
    pub async fn rollback_selected(
        &self,
        caller: &Caller,
        req: &RollbackSelected,
    ) -> Result<Selected> {
        self.authorize(caller, Operation::RollbackSelected)?;
        let actor = req.change.checked(caller)?;
        let concurrency = bounded(req.concurrency, 8, 64, "concurrency")?;
        let bulk = self
            .engine
            .bulk_rollback(&req.filter, actor, &req.change.reason, concurrency)
            .await?;
        Ok(Selected {
            operation_id: bulk.op,
            total: bulk.members.len() as u32,
            progress: tokio_stream::wrappers::ReceiverStream::new(bulk.progress)
                .map(Ok)
                .boxed(),
        })
    }
}
