//! Whether detections were right: verdicts on intents, and precision per detection.

use parapet_model::limits;

use super::{Caller, Operation, Result, Service, actor, intent_id, text};
use crate::lifecycle::{IntentRecord, Verdict};

pub struct Judge {
    pub intent_id: String,
    pub verdict: Verdict,
    pub note: String,
    pub requested_by: String,
}

/// One detection × action kind: its verdicts and the tier the policy gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrecisionRow {
    pub detection: String,
    pub action_kind: String,
    pub true_positives: u32,
    pub false_positives: u32,
    /// `auto`, `approval`, `shadow`, `forbidden`, or `unknown detection`.
    pub tier: &'static str,
}

impl Service {
    pub async fn judge(&self, caller: &Caller, req: &Judge) -> Result<IntentRecord> {
        self.authorize(caller, Operation::Judge)?;
        let id = intent_id(&req.intent_id, "intent_id")?;
        let by = actor(caller, &req.requested_by)?;
        text(&req.note, limits::MAX_TEXT_LEN, "note")?;
        self.engine.judge(id, by, req.verdict, &req.note).await
    }

    pub fn precision(&self, caller: &Caller) -> Result<Vec<PrecisionRow>> {
        self.authorize(caller, Operation::Precision)?;
        let policy = self.engine.policy();
        let rows = self
            .engine
            .precision()?
            .into_iter()
            .map(|((detection, kind), p)| {
                let tier = match policy.detections.get(&detection) {
                    None => "unknown detection",
                    Some(d) => kind
                        .parse()
                        .ok()
                        .and_then(|k| d.actions.get(&k).copied())
                        .map_or("forbidden", |t| t.as_str()),
                };
                PrecisionRow {
                    detection,
                    action_kind: kind,
                    true_positives: p.true_positives,
                    false_positives: p.false_positives,
                    tier,
                }
            });
        Ok(rows.collect())
    }
}

/// How many intents one detection sent in a window, by what became of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Volume {
    pub received: u32,
    pub executed: u32,
    pub shadowed: u32,
    pub awaiting_or_approved: u32,
    pub denied: u32,
}

impl Service {
    /// Each detection's intents received since `since`, by outcome (newest first, so only the
    /// window is read).
    pub fn volumes(
        &self,
        caller: &Caller,
        since: std::time::SystemTime,
    ) -> Result<std::collections::BTreeMap<String, Volume>> {
        self.authorize(caller, Operation::Precision)?;
        let mut out: std::collections::BTreeMap<String, Volume> = Default::default();
        for record in self.engine.state().records_newest_first(None) {
            let record = record?;
            if record.intent.received_at < since {
                break;
            }
            let v = out
                .entry(record.intent.detection.rule_id.clone())
                .or_default();
            v.received += 1;
            match record.decision.as_ref().map(|d| d.outcome) {
                Some(parapet_model::Outcome::Execute) => v.executed += 1,
                Some(parapet_model::Outcome::Shadow) => v.shadowed += 1,
                Some(parapet_model::Outcome::AwaitApproval) => v.awaiting_or_approved += 1,
                Some(parapet_model::Outcome::Deny) => v.denied += 1,
                None => {}
            }
        }
        Ok(out)
    }
}
