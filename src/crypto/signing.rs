//! RSA, ECDSA, Ed25519 and ML-DSA signatures through aws-lc-rs: key generation, signing
//! (message or, for the hash-then-sign schemes, digest) and verification, in the wire
//! formats of DESIGN.md section 4 (ECDSA DER; Ed25519's 64 bytes and ML-DSA's FIPS 204
//! encoding as they are; public keys as SubjectPublicKeyInfo).

use aws_lc_rs::digest::{self, Digest};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{
    self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, PqdsaKeyPair, VerificationAlgorithm,
};
use zeroize::Zeroizing;

/// Asymmetric key types the gateway offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsymmetricKind {
    Rsa2048,
    Rsa3072,
    Rsa4096,
    EccNistP256,
    EccNistP384,
    EccNistP521,
    /// PureEdDSA on edwards25519 (RFC 8032).
    Ed25519,
    /// FIPS 204 ML-DSA, pure, with the empty context.
    MlDsa(MlDsaLevel),
}

/// The three FIPS 204 parameter sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MlDsaLevel {
    MlDsa44,
    MlDsa65,
    MlDsa87,
}

impl MlDsaLevel {
    fn signing(self) -> &'static signature::PqdsaSigningAlgorithm {
        match self {
            MlDsaLevel::MlDsa44 => &signature::ML_DSA_44_SIGNING,
            MlDsaLevel::MlDsa65 => &signature::ML_DSA_65_SIGNING,
            MlDsaLevel::MlDsa87 => &signature::ML_DSA_87_SIGNING,
        }
    }

    fn verification(self) -> &'static signature::PqdsaVerificationAlgorithm {
        match self {
            MlDsaLevel::MlDsa44 => &signature::ML_DSA_44,
            MlDsaLevel::MlDsa65 => &signature::ML_DSA_65,
            MlDsaLevel::MlDsa87 => &signature::ML_DSA_87,
        }
    }

    /// The key type's name, which Infisical also uses as its signing algorithm's name.
    pub fn name(self) -> &'static str {
        match self {
            MlDsaLevel::MlDsa44 => "ML_DSA_44",
            MlDsaLevel::MlDsa65 => "ML_DSA_65",
            MlDsaLevel::MlDsa87 => "ML_DSA_87",
        }
    }

    /// The length of a signature in bytes (FIPS 204, table 2).
    pub fn signature_len(self) -> usize {
        self.signing().signature_len()
    }
}

/// The NIST curves of the ECDSA kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    P256,
    P384,
    P521,
}

impl Curve {
    /// The digest length aws-lc-rs' `sign_digest` takes for this curve: as long as the
    /// curve order for P-256 and P-384; for P-521 (a 521-bit order) SHA-512's 64 bytes,
    /// all of whose bits ECDSA uses.
    fn digest_len(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
            Curve::P521 => 64,
        }
    }

    /// aws-lc-rs' signing algorithm, whose digest is `digest_len` bytes long.
    fn signing(self) -> &'static signature::EcdsaSigningAlgorithm {
        match self {
            Curve::P256 => &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            Curve::P384 => &signature::ECDSA_P384_SHA384_ASN1_SIGNING,
            Curve::P521 => &signature::ECDSA_P521_SHA512_ASN1_SIGNING,
        }
    }

    /// The digest algorithm aws-lc-rs' `sign_digest` wants for this curve's keys.
    fn digest(self) -> &'static digest::Algorithm {
        match self {
            Curve::P256 => &digest::SHA256,
            Curve::P384 => &digest::SHA384,
            Curve::P521 => &digest::SHA512,
        }
    }

    /// aws-lc-rs' verifier of DER signatures on this curve over `hash`.
    fn verification(self, hash: Hash) -> &'static signature::EcdsaVerificationAlgorithm {
        match (self, hash) {
            (Curve::P256, Hash::Sha256) => &signature::ECDSA_P256_SHA256_ASN1,
            (Curve::P256, Hash::Sha384) => &signature::ECDSA_P256_SHA384_ASN1,
            (Curve::P256, Hash::Sha512) => &signature::ECDSA_P256_SHA512_ASN1,
            (Curve::P384, Hash::Sha256) => &signature::ECDSA_P384_SHA256_ASN1,
            (Curve::P384, Hash::Sha384) => &signature::ECDSA_P384_SHA384_ASN1,
            (Curve::P384, Hash::Sha512) => &signature::ECDSA_P384_SHA512_ASN1,
            (Curve::P521, Hash::Sha256) => &signature::ECDSA_P521_SHA256_ASN1,
            (Curve::P521, Hash::Sha384) => &signature::ECDSA_P521_SHA384_ASN1,
            (Curve::P521, Hash::Sha512) => &signature::ECDSA_P521_SHA512_ASN1,
        }
    }
}

