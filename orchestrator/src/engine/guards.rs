//! The guardrails' state: what decisions take from (budget units, rate-limit cells), kill
//! switches, suppressions, demotions and the circuit breaker's tally. One mutex guards it all,
//! so a decision and what it takes are one step that no concurrent submission can split. Never
//! held across an await. The rules that read and change it are `parapet_policy`'s.

use std::{collections::BTreeSet, time::SystemTime};

use parapet_model::{Decision, Intent};
use parapet_policy::{
    Allowance, Conditions, KillSwitches, Policy, Seen, breaker::Calls, rules::Suppressions,
};

#[derive(Default)]
pub(super) struct Guards {
    pub allowance: Allowance,
    pub kill_switches: KillSwitches,
    /// Detection × target pairs judged false positives, denied for a while.
    pub suppressions: Suppressions,
    /// Detections demoted to approval after too many false positives.
    pub demoted: BTreeSet<String>,
    /// Adapter calls per action kind, for the circuit breaker.
    pub calls: Calls,
}

impl Guards {
    /// Decides an intent at `now` and takes what it uses, by the policy's one decision path.
    pub fn decide(
        &mut self,
        policy: &Policy,
        intent: &Intent,
        now: SystemTime,
        approved: bool,
        ceiling: Option<parapet_policy::Tier>,
    ) -> (Decision, Seen) {
        let conditions = Conditions {
            kill_switches: &self.kill_switches,
            suppressions: &self.suppressions,
            demoted: &self.demoted,
            approved,
            ceiling,
        };
        policy.decide_and_take(intent, now, conditions, &mut self.allowance)
    }

    /// What [`Self::decide`] would answer, taking nothing.
    pub fn what_if(
        &mut self,
        policy: &Policy,
        intent: &Intent,
        now: SystemTime,
        ceiling: Option<parapet_policy::Tier>,
    ) -> Decision {
        let conditions = Conditions {
            kill_switches: &self.kill_switches,
            suppressions: &self.suppressions,
            demoted: &self.demoted,
            approved: false,
            ceiling,
        };
        policy.what_if(intent, now, conditions, &mut self.allowance)
    }
}
