//! HSM-resident KMS keys (protection `hsm`): AES-256, EC P-256 and RSA-4096 keys made
//! inside the token as non-extractable objects, adopted by label, used in place and
//! destroyed on deletion. Public keys come back as DER SubjectPublicKeyInfo.

use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;

use super::connection::Lease;
use super::keys::{
    self, private_key_template, public_key_template, KeyNeeds, KeyPolicy, SecretKeyKind,
};
use super::{Hsm, HsmError};

/// The key types that can live in the HSM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResidentKind {
    Aes256,
    EcP256,
    Rsa4096,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashKind {
    Sha256,
    Sha384,
    Sha512,
}

/// How an HSM-resident private key signs a digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResidentSignature {
    /// CKM_ECDSA over the digest; the result is DER.
    Ecdsa,
    /// CKM_RSA_PKCS over DigestInfo ‖ digest.
    RsaPkcs1(HashKind),
    /// CKM_RSA_PKCS_PSS, MGF1 with the same hash, salt length = digest length.
    RsaPss(HashKind),
}

/// DER of the P-256 curve OID (CKA_EC_PARAMS).
const P256_PARAMS: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// SubjectPublicKeyInfo header of a P-256 key, before the 65-byte uncompressed point.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// DigestInfo prefixes of PKCS#1 v1.5 (RFC 8017, section 9.2, note 1).
fn digest_info_prefix(hash: HashKind) -> &'static [u8] {
    match hash {
        HashKind::Sha256 => &[
            0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x01, 0x05, 0x00, 0x04, 0x20,
        ],
        HashKind::Sha384 => &[
            0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x02, 0x05, 0x00, 0x04, 0x30,
        ],
        HashKind::Sha512 => &[
            0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x03, 0x05, 0x00, 0x04, 0x40,
        ],
    }
}

fn pss_params(hash: HashKind) -> PkcsPssParams {
    let (hash_alg, mgf, len) = match hash {
        HashKind::Sha256 => (MechanismType::SHA256, PkcsMgfType::MGF1_SHA256, 32u64),
        HashKind::Sha384 => (MechanismType::SHA384, PkcsMgfType::MGF1_SHA384, 48),
        HashKind::Sha512 => (MechanismType::SHA512, PkcsMgfType::MGF1_SHA512, 64),
    };
    PkcsPssParams {
        hash_alg,
        mgf,
        s_len: len.into(),
    }
}

fn unusable(label: &str, problem: impl Into<String>) -> HsmError {
    HsmError::KeyAttributes {
        label: label.to_owned(),
        problem: problem.into(),
    }
}

/// SPKI DER of the public key object `handle`.
fn public_spki(
    session: &Session,
    label: &str,
    kind: ResidentKind,
    handle: ObjectHandle,
) -> Result<Vec<u8>, HsmError> {
    match kind {
        ResidentKind::Aes256 => Err(unusable(label, "an AES key has no public key")),
        ResidentKind::EcP256 => {
            let attrs = session
                .get_attributes(handle, &[AttributeType::EcParams, AttributeType::EcPoint])?;
            let mut params = None;
            let mut point = None;
            for a in attrs {
                match a {
                    Attribute::EcParams(p) => params = Some(p),
                    Attribute::EcPoint(p) => point = Some(p),
                    _ => {}
                }
            }
            if params.as_deref() != Some(&P256_PARAMS[..]) {
                return Err(unusable(label, "CKA_EC_PARAMS is not the P-256 curve"));
            }
            let point = point.ok_or_else(|| unusable(label, "CKA_EC_POINT is missing"))?;
            // CKA_EC_POINT is a DER OCTET STRING around the point (some tokens give it bare).
            let raw = match point.as_slice() {
                [0x04, 0x41, rest @ ..] if rest.len() == 65 => rest.to_vec(),
                p if p.len() == 65 && p[0] == 0x04 => p.to_vec(),
                _ => {
                    return Err(unusable(
                        label,
                        "CKA_EC_POINT is not an uncompressed P-256 point",
                    ))
                }
            };
            Ok([&P256_SPKI_PREFIX[..], &raw].concat())
        }
        ResidentKind::Rsa4096 => {
            use rsa::pkcs8::EncodePublicKey;
            use rsa::traits::PublicKeyParts;
            let attrs = session.get_attributes(
                handle,
                &[AttributeType::Modulus, AttributeType::PublicExponent],
            )?;
            let mut n = None;
            let mut e = None;
            for a in attrs {
                match a {
                    Attribute::Modulus(m) => n = Some(m),
                    Attribute::PublicExponent(x) => e = Some(x),
                    _ => {}
                }
            }
            let n = n.ok_or_else(|| unusable(label, "CKA_MODULUS is missing"))?;
            let e = e.ok_or_else(|| unusable(label, "CKA_PUBLIC_EXPONENT is missing"))?;
            let public = rsa::RsaPublicKey::new(
                rsa::BigUint::from_bytes_be(&n),
                rsa::BigUint::from_bytes_be(&e),
            )
            .map_err(|err| unusable(label, format!("the RSA public key is invalid: {err}")))?;
            if public.n().bits() != 4096 {
                return Err(unusable(
                    label,
                    format!("the RSA modulus has {} bits, not 4096", public.n().bits()),
                ));
            }
            public
                .to_public_key_der()
                .map(|d| d.as_bytes().to_vec())
                .map_err(|err| unusable(label, format!("cannot encode the public key: {err}")))
        }
    }
}

