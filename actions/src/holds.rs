//! Holds: which intent steps hold which entry of an adapter's lists, kept durably.
//!
//! Several intents may act on the same thing (two detections blocking one address, two
//! revoking one account). An adapter records each step's hold on the entry, and undoes the
//! action only when the last holder lets go. The first hold may carry data that outlives the
//! others (an account's state before it was disabled), so the last rollback can restore it.
//!
//! Changes apply in memory at once and are then made durable; a caller returns only once a sync
//! that includes its change has finished. On disk the holds are a snapshot (`NAME.json`) and a
//! log of the changes since (`NAME.log`, one JSON line per change, `fdatasync`'d), so a change
//! costs a line, not a rewrite of every list. When the log grows past the lists' size it is
//! folded into a new snapshot. Syncs are coalesced: while one runs, later changes pile up and
//! the next carries them all.
//!
//! Replaying the log over a snapshot that already holds some of its changes is harmless: each
//! line sets whether one holder holds one entry, so the last line for it wins either way.

use std::{
    collections::BTreeMap,
    fs::{self, File, OpenOptions},
    io::Write,
    path::{Path, PathBuf},
    sync::Arc,
};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    Error, Result,
    locks::{KeyGuard, KeyedLocks},
};

/// list → entry → who holds it.
type Lists = BTreeMap<String, BTreeMap<String, Held>>;

/// One entry's holders, and what its first holder left with it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Held {
    /// Sorted, each once. Almost always one: a vector of one costs a tenth of a set's node,
    /// and there is one of these per active action.
    pub holders: Vec<String>,
    /// Set by the first hold; kept until the last holder lets go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

/// One change, as a line of the log.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Change {
    hold: bool,
    list: String,
    entry: String,
    holder: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    data: Option<Value>,
}

/// The list of finished executions and their handles ([`Holds::keep`]).
const RUNS: &str = "runs";

/// What a release found.
#[derive(Debug, Clone, PartialEq)]
pub struct Released {
    /// This holder held the entry until now.
    pub was_held: bool,
    /// Nobody holds the entry any more: the action may be undone.
    pub last: bool,
    /// What the first holder left, when this was the last.
    pub data: Option<Value>,
}

