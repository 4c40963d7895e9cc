//! RSA and ECDSA signatures through aws-lc-rs: key generation, signing (message or
//! digest) and verification, in the wire formats of DESIGN.md section 4.

use aws_lc_rs::digest::{self, Digest};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair, VerificationAlgorithm};
use zeroize::Zeroizing;

/// Asymmetric key types the gateway offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsymmetricKind {
    Rsa4096,
    EccNistP256,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    fn algorithm(self) -> &'static digest::Algorithm {
        match self {
            Hash::Sha256 => &digest::SHA256,
            Hash::Sha384 => &digest::SHA384,
            Hash::Sha512 => &digest::SHA512,
        }
    }

    pub fn output_len(self) -> usize {
        self.algorithm().output_len
    }

    /// The digest of `data`.
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        digest::digest(self.algorithm(), data).as_ref().to_vec()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    Pkcs1v15,
    Pss,
    /// ECDSA, DER-encoded signature.
    Ecdsa,
}

/// One of the nine signing algorithms of the HTTP API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SigningAlgorithm {
    pub padding: Padding,
    pub hash: Hash,
}

pub const RSA_SIGNING_ALGORITHMS: [&str; 6] = [
    "RSASSA_PSS_SHA_256",
    "RSASSA_PSS_SHA_384",
    "RSASSA_PSS_SHA_512",
    "RSASSA_PKCS1_V1_5_SHA_256",
    "RSASSA_PKCS1_V1_5_SHA_384",
    "RSASSA_PKCS1_V1_5_SHA_512",
];
pub const ECC_SIGNING_ALGORITHMS: [&str; 3] = ["ECDSA_SHA_256", "ECDSA_SHA_384", "ECDSA_SHA_512"];

impl SigningAlgorithm {
    /// Parses an API name such as `RSASSA_PSS_SHA_256`.
    pub fn parse(name: &str) -> Option<Self> {
        let (padding, hash) = if let Some(h) = name.strip_prefix("RSASSA_PSS_SHA_") {
            (Padding::Pss, h)
        } else if let Some(h) = name.strip_prefix("RSASSA_PKCS1_V1_5_SHA_") {
            (Padding::Pkcs1v15, h)
        } else if let Some(h) = name.strip_prefix("ECDSA_SHA_") {
            (Padding::Ecdsa, h)
        } else {
            return None;
        };
        let hash = match hash {
            "256" => Hash::Sha256,
            "384" => Hash::Sha384,
            "512" => Hash::Sha512,
            _ => return None,
        };
        Some(Self { padding, hash })
    }

    pub fn fits(&self, kind: AsymmetricKind) -> bool {
        matches!(
            (self.padding, kind),
            (Padding::Ecdsa, AsymmetricKind::EccNistP256)
                | (Padding::Pss | Padding::Pkcs1v15, AsymmetricKind::Rsa4096)
        )
    }

    fn rsa_encoding(&self) -> &'static dyn signature::RsaEncoding {
        match (self.padding, self.hash) {
            (Padding::Pss, Hash::Sha256) => &signature::RSA_PSS_SHA256,
            (Padding::Pss, Hash::Sha384) => &signature::RSA_PSS_SHA384,
            (Padding::Pss, Hash::Sha512) => &signature::RSA_PSS_SHA512,
            (_, Hash::Sha256) => &signature::RSA_PKCS1_SHA256,
            (_, Hash::Sha384) => &signature::RSA_PKCS1_SHA384,
            (_, Hash::Sha512) => &signature::RSA_PKCS1_SHA512,
        }
    }

    fn verification(&self) -> &'static dyn VerificationAlgorithm {
        match (self.padding, self.hash) {
            (Padding::Pss, Hash::Sha256) => &signature::RSA_PSS_2048_8192_SHA256,
            (Padding::Pss, Hash::Sha384) => &signature::RSA_PSS_2048_8192_SHA384,
            (Padding::Pss, Hash::Sha512) => &signature::RSA_PSS_2048_8192_SHA512,
            (Padding::Pkcs1v15, Hash::Sha256) => &signature::RSA_PKCS1_2048_8192_SHA256,
            (Padding::Pkcs1v15, Hash::Sha384) => &signature::RSA_PKCS1_2048_8192_SHA384,
            (Padding::Pkcs1v15, Hash::Sha512) => &signature::RSA_PKCS1_2048_8192_SHA512,
            (Padding::Ecdsa, Hash::Sha256) => &signature::ECDSA_P256_SHA256_ASN1,
            (Padding::Ecdsa, Hash::Sha384) => &signature::ECDSA_P256_SHA384_ASN1,
            (Padding::Ecdsa, Hash::Sha512) => &signature::ECDSA_P256_SHA512_ASN1,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SigningError {
    #[error("the key material could not be loaded")]
    BadKey,
    #[error("a digest of {expected} bytes was expected, got {got}")]
    DigestLength { expected: usize, got: usize },
    #[error("the signing operation failed")]
    Failed,
}

/// Input to sign or verify: the message, or its digest already computed by the caller.
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    Message(&'a [u8]),
    Digest(&'a [u8]),
}

impl Input<'_> {
    /// The digest of the input under `hash`, as aws-lc-rs wants it.
    fn digest(&self, hash: Hash) -> Result<Digest, SigningError> {
        match self {
            Input::Message(m) => Ok(digest::digest(hash.algorithm(), m)),
            Input::Digest(d) => Digest::import_less_safe(d, hash.algorithm()).map_err(|_| {
                SigningError::DigestLength {
                    expected: hash.output_len(),
                    got: d.len(),
                }
            }),
        }
    }
}

/// A private key loaded for signing. Built from PKCS#8 DER, which is the stored form.
pub enum SigningKey {
    Rsa(RsaKeyPair),
    Ecc(EcdsaKeyPair),
}

/// Generates a new key with aws-lc-rs' own generator; returns PKCS#8 DER.
pub fn generate(kind: AsymmetricKind) -> Result<Zeroizing<Vec<u8>>, SigningError> {
    let der = match kind {
        AsymmetricKind::Rsa4096 => {
            let kp = RsaKeyPair::generate(KeySize::Rsa4096).map_err(|_| SigningError::Failed)?;
            kp.as_der()
                .map_err(|_| SigningError::Failed)?
                .as_ref()
                .to_vec()
        }
        AsymmetricKind::EccNistP256 => {
            let kp = EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_ASN1_SIGNING)
                .map_err(|_| SigningError::Failed)?;
            kp.to_pkcs8v1()
                .map_err(|_| SigningError::Failed)?
                .as_ref()
                .to_vec()
        }
    };
    Ok(Zeroizing::new(der))
}

