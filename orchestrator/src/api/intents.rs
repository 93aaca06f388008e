//! `parapet.v1.Intents`.

use parapet_proto::v1 as pb;

use super::{Answers, convert as conv, messages};
use crate::{
    error::Error,
    service::{
        Caller, Service,
        intents::{List, Submit},
    },
};

pub async fn submit(
    service: &Service,
    caller: &Caller,
    req: pb::SubmitIntentRequest,
    trace: opentelemetry::Context,
) -> Result<pb::SubmitIntentResponse, Error> {
    let wait = req.wait;
    let intent = conv::intent_request(req)?;
    let submitted = service
        .submit(
            caller,
            Submit {
                intent,
                wait,
                trace,
            },
        )
        .await?;
    let r = &submitted.record;
    Ok(pb::SubmitIntentResponse {
        intent_id: r.intent.id.to_string(),
        decision: r.decision.as_ref().map(conv::decision),
        state: conv::state(r.state).into(),
        duplicate: submitted.duplicate,
        intent: Some(conv::intent(r)),
    })
}

pub fn what_if(
    service: &Service,
    caller: &Caller,
    req: pb::SubmitIntentRequest,
) -> Result<pb::Decision, Error> {
    let intent = conv::intent_request(req)?;
    Ok(conv::decision(&service.what_if(caller, intent)?))
}

pub fn get(
    service: &Service,
    caller: &Caller,
    req: &pb::GetIntentRequest,
) -> Result<pb::Intent, Error> {
    Ok(conv::intent(&service.get_intent(caller, &req.intent_id)?))
}

pub fn list(
    service: &Service,
    caller: &Caller,
    req: pb::ListIntentsRequest,
) -> Result<pb::ListIntentsResponse, Error> {
    let list = List {
        filter: conv::intent_filter(&req)?,
        page_size: req.page_size,
        page_token: req.page_token,
    };
    let page = service.list_intents(caller, &list)?;
    Ok(pb::ListIntentsResponse {
        intents: page.intents.iter().map(conv::intent).collect(),
        next_page_token: page.next_page_token,
    })
}

pub fn watch(
    service: &Service,
    caller: &Caller,
    req: &pb::WatchIntentsRequest,
) -> Result<Answers<pb::IntentEvent>, Error> {
    let changes = service.watch(caller, &req.intent_id)?;
    Ok(messages(changes, |c| pb::IntentEvent {
        intent_id: c.record.intent.id.to_string(),
        state: conv::state(c.record.state).into(),
        seq: c.seq,
        time: Some(conv::timestamp(c.time)),
        event: c.event.into(),
        intent: Some(conv::intent(&c.record)),
    }))
}
