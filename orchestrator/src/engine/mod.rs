//! The lifecycle, driven: what happens to an intent after the API hands it over.
//!
//! Every change goes through the journal first ([`Journal::append`] checks it against the state
//! machine and makes it durable); only then does the engine act on it. Work on one intent is
//! serialised by a per-intent lock, so an operator's rollback waits for an execution in progress
//! instead of racing it. Background work (executions, rollbacks, the TTL timer) is tracked so a
//! shutdown can let it finish; shutdown itself never rolls anything back.
//!
//! # Layout
//! - [`submit`](Engine::submit): decide, journal, start execution; idempotency and TTL extension.
//! - `execute`: run the steps in order, compensate in reverse if one fails, undo on request.
//! - `rollback`: operator rollbacks and TTL expiry, with the durable timer.
//! - `recover`: on start, resume whatever the journal shows in flight; rebuild budget usage.
//! - `admin`: kill switches, policy reload, status.
//! - `approvals`: approve, reject, verdicts, suppression, precision.
//! - `bulk`: rollback of everything a filter matches, resumed after a restart.
//! - `guards`: the guardrails' state (budgets, kill switches, rate limiters, breaker tally).

mod admin;
mod approvals;
mod bulk;
mod execute;
mod guards;
mod limits;
mod recover;
pub mod replay;
mod rollback;
mod submit;

use std::{sync::Arc, time::Duration};

use parapet_actions::Registry;
use parapet_model::IntentId;
use parapet_policy::Policy;
use tokio::sync::{broadcast::error::RecvError, mpsc};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    clock::SharedClock,
    journal::retention::{Compaction, Retention},
    lifecycle::{IntentRecord, State, SystemEvent},
    store::{self, Store},
};

pub use admin::{BudgetRow, KillSwitch, Status};
pub use approvals::Precision;
pub use bulk::{BulkRollback, Progress};
pub use limits::{RequestLimits, WatchPermit};
pub use rollback::RolledBack;
pub use submit::Submitted;

/// The name the engine journals its own actions under (timers, recovery, compensation).
pub const SYSTEM_ACTOR: &str = "parapet";

pub use crate::error::{Error, Result};

/// Settings of the engine itself.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// How long one adapter call may take before it counts as failed.
    pub adapter_timeout: Duration,
    /// Where the policy came from, to reload it; `None` for the built-in example.
    pub policy_path: Option<std::path::PathBuf>,
    /// Where escalations of pending approvals are posted.
    pub approvals_webhook: Option<String>,
    /// When old journal entries go, and how often that is checked.
    pub retention: Retention,
    pub compact_every: Duration,
    /// Where metrics go; nowhere when unset.
    pub meter: Option<opentelemetry::metrics::Meter>,
    /// What one caller may hold or have journaled.
    pub limits: RequestLimits,
    /// Sources held to less autonomy than the policy's tiers (their identities' `max_tier`).
    pub ceilings: std::collections::BTreeMap<String, parapet_policy::Tier>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            adapter_timeout: Duration::from_secs(30),
            policy_path: None,
            approvals_webhook: None,
            retention: Retention::default(),
            compact_every: Duration::from_secs(3600),
            meter: None,
            limits: RequestLimits::default(),
            ceilings: Default::default(),
        }
    }
}

/// The engine; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

pub struct Inner {
    metrics: crate::telemetry::Metrics,
    store: Arc<dyn Store>,
    /// The store's derived state.
    state: Arc<dyn store::State>,
    /// Who holds which work, and the name this engine claims work under.
    leases: Arc<dyn store::Leases>,
    holder: String,
    /// Swapped whole on reload; a decision uses the one it started with.
    policy: parking_lot::RwLock<Arc<Policy>>,
    /// Sources held to less autonomy (`EngineConfig::ceilings`), swapped whole when the
    /// identities change.
    ceilings: parking_lot::RwLock<Arc<std::collections::BTreeMap<String, parapet_policy::Tier>>>,
    guards: parking_lot::Mutex<guards::Guards>,
    limits: limits::Limits,
    /// Serialises kill-switch changes and reloads, so journal order and memory agree.
    admin: tokio::sync::Mutex<()>,
    registry: Registry,
    clock: SharedClock,
    config: EngineConfig,
    locks: Arc<parapet_actions::locks::KeyedLocks<IntentId>>,
    /// Deadlines for the timer task.
    timers: mpsc::UnboundedSender<(std::time::SystemTime, rollback::Deadline)>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
    /// Cancelled when a stop has waited long enough: work still in flight is dropped where it
    /// stands (the journal shows it in flight; the next start resumes it).
    abandon: CancellationToken,
}

