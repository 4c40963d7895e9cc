//! The cache of key records read from the store.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use uuid::Uuid;

use super::bounded::Bounded;
use crate::store::KeyRecord;

/// How long a key record read from the store is used without asking it again, when no
/// change notice came meanwhile (see `KeyService::follow_changes`).
pub const KEY_RECORD_TTL: Duration = Duration::from_secs(5);

/// The default bound of `keys.record_cache_entries`.
pub const DEFAULT_RECORD_ENTRIES: usize = 100_000;

/// Key records by id, at most a configured number. A read that raced a change is not
/// cached: every change moves `generation`, and a read caches only if the generation it
/// started with still holds.
pub(super) struct RecordCache {
    entries: Mutex<Bounded<Uuid, KeyRecord>>,
    pub(super) generation: AtomicU64,
}

impl Default for RecordCache {
    fn default() -> Self {
        Self::with_capacity(DEFAULT_RECORD_ENTRIES)
    }
}

impl RecordCache {
    pub(super) fn with_capacity(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(Bounded::new(capacity, KEY_RECORD_TTL)),
            generation: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Bounded<Uuid, KeyRecord>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn get(&self, id: Uuid) -> Option<KeyRecord> {
        self.lock().get(&id)
    }

    pub(super) fn put(&self, record: KeyRecord, generation: u64) {
        let mut entries = self.lock();
        if self.generation.load(Ordering::SeqCst) == generation {
            entries.put(record.id, record);
        }
    }

    pub(super) fn forget(&self, id: Option<Uuid>) {
        let mut entries = self.lock();
        self.generation.fetch_add(1, Ordering::SeqCst);
        match id {
            Some(id) => entries.remove(&id),
            None => entries.clear(),
        }
    }
}
