//! HSM-resident secret keys: the creation templates of DESIGN.md section 2 (every
//! capability set explicitly, least privilege), reading attributes back, and judging keys
//! found on the token: the protection every key must have (private, sensitive, not
//! extractable), what a key handed to the gateway now must have besides (not copyable),
//! and the extra capabilities that are only warned about.

use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;

use super::connection::Lease;
use super::error::HsmError;

/// The two kinds of secret key the gateway keeps in the HSM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKeyKind {
    /// AES-256 for wrapping (encrypt/decrypt).
    Aes256,
    /// 32-byte generic secret for HMAC-SHA256 (sign/verify).
    Hmac,
}

/// Whether a key was found on the token or created now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOrigin {
    Found,
    Created,
}

/// How strictly a key found on the token is judged (docs/HSM.md, "Keys made by earlier
/// versions").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyPolicy {
    /// A key handed to the gateway now: adopted as a KMS key, named to
    /// `gen-customer-fragment`, or a new key-encryption key. Besides the protection every
    /// key needs, it must not be copyable (a copy can be made with CKA_PRIVATE false).
    Given,
    /// A key the gateway already relies on: its root keys, the keys of fragments in the
    /// file, the current key-encryption key. Earlier versions made these copyable and
    /// modifiable with the token's default usages; that is warned about, not refused, so
    /// that existing data stays readable.
    InUse,
}

/// Attributes of a key object as the token reports them; `None` = not reported (the
/// token does not know the attribute, or it does not apply to the object's class).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyAttributes {
    pub class: Option<ObjectClass>,
    pub key_type: Option<KeyType>,
    pub value_len: Option<u64>,
    pub encrypt: Option<bool>,
    pub decrypt: Option<bool>,
    pub sign: Option<bool>,
    pub verify: Option<bool>,
    pub wrap: Option<bool>,
    pub unwrap: Option<bool>,
    pub derive: Option<bool>,
    pub sign_recover: Option<bool>,
    pub verify_recover: Option<bool>,
    pub token: Option<bool>,
    pub extractable: Option<bool>,
    pub sensitive: Option<bool>,
    pub private: Option<bool>,
    pub modifiable: Option<bool>,
    pub copyable: Option<bool>,
    pub label: Option<String>,
    /// True if the token handed out CKA_VALUE (it must not, for our keys).
    pub value_readable: bool,
}

/// The capability attributes of a secret key, in the order they are reported.
const SECRET_CAPABILITIES: [&str; 7] = [
    "CKA_ENCRYPT",
    "CKA_DECRYPT",
    "CKA_SIGN",
    "CKA_VERIFY",
    "CKA_WRAP",
    "CKA_UNWRAP",
    "CKA_DERIVE",
];

/// The capability attributes of a private key.
const PRIVATE_CAPABILITIES: [&str; 5] = [
    "CKA_SIGN",
    "CKA_DECRYPT",
    "CKA_UNWRAP",
    "CKA_SIGN_RECOVER",
    "CKA_DERIVE",
];

impl KeyAttributes {
    fn capability(&self, name: &str) -> Option<bool> {
        match name {
            "CKA_ENCRYPT" => self.encrypt,
            "CKA_DECRYPT" => self.decrypt,
            "CKA_SIGN" => self.sign,
            "CKA_VERIFY" => self.verify,
            "CKA_WRAP" => self.wrap,
            "CKA_UNWRAP" => self.unwrap,
            "CKA_DERIVE" => self.derive,
            "CKA_SIGN_RECOVER" => self.sign_recover,
            "CKA_VERIFY_RECOVER" => self.verify_recover,
            _ => None,
        }
    }

