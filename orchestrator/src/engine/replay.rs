//! What-if: the journaled intents decided again under another policy.
//!
//! The walk goes through the whole journal in order. Before `since` it only follows what really
//! happened, so the budgets and rate limits stand at `since` as they really did, counted under
//! the new policy's rules. From `since` on, each intent is decided again with what its decision
//! saw (kill switches, suppressions, demotion, approval, from the journaled [`Seen`]) and with
//! budgets and rate limits kept by the walk itself under the new policy: an intent the new
//! policy lets act holds its budget until it really ended, or, if it never really acted, until
//! its TTL would have passed.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    io,
    time::SystemTime,
};

use parapet_model::{Decision, Intent, IntentId, Outcome};
use parapet_policy::{Allowance, Policy, allowance::ends};

use crate::{
    lifecycle::{Event, IntentEvent},
    store::State,
};

/// One intent whose decision would change.
#[derive(Debug, Clone)]
pub struct Changed {
    pub intent: Intent,
    pub seq: u64,
    pub before: Decision,
    pub after: Decision,
}

#[derive(Debug, Clone, Default)]
pub struct Replay {
    /// Intents decided again.
    pub decided: u64,
    /// How many went from one outcome to another (same outcome included).
    pub outcomes: BTreeMap<(Outcome, Outcome), u64>,
    pub changed: Vec<Changed>,
}

/// Decides again, under `policy`, every intent received in `[since, until)`, each source held
/// to its ceiling as it is now.
pub fn replay(
    index: &dyn State,
    policy: &Policy,
    since: SystemTime,
    until: Option<SystemTime>,
    ceilings: &std::collections::BTreeMap<String, parapet_policy::Tier>,
) -> io::Result<Replay> {
    let mut allowance = Allowance::default();
    let mut out = Replay::default();
    let mut received: HashMap<IntentId, Intent> = HashMap::new();
    // intents the walk holds budget for that never really acted: released when the TTL passes
    let mut expiries: BTreeSet<(SystemTime, IntentId)> = BTreeSet::new();
    // what the walk decided for intents that may still be approved
    let mut waiting: HashMap<IntentId, Intent> = HashMap::new();
    for entry in index.entries(index.first_seq()?.saturating_sub(1)) {
        let entry = entry?;
        if until.is_some_and(|u| entry.time >= u) {
            break;
        }
        while let Some(&(at, id)) = expiries.first()
            && at <= entry.time
        {
            allowance.ledger.release(id);
            expiries.pop_first();
        }
        let Some(id) = entry.intent_id else { continue };
        match entry.event {
            Event::Intent(IntentEvent::Received { intent }) => {
                received.insert(id, intent);
            }
            Event::Intent(IntentEvent::Decided { decision, seen }) => {
                let Some(intent) = received.remove(&id) else {
                    continue;
                };
                if entry.time < since {
                    if decision.outcome == Outcome::Execute {
                        // it took rate-limit cells and budget units, as it really did
                        allowance.take(policy, &intent, seen.now);
                    } else if decision.outcome == Outcome::AwaitApproval {
                        waiting.insert(id, intent);
                    }
                    continue;
                }
                let state = seen.state(&intent.detection, &intent.steps);
                let (after, _) = policy.decide_and_take(
                    &intent,
                    seen.now,
                    state.conditions(&seen, ceilings.get(&intent.source).copied()),
                    &mut allowance,
                );
                // one that never really acted holds until its TTL (without one, for good)
                if after.outcome == Outcome::Execute
                    && decision.outcome != Outcome::Execute
                    && let Some(end) = ends(&intent, seen.now)
                {
                    expiries.insert((end, id));
                }
                out.decided += 1;
                *out.outcomes
                    .entry((decision.outcome, after.outcome))
                    .or_default() += 1;
                let waits = after.outcome == Outcome::AwaitApproval;
                if after.outcome != decision.outcome {
                    out.changed.push(Changed {
                        intent: intent.clone(),
                        seq: entry.seq,
                        before: decision,
                        after,
                    });
                }
                if waits {
                    waiting.insert(id, intent);
                }
            }
            // an approval that really came would come under the new policy too, if it waits
            Event::Intent(IntentEvent::Approved { seen, .. }) => {
                if let Some(intent) = waiting.remove(&id) {
                    allowance.take(policy, &intent, seen.now);
                }
            }
            Event::Intent(IntentEvent::RolledBack)
            | Event::Intent(IntentEvent::Failed { .. })
            | Event::Intent(IntentEvent::RollbackFailed { .. }) => {
                allowance.ledger.release(id);
                waiting.remove(&id);
            }
            Event::Intent(IntentEvent::Rejected { .. }) => {
                waiting.remove(&id);
            }
            _ => {}
        }
    }
    Ok(out)
}
