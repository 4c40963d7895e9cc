//! The free-space guard: writes are refused, before they begin, while the file system
//! that holds the database has less room than configured. Changes of state stop first
//! (at the configured bound); audit records, which every operation needs, go on until
//! half of it, so that crypto operations and the records of the refusals outlive the
//! changes by a margin. Pruning the audit log (the remedy) is never refused.

use std::path::Path;

use crate::store::StoreError;

/// What a write is, for the guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Write {
    /// A change of state: projects, keys, identities, aliases, metadata.
    State,
    /// Appending audit records, or the health check's heartbeat.
    Audit,
}

/// Bytes free to an unprivileged writer on the file system holding `dir`.
fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    let st = rustix::fs::statvfs(dir)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

const MIB: u64 = 1024 * 1024;

/// `Ok` when a write of `kind` may begin with `min_free` bytes required (0: no guard).
pub(super) fn check(dir: &Path, min_free: u64, kind: Write) -> Result<(), StoreError> {
    if min_free == 0 {
        return Ok(());
    }
    let (need, what) = match kind {
        Write::State => (min_free, "changes"),
        Write::Audit => (min_free / 2, "audit records"),
    };
    match free_bytes(dir) {
        Ok(free) if free < need => Err(StoreError::InsufficientStorage(format!(
            "{} MiB free on the database's file system; {what} need {} MiB (store.min_free_mib)",
            free / MIB,
            need.div_ceil(MIB),
        ))),
        Ok(_) => Ok(()),
        // The write itself reports a file system that cannot be reached.
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot read the free space of the store's file system");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bounds_apply_by_kind_of_write() {
        let dir = tempfile::tempdir().unwrap();
        let free = free_bytes(dir.path()).unwrap();
        assert!(free > 0);
        // Off.
        check(dir.path(), 0, Write::State).unwrap();
        // Well within: both go on.
        check(dir.path(), 2 * MIB, Write::State).unwrap();
        check(dir.path(), 2 * MIB, Write::Audit).unwrap();
        // Between the bound and its half: changes stop, audit records go on.
        let between = free + free / 2;
        let e = check(dir.path(), between, Write::State).unwrap_err();
        assert!(matches!(e, StoreError::InsufficientStorage(_)), "{e:?}");
        assert!(e.to_string().contains("store.min_free_mib"), "{e}");
        check(dir.path(), between, Write::Audit).unwrap();
        // Past it: both stop.
        for kind in [Write::State, Write::Audit] {
            let e = check(dir.path(), 4 * free + 4 * MIB, kind).unwrap_err();
            assert!(matches!(e, StoreError::InsufficientStorage(_)), "{e:?}");
        }
    }
}
