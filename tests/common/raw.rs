//! A PKCS#11 session of the test's own, through cryptoki directly (not the gateway's
//! `hsm` module), to read back and poke at what the gateway left on a token, and the
//! attributes docs/HSM.md promises for each kind of object.

use std::collections::HashMap;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use secrecy::SecretString;

use super::Token;

/// A logged-in session of the test's own on the token, independent of the gateway's code.
pub struct Raw {
    ctx: Pkcs11,
    session: Option<Session>,
}

impl Raw {
    /// Call while no `Hsm` of this process is connected (the library is initialised here).
    pub fn open(token: &Token) -> Self {
        let ctx = Pkcs11::new(token.lib()).expect("load module");
        ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
            .expect("init");
        let slot = Slot::try_from(token.slot()).expect("slot");
        let session = ctx.open_rw_session(slot).expect("session");
        session
            .login(UserType::User, Some(&SecretString::from(token.pin())))
            .expect("login");
        Raw {
            ctx,
            session: Some(session),
        }
    }

    pub fn s(&self) -> &Session {
        self.session.as_ref().expect("open")
    }

    pub fn find(&self, label: &str, class: ObjectClass) -> Vec<ObjectHandle> {
        self.s()
            .find_objects(&[
                Attribute::Class(class),
                Attribute::Label(label.as_bytes().to_vec()),
            ])
            .expect("find")
    }

    pub fn one(&self, label: &str, class: ObjectClass) -> ObjectHandle {
        let found = self.find(label, class);
        assert_eq!(found.len(), 1, "{label} ({class}): {found:?}");
        found[0]
    }

    /// The boolean attributes of `h` the token reports, by type.
    pub fn flags(&self, h: ObjectHandle) -> HashMap<AttributeType, bool> {
        let wanted = [
            AttributeType::Token,
            AttributeType::Private,
            AttributeType::Sensitive,
            AttributeType::Extractable,
            AttributeType::AlwaysSensitive,
            AttributeType::NeverExtractable,
            AttributeType::Modifiable,
            AttributeType::Copyable,
            AttributeType::Encrypt,
            AttributeType::Decrypt,
            AttributeType::Sign,
            AttributeType::Verify,
            AttributeType::Wrap,
            AttributeType::Unwrap,
            AttributeType::Derive,
            AttributeType::SignRecover,
            AttributeType::VerifyRecover,
        ];
        let mut out = HashMap::new();
        for a in self.s().get_attributes(h, &wanted).expect("get attributes") {
            let (t, v) = match a {
                Attribute::Token(v) => (AttributeType::Token, v),
                Attribute::Private(v) => (AttributeType::Private, v),
                Attribute::Sensitive(v) => (AttributeType::Sensitive, v),
                Attribute::Extractable(v) => (AttributeType::Extractable, v),
                Attribute::AlwaysSensitive(v) => (AttributeType::AlwaysSensitive, v),
                Attribute::NeverExtractable(v) => (AttributeType::NeverExtractable, v),
                Attribute::Modifiable(v) => (AttributeType::Modifiable, v),
                Attribute::Copyable(v) => (AttributeType::Copyable, v),
                Attribute::Encrypt(v) => (AttributeType::Encrypt, v),
                Attribute::Decrypt(v) => (AttributeType::Decrypt, v),
                Attribute::Sign(v) => (AttributeType::Sign, v),
                Attribute::Verify(v) => (AttributeType::Verify, v),
                Attribute::Wrap(v) => (AttributeType::Wrap, v),
                Attribute::Unwrap(v) => (AttributeType::Unwrap, v),
                Attribute::Derive(v) => (AttributeType::Derive, v),
                Attribute::SignRecover(v) => (AttributeType::SignRecover, v),
                Attribute::VerifyRecover(v) => (AttributeType::VerifyRecover, v),
                _ => continue,
            };
            out.insert(t, v);
        }
        out
    }

    pub fn key_type(&self, h: ObjectHandle) -> Option<KeyType> {
        self.s()
            .get_attributes(h, &[AttributeType::KeyType])
            .unwrap()
            .into_iter()
            .find_map(|a| match a {
                Attribute::KeyType(t) => Some(t),
                _ => None,
            })
    }

    /// CKA_VALUE_LEN, and whether CKA_VALUE came back (it must not).
    pub fn value(&self, h: ObjectHandle) -> (Option<u64>, bool) {
        let mut len = None;
        let mut readable = false;
        for a in self
            .s()
            .get_attributes(h, &[AttributeType::ValueLen, AttributeType::Value])
            .unwrap()
        {
            match a {
                Attribute::ValueLen(l) => len = Some(u64::from(l)),
                Attribute::Value(v) => readable = !v.is_empty(),
                _ => {}
            }
        }
        (len, readable)
    }

