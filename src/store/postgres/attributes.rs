//! Named attributes of keys in the PostgreSQL store (table `key_attributes`, migration 3).

use std::collections::BTreeMap;

use postgres::IsolationLevel;
use uuid::Uuid;

use super::pool::{Conn, Fail};
use super::rows::get;

pub(super) fn of_key(conn: &mut Conn, key_id: Uuid) -> Result<BTreeMap<String, String>, Fail> {
    let rows = conn.direct().query(
        "SELECT name, value FROM key_attributes WHERE key_id = $1",
        &[&key_id],
    )?;
    let mut out = BTreeMap::new();
    for row in &rows {
        out.insert(get(row, 0)?, get(row, 1)?);
    }
    Ok(out)
}

pub(super) fn update(
    conn: &mut Conn,
    key_id: Uuid,
    set: &BTreeMap<String, String>,
    remove: &[String],
) -> Result<bool, Fail> {
    conn.transaction(IsolationLevel::ReadCommitted, |db| {
        // Locks the key row, so a deletion of the key waits for (or precedes) this.
        if db
            .query_opt("SELECT 1 FROM keys WHERE id = $1 FOR UPDATE", &[&key_id])?
            .is_none()
        {
            return Ok(false);
        }
        for name in remove {
            db.execute(
                "DELETE FROM key_attributes WHERE key_id = $1 AND name = $2",
                &[&key_id, name],
            )?;
        }
        for (name, value) in set {
            db.execute(
                "INSERT INTO key_attributes (key_id, name, value) VALUES ($1, $2, $3) \
                 ON CONFLICT (key_id, name) DO UPDATE SET value = excluded.value",
                &[&key_id, name, value],
            )?;
        }
        Ok(true)
    })
}
