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
    Rsa2048,
    Rsa3072,
    Rsa4096,
    EccNistP256,
    EccNistP384,
}

/// The NIST curves of the ECDSA kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    P256,
    P384,
}

impl Curve {
    /// The length of the curve order in bytes: ECDSA uses that many leftmost bytes of a digest.
    fn order_len(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
        }
    }

    /// aws-lc-rs' signing algorithm, whose digest is as long as the curve order.
    fn signing(self) -> &'static signature::EcdsaSigningAlgorithm {
        match self {
            Curve::P256 => &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            Curve::P384 => &signature::ECDSA_P384_SHA384_ASN1_SIGNING,
        }
    }

    /// The digest algorithm aws-lc-rs' `sign_digest` wants for this curve's keys.
    fn digest(self) -> &'static digest::Algorithm {
        match self {
            Curve::P256 => &digest::SHA256,
            Curve::P384 => &digest::SHA384,
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
            AsymmetricKind::EccNistP256 | AsymmetricKind::EccNistP384 => None,
        }
    }

    fn curve(self) -> Option<Curve> {
        match self {
            AsymmetricKind::EccNistP256 => Some(Curve::P256),
            AsymmetricKind::EccNistP384 => Some(Curve::P384),
            _ => None,
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
        match self.padding {
            Padding::Ecdsa => kind.curve().is_some(),
            Padding::Pss | Padding::Pkcs1v15 => kind.rsa_bits().is_some(),
        }
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

    /// aws-lc-rs' verifier for this algorithm on a key of `kind` (RSA: any size it accepts,
    /// 2048 to 8192 bits; ECDSA: the key's curve).
    fn verification(&self, kind: AsymmetricKind) -> &'static dyn VerificationAlgorithm {
        if kind.curve() == Some(Curve::P384) {
            match self.hash {
                Hash::Sha256 => return &signature::ECDSA_P384_SHA256_ASN1,
                Hash::Sha384 => return &signature::ECDSA_P384_SHA384_ASN1,
                Hash::Sha512 => return &signature::ECDSA_P384_SHA512_ASN1,
            }
        }
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
    Ecc(EcdsaKeyPair, Curve),
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

/// Generates a new key with aws-lc-rs' own generator; returns PKCS#8 DER.
pub fn generate(kind: AsymmetricKind) -> Result<Zeroizing<Vec<u8>>, SigningError> {
    let der = match kind {
        AsymmetricKind::Rsa2048 => generate_rsa(KeySize::Rsa2048)?,
        AsymmetricKind::Rsa3072 => generate_rsa(KeySize::Rsa3072)?,
        AsymmetricKind::Rsa4096 => generate_rsa(KeySize::Rsa4096)?,
        AsymmetricKind::EccNistP256 => generate_ecdsa(Curve::P256)?,
        AsymmetricKind::EccNistP384 => generate_ecdsa(Curve::P384)?,
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
    let doc = match (kind.rsa_bits(), kind.curve()) {
        (Some(bits), _) => rsa::RsaPrivateKey::new(rng, bits)
            .map_err(|_| SigningError::Failed)?
            .to_pkcs8_der(),
        (None, Some(Curve::P256)) => p256::SecretKey::random(rng).to_pkcs8_der(),
        (None, Some(Curve::P384)) => p384::SecretKey::random(rng).to_pkcs8_der(),
        (None, None) => return Err(SigningError::Failed),
    }
    .map_err(|_| SigningError::Failed)?;
    Ok(Zeroizing::new(doc.as_bytes().to_vec()))
}

impl SigningKey {
    /// Loads a PKCS#8 private key of `kind`; a key of another type, size or curve is
    /// `BadKey` (an RSA-2048 key is not an RSA_4096 key).
    pub fn from_pkcs8(kind: AsymmetricKind, der: &[u8]) -> Result<Self, SigningError> {
        match (kind.rsa_bits(), kind.curve()) {
            (Some(bits), _) => {
                let kp = RsaKeyPair::from_pkcs8(der).map_err(|_| SigningError::BadKey)?;
                if rsa_modulus_bits(&kp) != bits {
                    return Err(SigningError::BadKey);
                }
                Ok(SigningKey::Rsa(kp))
            }
            // aws-lc-rs refuses a key of another curve than the algorithm's.
            (None, Some(curve)) => EcdsaKeyPair::from_pkcs8(curve.signing(), der)
                .map(|kp| SigningKey::Ecc(kp, curve))
                .map_err(|_| SigningError::BadKey),
            (None, None) => Err(SigningError::BadKey),
        }
    }

    /// DER SubjectPublicKeyInfo of the key.
    pub fn public_key_der(&self) -> Result<Vec<u8>, SigningError> {
        let der = match self {
            SigningKey::Rsa(kp) => kp.public_key().as_der().map(|d| d.as_ref().to_vec()),
            SigningKey::Ecc(kp, _) => kp.public_key().as_der().map(|d| d.as_ref().to_vec()),
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
            SigningKey::Ecc(kp, curve) => {
                let full = input.digest(alg.hash)?;
                let e = ecdsa_digest(*curve, full.as_ref())?;
                let sig = kp.sign_digest(&e).map_err(|_| SigningError::Failed)?;
                Ok(sig.as_ref().to_vec())
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

/// The digest as aws-lc-rs' `sign_digest` takes it for a key on `curve`: exactly as long
/// as the curve order, under the curve's own hash. ECDSA uses the leftmost bits of a
/// longer digest (FIPS 186-5, 6.4.1), so SHA-384/512 on P-256 and SHA-512 on P-384 are
/// truncated; a shorter digest (SHA-256 on P-384) is its own integer, which leading zero
/// bytes leave unchanged.
fn ecdsa_digest(curve: Curve, full: &[u8]) -> Result<Digest, SigningError> {
    let n = curve.order_len();
    let e: Vec<u8> = if full.len() >= n {
        full[..n].to_vec()
    } else {
        let mut padded = vec![0u8; n - full.len()];
        padded.extend_from_slice(full);
        padded
    };
    Digest::import_less_safe(&e, curve.digest()).map_err(|_| SigningError::Failed)
}

/// Verifies a signature with the DER SubjectPublicKeyInfo of a key of `kind`.
/// `Ok(false)` for a wrong signature.
pub fn verify(
    public_key_der: &[u8],
    kind: AsymmetricKind,
    alg: SigningAlgorithm,
    input: Input<'_>,
    sig: &[u8],
) -> Result<bool, SigningError> {
    let verifier = alg.verification(kind);
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

#[cfg(test)]
mod tests {
    use super::*;

    const ALL_KINDS: [AsymmetricKind; 5] = [
        AsymmetricKind::Rsa2048,
        AsymmetricKind::Rsa3072,
        AsymmetricKind::Rsa4096,
        AsymmetricKind::EccNistP256,
        AsymmetricKind::EccNistP384,
    ];

    fn names(kind: AsymmetricKind) -> &'static [&'static str] {
        if kind.curve().is_some() {
            &ECC_SIGNING_ALGORITHMS
        } else {
            &RSA_SIGNING_ALGORITHMS
        }
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
        ] {
            let der = generate_with_rng(kind, &mut rand_core::OsRng).unwrap();
            assert!(SigningKey::from_pkcs8(kind, &der).is_ok(), "{kind:?}");
        }
    }

    #[test]
    fn fits_pairs_rsa_paddings_with_rsa_kinds_and_ecdsa_with_curves() {
        for kind in ALL_KINDS {
            for name in RSA_SIGNING_ALGORITHMS.iter().chain(&ECC_SIGNING_ALGORITHMS) {
                let alg = SigningAlgorithm::parse(name).unwrap();
                assert_eq!(
                    alg.fits(kind),
                    names(kind).contains(name),
                    "{name} {kind:?}"
                );
            }
        }
    }

    /// Every new kind and algorithm, over the message and over its digest: the signature
    /// verifies, and not over another message or with another hash.
    #[test]
    fn every_kind_signs_and_verifies_with_each_of_its_algorithms() {
        for kind in [
            AsymmetricKind::Rsa2048,
            AsymmetricKind::Rsa3072,
            AsymmetricKind::EccNistP384,
        ] {
            let key = SigningKey::from_pkcs8(kind, &generate(kind).unwrap()).unwrap();
            let public = key.public_key_der().unwrap();
            for name in names(kind) {
                let alg = SigningAlgorithm::parse(name).unwrap();
                let message = b"signed by the gateway";
                let digest = alg.hash.digest(message);
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
                        hash: if alg.hash == Hash::Sha256 {
                            Hash::Sha512
                        } else {
                            Hash::Sha256
                        },
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
