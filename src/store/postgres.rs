//! The PostgreSQL `KeyStore`, for several gateways sharing one database: the statements,
//! the retry of transactions that lose a serialization race or a deadlock, and what each
//! constraint violation means. The same semantics as the SQLite store, which the
//! conformance suite checks on both. The schema is in `schema`, the reading of rows in
//! `rows`, connections and SQLSTATEs in `pool`, TLS in `tls`, universal-auth credentials
//! in `universal_auth`.

mod attributes;
mod audit;
mod aws;
mod pool;
mod rows;
mod schema;
mod tls;
mod universal_auth;

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use postgres::error::SqlState;
use postgres::IsolationLevel;
use secrecy::ExposeSecret;
use uuid::Uuid;

use self::pool::{describe, judge, violation, Conn, Connector, Fail, Pool, Verdict};
use self::rows::{
    get, identity_from_row, key_from_row, project_from_row, version_at, version_from_row,
    IDENTITY_COLUMNS, KEY_COLUMNS,
};
use self::schema::{migrate, MIGRATIONS};
use self::tls::TlsMode;
use super::{
    AccessKeyRecord, AliasRecord, AuditChain, AuditHead, AuditRow, Direction, IdentityRecord,
    KeyPatch, KeyRecord, KeyStore, KeyVersionRecord, ListQuery, OrderBy, ProjectRecord, StoreError,
    StoreOptions, StoreResult, UniversalAuthRecord,
};

/// How often a transaction that lost a serialization race or a deadlock is run.
const ATTEMPTS: u32 = 5;
/// The `meta` row `check_writable` rewrites; no other caller uses this name.
const HEARTBEAT: &str = "kms-gateway.store.heartbeat";
/// Bounds every statement, so that a stuck lock cannot hold a request forever.
const STATEMENT_TIMEOUT: &str = "30s";

/// A `KeyStore` in a PostgreSQL database, through a small pool of connections.
pub struct PostgresStore {
    pool: Pool,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("target", &self.pool.target())
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connections kept to the server at most, unless configured.
    pub const DEFAULT_POOL_SIZE: usize = 8;
    /// The schema version this build creates and understands.
    pub const SCHEMA_VERSION: usize = MIGRATIONS.len();

