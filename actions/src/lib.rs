//! Parapet's adapters: code that performs an action kind against a real system and can undo it.
//!
//! An [`Adapter`] executes one step of an intent and returns a handle that is everything needed to
//! undo it later, even after a restart: the orchestrator journals the handle before it trusts it.
//! The typed trait is what adapter authors implement; [`DynAdapter`] is its object-safe twin that
//! the [`Registry`] stores, with handles serialised to JSON so they can be journaled.
//!
//! This crate knows nothing of gRPC or the journal.
//!
//! # Layout
//! - [`registry`]: adapter instances by name, and the routes that pick them for a kind.
//! - [`config`]: instances as the config file declares them.
//! - `conformance` (feature `conformance`): the kit every adapter passes (`CONFORMANCE.md`).
//! - [`holds`]: which intent steps hold which entry, durably, so two intents on one thing do
//!   not undo each other.
//! - [`edl`]: External Dynamic Lists served over HTTP, the safe default adapter.

#![forbid(unsafe_code)]

use std::{future::Future, pin::Pin, time::Duration};

use parapet_model::{ActionKind, IntentId, Invalid, Step, intent::Field};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

pub mod address;
pub mod config;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod edl;
pub mod exec;
pub mod falcon;
pub mod holds;
pub mod http;
pub mod ldap;
pub mod locks;
pub mod nftables;
pub mod registry;
pub mod secret;
pub mod settings;
pub mod webhook;

pub use registry::Registry;

/// One step to perform, with the identity that makes repeating it safe.
#[derive(Debug, Clone, Copy)]
pub struct Action<'a> {
    pub intent_id: IntentId,
    pub step_index: u32,
    pub step: &'a Step,
    /// How long the action is meant to last, for systems that can expire entries themselves.
    pub ttl: Option<Duration>,
}

impl Action<'_> {
    /// A name for this step of this intent, unique and stable across retries and restarts:
    /// adapters use it so that executing the same step twice acts once.
    pub fn holder(&self) -> String {
        format!("{}/{}", self.intent_id, self.step_index)
    }
}

/// What an adapter returned on success, in the form the journal keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackHandle {
    /// The adapter that can undo the action.
    pub adapter: String,
    /// The adapter's own handle, as JSON.
    pub data: String,
}

impl RollbackHandle {
    /// The instances that acted, for people: a fan-out's members, comma-separated.
    pub fn acted_by(&self) -> String {
        if self.adapter != registry::FANOUT {
            return self.adapter.clone();
        }
        serde_json::from_str::<Vec<RollbackHandle>>(&self.data)
            .map(|members| {
                members
                    .iter()
                    .map(RollbackHandle::acted_by)
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_else(|_| self.adapter.clone())
    }
}

/// Whether trying the same call again can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    /// The system was unreachable, busy or slow: a retry may succeed.
    Transient,
    /// The request itself cannot succeed (refused, malformed, misconfigured).
    Permanent,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
}

impl Error {
    pub fn transient(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Transient,
            message: message.into(),
        }
    }

    /// The same error with every secret blotted out, in any form: for messages that quote a
    /// remote system, which may echo a credential back.
    #[must_use]
    pub fn redacted(mut self, secrets: &secret::Secrets) -> Self {
        self.message = secrets.redact(&self.message);
        self
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Permanent,
            message: message.into(),
        }
    }

    pub fn retryable(&self) -> bool {
        match self.kind {
            ErrorKind::Transient => true,
            ErrorKind::Permanent => false,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Performs action kinds against one system. Implement this; the registry stores its
/// object-safe twin, [`DynAdapter`], which every `Adapter` is.
pub trait Adapter: Send + Sync + 'static {
    /// Everything needed to undo one execution, even from another process.
    type Handle: Serialize + DeserializeOwned + Send;

    /// The adapter's name, recorded in rollback handles.
    fn name(&self) -> &str;

    /// The action kinds this adapter performs.
    fn kinds(&self) -> Vec<ActionKind>;

    /// The fields of `step` this adapter acts on as addresses (the id of an `ip` target, a
    /// host's `ip` attribute). Each must hold an address, or the step is refused at
    /// submission; the guardrails judge every address a target names, in the canonical form
    /// the adapter then reads. An adapter that acts on addresses must declare them here.
    fn addresses(&self, step: &Step) -> Vec<Field> {
        let _ = step;
        Vec::new()
    }

    /// Refuses a step this adapter could never perform (a malformed address, a wrong target
    /// kind), naming the field, before anything is recorded. No I/O.
    fn validate(&self, step: &Step) -> Result<(), Invalid>;

    /// Performs the step. Executing the same [`Action::holder`] twice must act once.
    fn execute(&self, action: Action<'_>) -> impl Future<Output = Result<Self::Handle>> + Send;

    /// Undoes an execution. Undoing what is already undone succeeds without effect.
    fn rollback(&self, handle: Self::Handle) -> impl Future<Output = Result<()>> + Send;

    /// The intent's TTL was extended to `ttl` from now: a system that expires the action by
    /// itself (a kernel timeout) must keep it that long. Most systems keep nothing to extend.
    fn extend(
        &self,
        handle: Self::Handle,
        ttl: Duration,
    ) -> impl Future<Output = Result<()>> + Send {
        let _ = (handle, ttl);
        async { Ok(()) }
    }
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The object-safe twin of [`Adapter`], with handles in their journaled form.
pub trait DynAdapter: Send + Sync + 'static {
    fn name(&self) -> &str;
    fn kinds(&self) -> Vec<ActionKind>;
    fn addresses(&self, step: &Step) -> Vec<Field>;
    fn validate(&self, step: &Step) -> Result<(), Invalid>;
    fn execute<'a>(&'a self, action: Action<'a>) -> BoxFuture<'a, Result<RollbackHandle>>;
    fn rollback<'a>(&'a self, handle: &'a RollbackHandle) -> BoxFuture<'a, Result<()>>;
    fn extend<'a>(&'a self, handle: &'a RollbackHandle, ttl: Duration)
    -> BoxFuture<'a, Result<()>>;
}

impl<A: Adapter> DynAdapter for A {
    fn name(&self) -> &str {
        Adapter::name(self)
    }

    fn kinds(&self) -> Vec<ActionKind> {
        Adapter::kinds(self)
    }

    fn addresses(&self, step: &Step) -> Vec<Field> {
        Adapter::addresses(self, step)
    }

    fn validate(&self, step: &Step) -> Result<(), Invalid> {
        Adapter::validate(self, step)
    }

    fn execute<'a>(&'a self, action: Action<'a>) -> BoxFuture<'a, Result<RollbackHandle>> {
        Box::pin(async move {
            let handle = Adapter::execute(self, action).await?;
            let data = serde_json::to_string(&handle)
                .map_err(|e| Error::permanent(format!("cannot encode rollback handle: {e}")))?;
            Ok(RollbackHandle {
                adapter: Adapter::name(self).to_owned(),
                data,
            })
        })
    }

    fn rollback<'a>(&'a self, handle: &'a RollbackHandle) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move { Adapter::rollback(self, typed(handle)?).await })
    }

    fn extend<'a>(
        &'a self,
        handle: &'a RollbackHandle,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move { Adapter::extend(self, typed(handle)?, ttl).await })
    }
}

fn typed<H: DeserializeOwned>(handle: &RollbackHandle) -> Result<H> {
    serde_json::from_str(&handle.data).map_err(|e| {
        Error::permanent(format!(
            "rollback handle for `{}` is unreadable: {e}",
            handle.adapter
        ))
    })
}
