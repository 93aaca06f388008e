//! Decisions as enforcement points read them: every address an active intent blocks, on the
//! lists its action kinds publish to, and what changed after a point in the journal. CrowdSec's
//! bouncers read these ([`super::bouncers`]).

use std::{
    collections::{BTreeMap, BTreeSet},
    time::SystemTime,
};

use ipnet::IpNet;
use parapet_model::{ActionKind, IntentId};

use super::{Result, Service};
use crate::lifecycle::{IntentRecord, State};

/// One address an active intent blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The intent's number (the journal entry that received it) × 16 + the step: stable, and
    /// an integer.
    pub id: u64,
    pub intent: IntentId,
    /// The list the step's action kind publishes to (`block`).
    pub list: String,
    pub net: IpNet,
    /// The detection that asked for it.
    pub scenario: String,
    /// When its TTL ends it; never, without one.
    pub until: Option<SystemTime>,
}

/// What changed on some lists after a point in the journal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    pub new: Vec<Decision>,
    pub deleted: Vec<Decision>,
    /// The journal position read through: the next read goes on from here.
    pub through: u64,
}

/// Which lists each action kind publishes to (`[edl.lists]`).
pub type Lists = BTreeMap<ActionKind, String>;

impl Service {
    /// Every decision in force on `lists`, and the journal position it was read at.
    pub fn decisions_in_force(
        &self,
        lists: &Lists,
        wanted: &BTreeSet<String>,
    ) -> Result<(Vec<Decision>, u64)> {
        let state = self.engine.state().clone();
        let through = state.applied_seq()?;
        let mut out = Vec::new();
        for record in state.live_records() {
            let record = record?;
            if record.state == State::Active {
                out.extend(self.decisions_of(&record, lists, wanted)?);
            }
        }
        out.sort_by_key(|d| d.id);
        Ok((out, through))
    }

    /// What changed on `lists` after journal position `after`: intents activated since (and
    /// still in force), intents whose rollback began since (unless activated since too, so
    /// never announced), intents whose TTL moved (announced again, deleted then new).
    pub fn decision_changes(
        &self,
        lists: &Lists,
        wanted: &BTreeSet<String>,
        after: u64,
    ) -> Result<Changes> {
        let state = self.engine.state().clone();
        let mut activated = BTreeSet::new();
        let mut ended = BTreeSet::new();
        let mut extended = BTreeSet::new();
        let mut through = after;
        for entry in state.entries(after) {
            let entry = entry?;
            through = entry.seq;
            let Some(id) = entry.intent_id else { continue };
            match entry.event.kind() {
                "activated" => {
                    activated.insert(id);
                }
                "ttl_extended" => {
                    extended.insert(id);
                }
                "rollback_started" | "rolled_back" | "failed" => {
                    ended.insert(id);
                }
                _ => {}
            }
        }
        let mut changes = Changes {
            through,
            ..Changes::default()
        };
        for id in ended.iter().filter(|id| !activated.contains(*id)) {
            if let Some(record) = state.record(*id)? {
                changes
                    .deleted
                    .extend(self.decisions_of(&record, lists, wanted)?);
            }
        }
        for id in activated.union(&extended) {
            let Some(record) = state.record(*id)? else {
                continue;
            };
            if record.state != State::Active {
                continue;
            }
            let decisions = self.decisions_of(&record, lists, wanted)?;
            if !activated.contains(id) {
                // a new TTL: a bouncer that keeps the old timeout would drop it early
                changes.deleted.extend(decisions.iter().cloned());
            }
            changes.new.extend(decisions);
        }
        changes.new.sort_by_key(|d| d.id);
        changes.deleted.sort_by_key(|d| d.id);
        Ok(changes)
    }

    /// The decisions of one intent's steps whose kinds publish to a wanted list.
    fn decisions_of(
        &self,
        record: &IntentRecord,
        lists: &Lists,
        wanted: &BTreeSet<String>,
    ) -> Result<Vec<Decision>> {
        let mut out = Vec::new();
        let mut number = None;
        for (i, step) in record.intent.steps.iter().enumerate() {
            let Some(list) = lists.get(&step.kind).filter(|l| wanted.contains(*l)) else {
                continue;
            };
            let Ok(net) = parapet_actions::address::address(step) else {
                continue;
            };
            let number = match number {
                Some(n) => n,
                None => *number.insert(self.received_seq(record.intent.id)?),
            };
            out.push(Decision {
                id: number * 16 + i as u64,
                intent: record.intent.id,
                list: list.clone(),
                net,
                scenario: record.intent.detection.rule_id.clone(),
                until: record.expires_at,
            });
        }
        Ok(out)
    }
}
