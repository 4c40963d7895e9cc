//! RSA-OAEP encryption (RFC 8017 section 7.1) through aws-lc-rs: SHA-256 or SHA-1, MGF1 on
//! the same hash, no label — AWS KMS's `RSAES_OAEP_SHA_256` and `RSAES_OAEP_SHA_1`.
//! Decryption has one error for every failure (a wrong length, a value out of range, bad
//! padding), so no caller can tell why a ciphertext was refused (no padding oracle).
//! Stateless; the OAEP seed comes from AWS-LC's own generator, as PSS salts do.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{
    OaepPrivateDecryptingKey, OaepPublicEncryptingKey, PrivateDecryptingKey, PublicEncryptingKey,
    OAEP_SHA1_MGF1SHA1, OAEP_SHA256_MGF1SHA256,
};
use zeroize::Zeroizing;

/// The two OAEP forms the gateway offers, by AWS's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OaepAlgorithm {
    /// `RSAES_OAEP_SHA_256`: OAEP with SHA-256 and MGF1-SHA-256 (the default).
    Sha256,
    /// `RSAES_OAEP_SHA_1`: OAEP with SHA-1 and MGF1-SHA-1, for clients that need it.
    Sha1,
}

/// The names of [`OaepAlgorithm`], in the order AWS lists them.
pub const OAEP_ALGORITHMS: [&str; 2] = ["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"];

