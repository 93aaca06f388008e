//! External Dynamic Lists: address lists that PAN-OS, FortiGate and Check Point firewalls poll
//! over HTTP as plain text, one entry per line. Blocking means adding an address to a list the
//! firewall already denies; rollback removes it. It needs no credentials and changes nothing on
//! the firewall itself, which makes it Parapet's safe default adapter.
//!
//! Each entry remembers which intent steps hold it, so two intents blocking the same address do
//! not undo each other: the address leaves the list when its last holder is rolled back. Every
//! change is synced to disk before an execution or rollback returns, so the lists survive
//! restarts; concurrent changes share one sync (see [`crate::holds`]).

use std::{collections::BTreeMap, path::PathBuf, sync::Arc};

use ipnet::IpNet;
use parapet_model::{ActionKind, Invalid, Step, intent::Field, intent::clip};
use serde::{Deserialize, Serialize};

use crate::{
    Action, Adapter, Error, Result,
    address::{address, within_floor},
    holds::Holds,
};

/// How the EDL adapter is set up.
#[derive(Debug, Clone)]
pub struct EdlConfig {
    /// The instance's name, in rollback handles; `edl` unless several are configured.
    pub name: String,
    /// Where the lists are kept.
    pub dir: PathBuf,
    /// Which list each action kind adds to.
    pub lists: BTreeMap<ActionKind, String>,
    /// Shortest prefixes accepted: a broader block is refused even if a policy let it through.
    pub min_prefix_v4: u8,
    pub min_prefix_v6: u8,
}

impl EdlConfig {
    /// `block_ip` to the list `block`, `isolate_host` to the list `quarantine`.
    pub fn with_default_lists(dir: PathBuf) -> Self {
        let lists = [("block_ip", "block"), ("isolate_host", "quarantine")]
            .into_iter()
            .filter_map(|(kind, list)| Some((kind.parse().ok()?, list.to_owned())))
            .collect();
        Self {
            name: "edl".into(),
            dir,
            lists,
            min_prefix_v4: 24,
            min_prefix_v6: 48,
        }
    }
}

/// The EDL adapter; clones share the same lists (the HTTP server renders them).
#[derive(Clone)]
pub struct Edl {
    config: Arc<EdlConfig>,
    holds: Arc<Holds>,
}

/// What undoes one EDL execution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdlHandle {
    pub list: String,
    pub entry: IpNet,
    pub holder: String,
}

impl Edl {
    /// Opens (or creates) the lists in `config.dir`.
    pub fn open(config: EdlConfig) -> Result<Self> {
        for name in config.lists.values() {
            if !crate::settings::is_word(name, b"-") {
                return Err(Error::permanent(format!(
                    "EDL list name `{}` must be letters, digits, `-` and `_`",
                    clip(name)
                )));
            }
        }
        let holds = Holds::open(&config.dir, "edl")?;
        Ok(Self {
            config: Arc::new(config),
            holds: Arc::new(holds),
        })
    }

    /// The names of the lists this adapter serves.
    pub fn list_names(&self) -> Vec<String> {
        let mut names: Vec<_> = self.config.lists.values().cloned().collect();
        names.sort();
        names.dedup();
        names
    }

    /// A list in the firewalls' format: one entry per line, single addresses without a prefix.
    /// `None` for a list this adapter does not serve.
    pub fn render(&self, list: &str) -> Option<String> {
        if !self.config.lists.values().any(|l| l == list) {
            return None;
        }
        let mut entries: Vec<IpNet> = self
            .holds
            .entries(list)
            .iter()
            .filter_map(|e| e.parse().ok())
            .collect();
        entries.sort();
        let mut out = String::new();
        for entry in entries {
            if entry.prefix_len() == entry.max_prefix_len() {
                out.push_str(&entry.addr().to_string());
            } else {
                out.push_str(&entry.to_string());
            }
            out.push('\n');
        }
        Some(out)
    }
}

impl Adapter for Edl {
    type Handle = EdlHandle;

    fn name(&self) -> &str {
        &self.config.name
    }

    fn kinds(&self) -> Vec<ActionKind> {
        self.config.lists.keys().cloned().collect()
    }

    fn addresses(&self, step: &Step) -> Vec<Field> {
        vec![crate::address::field(step)]
    }

    fn validate(&self, step: &Step) -> Result<(), Invalid> {
        address(step).map(|_| ())
    }

    async fn execute(&self, action: Action<'_>) -> Result<EdlHandle> {
        let step = action.step;
        let list = self.config.lists.get(&step.kind).ok_or_else(|| {
            Error::permanent(format!("the EDL adapter has no list for `{}`", step.kind))
        })?;
        let entry = address(step).map_err(|e| Error::permanent(e.to_string()))?;
        within_floor(entry, self.config.min_prefix_v4, self.config.min_prefix_v6)?;
        let handle = EdlHandle {
            list: list.clone(),
            entry,
            holder: action.holder(),
        };
        self.holds
            .hold(&handle.list, &entry.to_string(), &handle.holder, None)
            .await?;
        Ok(handle)
    }

    async fn rollback(&self, handle: EdlHandle) -> Result<()> {
        self.holds
            .release(&handle.list, &handle.entry.to_string(), &handle.holder)
            .await
            .map(drop)
    }
}

#[cfg(test)]
mod tests;
