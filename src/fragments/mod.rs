//! Customer fragments: the `customer_fragments.json` file, the four modes and the
//! derivation of each fragment's value (DESIGN.md section 3). The HMAC step, and for
//! `hsm_wrap_encrypt` the seed's AES-GCM envelope, run in the HSM through the
//! [`FragmentHsm`] seam; this module never opens PKCS#11 itself.

mod file;
mod record;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use base64::Engine;
use zeroize::Zeroizing;

use crate::crypto::{self, Secret32};
use crate::hsm::{Hsm, HsmError};
use crate::random::RandomSource;

pub use file::{append_fragment, read_fragment_file, replace_fragment, write_secret_file};
use record::{wrap_encrypt_labels, Checked};
pub use record::{
    FragmentFile, FragmentId, FragmentKeyRole, FragmentRecord, FragmentType, LabelOwner,
};

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
    #[error("customer fragment {id}: {source}")]
    Seed {
        id: FragmentId,
        source: SeedEnvelopeError,
    },
    #[error("invalid fragment: {0}")]
    Invalid(String),
}

/// Why the sealed seed of an `hsm_wrap_encrypt` fragment cannot be used. The messages
/// name the key-encryption key, never the seed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SeedEnvelopeError {
    #[error("the sealed seed (value) is not valid base64")]
    NotBase64,
    #[error("the sealed seed is {0} bytes; format 0x01 needs at least {SEED_ENVELOPE_MIN_LEN}")]
    TooShort(usize),
    #[error(
        "the sealed seed has format byte 0x{0:02x}; only 0x01 (AES-256-GCM in the HSM) is known"
    )]
    UnknownFormat(u8),
    #[error("the key-encryption key {label:?} is not on the token")]
    KekMissing { label: String },
    #[error("the seed does not unseal with the key-encryption key {label:?}: it is not the key that sealed it, or the value was altered (HSM: {})", hsm_detail(.source))]
    NotAuthentic { label: String, source: HsmError },
    #[error("the HSM failed with the key-encryption key {label:?}: {source}")]
    Hsm { label: String, source: HsmError },
    #[error("the seed is {0} bytes; at least 16 are required")]
    SeedTooShort(usize),
}

/// The PKCS#11 return value alone (`GeneralError`, `EncryptedDataInvalid`, ...): for a
/// failed AES-GCM open, cryptoki's long description of it says nothing useful.
fn hsm_detail(e: &HsmError) -> String {
    match e {
        HsmError::Pkcs11 { function, rv } => format!("{function} returned {rv:?}"),
        other => other.to_string(),
    }
}

/// What fragments need of the HSM, each with a token key named by its label: HMAC-SHA256
/// (every HSM mode) and AES-256-GCM with a 128-bit tag (the seed envelope of
/// `hsm_wrap_encrypt`). Small enough for an in-memory fake.
pub trait FragmentHsm: Send + Sync {
    fn hmac_sha256(&self, key_label: &str, data: &[u8]) -> Result<Zeroizing<[u8; 32]>, HsmError>;

    /// Returns ciphertext ‖ tag (16 bytes).
    fn aes_gcm_encrypt(
        &self,
        key_label: &str,
        iv: &[u8; 12],
        aad: &[u8],
        data: &[u8],
    ) -> Result<Vec<u8>, HsmError>;

    /// Opens ciphertext ‖ tag; any failure (wrong key, altered data) is an error.
    fn aes_gcm_decrypt(
        &self,
        key_label: &str,
        iv: &[u8; 12],
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, HsmError>;
}

impl FragmentHsm for Hsm {
    fn hmac_sha256(&self, key_label: &str, data: &[u8]) -> Result<Zeroizing<[u8; 32]>, HsmError> {
        Hsm::hmac_sha256(self, key_label, data)
    }

    fn aes_gcm_encrypt(
        &self,
        key_label: &str,
        iv: &[u8; 12],
        aad: &[u8],
        data: &[u8],
    ) -> Result<Vec<u8>, HsmError> {
        Hsm::aes_gcm_encrypt(self, key_label, iv, aad, data)
    }

