//! `parapet bouncer`: the keys of CrowdSec bouncers reading Parapet's decisions, kept only as
//! their hashes in the bouncer file (`[crowdsec] bouncers`), which the server reads again when
//! it changes.

use std::path::{Path, PathBuf};

use anyhow::Context;
use parapet_orchestrator::{
    auth::token_hash,
    service::bouncers::{Entry, File},
};
use parapet_proto::v1::{self as pb, admin_client::AdminClient};
use serde_json::json;

use super::{Conn, output::Output};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Make a key for a bouncer: the key goes to stdout, once; its SHA-256 to the file.
    Add {
        name: String,
        /// The lists it enforces (`[edl.lists]` names); `block` when none; repeatable.
        #[arg(long = "list")]
        lists: Vec<String>,
        /// The bouncer file the server reads (`[crowdsec] bouncers`).
        #[arg(long)]
        file: PathBuf,
    },
    /// Remove a bouncer: its key is refused from its next pull on.
    Delete {
        name: String,
        #[arg(long)]
        file: PathBuf,
    },
    /// The bouncers, their lists, and (from the server) when each last pulled, as what.
    List {
        #[arg(long)]
        file: PathBuf,
    },
}

fn write(path: &Path, file: &File) -> anyhow::Result<()> {
    let text = toml::to_string(file).context("cannot write the bouncer file")?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("cannot write `{}`", tmp.display()))?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace `{}`", path.display()))
}

/// `add` and `delete`, which need no server.
pub fn edit(cmd: &Command) -> anyhow::Result<()> {
    match cmd {
        Command::Add { name, lists, file } => {
            anyhow::ensure!(
                parapet_actions::settings::is_word(name, b"-."),
                "`{name}`: a bouncer's name is letters, digits, `_`, `-` or `.` (at most 64)"
            );
            let mut f = File::read(file)?;
            anyhow::ensure!(
                f.bouncers.iter().all(|b| &b.name != name),
                "a bouncer `{name}` is already in {}; delete it first",
                file.display()
            );
            let mut secret = [0u8; 32];
            getrandom::fill(&mut secret).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
            let key = hex::encode(secret);
            f.bouncers.push(Entry {
                name: name.clone(),
                sha256: hex::encode(token_hash(&key)),
                lists: lists.clone(),
            });
            write(file, &f)?;
            outln!("{key}");
            eprintln!(
                "parapet: key for bouncer `{name}` added to {}; it is shown only now. Put it in the \
                 bouncer's `api_key`, and Parapet's HTTP address in its `api_url`.",
                file.display()
            );
        }
        Command::Delete { name, file } => {
            let mut f = File::read(file)?;
            let before = f.bouncers.len();
            f.bouncers.retain(|b| &b.name != name);
            anyhow::ensure!(
                f.bouncers.len() < before,
                "no bouncer `{name}` in {}",
                file.display()
            );
            write(file, &f)?;
            eprintln!(
                "parapet: bouncer `{name}` deleted; its key is refused from its next pull on"
            );
        }
        Command::List { .. } => {}
    }
    Ok(())
}

/// `list`: the file's bouncers with what the server saw of each.
pub async fn list(channel: &Conn, file: &Path, out: Output) -> anyhow::Result<()> {
    let f = File::read(file)?;
    let seen: Vec<pb::BouncerState> = AdminClient::new(channel.clone())
        .get_status(pb::GetStatusRequest {})
        .await?
        .into_inner()
        .bouncers;
    let mut rows = Vec::new();
    for b in &f.bouncers {
        let s = seen.iter().find(|s| s.name == b.name);
        let lists = if b.lists.is_empty() {
            "block".to_owned()
        } else {
            b.lists.join(",")
        };
        let last = s
            .map(|s| super::output::time(s.last_pull.as_ref()))
            .unwrap_or_default();
        let version = s.map(|s| s.version.clone()).unwrap_or_default();
        if out.json {
            out.json_line(&json!({
                "name": b.name, "lists": lists, "last_pull": last, "version": version,
                "cursor": s.map(|s| s.cursor),
            }));
        } else {
            rows.push(vec![b.name.clone(), lists, last, version]);
        }
    }
    if !out.json {
        out.table(&["NAME", "LISTS", "LAST PULL", "VERSION"], rows);
    }
    Ok(())
}
