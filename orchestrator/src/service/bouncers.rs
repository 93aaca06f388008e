//! CrowdSec bouncers reading Parapet's decisions: who they are (a key each, kept hashed in the
//! bouncer file that `parapet bouncer add` writes; the file is read again when it changes), the
//! lists each reads, and how far each has read (a journal position per bouncer, kept in
//! `DATA/bouncers.json` so a restart of Parapet neither repeats nor drops a change).

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    io,
    path::{Path, PathBuf},
    sync::Arc,
    time::SystemTime,
};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::{
    Error, Result, Service,
    decisions::{Changes, Decision, Lists},
};

/// One line of the bouncer file: the SHA-256 of a key, never the key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub name: String,
    pub sha256: String,
    /// The lists it reads (`[edl.lists]` names); `block` when empty.
    #[serde(default)]
    pub lists: Vec<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    #[serde(default)]
    pub bouncers: Vec<Entry>,
}

impl File {
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text)
                .map_err(|e| anyhow::anyhow!("bouncer file `{}`: {e}", path.display())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(anyhow::anyhow!(
                "cannot read bouncer file `{}`: {e}",
                path.display()
            )),
        }
    }
}

/// A bouncer that presented a known key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bouncer {
    pub name: String,
    pub lists: BTreeSet<String>,
}

/// What Parapet last saw of a bouncer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub last_pull: SystemTime,
    /// Its `User-Agent`.
    pub version: String,
    /// How far it has read.
    pub cursor: u64,
}

#[derive(Default)]
struct Known {
    by_key: HashMap<[u8; 32], Arc<Bouncer>>,
    /// The file as it was when read: modification time, inode, length (a rewrite within one
    /// tick of a coarse clock still differs in inode: the CLI replaces the file).
    read_at: Option<crate::auth::FileStamp>,
}

/// The bouncers, their keys and how far each has read.
pub struct Bouncers {
    file: Option<PathBuf>,
    cursors_file: PathBuf,
    lists: Lists,
    known: Mutex<Known>,
    cursors: Mutex<BTreeMap<String, u64>>,
    /// Held while the cursors file is written, so writes go one at a time, each of the newest
    /// cursors, and no pull waits on a disk for the cursors themselves.
    saving: Mutex<()>,
    seen: Mutex<BTreeMap<String, Seen>>,
}

impl Bouncers {
    /// From the bouncer file (none: every key is refused), the lists of `[edl.lists]`, and the
    /// data directory's cursors.
    pub fn new(file: Option<PathBuf>, lists: Lists, data_dir: &Path) -> anyhow::Result<Self> {
        let cursors_file = data_dir.join("bouncers.json");
        let cursors = match std::fs::read(&cursors_file) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| anyhow::anyhow!("`{}` is damaged: {e}", cursors_file.display()))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e.into()),
        };
        let bouncers = Self {
            file,
            cursors_file,
            lists,
            known: Mutex::new(Known::default()),
            cursors: Mutex::new(cursors),
            saving: Mutex::new(()),
            seen: Mutex::new(BTreeMap::new()),
        };
        bouncers.reload()?;
        Ok(bouncers)
    }

    /// Reads the bouncer file again if it changed since it was read.
    fn reload(&self) -> anyhow::Result<()> {
        let Some(path) = &self.file else {
            return Ok(());
        };
        let modified = crate::auth::file_stamp(path);
        if modified.is_some() && self.known.lock().read_at == modified {
            return Ok(());
        }
        let file = File::read(path)?;
        let mut by_key = HashMap::new();
        let mut names = BTreeSet::new();
        for (i, entry) in file.bouncers.into_iter().enumerate() {
            anyhow::ensure!(
                names.insert(entry.name.clone()),
                "bouncer file `{}`: `{}` is listed twice",
                path.display(),
                entry.name
            );
            let hash = crate::auth::sha256_hex(&entry.sha256).ok_or_else(|| {
                anyhow::anyhow!(
                    "bouncer file `{}`: bouncers[{i}].sha256 must be 64 hex digits",
                    path.display()
                )
            })?;
            let lists = if entry.lists.is_empty() {
                BTreeSet::from(["block".to_owned()])
            } else {
                entry.lists.into_iter().collect()
            };
            by_key.insert(
                hash,
                Arc::new(Bouncer {
                    name: entry.name,
                    lists,
                }),
            );
        }
        *self.known.lock() = Known {
            by_key,
            read_at: modified,
        };
        Ok(())
    }

    /// The bouncer a key names.
    fn identify(&self, key: Option<&str>) -> Result<Arc<Bouncer>> {
        if let Err(e) = self.reload() {
            tracing::error!(error = %e, "cannot read the bouncer file; the keys read before stay");
        }
        let hash = crate::auth::token_hash(key.unwrap_or_default());
        self.known
            .lock()
            .by_key
            .get(&hash)
            .cloned()
            .ok_or_else(|| Error::Forbidden("access forbidden".into()))
    }

    fn save_cursors(&self, cursors: &BTreeMap<String, u64>) -> io::Result<()> {
        let tmp = self.cursors_file.with_extension("json.tmp");
        let bytes = serde_json::to_vec(cursors).map_err(io::Error::other)?;
        {
            use std::io::Write as _;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &self.cursors_file)
    }

    /// What Parapet last saw of each bouncer.
    pub fn seen(&self) -> BTreeMap<String, Seen> {
        self.seen.lock().clone()
    }
}

