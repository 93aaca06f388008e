//! `parapet.v1.Intents`.

use parapet_proto::v1::{self as pb, intents_server};
use tonic::{Request, Response, Status};

use super::{BoxStream, caller, convert as conv, stream};
use crate::service::{
    Service,
    intents::{List, Submit},
};

pub struct Intents(pub Service);

#[tonic::async_trait]
impl intents_server::Intents for Intents {
    async fn submit(
        &self,
        request: Request<pb::SubmitIntentRequest>,
    ) -> Result<Response<pb::SubmitIntentResponse>, Status> {
        let caller = caller(&request);
        let trace = crate::telemetry::trace::from_metadata(request.metadata());
        let req = request.into_inner();
        let wait = req.wait;
        let intent = conv::intent_request(req).map_err(crate::error::Error::from)?;
        let submitted = self
            .0
            .submit(
                &caller,
                Submit {
                    intent,
                    wait,
                    trace,
                },
            )
            .await?;
        let r = &submitted.record;
        Ok(Response::new(pb::SubmitIntentResponse {
            intent_id: r.intent.id.to_string(),
            decision: r.decision.as_ref().map(conv::decision),
            state: conv::state(r.state).into(),
            duplicate: submitted.duplicate,
            intent: Some(conv::intent(r)),
        }))
    }

    async fn get(
        &self,
        request: Request<pb::GetIntentRequest>,
    ) -> Result<Response<pb::Intent>, Status> {
        let record = self
            .0
            .get_intent(&caller(&request), &request.get_ref().intent_id)?;
        Ok(Response::new(conv::intent(&record)))
    }

    async fn list(
        &self,
        request: Request<pb::ListIntentsRequest>,
    ) -> Result<Response<pb::ListIntentsResponse>, Status> {
        let caller = caller(&request);
        let req = request.into_inner();
        let list = List {
            filter: conv::intent_filter(&req).map_err(crate::error::Error::from)?,
            page_size: req.page_size,
            page_token: req.page_token,
        };
        let page = self.0.list_intents(&caller, &list)?;
        Ok(Response::new(pb::ListIntentsResponse {
            intents: page.intents.iter().map(conv::intent).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    type WatchStream = BoxStream<pb::IntentEvent>;

    async fn watch(
        &self,
        request: Request<pb::WatchIntentsRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let changes = self
            .0
            .watch(&caller(&request), &request.get_ref().intent_id)?;
        Ok(Response::new(stream(changes, |c| pb::IntentEvent {
            intent_id: c.record.intent.id.to_string(),
            state: conv::state(c.record.state).into(),
            seq: c.seq,
            time: Some(conv::timestamp(c.time)),
            event: c.event.into(),
            intent: Some(conv::intent(&c.record)),
        })))
    }
}