    /// What the key can do or allows beyond what the gateway needs of a key of `needs`
    /// (capabilities the token reports true, and CKA_MODIFIABLE / CKA_COPYABLE true).
    pub fn extras(&self, needs: KeyNeeds) -> Vec<&'static str> {
        let (all, wanted): (&[&'static str], &[&str]) = match needs {
            KeyNeeds::Secret(SecretKeyKind::Aes256) => {
                (&SECRET_CAPABILITIES, &["CKA_ENCRYPT", "CKA_DECRYPT"])
            }
            KeyNeeds::Secret(SecretKeyKind::Hmac) => {
                (&SECRET_CAPABILITIES, &["CKA_SIGN", "CKA_VERIFY"])
            }
            KeyNeeds::SigningPrivateKey => (&PRIVATE_CAPABILITIES, &["CKA_SIGN"]),
        };
        let mut out: Vec<&'static str> = all
            .iter()
            .filter(|n| !wanted.contains(n) && self.capability(n) == Some(true))
            .copied()
            .collect();
        if self.modifiable == Some(true) {
            out.push("CKA_MODIFIABLE");
        }
        if self.copyable == Some(true) {
            out.push("CKA_COPYABLE");
        }
        out
    }
}

/// What the gateway uses a key for, to tell needed capabilities from extra ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyNeeds {
    Secret(SecretKeyKind),
    /// The private half of an HSM-resident EC or RSA signing key.
    SigningPrivateKey,
}

/// The protection attributes every object the gateway creates carries: a token object
/// that needs the PIN, cannot be read, exported, changed or copied. (Destroyable stays the
/// token's default, true: the gateway destroys the objects of deleted KMS keys.)
fn protected(label: &str) -> Vec<Attribute> {
    vec![
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Modifiable(false),
        Attribute::Copyable(false),
        Attribute::Label(label.as_bytes().to_vec()),
    ]
}

/// The creation template of a secret key of `kind`: DESIGN.md section 2 with every
/// capability set explicitly (only what the key is for) and CKA_MODIFIABLE,
/// CKA_COPYABLE and CKA_DERIVE false. docs/HSM.md lists the result.
pub(crate) fn template(kind: SecretKeyKind, label: &str) -> (Mechanism<'static>, Vec<Attribute>) {
    let mut attrs = vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::ValueLen(32.into()),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
    ];
    attrs.extend(protected(label));
    let aes = kind == SecretKeyKind::Aes256;
    attrs.extend([
        Attribute::Encrypt(aes),
        Attribute::Decrypt(aes),
        Attribute::Sign(!aes),
        Attribute::Verify(!aes),
        Attribute::Wrap(false),
        Attribute::Unwrap(false),
        Attribute::Derive(false),
    ]);
    let mech = match kind {
        SecretKeyKind::Aes256 => {
            attrs.push(Attribute::KeyType(KeyType::AES));
            Mechanism::AesKeyGen
        }
        SecretKeyKind::Hmac => {
            attrs.push(Attribute::KeyType(KeyType::GENERIC_SECRET));
            Mechanism::GenericSecretKeyGen
        }
    };
    (mech, attrs)
}

/// The private half of an HSM-resident signing key pair: CKA_SIGN only.
pub(crate) fn private_key_template(label: &str, key_type: KeyType) -> Vec<Attribute> {
    let mut attrs = vec![
        Attribute::Class(ObjectClass::PRIVATE_KEY),
        Attribute::KeyType(key_type),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
        Attribute::Decrypt(false),
        Attribute::Unwrap(false),
        Attribute::SignRecover(false),
        Attribute::Derive(false),
    ];
    attrs.extend(protected(label));
    attrs
}

/// The public half of an HSM-resident signing key pair: CKA_VERIFY only. Private too:
/// the gateway reads it only when logged in, and nothing on the token is visible without
/// the PIN.
pub(crate) fn public_key_template(label: &str, key_type: KeyType) -> Vec<Attribute> {
    let mut attrs = vec![
        Attribute::Class(ObjectClass::PUBLIC_KEY),
        Attribute::KeyType(key_type),
        Attribute::Verify(true),
        Attribute::Encrypt(false),
        Attribute::Wrap(false),
        Attribute::VerifyRecover(false),
        Attribute::Derive(false),
    ];
    attrs.extend(protected(label));
    attrs
}

