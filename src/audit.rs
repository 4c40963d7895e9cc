//! The tamper-evident audit log (docs/SECURITY.md). Every API call and admin command
//! appends one record to the key store. Records are hash-chained:
//! `hash(n) = SHA-256("kms-gateway/v1/audit" ‖ hash(n-1) ‖ be64(n) ‖ record)` with 32
//! zero bytes before the first, and the head `(n, hash(n))` carries
//! `HMAC-SHA256(K_audit, "kms-gateway/v1/audit-head" ‖ be64(n) ‖ hash(n))`, where
//! `K_audit = HKDF-SHA256(IRK, info "kms-gateway/v1/audit-mac")`. Whoever edits, drops or
//! reorders records must recompute the chain, and cannot MAC the new head without the
//! instance root key (which, with the `hsm` root strategy, only the HSM unwraps).
//!
//! Appends go through one writer thread that commits what has queued up in one
//! transaction (group commit), so that a busy gateway pays one disk sync per batch.
//! A caller waits for its record to be committed; if it cannot be, the caller fails.
//! How far "committed" goes is the operator's choice (`audit.durability`): with `sync`
//! every commit reaches the disk before its callers go on; with `group` (the default) the
//! records of crypto operations and reads are committed to the database (they survive a
//! crash of the process) and reach the disk within `audit.sync_interval_ms`, while those of
//! changes of state are still synced before their answer.

pub mod archive;

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::store::{AuditChain, AuditHead, AuditRow, KeyStore, StoreError};

const LINK_DOMAIN: &[u8] = b"kms-gateway/v1/audit";
const HEAD_DOMAIN: &[u8] = b"kms-gateway/v1/audit-head";
const KEY_INFO: &[u8] = b"kms-gateway/v1/audit-mac";
const CHECKPOINT_DOMAIN: &[u8] = b"kms-gateway/v1/audit-checkpoint";
/// Most records one transaction takes.
const BATCH: usize = 512;

/// One audited event. Never holds plaintext, ciphertext, signatures or secrets: only
/// who, what, on which key, and how it ended. Field order is the canonical JSON order.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    /// RFC 3339, UTC.
    pub time: String,
    /// `api`, `cli` or `system` (the lifecycle sweeper).
    pub source: String,
    /// The front-end: `native`, `cli`, `system`, ... (absent in records of earlier versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frontend: Option<String>,
    pub identity_id: Option<String>,
    pub identity_name: Option<String>,
    pub project_id: Option<String>,
    pub key_id: Option<String>,
    pub key_version: Option<u32>,
    /// The core's operation (`key.encrypt`, `identity.revoke`, ...; see `core::Operation`);
    /// earlier versions wrote `METHOD /route/template` here.
    pub operation: String,
    /// `ok`, or the error code.
    pub outcome: String,
    pub status: Option<u16>,
    pub request_id: Option<String>,
    pub client: Option<String>,
    /// Non-secret detail (e.g. the identity a command created).
    pub target: Option<String>,
    /// In a summary record (`auth.refusals_suppressed`): how many refused requests it
    /// stands for. Absent from every other record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppressed: Option<u64>,
}

/// A committed record as `GET /api/v1/audit` and the stream show it.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry {
    pub seq: u64,
    #[serde(flatten)]
    pub event: AuditEvent,
    pub hash: String,
}

impl AuditEntry {
    pub fn from_row(row: &AuditRow) -> Result<Self, StoreError> {
        let event = serde_json::from_str(&row.record)
            .map_err(|e| StoreError::Corrupt(format!("audit record {}: {e}", row.seq)))?;
        Ok(Self {
            seq: row.seq,
            event,
            hash: hex::encode(row.hash),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("the audit record could not be written: {0}")]
    Unavailable(String),
    /// The store refused it for want of disk space (`store.min_free_mib`, or a full disk).
    #[error("the audit record could not be written: {0}")]
    InsufficientStorage(String),
}

/// Links and seals with the key derived from the IRK.
pub struct Chain {
    key: Zeroizing<[u8; 32]>,
}

impl Chain {
    pub fn new(irk: &[u8; 32]) -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        hkdf::Hkdf::<Sha256>::new(None, irk)
            .expand(KEY_INFO, key.as_mut())
            .expect("32 bytes is a valid HKDF-SHA256 length");
        Self { key }
    }

    fn mac(&self) -> Hmac<Sha256> {
        <Hmac<Sha256> as Mac>::new_from_slice(self.key.as_ref()).expect("any key length")
    }
}

impl AuditChain for Chain {
    fn link(&self, previous: &[u8; 32], seq: u64, record: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(LINK_DOMAIN);
        h.update(previous);
        h.update(seq.to_be_bytes());
        h.update(record.as_bytes());
        h.finalize().into()
    }