impl AsymmetricKind {
    /// The modulus length in bits of an RSA kind.
    fn rsa_bits(self) -> Option<usize> {
        match self {
            AsymmetricKind::Rsa2048 => Some(2048),
            AsymmetricKind::Rsa3072 => Some(3072),
            AsymmetricKind::Rsa4096 => Some(4096),
            _ => None,
        }
    }

    fn curve(self) -> Option<Curve> {
        match self {
            AsymmetricKind::EccNistP256 => Some(Curve::P256),
            AsymmetricKind::EccNistP384 => Some(Curve::P384),
            AsymmetricKind::EccNistP521 => Some(Curve::P521),
            _ => None,
        }
    }

    /// The signing algorithm names valid for a key of this kind.
    pub fn signing_algorithms(self) -> &'static [&'static str] {
        match self {
            AsymmetricKind::Rsa2048 | AsymmetricKind::Rsa3072 | AsymmetricKind::Rsa4096 => {
                &RSA_SIGNING_ALGORITHMS
            }
            AsymmetricKind::EccNistP256
            | AsymmetricKind::EccNistP384
            | AsymmetricKind::EccNistP521 => &ECC_SIGNING_ALGORITHMS,
            AsymmetricKind::Ed25519 => &ED25519_SIGNING_ALGORITHMS,
            AsymmetricKind::MlDsa(MlDsaLevel::MlDsa44) => &ML_DSA_44_SIGNING_ALGORITHMS,
            AsymmetricKind::MlDsa(MlDsaLevel::MlDsa65) => &ML_DSA_65_SIGNING_ALGORITHMS,
            AsymmetricKind::MlDsa(MlDsaLevel::MlDsa87) => &ML_DSA_87_SIGNING_ALGORITHMS,
        }
    }
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

/// The signature scheme of a signing algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    Pkcs1v15,
    Pss,
    /// ECDSA, DER-encoded signature.
    Ecdsa,
    /// PureEdDSA (RFC 8032): the 64-byte signature of the message itself.
    Ed25519,
    /// Pure ML-DSA (FIPS 204) with the empty context. `None` is AWS's
    /// `ML_DSA_SHAKE_256`, for a key of any parameter set; `Some` is Infisical's name,
    /// which names the key's own parameter set.
    MlDsa(Option<MlDsaLevel>),
}

/// One of the signing algorithms of the HTTP API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SigningAlgorithm {
    pub padding: Padding,
    /// The hash applied to the message before the private-key operation, which a
    /// caller's precomputed digest (`isDigest`) stands for; `None` for the pure schemes
    /// (Ed25519, ML-DSA), which sign the message itself and so cannot take a digest.
    pub hash: Option<Hash>,
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
/// AWS's and Infisical's name of PureEdDSA on Ed25519 keys (SHA-512 is Ed25519's own
/// hash, inside the scheme).
pub const ED25519_SHA_512: &str = "ED25519_SHA_512";
pub const ED25519_SIGNING_ALGORITHMS: [&str; 1] = [ED25519_SHA_512];
/// AWS's name of pure ML-DSA, whatever the key's parameter set.
pub const ML_DSA_SHAKE_256: &str = "ML_DSA_SHAKE_256";
/// Infisical names ML-DSA's signing algorithm as the key type; AWS's name is accepted too.
pub const ML_DSA_44_SIGNING_ALGORITHMS: [&str; 2] = ["ML_DSA_44", ML_DSA_SHAKE_256];
pub const ML_DSA_65_SIGNING_ALGORITHMS: [&str; 2] = ["ML_DSA_65", ML_DSA_SHAKE_256];
pub const ML_DSA_87_SIGNING_ALGORITHMS: [&str; 2] = ["ML_DSA_87", ML_DSA_SHAKE_256];

impl SigningAlgorithm {
    /// Parses an API name such as `RSASSA_PSS_SHA_256`, `ED25519_SHA_512` or `ML_DSA_65`.
    pub fn parse(name: &str) -> Option<Self> {
        let pure = |padding| {
            Some(Self {
                padding,
                hash: None,
            })
        };
        match name {
            ED25519_SHA_512 => return pure(Padding::Ed25519),
            ML_DSA_SHAKE_256 => return pure(Padding::MlDsa(None)),
            "ML_DSA_44" => return pure(Padding::MlDsa(Some(MlDsaLevel::MlDsa44))),
            "ML_DSA_65" => return pure(Padding::MlDsa(Some(MlDsaLevel::MlDsa65))),
            "ML_DSA_87" => return pure(Padding::MlDsa(Some(MlDsaLevel::MlDsa87))),
            _ => {}
        }
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
        Some(Self {
            padding,
            hash: Some(hash),
        })
    }

