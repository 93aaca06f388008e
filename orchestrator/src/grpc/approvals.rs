//! `parapet.v1.Approvals` and `parapet.v1.Verdicts`: people in the loop.

use parapet_proto::v1::{self as pb, approvals_server, verdicts_server};
use tonic::{Request, Response, Status};

use super::{caller, convert as conv};
use crate::{
    error::Error,
    lifecycle::Verdict,
    service::{Change, Service, approvals::Answer, verdicts::Judge},
};

pub struct Approvals(pub Service);

fn answer(req: pb::AnswerRequest) -> Answer {
    Answer {
        intent_id: req.intent_id,
        change: Change {
            reason: req.reason,
            requested_by: req.requested_by,
        },
    }
}

#[tonic::async_trait]
impl approvals_server::Approvals for Approvals {
    async fn list_pending(
        &self,
        request: Request<pb::ListPendingRequest>,
    ) -> Result<Response<pb::ListPendingResponse>, Status> {
        let pending = self.0.list_pending(&caller(&request))?;
        Ok(Response::new(pb::ListPendingResponse {
            intents: pending.iter().map(conv::intent).collect(),
        }))
    }

    async fn approve(
        &self,
        request: Request<pb::AnswerRequest>,
    ) -> Result<Response<pb::Intent>, Status> {
        let caller = caller(&request);
        let record = self
            .0
            .approve(&caller, &answer(request.into_inner()))
            .await?;
        Ok(Response::new(conv::intent(&record)))
    }

    async fn reject(
        &self,
        request: Request<pb::AnswerRequest>,
    ) -> Result<Response<pb::Intent>, Status> {
        let caller = caller(&request);
        let record = self
            .0
            .reject(&caller, &answer(request.into_inner()))
            .await?;
        Ok(Response::new(conv::intent(&record)))
    }
}

pub struct Verdicts(pub Service);

#[tonic::async_trait]
impl verdicts_server::Verdicts for Verdicts {
    async fn judge(
        &self,
        request: Request<pb::VerdictRequest>,
    ) -> Result<Response<pb::Intent>, Status> {
        let caller = caller(&request);
        let req = request.into_inner();
        let verdict = match pb::VerdictKind::try_from(req.verdict) {
            Ok(pb::VerdictKind::TruePositive) => Verdict::TruePositive,
            Ok(pb::VerdictKind::FalsePositive) => Verdict::FalsePositive,
            _ => {
                return Err(
                    Error::invalid("verdict", "must be TRUE_POSITIVE or FALSE_POSITIVE").into(),
                );
            }
        };
        let judge = Judge {
            intent_id: req.intent_id,
            verdict,
            note: req.note,
            requested_by: req.requested_by,
        };
        Ok(Response::new(conv::intent(
            &self.0.judge(&caller, &judge).await?,
        )))
    }

    async fn precision(
        &self,
        request: Request<pb::PrecisionRequest>,
    ) -> Result<Response<pb::PrecisionResponse>, Status> {
        let rows = self.0.precision(&caller(&request))?;
        Ok(Response::new(pb::PrecisionResponse {
            rows: rows
                .into_iter()
                .map(|r| pb::PrecisionRow {
                    detection: r.detection,
                    action_kind: r.action_kind,
                    true_positives: r.true_positives,
                    false_positives: r.false_positives,
                    tier: r.tier.to_owned(),
                })
                .collect(),
        }))
    }
}
