//! The audit chain in the SQLite store: appending records under the chain's links and
//! seal in one immediate transaction, reading pages, and the head.

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::map_err;
use crate::store::{AuditChain, AuditHead, AuditRow, StoreError, StoreResult};

pub(super) fn append(
    conn: &mut Connection,
    records: &[String],
    chain: &dyn AuditChain,
) -> StoreResult<u64> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(map_err)?;
    // Cached statements: this runs for every batch of audit records (parsing SQL was a
    // visible share of a request's instructions; docs/BENCHMARKS.md).
    let head: Option<(u64, Vec<u8>)> = tx
        .prepare_cached("SELECT seq, hash FROM audit_head WHERE one = 1")
        .and_then(|mut s| s.query_row([], |r| Ok((r.get(0)?, r.get(1)?))))
        .optional()
        .map_err(map_err)?;
    let (mut seq, mut hash) = match head {
        None => (0u64, [0u8; 32]),
        Some((seq, h)) => (
            seq,
            h.as_slice()
                .try_into()
                .map_err(|_| StoreError::Corrupt("audit head hash is not 32 bytes".into()))?,
        ),
    };
    {
        let mut insert = tx
            .prepare_cached("INSERT INTO audit (seq, record, hash) VALUES (?1, ?2, ?3)")
            .map_err(map_err)?;
        for record in records {
            seq += 1;
            hash = chain.link(&hash, seq, record);
            insert
                .execute(params![seq, record, hash.to_vec()])
                .map_err(map_err)?;
        }
    }
    tx.prepare_cached(
        "INSERT INTO audit_head (one, seq, hash, mac) VALUES (1, ?1, ?2, ?3) \
         ON CONFLICT (one) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, mac = excluded.mac",
    )
    .and_then(|mut s| s.execute(params![seq, hash.to_vec(), chain.seal(seq, &hash)]))
    .map_err(map_err)?;
    tx.commit().map_err(map_err)?;
    Ok(seq)
}

pub(super) fn records(conn: &Connection, after: u64, limit: u32) -> StoreResult<Vec<AuditRow>> {
    let mut stmt = conn
        .prepare_cached("SELECT seq, record, hash FROM audit WHERE seq > ?1 ORDER BY seq LIMIT ?2")
        .map_err(map_err)?;
    let rows = stmt
        .query_map(params![after, limit], |r| {
            let hash: Vec<u8> = r.get(2)?;
            Ok(AuditRow {
                seq: r.get(0)?,
                record: r.get(1)?,
                hash: hash.as_slice().try_into().unwrap_or([0u8; 32]),
            })
        })
        .map_err(map_err)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(map_err)
}

pub(super) fn head(conn: &Connection) -> StoreResult<Option<AuditHead>> {
    sealed_row(conn, "SELECT seq, hash, mac FROM audit_head WHERE one = 1")
}

pub(super) fn checkpoint(conn: &Connection) -> StoreResult<Option<AuditHead>> {
    sealed_row(
        conn,
        "SELECT seq, hash, mac FROM audit_checkpoint WHERE one = 1",
    )
}

/// Removes records up to `through` and moves the checkpoint there (see `KeyStore::prune_audit`).
pub(super) fn prune(
    conn: &mut Connection,
    through: u64,
    chain: &dyn AuditChain,
) -> StoreResult<AuditHead> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(map_err)?;
    let hash: Option<Vec<u8>> = tx
        .query_row("SELECT hash FROM audit WHERE seq = ?1", [through], |r| {
            r.get(0)
        })
        .optional()
        .map_err(map_err)?;
    let Some(hash) = hash else {
        return Err(StoreError::Other(format!(
            "audit record {through} is not in the log (already pruned, or not written yet)"
        )));
    };
    let hash: [u8; 32] = hash.as_slice().try_into().map_err(|_| {
        StoreError::Corrupt(format!("audit record {through}: hash is not 32 bytes"))
    })?;
    let mac = chain.seal_checkpoint(through, &hash);
    tx.execute("DELETE FROM audit WHERE seq <= ?1", [through])
        .map_err(map_err)?;
    tx.execute(
        "INSERT INTO audit_checkpoint (one, seq, hash, mac) VALUES (1, ?1, ?2, ?3) \
         ON CONFLICT (one) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, mac = excluded.mac",
        params![through, hash.to_vec(), mac],
    )
    .map_err(map_err)?;
    tx.commit().map_err(map_err)?;
    Ok(AuditHead {
        seq: through,
        hash,
        mac,
    })
}

/// The one row of `audit_head` or `audit_checkpoint`.
fn sealed_row(conn: &Connection, sql: &str) -> StoreResult<Option<AuditHead>> {
    let head: Option<(u64, Vec<u8>, Vec<u8>)> = conn
        .query_row(sql, [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()
        .map_err(map_err)?;
    head.map(|(seq, hash, mac)| {
        Ok(AuditHead {
            seq,
            hash: hash
                .as_slice()
                .try_into()
                .map_err(|_| StoreError::Corrupt("audit head hash is not 32 bytes".into()))?,
            mac,
        })
    })
    .transpose()
}
