//! A small bounded pool of PostgreSQL connections, each with its cache of prepared
//! statements, and the reading of driver errors by SQLSTATE (never by message text).
//!
//! A connection that the server closed (restart, failover, network cut) is dropped as soon
//! as a call notices it; that call fails with `StoreError::Unavailable` and every idle
//! connection opened before it is dropped too, so the next call connects afresh.

use std::collections::HashMap;
use std::error::Error as _;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use postgres::error::SqlState;
use postgres::types::ToSql;
use postgres::{Client, GenericClient, NoTls, Row, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::store::{StoreError, StoreResult};

/// How long a call waits for a free connection when all are in use.
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(30);

/// Why an operation on a connection stopped: a driver error, to be read by SQLSTATE here,
/// or a verdict the operation reached itself.
pub(super) enum Fail {
    Pg(postgres::Error),
    Store(StoreError),
}

impl From<postgres::Error> for Fail {
    fn from(err: postgres::Error) -> Self {
        Fail::Pg(err)
    }
}

impl From<StoreError> for Fail {
    fn from(err: StoreError) -> Self {
        Fail::Store(err)
    }
}

/// What to do about a driver error.
pub(super) enum Verdict {
    /// The connection is gone: drop it (and its idle siblings) and report Unavailable.
    Lost,
    /// Serialization failure or deadlock: run the whole transaction again.
    Retry,
    /// A cached statement no longer matches the schema: forget the cache and retry.
    Stale,
    /// Report as this.
    Fail(StoreError),
}

pub(super) fn judge(err: &postgres::Error, client_closed: bool) -> Verdict {
    let Some(db) = err.as_db_error() else {
        // No SQLSTATE: an I/O, TLS or protocol failure. If it closed the connection the
        // server is unreachable; otherwise it is a fault on this side.
        return if client_closed || err.is_closed() {
            Verdict::Lost
        } else {
            Verdict::Fail(StoreError::Other(describe(err)))
        };
    };
    let code = db.code();
    if client_closed {
        return Verdict::Lost;
    }
    if *code == SqlState::T_R_SERIALIZATION_FAILURE || *code == SqlState::T_R_DEADLOCK_DETECTED {
        return Verdict::Retry;
    }
    if *code == SqlState::FEATURE_NOT_SUPPORTED {
        // "cached plan must not change result type": another gateway migrated the schema.
        return Verdict::Stale;
    }
    Verdict::Fail(map_code(code, describe(err)))
}

/// The `StoreError` for an error the server reported with `code`.
pub(super) fn map_code(code: &SqlState, detail: String) -> StoreError {
    let class = &code.code()[..2];
    if *code == SqlState::UNIQUE_VIOLATION {
        StoreError::Conflict(detail)
    } else if *code == SqlState::DISK_FULL {
        StoreError::InsufficientStorage(detail)
    } else if matches!(class, "08" | "53" | "57" | "58")
        || *code == SqlState::READ_ONLY_SQL_TRANSACTION
        || *code == SqlState::LOCK_NOT_AVAILABLE
        || *code == SqlState::T_R_SERIALIZATION_FAILURE
        || *code == SqlState::T_R_DEADLOCK_DETECTED
    {
        // Connection exceptions, insufficient resources, operator intervention (shutdown,
        // statement timeout), system errors, a read-only standby, contention.
        StoreError::Unavailable(detail)
    } else if *code == SqlState::DATA_CORRUPTED || *code == SqlState::INDEX_CORRUPTED {
        StoreError::Corrupt(detail)
    } else {
        StoreError::Other(detail)
    }
}

/// A description of `err` for logs and error values: the SQLSTATE and the server's
/// primary message, or the driver's message and its cause. Never the DETAIL of a server
/// error (it can quote stored values) and never connection parameters.
pub(super) fn describe(err: &postgres::Error) -> String {
    if let Some(db) = err.as_db_error() {
        return format!(
            "PostgreSQL {} {}: {}",
            db.severity(),
            db.code().code(),
            db.message()
        );
    }
    match err.source() {
        Some(cause) => format!("{err}: {cause}"),
        None => err.to_string(),
    }
}

/// The SQLSTATE and constraint of a unique or foreign-key violation.
pub(super) fn violation(err: &postgres::Error) -> Option<(&SqlState, Option<&str>)> {
    let db = err.as_db_error()?;
    let code = db.code();
    (*code == SqlState::UNIQUE_VIOLATION || *code == SqlState::FOREIGN_KEY_VIOLATION)
        .then(|| (code, db.constraint()))
}

/// How connections are made.
#[derive(Clone)]
pub(super) struct Connector {
    pub config: postgres::Config,
    pub tls: Option<MakeRustlsConnect>,
    /// `user@host:port/db`: names the server in messages, without the password.
    pub target: String,
    /// Run on every new connection (session settings).
    pub session_setup: Option<String>,
}

impl Connector {
    pub(super) fn connect(&self) -> StoreResult<Client> {
        let result = match &self.tls {
            Some(tls) => self.config.connect(tls.clone()),
            None => self.config.connect(NoTls),
        };
        let result = result.and_then(|mut client| {
            if let Some(sql) = &self.session_setup {
                client.batch_execute(sql)?;
            }
            Ok(client)
        });
        result.map_err(|err| {
            let detail = format!(
                "cannot connect to PostgreSQL at {}: {}",
                self.target,
                describe(&err)
            );
            match err.as_db_error() {
                // The server answered and refused: wrong password, unknown database, ...
                Some(db) if !matches!(&db.code().code()[..2], "08" | "53" | "57") => {
                    StoreError::Other(detail)
                }
                _ => StoreError::Unavailable(detail),
            }
        })
    }
}

/// One connection and the statements prepared on it.
pub(super) struct Conn {
    pub client: Client,
    statements: HashMap<String, Statement>,
    generation: u64,
}

impl Conn {
    /// This connection for single statements (each its own transaction).
    pub fn direct(&mut self) -> Db<'_, Client> {
        Db {
            client: &mut self.client,
            statements: &mut self.statements,
        }
    }

    /// Runs `op` in a transaction of `isolation`, committing if it returns `Ok`.
    pub fn transaction<T>(
        &mut self,
        isolation: postgres::IsolationLevel,
        op: impl FnOnce(&mut Db<'_, postgres::Transaction<'_>>) -> Result<T, Fail>,
    ) -> Result<T, Fail> {
        let mut tx = self
            .client
            .build_transaction()
            .isolation_level(isolation)
            .start()?;
        let value = op(&mut Db {
            client: &mut tx,
            statements: &mut self.statements,
        })?;
        tx.commit()?;
        Ok(value)
    }

    pub fn forget_statements(&mut self) {
        self.statements.clear();
    }
}

