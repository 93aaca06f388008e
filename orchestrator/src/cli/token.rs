//! `parapet token create`: a new bearer token, kept only as its hash.

use std::{io::Write, path::PathBuf};

use anyhow::Context;
use parapet_orchestrator::auth::{Role, token_hash};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Make a token for an identity: the token goes to stdout, once; its SHA-256, with the
    /// identity and roles, is appended to the token file.
    Create(CreateArgs),
}

#[derive(clap::Args)]
pub struct CreateArgs {
    /// Who the token is for; journaled as the actor of its calls.
    #[arg(long)]
    identity: String,
    /// detector, operator, approver, auditor or admin; repeatable.
    #[arg(long = "role", required = true)]
    roles: Vec<Role>,
    /// Hold a detector to these detections; repeatable.
    #[arg(long = "detection")]
    detections: Vec<String>,
    /// Hold a detector to these action kinds; repeatable.
    #[arg(long = "action")]
    actions: Vec<String>,
    /// The most autonomy its intents may have, whatever the detection's tier: `approval` holds
    /// an agent's every action for a person until it has earned more.
    #[arg(long, value_parser = ["approval", "shadow"])]
    max_tier: Option<String>,
    /// The token file the server reads (`[auth] tokens`).
    #[arg(long)]
    file: PathBuf,
}

pub fn run(cmd: Command) -> anyhow::Result<()> {
    let Command::Create(args) = cmd;
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let token = format!("parapet_{}", hex::encode(secret));
    let quote = |v: &[String]| {
        let items: Vec<String> = v
            .iter()
            .map(|s| toml::Value::String(s.clone()).to_string())
            .collect();
        format!("[{}]", items.join(", "))
    };
    let roles: Vec<String> = args.roles.iter().map(|r| r.as_str().to_owned()).collect();
    let mut entry = format!(
        "\n[[tokens]]\nname = {}\nroles = {}\nsha256 = \"{}\"\n",
        toml::Value::String(args.identity.clone()),
        quote(&roles),
        hex::encode(token_hash(&token))
    );
    if !args.detections.is_empty() {
        entry.push_str(&format!("detections = {}\n", quote(&args.detections)));
    }
    if !args.actions.is_empty() {
        entry.push_str(&format!("action_kinds = {}\n", quote(&args.actions)));
    }
    if let Some(tier) = &args.max_tier {
        entry.push_str(&format!("max_tier = \"{tier}\"\n"));
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&args.file)
        .with_context(|| format!("cannot open `{}`", args.file.display()))?;
    file.write_all(entry.as_bytes())?;
    file.sync_all()?;
    outln!("{token}");
    eprintln!(
        "parapet: token for `{}` ({}) added to {}; it is shown only now. A running server reads the file again within a second.",
        args.identity,
        roles.join(", "),
        args.file.display()
    );
    Ok(())
}
