//! The SQLite `KeyStore`: one database file (WAL, synchronous FULL), its schema and
//! migrations, and the mapping of SQLite error codes to `StoreError`. Universal-auth
//! credentials are in `universal_auth`.

mod attributes;
mod audit;
mod aws;
mod identities;
mod schema;
mod space;
mod universal_auth;

use identities::{identity_from_row, insert_identity, IDENTITY_COLUMNS};
use schema::migrate;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::types::Type;
use rusqlite::{
    ffi, params, Connection, ErrorCode, OpenFlags, OptionalExtension, Row, TransactionBehavior,
};
use uuid::Uuid;

use super::{
    AccessKeyRecord, AliasRecord, AuditChain, AuditHead, AuditRow, Direction, IdentityRecord,
    KeyPatch, KeyRecord, KeyStore, KeyVersionRecord, ListQuery, OrderBy, ProjectRecord, StoreError,
    StoreResult, UniversalAuthRecord,
};

/// How long a statement waits for a lock held by another connection or process.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Read-only connections beside the single writer; WAL lets them read while it writes.
const READERS: usize = 4;
/// The `meta` row `check_writable` rewrites; no other caller uses this name.
const HEARTBEAT: &str = "kms-gateway.store.heartbeat";

const KEY_COLUMNS: &str = "id, project_id, name, description, key_usage, algorithm, version, \
                           is_disabled, is_reserved, customer_fragment_id, created_at, updated_at, \
                           hsm_key_label, min_decryption_version, deletion_date, rotation_period_days, exportable, protect_stopped";

/// A `KeyStore` in one SQLite file. Writes are serialised through one connection;
/// reads use a few others and see the last committed state.
pub struct SqliteStore {
    path: PathBuf,
    /// The directory holding the database, whose file system the free-space guard reads.
    dir: PathBuf,
    /// Bytes that must stay free for a change of state (0: no guard); see `space`.
    min_free: u64,
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed, with mode 0600) the database at `path` and brings its
    /// schema up to date. Refuses a file that is not a database (`Corrupt`) or whose
    /// schema is newer than this build knows (`Other`).
    pub fn open(path: &Path) -> StoreResult<Self> {
        create_file(path)?;
        let mut writer = connect(path)?;
        // Turning a new file to WAL needs a moment of exclusive access; another process
        // opening the same new file at once makes SQLite answer BUSY without waiting.
        let mut attempts = 0;
        let mode: String = loop {
            match writer.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0)) {
                Err(e)
                    if attempts < 100 && sqlite_code(&e) == Some(ffi::ErrorCode::DatabaseBusy) =>
                {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => break other.map_err(map_err)?,
            }
        };
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Other(format!(
                "{} cannot use WAL mode (got {mode:?})",
                path.display()
            )));
        }
        migrate(&mut writer)?;
        let readers = (0..READERS)
            .map(|_| {
                let conn = connect(path)?;
                conn.pragma_update(None, "query_only", true)
                    .map_err(map_err)?;
                Ok(Mutex::new(conn))
            })
            .collect::<StoreResult<Vec<_>>>()?;
        tracing::debug!(path = %path.display(), "opened the SQLite key store");
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        Ok(Self {
            path: path.to_owned(),
            dir,
            min_free: 0,
            writer: Mutex::new(writer),
            readers,
            next_reader: AtomicUsize::new(0),
        })
    }

    /// Refuses changes of state while less than `bytes` are free on the database's file
    /// system, and audit records while less than half of it is (0: never).
    pub fn with_min_free(mut self, bytes: u64) -> Self {
        self.min_free = bytes;
        self
    }

    /// The writer, for a change of state: refused when the disk is nearly full.
    fn writer(&self) -> StoreResult<MutexGuard<'_, Connection>> {
        space::check(&self.dir, self.min_free, space::Write::State)?;
        Ok(self.lock_writer())
    }

    /// The writer, for audit records: refused only below half the free-space bound.
    fn audit_writer(&self) -> StoreResult<MutexGuard<'_, Connection>> {
        space::check(&self.dir, self.min_free, space::Write::Audit)?;
        Ok(self.lock_writer())
    }

    fn lock_writer(&self) -> MutexGuard<'_, Connection> {
        // A panic while the lock was held cannot leave a transaction open: `Transaction`
        // rolls back on drop. So the connection is still usable after poisoning.
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn reader(&self) -> MutexGuard<'_, Connection> {
        for reader in &self.readers {
            if let Ok(guard) = reader.try_lock() {
                return guard;
            }
        }
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed) % READERS;
        match self.readers.get(start) {
            // Same reasoning as in `writer`: reads leave no state behind a panic.
            Some(reader) => reader.lock().unwrap_or_else(PoisonError::into_inner),
            None => self.lock_writer(),
        }
    }
}

