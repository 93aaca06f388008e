//! The gRPC front door: decode, call the service, encode. Nothing else happens here.
//!
//! - `auth`: the layer that authenticates each call and asks the service whether it may go on.
//! - `client`: a connection to a server, as the CLI and `parapet mcp` hold it.
//! - `services`: the services of `parapet.v1`, each method a call into [`crate::api`].

pub mod auth;
pub mod client;
mod services;

use std::pin::Pin;

use futures::{Stream, StreamExt as _};
use tonic::{Request, Status};

pub use services::{Admin, Approvals, Intents, Journal, Rollbacks, Verdicts};

use crate::{
    error::Error,
    service::{Answers, Caller},
};

/// The one mapping of Parapet's errors to gRPC statuses.
pub fn status(e: Error) -> Status {
    if e.is_internal() {
        tracing::error!(error = %e, "request failed");
    }
    let message = e.to_string();
    match e {
        Error::Invalid(_) => Status::invalid_argument(message),
        Error::Unauthenticated(_) => Status::unauthenticated(message),
        Error::Forbidden(_) => Status::permission_denied(message),
        Error::NotFound { .. } => Status::not_found(message),
        Error::IdempotencyConflict { .. } => Status::already_exists(message),
        Error::FailedPrecondition(_) | Error::Refused(_) => Status::failed_precondition(message),
        Error::Exhausted(_) => Status::resource_exhausted(message),
        Error::Lagged(_) => Status::aborted(message),
        Error::ShuttingDown | Error::Journal(_) | Error::Storage(_) => Status::unavailable(message),
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        status(e)
    }
}

/// The caller [`auth::AuthLayer`] found for a request; with no layer (a server in a test),
/// nobody in particular, with every right.
fn caller<T>(request: &Request<T>) -> Caller {
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .unwrap_or_else(|| Caller {
            identity: None,
            peer: request.remote_addr(),
        })
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Answers as a gRPC stream of messages.
fn stream<M: Send + 'static>(answers: Answers<M>) -> BoxStream<M> {
    Box::pin(answers.map(|a| a.map_err(status)))
}
