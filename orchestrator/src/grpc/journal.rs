//! `parapet.v1.Journal`.

use parapet_proto::v1::{self as pb, journal_server};
use tonic::{Request, Response, Status};

use super::{BoxStream, caller, convert as conv, stream};
use crate::{
    error::Error,
    service::{
        Service,
        journal::{Format, ReplayPolicy},
    },
};

pub struct Journal(pub Service);

#[tonic::async_trait]
impl journal_server::Journal for Journal {
    type QueryStream = BoxStream<pb::JournalEntry>;

    async fn query(
        &self,
        request: Request<pb::QueryJournalRequest>,
    ) -> Result<Response<Self::QueryStream>, Status> {
        let caller = caller(&request);
        let query = conv::journal_query(request.into_inner()).map_err(Error::from)?;
        let entries = self.0.query_journal(&caller, query)?;
        Ok(Response::new(stream(entries, |e| conv::journal_entry(&e))))
    }

    async fn verify(
        &self,
        request: Request<pb::VerifyJournalRequest>,
    ) -> Result<Response<pb::VerifyJournalResponse>, Status> {
        let caller = caller(&request);
        let expect: Vec<_> = request
            .into_inner()
            .expect
            .into_iter()
            .map(|p| (p.seq, p.hash))
            .collect();
        let report = self.0.verify_journal(&caller, &expect).await?;
        Ok(Response::new(conv::verify_report(&report)))
    }

    type ExportStream = BoxStream<pb::ExportedEvent>;

    async fn export(
        &self,
        request: Request<pb::ExportJournalRequest>,
    ) -> Result<Response<Self::ExportStream>, Status> {
        let caller = caller(&request);
        let req = request.into_inner();
        let format = match pb::ExportFormat::try_from(req.format) {
            Ok(pb::ExportFormat::Ocsf) => Format::Ocsf,
            Ok(_) => Format::Json,
            Err(_) => {
                let e = Error::invalid("format", format!("{} is not a format", req.format));
                return Err(e.into());
            }
        };
        let query = conv::journal_query(req.query.unwrap_or_default())
            .map_err(|e| Error::Invalid(e.under("query")))?;
        let exported = self.0.export_journal(&caller, query, format)?;
        Ok(Response::new(stream(exported, |e| pb::ExportedEvent {
            json: e.json,
            seq: e.seq,
            head_seq: e.head_seq,
        })))
    }

    async fn replay_policy(
        &self,
        request: Request<pb::ReplayPolicyRequest>,
    ) -> Result<Response<pb::ReplayPolicyResponse>, Status> {
        let caller = caller(&request);
        let req = request.into_inner();
        let time = |t: Option<prost_types::Timestamp>, field: &str| {
            t.map(|t| conv::system_time(t).map_err(|e| Error::Invalid(e.under(field))))
                .transpose()
        };
        let replay = ReplayPolicy {
            since: time(req.since, "since")?,
            until: time(req.until, "until")?,
            policy_toml: req.policy_toml,
        };
        let (replay, digest) = self.0.replay_policy(&caller, &replay).await?;
        Ok(Response::new(conv::replay(&replay, &digest)))
    }
}