/// Checks a private key someone else made: class, type, CKA_SIGN, CKA_TOKEN, the
/// protection of [`keys::check_protection`] and what `policy` asks (a key given now must
/// not be copyable). Returns what the token reports.
fn validate_private(
    session: &Session,
    label: &str,
    key_type: KeyType,
    handle: ObjectHandle,
    allow_extractable: bool,
    policy: KeyPolicy,
) -> Result<keys::KeyAttributes, HsmError> {
    let a = keys::read_attributes(session, handle)?;
    if a.key_type != Some(key_type) {
        return Err(unusable(
            label,
            format!("CKA_KEY_TYPE is {:?}, it must be {key_type}", a.key_type),
        ));
    }
    if a.sign != Some(true) {
        return Err(unusable(label, "CKA_SIGN is missing or false"));
    }
    if a.token != Some(true) {
        return Err(unusable(label, "CKA_TOKEN is missing or false"));
    }
    keys::check_protection(label, &a, allow_extractable)?;
    keys::check_policy(label, KeyNeeds::SigningPrivateKey, &a, policy)?;
    Ok(a)
}

fn key_type(kind: ResidentKind) -> KeyType {
    match kind {
        ResidentKind::Aes256 => KeyType::AES,
        ResidentKind::EcP256 => KeyType::EC,
        ResidentKind::Rsa4096 => KeyType::RSA,
    }
}

/// The public key of an existing resident key pair, after checking both halves.
fn adopt(
    s: &Lease<'_>,
    label: &str,
    kind: ResidentKind,
    allow_extractable: bool,
) -> Result<Option<Vec<u8>>, HsmError> {
    if kind == ResidentKind::Aes256 {
        let handle = s
            .find_secret_key(label)?
            .ok_or_else(|| HsmError::KeyNotFound {
                label: label.to_owned(),
            })?;
        let attrs = keys::read_attributes(&s.session, handle)?;
        keys::validate(
            label,
            SecretKeyKind::Aes256,
            &attrs,
            allow_extractable,
            KeyPolicy::Given,
        )?;
        return Ok(None);
    }
    let private = s
        .find_object(label, ObjectClass::PRIVATE_KEY)?
        .ok_or_else(|| HsmError::KeyNotFound {
            label: label.to_owned(),
        })?;
    validate_private(
        &s.session,
        label,
        key_type(kind),
        private,
        allow_extractable,
        KeyPolicy::Given,
    )?;
    let public = s
        .find_object(label, ObjectClass::PUBLIC_KEY)?
        .ok_or_else(|| unusable(label, "no public key object with this label"))?;
    public_spki(&s.session, label, kind, public).map(Some)
}

fn generate(s: &Lease<'_>, label: &str, kind: ResidentKind) -> Result<Option<Vec<u8>>, HsmError> {
    match kind {
        ResidentKind::Aes256 => {
            let (mech, attrs) = keys::template(SecretKeyKind::Aes256, label);
            s.session.generate_key(&mech, &attrs)?;
            Ok(None)
        }
        ResidentKind::EcP256 => {
            let mut public = public_key_template(label, KeyType::EC);
            public.push(Attribute::EcParams(P256_PARAMS.to_vec()));
            let (pub_h, _) = s.session.generate_key_pair(
                &Mechanism::EccKeyPairGen,
                &public,
                &private_key_template(label, KeyType::EC),
            )?;
            public_spki(&s.session, label, kind, pub_h).map(Some)
        }
        ResidentKind::Rsa4096 => {
            let mut public = public_key_template(label, KeyType::RSA);
            public.extend([
                Attribute::ModulusBits(4096u64.into()),
                Attribute::PublicExponent(vec![0x01, 0x00, 0x01]),
            ]);
            let (pub_h, _) = s.session.generate_key_pair(
                &Mechanism::RsaPkcsKeyPairGen,
                &public,
                &private_key_template(label, KeyType::RSA),
            )?;
            public_spki(&s.session, label, kind, pub_h).map(Some)
        }
    }
}

impl Hsm {
    /// Makes a new resident key labelled `label`; refuses if one exists. Returns the
    /// public key (SPKI DER) for key pairs.
    pub fn generate_resident(
        &self,
        label: &str,
        kind: ResidentKind,
    ) -> Result<Option<Vec<u8>>, HsmError> {
        self.conn.run(|s| {
            let class = if kind == ResidentKind::Aes256 {
                ObjectClass::SECRET_KEY
            } else {
                ObjectClass::PRIVATE_KEY
            };
            if s.find_object(label, class)?.is_some() {
                return Err(unusable(
                    label,
                    "a key with this label already exists on the token",
                ));
            }
            let out = generate(s, label, kind)?;
            s.forget_handle(label);
            tracing::info!(label, ?kind, "generated HSM-resident key");
            Ok(out)
        })
    }

