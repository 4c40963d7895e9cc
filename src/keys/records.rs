//! The cache of key records read from the store.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::store::KeyRecord;

/// How long a key record read from the store is used without asking it again, when no
/// change notice came meanwhile (see `KeyService::follow_changes`).
pub const KEY_RECORD_TTL: Duration = Duration::from_secs(5);

/// Key records by id. A read that raced a change is not cached: every change moves
/// `generation`, and a read caches only if the generation it started with still holds.
#[derive(Default)]
pub(super) struct RecordCache {
    entries: Mutex<HashMap<Uuid, (Instant, KeyRecord)>>,
    pub(super) generation: AtomicU64,
}

impl RecordCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, (Instant, KeyRecord)>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn get(&self, id: Uuid) -> Option<KeyRecord> {
        match self.lock().get(&id) {
            Some((at, record)) if at.elapsed() < KEY_RECORD_TTL => Some(record.clone()),
            _ => None,
        }
    }

    pub(super) fn put(&self, record: KeyRecord, generation: u64) {
        let mut entries = self.lock();
        if self.generation.load(Ordering::SeqCst) == generation {
            if entries.len() >= 100_000 {
                entries.clear();
            }
            entries.insert(record.id, (Instant::now(), record));
        }
    }

    pub(super) fn forget(&self, id: Option<Uuid>) {
        let mut entries = self.lock();
        self.generation.fetch_add(1, Ordering::SeqCst);
        match id {
            Some(id) => {
                entries.remove(&id);
            }
            None => entries.clear(),
        }
    }
}
