//! Named attributes of keys in the SQLite store (table `key_attributes`, migration 8).

use std::collections::BTreeMap;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use uuid::Uuid;

use super::map_err;
use crate::store::StoreResult;

pub(super) fn of_key(conn: &Connection, key_id: Uuid) -> StoreResult<BTreeMap<String, String>> {
    let mut stmt = conn
        .prepare_cached("SELECT name, value FROM key_attributes WHERE key_id = ?1")
        .map_err(map_err)?;
    let rows = stmt
        .query_map([key_id.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(map_err)?;
    rows.collect::<Result<_, _>>().map_err(map_err)
}

pub(super) fn update(
    conn: &mut Connection,
    key_id: Uuid,
    set: &BTreeMap<String, String>,
    remove: &[String],
) -> StoreResult<bool> {
    let id = key_id.to_string();
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(map_err)?;
    let exists = tx
        .query_row("SELECT 1 FROM keys WHERE id = ?1", [&id], |_| Ok(()))
        .optional()
        .map_err(map_err)?
        .is_some();
    if !exists {
        return Ok(false);
    }
    for name in remove {
        tx.execute(
            "DELETE FROM key_attributes WHERE key_id = ?1 AND name = ?2",
            params![id, name],
        )
        .map_err(map_err)?;
    }
    for (name, value) in set {
        tx.execute(
            "INSERT INTO key_attributes (key_id, name, value) VALUES (?1, ?2, ?3) \
             ON CONFLICT (key_id, name) DO UPDATE SET value = excluded.value",
            params![id, name, value],
        )
        .map_err(map_err)?;
    }
    tx.commit().map_err(map_err)?;
    Ok(true)
}