/// Creates the parent directory and, if it does not exist, an empty file with mode 0600
/// (before SQLite creates it with the umask's mode; its -wal and -shm files copy it).
fn create_file(path: &Path) -> StoreResult<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| {
            StoreError::Unavailable(format!("cannot create {}: {e}", parent.display()))
        })?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_file) => {
            // The umask may have removed bits from 0600 but cannot have added any;
            // set the mode again so that the owner can always read and write.
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                _file
                    .set_permissions(std::fs::Permissions::from_mode(0o600))
                    .map_err(|e| {
                        StoreError::Unavailable(format!("cannot chmod {}: {e}", path.display()))
                    })?;
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::Unavailable(format!(
            "cannot create {}: {e}",
            path.display()
        ))),
    }
}

/// The primary SQLite error code of `e`, if it is an SQLite error.
fn sqlite_code(e: &rusqlite::Error) -> Option<ffi::ErrorCode> {
    match e {
        rusqlite::Error::SqliteFailure(f, _) => Some(f.code),
        _ => None,
    }
}

fn connect(path: &Path) -> StoreResult<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(map_err)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(map_err)?;
    conn.pragma_update(None, "foreign_keys", true)
        .map_err(map_err)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(map_err)?;
    Ok(conn)
}

/// `PRAGMA synchronous = level` through a cached statement (it runs twice per deferred
/// audit commit; `level` is one of SQLite's names, never input).
fn set_synchronous(conn: &Connection, level: &'static str) -> StoreResult<()> {
    let sql = match level {
        "NORMAL" => "PRAGMA synchronous = NORMAL",
        _ => "PRAGMA synchronous = FULL",
    };
    let mut stmt = conn.prepare_cached(sql).map_err(map_err)?;
    stmt.raw_execute().map_err(map_err)?;
    Ok(())
}

/// Maps an error by SQLite's (extended) result code, never by its message.
fn map_err(err: rusqlite::Error) -> StoreError {
    use rusqlite::Error as E;
    let detail = err.to_string();
    match &err {
        E::SqliteFailure(e, _) => match e.code {
            ErrorCode::ConstraintViolation
                if matches!(
                    e.extended_code,
                    ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                ) =>
            {
                StoreError::Conflict(detail)
            }
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::SystemIoFailure
            | ErrorCode::CannotOpen
            | ErrorCode::ReadOnly => StoreError::Unavailable(detail),
            ErrorCode::DiskFull => StoreError::InsufficientStorage(detail),
            ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => StoreError::Corrupt(detail),
            _ => StoreError::Other(detail),
        },
        E::FromSqlConversionFailure(..)
        | E::IntegralValueOutOfRange(..)
        | E::InvalidColumnType(..) => StoreError::Corrupt(detail),
        _ => StoreError::Other(detail),
    }
}

/// The extended code of a constraint violation, if `err` is one.
fn constraint(err: &rusqlite::Error) -> Option<i32> {
    err.sqlite_error()
        .filter(|e| e.code == ErrorCode::ConstraintViolation)
        .map(|e| e.extended_code)
}

fn uuid_at(row: &Row<'_>, idx: usize) -> rusqlite::Result<Uuid> {
    let text: String = row.get(idx)?;
    Uuid::parse_str(&text)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(e)))
}

