//! The EDL lists and their files.
//!
//! Changes apply in memory at once and are then made durable; a caller returns only once a sync
//! that includes its change has finished. On disk the lists are a snapshot (`edl.json`) and a
//! log of the changes since (`edl.log`, one JSON line per change, `fdatasync`'d), so a change
//! costs a line, not a rewrite of every list. When the log grows past the lists' size it is
//! folded into a new snapshot. Syncs are coalesced: while one runs, later changes pile up and
//! the next carries them all.
//!
//! Replaying the log over a snapshot that already holds some of its changes is harmless: each
//! line sets whether one holder holds one entry, so the last line for it wins either way.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs::{self, File, OpenOptions},
    io::Write,
    path::{Path, PathBuf},
    sync::Arc,
};

use ipnet::IpNet;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::EdlHandle;
use crate::{Error, Result};

/// list → entry → the intent steps holding it.
type Lists = BTreeMap<String, BTreeMap<IpNet, BTreeSet<String>>>;

/// One change, as a line of the log.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Change {
    hold: bool,
    list: String,
    entry: IpNet,
    holder: String,
}

pub(super) struct Store {
    snapshot: PathBuf,
    state: Mutex<State>,
    /// The log file and the generation last synced; held while syncing, so syncs queue here.
    disk: tokio::sync::Mutex<Disk>,
}

struct State {
    lists: Lists,
    /// Changes not yet written.
    pending: Vec<Change>,
    /// Bumped by each change, so a caller can tell whether a sync already covers it.
    generation: u64,
}

struct Disk {
    log: Arc<Mutex<File>>,
    log_path: PathBuf,
    synced: u64,
    /// Lines in the log, to know when to fold it into the snapshot.
    lines: usize,
}

impl Store {
    pub(super) fn open(dir: &Path) -> Result<Self> {
        fs::create_dir_all(dir).map_err(|e| io_error(dir, &e))?;
        let snapshot = dir.join("edl.json");
        let log_path = dir.join("edl.log");
        let mut lists: Lists = match fs::read(&snapshot) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                Error::permanent(format!(
                    "EDL file `{}` is unreadable: {e}",
                    snapshot.display()
                ))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Lists::new(),
            Err(e) => return Err(io_error(&snapshot, &e)),
        };
        let mut lines = 0;
        let mut valid = 0;
        let text = match fs::read(&log_path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io_error(&log_path, &e)),
        };
        for line in text.split_inclusive(|b| *b == b'\n') {
            // A torn last line was never acknowledged.
            let Ok(change) = serde_json::from_slice::<Change>(line) else {
                break;
            };
            if !line.ends_with(b"\n") {
                break;
            }
            apply(&mut lists, &change);
            lines += 1;
            valid += line.len();
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| io_error(&log_path, &e))?;
        if valid < text.len() {
            // Cut it off, or what is appended next would follow garbage.
            log.set_len(valid as u64)
                .map_err(|e| io_error(&log_path, &e))?;
        }
        Ok(Self {
            snapshot,
            state: Mutex::new(State {
                lists,
                pending: Vec::new(),
                generation: 0,
            }),
            disk: tokio::sync::Mutex::new(Disk {
                log: Arc::new(Mutex::new(log)),
                log_path,
                synced: 0,
                lines,
            }),
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
        let (generation, changed) = self.change(h, true);
        let result = self.sync(generation).await;
        if result.is_err() && changed {
            // The caller records a failure and will never roll this back, so a later sync
            // must not publish it.
            self.change(h, false);
        }
        result
    }

    pub(super) async fn remove(&self, h: &EdlHandle) -> Result<()> {
        let (generation, _) = self.change(h, false);
        self.sync(generation).await
    }

    /// Applies a change; returns the generation a sync must reach to cover it, and whether
    /// anything changed.
    fn change(&self, h: &EdlHandle, hold: bool) -> (u64, bool) {
        let change = Change {
            hold,
            list: h.list.clone(),
            entry: h.entry,
            holder: h.holder.clone(),
        };
        let mut state = self.state.lock();
        let changed = apply(&mut state.lists, &change);
        if changed {
            state.pending.push(change);
            state.generation += 1;
        }
        (state.generation, changed)
    }

    async fn sync(&self, generation: u64) -> Result<()> {
        let mut disk = self.disk.lock().await;
        if disk.synced >= generation {
            return Ok(());
        }
        let (pending, reached, snapshot) = {
            let mut state = self.state.lock();
            let pending = std::mem::take(&mut state.pending);
            let live: usize = state.lists.values().map(BTreeMap::len).sum();
            let fold = disk.lines + pending.len() > 1024.max(2 * live);
            (pending, state.generation, fold.then(|| state.lists.clone()))
        };
        let mut bytes = Vec::new();
        for change in &pending {
            serde_json::to_writer(&mut bytes, change)
                .map_err(|e| Error::permanent(format!("cannot encode an EDL change: {e}")))?;
            bytes.push(b'\n');
        }
        let log = disk.log.clone();
        let (log_path, snapshot_path) = (disk.log_path.clone(), self.snapshot.clone());
        let written = tokio::task::spawn_blocking(move || -> Result<bool> {
            let mut file = log.lock();
            let before = file.metadata().map_err(|e| io_error(&log_path, &e))?.len();
            if let Err(e) = file.write_all(&bytes).and_then(|()| file.sync_data()) {
                // Cut a partial line off, or the lines after it would be unreadable.
                let _ = file.set_len(before);
                return Err(io_error(&log_path, &e));
            }
            let Some(lists) = snapshot else {
                return Ok(false);
            };
            write_snapshot(&snapshot_path, &lists)?;
            file.set_len(0)
                .and_then(|()| file.sync_all())
                .map_err(|e| io_error(&log_path, &e))?;
            Ok(true)
        })
        .await
        .map_err(|e| Error::transient(format!("EDL write task failed: {e}")));
        match written {
            Ok(Ok(folded)) => {
                disk.lines = if folded {
                    0
                } else {
                    disk.lines + pending.len()
                };
                disk.synced = reached;
                Ok(())
            }
            Ok(Err(e)) | Err(e) => {
                // Put the changes back so the next sync writes them.
                let mut state = self.state.lock();
                let later = std::mem::replace(&mut state.pending, pending);
                state.pending.extend(later);
                Err(e)
            }
        }
    }
}

/// Applies a change; whether anything changed.
fn apply(lists: &mut Lists, c: &Change) -> bool {
    if c.hold {
        let holders = lists
            .entry(c.list.clone())
            .or_default()
            .entry(c.entry)
            .or_default();
        return holders.insert(c.holder.clone());
    }
    let Some(entries) = lists.get_mut(&c.list) else {
        return false;
    };
    let Some(holders) = entries.get_mut(&c.entry) else {
        return false;
    };
    let removed = holders.remove(&c.holder);
    if holders.is_empty() {
        entries.remove(&c.entry);
    }
    removed
}

/// Replaces the snapshot so a crash leaves either the old or the new one, never a mix.
fn write_snapshot(path: &Path, lists: &Lists) -> Result<()> {
    let bytes = serde_json::to_vec(lists)
        .map_err(|e| Error::permanent(format!("cannot encode EDL lists: {e}")))?;
    let tmp = path.with_extension("json.tmp");
    let dir = path.parent().unwrap_or(Path::new("."));
    let write = || -> std::io::Result<()> {
        let mut file = File::create(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_data()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    };
    write().map_err(|e| io_error(path, &e))
}

fn io_error(path: &Path, e: &std::io::Error) -> Error {
    Error::transient(format!("EDL file `{}`: {e}", path.display()))
}
