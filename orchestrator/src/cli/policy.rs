//! `parapet policy check | replay`

use std::path::PathBuf;

use parapet_orchestrator::config::Config;
use parapet_policy::Policy;
use serde_json::json;

use parapet_proto::v1::{self as pb, journal_client::JournalClient};

use super::{
    Conn,
    journal::when,
    output::{self, Output},
};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Validate a policy file against the adapters of a config and summarise it; exits
    /// non-zero if it is invalid.
    Check {
        /// The policy file.
        file: PathBuf,
        /// The server's config file, whose adapters the policy's grants and routes must match
        /// [default: the built-in adapters]
        #[arg(long, env = "PARAPET_CONFIG")]
        config: Option<PathBuf>,
    },
    /// What-if: decide the intents journaled since a time again under another policy, and show
    /// which would be decided differently. Changes nothing.
    Replay(ReplayArgs),
    /// Ask the server to re-read its policy file (as SIGHUP does).
    Reload {
        /// Who; kept in the journal [default: $USER]
        #[arg(long)]
        by: Option<String>,
    },
}

#[derive(clap::Args)]
pub struct ReplayArgs {
    /// The policy file to try.
    #[arg(long)]
    policy: PathBuf,
    /// Intents received since: an RFC 3339 time, or a duration meaning that long ago (24h).
    #[arg(long)]
    since: String,
    /// And before: a time or a duration ago [default: now].
    #[arg(long)]
    until: Option<String>,
}

pub async fn replay(channel: &Conn, args: ReplayArgs, out: Output) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.policy)
        .map_err(|e| anyhow::anyhow!("cannot read `{}`: {e}", args.policy.display()))?;
    Policy::from_toml(&text).map_err(|e| anyhow::anyhow!("{}: {e}", args.policy.display()))?;
    let req = pb::ReplayPolicyRequest {
        policy_toml: text,
        since: Some(when(&args.since)?),
        until: args.until.as_deref().map(when).transpose()?,
    };
    let r = JournalClient::new(channel.clone())
        .replay_policy(req)
        .await?
        .into_inner();
    let outcome = |d: &Option<pb::Decision>| output::outcome(d.as_ref().map_or(0, |d| d.outcome));
    // the findings that made the new outcome
    let why = |d: &Option<pb::Decision>| {
        d.as_ref().map_or_else(String::new, |d| {
            d.reasons
                .iter()
                .filter(|r| r.effect == d.outcome && r.effect != pb::Outcome::Execute as i32)
                .map(|r| format!("{}: {}", r.guardrail, r.message))
                .collect::<Vec<_>>()
                .join("; ")
        })
    };
    let targets = |steps: &[pb::Step]| {
        steps
            .iter()
            .map(|s| {
                let t = s.target.clone().unwrap_or_default();
                format!("{} {}:{}", s.kind, t.kind, t.id)
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let rule = |c: &pb::ReplayedIntent| c.detection.as_ref().map_or("", |d| &d.rule_id).to_owned();
    if out.json {
        for c in &r.changed {
            out.json_line(&json!({
                "intent_id": c.intent_id, "seq": c.seq, "source": c.source,
                "detection": rule(c), "steps": targets(&c.steps),
                "before": outcome(&c.before), "after": outcome(&c.after), "why": why(&c.after),
            }));
        }
        let outcomes: Vec<_> = r.outcomes.iter().map(|o| json!({
            "before": output::outcome(o.before), "after": output::outcome(o.after), "intents": o.intents,
        })).collect();
        out.json_line(&json!({
            "policy_digest": r.policy_digest, "decided": r.decided,
            "changed": r.changed.len(), "outcomes": outcomes,
        }));
        return Ok(());
    }
    out.table(
        &["INTENT", "DETECTION", "STEPS", "BEFORE", "AFTER", "WHY"],
        r.changed
            .iter()
            .map(|c| {
                vec![
                    c.intent_id.clone(),
                    rule(c),
                    targets(&c.steps),
                    outcome(&c.before),
                    outcome(&c.after),
                    why(&c.after),
                ]
            })
            .collect(),
    );
    let moves: Vec<String> = r
        .outcomes
        .iter()
        .filter(|o| o.before != o.after)
        .map(|o| {
            format!(
                "{} {} → {}",
                o.intents,
                output::outcome(o.before),
                output::outcome(o.after)
            )
        })
        .collect();
    eprintln!(
        "{}: {} intents decided again, {} would change{}",
        r.policy_digest,
        r.decided,
        r.changed.len(),
        if moves.is_empty() {
            String::new()
        } else {
            format!(" ({})", moves.join(", "))
        }
    );
    Ok(())
}

pub async fn run(cmd: Command, out: Output) -> anyhow::Result<()> {
    let Command::Check { file, config } = cmd else {
        anyhow::bail!("`policy reload` and `policy replay` talk to the server");
    };
    let mut config = match &config {
        Some(path) => Config::default().merge_file(path)?,
        None => Config::default(),
    };
    let text = std::fs::read_to_string(&file)
        .map_err(|e| anyhow::anyhow!("cannot read `{}`: {e}", file.display()))?;
    let policy =
        Policy::from_toml(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    // what `serve` refuses, found by the very function `serve` asks
    config.policy = Some(file.clone());
    parapet_orchestrator::server::preflight(&config, &policy, &file.display().to_string()).await?;
    if out.json {
        for d in policy.detections.values() {
            let tiers: serde_json::Map<_, _> = d
                .actions
                .iter()
                .map(|(k, t)| (k.to_string(), t.as_str().into()))
                .collect();
            out.json_line(
                &json!({"detection": d.id, "owner": d.owner, "attack": d.attack, "actions": tiers}),
            );
        }
    } else {
        let rows = policy
            .detections
            .values()
            .map(|d| {
                let tiers: Vec<_> = d
                    .actions
                    .iter()
                    .map(|(k, t)| format!("{k}={}", t.as_str()))
                    .collect();
                vec![
                    d.id.clone(),
                    d.owner.clone(),
                    d.attack.join(","),
                    tiers.join(" "),
                ]
            })
            .collect();
        out.table(&["DETECTION", "OWNER", "ATT&CK", "ACTIONS"], rows);
    }
    eprintln!(
        "{}: valid, {} detections, {} protections, {} budgets, {} rate limits, {} freezes, digest {}",
        file.display(),
        policy.detections.len(),
        policy.protected.len(),
        policy.budgets.len(),
        policy.rate_limits.len(),
        policy.freezes.len(),
        policy.digest()
    );
    Ok(())
}