impl Engine {
    /// Starts the engine over an opened journal: the policy in effect is journaled, budget
    /// usage and kill switches are rebuilt from the journal, the TTL timer runs, and whatever
    /// the journal shows in flight is resumed.
    /// Sources held to less autonomy than the policy's tiers.
    pub fn ceilings(&self) -> Arc<std::collections::BTreeMap<String, parapet_policy::Tier>> {
        self.inner.ceilings.read().clone()
    }

    /// New ceilings (the token file changed): decisions from now on are held to them.
    pub fn set_ceilings(&self, ceilings: std::collections::BTreeMap<String, parapet_policy::Tier>) {
        *self.inner.ceilings.write() = Arc::new(ceilings);
    }

    pub async fn start(
        store: Arc<dyn Store>,
        policy: Arc<Policy>,
        registry: Registry,
        clock: SharedClock,
        config: EngineConfig,
    ) -> Result<Self> {
        let (timers, timer_rx) = mpsc::unbounded_channel();
        let meter = config
            .meter
            .clone()
            .unwrap_or_else(|| opentelemetry::global::meter("parapet"));
        let metrics = crate::telemetry::Metrics::new(&meter);
        store.observe(Arc::new(metrics.clone()));
        let engine = Self {
            inner: Arc::new(Inner {
                metrics,
                state: store.state(),
                leases: store.leases(),
                holder: format!("parapet-{}", uuid::Uuid::now_v7()),
                store,
                policy: parking_lot::RwLock::new(policy),
                ceilings: parking_lot::RwLock::new(Arc::new(config.ceilings.clone())),
                guards: parking_lot::Mutex::default(),
                limits: limits::Limits::new(config.limits, clock.clone()),
                admin: tokio::sync::Mutex::new(()),
                registry,
                clock,
                config,
                locks: Arc::default(),
                timers,
                tasks: TaskTracker::new(),
                shutdown: CancellationToken::new(),
                abandon: CancellationToken::new(),
            }),
        };
        let timer = engine.clone();
        engine
            .inner
            .tasks
            .spawn(async move { timer.run_timers(timer_rx).await });
        let origin = match &engine.inner.config.policy_path {
            Some(path) => path.display().to_string(),
            None => "built-in example".to_owned(),
        };
        let loaded = SystemEvent::PolicyLoaded {
            digest: engine.policy().digest().to_owned(),
            origin,
        };
        engine
            .inner
            .store
            .append_system(SYSTEM_ACTOR, loaded)
            .await?;
        // every intent not yet ended, read once, one at a time, for both; nothing is resumed
        // before the guardrails stand
        let reading = std::time::Instant::now();
        let mut found = recover::Recovered::default();
        let live = engine.restore_guards(&engine.policy(), |r| engine.recover(r, &mut found))?;
        tracing::info!(
            live,
            resumed = found.resumed(),
            timers = found.timers(),
            ms = reading.elapsed().as_millis() as u64,
            "live intents read: guardrails rebuilt"
        );
        engine.resume_all(found);
        engine.resume_bulk()?;
        // demotion as the rule stands now, and its timers again
        let judged: std::collections::BTreeSet<String> = engine
            .inner
            .state
            .judgements()?
            .into_iter()
            .map(|(rule, _)| rule)
            .collect();
        let now = engine.now();
        for rule in judged {
            engine.consider_demotion(&rule, now).await?;
        }
        if !engine.inner.config.retention.keeps_everything() {
            let compactor = engine.clone();
            engine
                .inner
                .tasks
                .spawn(async move { compactor.run_retention().await });
        }
        Ok(engine)
    }

    /// Applies the retention policy now; `None` when nothing may go yet.
    pub async fn compact_journal(&self, actor: &str) -> Result<Option<Compaction>> {
        let rules = self.inner.config.retention;
        if rules.keeps_everything() {
            return Err(Error::FailedPrecondition(
                "no retention is configured ([journal] max_age or max_bytes): the journal keeps everything".into(),
            ));
        }
        Ok(self.inner.store.compact(rules, self.now(), actor).await?)
    }