impl OaepAlgorithm {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "RSAES_OAEP_SHA_256" => Some(Self::Sha256),
            "RSAES_OAEP_SHA_1" => Some(Self::Sha1),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sha256 => "RSAES_OAEP_SHA_256",
            Self::Sha1 => "RSAES_OAEP_SHA_1",
        }
    }

    fn hash_len(self) -> usize {
        match self {
            Self::Sha256 => 32,
            Self::Sha1 => 20,
        }
    }

    fn aws_lc(self) -> &'static aws_lc_rs::rsa::OaepAlgorithm {
        match self {
            Self::Sha256 => &OAEP_SHA256_MGF1SHA256,
            Self::Sha1 => &OAEP_SHA1_MGF1SHA1,
        }
    }

    /// The longest plaintext a key of `modulus_bits` takes: k − 2·hLen − 2 bytes
    /// (RFC 8017 section 7.1.1, step 1b).
    pub fn max_plaintext_len(self, modulus_bits: usize) -> usize {
        (modulus_bits / 8).saturating_sub(2 * self.hash_len() + 2)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum OaepError {
    #[error("the key material could not be loaded as an RSA key of this size")]
    BadKey,
    #[error("the plaintext is {got} bytes; this key and algorithm take at most {max}")]
    PlaintextTooLong { got: usize, max: usize },
    #[error("the encryption failed")]
    EncryptionFailed,
    /// Every decryption failure, whatever its cause.
    #[error("the ciphertext cannot be decrypted")]
    Decryption,
}

/// An RSA private key loaded for OAEP decryption (from PKCS#8 DER, the stored form), with
/// its public half for encryption.
pub struct DecryptionKey {
    private: OaepPrivateDecryptingKey,
    public: OaepPublicEncryptingKey,
    bits: usize,
}

impl DecryptionKey {
    /// Loads a PKCS#8 RSA private key whose modulus has exactly `bits` bits.
    pub fn from_pkcs8(bits: usize, der: &[u8]) -> Result<Self, OaepError> {
        let key = PrivateDecryptingKey::from_pkcs8(der).map_err(|_| OaepError::BadKey)?;
        if key.key_size_bits() != bits {
            return Err(OaepError::BadKey);
        }
        let public =
            OaepPublicEncryptingKey::new(key.public_key()).map_err(|_| OaepError::BadKey)?;
        let private = OaepPrivateDecryptingKey::new(key).map_err(|_| OaepError::BadKey)?;
        Ok(Self {
            private,
            public,
            bits,
        })
    }

    pub fn modulus_bits(&self) -> usize {
        self.bits
    }

    /// Encrypts with the public half (see [`encrypt_with`]).
    pub fn encrypt(&self, alg: OaepAlgorithm, plaintext: &[u8]) -> Result<Vec<u8>, OaepError> {
        encrypt_with(&self.public, alg, plaintext)
    }

    /// Decrypts a ciphertext of exactly the modulus length; any failure is
    /// [`OaepError::Decryption`] and says nothing more.
    pub fn decrypt(
        &self,
        alg: OaepAlgorithm,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, OaepError> {
        if ciphertext.len() != self.private.key_size_bytes() {
            return Err(OaepError::Decryption);
        }
        let mut out = Zeroizing::new(vec![0u8; self.private.min_output_size()]);
        let len = self
            .private
            .decrypt(alg.aws_lc(), ciphertext, &mut out, None)
            .map_err(|_| OaepError::Decryption)?
            .len();
        out.truncate(len);
        Ok(out)
    }
}

fn encrypt_with(
    key: &OaepPublicEncryptingKey,
    alg: OaepAlgorithm,
    plaintext: &[u8],
) -> Result<Vec<u8>, OaepError> {
    let max = key.max_plaintext_size(alg.aws_lc());
    if plaintext.len() > max {
        return Err(OaepError::PlaintextTooLong {
            got: plaintext.len(),
            max,
        });
    }
    let mut out = vec![0u8; key.ciphertext_size()];
    let len = key
        .encrypt(alg.aws_lc(), plaintext, &mut out, None)
        .map_err(|_| OaepError::EncryptionFailed)?
        .len();
    out.truncate(len);
    Ok(out)
}

/// Encrypts `plaintext` (at most [`OaepAlgorithm::max_plaintext_len`] bytes) under a DER
/// SubjectPublicKeyInfo RSA public key; the ciphertext is as long as the modulus.
pub fn encrypt(spki: &[u8], alg: OaepAlgorithm, plaintext: &[u8]) -> Result<Vec<u8>, OaepError> {
    let public = PublicEncryptingKey::from_der(spki).map_err(|_| OaepError::BadKey)?;
    let key = OaepPublicEncryptingKey::new(public).map_err(|_| OaepError::BadKey)?;
    encrypt_with(&key, alg, plaintext)
}

/// DER SubjectPublicKeyInfo of a PKCS#8 RSA private key.
pub fn public_key_der(pkcs8: &[u8]) -> Result<Vec<u8>, OaepError> {
    let key = PrivateDecryptingKey::from_pkcs8(pkcs8).map_err(|_| OaepError::BadKey)?;
    key.public_key()
        .as_der()
        .map(|d| d.as_ref().to_vec())
        .map_err(|_| OaepError::BadKey)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(bits: usize) -> (Zeroizing<Vec<u8>>, DecryptionKey) {
        let size = match bits {
            2048 => aws_lc_rs::rsa::KeySize::Rsa2048,
            _ => aws_lc_rs::rsa::KeySize::Rsa3072,
        };
        let der = Zeroizing::new(
            PrivateDecryptingKey::generate(size)
                .unwrap()
                .as_der()
                .unwrap()
                .as_ref()
                .to_vec(),
        );
        let k = DecryptionKey::from_pkcs8(bits, &der).unwrap();
        (der, k)
    }

    #[test]
    fn round_trips_at_the_limit_and_refuses_one_byte_more() {
        let (der, k) = key(2048);
        let spki = public_key_der(&der).unwrap();
        for alg in [OaepAlgorithm::Sha256, OaepAlgorithm::Sha1] {
            let max = alg.max_plaintext_len(2048);
            assert_eq!(max, 256 - 2 * alg.hash_len() - 2);
            let pt = vec![0x5a; max];
            let ct = encrypt(&spki, alg, &pt).unwrap();
            assert_eq!(ct.len(), 256);
            assert_eq!(k.decrypt(alg, &ct).unwrap().as_slice(), pt.as_slice());
            assert_eq!(
                k.encrypt(alg, &vec![0; max + 1]),
                Err(OaepError::PlaintextTooLong { got: max + 1, max })
            );
        }
    }

    #[test]
    fn every_decryption_failure_is_the_same_error() {
        let (_, k) = key(2048);
        let ct = k.encrypt(OaepAlgorithm::Sha256, b"secret").unwrap();
        let mut changed = ct.clone();
        changed[100] ^= 1;
        let other = key(2048)
            .1
            .encrypt(OaepAlgorithm::Sha256, b"secret")
            .unwrap();
        let failures = [
            k.decrypt(OaepAlgorithm::Sha256, &changed),
            k.decrypt(OaepAlgorithm::Sha256, &ct[1..]),
            k.decrypt(OaepAlgorithm::Sha256, &[ct.clone(), vec![0]].concat()),
            k.decrypt(OaepAlgorithm::Sha256, &[]),
            k.decrypt(OaepAlgorithm::Sha256, &vec![0xff; 256]),
            k.decrypt(OaepAlgorithm::Sha1, &ct),
            k.decrypt(OaepAlgorithm::Sha256, &other),
        ];
        for f in failures {
            assert_eq!(f, Err(OaepError::Decryption));
        }
    }

    #[test]
    fn a_key_of_another_size_is_refused() {
        let (der, _) = key(3072);
        assert!(matches!(
            DecryptionKey::from_pkcs8(2048, &der),
            Err(OaepError::BadKey)
        ));
        assert!(DecryptionKey::from_pkcs8(3072, &der).is_ok());
    }

    #[test]
    fn names_parse_both_ways() {
        for name in OAEP_ALGORITHMS {
            assert_eq!(OaepAlgorithm::parse(name).unwrap().as_str(), name);
        }
        assert_eq!(OaepAlgorithm::parse("RSAES_OAEP_SHA_512"), None);
    }
}
