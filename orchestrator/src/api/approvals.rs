//! `parapet.v1.Approvals` and `parapet.v1.Verdicts`: people in the loop.

use parapet_proto::v1 as pb;

use super::convert as conv;
use crate::{
    error::Error,
    lifecycle::Verdict,
    service::{Caller, Change, Service, approvals::Answer, verdicts::Judge},
};

fn answer(req: pb::AnswerRequest) -> Answer {
    Answer {
        intent_id: req.intent_id,
        change: Change {
            reason: req.reason,
            requested_by: req.requested_by,
        },
    }
}

pub fn list_pending(
    service: &Service,
    caller: &Caller,
    _req: &pb::ListPendingRequest,
) -> Result<pb::ListPendingResponse, Error> {
    let pending = service.list_pending(caller)?;
    Ok(pb::ListPendingResponse {
        intents: pending.iter().map(conv::intent).collect(),
    })
}

pub async fn approve(
    service: &Service,
    caller: &Caller,
    req: pb::AnswerRequest,
) -> Result<pb::Intent, Error> {
    Ok(conv::intent(&service.approve(caller, &answer(req)).await?))
}

pub async fn reject(
    service: &Service,
    caller: &Caller,
    req: pb::AnswerRequest,
) -> Result<pb::Intent, Error> {
    Ok(conv::intent(&service.reject(caller, &answer(req)).await?))
}

pub async fn judge(
    service: &Service,
    caller: &Caller,
    req: pb::VerdictRequest,
) -> Result<pb::Intent, Error> {
    let verdict = match pb::VerdictKind::try_from(req.verdict) {
        Ok(pb::VerdictKind::TruePositive) => Verdict::TruePositive,
        Ok(pb::VerdictKind::FalsePositive) => Verdict::FalsePositive,
        _ => {
            return Err(Error::invalid(
                "verdict",
                "must be TRUE_POSITIVE or FALSE_POSITIVE",
            ));
        }
    };
    let judge = Judge {
        intent_id: req.intent_id,
        verdict,
        note: req.note,
        requested_by: req.requested_by,
    };
    Ok(conv::intent(&service.judge(caller, &judge).await?))
}

pub fn precision(
    service: &Service,
    caller: &Caller,
    _req: &pb::PrecisionRequest,
) -> Result<pb::PrecisionResponse, Error> {
    let rows = service.precision(caller)?;
    Ok(pb::PrecisionResponse {
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
    })
}