    /// Generates an EC P-256 pair for a customer, with `private_extra` on the private key.
    pub fn customer_ec_pair(&self, label: &str, private_extra: &[Attribute]) {
        let public = [
            Attribute::Token(true),
            Attribute::Verify(true),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::EcParams(vec![
                0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
            ]),
        ];
        let mut private = vec![
            Attribute::Token(true),
            Attribute::Sign(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Label(label.as_bytes().to_vec()),
        ];
        private.extend_from_slice(private_extra);
        self.s()
            .generate_key_pair(&Mechanism::EccKeyPairGen, &public, &private)
            .expect("generate EC pair");
    }

    pub fn close(mut self) {
        drop(self.session.take());
        self.ctx.finalize().expect("finalize");
    }
}

/// What every object the gateway makes must carry: a token object that needs the PIN and
/// can be neither changed nor copied.
pub const PROTECTED: [(AttributeType, bool); 4] = [
    (AttributeType::Token, true),
    (AttributeType::Private, true),
    (AttributeType::Modifiable, false),
    (AttributeType::Copyable, false),
];

/// ... and for secret and private keys: never readable, never exportable.
pub const SECRET: [(AttributeType, bool); 4] = [
    (AttributeType::Sensitive, true),
    (AttributeType::Extractable, false),
    (AttributeType::AlwaysSensitive, true),
    (AttributeType::NeverExtractable, true),
];

pub const AES_USAGE: [(AttributeType, bool); 7] = [
    (AttributeType::Encrypt, true),
    (AttributeType::Decrypt, true),
    (AttributeType::Sign, false),
    (AttributeType::Verify, false),
    (AttributeType::Wrap, false),
    (AttributeType::Unwrap, false),
    (AttributeType::Derive, false),
];

pub const HMAC_USAGE: [(AttributeType, bool); 7] = [
    (AttributeType::Encrypt, false),
    (AttributeType::Decrypt, false),
    (AttributeType::Sign, true),
    (AttributeType::Verify, true),
    (AttributeType::Wrap, false),
    (AttributeType::Unwrap, false),
    (AttributeType::Derive, false),
];

pub const PRIVATE_USAGE: [(AttributeType, bool); 5] = [
    (AttributeType::Sign, true),
    (AttributeType::Decrypt, false),
    (AttributeType::Unwrap, false),
    (AttributeType::SignRecover, false),
    (AttributeType::Derive, false),
];

pub const PUBLIC_USAGE: [(AttributeType, bool); 5] = [
    (AttributeType::Verify, true),
    (AttributeType::Encrypt, false),
    (AttributeType::Wrap, false),
    (AttributeType::VerifyRecover, false),
    (AttributeType::Derive, false),
];

pub fn assert_flags(
    what: &str,
    got: &HashMap<AttributeType, bool>,
    want: &[(AttributeType, bool)],
) {
    for (t, v) in want {
        assert_eq!(
            got.get(t),
            Some(v),
            "{what}: {t} should be {v}; the token reports {got:?}"
        );
    }
}

pub fn assert_secret_key(
    raw: &Raw,
    label: &str,
    key_type: KeyType,
    usage: &[(AttributeType, bool)],
) {
    let h = raw.one(label, ObjectClass::SECRET_KEY);
    assert_eq!(raw.key_type(h), Some(key_type), "{label}");
    assert_eq!(
        raw.value(h),
        (Some(32), false),
        "{label}: 32 bytes, unreadable"
    );
    let flags = raw.flags(h);
    assert_flags(label, &flags, &PROTECTED);
    assert_flags(label, &flags, &SECRET);
    assert_flags(label, &flags, usage);
}

pub fn assert_key_pair(raw: &Raw, label: &str, key_type: KeyType) {
    let private = raw.one(label, ObjectClass::PRIVATE_KEY);
    assert_eq!(raw.key_type(private), Some(key_type), "{label}");
    let flags = raw.flags(private);
    let what = format!("{label} (private key)");
    assert_flags(&what, &flags, &PROTECTED);
    assert_flags(&what, &flags, &SECRET);
    assert_flags(&what, &flags, &PRIVATE_USAGE);
    let public = raw.one(label, ObjectClass::PUBLIC_KEY);
    let flags = raw.flags(public);
    let what = format!("{label} (public key)");
    assert_flags(&what, &flags, &PROTECTED);
    assert_flags(&what, &flags, &PUBLIC_USAGE);
}