impl Service {
    fn bouncers(&self) -> Result<&Bouncers> {
        self.published
            .as_ref()
            .and_then(|p| p.bouncers.as_ref())
            .ok_or_else(|| Error::Forbidden("access forbidden".into()))
    }

    /// The bouncer presenting `key` (its `X-Api-Key`).
    pub fn bouncer(&self, key: Option<&str>) -> Result<Arc<Bouncer>> {
        self.bouncers()?.identify(key)
    }

    /// A bouncer's pull of the decision stream: at start-up every decision in force, then what
    /// changed since its last pull, each change once.
    pub fn bouncer_pull(&self, bouncer: &Bouncer, startup: bool, version: &str) -> Result<Changes> {
        let registry = self.bouncers()?;
        let cursor = registry.cursors.lock().get(&bouncer.name).copied();
        let first = self.engine.state().first_seq()?;
        let changes = match cursor {
            // a cursor from before what retention kept cannot say what was deleted: start over
            Some(after) if !startup && after + 1 >= first => {
                self.decision_changes(&registry.lists, &bouncer.lists, after)?
            }
            _ => {
                let (new, through) = self.decisions_in_force(&registry.lists, &bouncer.lists)?;
                Changes {
                    new,
                    deleted: Vec::new(),
                    through,
                }
            }
        };
        let moved = cursor != Some(changes.through);
        if moved {
            registry
                .cursors
                .lock()
                .insert(bouncer.name.clone(), changes.through);
            // an unchanged feed need not be written: read again after a restart, it is the same
            if startup || !changes.new.is_empty() || !changes.deleted.is_empty() || cursor.is_none()
            {
                let _one_at_a_time = registry.saving.lock();
                let newest = registry.cursors.lock().clone();
                registry.save_cursors(&newest)?;
            }
        }
        registry.seen.lock().insert(
            bouncer.name.clone(),
            Seen {
                last_pull: SystemTime::now(),
                version: version.to_owned(),
                cursor: changes.through,
            },
        );
        self.engine.metrics().bouncer_pull(&bouncer.name);
        Ok(changes)
    }

    /// Every decision in force on a bouncer's lists (its live queries).
    pub fn bouncer_decisions(&self, bouncer: &Bouncer) -> Result<Vec<Decision>> {
        let registry = self.bouncers()?;
        Ok(self.decisions_in_force(&registry.lists, &bouncer.lists)?.0)
    }
}