/// The holds of one adapter instance.
pub struct Holds {
    what: String,
    /// One piece of work at a time per entry: deciding from the holders and acting must not
    /// interleave with another intent's on the same entry.
    locks: Arc<KeyedLocks<(String, String)>>,
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

impl Holds {
    /// Opens (or creates) `NAME.json` and `NAME.log` in `dir`.
    pub fn open(dir: &Path, name: &str) -> Result<Self> {
        let what = name.to_owned();
        fs::create_dir_all(dir).map_err(|e| io_error(&what, dir, &e))?;
        let snapshot = dir.join(format!("{name}.json"));
        let log_path = dir.join(format!("{name}.log"));
        let mut lists: Lists = match fs::read(&snapshot) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                Error::permanent(format!(
                    "{what} file `{}` is unreadable: {e}",
                    snapshot.display()
                ))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Lists::new(),
            Err(e) => return Err(io_error(&what, &snapshot, &e)),
        };
        let mut lines = 0;
        let mut valid = 0;
        let text = match fs::read(&log_path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io_error(&what, &log_path, &e)),
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
            .map_err(|e| io_error(&what, &log_path, &e))?;
        if valid < text.len() {
            // Cut it off, or what is appended next would follow garbage.
            log.set_len(valid as u64)
                .map_err(|e| io_error(&what, &log_path, &e))?;
        }
        Ok(Self {
            what,
            locks: Arc::default(),
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

    /// The handle an execution of `holder` kept with [`Holds::keep`], if it ran to the end:
    /// a repeat returns it instead of acting again.
    pub fn kept<H: serde::de::DeserializeOwned>(&self, holder: &str) -> Result<Option<H>> {
        let Some(data) = self.get(RUNS, holder).and_then(|h| h.data) else {
            return Ok(None);
        };
        serde_json::from_value(data)
            .map(Some)
            .map_err(|e| Error::permanent(format!("kept {} handle is unreadable: {e}", self.what)))
    }

    /// Records, durably, that `holder`'s execution is done and what undoes it.
    pub async fn keep<H: Serialize>(&self, holder: &str, handle: &H) -> Result<()> {
        let data = serde_json::to_value(handle)
            .map_err(|e| Error::permanent(format!("cannot encode {} handle: {e}", self.what)))?;
        self.hold(RUNS, holder, holder, Some(data)).await.map(drop)
    }

    /// Forgets `holder`'s kept handle once its rollback is done.
    pub async fn forget(&self, holder: &str) -> Result<()> {
        self.release(RUNS, holder, holder).await.map(drop)
    }

    /// Waits until no one else works on `entry`, and keeps it so until the guard drops.
    pub async fn lock(&self, list: &str, entry: &str) -> KeyGuard<(String, String)> {
        self.locks.lock((list.to_owned(), entry.to_owned())).await
    }

    /// The entries of a list that someone holds.
    pub fn entries(&self, list: &str) -> Vec<String> {
        let state = self.state.lock();
        state
            .lists
            .get(list)
            .map(|entries| entries.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Who holds an entry, and what its first holder left.
    pub fn get(&self, list: &str, entry: &str) -> Option<Held> {
        self.state.lock().lists.get(list)?.get(entry).cloned()
    }

    /// Records `holder` holding `entry`, durably. `data` is kept only if this is the first
    /// holder. Returns whether the entry was already held by someone else (so the action is
    /// already in force).
    pub async fn hold(
        &self,
        list: &str,
        entry: &str,
        holder: &str,
        data: Option<Value>,
    ) -> Result<bool> {
        let change = Change {
            hold: true,
            list: list.to_owned(),
            entry: entry.to_owned(),
            holder: holder.to_owned(),
            data,
        };
        let (generation, changed, others) = {
            let mut state = self.state.lock();
            let others = state
                .lists
                .get(list)
                .and_then(|l| l.get(entry))
                .is_some_and(|h| h.holders.iter().any(|x| x != holder));
            let (generation, changed) = state.change(change.clone());
            (generation, changed, others)
        };
        let result = self.sync(generation).await;
        if result.is_err() && changed {
            // The caller records a failure and will never roll this back, so a later sync
            // must not publish it.
            self.state.lock().change(Change {
                hold: false,
                data: None,
                ..change
            });
        }
        result.map(|()| others)
    }

    /// Lets go of `holder`'s hold on `entry`, durably.
    pub async fn release(&self, list: &str, entry: &str, holder: &str) -> Result<Released> {
        let (generation, released) = {
            let mut state = self.state.lock();
            let held = state.lists.get(list).and_then(|l| l.get(entry)).cloned();
            let was_held = held
                .as_ref()
                .is_some_and(|h| h.holders.iter().any(|x| x == holder));
            let last = held
                .as_ref()
                .is_none_or(|h| h.holders.iter().all(|x| x == holder));
            let (generation, _) = state.change(Change {
                hold: false,
                list: list.to_owned(),
                entry: entry.to_owned(),
                holder: holder.to_owned(),
                data: None,
            });
            let data = if last {
                held.and_then(|h| h.data)
            } else {
                None
            };
            (
                generation,
                Released {
                    was_held,
                    last,
                    data,
                },
            )
        };
        self.sync(generation).await.map(|()| released)
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
            serde_json::to_writer(&mut bytes, change).map_err(|e| {
                Error::permanent(format!("cannot encode a {} change: {e}", self.what))
            })?;
            bytes.push(b'\n');
        }
        let log = disk.log.clone();
        let (log_path, snapshot_path) = (disk.log_path.clone(), self.snapshot.clone());
        let what = self.what.clone();
        let written = tokio::task::spawn_blocking(move || -> Result<bool> {
            let mut file = log.lock();
            let before = file
                .metadata()
                .map_err(|e| io_error(&what, &log_path, &e))?
                .len();
            if let Err(e) = file.write_all(&bytes).and_then(|()| file.sync_data()) {
                // Cut a partial line off, or the lines after it would be unreadable.
                let _ = file.set_len(before);
                return Err(io_error(&what, &log_path, &e));
            }
            let Some(lists) = snapshot else {
                return Ok(false);
            };
            write_snapshot(&what, &snapshot_path, &lists)?;
            file.set_len(0)
                .and_then(|()| file.sync_all())
                .map_err(|e| io_error(&what, &log_path, &e))?;
            Ok(true)
        })
        .await
        .map_err(|e| Error::transient(format!("{} write task failed: {e}", self.what)));
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

impl State {
    /// Applies a change; returns the generation a sync must reach to cover it, and whether
    /// anything changed.
    fn change(&mut self, change: Change) -> (u64, bool) {
        let changed = apply(&mut self.lists, &change);
        if changed {
            self.pending.push(change);
            self.generation += 1;
        }
        (self.generation, changed)
    }
}

/// Applies a change; whether anything changed.
fn apply(lists: &mut Lists, c: &Change) -> bool {
    if c.hold {
        let held = lists
            .entry(c.list.clone())
            .or_default()
            .entry(c.entry.clone())
            .or_insert_with(|| Held {
                holders: Vec::with_capacity(1),
                data: c.data.clone(),
            });
        return match held.holders.binary_search(&c.holder) {
            Ok(_) => false,
            Err(at) => {
                held.holders.insert(at, c.holder.clone());
                true
            }
        };
    }
    let Some(entries) = lists.get_mut(&c.list) else {
        return false;
    };
    let Some(held) = entries.get_mut(&c.entry) else {
        return false;
    };
    let removed = match held.holders.binary_search(&c.holder) {
        Ok(at) => {
            held.holders.remove(at);
            true
        }
        Err(_) => false,
    };
    if held.holders.is_empty() {
        entries.remove(&c.entry);
    }
    removed
}

/// Replaces the snapshot so a crash leaves either the old or the new one, never a mix.
fn write_snapshot(what: &str, path: &Path, lists: &Lists) -> Result<()> {
    let bytes = serde_json::to_vec(lists)
        .map_err(|e| Error::permanent(format!("cannot encode {what} holds: {e}")))?;
    let tmp = path.with_extension("json.tmp");
    let dir = path.parent().unwrap_or(Path::new("."));
    let write = || -> std::io::Result<()> {
        let mut file = File::create(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_data()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    };
    write().map_err(|e| io_error(what, path, &e))
}

fn io_error(what: &str, path: &Path, e: &std::io::Error) -> Error {
    Error::transient(format!("{what} file `{}`: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[tokio::test]
    async fn the_first_holders_data_comes_back_with_the_last_release_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let holds = Holds::open(dir.path(), "test").unwrap();
        let before = json!({"enabled": true});
        assert!(
            !holds
                .hold("accounts", "alice", "i1/0", Some(before.clone()))
                .await
                .unwrap()
        );
        // A second holder finds it in force already; its data (the state it saw) is not kept.
        assert!(
            holds
                .hold("accounts", "alice", "i2/0", Some(json!({"enabled": false})))
                .await
                .unwrap()
        );
        let first = holds.release("accounts", "alice", "i1/0").await.unwrap();
        assert_eq!(
            (first.was_held, first.last, first.data),
            (true, false, None)
        );

        let reopened = Holds::open(dir.path(), "test").unwrap();
        assert_eq!(
            reopened.get("accounts", "alice").unwrap().data,
            Some(before.clone())
        );
        let last = reopened.release("accounts", "alice", "i2/0").await.unwrap();
        assert_eq!(
            (last.was_held, last.last, last.data),
            (true, true, Some(before))
        );
        // Releasing again finds nothing and changes nothing.
        let again = reopened.release("accounts", "alice", "i2/0").await.unwrap();
        assert_eq!(
            (again.was_held, again.last, again.data),
            (false, true, None)
        );
        assert!(reopened.entries("accounts").is_empty());
    }
}