    fn seal(&self, seq: u64, hash: &[u8; 32]) -> Vec<u8> {
        let mut m = self.mac();
        m.update(HEAD_DOMAIN);
        m.update(&seq.to_be_bytes());
        m.update(hash);
        m.finalize().into_bytes().to_vec()
    }

    fn seal_checkpoint(&self, seq: u64, hash: &[u8; 32]) -> Vec<u8> {
        let mut m = self.mac();
        m.update(CHECKPOINT_DOMAIN);
        m.update(&seq.to_be_bytes());
        m.update(hash);
        m.finalize().into_bytes().to_vec()
    }
}

impl Chain {
    fn is_authentic(&self, domain: &[u8], sealed: &AuditHead) -> bool {
        let mut m = self.mac();
        m.update(domain);
        m.update(&sealed.seq.to_be_bytes());
        m.update(&sealed.hash);
        m.verify_slice(&sealed.mac).is_ok()
    }
}

/// Where committed records are also written, one JSON object per line (for a SIEM).
pub enum Stream {
    None,
    Stdout,
    File(std::path::PathBuf),
}

impl Stream {
    /// `""` → none, `stdout`, or a file path (appended to).
    pub fn parse(s: Option<&str>) -> Self {
        match s.map(str::trim) {
            None | Some("") => Stream::None,
            Some("stdout") | Some("-") => Stream::Stdout,
            Some(p) => Stream::File(p.into()),
        }
    }
}

type Reply = tokio::sync::oneshot::Sender<Result<u64, AuditError>>;

/// One record for the writer: its JSON, whether it must reach the disk before the
/// answer, and where the answer goes.
struct Pending {
    json: String,
    sync: bool,
    reply: Reply,
}

/// When committed audit records reach the disk (`audit.durability`, docs/SECURITY.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Every commit is synced before its callers are answered.
    Sync,
    /// Records that may wait (crypto operations, reads) are committed before the answer
    /// and synced within `interval`; records that must not wait are synced before it.
    Group { interval: Duration },
}

/// What the writer has done, for `/metrics` and the tests of the durability levels.
#[derive(Debug, Default)]
pub struct AuditCounts {
    /// Transactions committed and synced before their callers were answered.
    pub synced_commits: AtomicU64,
    /// Transactions committed before the answer and synced later.
    pub deferred_commits: AtomicU64,
    /// Syncs of deferred commits (each covers every deferred commit before it).
    pub deferred_syncs: AtomicU64,
    /// Syncs of deferred commits that failed (logged; retried at the next interval).
    pub failed_syncs: AtomicU64,
}

/// The audit log: a queue in front of one writer thread.
#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Pending>,
    store: Arc<dyn KeyStore>,
    counts: Arc<AuditCounts>,
}

impl AuditLog {
    /// Starts the writer thread; every record is synced before its answer (the
    /// commands of the CLI use this).
    pub fn start(store: Arc<dyn KeyStore>, irk: &[u8; 32], stream: Stream) -> Self {
        Self::start_with(store, irk, stream, Durability::Sync)
    }

    /// Starts the writer thread with the given durability level.
    pub fn start_with(
        store: Arc<dyn KeyStore>,
        irk: &[u8; 32],
        stream: Stream,
        durability: Durability,
    ) -> Self {
        // A store that syncs every commit anyway (PostgreSQL) has nothing to defer.
        let durability = if store.defers_audit_sync() {
            durability
        } else {
            Durability::Sync
        };
        let (tx, rx) = mpsc::channel::<Pending>();
        let chain = Chain::new(irk);
        let writer_store = store.clone();
        let counts = Arc::new(AuditCounts::default());
        let writer_counts = counts.clone();
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || {
                Writer {
                    store: writer_store,
                    chain,
                    stream,
                    durability,
                    counts: writer_counts,
                    unsynced_since: None,
                }
                .run(rx)
            })
            .expect("spawn the audit writer thread");
        Self { tx, store, counts }
    }

    /// Appends one record that must reach the disk before the caller goes on, and
    /// waits until it is committed and synced.
    pub async fn record(&self, event: &AuditEvent) -> Result<u64, AuditError> {
        self.record_with(event, true).await
    }

    /// Appends one record and waits until it is committed; `sync: false` lets the
    /// disk sync come within the group interval (with `Durability::Group`).
    pub async fn record_with(&self, event: &AuditEvent, sync: bool) -> Result<u64, AuditError> {
        let wait = self.send(event, sync)?;
        wait.await
            .map_err(|_| AuditError::Unavailable("the audit writer has stopped".into()))?
    }

    /// The same as `record`, for callers outside the async runtime (the CLI, the
    /// sweeper thread).
    pub fn record_blocking(&self, event: &AuditEvent) -> Result<u64, AuditError> {
        let wait = self.send(event, true)?;
        wait.blocking_recv()
            .map_err(|_| AuditError::Unavailable("the audit writer has stopped".into()))?
    }

    fn send(
        &self,
        event: &AuditEvent,
        sync: bool,
    ) -> Result<tokio::sync::oneshot::Receiver<Result<u64, AuditError>>, AuditError> {
        let json = serde_json::to_string(event)
            .map_err(|e| AuditError::Unavailable(format!("cannot encode the record: {e}")))?;
        let (reply, wait) = tokio::sync::oneshot::channel();
        self.tx
            .send(Pending { json, sync, reply })
            .map_err(|_| AuditError::Unavailable("the audit writer has stopped".into()))?;
        Ok(wait)
    }

    pub fn store(&self) -> &Arc<dyn KeyStore> {
        &self.store
    }

    pub fn counts(&self) -> &AuditCounts {
        &self.counts
    }
}