/// Stores one version of a key (inside the caller's transaction).
fn insert_version(conn: &Connection, v: &KeyVersionRecord) -> StoreResult<()> {
    conn.execute(
        "INSERT INTO key_versions (key_id, version, wrapped_material, public_key, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            v.key_id.to_string(),
            v.version,
            v.wrapped_material,
            v.public_key,
            v.created_at
        ],
    )
    .map_err(map_err)?;
    Ok(())
}

/// A column holding a SHA-256 (32 bytes); anything else reads as `Corrupt`.
fn hash_at(row: &Row<'_>, idx: usize, what: &str) -> rusqlite::Result<[u8; 32]> {
    let hash: Vec<u8> = row.get(idx)?;
    hash.as_slice().try_into().map_err(|_| {
        rusqlite::Error::FromSqlConversionFailure(
            idx,
            Type::Blob,
            format!("{what} is not 32 bytes").into(),
        )
    })
}

/// A column holding the stored name of an enum.
fn named<T>(row: &Row<'_>, idx: usize, parse: fn(&str) -> Option<T>) -> rusqlite::Result<T> {
    let name: String = row.get(idx)?;
    parse(&name).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            idx,
            rusqlite::types::Type::Text,
            format!("unknown name {name:?}").into(),
        )
    })
}

fn key_from_row(row: &Row<'_>) -> rusqlite::Result<KeyRecord> {
    Ok(KeyRecord {
        id: uuid_at(row, 0)?,
        project_id: uuid_at(row, 1)?,
        name: row.get(2)?,
        description: row.get(3)?,
        key_usage: named(row, 4, crate::keys::KeyUsage::parse)?,
        algorithm: named(row, 5, crate::keys::Algorithm::parse)?,
        version: row.get(6)?,
        is_disabled: row.get(7)?,
        is_reserved: row.get(8)?,
        customer_fragment_id: row.get(9)?,
        created_at: row.get(10)?,
        updated_at: row.get(11)?,
        hsm_key_label: row.get(12)?,
        min_decryption_version: row.get(13)?,
        deletion_date: row.get(14)?,
        rotation_period_days: row.get(15)?,
        exportable: row.get(16)?,
        protect_stopped: row.get(17)?,
    })
}

fn project_from_row(row: &Row<'_>) -> rusqlite::Result<ProjectRecord> {
    Ok(ProjectRecord {
        id: uuid_at(row, 0)?,
        name: row.get(1)?,
        created_at: row.get(2)?,
    })
}

fn version_from_row(row: &Row<'_>) -> rusqlite::Result<KeyVersionRecord> {
    Ok(KeyVersionRecord {
        key_id: uuid_at(row, 0)?,
        version: row.get(1)?,
        wrapped_material: row.get(2)?,
        public_key: row.get(3)?,
        created_at: row.get(4)?,
    })
}

fn key_name_conflict(err: rusqlite::Error, key_id: Uuid, name: &str) -> StoreError {
    match constraint(&err) {
        Some(ffi::SQLITE_CONSTRAINT_UNIQUE) => StoreError::Conflict(format!(
            "a key named {name:?} already exists in this project"
        )),
        Some(ffi::SQLITE_CONSTRAINT_PRIMARYKEY) => {
            StoreError::Conflict(format!("a key with id {key_id} already exists"))
        }
        _ => map_err(err),
    }
}

impl KeyStore for SqliteStore {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    fn create_identity(&self, identity: &IdentityRecord) -> StoreResult<()> {
        let conn = self.writer()?;
        insert_identity(&conn, identity).map_err(|err| match sqlite_code(&err) {
            Some(ffi::ErrorCode::ConstraintViolation) => StoreError::Conflict(
                "the identity's token or TLS subject is taken, or its project does not exist"
                    .into(),
            ),
            _ => map_err(err),
        })?;
        Ok(())
    }

