//! Customer fragments: the `customer_fragments.json` file, the three modes and the
//! derivation of each fragment's value (DESIGN.md section 3). The HMAC step runs in the
//! HSM through the [`FragmentHsm`] seam; this module never opens PKCS#11 itself.

mod file;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use base64::Engine;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::crypto::{self, Secret32};
use crate::hsm::{Hsm, HsmError};

pub use file::{append_fragment, read_fragment_file, write_secret_file, FragmentFile};

/// A fragment id such as `cf-7f3a9c2e51d04b8a`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FragmentId(pub String);

impl fmt::Display for FragmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FragmentType {
    /// No HSM: FV = HKDF(salt = standard salt, IKM = seed).
    Standard,
    /// FV derived in the HSM once at start-up and kept in memory.
    HsmWrapped,
    /// FV derived in the HSM for every operation and never kept.
    HsmSecured,
}

impl FragmentType {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "standard" => Some(Self::Standard),
            "hsm_wrapped" => Some(Self::HsmWrapped),
            "hsm_secured" => Some(Self::HsmSecured),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Standard => "standard",
            Self::HsmWrapped => "hsm_wrapped",
            Self::HsmSecured => "hsm_secured",
        }
    }

    pub fn needs_hsm(self) -> bool {
        !matches!(self, Self::Standard)
    }
}

/// One entry of `customer_fragments.json`. `value` is the base64 seed: a secret.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FragmentRecord {
    pub id: FragmentId,
    pub name: String,
    pub fragment_type: FragmentType,
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hsm_key_label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub created_at: String,
}

impl Drop for FragmentRecord {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.value);
    }
}

impl fmt::Debug for FragmentRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FragmentRecord")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("fragment_type", &self.fragment_type)
            .field("value", &"[redacted]")
            .field("hsm_key_label", &self.hsm_key_label)
            .finish()
    }
}

/// Where fragments come from.
#[derive(Clone)]
pub enum FragmentSource {
    File(PathBuf),
    /// The JSON itself (the `CUSTOMER_FRAGMENTS` variable). Secret.
    Inline(Zeroizing<String>),
}

impl fmt::Debug for FragmentSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FragmentSource::File(p) => write!(f, "File({p:?})"),
            FragmentSource::Inline(_) => write!(f, "Inline([redacted])"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FragmentError {
    #[error("cannot read the fragment file {path:?}: {reason}")]
    FileUnreadable { path: PathBuf, reason: String },
    #[error("the fragment file {origin} is malformed: {reason}")]
    FileMalformed { origin: String, reason: String },
    #[error("cannot write the fragment file {path:?}: {reason}")]
    FileWrite { path: PathBuf, reason: String },
    #[error("customer fragment {id} is not loaded: {reason}")]
    NotLoaded { id: FragmentId, reason: String },
    #[error("customer fragment {id}: the HSM failed: {source}")]
    Hsm { id: FragmentId, source: HsmError },
    #[error("invalid fragment: {0}")]
    Invalid(String),
}

/// The one HSM operation fragments need: HMAC-SHA256 with a token key, in the HSM.
pub trait FragmentHsm: Send + Sync {
    fn hmac_sha256(&self, key_label: &str, data: &[u8]) -> Result<Zeroizing<[u8; 32]>, HsmError>;
}

impl FragmentHsm for Hsm {
    fn hmac_sha256(&self, key_label: &str, data: &[u8]) -> Result<Zeroizing<[u8; 32]>, HsmError> {
        Hsm::hmac_sha256(self, key_label, data)
    }
}

/// FV of an HSM fragment: PRK = HMAC_hsm(seed) in the HSM, then HKDF-Expand in software.
pub fn derive_hsm_value(
    hsm: &dyn FragmentHsm,
    key_label: &str,
    seed: &[u8],
    id: &FragmentId,
) -> Result<Secret32, HsmError> {
    let prk = hsm.hmac_sha256(key_label, seed)?;
    Ok(crypto::fragment_value_from_prk(&prk, &id.0))
}

enum Entry {
    /// `standard` and `hsm_wrapped`: the value, derived once.
    Ready {
        fragment_type: FragmentType,
        value: Secret32,
    },
    /// `hsm_secured`: the seed and key label; the value is derived per use.
    Secured {
        seed: Zeroizing<Vec<u8>>,
        key_label: String,
    },
}

/// What `status` reports of one fragment id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FragmentStatus {
    pub id: FragmentId,
    pub fragment_type: Option<FragmentType>,
    /// `None` when loaded, else why not.
    pub problem: Option<String>,
}