/// The writer thread's state.
struct Writer {
    store: Arc<dyn KeyStore>,
    chain: Chain,
    stream: Stream,
    durability: Durability,
    counts: Arc<AuditCounts>,
    /// When the oldest commit not yet synced was made.
    unsynced_since: Option<Instant>,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Pending>) {
        loop {
            let first = match self.sync_deadline() {
                None => match rx.recv() {
                    Ok(p) => p,
                    Err(_) => break,
                },
                Some(deadline) => {
                    match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                        Ok(p) => p,
                        Err(mpsc::RecvTimeoutError::Timeout) => {
                            self.sync_deferred();
                            continue;
                        }
                        Err(mpsc::RecvTimeoutError::Disconnected) => break,
                    }
                }
            };
            let mut batch = vec![first];
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            self.commit(batch);
            if self
                .sync_deadline()
                .is_some_and(|deadline| Instant::now() >= deadline)
            {
                self.sync_deferred();
            }
        }
        if self.unsynced_since.is_some() {
            self.sync_deferred();
        }
    }

    /// When the commits not yet synced must be.
    fn sync_deadline(&self) -> Option<Instant> {
        match (self.durability, self.unsynced_since) {
            (Durability::Group { interval }, Some(since)) => Some(since + interval),
            _ => None,
        }
    }

    fn commit(&mut self, batch: Vec<Pending>) {
        let sync = self.durability == Durability::Sync || batch.iter().any(|p| p.sync);
        let (records, replies): (Vec<String>, Vec<Reply>) =
            batch.into_iter().map(|p| (p.json, p.reply)).unzip();
        let result = if sync {
            self.store.append_audit(&records, &self.chain)
        } else {
            self.store.append_audit_deferred(&records, &self.chain)
        };
        match result {
            Ok(last) => {
                if sync {
                    // A synced commit takes every earlier one to the disk with it.
                    self.counts.synced_commits.fetch_add(1, Ordering::Relaxed);
                    self.unsynced_since = None;
                } else {
                    self.counts.deferred_commits.fetch_add(1, Ordering::Relaxed);
                    self.unsynced_since.get_or_insert_with(Instant::now);
                }
                let first_seq = last + 1 - records.len() as u64;
                emit(&self.stream, first_seq, &records);
                for (i, reply) in replies.into_iter().enumerate() {
                    let _ = reply.send(Ok(first_seq + i as u64));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, records = records.len(), "audit records could not be written; the operations fail");
                let short = matches!(e, StoreError::InsufficientStorage(_));
                for reply in replies {
                    let _ = reply.send(Err(if short {
                        AuditError::InsufficientStorage(e.to_string())
                    } else {
                        AuditError::Unavailable(e.to_string())
                    }));
                }
            }
        }
    }

    /// Takes the deferred commits to the disk; on failure they stay due, for the next
    /// interval or the next synced commit.
    fn sync_deferred(&mut self) {
        match self.store.sync_audit() {
            Ok(()) => {
                self.counts.deferred_syncs.fetch_add(1, Ordering::Relaxed);
                self.unsynced_since = None;
            }
            Err(e) => {
                self.counts.failed_syncs.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, "committed audit records could not be synced to disk; retrying");
                self.unsynced_since = Some(Instant::now());
            }
        }
    }
}