    pub fn fits(&self, kind: AsymmetricKind) -> bool {
        match self.padding {
            Padding::Ecdsa => kind.curve().is_some(),
            Padding::Pss | Padding::Pkcs1v15 => kind.rsa_bits().is_some(),
            Padding::Ed25519 => kind == AsymmetricKind::Ed25519,
            Padding::MlDsa(None) => matches!(kind, AsymmetricKind::MlDsa(_)),
            Padding::MlDsa(Some(level)) => kind == AsymmetricKind::MlDsa(level),
        }
    }

    /// The hash of a hash-then-sign algorithm (`NotForThisKey` for a pure one: the
    /// caller refuses a digest for those before asking).
    fn prehash(&self) -> Result<Hash, SigningError> {
        self.hash.ok_or(SigningError::NotForThisKey)
    }

    fn rsa_encoding(&self) -> Result<&'static dyn signature::RsaEncoding, SigningError> {
        Ok(match (self.padding, self.prehash()?) {
            (Padding::Pss, Hash::Sha256) => &signature::RSA_PSS_SHA256,
            (Padding::Pss, Hash::Sha384) => &signature::RSA_PSS_SHA384,
            (Padding::Pss, Hash::Sha512) => &signature::RSA_PSS_SHA512,
            (Padding::Pkcs1v15, Hash::Sha256) => &signature::RSA_PKCS1_SHA256,
            (Padding::Pkcs1v15, Hash::Sha384) => &signature::RSA_PKCS1_SHA384,
            (Padding::Pkcs1v15, Hash::Sha512) => &signature::RSA_PKCS1_SHA512,
            _ => return Err(SigningError::NotForThisKey),
        })
    }

    /// aws-lc-rs' verifier for this algorithm on a key of `kind` (RSA: any size it accepts,
    /// 2048 to 8192 bits; ECDSA: the key's curve; ML-DSA: the key's parameter set).
    fn verification(
        &self,
        kind: AsymmetricKind,
    ) -> Result<&'static dyn VerificationAlgorithm, SigningError> {
        if !self.fits(kind) {
            return Err(SigningError::NotForThisKey);
        }
        Ok(match (self.padding, kind) {
            (Padding::Ed25519, _) => &signature::ED25519,
            (Padding::MlDsa(_), AsymmetricKind::MlDsa(level)) => level.verification(),
            (Padding::Ecdsa, _) => match kind.curve() {
                Some(curve) => curve.verification(self.prehash()?),
                None => return Err(SigningError::NotForThisKey),
            },
            (Padding::Pss, _) => match self.prehash()? {
                Hash::Sha256 => &signature::RSA_PSS_2048_8192_SHA256,
                Hash::Sha384 => &signature::RSA_PSS_2048_8192_SHA384,
                Hash::Sha512 => &signature::RSA_PSS_2048_8192_SHA512,
            },
            (Padding::Pkcs1v15, _) => match self.prehash()? {
                Hash::Sha256 => &signature::RSA_PKCS1_2048_8192_SHA256,
                Hash::Sha384 => &signature::RSA_PKCS1_2048_8192_SHA384,
                Hash::Sha512 => &signature::RSA_PKCS1_2048_8192_SHA512,
            },
            (Padding::MlDsa(_), _) => return Err(SigningError::NotForThisKey),
        })
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SigningError {
    #[error("the key material could not be loaded")]
    BadKey,
    #[error("a digest of {expected} bytes was expected, got {got}")]
    DigestLength { expected: usize, got: usize },
    /// The algorithm does not fit the key, or (a pure scheme) was given a digest.
    #[error("the signing algorithm does not fit this key or input")]
    NotForThisKey,
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

    /// The message of a pure scheme, which takes no digest.
    fn message(&self) -> Result<&[u8], SigningError> {
        match self {
            Input::Message(m) => Ok(m),
            Input::Digest(_) => Err(SigningError::NotForThisKey),
        }
    }
}

/// A private key loaded for signing. Built from PKCS#8 DER, which is the stored form.
pub enum SigningKey {
    Rsa(RsaKeyPair),
    Ecc(EcdsaKeyPair, Curve),
    Ed25519(Ed25519KeyPair),
    MlDsa(PqdsaKeyPair),
}

