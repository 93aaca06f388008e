//! `parapet.v1.Rollbacks`.

use futures::StreamExt as _;
use parapet_proto::v1 as pb;

use super::{Answers, convert as conv, messages};
use crate::{
    error::Error,
    service::{
        Caller, Change, Service,
        rollbacks::{Rollback, RollbackSelected},
    },
};

/// The operation's id and total first, then one message per intent as it is done.
pub async fn rollback_selected(
    service: &Service,
    caller: &Caller,
    req: pb::RollbackSelectedRequest,
) -> Result<Answers<pb::RollbackProgress>, Error> {
    let selected = RollbackSelected {
        filter: conv::selector(&req)?,
        change: Change {
            reason: req.reason,
            requested_by: req.requested_by,
        },
        concurrency: req.concurrency,
    };
    let bulk = service.rollback_selected(caller, &selected).await?;
    let op = bulk.operation_id;
    let first = pb::RollbackProgress {
        operation_id: op.clone(),
        total: bulk.total,
        ..Default::default()
    };
    let rest = messages(bulk.progress, move |p| pb::RollbackProgress {
        operation_id: op.clone(),
        total: p.total,
        done: p.done,
        intent_id: p.intent_id.to_string(),
        state: p.state.map_or(0, |s| conv::state(s).into()),
        error: p.error.unwrap_or_default(),
    });
    Ok(Box::pin(
        futures::stream::once(async { Ok(first) }).chain(rest),
    ))
}

pub async fn rollback(
    service: &Service,
    caller: &Caller,
    req: pb::RollbackRequest,
) -> Result<pb::RollbackResponse, Error> {
    let rollback = Rollback {
        intent_id: req.intent_id,
        change: Change {
            reason: req.reason,
            requested_by: req.requested_by,
        },
        wait: req.wait,
    };
    let done = service.rollback(caller, &rollback).await?;
    Ok(pb::RollbackResponse {
        intent_id: done.record.intent.id.to_string(),
        state: conv::state(done.record.state).into(),
        noop: done.noop,
    })
}