    fn aes_gcm_decrypt(
        &self,
        key_label: &str,
        iv: &[u8; 12],
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, HsmError> {
        Hsm::aes_gcm_decrypt(self, key_label, iv, aad, sealed)
    }
}

/// Format byte of the `hsm_wrap_encrypt` seed envelope: AES-256-GCM inside the HSM.
pub const SEED_ENVELOPE_V1: u8 = 0x01;
const SEED_IV_LEN: usize = 12;
const SEED_TAG_LEN: usize = 16;
/// Format byte, IV, a 16-byte seed (the minimum) and the tag.
const SEED_ENVELOPE_MIN_LEN: usize = 1 + SEED_IV_LEN + 16 + SEED_TAG_LEN;
const SEED_AAD_LABEL: &[u8] = b"kms-gateway/v1/fragment-seed";

/// AAD of the seed envelope: `"kms-gateway/v1/fragment-seed" ‖ 0x00 ‖ fragment_id`
/// (UTF-8 bytes), so a sealed seed cannot be moved to another fragment id.
pub fn seed_aad(id: &FragmentId) -> Vec<u8> {
    let mut aad = Vec::with_capacity(SEED_AAD_LABEL.len() + 1 + id.0.len());
    aad.extend_from_slice(SEED_AAD_LABEL);
    aad.push(0);
    aad.extend_from_slice(id.0.as_bytes());
    aad
}

/// Seals `seed` under the HSM AES-256 key `kek_label`, with a fresh IV from `random`
/// (the HSM's RNG when `HSM_USE_RAND=true`). Returns the `value` of the fragment entry:
///
/// ```text
/// value = base64(0x01 ‖ iv(12) ‖ C ‖ tag(16))     (standard alphabet, padded)
/// C ‖ tag = CKM_AES_GCM(kek_label, iv, seed, AAD = seed_aad(id)), 128-bit tag,
///           computed inside the HSM; len(C) = len(seed)
/// ```
pub fn seal_seed(
    hsm: &dyn FragmentHsm,
    kek_label: &str,
    id: &FragmentId,
    seed: &[u8],
    random: &RandomSource,
) -> Result<String, SeedEnvelopeError> {
    if seed.len() < 16 {
        return Err(SeedEnvelopeError::SeedTooShort(seed.len()));
    }
    let iv: [u8; SEED_IV_LEN] = random.array().map_err(|source| SeedEnvelopeError::Hsm {
        label: kek_label.to_owned(),
        source,
    })?;
    let sealed = hsm
        .aes_gcm_encrypt(kek_label, &iv, &seed_aad(id), seed)
        .map_err(|source| kek_error(kek_label, source, false))?;
    let mut blob = Vec::with_capacity(1 + SEED_IV_LEN + sealed.len());
    blob.push(SEED_ENVELOPE_V1);
    blob.extend_from_slice(&iv);
    blob.extend_from_slice(&sealed);
    Ok(base64::engine::general_purpose::STANDARD.encode(blob))
}

/// Opens a `value` made by [`seal_seed`] in the HSM; the seed is returned in wiped memory.
pub fn open_seed(
    hsm: &dyn FragmentHsm,
    kek_label: &str,
    id: &FragmentId,
    value: &str,
) -> Result<Zeroizing<Vec<u8>>, SeedEnvelopeError> {
    let blob = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .map_err(|_| SeedEnvelopeError::NotBase64)?;
    match blob.first() {
        Some(&SEED_ENVELOPE_V1) => {}
        Some(&other) => return Err(SeedEnvelopeError::UnknownFormat(other)),
        None => return Err(SeedEnvelopeError::TooShort(0)),
    }
    if blob.len() < SEED_ENVELOPE_MIN_LEN {
        return Err(SeedEnvelopeError::TooShort(blob.len()));
    }
    let mut iv = [0u8; SEED_IV_LEN];
    iv.copy_from_slice(&blob[1..1 + SEED_IV_LEN]);
    let seed = hsm
        .aes_gcm_decrypt(kek_label, &iv, &seed_aad(id), &blob[1 + SEED_IV_LEN..])
        .map_err(|source| kek_error(kek_label, source, true))?;
    if seed.len() < 16 {
        return Err(SeedEnvelopeError::SeedTooShort(seed.len()));
    }
    Ok(seed)
}

/// [`seal_seed`], then a check in the HSM that the new value opens to the same seed.
pub fn seal_seed_verified(
    hsm: &dyn FragmentHsm,
    kek_label: &str,
    id: &FragmentId,
    seed: &[u8],
    random: &RandomSource,
) -> Result<String, FragmentError> {
    let seed_err = |source| FragmentError::Seed {
        id: id.clone(),
        source,
    };
    let value = seal_seed(hsm, kek_label, id, seed, random).map_err(seed_err)?;
    let reopened = open_seed(hsm, kek_label, id, &value).map_err(seed_err)?;
    if reopened.as_slice() != seed {
        return Err(FragmentError::Invalid(format!(
            "fragment {id}: the sealed seed does not open to the same seed; nothing written"
        )));
    }
    Ok(value)
}

fn kek_error(label: &str, source: HsmError, opening: bool) -> SeedEnvelopeError {
    let label = label.to_owned();
    match source {
        HsmError::KeyNotFound { .. } => SeedEnvelopeError::KekMissing { label },
        e if opening && !e.is_unavailable() => SeedEnvelopeError::NotAuthentic { label, source: e },
        e => SeedEnvelopeError::Hsm { label, source: e },
    }
}

/// Refuses a re-wrap that cannot be right, before the HSM is asked: a fragment that is
/// not `hsm_wrap_encrypt`, an entry without its labels, an empty new label or the label
/// that already seals the seed. Returns the current key-encryption key's label.
pub fn check_rewrap<'a>(
    record: &'a FragmentRecord,
    new_kek_label: &str,
) -> Result<&'a str, FragmentError> {
    let id = &record.id;
    let invalid = |why: String| FragmentError::Invalid(format!("fragment {id}: {why}"));
    if record.fragment_type != FragmentType::HsmWrapEncrypt {
        return Err(invalid(format!(
            "it is of type {}; only hsm_wrap_encrypt fragments have a sealed seed to re-wrap",
            record.fragment_type.as_str()
        )));
    }
    let (_, old_kek) = wrap_encrypt_labels(record).map_err(invalid)?;
    if new_kek_label.trim().is_empty() {
        return Err(invalid("the new key-encryption key label is empty".into()));
    }
    if new_kek_label == old_kek {
        return Err(invalid(format!(
            "its seed is already sealed by the key-encryption key {old_kek:?}"
        )));
    }
    Ok(old_kek)
}