fn emit(stream: &Stream, first_seq: u64, records: &[String]) {
    if matches!(stream, Stream::None) {
        return;
    }
    let mut out = String::new();
    for (i, r) in records.iter().enumerate() {
        // `{"seq":N,` + the record without its opening brace.
        out.push_str(&format!("{{\"seq\":{},{}\n", first_seq + i as u64, &r[1..]));
    }
    let result = match stream {
        Stream::None => return,
        Stream::Stdout => std::io::stdout().lock().write_all(out.as_bytes()),
        Stream::File(path) => std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(out.as_bytes())),
    };
    if let Err(e) = result {
        // The store holds the record; the stream is a copy.
        tracing::warn!(error = %e, "could not write audit records to the stream");
    }
}

/// What `verify` found.
#[derive(Debug, PartialEq, Eq)]
pub enum Finding {
    /// A record whose hash does not follow from its content and predecessor: edited,
    /// or moved (reordered).
    Altered { seq: u64 },
    /// Sequence numbers skip: records before `seq` were removed.
    Missing { after: u64, next: u64 },
    /// The last record is not the head: records at the end were removed or added.
    HeadMismatch { head_seq: u64, last_seq: u64 },
    /// The head's MAC is wrong: the head was forged, or another root key is in use.
    HeadNotAuthentic,
    /// Records exist but the head is gone.
    HeadMissing,
    /// The prune checkpoint's MAC is wrong: records were removed and a checkpoint forged.
    CheckpointNotAuthentic,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finding::Altered { seq } => write!(f, "record {seq} was altered or moved (its hash does not follow from its content and the record before it)"),
            Finding::Missing { after, next } => write!(f, "records {} to {} were removed (record {after} is followed by {next})", after + 1, next - 1),
            Finding::HeadMismatch { head_seq, last_seq } => write!(f, "the chain head names record {head_seq} but the last record is {last_seq}: records at the end were removed or added"),
            Finding::HeadNotAuthentic => write!(f, "the chain head's MAC is not valid: the head was rewritten, or this is not the instance root key that wrote it"),
            Finding::HeadMissing => write!(f, "records exist but the chain head is missing"),
            Finding::CheckpointNotAuthentic => write!(f, "the prune checkpoint's MAC is not valid: records were removed and the checkpoint rewritten, or this is not the instance root key that wrote it"),
        }
    }
}

/// Checks the whole chain, from the prune checkpoint if records were archived and pruned
/// (`kms-gateway audit archive`); returns the number of records and what is wrong (empty
/// when intact). Stops linking at the first altered record but reports gaps and the head.
pub fn verify(store: &dyn KeyStore, irk: &[u8; 32]) -> Result<(u64, Vec<Finding>), StoreError> {
    let chain = Chain::new(irk);
    let mut findings = Vec::new();
    let (mut previous, mut last_seq) = match store.audit_checkpoint()? {
        None => ([0u8; 32], 0u64),
        Some(checkpoint) => {
            if !chain.is_authentic(CHECKPOINT_DOMAIN, &checkpoint) {
                findings.push(Finding::CheckpointNotAuthentic);
            }
            (checkpoint.hash, checkpoint.seq)
        }
    };
    let mut count = 0u64;
    // The head is read after the records; records appended meanwhile by a running
    // gateway move it on, so read on until the head is not ahead of what was checked.
    let mut attempts = 0;
    let head = loop {
        loop {
            let rows = store.audit_records(last_seq, 1000)?;
            if rows.is_empty() {
                break;
            }
            for row in &rows {
                if row.seq != last_seq + 1 {
                    findings.push(Finding::Missing {
                        after: last_seq,
                        next: row.seq,
                    });
                }
                if chain.link(&previous, row.seq, &row.record) != row.hash {
                    findings.push(Finding::Altered { seq: row.seq });
                }
                // Continue from the stored hash, so one edit is reported once.
                previous = row.hash;
                last_seq = row.seq;
                count += 1;
            }
        }
        let head = store.audit_head()?;
        attempts += 1;
        match &head {
            Some(h) if h.seq > last_seq && attempts < 5 => continue,
            _ => break head,
        }
    };
    match head {
        None if count > 0 || last_seq > 0 => findings.push(Finding::HeadMissing),
        None => {}
        Some(head) => {
            if head.seq != last_seq || head.hash != previous {
                findings.push(Finding::HeadMismatch {
                    head_seq: head.seq,
                    last_seq,
                });
            }
            if !chain.is_authentic(HEAD_DOMAIN, &head) {
                findings.push(Finding::HeadNotAuthentic);
            }
        }
    }
    Ok((count, findings))
}
