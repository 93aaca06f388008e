//! The operations Parapet offers, one module per capability, whatever the front door.
//!
//! A front door (gRPC, HTTP) authenticates its caller, turns its request into the typed request
//! of an operation here, calls it, and turns the typed answer (or the one [`Error`]) back into
//! its own form. Everything else happens here: who may call what ([`access`]), the checks of
//! free text, which intents a filter selects and how pages go, the assembly of status and
//! exports. No front door touches the engine or the journal.
//!
//! - [`intents`]: submit, get, list, watch.
//! - [`rollbacks`]: one intent, or everything a filter selects.
//! - [`approvals`]: pending intents, approve, reject.
//! - [`verdicts`]: judge an intent, precision per detection.
//! - [`journal`]: query, verify, export, replay a policy.
//! - [`admin`]: kill switches, status, policy reload, demotion, compaction.
//! - [`decisions`], [`bouncers`]: addresses in force as enforcement points read them, and
//!   the CrowdSec bouncers that read them.
//! - [`lists`]: what firewalls and scrapers read (the lists, the metrics), with their own
//!   credentials.

pub mod access;
pub mod admin;
pub mod approvals;
pub mod bouncers;
pub mod decisions;
pub mod intents;
pub mod journal;
pub mod lists;
pub mod rollbacks;
pub mod verdicts;

use std::sync::Arc;

use futures::stream::BoxStream;
use parapet_model::{IntentId, Invalid, intent::check_text, limits};

pub use access::{Caller, Identity, Operation, Role};

pub use crate::error::{Error, Result};
use crate::{engine::Engine, lifecycle::SystemEvent};

/// A stream of answers, ending early with an error if one comes.
pub type Answers<T> = BoxStream<'static, Result<T>>;

/// The operations over one engine; cheap to clone.
#[derive(Clone)]
pub struct Service {
    engine: Engine,
    /// Refusals journaled at most this fast, so they cannot fill the disk.
    journaled: Arc<governor::DefaultDirectRateLimiter>,
    published: Option<Arc<lists::Published>>,
}

impl Service {
    pub fn new(engine: Engine) -> Self {
        let quota = governor::Quota::per_second(std::num::NonZeroU32::MIN.saturating_add(9))
            .allow_burst(std::num::NonZeroU32::MIN.saturating_add(99));
        Self {
            engine,
            journaled: Arc::new(governor::RateLimiter::direct(quota)),
            published: None,
        }
    }

    /// Whether `caller` may call `op`; a refusal is journaled as a security event. Every
    /// operation asks first; a front door may ask before it reads the request.
    pub fn authorize(&self, caller: &Caller, op: Operation) -> Result<()> {
        caller.may(op).inspect_err(|e| {
            let name = caller.identity.as_ref().map_or("", |id| id.name.as_str());
            self.refused(name, caller.peer, op.name(), e);
        })
    }

    /// Journals a refused call (as a security event) and counts it, unless refusals come too
    /// fast to journal. `method` is the operation or, for a call nobody could be found for,
    /// what the front door was asked.
    pub fn refused(
        &self,
        identity: &str,
        peer: Option<std::net::SocketAddr>,
        method: &str,
        error: &Error,
    ) {
        let peer = peer.map(|p| p.to_string()).unwrap_or_default();
        tracing::warn!(identity, %peer, method, code = error.code(), "call refused: {error}");
        self.engine.metrics().refused_call(error.code(), "auth");
        if self.journaled.check().is_err() {
            return;
        }
        let event = SystemEvent::AccessDenied {
            identity: identity.to_owned(),
            peer,
            method: method.to_owned(),
            code: error.code().to_owned(),
            reason: error.to_string(),
        };
        let journal = self.engine.store().clone();
        tokio::spawn(async move {
            if let Err(e) = journal
                .append_system(crate::engine::SYSTEM_ACTOR, event)
                .await
            {
                tracing::error!(error = %e, "cannot journal a refused call");
            }
        });
    }

    /// Counts something refused before it became an intent (`parapet_calls_refused_total`).
    pub fn count_refused(&self, code: &str, cause: &'static str) {
        self.engine.metrics().refused_call(code, cause);
    }

    /// Cancelled when Parapet stops; long-lived answers end on it.
    pub fn stopping(&self) -> tokio_util::sync::CancellationToken {
        self.engine.shutdown_token()
    }
}

/// A reason is kept in the journal with what it caused, so changes must give one, and it is
/// free text within the limits of any other.
fn required_reason(reason: &str) -> Result<()> {
    if reason.trim().is_empty() {
        return Err(Error::invalid(
            "reason",
            "is required; it is kept in the journal",
        ));
    }
    text(reason, limits::MAX_TEXT_LEN, "reason")
}

/// Free text a person gave: bounded, without control or bidirectional characters.
fn text(value: &str, max: usize, field: &str) -> Result<()> {
    Ok(check_text(value, max).map_err(|e| e.under(field))?)
}

/// Who the journal records: the caller's identity, or (without authentication) the name it
/// gives, which is then bounded text like any other.
fn actor<'a>(caller: &'a Caller, requested_by: &'a str) -> Result<&'a str> {
    text(requested_by, limits::MAX_ID_LEN, "requested_by")?;
    Ok(caller.actor(requested_by))
}

/// A count a client may set: `default` when unset, refused above `max`.
fn bounded(value: u32, default: usize, max: u32, field: &str) -> Result<usize> {
    match value {
        0 => Ok(default),
        n if n <= max => Ok(n as usize),
        n => Err(Error::invalid(
            field,
            format!("{n} exceeds the limit of {max}"),
        )),
    }
}

/// An intent id a client gave in `field`.
pub fn intent_id(text: &str, field: &str) -> Result<IntentId> {
    if text.is_empty() {
        return Err(Error::invalid(field, "is required"));
    }
    Ok(text.parse().map_err(|e: Invalid| e.under(field))?)
}

/// Who changes something, and why: the parts every changing request carries.
#[derive(Debug, Clone, Default)]
pub struct Change {
    pub reason: String,
    /// The name to journal when the caller is not authenticated.
    pub requested_by: String,
}

impl Change {
    /// The actor to journal, once the reason is checked.
    fn checked<'a>(&'a self, caller: &'a Caller) -> Result<&'a str> {
        required_reason(&self.reason)?;
        actor(caller, &self.requested_by)
    }
}