/// The loaded fragments. A fragment that failed to load is remembered with its reason;
/// the others work.
pub struct Fragments {
    entries: HashMap<FragmentId, Entry>,
    failed: BTreeMap<FragmentId, String>,
    /// Problems not tied to one id (an entry without a readable id).
    anonymous_failures: Vec<String>,
    hsm: Option<Arc<dyn FragmentHsm>>,
    derivations: AtomicU64,
}

impl fmt::Debug for Fragments {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fragments")
            .field("loaded", &self.entries.keys().collect::<Vec<_>>())
            .field("failed", &self.failed)
            .finish()
    }
}

impl Fragments {
    /// No fragments at all.
    pub fn empty() -> Self {
        Self {
            entries: HashMap::new(),
            failed: BTreeMap::new(),
            anonymous_failures: Vec::new(),
            hsm: None,
            derivations: AtomicU64::new(0),
        }
    }

    /// Reads the source and loads every fragment it can. A missing file is no fragments;
    /// an unreadable or malformed file is an error; a bad entry is recorded and skipped.
    pub fn load(
        source: &FragmentSource,
        hsm: Option<Arc<dyn FragmentHsm>>,
    ) -> Result<Self, FragmentError> {
        let raw_entries = match source {
            FragmentSource::File(path) => match file::read_raw(path)? {
                Some(entries) => entries,
                None => Vec::new(),
            },
            FragmentSource::Inline(json) => file::parse_raw(json, "CUSTOMER_FRAGMENTS")?,
        };
        let mut out = Self {
            hsm,
            ..Self::empty()
        };
        let mut seen: HashMap<FragmentId, usize> = HashMap::new();
        let mut records = Vec::new();
        for (index, raw) in raw_entries.into_iter().enumerate() {
            let id_hint = raw
                .get("id")
                .and_then(|v| v.as_str())
                .map(|s| FragmentId(s.to_owned()));
            match serde_json::from_value::<FragmentRecord>(raw) {
                Ok(rec) => {
                    *seen.entry(rec.id.clone()).or_default() += 1;
                    records.push(rec);
                }
                Err(e) => {
                    let reason = format!("entry {index} is malformed: {e}");
                    match id_hint {
                        Some(id) => {
                            out.failed.insert(id, reason);
                        }
                        None => out.anonymous_failures.push(reason),
                    }
                }
            }
        }
        for rec in records {
            let id = rec.id.clone();
            if seen.get(&id).copied().unwrap_or(0) > 1 {
                out.failed
                    .insert(id, "the id appears more than once in the file".into());
                continue;
            }
            if out.failed.contains_key(&id) {
                continue;
            }
            match out.load_one(&rec) {
                Ok(entry) => {
                    out.entries.insert(id, entry);
                }
                Err(reason) => {
                    out.failed.insert(id, reason);
                }
            }
        }
        for (id, reason) in &out.failed {
            tracing::error!(fragment = %id, %reason, "customer fragment not loaded");
        }
        for reason in &out.anonymous_failures {
            tracing::error!(%reason, "customer fragment entry not loaded");
        }
        Ok(out)
    }

