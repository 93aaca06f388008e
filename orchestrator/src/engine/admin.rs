//! What operators and admins change about Parapet itself: kill switches and the policy.

use std::{sync::Arc, time::SystemTime};

use opentelemetry::{KeyValue, metrics::Meter};
use parapet_model::ActionKind;
use parapet_policy::{Ledger, Policy, Usage, rules::Budget};

use super::{Engine, Error, Result};
use crate::{
    journal::{Entry, Query},
    lifecycle::{Event, IntentEvent, IntentRecord, State, SystemEvent},
};

/// An engaged kill switch and the journal entry that engaged it.
#[derive(Debug, Clone)]
pub struct KillSwitch {
    /// `None` for the global switch.
    pub kind: Option<ActionKind>,
    pub engaged_by: Entry,
}

/// What `parapet status` shows.
#[derive(Debug, Clone)]
pub struct Status {
    pub policy: Arc<Policy>,
    pub kill_switches: Vec<KillSwitch>,
    /// One row per budget and scope value in use; a budget nothing uses has one row of zeros.
    pub budgets: Vec<BudgetRow>,
}

/// A budget's usage in one scope.
#[derive(Debug, Clone)]
pub struct BudgetRow {
    pub budget: Budget,
    pub scope_value: String,
    pub active: u32,
    /// Units taken within the budget's window, if it has one.
    pub used_in_window: Option<u32>,
    /// The active limit its percentage gives with the fleet size, if both are known.
    pub max_from_percent: Option<u64>,
}

impl Engine {
    /// Engages or releases a kill switch, journaled with who and why. Engaging stops new
    /// executions at once; rollbacks still run. Releasing also forgets the circuit breaker's
    /// tally for the kind, so it starts afresh.
    pub async fn set_kill_switch(
        &self,
        kind: Option<ActionKind>,
        engaged: bool,
        actor: &str,
        reason: &str,
    ) -> Result<Vec<KillSwitch>> {
        let _admin = self.inner.admin.lock().await;
        let event = SystemEvent::KillSwitch {
            kind: kind.clone(),
            engaged,
            reason: reason.to_owned(),
        };
        self.inner.store.append_system(actor, event).await?;
        {
            let mut g = self.inner.guards.lock();
            match &kind {
                None => g.kill_switches.global = engaged,
                Some(k) if engaged => {
                    g.kill_switches.kinds.insert(k.clone());
                }
                Some(k) => {
                    g.kill_switches.kinds.remove(k);
                    g.calls.forget(k);
                }
            }
        }
        self.kill_switches()
    }

    /// Demotes a detection's `auto` tiers to `approval`, or restores them; journaled.
    pub async fn set_demoted(
        &self,
        rule: &str,
        demoted: bool,
        actor: &str,
        reason: &str,
    ) -> Result<()> {
        let _admin = self.inner.admin.lock().await;
        // a detection the policy does not know can only be let go of (it may have left the
        // inventory while demoted), never demoted: that would journal a name nobody uses
        let known = self.policy().detections.contains_key(rule)
            || self.inner.guards.lock().demoted.contains(rule);
        if !known {
            return Err(Error::Invalid(parapet_model::Invalid::new(
                "detection",
                format!(
                    "`{}` is not a detection of the policy's inventory, nor demoted",
                    parapet_model::intent::clip(rule)
                ),
            )));
        }
        let event = SystemEvent::DetectionDemoted {
            rule: rule.to_owned(),
            demoted,
            reason: reason.to_owned(),
        };
        self.inner.store.append_system(actor, event).await?;
        let mut g = self.inner.guards.lock();
        if demoted {
            g.demoted.insert(rule.to_owned());
        } else {
            g.demoted.remove(rule);
        }
        Ok(())
    }

    /// Detections demoted to approval.
    pub fn demoted(&self) -> Vec<String> {
        self.inner.guards.lock().demoted.iter().cloned().collect()
    }

    pub fn kill_switches(&self) -> Result<Vec<KillSwitch>> {
        Ok(self
            .inner
            .state
            .kill_switches()?
            .into_iter()
            .map(|(kind, engaged_by)| KillSwitch { kind, engaged_by })
            .collect())
    }

    pub fn status(&self) -> Result<Status> {
        let policy = self.policy();
        let now = self.now();
        let usage: Vec<Usage> = self.inner.guards.lock().allowance.ledger.usage();
        let mut budgets = Vec::new();
        for budget in &policy.budgets {
            let mut rows: Vec<(String, u32, Vec<SystemTime>)> = usage
                .iter()
                .filter(|u| u.budget == budget.name)
                .map(|u| (u.scope.clone(), u.active, u.taken.clone()))
                .collect();
            if rows.is_empty() {
                rows.push((String::new(), 0, Vec::new()));
            }
            for (scope_value, active, taken) in rows {
                let used_in_window = budget.window.as_ref().map(|w| {
                    let since = now.checked_sub(w.0).unwrap_or(SystemTime::UNIX_EPOCH);
                    taken.iter().filter(|t| **t >= since).count() as u32
                });
                let max_from_percent = budget.max_active_percent.and_then(|pct| {
                    let size = policy.fleet.size(&budget.scope, &scope_value)?;
                    Some((pct / 100.0 * size as f64).floor() as u64)
                });
                budgets.push(BudgetRow {
                    budget: budget.clone(),
                    scope_value,
                    active,
                    used_in_window,
                    max_from_percent,
                });
            }
        }
        Ok(Status {
            policy,
            kill_switches: self.kill_switches()?,
            budgets,
        })
    }