fn generate_rsa(size: KeySize) -> Result<Vec<u8>, SigningError> {
    let kp = RsaKeyPair::generate(size).map_err(|_| SigningError::Failed)?;
    Ok(kp
        .as_der()
        .map_err(|_| SigningError::Failed)?
        .as_ref()
        .to_vec())
}

fn generate_ecdsa(curve: Curve) -> Result<Vec<u8>, SigningError> {
    let kp = EcdsaKeyPair::generate(curve.signing()).map_err(|_| SigningError::Failed)?;
    Ok(kp
        .to_pkcs8v1()
        .map_err(|_| SigningError::Failed)?
        .as_ref()
        .to_vec())
}

/// PKCS#8 v1 of an Ed25519 key pair (the form `openssl genpkey` writes).
fn ed25519_pkcs8(kp: &Ed25519KeyPair) -> Result<Vec<u8>, SigningError> {
    Ok(kp
        .to_pkcs8v1()
        .map_err(|_| SigningError::Failed)?
        .as_ref()
        .to_vec())
}

/// PKCS#8 of an ML-DSA key pair: aws-lc-rs writes the 32-byte seed form.
fn ml_dsa_pkcs8(kp: &PqdsaKeyPair) -> Result<Vec<u8>, SigningError> {
    Ok(kp
        .to_pkcs8v1()
        .map_err(|_| SigningError::Failed)?
        .as_ref()
        .to_vec())
}

/// Generates a new key with aws-lc-rs' own generator; returns PKCS#8 DER.
pub fn generate(kind: AsymmetricKind) -> Result<Zeroizing<Vec<u8>>, SigningError> {
    let der = match kind {
        AsymmetricKind::Rsa2048 => generate_rsa(KeySize::Rsa2048)?,
        AsymmetricKind::Rsa3072 => generate_rsa(KeySize::Rsa3072)?,
        AsymmetricKind::Rsa4096 => generate_rsa(KeySize::Rsa4096)?,
        AsymmetricKind::EccNistP256 => generate_ecdsa(Curve::P256)?,
        AsymmetricKind::EccNistP384 => generate_ecdsa(Curve::P384)?,
        AsymmetricKind::EccNistP521 => generate_ecdsa(Curve::P521)?,
        AsymmetricKind::Ed25519 => {
            ed25519_pkcs8(&Ed25519KeyPair::generate().map_err(|_| SigningError::Failed)?)?
        }
        AsymmetricKind::MlDsa(level) => ml_dsa_pkcs8(
            &PqdsaKeyPair::generate(level.signing()).map_err(|_| SigningError::Failed)?,
        )?,
    };
    Ok(Zeroizing::new(der))
}

/// Generates a new key from a caller-supplied RNG (the HSM's, with `HSM_USE_RAND=true`);
/// returns PKCS#8 DER for loading into aws-lc-rs. RSA and ECDSA with the RustCrypto
/// generators; Ed25519 and ML-DSA from a 32-byte seed drawn from the RNG (RFC 8032's
/// private key; FIPS 204's ξ of ML-DSA.KeyGen), expanded by aws-lc-rs.
pub fn generate_with_rng<R: rand_core::CryptoRngCore>(
    kind: AsymmetricKind,
    rng: &mut R,
) -> Result<Zeroizing<Vec<u8>>, SigningError> {
    use p256::pkcs8::EncodePrivateKey;
    let seed = |rng: &mut R| {
        let mut seed = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(seed.as_mut());
        seed
    };
    let doc = match kind {
        AsymmetricKind::Ed25519 => {
            let kp = Ed25519KeyPair::from_seed_unchecked(seed(rng).as_ref())
                .map_err(|_| SigningError::Failed)?;
            return Ok(Zeroizing::new(ed25519_pkcs8(&kp)?));
        }
        AsymmetricKind::MlDsa(level) => {
            let kp = PqdsaKeyPair::from_seed(level.signing(), seed(rng).as_ref())
                .map_err(|_| SigningError::Failed)?;
            return Ok(Zeroizing::new(ml_dsa_pkcs8(&kp)?));
        }
        AsymmetricKind::Rsa2048 | AsymmetricKind::Rsa3072 | AsymmetricKind::Rsa4096 => {
            let bits = kind.rsa_bits().ok_or(SigningError::Failed)?;
            rsa::RsaPrivateKey::new(rng, bits)
                .map_err(|_| SigningError::Failed)?
                .to_pkcs8_der()
        }
        AsymmetricKind::EccNistP256 => p256::SecretKey::random(rng).to_pkcs8_der(),
        AsymmetricKind::EccNistP384 => p384::SecretKey::random(rng).to_pkcs8_der(),
        AsymmetricKind::EccNistP521 => p521::SecretKey::random(rng).to_pkcs8_der(),
    }
    .map_err(|_| SigningError::Failed)?;
    Ok(Zeroizing::new(doc.as_bytes().to_vec()))
}

