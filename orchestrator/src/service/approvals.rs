//! People in the loop: what waits for them, and their answers.

use super::{Caller, Change, Operation, Result, Service, intent_id};
use crate::lifecycle::IntentRecord;

/// An approver's answer to one waiting intent.
pub struct Answer {
    pub intent_id: String,
    pub change: Change,
}

impl Service {
    /// Intents waiting for a person, oldest first.
    pub fn list_pending(&self, caller: &Caller) -> Result<Vec<IntentRecord>> {
        self.authorize(caller, Operation::ListPending)?;
        self.engine.pending()
    }

    /// Approves a waiting intent: the guardrails decide again, and it runs if they allow.
    pub async fn approve(&self, caller: &Caller, req: &Answer) -> Result<IntentRecord> {
        self.authorize(caller, Operation::Approve)?;
        let id = intent_id(&req.intent_id, "intent_id")?;
        let by = req.change.checked(caller)?;
        self.engine.approve(id, by, &req.change.reason).await
    }

    pub async fn reject(&self, caller: &Caller, req: &Answer) -> Result<IntentRecord> {
        self.authorize(caller, Operation::Reject)?;
        let id = intent_id(&req.intent_id, "intent_id")?;
        let by = req.change.checked(caller)?;
        self.engine.reject(id, by, &req.change.reason).await
    }
}