    /// Reads the policy file again. A valid policy applies to intents decided from now on; an
    /// invalid one is refused and the one in effect stays. Both are journaled.
    pub async fn reload_policy(&self, actor: &str) -> Result<(String, String)> {
        let _admin = self.inner.admin.lock().await;
        let Some(path) = self.inner.config.policy_path.clone() else {
            return Err(Error::FailedPrecondition(
                "Parapet runs on the built-in example policy; start it with --policy to reload one"
                    .into(),
            ));
        };
        let origin = path.display().to_string();
        let loaded = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read `{origin}`: {e}"))
            .and_then(|text| Policy::from_toml(&text).map_err(|e| format!("{origin}: {e}")))
            .and_then(|p| {
                p.check_adapters(|k, route| self.inner.registry.resolve(k, route).map(drop))
                    .map(|()| p)
                    .map_err(|e| format!("{origin}: {e}"))
            });
        let policy = match loaded {
            Ok(p) => p,
            Err(error) => {
                let refused = SystemEvent::PolicyRefused {
                    origin,
                    error: error.clone(),
                };
                self.inner.store.append_system(actor, refused).await?;
                return Err(Error::FailedPrecondition(format!(
                    "policy refused, the previous one stays: {error}"
                )));
            }
        };
        let previous = self.policy().digest().to_owned();
        let policy = policy.with_own_addresses(self.policy().own.clone());
        let event = SystemEvent::PolicyLoaded {
            digest: policy.digest().to_owned(),
            origin,
        };
        self.inner.store.append_system(actor, event).await?;
        let policy = Arc::new(policy);
        *self.inner.policy.write() = policy.clone();
        self.restore_guards(&policy, |_| {})?;
        tracing::info!(digest = policy.digest(), "policy reloaded");
        Ok((previous, policy.digest().to_owned()))
    }

    /// Rebuilds the guardrails' state from the journal, with decisions held meanwhile: kill
    /// switches, rate limiters, and
    /// budget usage (active holders, and what was taken within the longest budget window).
    /// Units count from when the intent was decided, as they did when it was.
    /// Never reset by a restart: what the journal says was used stays used. `each` sees every
    /// live intent's record as it is read, one at a time (start-up resumes them); returns how
    /// many there were.
    pub(super) fn restore_guards(
        &self,
        policy: &Policy,
        mut each: impl FnMut(&IntentRecord),
    ) -> Result<usize> {
        // Held while the journal is read and until the new state is in place: a decision
        // made meanwhile would reserve in the state about to be replaced, and an intent ending
        // meanwhile would release there, so the new state would miss the one and keep the
        // other. Ends free their units after their journal write, so each lands before the
        // read (and is not counted) or after the swap (and is released from the new state).
        let mut g = self.inner.guards.lock();
        let index = &self.inner.state;
        let now = self.now();
        let mut ledger = Ledger::default();
        let mut live = std::collections::HashSet::new();
        for r in index.live_records() {
            let r = r?;
            let holds = matches!(
                r.state,
                State::Decided
                    | State::Executing
                    | State::Active
                    | State::Expiring
                    | State::RollingBack
            );
            if holds {
                let at = r.intent.received_at;
                let until = r
                    .expires_at
                    .or_else(|| parapet_policy::allowance::ends(&r.intent, at));
                ledger.reserve(r.intent.id, at, until, &policy.claims(&r.intent.steps));
            }
            live.insert(r.intent.id);
            each(&r);
        }
        let window = policy.longest_window();
        if !window.is_zero() {
            let since = now.checked_sub(window).unwrap_or(SystemTime::UNIX_EPOCH);
            let q = Query {
                since: Some(since),
                limit: usize::MAX,
                ..Query::default()
            };
            for entry in index.query(&q)? {
                let (Some(id), Event::Intent(IntentEvent::Decided { decision, .. })) =
                    (entry.intent_id, &entry.event)
                else {
                    continue;
                };
                if decision.outcome != parapet_model::Outcome::Execute || live.contains(&id) {
                    continue;
                }
                if let Some(r) = index.record(id)? {
                    ledger.record_taken(r.intent.received_at, &policy.claims(&r.intent.steps));
                }
            }
            ledger.prune(since);
        }
        let mut kill_switches = parapet_policy::KillSwitches::default();
        for (kind, _) in index.kill_switches()? {
            match kind {
                None => kill_switches.global = true,
                Some(k) => {
                    kill_switches.kinds.insert(k);
                }
            }
        }
        let mut suppressions = parapet_policy::rules::Suppressions::default();
        for s in index.suppressions()? {
            if s.until > now {
                let until = parapet_policy::rules::Suppression {
                    until: s.until,
                    by: s.by,
                };
                suppressions.insert_target(&s.rule, &s.target_kind, &s.target_id, until);
            }
        }
        g.demoted = index.demoted()?.into_iter().collect();
        g.allowance = parapet_policy::Allowance {
            ledger,
            ..Default::default()
        };
        g.kill_switches = kill_switches;
        g.suppressions = suppressions;
        Ok(live.len())
    }
}

