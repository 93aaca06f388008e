//! `parapet.v1.Journal`.

use parapet_proto::v1 as pb;

use super::{Answers, convert as conv, messages};
use crate::{
    error::Error,
    service::{
        Caller, Service,
        journal::{Format, ReplayPolicy},
    },
};

pub fn query(
    service: &Service,
    caller: &Caller,
    req: pb::QueryJournalRequest,
) -> Result<Answers<pb::JournalEntry>, Error> {
    let query = conv::journal_query(req)?;
    let entries = service.query_journal(caller, query)?;
    Ok(messages(entries, |e| conv::journal_entry(&e)))
}

pub async fn verify(
    service: &Service,
    caller: &Caller,
    req: pb::VerifyJournalRequest,
) -> Result<pb::VerifyJournalResponse, Error> {
    let expect: Vec<_> = req.expect.into_iter().map(|p| (p.seq, p.hash)).collect();
    let report = service.verify_journal(caller, &expect).await?;
    Ok(conv::verify_report(&report))
}

pub fn export(
    service: &Service,
    caller: &Caller,
    req: pb::ExportJournalRequest,
) -> Result<Answers<pb::ExportedEvent>, Error> {
    let format = match pb::ExportFormat::try_from(req.format) {
        Ok(pb::ExportFormat::Ocsf) => Format::Ocsf,
        Ok(_) => Format::Json,
        Err(_) => {
            return Err(Error::invalid(
                "format",
                format!("{} is not a format", req.format),
            ));
        }
    };
    let query = conv::journal_query(req.query.unwrap_or_default())
        .map_err(|e| Error::Invalid(e.under("query")))?;
    let exported = service.export_journal(caller, query, format)?;
    Ok(messages(exported, |e| pb::ExportedEvent {
        json: e.json,
        seq: e.seq,
        head_seq: e.head_seq,
    }))
}

pub async fn replay_policy(
    service: &Service,
    caller: &Caller,
    req: pb::ReplayPolicyRequest,
) -> Result<pb::ReplayPolicyResponse, Error> {
    let time = |t: Option<parapet_proto::wkt::Timestamp>, field: &str| {
        t.map(|t| conv::system_time(t).map_err(|e| Error::Invalid(e.under(field))))
            .transpose()
    };
    let replay = ReplayPolicy {
        since: time(req.since, "since")?,
        until: time(req.until, "until")?,
        policy_toml: req.policy_toml,
    };
    let (replay, digest) = service.replay_policy(caller, &replay).await?;
    Ok(conv::replay(&replay, &digest))
}