    /// Connects to the database of `url` (`postgres://USER[:PASSWORD]@HOST[:PORT]/DB`, with
    /// libpq's `sslmode` and `sslrootcert` parameters) and brings its schema up to date.
    /// Unavailable if the server cannot be reached; `Other` for a bad URL or a schema
    /// newer than this build knows.
    pub fn open(url: &str, options: &StoreOptions) -> StoreResult<Self> {
        let split = tls::split_url(url)?;
        // The driver's parse errors name the option at fault, never its value.
        let mut config = postgres::Config::from_str(&split.url).map_err(|e| {
            StoreError::Other(format!("the PostgreSQL URL is not valid: {}", describe(&e)))
        })?;
        match (&options.password, config.get_password().is_some()) {
            (Some(_), true) => {
                return Err(StoreError::Other(
                    "the PostgreSQL password is given both in the URL and in a password file; \
                     keep one"
                        .into(),
                ))
            }
            (Some(password), false) => {
                config.password(password.expose_secret());
            }
            (None, _) => {}
        }
        if config.get_application_name().is_none() {
            config.application_name("kms-gateway");
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        // Set after connecting (not as a startup option, which proxies such as PgBouncer
        // refuse), unless the URL's `options` choose a timeout themselves.
        let set_timeout = !config
            .get_options()
            .is_some_and(|o| o.contains("statement_timeout"));
        config.notice_callback(|notice| {
            tracing::debug!(
                code = notice.code().code(),
                message = notice.message(),
                "PostgreSQL notice"
            );
        });
        let tls_config = tls::client_config(split.mode, split.root_cert.as_deref())?;
        if split.mode == TlsMode::Require && split.root_cert.is_none() {
            tracing::warn!("sslmode=require without sslrootcert: the connection to PostgreSQL is encrypted but the server is not authenticated; use verify-full");
        }
        if tls_config.is_some() {
            config.ssl_mode(postgres::config::SslMode::Require);
        } else {
            config.ssl_mode(postgres::config::SslMode::Disable);
        }
        let target = target_of(&config);
        let connector = Connector {
            config,
            tls: tls_config.map(tokio_postgres_rustls::MakeRustlsConnect::new),
            target,
            session_setup: set_timeout
                .then(|| format!("SET statement_timeout = '{STATEMENT_TIMEOUT}'")),
        };
        let store = Self {
            pool: Pool::new(
                connector,
                options.pool_size.unwrap_or(Self::DEFAULT_POOL_SIZE),
            ),
        };
        store.run(migrate)?;
        tracing::info!(server = store.pool.target(), tls = %split.mode, "opened the PostgreSQL key store");
        Ok(store)
    }

    /// Runs `op` on a pooled connection. A transaction that lost a serialization race or
    /// a deadlock runs again (a few times); a lost connection is dropped and reported as
    /// Unavailable, and the next call connects anew.
    fn run<T>(&self, mut op: impl FnMut(&mut Conn) -> Result<T, Fail>) -> StoreResult<T> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut lease = self.pool.get()?;
            let err = match op(lease.conn()) {
                Ok(value) => return Ok(value),
                Err(Fail::Store(err)) => return Err(err),
                Err(Fail::Pg(err)) => err,
            };
            match judge(&err, lease.conn().client.is_closed()) {
                Verdict::Lost => {
                    lease.discard_lost();
                    tracing::warn!(server = self.pool.target(), error = %describe(&err), "lost the connection to PostgreSQL");
                    return Err(StoreError::Unavailable(format!(
                        "lost the connection to PostgreSQL at {}: {}",
                        self.pool.target(),
                        describe(&err)
                    )));
                }
                Verdict::Retry if attempt < ATTEMPTS => {
                    drop(lease);
                    tracing::debug!(attempt, error = %describe(&err), "retrying a PostgreSQL transaction");
                    std::thread::sleep(backoff(attempt));
                }
                Verdict::Retry => {
                    return Err(StoreError::Unavailable(format!(
                        "gave up after {attempt} attempts: {}",
                        describe(&err)
                    )))
                }
                // Once: a second 0A000 is not about cached statements.
                Verdict::Stale if attempt == 1 => lease.conn().forget_statements(),
                Verdict::Stale => return Err(StoreError::Other(describe(&err))),
                Verdict::Fail(err) => return Err(err),
            }
        }
    }
}

/// The NOTIFY channel of `publish` / `subscribe`.
const CHANGES_CHANNEL: &str = "kmsgw_changes";

