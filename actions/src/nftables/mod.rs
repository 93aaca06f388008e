//! nftables: blocks and isolations in a Linux host's or gateway's own firewall.
//!
//! Parapet owns one table (`inet parapet` by default) and touches nothing outside it. `block_ip`
//! puts the address in a set whose rules drop its traffic both ways; `isolate_host` puts the
//! host's address in a set whose rules drop its traffic except with the management networks,
//! so the EDR console stays reachable. Elements carry the intent's TTL as their kernel timeout,
//! so a block lapses even if Parapet is gone; rollback deletes the element.
//!
//! As with the EDL, each element remembers which intent steps hold it ([`crate::holds`]): it
//! leaves the set with its last holder. Changes arriving together share one nft transaction
//! (see `batch`).

mod batch;
mod nft;

use std::{path::Path, sync::Arc, time::Duration};

use ipnet::IpNet;
use parapet_model::{ActionKind, Invalid, Step, intent::Field};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

pub use batch::BatchStats;

use crate::{
    Action, Adapter, Error, Result,
    address::{address, within_floor},
    holds::Holds,
    settings::{Problem, Setting, duration},
};

/// One nftables instance, as the config file declares it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NftablesConfig {
    pub name: String,
    /// The table Parapet owns, in family `inet`.
    #[serde(default = "default_table")]
    pub table: String,
    /// Act inside this network namespace (`ip netns exec`), e.g. a gateway's.
    pub netns: Option<String>,
    /// The nft program.
    #[serde(default = "default_nft")]
    pub nft: std::path::PathBuf,
    /// Networks an isolated host may still reach, and be reached from.
    #[serde(default)]
    pub management: Vec<IpNet>,
    /// Action kinds that block an address.
    #[serde(default = "default_block")]
    pub block: Vec<ActionKind>,
    /// Action kinds that isolate a host.
    #[serde(default = "default_isolate")]
    pub isolate: Vec<ActionKind>,
    #[serde(default = "default_v4")]
    pub min_prefix_v4: u8,
    #[serde(default = "default_v6")]
    pub min_prefix_v6: u8,
    /// How long one nft call may take.
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
}

fn default_table() -> String {
    "parapet".into()
}
fn default_nft() -> std::path::PathBuf {
    "nft".into()
}
fn default_block() -> Vec<ActionKind> {
    ["block_ip"].iter().filter_map(|k| k.parse().ok()).collect()
}
fn default_isolate() -> Vec<ActionKind> {
    ["isolate_host"]
        .iter()
        .filter_map(|k| k.parse().ok())
        .collect()
}
fn default_v4() -> u8 {
    16
}
fn default_v6() -> u8 {
    32
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

impl NftablesConfig {
    /// A config with every default, for `name`.
    pub fn named(name: &str) -> Self {
        Self {
            name: name.into(),
            table: default_table(),
            netns: None,
            nft: default_nft(),
            management: Vec::new(),
            block: default_block(),
            isolate: default_isolate(),
            min_prefix_v4: default_v4(),
            min_prefix_v6: default_v6(),
            timeout: default_timeout(),
        }
    }

    /// Checks what can be checked without running anything.
    pub fn check(&self) -> Result<(), Setting> {
        let word = crate::settings::is_word;
        if !word(&self.table, &[]) {
            return Err(Setting::new(
                "table",
                format!("table `{}` must be letters, digits and `_`", self.table),
            ));
        }
        if let Some(ns) = &self.netns
            && !word(ns, b"-.")
        {
            return Err(Setting::new(
                "netns",
                format!("netns `{ns}` must be letters, digits, `_`, `-` and `.`"),
            ));
        }
        if let Some(k) = self.block.iter().find(|k| self.isolate.contains(k)) {
            return Err(Setting::new(
                "block",
                format!("`{k}` is listed under both `block` and `isolate`"),
            ));
        }
        if let Some(n) = self.management.iter().find(|n| n.trunc() != **n) {
            return Err(Setting::new(
                "management",
                format!("management network `{n}` has host bits set"),
            ));
        }
        if self.min_prefix_v4 > 32 || self.min_prefix_v6 > 128 {
            return Err(Setting::new(
                "min_prefix_v4",
                "min_prefix_v4 is at most 32 and min_prefix_v6 at most 128",
            ));
        }
        Ok(())
    }
}

/// An nftables instance; clones share the worker and the holds.
#[derive(Clone)]
pub struct Nftables {
    config: Arc<NftablesConfig>,
    holds: Arc<Holds>,
    queue: mpsc::UnboundedSender<batch::Request>,
    stats: Arc<parking_lot::Mutex<BatchStats>>,
}

/// What undoes one nftables execution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NftablesHandle {
    pub set: String,
    pub entry: IpNet,
    pub holder: String,
}