    fn create_identity_with_universal_auth(
        &self,
        identity: &IdentityRecord,
        credentials: &UniversalAuthRecord,
    ) -> StoreResult<()> {
        universal_auth::create(&mut *self.writer()?, identity, credentials)
    }

    fn universal_auth(&self, client_id: &str) -> StoreResult<Option<UniversalAuthRecord>> {
        universal_auth::by_client_id(&self.reader(), client_id)
    }

    fn universal_auth_of(&self, identity_id: Uuid) -> StoreResult<Option<UniversalAuthRecord>> {
        universal_auth::of_identity(&self.reader(), identity_id)
    }

    fn identity_by_token(&self, token_sha256: &[u8; 32]) -> StoreResult<Option<IdentityRecord>> {
        identities::one(&self.reader(), "token_sha256", &token_sha256.to_vec())
    }

    fn identity(&self, id: Uuid) -> StoreResult<Option<IdentityRecord>> {
        identities::one(&self.reader(), "id", &id.to_string())
    }

    fn set_identity_token(
        &self,
        id: Uuid,
        token_sha256: &[u8; 32],
    ) -> StoreResult<Option<IdentityRecord>> {
        let conn = self.writer()?;
        conn.query_row(
            &format!(
                "UPDATE identities SET token_sha256 = ?2 WHERE id = ?1 AND revoked_at IS NULL \
                 RETURNING {IDENTITY_COLUMNS}"
            ),
            params![id.to_string(), token_sha256.to_vec()],
            identity_from_row,
        )
        .optional()
        .map_err(|err| match sqlite_code(&err) {
            Some(ffi::ErrorCode::ConstraintViolation) => {
                StoreError::Conflict("the new token is already in use".into())
            }
            _ => map_err(err),
        })
    }

    fn append_audit(&self, records: &[String], chain: &dyn AuditChain) -> StoreResult<u64> {
        audit::append(&mut *self.audit_writer()?, records, chain)
    }

    fn append_audit_deferred(
        &self,
        records: &[String],
        chain: &dyn AuditChain,
    ) -> StoreResult<u64> {
        // In WAL mode, synchronous=NORMAL commits to the WAL without syncing it: the
        // commit survives the process, and the next FULL commit or `sync_audit` syncs
        // it together with everything before it. The writer goes back to FULL at once.
        let mut conn = self.audit_writer()?;
        set_synchronous(&conn, "NORMAL")?;
        let appended = audit::append(&mut conn, records, chain);
        let restored = set_synchronous(&conn, "FULL");
        let seq = appended?;
        restored?;
        Ok(seq)
    }

    fn defers_audit_sync(&self) -> bool {
        true
    }

