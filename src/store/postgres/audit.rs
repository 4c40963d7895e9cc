//! The audit chain in the PostgreSQL store: appends ordered across gateways by the head
//! row's lock (an advisory lock for the very first), pages, and the head.

use postgres::IsolationLevel;

use super::pool::{Conn, Fail};
use super::rows::{get, hash_at};
use crate::store::{AuditChain, AuditHead, AuditRow, StoreError, StoreResult};

/// Key of the advisory lock that orders the very first audit append ("kmsgw-au").
const AUDIT_LOCK: i64 = 0x6b6d_7367_772d_6175;

pub(super) fn seq_at(row: &postgres::Row, idx: usize) -> StoreResult<u64> {
    let v: i64 = get(row, idx)?;
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("audit sequence {v}")))
}

pub(super) fn to_i64_seq(v: u64) -> StoreResult<i64> {
    i64::try_from(v).map_err(|_| StoreError::Other(format!("audit sequence {v} is too large")))
}

/// Appends `records` in one transaction (see `KeyStore::append_audit`).
pub(super) fn append(
    conn: &mut Conn,
    records: &[String],
    chain: &dyn AuditChain,
) -> Result<u64, Fail> {
    conn.transaction(IsolationLevel::ReadCommitted, |db| {
        // The head row's lock orders appends of every gateway into one chain.
        let head = db.query_opt(
            "SELECT seq, hash FROM audit_head WHERE one = 1 FOR UPDATE",
            &[],
        )?;
        let (mut seq, mut hash) = match &head {
            None => {
                // The first append: an advisory lock stands in for the missing row.
                db.execute("SELECT pg_advisory_xact_lock($1)", &[&AUDIT_LOCK])?;
                match db.query_opt(
                    "SELECT seq, hash FROM audit_head WHERE one = 1 FOR UPDATE",
                    &[],
                )? {
                    None => (0u64, [0u8; 32]),
                    Some(row) => (seq_at(&row, 0)?, hash_at(&row, 1)?),
                }
            }
            Some(row) => (seq_at(row, 0)?, hash_at(row, 1)?),
        };
        for record in records {
            seq += 1;
            hash = chain.link(&hash, seq, record);
            db.execute(
                "INSERT INTO audit (seq, record, hash) VALUES ($1, $2, $3)",
                &[&to_i64_seq(seq)?, record, &hash.as_slice()],
            )?;
        }
        let mac = chain.seal(seq, &hash);
        db.execute(
            "INSERT INTO audit_head (one, seq, hash, mac) VALUES (1, $1, $2, $3) \
             ON CONFLICT (one) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, mac = excluded.mac",
            &[&to_i64_seq(seq)?, &hash.as_slice(), &mac],
        )?;
        Ok(seq)
    })
}

pub(super) fn records(conn: &mut Conn, after: i64, limit: u32) -> Result<Vec<AuditRow>, Fail> {
    let limit = i64::from(limit);
    let rows = conn.direct().query(
        "SELECT seq, record, hash FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2",
        &[&after, &limit],
    )?;
    Ok(rows
        .iter()
        .map(|r| {
            Ok(AuditRow {
                seq: seq_at(r, 0)?,
                record: get(r, 1)?,
                hash: hash_at(r, 2)?,
            })
        })
        .collect::<StoreResult<Vec<_>>>()?)
}

pub(super) fn head(conn: &mut Conn) -> Result<Option<AuditHead>, Fail> {
    sealed_row(conn, "SELECT seq, hash, mac FROM audit_head WHERE one = 1")
}

pub(super) fn checkpoint(conn: &mut Conn) -> Result<Option<AuditHead>, Fail> {
    sealed_row(
        conn,
        "SELECT seq, hash, mac FROM audit_checkpoint WHERE one = 1",
    )
}

/// Removes records up to `through` and moves the checkpoint there (see
/// `KeyStore::prune_audit`).
pub(super) fn prune(
    conn: &mut Conn,
    through: u64,
    chain: &dyn AuditChain,
) -> Result<AuditHead, Fail> {
    let seq = to_i64_seq(through)?;
    conn.transaction(IsolationLevel::ReadCommitted, |db| {
        let Some(row) = db.query_opt("SELECT hash FROM audit WHERE seq = $1", &[&seq])? else {
            return Err(StoreError::Other(format!(
                "audit record {through} is not in the log (already pruned, or not written yet)"
            ))
            .into());
        };
        let hash = hash_at(&row, 0)?;
        let mac = chain.seal_checkpoint(through, &hash);
        db.execute("DELETE FROM audit WHERE seq <= $1", &[&seq])?;
        db.execute(
            "INSERT INTO audit_checkpoint (one, seq, hash, mac) VALUES (1, $1, $2, $3) \
             ON CONFLICT (one) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, mac = excluded.mac",
            &[&seq, &hash.as_slice(), &mac],
        )?;
        Ok(AuditHead {
            seq: through,
            hash,
            mac,
        })
    })
}

/// The one row of `audit_head` or `audit_checkpoint`.
fn sealed_row(conn: &mut Conn, sql: &str) -> Result<Option<AuditHead>, Fail> {
    let row = conn.direct().query_opt(sql, &[])?;
    Ok(row
        .map(|r| {
            Ok::<_, StoreError>(AuditHead {
                seq: seq_at(&r, 0)?,
                hash: hash_at(&r, 1)?,
                mac: get(&r, 2)?,
            })
        })
        .transpose()?)
}