/// A connection (or a transaction on one) whose statements are prepared once.
pub(super) struct Db<'a, C> {
    client: &'a mut C,
    statements: &'a mut HashMap<String, Statement>,
}

impl<C: GenericClient> Db<'_, C> {
    fn statement(&mut self, sql: &str) -> Result<Statement, postgres::Error> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql)?;
        self.statements.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    pub fn query(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, postgres::Error> {
        let statement = self.statement(sql)?;
        self.client.query(&statement, params)
    }

    pub fn query_opt(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, postgres::Error> {
        let statement = self.statement(sql)?;
        self.client.query_opt(&statement, params)
    }

    pub fn execute(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, postgres::Error> {
        let statement = self.statement(sql)?;
        self.client.execute(&statement, params)
    }

    /// Runs `sql` (several statements, no parameters) without preparing it.
    pub fn batch(&mut self, sql: &str) -> Result<(), postgres::Error> {
        self.client.batch_execute(sql)
    }
}

struct PoolState {
    idle: Vec<Conn>,
    /// Connections in existence, idle or lent.
    open: usize,
    /// Bumped when a connection is found lost; older connections are not reused.
    generation: u64,
}

/// At most `max` connections, made on demand and kept for reuse.
pub(super) struct Pool {
    connector: Connector,
    max: usize,
    state: Mutex<PoolState>,
    returned: Condvar,
}

impl Pool {
    pub fn new(connector: Connector, max: usize) -> Self {
        Self {
            connector,
            max: max.max(1),
            state: Mutex::new(PoolState {
                idle: Vec::new(),
                open: 0,
                generation: 0,
            }),
            returned: Condvar::new(),
        }
    }

    /// How this pool connects (for a connection of its own, such as LISTEN's).
    pub fn connector(&self) -> Connector {
        self.connector.clone()
    }

    pub fn target(&self) -> &str {
        &self.connector.target
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        // The state is plain counters and a list; a panic cannot leave it half-changed.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Lends a connection: an idle one, a new one while fewer than `max` exist, or the
    /// next one returned. Unavailable if none can be had.
    pub fn get(&self) -> StoreResult<Lease<'_>> {
        let deadline = Instant::now() + CHECKOUT_TIMEOUT;
        let mut state = self.lock();
        loop {
            if let Some(conn) = state.idle.pop() {
                if conn.generation == state.generation && !conn.client.is_closed() {
                    return Ok(Lease {
                        pool: self,
                        conn: Some(conn),
                    });
                }
                state.open -= 1;
                drop(state);
                drop(conn);
                state = self.lock();
                continue;
            }
            if state.open < self.max {
                state.open += 1;
                let generation = state.generation;
                drop(state);
                return match self.connector.connect() {
                    Ok(client) => Ok(Lease {
                        pool: self,
                        conn: Some(Conn {
                            client,
                            statements: HashMap::new(),
                            generation,
                        }),
                    }),
                    Err(err) => {
                        self.lock().open -= 1;
                        self.returned.notify_one();
                        Err(err)
                    }
                };
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(StoreError::Unavailable(format!(
                    "all {} connections to PostgreSQL at {} stayed busy for {}s",
                    self.max,
                    self.connector.target,
                    CHECKOUT_TIMEOUT.as_secs()
                )));
            }
            state = self
                .returned
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Drops `conn`, found lost, and every idle connection made before it.
    fn lost(&self, conn: Conn) {
        let stale = {
            let mut state = self.lock();
            state.generation = state.generation.max(conn.generation + 1);
            let stale = std::mem::take(&mut state.idle);
            state.open -= 1 + stale.len();
            stale
        };
        self.returned.notify_all();
        drop(conn);
        drop(stale);
    }

    fn give_back(&self, conn: Conn) {
        let mut state = self.lock();
        if conn.generation == state.generation && !conn.client.is_closed() {
            state.idle.push(conn);
            drop(state);
        } else {
            state.open -= 1;
            drop(state);
            drop(conn);
        }
        self.returned.notify_one();
    }
}

/// A connection lent by the pool; returned to it when dropped.
pub(super) struct Lease<'a> {
    pool: &'a Pool,
    conn: Option<Conn>,
}

impl Lease<'_> {
    pub fn conn(&mut self) -> &mut Conn {
        // Invariant: `conn` is `Some` from creation until `discard_lost` or drop.
        self.conn.as_mut().expect("a lease holds its connection")
    }

    /// The connection is gone: drop it and its idle siblings instead of returning it.
    pub fn discard_lost(mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.lost(conn);
        }
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.give_back(conn);
        }
    }
}
