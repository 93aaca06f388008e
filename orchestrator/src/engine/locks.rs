//! One async lock per intent, created on demand and forgotten when no one holds or waits for it.

use std::{collections::HashMap, sync::Arc};

use parapet_model::IntentId;
use parking_lot::Mutex;
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

#[derive(Default)]
pub(super) struct Locks {
    map: Mutex<HashMap<IntentId, Arc<AsyncMutex<()>>>>,
}

/// Held while working on one intent; releases (and tidies) on drop.
pub(super) struct Guard {
    locks: Arc<Locks>,
    id: IntentId,
    guard: Option<OwnedMutexGuard<()>>,
}

impl Locks {
    pub(super) async fn lock(self: &Arc<Self>, id: IntentId) -> Guard {
        let mutex = self.map.lock().entry(id).or_default().clone();
        let guard = mutex.lock_owned().await;
        Guard {
            locks: self.clone(),
            id,
            guard: Some(guard),
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let mut map = self.locks.map.lock();
        drop(self.guard.take());
        // Only the map's copy left: no holder and no waiter.
        if map.get(&self.id).is_some_and(|m| Arc::strong_count(m) == 1) {
            map.remove(&self.id);
        }
    }
}
