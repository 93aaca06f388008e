//! The services of `parapet.v1` on tonic: each method hands its request to [`crate::api`].

use parapet_proto::v1::{
    self as pb, admin_server, approvals_server, intents_server, journal_server, rollbacks_server,
    verdicts_server,
};
use tonic::{Request, Response, Status};

use super::{BoxStream, caller, stream};
use crate::{api, service::Service};

/// Answers a unary method: the caller and the request go to `$op`, its answer or error back.
macro_rules! unary {
    ($service:expr, $request:ident, $op:path) => {{
        let caller = caller(&$request);
        Ok(Response::new($op(
            &$service,
            &caller,
            $request.into_inner(),
        )?))
    }};
    ($service:expr, $request:ident, $op:path, await) => {{
        let caller = caller(&$request);
        Ok(Response::new(
            $op(&$service, &caller, $request.into_inner()).await?,
        ))
    }};
}

pub struct Intents(pub Service);

#[tonic::async_trait]
impl intents_server::Intents for Intents {
    async fn submit(
        &self,
        request: Request<pb::SubmitIntentRequest>,
    ) -> Result<Response<pb::SubmitIntentResponse>, Status> {
        let caller = caller(&request);
        let trace = crate::telemetry::trace::from_metadata(request.metadata());
        let answer = api::intents::submit(&self.0, &caller, request.into_inner(), trace).await?;
        Ok(Response::new(answer))
    }

    async fn what_if(
        &self,
        request: Request<pb::SubmitIntentRequest>,
    ) -> Result<Response<pb::Decision>, Status> {
        unary!(self.0, request, api::intents::what_if)
    }

    async fn get(
        &self,
        request: Request<pb::GetIntentRequest>,
    ) -> Result<Response<pb::Intent>, Status> {
        Ok(Response::new(api::intents::get(
            &self.0,
            &caller(&request),
            request.get_ref(),
        )?))
    }

    async fn list(
        &self,
        request: Request<pb::ListIntentsRequest>,
    ) -> Result<Response<pb::ListIntentsResponse>, Status> {
        unary!(self.0, request, api::intents::list)
    }

    type WatchStream = BoxStream<pb::IntentEvent>;

    async fn watch(
        &self,
        request: Request<pb::WatchIntentsRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let changes = api::intents::watch(&self.0, &caller(&request), request.get_ref())?;
        Ok(Response::new(stream(changes)))
    }
}

pub struct Rollbacks(pub Service);

#[tonic::async_trait]
impl rollbacks_server::Rollbacks for Rollbacks {
    type RollbackSelectedStream = BoxStream<pb::RollbackProgress>;

    async fn rollback_selected(
        &self,
        request: Request<pb::RollbackSelectedRequest>,
    ) -> Result<Response<Self::RollbackSelectedStream>, Status> {
        let caller = caller(&request);
        let progress =
            api::rollbacks::rollback_selected(&self.0, &caller, request.into_inner()).await?;
        Ok(Response::new(stream(progress)))
    }

    async fn rollback(
        &self,
        request: Request<pb::RollbackRequest>,
    ) -> Result<Response<pb::RollbackResponse>, Status> {
        unary!(self.0, request, api::rollbacks::rollback, await)
    }
}

pub struct Journal(pub Service);

#[tonic::async_trait]
impl journal_server::Journal for Journal {
    type QueryStream = BoxStream<pb::JournalEntry>;

    async fn query(
        &self,
        request: Request<pb::QueryJournalRequest>,
    ) -> Result<Response<Self::QueryStream>, Status> {
        let caller = caller(&request);
        let entries = api::journal::query(&self.0, &caller, request.into_inner())?;
        Ok(Response::new(stream(entries)))
    }

    async fn verify(
        &self,
        request: Request<pb::VerifyJournalRequest>,
    ) -> Result<Response<pb::VerifyJournalResponse>, Status> {
        unary!(self.0, request, api::journal::verify, await)
    }

    type ExportStream = BoxStream<pb::ExportedEvent>;

    async fn export(
        &self,
        request: Request<pb::ExportJournalRequest>,
    ) -> Result<Response<Self::ExportStream>, Status> {
        let caller = caller(&request);
        let exported = api::journal::export(&self.0, &caller, request.into_inner())?;
        Ok(Response::new(stream(exported)))
    }

    async fn replay_policy(
        &self,
        request: Request<pb::ReplayPolicyRequest>,
    ) -> Result<Response<pb::ReplayPolicyResponse>, Status> {
        unary!(self.0, request, api::journal::replay_policy, await)
    }
}

pub struct Approvals(pub Service);

#[tonic::async_trait]
impl approvals_server::Approvals for Approvals {
    async fn list_pending(
        &self,
        request: Request<pb::ListPendingRequest>,
    ) -> Result<Response<pb::ListPendingResponse>, Status> {
        Ok(Response::new(api::approvals::list_pending(
            &self.0,
            &caller(&request),
            request.get_ref(),
        )?))
    }

    async fn approve(
        &self,
        request: Request<pb::AnswerRequest>,
    ) -> Result<Response<pb::Intent>, Status> {
        unary!(self.0, request, api::approvals::approve, await)
    }

    async fn reject(
        &self,
        request: Request<pb::AnswerRequest>,
    ) -> Result<Response<pb::Intent>, Status> {
        unary!(self.0, request, api::approvals::reject, await)
    }
}

pub struct Verdicts(pub Service);

#[tonic::async_trait]
impl verdicts_server::Verdicts for Verdicts {
    async fn judge(
        &self,
        request: Request<pb::VerdictRequest>,
    ) -> Result<Response<pb::Intent>, Status> {
        unary!(self.0, request, api::approvals::judge, await)
    }

    async fn precision(
        &self,
        request: Request<pb::PrecisionRequest>,
    ) -> Result<Response<pb::PrecisionResponse>, Status> {
        Ok(Response::new(api::approvals::precision(
            &self.0,
            &caller(&request),
            request.get_ref(),
        )?))
    }
}

pub struct Admin(pub Service);

#[tonic::async_trait]
impl admin_server::Admin for Admin {
    async fn set_kill_switch(
        &self,
        request: Request<pb::SetKillSwitchRequest>,
    ) -> Result<Response<pb::SetKillSwitchResponse>, Status> {
        unary!(self.0, request, api::admin::set_kill_switch, await)
    }

    async fn reload_policy(
        &self,
        request: Request<pb::ReloadPolicyRequest>,
    ) -> Result<Response<pb::ReloadPolicyResponse>, Status> {
        unary!(self.0, request, api::admin::reload_policy, await)
    }

    async fn get_status(
        &self,
        request: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::GetStatusResponse>, Status> {
        Ok(Response::new(api::admin::get_status(
            &self.0,
            &caller(&request),
            request.get_ref(),
        )?))
    }

    async fn get_policy(
        &self,
        request: Request<pb::GetPolicyRequest>,
    ) -> Result<Response<pb::GetPolicyResponse>, Status> {
        Ok(Response::new(api::admin::get_policy(
            &self.0,
            &caller(&request),
            request.get_ref(),
        )?))
    }

    async fn set_demotion(
        &self,
        request: Request<pb::SetDemotionRequest>,
    ) -> Result<Response<pb::SetDemotionResponse>, Status> {
        unary!(self.0, request, api::admin::set_demotion, await)
    }

    async fn compact_journal(
        &self,
        request: Request<pb::CompactJournalRequest>,
    ) -> Result<Response<pb::CompactJournalResponse>, Status> {
        unary!(self.0, request, api::admin::compact_journal, await)
    }
}