    fn sync_audit(&self) -> StoreResult<()> {
        // What a FULL commit would have done: sync the WAL (a checkpoint since syncs it
        // itself before it copies; then the WAL may be gone, and nothing is due).
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        match std::fs::File::open(&wal) {
            Ok(file) => file
                .sync_data()
                .map_err(|e| StoreError::Unavailable(format!("cannot sync the WAL: {e}"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::Unavailable(format!("cannot open the WAL: {e}"))),
        }
    }

    fn audit_records(&self, after: u64, limit: u32) -> StoreResult<Vec<AuditRow>> {
        audit::records(&self.reader(), after, limit)
    }

    fn audit_head(&self) -> StoreResult<Option<AuditHead>> {
        audit::head(&self.reader())
    }

    fn audit_checkpoint(&self) -> StoreResult<Option<AuditHead>> {
        audit::checkpoint(&self.reader())
    }

    fn prune_audit(&self, through: u64, chain: &dyn AuditChain) -> StoreResult<AuditHead> {
        audit::prune(&mut self.lock_writer(), through, chain)
    }

    fn lifecycle_candidates(&self) -> StoreResult<Vec<(KeyRecord, String)>> {
        let conn = self.reader();
        let cols = KEY_COLUMNS
            .split(", ")
            .map(|c| format!("k.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {cols}, v.created_at FROM keys k \
                 JOIN key_versions v ON v.key_id = k.id AND v.version = k.version \
                 WHERE k.deletion_date IS NOT NULL OR k.rotation_period_days IS NOT NULL"
            ))
            .map_err(map_err)?;
        let rows = stmt
            .query_map([], |r| Ok((key_from_row(r)?, r.get(18)?)))
            .map_err(map_err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(map_err)
    }

    fn identity_by_tls_subject(&self, subject: &str) -> StoreResult<Option<IdentityRecord>> {
        identities::one(&self.reader(), "tls_subject", &subject)
    }

    fn identities(&self) -> StoreResult<Vec<IdentityRecord>> {
        identities::all(&self.reader())
    }

    fn revoke_identity(&self, id: Uuid, revoked_at: &str) -> StoreResult<Option<IdentityRecord>> {
        let conn = self.writer()?;
        conn.query_row(
            &format!(
                "UPDATE identities SET revoked_at = coalesce(revoked_at, ?2) WHERE id = ?1 RETURNING {IDENTITY_COLUMNS}"
            ),
            params![id.to_string(), revoked_at],
            identity_from_row,
        )
        .optional()
        .map_err(map_err)
    }

    fn meta(&self, name: &str) -> StoreResult<Option<Vec<u8>>> {
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached("SELECT value FROM meta WHERE name = ?1")
            .map_err(map_err)?;
        stmt.query_row([name], |row| row.get(0))
            .optional()
            .map_err(map_err)
    }

    fn put_meta_if_absent(&self, name: &str, value: &[u8]) -> StoreResult<bool> {
        let conn = self.writer()?;
        let sql = "INSERT INTO meta (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING";
        let inserted = conn.execute(sql, params![name, value]).map_err(map_err)?;
        Ok(inserted == 1)
    }

    fn replace_meta(&self, name: &str, expected: &[u8], value: &[u8]) -> StoreResult<bool> {
        // One statement is one transaction: the comparison and the write cannot be
        // separated by another writer.
        let conn = self.writer()?;
        let sql = "UPDATE meta SET value = ?3 WHERE name = ?1 AND value = ?2";
        let replaced = conn
            .execute(sql, params![name, expected, value])
            .map_err(map_err)?;
        Ok(replaced == 1)
    }

    fn create_project(&self, project: &ProjectRecord) -> StoreResult<()> {
        let conn = self.writer()?;
        let sql = "INSERT INTO projects (id, name, created_at) VALUES (?1, ?2, ?3)";
        conn.execute(
            sql,
            params![project.id.to_string(), project.name, project.created_at],
        )
        .map(drop)
        .map_err(|err| match constraint(&err) {
            Some(ffi::SQLITE_CONSTRAINT_UNIQUE) => {
                StoreError::Conflict(format!("a project named {:?} already exists", project.name))
            }
            Some(ffi::SQLITE_CONSTRAINT_PRIMARYKEY) => {
                StoreError::Conflict(format!("a project with id {} already exists", project.id))
            }
            _ => map_err(err),
        })
    }

    fn project(&self, id: Uuid) -> StoreResult<Option<ProjectRecord>> {
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached("SELECT id, name, created_at FROM projects WHERE id = ?1")
            .map_err(map_err)?;
        stmt.query_row([id.to_string()], project_from_row)
            .optional()
            .map_err(map_err)
    }

    fn projects(&self) -> StoreResult<Vec<ProjectRecord>> {
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached("SELECT id, name, created_at FROM projects ORDER BY name")
            .map_err(map_err)?;
        let rows = stmt.query_map([], project_from_row).map_err(map_err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(map_err)
    }

    fn create_key(&self, key: &KeyRecord, first: &KeyVersionRecord) -> StoreResult<()> {
        if first.key_id != key.id {
            return Err(StoreError::Other(format!(
                "version of key {} given for key {}",
                first.key_id, key.id
            )));
        }
        let mut conn = self.writer()?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(map_err)?;
        if let Some(label) = &key.hsm_key_label {
            let used: bool = tx
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM keys WHERE hsm_key_label = ?1)",
                    [label],
                    |r| r.get(0),
                )
                .map_err(map_err)?;
            if used {
                return Err(StoreError::Conflict(format!(
                    "the HSM key {label:?} is already used by another key"
                )));
            }
        }
        tx.execute(
            &format!("INSERT INTO keys ({KEY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)"),
            params![
                key.id.to_string(),
                key.project_id.to_string(),
                key.name,
                key.description,
                key.key_usage.as_str(),
                key.algorithm.as_str(),
                key.version,
                key.is_disabled,
                key.is_reserved,
                key.customer_fragment_id,
                key.created_at,
                key.updated_at,
                key.hsm_key_label,
                key.min_decryption_version,
                key.deletion_date,
                key.rotation_period_days,
                key.exportable,
                key.protect_stopped,
            ],
        )
        .map_err(|err| match constraint(&err) {
            Some(ffi::SQLITE_CONSTRAINT_FOREIGNKEY) => {
                StoreError::Other(format!("project {} does not exist", key.project_id))
            }
            _ => key_name_conflict(err, key.id, &key.name),
        })?;
        insert_version(&tx, first)?;
        tx.commit().map_err(map_err)
    }

    fn key(&self, id: Uuid) -> StoreResult<Option<KeyRecord>> {
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(&format!("SELECT {KEY_COLUMNS} FROM keys WHERE id = ?1"))
            .map_err(map_err)?;
        stmt.query_row([id.to_string()], key_from_row)
            .optional()
            .map_err(map_err)
    }

    fn key_by_name(&self, project_id: Uuid, name: &str) -> StoreResult<Option<KeyRecord>> {
        let conn = self.reader();
        let sql = format!("SELECT {KEY_COLUMNS} FROM keys WHERE project_id = ?1 AND name = ?2");
        let mut stmt = conn.prepare_cached(&sql).map_err(map_err)?;
        stmt.query_row(params![project_id.to_string(), name], key_from_row)
            .optional()
            .map_err(map_err)
    }

    fn list_keys(&self, query: &ListQuery) -> StoreResult<(Vec<KeyRecord>, u64)> {
        let column = match query.order_by {
            OrderBy::Name => "name",
            OrderBy::CreatedAt => "created_at",
            OrderBy::UpdatedAt => "updated_at",
        };
        let direction = match query.direction {
            Direction::Asc => "ASC",
            Direction::Desc => "DESC",
        };
        // SQLite's LIKE ignores case for ASCII letters only.
        let filter = "project_id = ?1 AND (?2 IS NULL OR name LIKE ?2 ESCAPE '\\')";
        let project = query.project_id.to_string();
        let pattern = query.search.as_deref().map(super::contains_pattern);
        let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
        let offset = i64::try_from(query.offset).unwrap_or(i64::MAX);

        let mut conn = self.reader();
        // One read transaction, so that the page and the count see the same snapshot.
        let tx = conn.transaction().map_err(map_err)?;
        let total: i64 = tx
            .prepare_cached(&format!("SELECT count(*) FROM keys WHERE {filter}"))
            .and_then(|mut stmt| stmt.query_row(params![project, pattern], |row| row.get(0)))
            .map_err(map_err)?;
        let sql = format!(
            "SELECT {KEY_COLUMNS} FROM keys WHERE {filter} \
             ORDER BY {column} {direction}, id {direction} LIMIT ?3 OFFSET ?4"
        );
        let keys = tx
            .prepare_cached(&sql)
            .and_then(|mut stmt| {
                stmt.query_map(params![project, pattern, limit, offset], key_from_row)?
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(map_err)?;
        tx.finish().map_err(map_err)?;
        let total = u64::try_from(total)
            .map_err(|_| StoreError::Corrupt(format!("negative key count {total}")))?;
        Ok((keys, total))
    }

    fn update_key(
        &self,
        id: Uuid,
        patch: &KeyPatch,
        updated_at: &str,
    ) -> StoreResult<Option<KeyRecord>> {
        let conn = self.writer()?;
        let sql = format!(
            "UPDATE keys SET name = coalesce(?2, name), description = coalesce(?3, description), \
             is_disabled = coalesce(?4, is_disabled), \
             protect_stopped = coalesce(?11, protect_stopped), \
             min_decryption_version = coalesce(?6, min_decryption_version), updated_at = ?5, \
             rotation_period_days = CASE WHEN ?7 THEN ?8 ELSE rotation_period_days END, \
             deletion_date = CASE WHEN ?9 THEN ?10 ELSE deletion_date END \
             WHERE id = ?1 RETURNING {KEY_COLUMNS}"
        );
        conn.query_row(
            &sql,
            params![
                id.to_string(),
                patch.name,
                patch.description,
                patch.is_disabled,
                updated_at,
                patch.min_decryption_version,
                patch.rotation_period_days.is_some(),
                patch.rotation_period_days.flatten(),
                patch.deletion_date.is_some(),
                patch.deletion_date.clone().flatten(),
                patch.protect_stopped,
            ],
            key_from_row,
        )
        .optional()
        .map_err(|err| key_name_conflict(err, id, patch.name.as_deref().unwrap_or_default()))
    }

    fn delete_key(&self, id: Uuid) -> StoreResult<Option<KeyRecord>> {
        let id = id.to_string();
        let mut conn = self.writer()?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(map_err)?;
        tx.execute("DELETE FROM key_versions WHERE key_id = ?1", [&id])
            .map_err(map_err)?;
        tx.execute("DELETE FROM key_attributes WHERE key_id = ?1", [&id])
            .map_err(map_err)?;
        let sql = format!("DELETE FROM keys WHERE id = ?1 RETURNING {KEY_COLUMNS}");
        let deleted = tx
            .query_row(&sql, [&id], key_from_row)
            .optional()
            .map_err(map_err)?;
        tx.commit().map_err(map_err)?;
        Ok(deleted)
    }

    fn add_key_version(
        &self,
        record: &KeyVersionRecord,
        updated_at: &str,
    ) -> StoreResult<Option<KeyRecord>> {
        let id = record.key_id.to_string();
        let mut conn = self.writer()?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(map_err)?;
        let current: Option<u32> = tx
            .query_row("SELECT version FROM keys WHERE id = ?1", [&id], |r| {
                r.get(0)
            })
            .optional()
            .map_err(map_err)?;
        let Some(current) = current else {
            return Ok(None);
        };
        if record.version != current + 1 {
            return Err(StoreError::Conflict(format!(
                "the key is at version {current}; version {} cannot be added (rotated meanwhile?)",
                record.version
            )));
        }
        insert_version(&tx, record)?;
        let sql = format!(
            "UPDATE keys SET version = ?2, updated_at = ?3 WHERE id = ?1 RETURNING {KEY_COLUMNS}"
        );
        let key = tx
            .query_row(&sql, params![id, record.version, updated_at], key_from_row)
            .map_err(map_err)?;
        tx.commit().map_err(map_err)?;
        Ok(Some(key))
    }

    fn key_versions(&self, key_id: Uuid) -> StoreResult<Vec<(u32, String)>> {
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(
                "SELECT version, created_at FROM key_versions WHERE key_id = ?1 ORDER BY version",
            )
            .map_err(map_err)?;
        let rows = stmt
            .query_map([key_id.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(map_err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(map_err)
    }

    fn key_version(&self, key_id: Uuid, version: u32) -> StoreResult<Option<KeyVersionRecord>> {
        let conn = self.reader();
        let sql = "SELECT key_id, version, wrapped_material, public_key, created_at \
                   FROM key_versions WHERE key_id = ?1 AND version = ?2";
        let mut stmt = conn.prepare_cached(sql).map_err(map_err)?;
        stmt.query_row(params![key_id.to_string(), version], version_from_row)
            .optional()
            .map_err(map_err)
    }

    fn key_attributes(
        &self,
        key_id: Uuid,
    ) -> StoreResult<std::collections::BTreeMap<String, String>> {
        attributes::of_key(&self.reader(), key_id)
    }

    fn create_access_key(&self, key: &AccessKeyRecord, max_per_identity: usize) -> StoreResult<()> {
        aws::create_access_key(&mut *self.writer()?, key, max_per_identity)
    }

    fn access_key(&self, access_key_id: &str) -> StoreResult<Option<AccessKeyRecord>> {
        aws::access_key(&self.reader(), access_key_id)
    }

    fn access_keys_of(&self, identity_id: Uuid) -> StoreResult<Vec<AccessKeyRecord>> {
        aws::access_keys_of(&self.reader(), identity_id)
    }

    fn delete_access_key(&self, identity_id: Uuid, access_key_id: &str) -> StoreResult<bool> {
        aws::delete_access_key(&*self.writer()?, identity_id, access_key_id)
    }

    fn create_alias(&self, alias: &AliasRecord) -> StoreResult<()> {
        aws::create_alias(&*self.writer()?, alias)
    }

    fn alias(&self, project_id: Uuid, name: &str) -> StoreResult<Option<AliasRecord>> {
        aws::alias(&self.reader(), project_id, name)
    }

    fn aliases(&self, project_id: Uuid, key_id: Option<Uuid>) -> StoreResult<Vec<AliasRecord>> {
        aws::aliases(&self.reader(), project_id, key_id)
    }

    fn update_alias(
        &self,
        project_id: Uuid,
        name: &str,
        key_id: Uuid,
        updated_at: &str,
    ) -> StoreResult<bool> {
        aws::update_alias(&*self.writer()?, project_id, name, key_id, updated_at)
    }

    fn delete_alias(&self, project_id: Uuid, name: &str) -> StoreResult<bool> {
        aws::delete_alias(&*self.writer()?, project_id, name)
    }

    fn update_key_attributes(
        &self,
        key_id: Uuid,
        set: &std::collections::BTreeMap<String, String>,
        remove: &[String],
    ) -> StoreResult<bool> {
        attributes::update(&mut *self.writer()?, key_id, set, remove)
    }

    fn fragment_ids_in_use(&self) -> StoreResult<Vec<String>> {
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(
                "SELECT DISTINCT customer_fragment_id FROM keys \
                 WHERE customer_fragment_id IS NOT NULL ORDER BY 1",
            )
            .map_err(map_err)?;
        let rows = stmt.query_map([], |r| r.get(0)).map_err(map_err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(map_err)
    }

    fn backup_to(&self, dest: &Path) -> StoreResult<()> {
        if dest.exists() {
            return Err(StoreError::Other(format!(
                "{} exists; a backup is written to a new file",
                dest.display()
            )));
        }
        let dest_text = dest
            .to_str()
            .ok_or_else(|| StoreError::Other("the backup path is not UTF-8".into()))?;
        // One read transaction: a consistent snapshot while writers go on (WAL). Its own
        // connection: the readers are query-only.
        connect(&self.path)?
            .execute("VACUUM INTO ?1", [dest_text])
            .map_err(map_err)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| StoreError::Other(format!("cannot chmod {}: {e}", dest.display())))?;
        }
        let copy =
            Connection::open_with_flags(dest, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(map_err)?;
        let check: String = copy
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .map_err(map_err)?;
        if check != "ok" {
            return Err(StoreError::Corrupt(format!(
                "the backup {} fails its integrity check: {check}",
                dest.display()
            )));
        }
        // The file's data reaches the disk before the command says it is done.
        std::fs::File::open(dest)
            .and_then(|f| f.sync_all())
            .map_err(|e| StoreError::Other(format!("cannot sync {}: {e}", dest.display())))
    }

    fn check_writable(&self) -> StoreResult<()> {
        // A committed write, not only a lock: it also proves the disk takes the WAL.
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let mut conn = self.audit_writer()?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(map_err)?;
        tx.execute(
            "INSERT INTO meta (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            params![HEARTBEAT, now.to_be_bytes()],
        )
        .map_err(map_err)?;
        tx.commit().map_err(map_err)
    }
}
