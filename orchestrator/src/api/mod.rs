//! Parapet's operations in the terms of its protobuf API (`parapet.v1`): each function takes a
//! caller and a request message, calls the service, and answers the response message or the
//! one [`Error`]. The gRPC front door (tonic) and the JSON front door (proto3 JSON over HTTP)
//! both call these, so the two speak one API: the same checks, field paths and answers.
//!
//! - [`convert`]: every conversion between protobuf and the service's types.
//! - one module per service of `parapet.v1`.

pub mod admin;
pub mod approvals;
pub mod convert;
pub mod intents;
pub mod journal;
pub mod rollbacks;

use futures::StreamExt as _;

pub use crate::service::Answers;

/// A service's answers as a stream of response messages.
fn messages<T: Send + 'static, M: Send + 'static>(
    answers: Answers<T>,
    mut encode: impl FnMut(T) -> M + Send + 'static,
) -> Answers<M> {
    Box::pin(answers.map(move |a| a.map(&mut encode)))
}
