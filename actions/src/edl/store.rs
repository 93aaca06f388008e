//! The EDL lists and their file.
//!
//! Changes apply in memory at once and are then made durable; a caller returns only once a write
//! that includes its change has been synced. Writes are coalesced: while one is in progress,
//! later changes pile up and the next write carries them all.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    io::Write,
    path::{Path, PathBuf},
};

use ipnet::IpNet;
use parking_lot::Mutex;

use super::EdlHandle;
use crate::{Error, Result};

/// list → entry → the intent steps holding it.
type Lists = BTreeMap<String, BTreeMap<IpNet, BTreeSet<String>>>;

pub(super) struct Store {
    path: PathBuf,
    state: Mutex<State>,
    /// The generation last synced to disk; held while writing, so writers queue here.
    synced: tokio::sync::Mutex<u64>,
}

struct State {
    lists: Lists,
    /// Bumped by each change, so a caller can tell whether a write already covers it.
    generation: u64,
}

impl Store {
    pub(super) fn open(path: PathBuf) -> Result<Self> {
        let lists = match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                Error::permanent(format!("EDL file `{}` is unreadable: {e}", path.display()))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Lists::new(),
            Err(e) => return Err(io_error(&path, &e)),
        };
        Ok(Self {
            path,
            state: Mutex::new(State {
                lists,
                generation: 0,
            }),
            synced: tokio::sync::Mutex::new(0),
        })
    }

    pub(super) fn entries(&self, list: &str) -> Vec<IpNet> {
        let state = self.state.lock();
        state
            .lists
            .get(list)
            .map(|entries| entries.keys().copied().collect())
            .unwrap_or_default()
    }

    pub(super) async fn add(&self, h: &EdlHandle) -> Result<()> {
        let mut inserted = false;
        let generation = self.change(|lists| {
            let holders = lists
                .entry(h.list.clone())
                .or_default()
                .entry(h.entry)
                .or_default();
            inserted = holders.insert(h.holder.clone());
            inserted
        });
        let result = self.sync(generation).await;
        if result.is_err() && inserted {
            // The caller will record a failure and never roll this back, so a later write must
            // not publish it.
            self.change(|lists| unhold(lists, h));
        }
        result
    }

    pub(super) async fn remove(&self, h: &EdlHandle) -> Result<()> {
        let generation = self.change(|lists| unhold(lists, h));
        self.sync(generation).await
    }

    /// Applies a change; returns the generation a sync must reach to cover it.
    fn change(&self, f: impl FnOnce(&mut Lists) -> bool) -> u64 {
        let mut state = self.state.lock();
        if f(&mut state.lists) {
            state.generation += 1;
        }
        state.generation
    }

    async fn sync(&self, generation: u64) -> Result<()> {
        let mut synced = self.synced.lock().await;
        if *synced >= generation {
            return Ok(());
        }
        let (bytes, snapshot) = {
            let state = self.state.lock();
            let bytes = serde_json::to_vec_pretty(&state.lists)
                .map_err(|e| Error::permanent(format!("cannot encode EDL lists: {e}")))?;
            (bytes, state.generation)
        };
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || write_atomically(&path, &bytes))
            .await
            .map_err(|e| Error::transient(format!("EDL write task failed: {e}")))??;
        *synced = snapshot;
        Ok(())
    }
}

fn unhold(lists: &mut Lists, h: &EdlHandle) -> bool {
    let Some(entries) = lists.get_mut(&h.list) else {
        return false;
    };
    let Some(holders) = entries.get_mut(&h.entry) else {
        return false;
    };
    let removed = holders.remove(&h.holder);
    if holders.is_empty() {
        entries.remove(&h.entry);
    }
    removed
}

/// Replaces the file so a crash leaves either the old or the new lists, never a mix.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    let dir = path.parent().unwrap_or(Path::new("."));
    let write = || -> std::io::Result<()> {
        fs::create_dir_all(dir)?;
        let mut file = fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_data()?;
        fs::rename(&tmp, path)?;
        fs::File::open(dir)?.sync_all()
    };
    write().map_err(|e| io_error(path, &e))
}

fn io_error(path: &Path, e: &std::io::Error) -> Error {
    Error::transient(format!("EDL file `{}`: {e}", path.display()))
}
