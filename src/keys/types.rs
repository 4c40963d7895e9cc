//! The vocabulary of keys: usages, algorithms and the errors of key operations.

use crate::crypto::oaep::OaepAlgorithm;
use crate::crypto::signing::{self, MlDsaLevel};
use crate::crypto::MacAlgorithm;
use crate::fragments::FragmentError;
use crate::hsm::HsmError;
use crate::store::StoreError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyUsage {
    EncryptDecrypt,
    SignVerify,
    /// HMAC keys: generate and verify MACs.
    GenerateVerifyMac,
}

impl KeyUsage {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "encrypt-decrypt" => Some(Self::EncryptDecrypt),
            "sign-verify" => Some(Self::SignVerify),
            "generate-verify-mac" => Some(Self::GenerateVerifyMac),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::EncryptDecrypt => "encrypt-decrypt",
            Self::SignVerify => "sign-verify",
            Self::GenerateVerifyMac => "generate-verify-mac",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Aes256Gcm,
    Aes128Gcm,
    Rsa2048,
    Rsa3072,
    Rsa4096,
    EccNistP256,
    EccNistP384,
    EccNistP521,
    /// PureEdDSA on edwards25519.
    Ed25519,
    /// FIPS 204 ML-DSA parameter sets.
    MlDsa44,
    MlDsa65,
    MlDsa87,
    HmacSha256,
    HmacSha384,
    HmacSha512,
}

impl Algorithm {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "aes-256-gcm" => Some(Self::Aes256Gcm),
            "aes-128-gcm" => Some(Self::Aes128Gcm),
            "RSA_2048" => Some(Self::Rsa2048),
            "RSA_3072" => Some(Self::Rsa3072),
            "RSA_4096" => Some(Self::Rsa4096),
            "ECC_NIST_P256" => Some(Self::EccNistP256),
            "ECC_NIST_P384" => Some(Self::EccNistP384),
            "ECC_NIST_P521" => Some(Self::EccNistP521),
            "ED25519" => Some(Self::Ed25519),
            "ML_DSA_44" => Some(Self::MlDsa44),
            "ML_DSA_65" => Some(Self::MlDsa65),
            "ML_DSA_87" => Some(Self::MlDsa87),
            "HMAC_SHA_256" => Some(Self::HmacSha256),
            "HMAC_SHA_384" => Some(Self::HmacSha384),
            "HMAC_SHA_512" => Some(Self::HmacSha512),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Aes256Gcm => "aes-256-gcm",
            Self::Aes128Gcm => "aes-128-gcm",
            Self::Rsa2048 => "RSA_2048",
            Self::Rsa3072 => "RSA_3072",
            Self::Rsa4096 => "RSA_4096",
            Self::EccNistP256 => "ECC_NIST_P256",
            Self::EccNistP384 => "ECC_NIST_P384",
            Self::EccNistP521 => "ECC_NIST_P521",
            Self::Ed25519 => "ED25519",
            Self::MlDsa44 => "ML_DSA_44",
            Self::MlDsa65 => "ML_DSA_65",
            Self::MlDsa87 => "ML_DSA_87",
            Self::HmacSha256 => "HMAC_SHA_256",
            Self::HmacSha384 => "HMAC_SHA_384",
            Self::HmacSha512 => "HMAC_SHA_512",
        }
    }

    /// The algorithm's usage, and the default one of a key that names none (RSA keys:
    /// sign-verify; see [`Algorithm::allows`]).
    pub fn usage(self) -> KeyUsage {
        match self {
            Self::Aes256Gcm | Self::Aes128Gcm => KeyUsage::EncryptDecrypt,
            Self::Rsa2048
            | Self::Rsa3072
            | Self::Rsa4096
            | Self::EccNistP256
            | Self::EccNistP384
            | Self::EccNistP521
            | Self::Ed25519
            | Self::MlDsa44
            | Self::MlDsa65
            | Self::MlDsa87 => KeyUsage::SignVerify,
            Self::HmacSha256 | Self::HmacSha384 | Self::HmacSha512 => KeyUsage::GenerateVerifyMac,
        }
    }

    /// Whether a key of this algorithm may have `usage`: its own, and for RSA keys also
    /// encrypt-decrypt (RSA-OAEP), as AWS KMS's RSA key specs allow either usage.
    pub fn allows(self, usage: KeyUsage) -> bool {
        usage == self.usage() || (self.rsa_bits().is_some() && usage == KeyUsage::EncryptDecrypt)
    }

    /// The modulus length of an RSA key type.
    pub fn rsa_bits(self) -> Option<usize> {
        match self {
            Self::Rsa2048 => Some(2048),
            Self::Rsa3072 => Some(3072),
            Self::Rsa4096 => Some(4096),
            _ => None,
        }
    }

    /// The MAC algorithm of an HMAC key (its default when a request names none).
    pub fn mac(self) -> Option<MacAlgorithm> {
        match self {
            Self::HmacSha256 => Some(MacAlgorithm::HmacSha256),
            Self::HmacSha384 => Some(MacAlgorithm::HmacSha384),
            Self::HmacSha512 => Some(MacAlgorithm::HmacSha512),
            _ => None,
        }
    }

    pub fn asymmetric(self) -> Option<signing::AsymmetricKind> {
        match self {
            Self::Rsa2048 => Some(signing::AsymmetricKind::Rsa2048),
            Self::Rsa3072 => Some(signing::AsymmetricKind::Rsa3072),
            Self::Rsa4096 => Some(signing::AsymmetricKind::Rsa4096),
            Self::EccNistP256 => Some(signing::AsymmetricKind::EccNistP256),
            Self::EccNistP384 => Some(signing::AsymmetricKind::EccNistP384),
            Self::EccNistP521 => Some(signing::AsymmetricKind::EccNistP521),
            Self::Ed25519 => Some(signing::AsymmetricKind::Ed25519),
            Self::MlDsa44 => Some(signing::AsymmetricKind::MlDsa(MlDsaLevel::MlDsa44)),
            Self::MlDsa65 => Some(signing::AsymmetricKind::MlDsa(MlDsaLevel::MlDsa65)),
            Self::MlDsa87 => Some(signing::AsymmetricKind::MlDsa(MlDsaLevel::MlDsa87)),
            _ => None,
        }
    }

    /// The signing algorithm names valid for this key (empty for AES and HMAC).
    pub fn signing_algorithms(self) -> &'static [&'static str] {
        self.asymmetric()
            .map_or(&[], signing::AsymmetricKind::signing_algorithms)
    }
}