/// LISTENs on its own connection for ever; after any interruption it reconnects (with a
/// growing pause) and reports `"*"`, since notifications may have been missed meanwhile.
fn listen(connector: &Connector, on_change: &(dyn Fn(&str) + Send + Sync)) {
    let mut pause = Duration::from_millis(100);
    loop {
        match connector.connect() {
            Ok(mut client) => {
                if let Err(e) = client.batch_execute(&format!("LISTEN {CHANGES_CHANNEL}")) {
                    tracing::warn!(error = %describe(&e), "cannot LISTEN for changes");
                } else {
                    pause = Duration::from_millis(100);
                    on_change("*");
                    let mut notifications = client.notifications();
                    let mut feed = notifications.blocking_iter();
                    loop {
                        match postgres::fallible_iterator::FallibleIterator::next(&mut feed) {
                            Ok(Some(n)) => on_change(n.payload()),
                            Ok(None) => break,
                            Err(e) => {
                                tracing::warn!(error = %describe(&e), "the change feed from PostgreSQL was interrupted; reconnecting");
                                break;
                            }
                        }
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "change feed: cannot connect yet"),
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

/// Stores one version of a key (inside the caller's transaction).
fn insert_version(
    db: &mut pool::Db<'_, postgres::Transaction<'_>>,
    v: &KeyVersionRecord,
) -> Result<(), Fail> {
    db.execute(
        "INSERT INTO key_versions (key_id, version, wrapped_material, public_key, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
        &[
            &v.key_id,
            &to_i64(v.version),
            &v.wrapped_material,
            &v.public_key,
            &v.created_at,
        ],
    )?;
    Ok(())
}

/// Stores one identity (alone, or inside the caller's transaction).
fn insert_identity<C: postgres::GenericClient>(
    db: &mut pool::Db<'_, C>,
    identity: &IdentityRecord,
) -> Result<u64, postgres::Error> {
    db.execute(
        &format!(
            "INSERT INTO identities ({IDENTITY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        ),
        &[
            &identity.id,
            &identity.name,
            &identity.project_id,
            &identity.role,
            &identity.token_sha256.as_slice(),
            &identity.created_at,
            &identity.expires_at,
            &identity.revoked_at,
            &identity.tls_subject,
        ],
    )
}

/// A short, jittered pause before attempt `attempt + 1`.
fn backoff(attempt: u32) -> Duration {
    let jitter = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::from(d.subsec_nanos() % 10))
        .unwrap_or_default();
    Duration::from_millis(5 * (1 << attempt.min(5)) + jitter)
}

/// `user@host:port/db` of `config`, for messages: never the password.
fn target_of(config: &postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(h)) => h.clone(),
        Some(postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "{}@{host}:{port}/{}",
        config.get_user().unwrap_or("?"),
        config.get_dbname().unwrap_or("?")
    )
}

/// Maps a unique violation on a key's constraints to a Conflict that names the rule.
fn key_conflict(err: postgres::Error, key_id: Uuid, name: &str, label: Option<&str>) -> Fail {
    match violation(&err) {
        Some((code, constraint)) if *code == SqlState::UNIQUE_VIOLATION => {
            Fail::Store(StoreError::Conflict(match constraint {
                Some("keys_pkey") => format!("a key with id {key_id} already exists"),
                Some("keys_hsm_key_label_key") => format!(
                    "the HSM key {:?} is already used by another key",
                    label.unwrap_or_default()
                ),
                Some("keys_project_name_key") => {
                    format!("a key named {name:?} already exists in this project")
                }
                // A rule the store does not know by name (an operator's index, say).
                _ => describe(&err),
            }))
        }
        _ => Fail::Pg(err),
    }
}

fn to_i64(v: u32) -> i64 {
    i64::from(v)
}

impl KeyStore for PostgresStore {
    fn kind(&self) -> &'static str {
        "postgresql"
    }

    fn meta(&self, name: &str) -> StoreResult<Option<Vec<u8>>> {
        self.run(|conn| {
            let row = conn
                .direct()
                .query_opt("SELECT value FROM meta WHERE name = $1", &[&name])?;
            Ok(row.map(|r| get(&r, 0)).transpose()?)
        })
    }

    fn put_meta_if_absent(&self, name: &str, value: &[u8]) -> StoreResult<bool> {
        self.run(|conn| {
            let inserted = conn.direct().execute(
                "INSERT INTO meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                &[&name, &value],
            )?;
            Ok(inserted == 1)
        })
    }

    fn replace_meta(&self, name: &str, expected: &[u8], value: &[u8]) -> StoreResult<bool> {
        // One statement: under READ COMMITTED a concurrent writer's row is re-checked
        // against `value = $2` after it commits, so the comparison and the write are one.
        self.run(|conn| {
            let replaced = conn.direct().execute(
                "UPDATE meta SET value = $3 WHERE name = $1 AND value = $2",
                &[&name, &expected, &value],
            )?;
            Ok(replaced == 1)
        })
    }

    fn create_project(&self, project: &ProjectRecord) -> StoreResult<()> {
        self.run(|conn| {
            conn.direct()
                .execute(
                    "INSERT INTO projects (id, name, created_at) VALUES ($1, $2, $3)",
                    &[&project.id, &project.name, &project.created_at],
                )
                .map_err(|err| match violation(&err) {
                    Some((code, Some("projects_name_key")))
                        if *code == SqlState::UNIQUE_VIOLATION =>
                    {
                        Fail::Store(StoreError::Conflict(format!(
                            "a project named {:?} already exists",
                            project.name
                        )))
                    }
                    Some((code, Some("projects_pkey"))) if *code == SqlState::UNIQUE_VIOLATION => {
                        Fail::Store(StoreError::Conflict(format!(
                            "a project with id {} already exists",
                            project.id
                        )))
                    }
                    _ => Fail::Pg(err),
                })?;
            Ok(())
        })
    }

    fn project(&self, id: Uuid) -> StoreResult<Option<ProjectRecord>> {
        self.run(|conn| {
            let row = conn.direct().query_opt(
                "SELECT id, name, created_at FROM projects WHERE id = $1",
                &[&id],
            )?;
            Ok(row.as_ref().map(project_from_row).transpose()?)
        })
    }

    fn projects(&self) -> StoreResult<Vec<ProjectRecord>> {
        self.run(|conn| {
            let rows = conn.direct().query(
                "SELECT id, name, created_at FROM projects ORDER BY name COLLATE \"C\"",
                &[],
            )?;
            Ok(rows
                .iter()
                .map(project_from_row)
                .collect::<Result<Vec<_>, _>>()?)
        })
    }

    fn create_key(&self, key: &KeyRecord, first: &KeyVersionRecord) -> StoreResult<()> {
        if first.key_id != key.id {
            return Err(StoreError::Other(format!(
                "version of key {} given for key {}",
                first.key_id, key.id
            )));
        }
        let insert_key = format!(
            "INSERT INTO keys ({KEY_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)"
        );
        self.run(|conn| {
            conn.transaction(IsolationLevel::ReadCommitted, |db| {
                if let Some(label) = &key.hsm_key_label {
                    let used =
                        db.query_opt("SELECT 1 FROM keys WHERE hsm_key_label = $1", &[label])?;
                    if used.is_some() {
                        return Err(StoreError::Conflict(format!(
                            "the HSM key {label:?} is already used by another key"
                        ))
                        .into());
                    }
                }
                db.execute(
                    &insert_key,
                    &[
                        &key.id,
                        &key.project_id,
                        &key.name,
                        &key.description,
                        &key.key_usage.as_str(),
                        &key.algorithm.as_str(),
                        &to_i64(key.version),
                        &key.is_disabled,
                        &key.is_reserved,
                        &key.customer_fragment_id,
                        &key.created_at,
                        &key.updated_at,
                        &key.hsm_key_label,
                        &to_i64(key.min_decryption_version),
                        &key.deletion_date,
                        &key.rotation_period_days.map(i64::from),
                        &key.exportable,
                        &key.protect_stopped,
                    ],
                )
                .map_err(|err| match violation(&err) {
                    Some((code, _)) if *code == SqlState::FOREIGN_KEY_VIOLATION => Fail::Store(
                        StoreError::Other(format!("project {} does not exist", key.project_id)),
                    ),
                    _ => key_conflict(err, key.id, &key.name, key.hsm_key_label.as_deref()),
                })?;
                insert_version(db, first)?;
                Ok(())
            })
        })
    }

    fn key(&self, id: Uuid) -> StoreResult<Option<KeyRecord>> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM keys WHERE id = $1");
        self.run(|conn| {
            let row = conn.direct().query_opt(&sql, &[&id])?;
            Ok(row.map(|r| key_from_row(&r, 0)).transpose()?)
        })
    }

    fn key_by_name(&self, project_id: Uuid, name: &str) -> StoreResult<Option<KeyRecord>> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM keys WHERE project_id = $1 AND name = $2");
        self.run(|conn| {
            let row = conn.direct().query_opt(&sql, &[&project_id, &name])?;
            Ok(row.map(|r| key_from_row(&r, 0)).transpose()?)
        })
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
        // Names fold case under the "C" collation: ASCII letters only, as SQLite's LIKE.
        let filter = r#"project_id = $1 AND ($2::text IS NULL OR lower(name) LIKE lower($2::text COLLATE "C") ESCAPE '\')"#;
        // One statement, so the count and the page see the same snapshot. The count row
        // is there even when the page is empty (then its key columns are NULL).
        let sql = format!(
            "SELECT c.total, p.* FROM (SELECT count(*) AS total FROM keys WHERE {filter}) AS c \
             LEFT JOIN (SELECT {KEY_COLUMNS} FROM keys WHERE {filter} \
                        ORDER BY {column} {direction}, id {direction} LIMIT $3 OFFSET $4) AS p ON true \
             ORDER BY p.{column} {direction}, p.id {direction}"
        );
        let pattern = query.search.as_deref().map(super::contains_pattern);
        let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
        let offset = i64::try_from(query.offset).unwrap_or(i64::MAX);
        self.run(|conn| {
            let rows = conn
                .direct()
                .query(&sql, &[&query.project_id, &pattern, &limit, &offset])?;
            let mut total = 0;
            let mut keys = Vec::with_capacity(rows.len());
            for row in &rows {
                let count: i64 = get(row, 0)?;
                total = u64::try_from(count)
                    .map_err(|_| StoreError::Corrupt(format!("negative key count {count}")))?;
                let id: Option<Uuid> = get(row, 1)?;
                if id.is_some() {
                    keys.push(key_from_row(row, 1)?);
                }
            }
            Ok((keys, total))
        })
    }

    fn update_key(
        &self,
        id: Uuid,
        patch: &KeyPatch,
        updated_at: &str,
    ) -> StoreResult<Option<KeyRecord>> {
        let sql = format!(
            "UPDATE keys SET name = coalesce($2, name), description = coalesce($3, description), \
             is_disabled = coalesce($4, is_disabled), \
             protect_stopped = coalesce($11, protect_stopped), \
             min_decryption_version = coalesce($6, min_decryption_version), updated_at = $5, \
             rotation_period_days = CASE WHEN $7 THEN $8 ELSE rotation_period_days END, \
             deletion_date = CASE WHEN $9 THEN $10 ELSE deletion_date END \
             WHERE id = $1 RETURNING {KEY_COLUMNS}"
        );
        let min_version = patch.min_decryption_version.map(to_i64);
        let rotation = patch.rotation_period_days.flatten().map(i64::from);
        let deletion = patch.deletion_date.clone().flatten();
        self.run(|conn| {
            let row = conn
                .direct()
                .query_opt(
                    &sql,
                    &[
                        &id,
                        &patch.name,
                        &patch.description,
                        &patch.is_disabled,
                        &updated_at,
                        &min_version,
                        &patch.rotation_period_days.is_some(),
                        &rotation,
                        &patch.deletion_date.is_some(),
                        &deletion,
                        &patch.protect_stopped,
                    ],
                )
                .map_err(|err| {
                    key_conflict(err, id, patch.name.as_deref().unwrap_or_default(), None)
                })?;
            Ok(row.map(|r| key_from_row(&r, 0)).transpose()?)
        })
    }

    fn delete_key(&self, id: Uuid) -> StoreResult<Option<KeyRecord>> {
        // The versions and attributes go with the key (ON DELETE CASCADE), in this one
        // statement.
        let sql = format!("DELETE FROM keys WHERE id = $1 RETURNING {KEY_COLUMNS}");
        self.run(|conn| {
            let row = conn.direct().query_opt(&sql, &[&id])?;
            Ok(row.map(|r| key_from_row(&r, 0)).transpose()?)
        })
    }

    fn key_attributes(
        &self,
        key_id: Uuid,
    ) -> StoreResult<std::collections::BTreeMap<String, String>> {
        self.run(|conn| attributes::of_key(conn, key_id))
    }

    fn create_access_key(&self, key: &AccessKeyRecord, max_per_identity: usize) -> StoreResult<()> {
        self.run(|conn| aws::create_access_key(conn, key, max_per_identity))
    }

    fn access_key(&self, access_key_id: &str) -> StoreResult<Option<AccessKeyRecord>> {
        self.run(|conn| aws::access_key(conn, access_key_id))
    }

    fn access_keys_of(&self, identity_id: Uuid) -> StoreResult<Vec<AccessKeyRecord>> {
        self.run(|conn| aws::access_keys_of(conn, identity_id))
    }

    fn delete_access_key(&self, identity_id: Uuid, access_key_id: &str) -> StoreResult<bool> {
        self.run(|conn| aws::delete_access_key(conn, identity_id, access_key_id))
    }

    fn create_alias(&self, alias: &AliasRecord) -> StoreResult<()> {
        self.run(|conn| aws::create_alias(conn, alias))
    }

    fn alias(&self, project_id: Uuid, name: &str) -> StoreResult<Option<AliasRecord>> {
        self.run(|conn| aws::alias(conn, project_id, name))
    }

    fn aliases(&self, project_id: Uuid, key_id: Option<Uuid>) -> StoreResult<Vec<AliasRecord>> {
        self.run(|conn| aws::aliases(conn, project_id, key_id))
    }

    fn update_alias(
        &self,
        project_id: Uuid,
        name: &str,
        key_id: Uuid,
        updated_at: &str,
    ) -> StoreResult<bool> {
        self.run(|conn| aws::update_alias(conn, project_id, name, key_id, updated_at))
    }

    fn delete_alias(&self, project_id: Uuid, name: &str) -> StoreResult<bool> {
        self.run(|conn| aws::delete_alias(conn, project_id, name))
    }

    fn update_key_attributes(
        &self,
        key_id: Uuid,
        set: &std::collections::BTreeMap<String, String>,
        remove: &[String],
    ) -> StoreResult<bool> {
        self.run(|conn| attributes::update(conn, key_id, set, remove))
    }

    fn key_version(&self, key_id: Uuid, version: u32) -> StoreResult<Option<KeyVersionRecord>> {
        let version = to_i64(version);
        self.run(|conn| {
            let row = conn.direct().query_opt(
                "SELECT key_id, version, wrapped_material, public_key, created_at \
                 FROM key_versions WHERE key_id = $1 AND version = $2",
                &[&key_id, &version],
            )?;
            Ok(row.as_ref().map(version_from_row).transpose()?)
        })
    }

    fn add_key_version(
        &self,
        record: &KeyVersionRecord,
        updated_at: &str,
    ) -> StoreResult<Option<KeyRecord>> {
        let update = format!(
            "UPDATE keys SET version = $2, updated_at = $3 WHERE id = $1 RETURNING {KEY_COLUMNS}"
        );
        self.run(|conn| {
            conn.transaction(IsolationLevel::ReadCommitted, |db| {
                // The key's row lock orders this against other rotations and deletion.
                let Some(row) = db.query_opt(
                    "SELECT version FROM keys WHERE id = $1 FOR UPDATE",
                    &[&record.key_id],
                )?
                else {
                    return Ok(None);
                };
                let current = version_at(&row, 0)?;
                if u64::from(record.version) != u64::from(current) + 1 {
                    return Err(StoreError::Conflict(format!(
                        "the key is at version {current}; version {} cannot be added (rotated meanwhile?)",
                        record.version
                    ))
                    .into());
                }
                insert_version(db, record)?;
                let row = db
                    .query_opt(&update, &[&record.key_id, &to_i64(record.version), &updated_at])?
                    .ok_or_else(|| StoreError::Other("the locked key vanished".into()))?;
                Ok(Some(key_from_row(&row, 0)?))
            })
        })
    }

    fn key_versions(&self, key_id: Uuid) -> StoreResult<Vec<(u32, String)>> {
        self.run(|conn| {
            let rows = conn.direct().query(
                "SELECT version, created_at FROM key_versions WHERE key_id = $1 ORDER BY version",
                &[&key_id],
            )?;
            Ok(rows
                .iter()
                .map(|r| Ok((version_at(r, 0)?, get(r, 1)?)))
                .collect::<StoreResult<Vec<_>>>()?)
        })
    }

    fn create_identity(&self, identity: &IdentityRecord) -> StoreResult<()> {
        self.run(|conn| {
            insert_identity(&mut conn.direct(), identity).map_err(|err| match violation(&err) {
                Some(_) => Fail::Store(StoreError::Conflict(
                    "the identity's token or TLS subject is taken, or its project does not exist"
                        .into(),
                )),
                None => Fail::Pg(err),
            })?;
            Ok(())
        })
    }

    fn create_identity_with_universal_auth(
        &self,
        identity: &IdentityRecord,
        credentials: &UniversalAuthRecord,
    ) -> StoreResult<()> {
        super::check_credentials_of(identity, credentials)?;
        self.run(|conn| universal_auth::create(conn, identity, credentials))
    }

    fn universal_auth(&self, client_id: &str) -> StoreResult<Option<UniversalAuthRecord>> {
        self.run(|conn| universal_auth::by_client_id(conn, client_id))
    }

    fn universal_auth_of(&self, identity_id: Uuid) -> StoreResult<Option<UniversalAuthRecord>> {
        self.run(|conn| universal_auth::of_identity(conn, identity_id))
    }

    fn identity_by_token(&self, token_sha256: &[u8; 32]) -> StoreResult<Option<IdentityRecord>> {
        let sql = format!("SELECT {IDENTITY_COLUMNS} FROM identities WHERE token_sha256 = $1");
        self.run(|conn| {
            let row = conn.direct().query_opt(&sql, &[&token_sha256.as_slice()])?;
            Ok(row.as_ref().map(identity_from_row).transpose()?)
        })
    }

    fn identity(&self, id: Uuid) -> StoreResult<Option<IdentityRecord>> {
        let sql = format!("SELECT {IDENTITY_COLUMNS} FROM identities WHERE id = $1");
        self.run(|conn| {
            let row = conn.direct().query_opt(&sql, &[&id])?;
            Ok(row.as_ref().map(identity_from_row).transpose()?)
        })
    }

    fn identity_by_tls_subject(&self, subject: &str) -> StoreResult<Option<IdentityRecord>> {
        let sql = format!("SELECT {IDENTITY_COLUMNS} FROM identities WHERE tls_subject = $1");
        self.run(|conn| {
            let row = conn.direct().query_opt(&sql, &[&subject])?;
            Ok(row.as_ref().map(identity_from_row).transpose()?)
        })
    }

    fn set_identity_token(
        &self,
        id: Uuid,
        token_sha256: &[u8; 32],
    ) -> StoreResult<Option<IdentityRecord>> {
        let sql = format!(
            "UPDATE identities SET token_sha256 = $2 WHERE id = $1 AND revoked_at IS NULL \
             RETURNING {IDENTITY_COLUMNS}"
        );
        self.run(|conn| {
            let row = conn
                .direct()
                .query_opt(&sql, &[&id, &token_sha256.as_slice()])
                .map_err(|err| match violation(&err) {
                    Some((code, _)) if *code == SqlState::UNIQUE_VIOLATION => Fail::Store(
                        StoreError::Conflict("the new token is already in use".into()),
                    ),
                    _ => Fail::Pg(err),
                })?;
            Ok(row.as_ref().map(identity_from_row).transpose()?)
        })
    }

    fn append_audit(&self, records: &[String], chain: &dyn AuditChain) -> StoreResult<u64> {
        self.run(|conn| audit::append(conn, records, chain))
    }

    fn audit_records(&self, after: u64, limit: u32) -> StoreResult<Vec<AuditRow>> {
        let after = audit::to_i64_seq(after)?;
        self.run(|conn| audit::records(conn, after, limit))
    }

    fn audit_head(&self) -> StoreResult<Option<AuditHead>> {
        self.run(audit::head)
    }

    fn audit_checkpoint(&self) -> StoreResult<Option<AuditHead>> {
        self.run(audit::checkpoint)
    }

    fn prune_audit(&self, through: u64, chain: &dyn AuditChain) -> StoreResult<AuditHead> {
        self.run(|conn| audit::prune(conn, through, chain))
    }

    fn lifecycle_candidates(&self) -> StoreResult<Vec<(KeyRecord, String)>> {
        let cols = KEY_COLUMNS
            .split(',')
            .map(|c| format!("k.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT {cols}, v.created_at FROM keys k \
             JOIN key_versions v ON v.key_id = k.id AND v.version = k.version \
             WHERE k.deletion_date IS NOT NULL OR k.rotation_period_days IS NOT NULL"
        );
        self.run(|conn| {
            let rows = conn.direct().query(&sql, &[])?;
            Ok(rows
                .iter()
                .map(|r| Ok((key_from_row(r, 0)?, get(r, 18)?)))
                .collect::<StoreResult<Vec<_>>>()?)
        })
    }

    fn fragment_ids_in_use(&self) -> StoreResult<Vec<String>> {
        self.run(|conn| {
            let rows = conn.direct().query(
                "SELECT DISTINCT customer_fragment_id FROM keys \
                 WHERE customer_fragment_id IS NOT NULL ORDER BY 1",
                &[],
            )?;
            Ok(rows
                .iter()
                .map(|r| get(r, 0))
                .collect::<StoreResult<Vec<String>>>()?)
        })
    }

    fn publish(&self, topic: &str) -> StoreResult<()> {
        self.run(|conn| {
            conn.direct()
                .execute("SELECT pg_notify($1, $2)", &[&CHANGES_CHANNEL, &topic])?;
            Ok(())
        })
    }

    fn subscribe(&self, on_change: Box<dyn Fn(&str) + Send + Sync>) -> bool {
        let connector = self.pool.connector();
        let spawned = std::thread::Builder::new()
            .name("pg-listen".into())
            .spawn(move || listen(&connector, on_change.as_ref()));
        spawned.is_ok()
    }

    fn backup_to(&self, _dest: &std::path::Path) -> StoreResult<()> {
        Err(StoreError::Other(
            "a PostgreSQL key store is backed up with pg_dump (consistent while gateways run); \
             see docs/OPERATIONS.md"
                .into(),
        ))
    }

    fn identities(&self) -> StoreResult<Vec<IdentityRecord>> {
        let sql = format!("SELECT {IDENTITY_COLUMNS} FROM identities ORDER BY created_at, id");
        self.run(|conn| {
            let rows = conn.direct().query(&sql, &[])?;
            Ok(rows
                .iter()
                .map(identity_from_row)
                .collect::<StoreResult<Vec<_>>>()?)
        })
    }

    fn revoke_identity(&self, id: Uuid, revoked_at: &str) -> StoreResult<Option<IdentityRecord>> {
        let sql = format!(
            "UPDATE identities SET revoked_at = coalesce(revoked_at, $2) WHERE id = $1 \
             RETURNING {IDENTITY_COLUMNS}"
        );
        self.run(|conn| {
            let row = conn.direct().query_opt(&sql, &[&id, &revoked_at])?;
            Ok(row.as_ref().map(identity_from_row).transpose()?)
        })
    }

    fn check_writable(&self) -> StoreResult<()> {
        // A committed write: a read-only standby or a full disk fails here.
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let value = now.to_be_bytes();
        self.run(|conn| {
            conn.direct().execute(
                "INSERT INTO meta (name, value) VALUES ($1, $2) \
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                &[&HEARTBEAT, &value.as_slice()],
            )?;
            Ok(())
        })
    }
}