impl SigningKey {
    /// Loads a PKCS#8 private key of `kind`; a key of another type, size, curve or
    /// parameter set is `BadKey` (an RSA-2048 key is not an RSA_4096 key).
    pub fn from_pkcs8(kind: AsymmetricKind, der: &[u8]) -> Result<Self, SigningError> {
        let bad = |_| SigningError::BadKey;
        match kind {
            AsymmetricKind::Rsa2048 | AsymmetricKind::Rsa3072 | AsymmetricKind::Rsa4096 => {
                let kp = RsaKeyPair::from_pkcs8(der).map_err(bad)?;
                if Some(rsa_modulus_bits(&kp)) != kind.rsa_bits() {
                    return Err(SigningError::BadKey);
                }
                Ok(SigningKey::Rsa(kp))
            }
            // aws-lc-rs refuses a key of another curve than the algorithm's.
            AsymmetricKind::EccNistP256
            | AsymmetricKind::EccNistP384
            | AsymmetricKind::EccNistP521 => {
                let curve = kind.curve().ok_or(SigningError::BadKey)?;
                EcdsaKeyPair::from_pkcs8(curve.signing(), der)
                    .map(|kp| SigningKey::Ecc(kp, curve))
                    .map_err(bad)
            }
            AsymmetricKind::Ed25519 => Ed25519KeyPair::from_pkcs8(der)
                .map(SigningKey::Ed25519)
                .map_err(bad),
            // aws-lc-rs checks the parameter set against the algorithm's.
            AsymmetricKind::MlDsa(level) => PqdsaKeyPair::from_pkcs8(level.signing(), der)
                .map(SigningKey::MlDsa)
                .map_err(bad),
        }
    }

    /// DER SubjectPublicKeyInfo of the key.
    pub fn public_key_der(&self) -> Result<Vec<u8>, SigningError> {
        let der = match self {
            SigningKey::Rsa(kp) => kp.public_key().as_der().map(|d| d.as_ref().to_vec()),
            SigningKey::Ecc(kp, _) => kp.public_key().as_der().map(|d| d.as_ref().to_vec()),
            SigningKey::Ed25519(kp) => kp.public_key().as_der().map(|d| d.as_ref().to_vec()),
            SigningKey::MlDsa(kp) => kp.public_key().as_der().map(|d| d.as_ref().to_vec()),
        };
        der.map_err(|_| SigningError::Failed)
    }

    /// Signs; the caller has checked that `alg` fits this key and refused PSS or a pure
    /// scheme over a digest (both are `NotForThisKey` here too).
    pub fn sign(&self, alg: SigningAlgorithm, input: Input<'_>) -> Result<Vec<u8>, SigningError> {
        match self {
            SigningKey::Rsa(kp) => {
                let mut sig = vec![0u8; kp.public_modulus_len()];
                let encoding = alg.rsa_encoding()?;
                let result = match input {
                    Input::Message(m) => {
                        let rng = aws_lc_rs::rand::SystemRandom::new();
                        kp.sign(encoding, &rng, m, &mut sig)
                    }
                    Input::Digest(_) if alg.padding == Padding::Pss => {
                        return Err(SigningError::NotForThisKey)
                    }
                    Input::Digest(_) => {
                        kp.sign_digest(encoding, &input.digest(alg.prehash()?)?, &mut sig)
                    }
                };
                result.map_err(|_| SigningError::Failed)?;
                Ok(sig)
            }
            SigningKey::Ecc(kp, curve) => {
                if alg.padding != Padding::Ecdsa {
                    return Err(SigningError::NotForThisKey);
                }
                let full = input.digest(alg.prehash()?)?;
                let e = ecdsa_digest(*curve, full.as_ref())?;
                let sig = kp.sign_digest(&e).map_err(|_| SigningError::Failed)?;
                Ok(sig.as_ref().to_vec())
            }
            SigningKey::Ed25519(kp) => {
                if alg.padding != Padding::Ed25519 {
                    return Err(SigningError::NotForThisKey);
                }
                let sig = kp
                    .try_sign(input.message()?)
                    .map_err(|_| SigningError::Failed)?;
                Ok(sig.as_ref().to_vec())
            }
            SigningKey::MlDsa(kp) => {
                let level_fits = match alg.padding {
                    Padding::MlDsa(None) => true,
                    Padding::MlDsa(Some(level)) => level.signing() == kp.algorithm(),
                    _ => false,
                };
                if !level_fits {
                    return Err(SigningError::NotForThisKey);
                }
                let mut sig = vec![0u8; kp.algorithm().signature_len()];
                let len = kp
                    .sign(input.message()?, &mut sig)
                    .map_err(|_| SigningError::Failed)?;
                sig.truncate(len);
                Ok(sig)
            }
        }
    }
}

