//! `parapet.v1.Admin`.

use parapet_proto::v1::{self as pb, admin_server};
use tonic::{Request, Response, Status};

use super::{caller, convert as conv};
use crate::service::{
    Change, Service,
    admin::{SetDemotion, SetKillSwitch},
};

pub struct Admin(pub Service);

#[tonic::async_trait]
impl admin_server::Admin for Admin {
    async fn set_kill_switch(
        &self,
        request: Request<pb::SetKillSwitchRequest>,
    ) -> Result<Response<pb::SetKillSwitchResponse>, Status> {
        let caller = caller(&request);
        let req = request.into_inner();
        let set = SetKillSwitch {
            action_kind: req.action_kind,
            engaged: req.engaged,
            change: Change {
                reason: req.reason,
                requested_by: req.requested_by,
            },
        };
        let engaged = self.0.set_kill_switch(&caller, &set).await?;
        Ok(Response::new(pb::SetKillSwitchResponse {
            engaged: engaged.iter().map(conv::kill_switch).collect(),
        }))
    }

    async fn reload_policy(
        &self,
        request: Request<pb::ReloadPolicyRequest>,
    ) -> Result<Response<pb::ReloadPolicyResponse>, Status> {
        let caller = caller(&request);
        let (previous_digest, policy_digest) = self
            .0
            .reload_policy(&caller, &request.get_ref().requested_by)
            .await?;
        Ok(Response::new(pb::ReloadPolicyResponse {
            previous_digest,
            policy_digest,
        }))
    }

    async fn get_status(
        &self,
        request: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::GetStatusResponse>, Status> {
        let status = self.0.status(&caller(&request))?;
        Ok(Response::new(conv::status(&status)))
    }

    async fn set_demotion(
        &self,
        request: Request<pb::SetDemotionRequest>,
    ) -> Result<Response<pb::SetDemotionResponse>, Status> {
        let caller = caller(&request);
        let req = request.into_inner();
        let set = SetDemotion {
            detection: req.detection,
            demoted: req.demoted,
            change: Change {
                reason: req.reason,
                requested_by: req.requested_by,
            },
        };
        let demoted_detections = self.0.set_demotion(&caller, &set).await?;
        Ok(Response::new(pb::SetDemotionResponse {
            demoted_detections,
        }))
    }

    async fn compact_journal(
        &self,
        request: Request<pb::CompactJournalRequest>,
    ) -> Result<Response<pb::CompactJournalResponse>, Status> {
        let caller = caller(&request);
        let done = self
            .0
            .compact_journal(&caller, &request.get_ref().requested_by)
            .await?;
        Ok(Response::new(
            done.map(conv::compaction).unwrap_or_default(),
        ))
    }
}
