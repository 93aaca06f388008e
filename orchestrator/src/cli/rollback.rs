//! `parapet rollback`

use std::io::{BufRead, IsTerminal, Write};

use anyhow::bail;
use parapet_proto::v1::{
    self as pb, intents_client::IntentsClient, rollbacks_client::RollbacksClient,
};
use serde_json::json;

use super::{
    Conn,
    output::{self, Output},
};

#[derive(clap::Args)]
pub struct Args {
    /// The intent to roll back; without it, every active intent the filters match.
    #[arg(required_unless_present_any = ["detection", "source", "action", "target", "since", "until"])]
    intent_id: Option<String>,
    /// Bulk: intents of this detection.
    #[arg(long, conflicts_with = "intent_id")]
    detection: Option<String>,
    /// Bulk: intents from this source.
    #[arg(long, conflicts_with = "intent_id")]
    source: Option<String>,
    /// Bulk: intents with a step of this action kind.
    #[arg(long, conflicts_with = "intent_id")]
    action: Option<String>,
    /// Bulk: intents acting on this target, KIND:ID.
    #[arg(long, conflicts_with = "intent_id")]
    target: Option<String>,
    /// Bulk: intents received since (RFC 3339, or a duration ago such as 1h).
    #[arg(long, conflicts_with = "intent_id")]
    since: Option<String>,
    /// Bulk: intents received before.
    #[arg(long, conflicts_with = "intent_id")]
    until: Option<String>,
    /// Bulk: rollbacks at once.
    #[arg(long, default_value_t = 8)]
    concurrency: u32,
    /// Why; kept in the journal.
    #[arg(long)]
    reason: String,
    /// Who asks; kept in the journal [default: $USER]
    #[arg(long = "by")]
    requested_by: Option<String>,
    /// Do not ask for confirmation.
    #[arg(long, short)]
    yes: bool,
    /// Return at once instead of waiting for the rollback to finish.
    #[arg(long)]
    no_wait: bool,
}

pub async fn run(channel: &Conn, args: Args, out: Output) -> anyhow::Result<()> {
    let Some(intent_id) = args.intent_id.clone() else {
        return bulk(channel, args, out).await;
    };
    if !args.yes {
        let intent = IntentsClient::new(channel.clone())
            .get(pb::GetIntentRequest {
                intent_id: intent_id.clone(),
            })
            .await?
            .into_inner();
        let steps: Vec<_> = intent.steps.iter().map(output::step_summary).collect();
        if !std::io::stdin().is_terminal() {
            bail!("refusing to roll back without --yes when not run interactively");
        }
        eprint!(
            "roll back intent {} ({})? [y/N] ",
            intent.intent_id,
            steps.join(", ")
        );
        std::io::stderr().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            bail!("not rolled back");
        }
    }
    let requested_by = super::actor(args.requested_by.clone());
    let req = pb::RollbackRequest {
        intent_id,
        reason: args.reason,
        requested_by,
        wait: !args.no_wait,
    };
    let resp = RollbacksClient::new(channel.clone())
        .rollback(req)
        .await?
        .into_inner();
    if out.json {
        out.json_line(&json!({"intent_id": resp.intent_id, "state": output::state(resp.state), "noop": resp.noop}));
    } else if resp.noop {
        outln!(
            "{}: nothing to roll back (state {})",
            resp.intent_id,
            output::state(resp.state)
        );
    } else {
        outln!("{}: {}", resp.intent_id, output::state(resp.state));
    }
    Ok(())
}

/// Rolls back everything the filters match, showing progress on stderr.
async fn bulk(channel: &Conn, args: Args, out: Output) -> anyhow::Result<()> {
    if !args.yes {
        bail!("a bulk rollback needs --yes");
    }
    let target = args.target.as_deref().map(super::target_arg).transpose()?;
    let req = pb::RollbackSelectedRequest {
        detection: args.detection.unwrap_or_default(),
        source: args.source.unwrap_or_default(),
        action_kind: args.action.unwrap_or_default(),
        target,
        since: args
            .since
            .as_deref()
            .map(super::journal::when)
            .transpose()?,
        until: args
            .until
            .as_deref()
            .map(super::journal::when)
            .transpose()?,
        reason: args.reason,
        requested_by: super::actor(args.requested_by),
        concurrency: args.concurrency,
    };
    let mut stream = RollbacksClient::new(channel.clone())
        .rollback_selected(req)
        .await?
        .into_inner();
    let (mut op, mut total, mut failed) = (String::new(), 0, 0);
    while let Some(p) = stream.message().await? {
        if p.intent_id.is_empty() {
            op = p.operation_id.clone();
            total = p.total;
            eprintln!("parapet: bulk rollback {op}: {total} active intents match");
            continue;
        }
        failed += u32::from(!p.error.is_empty());
        if out.json {
            out.json_line(&json!({"operation_id": p.operation_id, "intent_id": p.intent_id, "state": output::state(p.state), "error": p.error, "done": p.done, "total": p.total}));
        } else {
            let err = if p.error.is_empty() {
                String::new()
            } else {
                format!(" {}", p.error)
            };
            eprintln!(
                "[{}/{}] {} {}{err}",
                p.done,
                p.total,
                p.intent_id,
                output::state(p.state)
            );
        }
    }
    if !out.json {
        outln!(
            "{op}: {} of {total} rolled back, {failed} failed",
            total - failed
        );
    }
    Ok(())
}
