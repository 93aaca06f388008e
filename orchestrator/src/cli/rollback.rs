//! `parapet rollback`

use std::io::{BufRead, IsTerminal, Write};

use anyhow::bail;
use parapet_proto::v1::{
    self as pb, intents_client::IntentsClient, rollbacks_client::RollbacksClient,
};
use serde_json::json;
use tonic::transport::Channel;

use super::output::{self, Output};

#[derive(clap::Args)]
pub struct Args {
    intent_id: String,
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

pub async fn run(channel: &Channel, args: Args, out: Output) -> anyhow::Result<()> {
    if !args.yes {
        let intent = IntentsClient::new(channel.clone())
            .get(pb::GetIntentRequest {
                intent_id: args.intent_id.clone(),
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
    let requested_by = args
        .requested_by
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "cli".into());
    let req = pb::RollbackRequest {
        intent_id: args.intent_id,
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