/// The encryption an encrypt or decrypt request names (`None` in a request: the key's
/// own, which for an RSA encrypt-decrypt key is `RSAES_OAEP_SHA_256`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncryptionAlgorithm {
    /// AES-GCM in the gateway's ciphertext format (AWS's `SYMMETRIC_DEFAULT`).
    Symmetric,
    /// RSA-OAEP with an RSA encrypt-decrypt key.
    Oaep(OaepAlgorithm),
}

/// Errors of key operations; `api` maps each variant to one status and code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    #[error("key not found")]
    KeyNotFound,
    #[error("project not found")]
    ProjectNotFound,
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    InvalidInput(String),
    /// A key name outside Infisical's slug rule.
    #[error("{0}")]
    InvalidName(String),
    #[error("unknown algorithm {0:?}; use aes-256-gcm, aes-128-gcm, RSA_2048, RSA_3072, RSA_4096, ECC_NIST_P256, ECC_NIST_P384, ECC_NIST_P521, ED25519, ML_DSA_44, ML_DSA_65, ML_DSA_87, HMAC_SHA_256, HMAC_SHA_384 or HMAC_SHA_512")]
    UnknownAlgorithm(String),
    #[error("unknown key usage {0:?}; use encrypt-decrypt, sign-verify or generate-verify-mac")]
    UnknownUsage(String),
    #[error("the key is disabled")]
    KeyDisabled,
    #[error("the key no longer protects new data (it was revoked): it only decrypts and verifies")]
    ProtectStopped,
    #[error("the key is pending deletion; cancel the deletion to use it")]
    PendingDeletion,
    #[error("the key is not pending deletion")]
    NotPendingDeletion,
    #[error("{0}")]
    ConcurrentUpdate(String),
    /// Only from the `*_cached` operations: the operation needs the store, the HSM or a
    /// slow computation; run the ordinary one on a blocking thread instead.
    #[error("the operation would block")]
    WouldBlock,
    #[error("this key's usage is {usage}; it cannot {operation}")]
    WrongUsage {
        usage: &'static str,
        operation: &'static str,
    },
    #[error("signing algorithm {0:?} is not valid for this key")]
    SigningAlgorithmNotValid(String),
    #[error("a digest of {expected} bytes was expected, got {got}")]
    DigestLength { expected: usize, got: usize },
    #[error("RSASSA-PSS over a precomputed digest is not supported; send the message")]
    PssOverDigest,
    /// An encryption algorithm the key does not offer (the name, and the key's own).
    #[error("encryption algorithm {given} is not valid for this key; it encrypts with {valid}")]
    EncryptionAlgorithmNotValid {
        given: &'static str,
        valid: &'static str,
    },
    /// A plaintext longer than RSA-OAEP takes with this key and algorithm.
    #[error("the plaintext is {got} bytes; {algorithm} with this key encrypts at most {max} bytes (encrypt a data key instead)")]
    OaepPlaintextTooLong {
        got: usize,
        max: usize,
        algorithm: &'static str,
    },
    /// Every RSA-OAEP decryption failure, whatever its cause (no padding oracle).
    #[error("the ciphertext cannot be decrypted with this key and encryption algorithm")]
    OaepDecryptionFailed,
    /// A pure signature scheme (Ed25519, ML-DSA) asked to sign or verify a digest.
    #[error("{0} is a pure signature scheme: it signs the message itself, not a precomputed digest; send the message")]
    PureOverDigest(String),
    #[error("the ciphertext is malformed")]
    MalformedCiphertext,
    /// A ciphertext (or, for a MAC, a named version) below `min_decryption_version`.
    #[error("key version {version} is no longer accepted for decryption or MAC verification (minimum decryption version is {minimum})")]
    VersionBelowMinimum { version: u32, minimum: u32 },
    /// A key version named in a request (not in a ciphertext) that the key does not have.
    #[error("the key has no version {version}; its versions are 1 to {newest}")]
    NoSuchVersion { version: u32, newest: u32 },
    #[error("{0}")]
    NotSupported(String),
    #[error("the key's material cannot leave the gateway: only keys created or registered over KMIP are exportable")]
    NotExportable,
    #[error("the ciphertext was made by another key")]
    CiphertextOfAnotherKey,
    #[error(
        "the ciphertext cannot be decrypted: it was altered, or the encryption context differs"
    )]
    DecryptionFailed,
    #[error("customer fragment {0} does not exist")]
    FragmentNotFound(String),
    #[error("customer fragment {id} is not loaded, so this key cannot be used: {reason}")]
    FragmentNotLoaded { id: String, reason: String },
    #[error("no key labelled {0:?} on the HSM")]
    HsmKeyNotFound(String),
    #[error("{0}")]
    HsmKeyUnusable(String),
    /// The named HSM key lacks the protection the gateway requires (the message names
    /// the attribute: CKA_PRIVATE, CKA_SENSITIVE, CKA_COPYABLE).
    #[error("{0}")]
    HsmKeyInsecure(String),
    /// More than one object on the token has the label.
    #[error("{0}")]
    HsmKeyAmbiguous(String),
    /// The label is one of the gateway's own keys or a customer fragment's.
    #[error("{0}")]
    HsmKeyReserved(String),
    #[error(transparent)]
    Hsm(#[from] HsmError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("configuration: {0}")]
    Config(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<FragmentError> for KeyError {
    fn from(e: FragmentError) -> Self {
        match e {
            FragmentError::NotLoaded { id, reason } => {
                KeyError::FragmentNotLoaded { id: id.0, reason }
            }
            FragmentError::Hsm { source, .. } => KeyError::Hsm(source),
            other => KeyError::Internal(other.to_string()),
        }
    }
}