impl BudgetRow {
    /// A budget row's limit on what is active at once: `max_active`, or its percentage of the
    /// fleet, whichever is lower.
    pub fn active_limit(&self) -> Option<u64> {
        let row = self;
        let b = &row.budget;
        b.max_active
            .map(u64::from)
            .into_iter()
            .chain(row.max_from_percent)
            .min()
    }

    /// The fullest of a budget row's limits, from 0 to 1.
    pub fn utilisation(&self) -> Option<f64> {
        let row = self;
        let b = &row.budget;
        let shares = [
            row.active_limit()
                .map(|l| f64::from(row.active) / (l.max(1) as f64)),
            b.max_per_window
                .zip(row.used_in_window)
                .map(|(max, used)| f64::from(used) / f64::from(max.max(1))),
        ];
        shares.into_iter().flatten().reduce(f64::max)
    }
}

impl Engine {
    /// Levels read from the engine when metrics are collected. Holds the engine weakly, so
    /// the engine can stop.
    pub fn observe(&self, meter: &Meter) {
        let weak = self.downgrade();
        let budgets = weak.clone();
        meter
            .u64_observable_gauge("parapet_budget_active")
            .with_description("Units of each budget held by active intents, per scope value; `limit` is max_active")
            .with_callback(move |o| {
                let Some(engine) = Engine::upgrade(&budgets) else { return };
                let Ok(status) = engine.status() else { return };
                for row in &status.budgets {
                    let mut labels = vec![
                        KeyValue::new("budget", row.budget.name.clone()),
                        KeyValue::new("scope", row.budget.scope.clone()),
                        KeyValue::new("scope_value", row.scope_value.clone()),
                    ];
                    if let Some(limit) = row.active_limit() {
                        labels.push(KeyValue::new("limit", limit as i64));
                    }
                    o.observe(u64::from(row.active), &labels);
                }
            })
            .build();
        let usage = weak.clone();
        meter
            .f64_observable_gauge("parapet_budget_utilisation")
            .with_description("The fullest of each budget's limits per scope value, from 0 to 1: active against max_active (or its percentage of the fleet), taken in the window against max_per_window")
            .with_callback(move |o| {
                let Some(engine) = Engine::upgrade(&usage) else { return };
                let Ok(status) = engine.status() else { return };
                for row in &status.budgets {
                    let labels = [
                        KeyValue::new("budget", row.budget.name.clone()),
                        KeyValue::new("scope_value", row.scope_value.clone()),
                    ];
                    if let Some(share) = row.utilisation() {
                        o.observe(share, &labels);
                    }
                }
            })
            .build();
        let pending = weak.clone();
        meter
            .u64_observable_gauge("parapet_pending_approvals")
            .with_description("Intents waiting for approval")
            .with_callback(move |o| {
                if let Some(engine) = Engine::upgrade(&pending)
                    && let Ok((count, _)) = engine.pending_summary()
                {
                    o.observe(count, &[]);
                }
            })
            .build();
        let oldest = weak.clone();
        meter
            .f64_observable_gauge("parapet_pending_approval_oldest_age")
            .with_unit("s")
            .with_description(
                "How long the oldest intent waiting for approval has waited (0 when none waits)",
            )
            .with_callback(move |o| {
                if let Some(engine) = Engine::upgrade(&oldest)
                    && let Ok((_, since)) = engine.pending_summary()
                {
                    let age = since
                        .and_then(|t| engine.clock_now().duration_since(t).ok())
                        .unwrap_or_default();
                    o.observe(age.as_secs_f64(), &[]);
                }
            })
            .build();
        let switches = weak.clone();
        meter
            .u64_observable_gauge("parapet_kill_switch_engaged")
            .with_description("1 for each engaged kill switch, by action kind (`*` for the global one); 0 for `*` when none is")
            .with_callback(move |o| {
                let Some(engine) = Engine::upgrade(&switches) else { return };
                let Ok(status) = engine.status() else { return };
                let global = status.kill_switches.iter().any(|k| k.kind.is_none());
                o.observe(u64::from(global), &[KeyValue::new("kind", "*")]);
                for k in status.kill_switches.iter().filter_map(|k| k.kind.as_ref()) {
                    o.observe(1, &[KeyValue::new("kind", k.to_string())]);
                }
            })
            .build();
        let active = weak;
        meter
            .u64_observable_gauge("parapet_active_intents")
            .with_description(
                "Intents whose actions are in force, by action kind of their first step",
            )
            .with_callback(move |o| {
                let Some(engine) = Engine::upgrade(&active) else {
                    return;
                };
                let Ok(by_kind) = engine.active_by_kind() else {
                    return;
                };
                for (kind, n) in by_kind {
                    o.observe(n, &[KeyValue::new("kind", kind)]);
                }
            })
            .build();
    }
}
