//! HSM-resident secret keys: the creation templates of DESIGN.md section 2, reading
//! attributes back, and validating keys the customer brought.

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

/// Attributes of a secret key as the token reports them; `None` = not reported.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyAttributes {
    pub class: Option<ObjectClass>,
    pub key_type: Option<KeyType>,
    pub value_len: Option<u64>,
    pub encrypt: Option<bool>,
    pub decrypt: Option<bool>,
    pub sign: Option<bool>,
    pub verify: Option<bool>,
    pub token: Option<bool>,
    pub extractable: Option<bool>,
    pub sensitive: Option<bool>,
    pub private: Option<bool>,
    pub label: Option<String>,
    /// True if the token handed out CKA_VALUE (it must not, for our keys).
    pub value_readable: bool,
}

/// The exact creation template of DESIGN.md section 2.
pub(crate) fn template(kind: SecretKeyKind, label: &str) -> (Mechanism<'static>, Vec<Attribute>) {
    let mut attrs = vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::ValueLen(32.into()),
        Attribute::Token(true),
        Attribute::Extractable(false),
        Attribute::Sensitive(true),
        Attribute::Private(true),
        Attribute::Label(label.as_bytes().to_vec()),
    ];
    let mech = match kind {
        SecretKeyKind::Aes256 => {
            attrs.extend([
                Attribute::KeyType(KeyType::AES),
                Attribute::Encrypt(true),
                Attribute::Decrypt(true),
            ]);
            Mechanism::AesKeyGen
        }
        SecretKeyKind::Hmac => {
            attrs.extend([
                Attribute::KeyType(KeyType::GENERIC_SECRET),
                Attribute::Sign(true),
                Attribute::Verify(true),
            ]);
            Mechanism::GenericSecretKeyGen
        }
    };
    (mech, attrs)
}

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
        AttributeType::Token,
        AttributeType::Extractable,
        AttributeType::Sensitive,
        AttributeType::Private,
        AttributeType::Label,
        AttributeType::Value,
    ];
    let mut out = KeyAttributes::default();
    // cryptoki leaves out attributes the token does not report (CKA_VALUE of a
    // sensitive key among them) instead of failing.
    for attr in session.get_attributes(handle, &wanted)? {
        match attr {
            Attribute::Class(c) => out.class = Some(c),
            Attribute::KeyType(t) => out.key_type = Some(t),
            Attribute::ValueLen(l) => out.value_len = Some(u64::from(l)),
            Attribute::Encrypt(b) => out.encrypt = Some(b),
            Attribute::Decrypt(b) => out.decrypt = Some(b),
            Attribute::Sign(b) => out.sign = Some(b),
            Attribute::Verify(b) => out.verify = Some(b),
            Attribute::Token(b) => out.token = Some(b),
            Attribute::Extractable(b) => out.extractable = Some(b),
            Attribute::Sensitive(b) => out.sensitive = Some(b),
            Attribute::Private(b) => out.private = Some(b),
            Attribute::Label(l) => out.label = Some(String::from_utf8_lossy(&l).into_owned()),
            Attribute::Value(v) => out.value_readable = !v.is_empty(),
            _ => {}
        }
    }
    Ok(out)
}

/// Checks the attributes a key of `kind` must have; names the first one that is wrong.
pub(crate) fn validate(
    label: &str,
    kind: SecretKeyKind,
    a: &KeyAttributes,
    allow_extractable: bool,
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
    Ok(())
}

pub(crate) fn ensure(
    s: &Lease<'_>,
    label: &str,
    kind: SecretKeyKind,
    allow_extractable: bool,
) -> Result<super::KeyOrigin, HsmError> {
    if let Some(handle) = s.find_secret_key(label)? {
        let attrs = read_attributes(&s.session, handle)?;
        validate(label, kind, &attrs, allow_extractable)?;
        return Ok(KeyOrigin::Found);
    }
    let (mech, attrs) = template(kind, label);
    s.session.generate_key(&mech, &attrs)?;
    s.forget_handle(label);
    tracing::info!(label, ?kind, "created HSM key");
    Ok(KeyOrigin::Created)
}