/// The exact bit length of an RSA key's modulus.
fn rsa_modulus_bits(kp: &RsaKeyPair) -> usize {
    let public = kp.public_key();
    let modulus = public.modulus();
    let n = modulus.big_endian_without_leading_zero();
    n.len() * 8 - n[0].leading_zeros() as usize
}

/// The digest as aws-lc-rs' `sign_digest` takes it for a key on `curve` (`digest_len`
/// bytes, under the curve's own hash). ECDSA uses the leftmost bits of a digest longer
/// than the order (FIPS 186-5, 6.4.1), so SHA-384/512 on P-256 and SHA-512 on P-384 are
/// truncated; a shorter digest (SHA-256 on P-384, SHA-256/384 on P-521) is its own
/// integer, which leading zero bytes leave unchanged. SHA-512 on P-521 is taken whole.
fn ecdsa_digest(curve: Curve, full: &[u8]) -> Result<Digest, SigningError> {
    let n = curve.digest_len();
    let e: Vec<u8> = if full.len() >= n {
        full[..n].to_vec()
    } else {
        let mut padded = vec![0u8; n - full.len()];
        padded.extend_from_slice(full);
        padded
    };
    Digest::import_less_safe(&e, curve.digest()).map_err(|_| SigningError::Failed)
}

/// The raw 32-byte public key of an Ed25519 SubjectPublicKeyInfo (RFC 8410: the
/// algorithm identifier 1.3.101.112 without parameters, then the key as a bit string),
/// for front-ends that show the key in that form (Vault Transit).
pub fn ed25519_raw_public_key(spki: &[u8]) -> Option<&[u8]> {
    const PREFIX: [u8; 12] = [
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    spki.strip_prefix(&PREFIX[..]).filter(|k| k.len() == 32)
}

/// Verifies a signature with the DER SubjectPublicKeyInfo of a key of `kind`.
/// `Ok(false)` for a wrong signature; `NotForThisKey` for an algorithm that does not fit
/// the key, or a digest given to a pure scheme.
pub fn verify(
    public_key_der: &[u8],
    kind: AsymmetricKind,
    alg: SigningAlgorithm,
    input: Input<'_>,
    sig: &[u8],
) -> Result<bool, SigningError> {
    let verifier = alg.verification(kind)?;
    let ok = match (input, alg.hash) {
        (Input::Message(m), _) => signature::UnparsedPublicKey::new(verifier, public_key_der)
            .verify(m, sig)
            .is_ok(),
        (Input::Digest(_), None) => return Err(SigningError::NotForThisKey),
        (Input::Digest(_), Some(hash)) => verifier
            .verify_digest_sig(public_key_der, &input.digest(hash)?, sig)
            .is_ok(),
    };
    Ok(ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL_KINDS: [AsymmetricKind; 10] = [
        AsymmetricKind::Rsa2048,
        AsymmetricKind::Rsa3072,
        AsymmetricKind::Rsa4096,
        AsymmetricKind::EccNistP256,
        AsymmetricKind::EccNistP384,
        AsymmetricKind::EccNistP521,
        AsymmetricKind::Ed25519,
        AsymmetricKind::MlDsa(MlDsaLevel::MlDsa44),
        AsymmetricKind::MlDsa(MlDsaLevel::MlDsa65),
        AsymmetricKind::MlDsa(MlDsaLevel::MlDsa87),
    ];

    /// Every signing algorithm name of every kind, each once.
    fn all_names() -> Vec<&'static str> {
        let mut all: Vec<&str> = ALL_KINDS
            .iter()
            .flat_map(|k| k.signing_algorithms().iter().copied())
            .collect();
        all.sort_unstable();
        all.dedup();
        all
    }

    fn names(kind: AsymmetricKind) -> &'static [&'static str] {
        kind.signing_algorithms()
    }

    #[test]
    fn pkcs8_of_another_size_or_curve_is_a_bad_key() {
        let keys: Vec<(AsymmetricKind, Zeroizing<Vec<u8>>)> = ALL_KINDS
            .iter()
            .map(|&k| (k, generate(k).unwrap()))
            .collect();
        for (made, der) in &keys {
            for kind in ALL_KINDS {
                let loaded = SigningKey::from_pkcs8(kind, der);
                if kind == *made {
                    assert!(loaded.is_ok(), "{made:?} as itself");
                } else {
                    assert!(
                        matches!(loaded, Err(SigningError::BadKey)),
                        "a {made:?} key given as {kind:?} was accepted"
                    );
                }
            }
        }
        assert!(matches!(
            SigningKey::from_pkcs8(AsymmetricKind::Rsa2048, b"not DER"),
            Err(SigningError::BadKey)
        ));
    }

    #[test]
    fn rsa_modulus_length_is_exact() {
        for (kind, bits) in [
            (AsymmetricKind::Rsa2048, 2048),
            (AsymmetricKind::Rsa3072, 3072),
        ] {
            let kp = RsaKeyPair::from_pkcs8(&generate(kind).unwrap()).unwrap();
            assert_eq!(rsa_modulus_bits(&kp), bits);
        }
    }

    #[test]
    fn keys_from_a_caller_rng_load_as_their_kind() {
        for kind in [
            AsymmetricKind::Rsa2048,
            AsymmetricKind::EccNistP256,
            AsymmetricKind::EccNistP384,
            AsymmetricKind::EccNistP521,
            AsymmetricKind::Ed25519,
            AsymmetricKind::MlDsa(MlDsaLevel::MlDsa44),
            AsymmetricKind::MlDsa(MlDsaLevel::MlDsa65),
            AsymmetricKind::MlDsa(MlDsaLevel::MlDsa87),
        ] {
            let der = generate_with_rng(kind, &mut rand_core::OsRng).unwrap();
            assert!(SigningKey::from_pkcs8(kind, &der).is_ok(), "{kind:?}");
        }
    }

    #[test]
    fn fits_pairs_each_algorithm_with_the_kinds_that_list_it() {
        for kind in ALL_KINDS {
            for name in &all_names() {
                let alg = SigningAlgorithm::parse(name).unwrap();
                assert_eq!(
                    alg.fits(kind),
                    names(kind).contains(name),
                    "{name} {kind:?}"
                );
            }
        }
    }

    /// Every new kind and algorithm, over the message and, for the hash-then-sign
    /// schemes, over its digest: the signature verifies, and not over another message or
    /// with another hash; a pure scheme refuses a digest both ways.
    #[test]
    fn every_kind_signs_and_verifies_with_each_of_its_algorithms() {
        for kind in [
            AsymmetricKind::Rsa2048,
            AsymmetricKind::Rsa3072,
            AsymmetricKind::EccNistP384,
            AsymmetricKind::EccNistP521,
            AsymmetricKind::Ed25519,
            AsymmetricKind::MlDsa(MlDsaLevel::MlDsa44),
            AsymmetricKind::MlDsa(MlDsaLevel::MlDsa65),
            AsymmetricKind::MlDsa(MlDsaLevel::MlDsa87),
        ] {
            let key = SigningKey::from_pkcs8(kind, &generate(kind).unwrap()).unwrap();
            let public = key.public_key_der().unwrap();
            for name in names(kind) {
                let alg = SigningAlgorithm::parse(name).unwrap();
                let message = b"signed by the gateway";
                let Some(hash) = alg.hash else {
                    let sig = key.sign(alg, Input::Message(message)).unwrap();
                    assert!(verify(&public, kind, alg, Input::Message(message), &sig).unwrap());
                    assert!(!verify(&public, kind, alg, Input::Message(b"other"), &sig).unwrap());
                    let digest = Hash::Sha512.digest(message);
                    assert_eq!(
                        key.sign(alg, Input::Digest(&digest)),
                        Err(SigningError::NotForThisKey),
                        "{name}"
                    );
                    assert_eq!(
                        verify(&public, kind, alg, Input::Digest(&digest), &sig),
                        Err(SigningError::NotForThisKey),
                        "{name}"
                    );
                    if let AsymmetricKind::MlDsa(level) = kind {
                        assert_eq!(sig.len(), level.signature_len(), "{name}");
                    } else {
                        assert_eq!(sig.len(), 64, "{name}");
                    }
                    continue;
                };
                let digest = hash.digest(message);
                let mut inputs = vec![Input::Message(message)];
                if alg.padding != Padding::Pss {
                    inputs.push(Input::Digest(&digest));
                }
                for input in inputs {
                    let sig = key.sign(alg, input).unwrap();
                    assert!(verify(&public, kind, alg, input, &sig).unwrap(), "{name}");
                    // Made over the digest, checked over the message, and back.
                    assert!(
                        verify(&public, kind, alg, Input::Message(message), &sig).unwrap(),
                        "{name}"
                    );
                    if alg.padding != Padding::Pss {
                        assert!(
                            verify(&public, kind, alg, Input::Digest(&digest), &sig).unwrap(),
                            "{name}"
                        );
                    }
                    assert!(!verify(&public, kind, alg, Input::Message(b"other"), &sig).unwrap());
                    let other_hash = SigningAlgorithm {
                        hash: Some(if hash == Hash::Sha256 {
                            Hash::Sha512
                        } else {
                            Hash::Sha256
                        }),
                        ..alg
                    };
                    assert!(
                        !verify(&public, kind, other_hash, Input::Message(message), &sig).unwrap(),
                        "{name} verified as {other_hash:?}"
                    );
                }
            }
        }
    }

    /// An ML-DSA signature checks only under its own parameter set, and Infisical's name
    /// of one set does not fit a key of another.
    #[test]
    fn ml_dsa_parameter_sets_do_not_mix() {
        let k44 = AsymmetricKind::MlDsa(MlDsaLevel::MlDsa44);
        let k65 = AsymmetricKind::MlDsa(MlDsaLevel::MlDsa65);
        let key = SigningKey::from_pkcs8(k44, &generate(k44).unwrap()).unwrap();
        let public = key.public_key_der().unwrap();
        let any = SigningAlgorithm::parse(ML_DSA_SHAKE_256).unwrap();
        let sig = key.sign(any, Input::Message(b"m")).unwrap();
        let named_65 = SigningAlgorithm::parse("ML_DSA_65").unwrap();
        assert!(!named_65.fits(k44) && named_65.fits(k65) && any.fits(k65));
        assert_eq!(
            key.sign(named_65, Input::Message(b"m")),
            Err(SigningError::NotForThisKey)
        );
        // The public key of a 44 key is not one of a 65 key.
        assert!(!verify(&public, k65, any, Input::Message(b"m"), &sig).unwrap());
        assert!(verify(&public, k44, any, Input::Message(b"m"), &sig).unwrap());
        assert_eq!(
            verify(
                &public,
                AsymmetricKind::Ed25519,
                any,
                Input::Message(b"m"),
                &sig
            ),
            Err(SigningError::NotForThisKey)
        );
    }

    #[test]
    fn ed25519_raw_public_key_is_the_last_32_bytes_of_its_spki() {
        let kind = AsymmetricKind::Ed25519;
        let kp = Ed25519KeyPair::from_pkcs8(&generate(kind).unwrap()).unwrap();
        let spki = kp.public_key().as_der().unwrap();
        assert_eq!(
            ed25519_raw_public_key(spki.as_ref()),
            Some(kp.public_key().as_ref())
        );
        let p256 = SigningKey::from_pkcs8(
            AsymmetricKind::EccNistP256,
            &generate(AsymmetricKind::EccNistP256).unwrap(),
        )
        .unwrap();
        assert_eq!(
            ed25519_raw_public_key(&p256.public_key_der().unwrap()),
            None
        );
    }

    #[test]
    fn ecdsa_digest_is_truncated_or_zero_extended_to_the_curve_order() {
        let d512: Vec<u8> = (1..=64).collect();
        let d256: Vec<u8> = (1..=32).collect();
        let e = ecdsa_digest(Curve::P384, &d512).unwrap();
        assert_eq!(e.as_ref(), &d512[..48]);
        let e = ecdsa_digest(Curve::P384, &d256).unwrap();
        assert_eq!(&e.as_ref()[..16], &[0u8; 16]);
        assert_eq!(&e.as_ref()[16..], &d256[..]);
        let e = ecdsa_digest(Curve::P256, &d512).unwrap();
        assert_eq!(e.as_ref(), &d512[..32]);
        let e = ecdsa_digest(Curve::P521, &d512).unwrap();
        assert_eq!(e.as_ref(), &d512[..]);
        let e = ecdsa_digest(Curve::P521, &d256).unwrap();
        assert_eq!(&e.as_ref()[..32], &[0u8; 32]);
        assert_eq!(&e.as_ref()[32..], &d256[..]);
    }

    #[test]
    fn wrong_digest_length_is_refused() {
        let kind = AsymmetricKind::EccNistP384;
        let key = SigningKey::from_pkcs8(kind, &generate(kind).unwrap()).unwrap();
        let alg = SigningAlgorithm::parse("ECDSA_SHA_384").unwrap();
        assert_eq!(
            key.sign(alg, Input::Digest(&[0u8; 32])).err(),
            Some(SigningError::DigestLength {
                expected: 48,
                got: 32
            })
        );
    }
}