impl Nftables {
    /// Installs (or brings up to date) Parapet's table and starts the batch worker. Fails
    /// if nft cannot be run or refuses the table: a misconfigured firewall is found at start,
    /// not at the first intent.
    pub async fn open(config: NftablesConfig, state_dir: &Path) -> Result<Self> {
        config
            .check()
            .map_err(|e| Error::permanent(e.to_string()))?;
        let nft = Self::nft(&config);
        nft.script(&nft::ruleset(&config.table, &config.management))
            .await
            .map_err(|e| {
                Error::permanent(format!("cannot install table `{}`: {e}", config.table))
            })?;
        let holds = Holds::open(state_dir, "nftables")?;
        let (queue, receiver) = mpsc::unbounded_channel();
        let stats = Arc::default();
        tokio::spawn(batch::worker(
            nft,
            config.table.clone(),
            receiver,
            Arc::clone(&stats),
        ));
        Ok(Self {
            config: Arc::new(config),
            holds: Arc::new(holds),
            queue,
            stats,
        })
    }

    /// What `open` would refuse, found without changing anything: the table is checked by
    /// the kernel (`nft -c`), not installed.
    pub async fn preflight(config: &NftablesConfig) -> Result<(), Problem> {
        config.check()?;
        Self::nft(config)
            .check(&nft::ruleset(&config.table, &config.management))
            .await
            .map_err(|error| Problem::Table {
                table: config.table.clone(),
                error,
            })
    }

    fn nft(config: &NftablesConfig) -> nft::Nft {
        nft::Nft {
            program: config.nft.clone(),
            netns: config.netns.clone(),
            timeout: config.timeout,
        }
    }

    /// How many transactions carried how many changes so far.
    pub fn stats(&self) -> BatchStats {
        *self.stats.lock()
    }

    fn purpose(&self, kind: &ActionKind) -> Option<&'static str> {
        if self.config.block.contains(kind) {
            Some("block")
        } else if self.config.isolate.contains(kind) {
            Some("isolate")
        } else {
            None
        }
    }
}

impl Adapter for Nftables {
    type Handle = NftablesHandle;

    fn name(&self) -> &str {
        &self.config.name
    }

    fn kinds(&self) -> Vec<ActionKind> {
        self.config
            .block
            .iter()
            .chain(&self.config.isolate)
            .cloned()
            .collect()
    }

    fn addresses(&self, step: &Step) -> Vec<Field> {
        vec![crate::address::field(step)]
    }

    fn validate(&self, step: &Step) -> Result<(), Invalid> {
        address(step).map(drop)
    }

    async fn execute(&self, action: Action<'_>) -> Result<NftablesHandle> {
        let step = action.step;
        let purpose = self.purpose(&step.kind).ok_or_else(|| {
            Error::permanent(format!(
                "nftables `{}` does not do `{}`",
                self.name(),
                step.kind
            ))
        })?;
        let entry = address(step).map_err(|e| Error::permanent(e.to_string()))?;
        within_floor(entry, self.config.min_prefix_v4, self.config.min_prefix_v6)?;
        let handle = NftablesHandle {
            set: nft::set_name(purpose, &entry),
            entry,
            holder: action.holder(),
        };
        let key = entry.to_string();
        let _one = self.holds.lock(&handle.set, &key).await;
        let held = self.holds.get(&handle.set, &key);
        if held
            .as_ref()
            .is_some_and(|h| h.holders.contains(&handle.holder))
        {
            // This step already acted.
            return Ok(handle);
        }
        batch::submit(
            &self.queue,
            batch::Change::Add {
                set: handle.set.clone(),
                net: entry,
                timeout: action.ttl.map(kernel_timeout),
                fresh: held.is_none(),
            },
        )
        .await?;
        self.holds
            .hold(&handle.set, &key, &handle.holder, None)
            .await?;
        Ok(handle)
    }

    /// The element keeps the later of its expiry and the new one.
    async fn extend(&self, handle: NftablesHandle, ttl: Duration) -> Result<()> {
        let _one = self
            .holds
            .lock(&handle.set, &handle.entry.to_string())
            .await;
        let held = self
            .holds
            .get(&handle.set, &handle.entry.to_string())
            .is_some_and(|h| h.holders.contains(&handle.holder));
        if !held {
            return Ok(());
        }
        batch::submit(
            &self.queue,
            batch::Change::Add {
                set: handle.set,
                net: handle.entry,
                timeout: Some(kernel_timeout(ttl)),
                fresh: false,
            },
        )
        .await
    }

    async fn rollback(&self, handle: NftablesHandle) -> Result<()> {
        let key = handle.entry.to_string();
        let _one = self.holds.lock(&handle.set, &key).await;
        let released = self
            .holds
            .release(&handle.set, &key, &handle.holder)
            .await?;
        if !released.last {
            return Ok(());
        }
        batch::submit(
            &self.queue,
            batch::Change::Delete {
                set: handle.set,
                net: handle.entry,
            },
        )
        .await
    }
}

/// Whole seconds, rounded up: the kernel must not lift a block before Parapet would.
fn kernel_timeout(ttl: Duration) -> u32 {
    u32::try_from(ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0)).unwrap_or(u32::MAX)
}
