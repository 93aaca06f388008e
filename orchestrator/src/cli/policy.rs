//! `parapet policy check`

use std::path::PathBuf;

use parapet_actions::registry::resolve_names;
use parapet_orchestrator::config::Config;
use parapet_policy::Policy;
use serde_json::json;

use super::output::Output;

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
    /// Ask the server to re-read its policy file (as SIGHUP does).
    Reload {
        /// Who; kept in the journal [default: $USER]
        #[arg(long)]
        by: Option<String>,
    },
}

pub fn run(cmd: Command, out: Output) -> anyhow::Result<()> {
    let Command::Check { file, config } = cmd else {
        anyhow::bail!("`policy reload` talks to the server");
    };
    let config = match &config {
        Some(path) => Config::default().merge_file(path)?,
        None => Config::default(),
    };
    let text = std::fs::read_to_string(&file)
        .map_err(|e| anyhow::anyhow!("cannot read `{}`: {e}", file.display()))?;
    let policy =
        Policy::from_toml(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let instances = config.adapter_kinds();
    policy
        .check_adapters(|kind, route| resolve_names(&instances, kind, route).map(drop))
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
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