/// Re-seals the seed of the `hsm_wrap_encrypt` fragment `record` under `new_kek_label`,
/// which must exist on the token. Opens the seed with the current key in the HSM, seals
/// it under the new key with a fresh IV, then checks that the new value opens to the same
/// seed and that the fragment value derived from it is unchanged. Returns the updated
/// entry; nothing is written. No KMS key is touched: their KEKs depend on the FV only.
pub fn rewrap_seed(
    hsm: &dyn FragmentHsm,
    record: &FragmentRecord,
    new_kek_label: &str,
    random: &RandomSource,
) -> Result<FragmentRecord, FragmentError> {
    let id = &record.id;
    let old_kek = check_rewrap(record, new_kek_label)?;
    let (hmac_label, _) = wrap_encrypt_labels(record).map_err(FragmentError::Invalid)?;
    let seed_err = |source| FragmentError::Seed {
        id: id.clone(),
        source,
    };
    let hsm_err = |source| FragmentError::Hsm {
        id: id.clone(),
        source,
    };
    let refuse =
        |why: &str| FragmentError::Invalid(format!("fragment {id}: {why}; nothing written"));
    let seed = open_seed(hsm, old_kek, id, &record.value).map_err(seed_err)?;
    let value_before = derive_hsm_value(hsm, hmac_label, &seed, id).map_err(hsm_err)?;
    let new_value = seal_seed(hsm, new_kek_label, id, &seed, random).map_err(seed_err)?;
    // Checked from the new value as it will be stored: it opens under the new key to
    // the same seed, and the value derived from what it opens to is the same.
    let reopened = open_seed(hsm, new_kek_label, id, &new_value).map_err(seed_err)?;
    if reopened.as_slice() != seed.as_slice() {
        return Err(refuse("the re-sealed seed does not open to the same seed"));
    }
    let value_after = derive_hsm_value(hsm, hmac_label, &reopened, id).map_err(hsm_err)?;
    if *value_after != *value_before {
        return Err(refuse("the fragment value would change"));
    }
    let mut updated = record.clone();
    zeroize::Zeroize::zeroize(&mut updated.value);
    updated.value = new_value;
    updated.kek_label = Some(new_kek_label.to_owned());
    Ok(updated)
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
    /// `standard`, `hsm_wrapped` and `hsm_wrap_encrypt`: the value, derived once.
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
    /// Every HSM label the file names, loaded or not: reserved for the fragments.
    labels: BTreeMap<String, LabelOwner>,
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
            labels: BTreeMap::new(),
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
            FragmentSource::File(path) => file::read_raw(path)?.unwrap_or_default(),
            FragmentSource::Inline(json) => file::parse_raw(json, "CUSTOMER_FRAGMENTS")?,
        };
        let sorted = record::sort_entries(raw_entries);
        let mut out = Self {
            hsm,
            labels: sorted.labels,
            failed: sorted.failed,
            anonymous_failures: sorted.anonymous_failures,
            ..Self::empty()
        };
        for rec in sorted.records {
            match out.load_one(&rec) {
                Ok(entry) => {
                    out.entries.insert(rec.id.clone(), entry);
                }
                Err(reason) => {
                    out.failed.insert(rec.id.clone(), reason);
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
        match record::check(rec)? {
            Checked::Standard { seed } => Ok(Entry::Ready {
                fragment_type: FragmentType::Standard,
                value: crypto::standard_fragment_value(&seed, &rec.id.0),
            }),
            Checked::WrapEncrypt {
                hmac_label,
                kek_label,
            } => self.load_wrap_encrypt(rec, hmac_label, kek_label),
            Checked::Hmac { seed, label } => {
                let t = rec.fragment_type;
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

    /// `hsm_wrap_encrypt`: the seed is unsealed in the HSM, the FV derived exactly as for
    /// `hsm_wrapped` and cached; the seed itself is not kept.
    fn load_wrap_encrypt(
        &self,
        rec: &FragmentRecord,
        hmac_label: &str,
        kek_label: &str,
    ) -> Result<Entry, String> {
        let hsm = self.hsm.as_ref().ok_or_else(|| {
            "type hsm_wrap_encrypt needs an HSM, and none is configured".to_string()
        })?;
        let seed =
            open_seed(hsm.as_ref(), kek_label, &rec.id, &rec.value).map_err(|e| e.to_string())?;
        let value = derive_hsm_value(hsm.as_ref(), hmac_label, &seed, &rec.id)
            .map_err(|e| e.to_string())?;
        self.derivations.fetch_add(1, Ordering::Relaxed);
        Ok(Entry::Ready {
            fragment_type: FragmentType::HsmWrapEncrypt,
            value,
        })
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

    /// The fragment whose HSM key `label` is (its `hsm_key_label` or `kek_label`), if the
    /// fragment file names it, whether that fragment loaded or not.
    pub fn label_owner(&self, label: &str) -> Option<&LabelOwner> {
        self.labels.get(label)
    }

    /// Every HSM label the fragment file names, with its owner.
    pub fn labels(&self) -> impl Iterator<Item = (&str, &LabelOwner)> {
        self.labels.iter().map(|(l, o)| (l.as_str(), o))
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