/// Every attribute of a key object that the gateway judges or reports.
pub(crate) fn read_attributes(
    session: &Session,
    handle: ObjectHandle,
) -> Result<KeyAttributes, HsmError> {
    let wanted = [
        AttributeType::Class,
        AttributeType::KeyType,
        AttributeType::ValueLen,
        AttributeType::Encrypt,
        AttributeType::Decrypt,
        AttributeType::Sign,
        AttributeType::Verify,
        AttributeType::Wrap,
        AttributeType::Unwrap,
        AttributeType::Derive,
        AttributeType::SignRecover,
        AttributeType::VerifyRecover,
        AttributeType::Token,
        AttributeType::Extractable,
        AttributeType::Sensitive,
        AttributeType::Private,
        AttributeType::Modifiable,
        AttributeType::Copyable,
        AttributeType::Label,
        AttributeType::Value,
    ];
    read(session, handle, &wanted)
}

/// Only the protection attributes: what is checked when a key is first looked up for use.
pub(crate) fn read_protection(
    session: &Session,
    handle: ObjectHandle,
) -> Result<KeyAttributes, HsmError> {
    read(
        session,
        handle,
        &[
            AttributeType::Private,
            AttributeType::Sensitive,
            AttributeType::Extractable,
        ],
    )
}

fn read(
    session: &Session,
    handle: ObjectHandle,
    wanted: &[AttributeType],
) -> Result<KeyAttributes, HsmError> {
    let mut out = KeyAttributes::default();
    // cryptoki leaves out attributes the token does not report (CKA_VALUE of a
    // sensitive key among them, CKA_SIGN_RECOVER of a secret key) instead of failing.
    for attr in session.get_attributes(handle, wanted)? {
        match attr {
            Attribute::Class(c) => out.class = Some(c),
            Attribute::KeyType(t) => out.key_type = Some(t),
            Attribute::ValueLen(l) => out.value_len = Some(u64::from(l)),
            Attribute::Encrypt(b) => out.encrypt = Some(b),
            Attribute::Decrypt(b) => out.decrypt = Some(b),
            Attribute::Sign(b) => out.sign = Some(b),
            Attribute::Verify(b) => out.verify = Some(b),
            Attribute::Wrap(b) => out.wrap = Some(b),
            Attribute::Unwrap(b) => out.unwrap = Some(b),
            Attribute::Derive(b) => out.derive = Some(b),
            Attribute::SignRecover(b) => out.sign_recover = Some(b),
            Attribute::VerifyRecover(b) => out.verify_recover = Some(b),
            Attribute::Token(b) => out.token = Some(b),
            Attribute::Extractable(b) => out.extractable = Some(b),
            Attribute::Sensitive(b) => out.sensitive = Some(b),
            Attribute::Private(b) => out.private = Some(b),
            Attribute::Modifiable(b) => out.modifiable = Some(b),
            Attribute::Copyable(b) => out.copyable = Some(b),
            Attribute::Label(l) => out.label = Some(String::from_utf8_lossy(&l).into_owned()),
            Attribute::Value(v) => out.value_readable = !v.is_empty(),
            _ => {}
        }
    }
    Ok(out)
}

/// The protection every secret or private key the gateway uses must have, whoever made
/// it and whenever it is found: CKA_EXTRACTABLE false (unless the operator opted in),
/// CKA_PRIVATE true (else anyone on the host can use it without the PIN), CKA_SENSITIVE
/// true, and its value not readable. Names the first attribute that is wrong.
pub(crate) fn check_protection(
    label: &str,
    a: &KeyAttributes,
    allow_extractable: bool,
) -> Result<(), HsmError> {
    let insecure = |problem: &str| HsmError::KeyInsecure {
        label: label.to_owned(),
        problem: problem.to_owned(),
    };
    if a.extractable != Some(false) {
        if !allow_extractable {
            return Err(HsmError::ExtractableKeyRefused {
                label: label.to_owned(),
            });
        }
        tracing::warn!(
            label,
            "HSM key is extractable; accepted because danger_allow_extractable_keys is set"
        );
    }
    match a.private {
        Some(true) => {}
        Some(false) => return Err(insecure(
            "CKA_PRIVATE is false, so anyone on the host can use it without logging in; it must be true",
        )),
        None => return Err(insecure("CKA_PRIVATE is missing; it must be true")),
    }
    match a.sensitive {
        Some(true) => {}
        Some(false) => {
            return Err(insecure(
                "CKA_SENSITIVE is false, so its value can be read off the token; it must be true",
            ))
        }
        None => return Err(insecure("CKA_SENSITIVE is missing; it must be true")),
    }
    if a.value_readable {
        return Err(insecure(
            "the token hands out its value (CKA_VALUE); it must be sensitive and not extractable",
        ));
    }
    Ok(())
}

