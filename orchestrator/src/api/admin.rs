//! `parapet.v1.Admin`.

use parapet_proto::v1 as pb;

use super::convert as conv;
use crate::{
    error::Error,
    service::{
        Caller, Change, Service,
        admin::{SetDemotion, SetKillSwitch},
    },
};

pub async fn set_kill_switch(
    service: &Service,
    caller: &Caller,
    req: pb::SetKillSwitchRequest,
) -> Result<pb::SetKillSwitchResponse, Error> {
    let set = SetKillSwitch {
        action_kind: req.action_kind,
        engaged: req.engaged,
        change: Change {
            reason: req.reason,
            requested_by: req.requested_by,
        },
    };
    let engaged = service.set_kill_switch(caller, &set).await?;
    Ok(pb::SetKillSwitchResponse {
        engaged: engaged.iter().map(conv::kill_switch).collect(),
    })
}

pub async fn reload_policy(
    service: &Service,
    caller: &Caller,
    req: pb::ReloadPolicyRequest,
) -> Result<pb::ReloadPolicyResponse, Error> {
    let (previous_digest, policy_digest) = service.reload_policy(caller, &req.requested_by).await?;
    Ok(pb::ReloadPolicyResponse {
        previous_digest,
        policy_digest,
    })
}

pub fn get_status(
    service: &Service,
    caller: &Caller,
    _req: &pb::GetStatusRequest,
) -> Result<pb::GetStatusResponse, Error> {
    Ok(conv::status(&service.status(caller)?))
}

pub fn get_policy(
    service: &Service,
    caller: &Caller,
    _req: &pb::GetPolicyRequest,
) -> Result<pb::GetPolicyResponse, Error> {
    let policy = service.policy(caller)?;
    Ok(pb::GetPolicyResponse {
        policy_digest: policy.digest().to_owned(),
        policy_toml: policy.text().to_owned(),
    })
}

pub async fn set_demotion(
    service: &Service,
    caller: &Caller,
    req: pb::SetDemotionRequest,
) -> Result<pb::SetDemotionResponse, Error> {
    let set = SetDemotion {
        detection: req.detection,
        demoted: req.demoted,
        change: Change {
            reason: req.reason,
            requested_by: req.requested_by,
        },
    };
    let demoted_detections = service.set_demotion(caller, &set).await?;
    Ok(pb::SetDemotionResponse { demoted_detections })
}

pub async fn compact_journal(
    service: &Service,
    caller: &Caller,
    req: pb::CompactJournalRequest,
) -> Result<pb::CompactJournalResponse, Error> {
    let done = service.compact_journal(caller, &req.requested_by).await?;
    Ok(done.map(conv::compaction).unwrap_or_default())
}
