//! AES-GCM formats: the software-wrapped root key, wrapped key material and the
//! ciphertext returned by `encrypt` (DESIGN.md sections 3 and 4; the ciphertext's byte
//! layout is `format`'s).

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes128Gcm, Aes256Gcm, Nonce};
use zeroize::Zeroizing;

use super::format::{
    decode_ciphertext_header, CiphertextHeader, CryptoError, CIPHERTEXT_HEADER_LEN,
    CIPHERTEXT_OVERHEAD, NONCE_LEN, TAG_LEN,
};

const ROOT_SOFTWARE_FORMAT: u8 = 0x01;
const ROOT_AAD: &[u8] = b"kms-gateway/v1/root";

/// An AES-GCM data key of 16 or 32 bytes, chosen by its length.
pub enum AeadKey {
    Aes128(Box<Aes128Gcm>),
    Aes256(Box<Aes256Gcm>),
}

impl AeadKey {
    pub fn new(key: &[u8]) -> Result<Self, CryptoError> {
        match key.len() {
            16 => Ok(Self::Aes128(Box::new(
                Aes128Gcm::new_from_slice(key).map_err(|_| CryptoError::KeyLength(16))?,
            ))),
            32 => Ok(Self::Aes256(Box::new(
                Aes256Gcm::new_from_slice(key).map_err(|_| CryptoError::KeyLength(32))?,
            ))),
            n => Err(CryptoError::KeyLength(n)),
        }
    }

    /// AES-GCM of `msg` with `aad` as it is: `ciphertext ‖ tag(16)`, no header (for
    /// protocols that carry the IV and tag themselves, such as KMIP).
    pub fn seal_raw(&self, nonce: &[u8; NONCE_LEN], msg: &[u8], aad: &[u8]) -> Vec<u8> {
        self.seal(nonce, msg, aad)
    }

    /// The inverse of `seal_raw`.
    pub fn open_raw(
        &self,
        nonce: &[u8],
        sealed: &[u8],
        aad: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        self.open(nonce, sealed, aad)
    }

    fn seal(&self, nonce: &[u8; NONCE_LEN], msg: &[u8], aad: &[u8]) -> Vec<u8> {
        let nonce = &Nonce::from(*nonce);
        let payload = Payload { msg, aad };
        // Invariant: AES-GCM encryption fails only for messages over 64 GiB; every caller
        // bounds its input far below that.
        match self {
            Self::Aes128(k) => k.encrypt(nonce, payload),
            Self::Aes256(k) => k.encrypt(nonce, payload),
        }
        .expect("AES-GCM input is bounded")
    }

    fn open(
        &self,
        nonce: &[u8],
        sealed: &[u8],
        aad: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let nonce: [u8; NONCE_LEN] = nonce
            .try_into()
            .map_err(|_| CryptoError::Malformed("nonce"))?;
        let nonce = &Nonce::from(nonce);
        let payload = Payload { msg: sealed, aad };
        match self {
            Self::Aes128(k) => k.decrypt(nonce, payload),
            Self::Aes256(k) => k.decrypt(nonce, payload),
        }
        .map(Zeroizing::new)
        .map_err(|_| CryptoError::Authentication)
    }
}

/// Wrapped IRK = `0x01 ‖ nonce ‖ AES-256-GCM(root_key, nonce, IRK, "kms-gateway/v1/root")`.
pub fn seal_root_software(root_key: &[u8; 32], nonce: &[u8; NONCE_LEN], irk: &[u8; 32]) -> Vec<u8> {
    let key = AeadKey::new(root_key).expect("32-byte key");
    let mut out = vec![ROOT_SOFTWARE_FORMAT];
    out.extend_from_slice(nonce);
    out.extend_from_slice(&key.seal(nonce, irk, ROOT_AAD));
    out
}

pub fn open_root_software(
    root_key: &[u8; 32],
    blob: &[u8],
) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
    if blob.len() != 1 + NONCE_LEN + 32 + TAG_LEN || blob[0] != ROOT_SOFTWARE_FORMAT {
        return Err(CryptoError::Malformed("software-wrapped root key"));
    }
    let key = AeadKey::new(root_key)?;
    let irk = key.open(&blob[1..1 + NONCE_LEN], &blob[1 + NONCE_LEN..], ROOT_AAD)?;
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(&irk);
    Ok(out)
}

/// Wrapped material = `nonce ‖ AES-256-GCM(KEK, nonce, material, aad_material)`.
pub fn seal_material(
    kek: &[u8; 32],
    nonce: &[u8; NONCE_LEN],
    material: &[u8],
    aad: &[u8],
) -> Vec<u8> {
    let key = AeadKey::new(kek).expect("32-byte key");
    let mut out = nonce.to_vec();
    out.extend_from_slice(&key.seal(nonce, material, aad));
    out
}

pub fn open_material(
    kek: &[u8; 32],
    wrapped: &[u8],
    aad: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    if wrapped.len() < NONCE_LEN + TAG_LEN {
        return Err(CryptoError::Malformed("wrapped material"));
    }
    AeadKey::new(kek)?.open(&wrapped[..NONCE_LEN], &wrapped[NONCE_LEN..], aad)
}

/// `header ‖ nonce ‖ AES-GCM(key, nonce, plaintext, header ‖ context)`.
pub fn seal_data(
    key: &AeadKey,
    header: CiphertextHeader,
    nonce: &[u8; NONCE_LEN],
    plaintext: &[u8],
    encoded_context: &[u8],
) -> Vec<u8> {
    let head = header.bytes();
    let aad = [&head[..], encoded_context].concat();
    let mut out = Vec::with_capacity(CIPHERTEXT_OVERHEAD + plaintext.len());
    out.extend_from_slice(&head);
    out.extend_from_slice(nonce);
    out.extend_from_slice(&key.seal(nonce, plaintext, &aad));
    out
}

pub fn open_data(
    key: &AeadKey,
    ciphertext: &[u8],
    encoded_context: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    decode_ciphertext_header(ciphertext)?;
    let (head, rest) = ciphertext.split_at(CIPHERTEXT_HEADER_LEN);
    let aad = [head, encoded_context].concat();
    key.open(&rest[..NONCE_LEN], &rest[NONCE_LEN..], &aad)
}