    /// Compacts the journal every `compact_every`, starting now.
    async fn run_retention(&self) {
        loop {
            if let Err(e) = self.compact_journal(SYSTEM_ACTOR).await {
                tracing::error!(error = %e, "journal retention failed");
            }
            let next = self.now() + self.inner.config.compact_every;
            tokio::select! {
                () = self.inner.clock.sleep_until(next) => {}
                () = self.inner.shutdown.cancelled() => return,
            }
        }
    }

    /// The journal of record.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The state derived from the journal.
    pub fn state(&self) -> &Arc<dyn store::State> {
        &self.inner.state
    }

    pub fn metrics(&self) -> &crate::telemetry::Metrics {
        &self.inner.metrics
    }

    /// A place for one more `Watch` stream of `who` (an identity, or a peer), counted as a
    /// refused call when there is none.
    pub fn watch_permit(&self, who: &str) -> Result<WatchPermit> {
        self.inner.limits.watch(who).inspect_err(|_| {
            self.inner
                .metrics
                .refused_call("ResourceExhausted", "watch_limit");
        })
    }

    /// The engine's state, for observers that must not keep it alive.
    pub fn downgrade(&self) -> std::sync::Weak<Inner> {
        Arc::downgrade(&self.inner)
    }

    pub fn upgrade(weak: &std::sync::Weak<Inner>) -> Option<Self> {
        weak.upgrade().map(|inner| Self { inner })
    }

    /// The engine's clock.
    pub fn clock_now(&self) -> std::time::SystemTime {
        self.inner.clock.now()
    }

    /// Intents whose actions are in force, by the action kind of their first step.
    pub fn active_by_kind(&self) -> Result<std::collections::BTreeMap<String, u64>> {
        let mut out = std::collections::BTreeMap::new();
        for ((state, kind), n) in self.inner.state.tally()? {
            if state == State::Active && !kind.is_empty() {
                *out.entry(kind).or_insert(0) += n;
            }
        }
        Ok(out)
    }

    /// The policy in effect.
    pub fn policy(&self) -> Arc<Policy> {
        self.inner.policy.read().clone()
    }

    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// Cancelled when the server stops; long-lived streams end on it.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.inner.shutdown.clone()
    }

    pub fn record(&self, id: IntentId) -> Result<IntentRecord> {
        self.inner.state.record(id)?.ok_or_else(|| Error::NotFound {
            what: "intent",
            name: id.to_string(),
        })
    }

    /// Stops the timer and waits for executions and rollbacks in progress to finish. Nothing is
    /// rolled back because of the shutdown.
    /// Stops: new work is refused, adapter calls are not retried, and what is in flight gets
    /// the adapter timeout, once, in all, to finish; what has not by then is dropped where it
    /// stands, for the next start to resume from the journal.
    pub async fn stop(&self) {
        self.inner.shutdown.cancel();
        self.inner.tasks.close();
        let grace = self.inner.config.adapter_timeout;
        if tokio::time::timeout(grace, self.inner.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                tasks = self.inner.tasks.len(),
                "work still in flight after {}; it resumes on the next start",
                humantime::format_duration(grace)
            );
            self.inner.abandon.cancel();
            self.inner.tasks.wait().await;
        }
    }

    /// Waits until the intent is not in the middle of something (executing, rolling back).
    pub async fn wait_settled(&self, id: IntentId) -> Result<IntentRecord> {
        let mut changes = self.inner.store.subscribe();
        loop {
            let record = self.record(id)?;
            if !in_progress(record.state) {
                return Ok(record);
            }
            loop {
                tokio::select! {
                    change = changes.recv() => match change {
                        Ok(c) if c.entry.intent_id != Some(id) => continue,
                        Ok(_) | Err(RecvError::Lagged(_)) => break,
                        Err(RecvError::Closed) => return Err(Error::ShuttingDown),
                    },
                    () = self.inner.shutdown.cancelled() => return Err(Error::ShuttingDown),
                }
            }
        }
    }

    /// Runs work in the background, tracked so a shutdown waits for it. The work goes on if
    /// whoever awaits the handle goes away (a client that disconnects mid-`wait`).
    fn spawn<F>(&self, work: F) -> tokio::task::JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let abandon = self.inner.abandon.clone();
        self.inner.tasks.spawn(async move {
            tokio::select! {
                () = work => {}
                () = abandon.cancelled() => {}
            }
        })
    }
}

/// States that move on by themselves, without anyone asking.
fn in_progress(state: State) -> bool {
    matches!(
        state,
        State::Received | State::Decided | State::Executing | State::Expiring | State::RollingBack
    )
}

#[cfg(test)]
mod tests;
