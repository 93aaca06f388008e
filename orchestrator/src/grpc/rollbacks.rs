//! `parapet.v1.Rollbacks`.

use futures::StreamExt as _;
use parapet_proto::v1::{self as pb, rollbacks_server};
use tonic::{Request, Response, Status};

use super::{BoxStream, caller, convert as conv, stream};
use crate::{
    error::Error,
    service::{
        Change, Service,
        rollbacks::{Rollback, RollbackSelected},
    },
};

pub struct Rollbacks(pub Service);

#[tonic::async_trait]
impl rollbacks_server::Rollbacks for Rollbacks {
    type RollbackSelectedStream = BoxStream<pb::RollbackProgress>;

    async fn rollback_selected(
        &self,
        request: Request<pb::RollbackSelectedRequest>,
    ) -> Result<Response<Self::RollbackSelectedStream>, Status> {
        let caller = caller(&request);
        let req = request.into_inner();
        let selected = RollbackSelected {
            filter: conv::selector(&req).map_err(Error::from)?,
            change: Change {
                reason: req.reason,
                requested_by: req.requested_by,
            },
            concurrency: req.concurrency,
        };
        let bulk = self.0.rollback_selected(&caller, &selected).await?;
        let op = bulk.operation_id;
        let first = pb::RollbackProgress {
            operation_id: op.clone(),
            total: bulk.total,
            ..Default::default()
        };
        let rest = stream(bulk.progress, move |p| pb::RollbackProgress {
            operation_id: op.clone(),
            total: p.total,
            done: p.done,
            intent_id: p.intent_id.to_string(),
            state: p.state.map_or(0, |s| conv::state(s).into()),
            error: p.error.unwrap_or_default(),
        });
        Ok(Response::new(Box::pin(
            futures::stream::once(async { Ok(first) }).chain(rest),
        )))
    }

    async fn rollback(
        &self,
        request: Request<pb::RollbackRequest>,
    ) -> Result<Response<pb::RollbackResponse>, Status> {
        let caller = caller(&request);
        let req = request.into_inner();
        let rollback = Rollback {
            intent_id: req.intent_id,
            change: Change {
                reason: req.reason,
                requested_by: req.requested_by,
            },
            wait: req.wait,
        };
        let done = self.0.rollback(&caller, &rollback).await?;
        Ok(Response::new(pb::RollbackResponse {
            intent_id: done.record.intent.id.to_string(),
            state: conv::state(done.record.state).into(),
            noop: done.noop,
        }))
    }
}