    /// Adopts an existing key labelled `label` after checking its attributes; with
    /// `create_if_missing`, makes it when absent. Returns the public key for key pairs.
    pub fn adopt_resident(
        &self,
        label: &str,
        kind: ResidentKind,
        create_if_missing: bool,
    ) -> Result<Option<Vec<u8>>, HsmError> {
        let allow = self.config().danger_allow_extractable_keys;
        self.conn.run(|s| match adopt(s, label, kind, allow) {
            Err(HsmError::KeyNotFound { .. }) if create_if_missing => {
                let out = generate(s, label, kind)?;
                s.forget_handle(label);
                tracing::info!(
                    label,
                    ?kind,
                    "generated HSM-resident key (create if missing)"
                );
                Ok(out)
            }
            other => other,
        })
    }

    /// Signs `digest` with the resident private key `label`.
    pub fn sign_resident(
        &self,
        label: &str,
        scheme: ResidentSignature,
        digest: &[u8],
    ) -> Result<Vec<u8>, HsmError> {
        self.conn.run(|s| {
            let key = s.object(label, ObjectClass::PRIVATE_KEY)?;
            match scheme {
                ResidentSignature::Ecdsa => {
                    // P-256 uses the leftmost 256 bits of a longer digest.
                    let e = &digest[..digest.len().min(32)];
                    let raw = s.session.sign(&Mechanism::Ecdsa, key, e)?;
                    let sig = p256::ecdsa::Signature::from_slice(&raw).map_err(|_| {
                        HsmError::Other("CKM_ECDSA returned a malformed signature".into())
                    })?;
                    Ok(sig.to_der().as_bytes().to_vec())
                }
                ResidentSignature::RsaPkcs1(hash) => {
                    let input = [digest_info_prefix(hash), digest].concat();
                    Ok(s.session.sign(&Mechanism::RsaPkcs, key, &input)?)
                }
                ResidentSignature::RsaPss(hash) => {
                    Ok(s.session
                        .sign(&Mechanism::RsaPkcsPss(pss_params(hash)), key, digest)?)
                }
            }
        })
    }

    /// Destroys every object labelled `label` (secret, private and public keys); returns
    /// how many were destroyed.
    pub fn destroy_resident(&self, label: &str) -> Result<usize, HsmError> {
        self.conn.run(|s| {
            let mut n = 0;
            for class in [
                ObjectClass::SECRET_KEY,
                ObjectClass::PRIVATE_KEY,
                ObjectClass::PUBLIC_KEY,
            ] {
                let found = s.session.find_objects(&[
                    Attribute::Class(class),
                    Attribute::Label(label.as_bytes().to_vec()),
                ])?;
                for h in found {
                    s.session.destroy_object(h)?;
                    n += 1;
                }
            }
            s.forget_handle(label);
            Ok(n)
        })
    }

    /// Checks the resident key `label` of a KMS key, a key in use ([`KeyPolicy::InUse`]:
    /// extra usages, `CKA_MODIFIABLE` or `CKA_COPYABLE` are warned about, not refused),
    /// as adoption does; returns what the token reports of the secret or private key (for
    /// `hsm check`). A key pair needs its public half too.
    pub fn check_resident(
        &self,
        label: &str,
        kind: ResidentKind,
    ) -> Result<keys::KeyAttributes, HsmError> {
        let allow = self.config().danger_allow_extractable_keys;
        self.conn.run(|s| {
            let missing = || HsmError::KeyNotFound {
                label: label.to_owned(),
            };
            if kind == ResidentKind::Aes256 {
                let handle = s.find_secret_key(label)?.ok_or_else(missing)?;
                let attrs = keys::read_attributes(&s.session, handle)?;
                keys::validate(
                    label,
                    SecretKeyKind::Aes256,
                    &attrs,
                    allow,
                    KeyPolicy::InUse,
                )?;
                return Ok(attrs);
            }
            let private = s
                .find_object(label, ObjectClass::PRIVATE_KEY)?
                .ok_or_else(missing)?;
            let attrs = validate_private(
                &s.session,
                label,
                key_type(kind),
                private,
                allow,
                KeyPolicy::InUse,
            )?;
            let public = s
                .find_object(label, ObjectClass::PUBLIC_KEY)?
                .ok_or_else(|| unusable(label, "no public key object with this label"))?;
            public_spki(&s.session, label, kind, public)?;
            Ok(attrs)
        })
    }

    /// True if a resident key (secret or private) labelled `label` exists.
    pub fn resident_exists(&self, label: &str) -> Result<bool, HsmError> {
        self.conn.run(|s| {
            Ok(s.find_object(label, ObjectClass::SECRET_KEY)?.is_some()
                || s.find_object(label, ObjectClass::PRIVATE_KEY)?.is_some())
        })
    }
}
