//! The byte layouts of a data ciphertext and of an encryption context (DESIGN.md
//! section 4), with no cryptography: reading and writing the header, splitting a
//! ciphertext, the AAD and the encoded context. Depends on nothing but `std` and
//! `thiserror`, so the fuzz targets of `fuzz/` compile it on its own.

use std::collections::BTreeMap;

pub const NONCE_LEN: usize = 12;
pub const TAG_LEN: usize = 16;
/// `0x01 ‖ key_id(16) ‖ u32be(version)`.
pub const CIPHERTEXT_HEADER_LEN: usize = 21;
/// Bytes a ciphertext adds to its plaintext: header, nonce and tag.
pub const CIPHERTEXT_OVERHEAD: usize = CIPHERTEXT_HEADER_LEN + NONCE_LEN + TAG_LEN;
const CIPHERTEXT_FORMAT: u8 = 0x01;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CryptoError {
    /// Authentication failed: wrong key, wrong AAD or tampered bytes. Deliberately vague.
    #[error("authentication failed")]
    Authentication,
    #[error("malformed input: {0}")]
    Malformed(&'static str),
    #[error("invalid key length {0}")]
    KeyLength(usize),
}

/// Encryption context: for each pair in byte order of the key,
/// `u32be(len k) ‖ k ‖ u32be(len v) ‖ v`. A BTreeMap<String,_> iterates in byte order.
pub fn encode_context(context: &BTreeMap<String, String>) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in context {
        for part in [k.as_bytes(), v.as_bytes()] {
            out.extend_from_slice(&(part.len() as u32).to_be_bytes());
            out.extend_from_slice(part);
        }
    }
    out
}

/// The fixed header at the start of every ciphertext.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CiphertextHeader {
    pub key_id: [u8; 16],
    pub version: u32,
}

impl CiphertextHeader {
    pub fn bytes(&self) -> [u8; CIPHERTEXT_HEADER_LEN] {
        let mut h = [0u8; CIPHERTEXT_HEADER_LEN];
        h[0] = CIPHERTEXT_FORMAT;
        h[1..17].copy_from_slice(&self.key_id);
        h[17..].copy_from_slice(&self.version.to_be_bytes());
        h
    }
}

/// The AAD of a data ciphertext: `header ‖ encoded context` (for AEAD done elsewhere,
/// such as in the HSM).
pub fn data_aad(header: CiphertextHeader, encoded_context: &[u8]) -> Vec<u8> {
    [&header.bytes()[..], encoded_context].concat()
}

/// `header ‖ nonce ‖ sealed`, for ciphertexts sealed elsewhere (in the HSM).
pub fn assemble_data(header: CiphertextHeader, nonce: &[u8; NONCE_LEN], sealed: &[u8]) -> Vec<u8> {
    [&header.bytes()[..], nonce, sealed].concat()
}

/// Splits a ciphertext into its nonce and sealed part (after checking the header).
pub fn split_data(ciphertext: &[u8]) -> Result<([u8; NONCE_LEN], &[u8]), CryptoError> {
    decode_ciphertext_header(ciphertext)?;
    let rest = &ciphertext[CIPHERTEXT_HEADER_LEN..];
    let nonce: [u8; NONCE_LEN] = rest[..NONCE_LEN]
        .try_into()
        .map_err(|_| CryptoError::Malformed("nonce"))?;
    Ok((nonce, &rest[NONCE_LEN..]))
}

/// Reads the header of a ciphertext, so the caller can find the key and version.
pub fn decode_ciphertext_header(ciphertext: &[u8]) -> Result<CiphertextHeader, CryptoError> {
    if ciphertext.len() < CIPHERTEXT_OVERHEAD || ciphertext[0] != CIPHERTEXT_FORMAT {
        return Err(CryptoError::Malformed("ciphertext"));
    }
    let mut key_id = [0u8; 16];
    key_id.copy_from_slice(&ciphertext[1..17]);
    let version = u32::from_be_bytes([
        ciphertext[17],
        ciphertext[18],
        ciphertext[19],
        ciphertext[20],
    ]);
    Ok(CiphertextHeader { key_id, version })
}
