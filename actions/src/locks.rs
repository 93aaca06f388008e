//! One async lock per key, created on demand and forgotten when no one holds or waits for it:
//! work on one intent, or on one entry an adapter changes, goes one at a time while work on
//! others goes on beside it.

use std::{collections::HashMap, hash::Hash, sync::Arc};

use parking_lot::Mutex;
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

pub struct KeyedLocks<K> {
    map: Mutex<HashMap<K, Arc<AsyncMutex<()>>>>,
}

impl<K> Default for KeyedLocks<K> {
    fn default() -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
        }
    }
}

/// Held while working on one key; releases (and tidies) on drop.
pub struct KeyGuard<K: Hash + Eq> {
    locks: Arc<KeyedLocks<K>>,
    key: Option<K>,
    guard: Option<OwnedMutexGuard<()>>,
}

impl<K: Hash + Eq + Clone> KeyedLocks<K> {
    pub async fn lock(self: &Arc<Self>, key: K) -> KeyGuard<K> {
        let mutex = self.map.lock().entry(key.clone()).or_default().clone();
        let guard = mutex.lock_owned().await;
        KeyGuard {
            locks: self.clone(),
            key: Some(key),
            guard: Some(guard),
        }
    }
}

impl<K: Hash + Eq> Drop for KeyGuard<K> {
    fn drop(&mut self) {
        let mut map = self.locks.map.lock();
        drop(self.guard.take());
        // Only the map's copy left: no holder and no waiter.
        if let Some(key) = self.key.take()
            && map.get(&key).is_some_and(|m| Arc::strong_count(m) == 1)
        {
            map.remove(&key);
        }
    }
}