    fn load_one(&self, rec: &FragmentRecord) -> Result<Entry, String> {
        if rec.id.0.trim().is_empty() {
            return Err("the id is empty".into());
        }
        let seed = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(rec.value.trim())
                .map_err(|_| "the seed (value) is not valid base64".to_string())?,
        );
        if seed.len() < 16 {
            return Err(format!(
                "the seed is {} bytes; at least 16 are required",
                seed.len()
            ));
        }
        match rec.fragment_type {
            FragmentType::Standard => Ok(Entry::Ready {
                fragment_type: FragmentType::Standard,
                value: crypto::standard_fragment_value(&seed, &rec.id.0),
            }),
            t @ (FragmentType::HsmWrapped | FragmentType::HsmSecured) => {
                let label = rec
                    .hsm_key_label
                    .clone()
                    .filter(|l| !l.is_empty())
                    .ok_or_else(|| format!("type {} needs hsm_key_label", t.as_str()))?;
                let hsm = self.hsm.as_ref().ok_or_else(|| {
                    format!("type {} needs an HSM, and none is configured", t.as_str())
                })?;
                // Derive once now: for hsm_wrapped this is the cached value; for
                // hsm_secured it proves the HSM key exists and is then dropped.
                let value = derive_hsm_value(hsm.as_ref(), &label, &seed, &rec.id)
                    .map_err(|e| e.to_string())?;
                self.derivations.fetch_add(1, Ordering::Relaxed);
                if t == FragmentType::HsmWrapped {
                    Ok(Entry::Ready {
                        fragment_type: t,
                        value,
                    })
                } else {
                    Ok(Entry::Secured {
                        seed,
                        key_label: label,
                    })
                }
            }
        }
    }

    /// The fragment value for `id`. For `hsm_secured` this runs one HMAC in the HSM.
    pub fn value(&self, id: &FragmentId) -> Result<Secret32, FragmentError> {
        match self.entries.get(id) {
            Some(Entry::Ready { value, .. }) => Ok(value.clone()),
            Some(Entry::Secured { seed, key_label }) => {
                let hsm = self.hsm.as_ref().ok_or_else(|| FragmentError::NotLoaded {
                    id: id.clone(),
                    reason: "no HSM".into(),
                })?;
                self.derivations.fetch_add(1, Ordering::Relaxed);
                derive_hsm_value(hsm.as_ref(), key_label, seed, id).map_err(|source| {
                    FragmentError::Hsm {
                        id: id.clone(),
                        source,
                    }
                })
            }
            None => Err(FragmentError::NotLoaded {
                id: id.clone(),
                reason: self
                    .failed
                    .get(id)
                    .cloned()
                    .unwrap_or_else(|| "no fragment with this id".into()),
            }),
        }
    }

    pub fn fragment_type(&self, id: &FragmentId) -> Option<FragmentType> {
        match self.entries.get(id)? {
            Entry::Ready { fragment_type, .. } => Some(*fragment_type),
            Entry::Secured { .. } => Some(FragmentType::HsmSecured),
        }
    }

    pub fn is_loaded(&self, id: &FragmentId) -> bool {
        self.entries.contains_key(id)
    }

    /// Every fragment id seen, loaded or not, in id order.
    pub fn statuses(&self) -> Vec<FragmentStatus> {
        let mut out: Vec<FragmentStatus> = self
            .entries
            .keys()
            .map(|id| FragmentStatus {
                id: id.clone(),
                fragment_type: self.fragment_type(id),
                problem: None,
            })
            .chain(self.failed.iter().map(|(id, reason)| FragmentStatus {
                id: id.clone(),
                fragment_type: None,
                problem: Some(reason.clone()),
            }))
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// Problems with entries that had no readable id.
    pub fn anonymous_failures(&self) -> &[String] {
        &self.anonymous_failures
    }

    /// How many fragment values were derived in the HSM so far.
    pub fn hsm_derivations(&self) -> u64 {
        self.derivations.load(Ordering::Relaxed)
    }
}