/// Generates a new key from a caller-supplied RNG (the HSM's, with `HSM_USE_RAND=true`)
/// with the RustCrypto generators; returns PKCS#8 DER for loading into aws-lc-rs.
pub fn generate_with_rng<R: rand_core::CryptoRngCore>(
    kind: AsymmetricKind,
    rng: &mut R,
) -> Result<Zeroizing<Vec<u8>>, SigningError> {
    use p256::pkcs8::EncodePrivateKey;
    let doc = match kind {
        AsymmetricKind::Rsa4096 => rsa::RsaPrivateKey::new(rng, 4096)
            .map_err(|_| SigningError::Failed)?
            .to_pkcs8_der()
            .map_err(|_| SigningError::Failed)?,
        AsymmetricKind::EccNistP256 => p256::SecretKey::random(rng)
            .to_pkcs8_der()
            .map_err(|_| SigningError::Failed)?,
    };
    Ok(Zeroizing::new(doc.as_bytes().to_vec()))
}

impl SigningKey {
    pub fn from_pkcs8(kind: AsymmetricKind, der: &[u8]) -> Result<Self, SigningError> {
        match kind {
            AsymmetricKind::Rsa4096 => RsaKeyPair::from_pkcs8(der)
                .map(SigningKey::Rsa)
                .map_err(|_| SigningError::BadKey),
            AsymmetricKind::EccNistP256 => {
                EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, der)
                    .map(SigningKey::Ecc)
                    .map_err(|_| SigningError::BadKey)
            }
        }
    }

    /// DER SubjectPublicKeyInfo of the key.
    pub fn public_key_der(&self) -> Result<Vec<u8>, SigningError> {
        let der = match self {
            SigningKey::Rsa(kp) => kp.public_key().as_der().map(|d| d.as_ref().to_vec()),
            SigningKey::Ecc(kp) => kp.public_key().as_der().map(|d| d.as_ref().to_vec()),
        };
        der.map_err(|_| SigningError::Failed)
    }

    /// Signs; the caller has checked that `alg` fits this key and refused PSS over a digest.
    pub fn sign(&self, alg: SigningAlgorithm, input: Input<'_>) -> Result<Vec<u8>, SigningError> {
        match self {
            SigningKey::Rsa(kp) => {
                let mut sig = vec![0u8; kp.public_modulus_len()];
                let result = match input {
                    Input::Message(m) => {
                        let rng = aws_lc_rs::rand::SystemRandom::new();
                        kp.sign(alg.rsa_encoding(), &rng, m, &mut sig)
                    }
                    Input::Digest(_) => {
                        kp.sign_digest(alg.rsa_encoding(), &input.digest(alg.hash)?, &mut sig)
                    }
                };
                result.map_err(|_| SigningError::Failed)?;
                Ok(sig)
            }
            SigningKey::Ecc(kp) => {
                // ECDSA on P-256 uses the leftmost 256 bits of any longer digest (FIPS 186-5
                // 6.4.1), so a SHA-384/512 digest is truncated to SHA-256's length here.
                let full = input.digest(alg.hash)?;
                let e = Digest::import_less_safe(&full.as_ref()[..32], &digest::SHA256)
                    .map_err(|_| SigningError::Failed)?;
                let sig = kp.sign_digest(&e).map_err(|_| SigningError::Failed)?;
                Ok(sig.as_ref().to_vec())
            }
        }
    }
}

/// Verifies a signature with a DER SubjectPublicKeyInfo. `Ok(false)` for a wrong signature.
pub fn verify(
    public_key_der: &[u8],
    alg: SigningAlgorithm,
    input: Input<'_>,
    sig: &[u8],
) -> Result<bool, SigningError> {
    let verifier = alg.verification();
    let ok = match input {
        Input::Message(m) => signature::UnparsedPublicKey::new(verifier, public_key_der)
            .verify(m, sig)
            .is_ok(),
        Input::Digest(_) => verifier
            .verify_digest_sig(public_key_der, &input.digest(alg.hash)?, sig)
            .is_ok(),
    };
    Ok(ok)
}