/// What `policy` asks beyond [`check_protection`], and the warnings about extra
/// capabilities: a key given now must not be copyable; a key in use that is copyable,
/// modifiable or can do more than the gateway needs is logged as a warning.
pub(crate) fn check_policy(
    label: &str,
    needs: KeyNeeds,
    a: &KeyAttributes,
    policy: KeyPolicy,
) -> Result<(), HsmError> {
    if policy == KeyPolicy::Given {
        match a.copyable {
            Some(false) => {}
            Some(true) => {
                return Err(HsmError::KeyInsecure {
                    label: label.to_owned(),
                    problem: "CKA_COPYABLE is true, so any PIN holder can copy it (and the copy can be made with CKA_PRIVATE false); it must be false".into(),
                })
            }
            None => tracing::warn!(
                label,
                "the token does not report CKA_COPYABLE (a module older than PKCS#11 2.40): the key is accepted, but the token may let PIN holders copy it"
            ),
        }
    }
    let extras = a.extras(needs);
    if !extras.is_empty() {
        tracing::warn!(
            label,
            extra = %extras.join(", "),
            "HSM key allows more than the gateway needs; re-create it with the attributes of docs/HSM.md"
        );
    }
    Ok(())
}

/// Checks the attributes a secret key of `kind` must have; names the first one that is wrong.
pub(crate) fn validate(
    label: &str,
    kind: SecretKeyKind,
    a: &KeyAttributes,
    allow_extractable: bool,
    policy: KeyPolicy,
) -> Result<(), HsmError> {
    let problem = |p: String| HsmError::KeyAttributes {
        label: label.to_owned(),
        problem: p,
    };
    let flag = |name: &str, v: Option<bool>| -> Result<(), HsmError> {
        match v {
            Some(true) => Ok(()),
            Some(false) => Err(problem(format!("{name} is false, it must be true"))),
            None => Err(problem(format!("{name} is missing"))),
        }
    };
    if a.class != Some(ObjectClass::SECRET_KEY) {
        return Err(problem(format!(
            "CKA_CLASS is {:?}, it must be CKO_SECRET_KEY",
            a.class
        )));
    }
    let (key_type, usage) = match kind {
        SecretKeyKind::Aes256 => (
            KeyType::AES,
            [("CKA_ENCRYPT", a.encrypt), ("CKA_DECRYPT", a.decrypt)],
        ),
        SecretKeyKind::Hmac => (
            KeyType::GENERIC_SECRET,
            [("CKA_SIGN", a.sign), ("CKA_VERIFY", a.verify)],
        ),
    };
    if a.key_type != Some(key_type) {
        return Err(problem(format!(
            "CKA_KEY_TYPE is {:?}, it must be {key_type}",
            a.key_type
        )));
    }
    match a.value_len {
        Some(32) => {}
        Some(n) => return Err(problem(format!("CKA_VALUE_LEN is {n}, it must be 32"))),
        None => return Err(problem("CKA_VALUE_LEN is missing".into())),
    }
    for (name, v) in usage {
        flag(name, v)?;
    }
    flag("CKA_TOKEN", a.token)?;
    check_protection(label, a, allow_extractable)?;
    check_policy(label, KeyNeeds::Secret(kind), a, policy)
}

/// Finds the secret key `label` and judges it by `policy`, or creates it with
/// [`template`].
pub(crate) fn ensure(
    s: &Lease<'_>,
    label: &str,
    kind: SecretKeyKind,
    allow_extractable: bool,
    policy: KeyPolicy,
) -> Result<super::KeyOrigin, HsmError> {
    if let Some(handle) = s.find_secret_key(label)? {
        let attrs = read_attributes(&s.session, handle)?;
        validate(label, kind, &attrs, allow_extractable, policy)?;
        return Ok(KeyOrigin::Found);
    }
    let (mech, attrs) = template(kind, label);
    s.session.generate_key(&mech, &attrs)?;
    s.forget_handle(label);
    tracing::info!(label, ?kind, "created HSM key");
    Ok(KeyOrigin::Created)
}
