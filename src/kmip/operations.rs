//! The KMIP operations, each a thin adapter over one operation of the core: the request
//! payload read (KMIP 1.4 §4 / KMIP 2.1 §6), the core called as the caller, the
//! response payload written, a core error mapped onto a Result Reason.

use std::sync::Arc;

use uuid::Uuid;
use zeroize::Zeroizing;

use super::attributes::{self as attrs, Attr};
use super::spec::{
    algorithm as alg, curve, format, hash, mode, object_type, op, padding, query, reason,
    revocation, signature, state, tag, usage, validity, VERSIONS,
};
use super::ttlv::{Ttlv, Value};
use crate::core::attributes::Attributes;
use crate::core::crypto::{Mac, Sign};
use crate::core::keys::{CreateKey, KeyDetails};
use crate::core::raw::{RawDecrypt, RawEncrypt};
use crate::core::{Caller, CoreError, ErrorKind, Gateway, KeyId, ProjectId};
use crate::keys::{Algorithm, KeyUsage, Material, Protection, RawMode, DELETION_WINDOW_DAYS};
use crate::store::{Direction, KeyPatch, KeyRecord, ListQuery, OrderBy};

/// A failed batch item: its Result Reason and Result Message.
#[derive(Debug, Clone)]
pub struct Fail {
    pub reason: u32,
    pub message: String,
}

impl Fail {
    pub fn new(reason: u32, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

type Answer = Result<Vec<Ttlv>, Fail>;

/// What every operation of one batch item knows.
pub struct Ctx<'a> {
    pub gateway: &'a Arc<Gateway>,
    pub caller: Caller,
    pub version: (i32, i32),
}

impl Ctx<'_> {
    fn v2(&self) -> bool {
        self.version.0 >= 2
    }

    /// A core error as KMIP says it: the reason by kind (and code where KMIP is finer),
    /// the core's message as the Result Message.
    fn fail(&self, e: CoreError) -> Fail {
        let r = match (e.kind, e.code) {
            (_, "key_not_exportable") if self.version >= (1, 4) => reason::NOT_EXTRACTABLE,
            (_, "key_pending_deletion") if self.v2() => reason::OBJECT_DESTROYED,
            (_, "key_pending_deletion") => reason::ITEM_NOT_FOUND,
            (_, "key_disabled") if self.v2() => reason::WRONG_KEY_LIFECYCLE_STATE,
            (_, "decryption_failed") => reason::CRYPTOGRAPHIC_FAILURE,
            (_, "name_taken") => reason::OBJECT_ALREADY_EXISTS,
            (ErrorKind::NotFound, _) => reason::ITEM_NOT_FOUND,
            (ErrorKind::Unauthenticated, _) => reason::AUTHENTICATION_NOT_SUCCESSFUL,
            (ErrorKind::Forbidden, _) => reason::PERMISSION_DENIED,
            (ErrorKind::Conflict, _) => reason::PERMISSION_DENIED,
            (ErrorKind::Invalid, _) | (ErrorKind::TooLarge, _) => reason::INVALID_FIELD,
            _ => reason::GENERAL_FAILURE,
        };
        Fail::new(r, format!("{}: {}", e.code, e.message))
    }

    fn lifecycle(&self, message: impl Into<String>) -> Fail {
        let r = if self.v2() {
            reason::WRONG_KEY_LIFECYCLE_STATE
        } else {
            reason::PERMISSION_DENIED
        };
        Fail::new(r, message)
    }

    /// The project KMIP objects are made in: the caller's own.
    fn project(&self) -> Result<ProjectId, Fail> {
        match self.caller.principal.as_ref().and_then(|p| p.project) {
            Some(p) => Ok(ProjectId(p)),
            None => Err(Fail::new(
                reason::PERMISSION_DENIED,
                "a KMIP client's identity must belong to one project (an identity of every project has none)",
            )),
        }
    }
}

fn invalid(message: impl Into<String>) -> Fail {
    Fail::new(reason::INVALID_FIELD, message)
}

fn missing(what: &str) -> Fail {
    Fail::new(reason::MISSING_DATA, format!("{what} is missing"))
}

fn now_seconds() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// The public key of a key pair is its own object: the key id with this suffix.
const PUBLIC_SUFFIX: &str = "_pub";

/// A KMIP object: a key (symmetric, or the private key of a pair) or a pair's public key.
#[derive(Debug, Clone, Copy)]
struct Object {
    id: KeyId,
    public: bool,
}

impl Object {
    fn parse(uid: &str) -> Result<Self, Fail> {
        let (text, public) = match uid.strip_suffix(PUBLIC_SUFFIX) {
            Some(t) => (t, true),
            None => (uid, false),
        };
        // Only the form the gateway hands out: one object, one identifier.
        Uuid::parse_str(text)
            .ok()
            .filter(|id| id.to_string() == text)
            .map(|id| Object {
                id: KeyId(id),
                public,
            })
            .ok_or_else(|| Fail::new(reason::ITEM_NOT_FOUND, format!("no object {uid:?}")))
    }

    fn uid(self) -> String {
        uid(self.id.0, self.public)
    }
}

fn uid(id: Uuid, public: bool) -> String {
    if public {
        format!("{id}{PUBLIC_SUFFIX}")
    } else {
        id.to_string()
    }
}

fn text(t: u32, s: impl Into<String>) -> Ttlv {
    Ttlv::new(t, Value::TextString(s.into()))
}

fn enumeration(t: u32, v: u32) -> Ttlv {
    Ttlv::new(t, Value::Enumeration(v))
}

fn uid_item(uid: String) -> Ttlv {
    text(tag::UNIQUE_IDENTIFIER, uid)
}

/// The key a payload names for an operation that no public key does (encrypt, decrypt,
/// MACs): `<id>_pub` is no such object.
fn secret_object_of(payload: &Ttlv) -> Result<Object, Fail> {
    let object = object_of(payload)?;
    if object.public {
        return Err(Fail::new(
            reason::ITEM_NOT_FOUND,
            format!("no key {:?} for this operation", object.uid()),
        ));
    }
    Ok(object)
}

/// The object a payload names by Unique Identifier (required).
fn object_of(payload: &Ttlv) -> Result<Object, Fail> {
    let uid = payload
        .find(tag::UNIQUE_IDENTIFIER)
        .and_then(Ttlv::as_text)
        .ok_or_else(|| missing("the Unique Identifier"))?;
    Object::parse(uid)
}

/// KMIP's algorithm and length of a key type; `None` for the types KMIP 1.x/2.x has no
/// enumeration the gateway maps (Ed25519, ML-DSA), which this front-end does not offer.
fn kmip_algorithm(a: Algorithm) -> Option<(u32, i32)> {
    Some(match a {
        Algorithm::Aes256Gcm => (alg::AES, 256),
        Algorithm::Aes128Gcm => (alg::AES, 128),
        Algorithm::Rsa2048 => (alg::RSA, 2048),
        Algorithm::Rsa3072 => (alg::RSA, 3072),
        Algorithm::Rsa4096 => (alg::RSA, 4096),
        Algorithm::EccNistP256 => (alg::ECDSA, 256),
        Algorithm::EccNistP384 => (alg::ECDSA, 384),
        Algorithm::EccNistP521 => (alg::ECDSA, 521),
        Algorithm::HmacSha256 => (alg::HMAC_SHA256, 256),
        Algorithm::HmacSha384 => (alg::HMAC_SHA384, 384),
        Algorithm::HmacSha512 => (alg::HMAC_SHA512, 512),
        Algorithm::Ed25519 | Algorithm::MlDsa44 | Algorithm::MlDsa65 | Algorithm::MlDsa87 => {
            return None
        }
    })
}

/// `kmip_algorithm`, or the refusal of an object of a type KMIP is not offered for.
fn kmip_type(a: Algorithm) -> Result<(u32, i32), Fail> {
    kmip_algorithm(a).ok_or_else(|| {
        Fail::new(
            reason::FEATURE_NOT_SUPPORTED,
            format!(
                "{} keys are not offered over KMIP; use the native, AWS or Vault API for them",
                a.as_str()
            ),
        )
    })
}

fn is_asymmetric(a: Algorithm) -> bool {
    a.asymmetric().is_some()
}

fn object_type_of(a: Algorithm, public: bool) -> u32 {
    match (is_asymmetric(a), public) {
        (false, _) => object_type::SYMMETRIC_KEY,
        (true, false) => object_type::PRIVATE_KEY,
        (true, true) => object_type::PUBLIC_KEY,
    }
}

/// The KMIP state of a key (the key record's flags and the state KMIP keeps beside it).
fn state_of(key: &KeyRecord, stored: &Attributes) -> u32 {
    let kept = stored.get(STATE_KEY).map(String::as_str);
    if key.deletion_date.is_some() {
        return if kept == Some("compromised") {
            state::DESTROYED_COMPROMISED
        } else {
            state::DESTROYED
        };
    }
    if key.protect_stopped {
        // Revoked: decrypts and verifies, protects nothing new (KMIP 1.4 §3.22).
        return if kept == Some("compromised") {
            state::COMPROMISED
        } else {
            state::DEACTIVATED
        };
    }
    match (key.is_disabled, kept) {
        (false, _) => state::ACTIVE,
        (true, Some("pre-active")) => state::PRE_ACTIVE,
        // Disabled through another front-end: no use at all.
        (true, _) => state::DEACTIVATED,
    }
}

// The key attributes (core::attributes) where KMIP's own attributes are kept.
const STATE_KEY: &str = "kmip.state";
const ACTIVATION_KEY: &str = "kmip.activation_date";
const DEACTIVATION_KEY: &str = "kmip.deactivation_date";
const COMPROMISE_KEY: &str = "kmip.compromise_date";
const COMPROMISE_OCCURRENCE_KEY: &str = "kmip.compromise_occurrence_date";
const USAGE_MASK_KEY: &str = "kmip.usage_mask";
const OBJECT_GROUP_KEY: &str = "kmip.object_group";
const CONTACT_KEY: &str = "kmip.contact_information";
/// Re-key's links: the key that replaced this one, the key this one replaced.
const REPLACEMENT_KEY: &str = "kmip.link.replacement";
const REPLACED_KEY: &str = "kmip.link.replaced";
/// A KMIP Name that is not a key name (a slug) itself.
const NAME_KEY: &str = "kmip.name";

/// The key name of a KMIP Name: the name itself when it is a slug (as the other
/// front-ends name keys), else `kmip-` and 27 hex digits of its SHA-256, so that the same
/// KMIP name always finds the same key (and two keys of a project cannot share a name).
fn key_name(kmip_name: &str) -> String {
    if crate::keys::check_key_name(kmip_name).is_ok() {
        return kmip_name.to_owned();
    }
    hashed_name(kmip_name.as_bytes())
}

/// `kmip-` and 27 hex digits of the SHA-256 of `bytes`: a key name (a slug) of its own.
fn hashed_name(bytes: &[u8]) -> String {
    use sha2::Digest;
    let digest = hex::encode(sha2::Sha256::digest(bytes));
    format!("kmip-{}", &digest[..27])
}

/// The stored attributes that say a key's KMIP Name, when it is not its key name.
fn name_attributes(kmip_name: &str) -> Result<Attributes, Fail> {
    if kmip_name.is_empty() || kmip_name.len() > crate::core::attributes::MAX_VALUE_BYTES {
        return Err(invalid(format!(
            "a Name is 1 to {} bytes",
            crate::core::attributes::MAX_VALUE_BYTES
        )));
    }
    let mut out = Attributes::new();
    if key_name(kmip_name) != kmip_name {
        out.insert(NAME_KEY.into(), kmip_name.to_owned());
    }
    Ok(out)
}

/// The KMIP Name of a key.
fn kmip_name(key: &KeyRecord, stored: &Attributes) -> String {
    stored
        .get(NAME_KEY)
        .cloned()
        .unwrap_or_else(|| key.name.clone())
}

/// The stored attributes KMIP clients may set, add, modify and delete, by tag.
const SETTABLE: &[(u32, &str)] = &[
    (tag::OBJECT_GROUP, OBJECT_GROUP_KEY),
    (tag::CONTACT_INFORMATION, CONTACT_KEY),
    (tag::CRYPTOGRAPHIC_USAGE_MASK, USAGE_MASK_KEY),
];

fn default_usage_mask(usage: KeyUsage, public: bool) -> i32 {
    match usage {
        KeyUsage::EncryptDecrypt => usage::ENCRYPT | usage::DECRYPT,
        KeyUsage::SignVerify if public => usage::VERIFY,
        KeyUsage::SignVerify => usage::SIGN,
        KeyUsage::GenerateVerifyMac => usage::MAC_GENERATE | usage::MAC_VERIFY,
    }
}

fn date(t: u32, seconds: i64) -> Attr {
    attrs::simple(t, Value::DateTime(seconds))
}

fn stored_date(stored: &Attributes, name: &str) -> Option<i64> {
    stored.get(name).and_then(|v| v.parse().ok())
}

/// Every attribute of an object the gateway reports, in the order of KMIP 1.4 §3.
fn all_attributes(v: (i32, i32), d: &KeyDetails, public: bool) -> Vec<Attr> {
    let key = &d.key;
    let stored = &d.attributes;
    let mut out = vec![
        attrs::simple(
            tag::UNIQUE_IDENTIFIER,
            Value::TextString(uid(key.id, public)),
        ),
        attrs::name_attr(&kmip_name(key, stored)),
        attrs::simple(
            tag::OBJECT_TYPE,
            Value::Enumeration(object_type_of(key.algorithm, public)),
        ),
    ];
    // Objects of types without a KMIP algorithm are refused before (`kmip_type`).
    if let Some((algorithm, length)) = kmip_algorithm(key.algorithm) {
        out.push(attrs::simple(
            tag::CRYPTOGRAPHIC_ALGORITHM,
            Value::Enumeration(algorithm),
        ));
        out.push(attrs::simple(
            tag::CRYPTOGRAPHIC_LENGTH,
            Value::Integer(length),
        ));
    }
    let mask = stored
        .get(USAGE_MASK_KEY)
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| default_usage_mask(key.key_usage, public));
    out.push(attrs::simple(
        tag::CRYPTOGRAPHIC_USAGE_MASK,
        Value::Integer(mask),
    ));
    out.push(attrs::simple(
        tag::STATE,
        Value::Enumeration(state_of(key, stored)),
    ));
    if let Some(created) = crate::keys::parse_time(&key.created_at) {
        out.push(date(tag::INITIAL_DATE, created));
    }
    for (t, name) in [
        (tag::ACTIVATION_DATE, ACTIVATION_KEY),
        (tag::DEACTIVATION_DATE, DEACTIVATION_KEY),
        (tag::COMPROMISE_OCCURRENCE_DATE, COMPROMISE_OCCURRENCE_KEY),
        (tag::COMPROMISE_DATE, COMPROMISE_KEY),
    ] {
        if let Some(s) = stored_date(stored, name) {
            out.push(date(t, s));
        }
    }
    if let Some(s) = key
        .deletion_date
        .as_deref()
        .and_then(crate::keys::parse_time)
    {
        out.push(date(tag::DESTROY_DATE, s));
    }
    if let Some(g) = stored.get(OBJECT_GROUP_KEY) {
        out.push(attrs::simple(
            tag::OBJECT_GROUP,
            Value::TextString(g.clone()),
        ));
    }
    let mut links = Vec::new();
    if is_asymmetric(key.algorithm) {
        links.push(if public {
            (super::spec::link::PRIVATE_KEY, uid(key.id, false))
        } else {
            (super::spec::link::PUBLIC_KEY, uid(key.id, true))
        });
    }
    for (link_type, stored_name) in [
        (super::spec::link::REPLACEMENT_OBJECT, REPLACEMENT_KEY),
        (super::spec::link::REPLACED_OBJECT, REPLACED_KEY),
    ] {
        if let Some(other) = stored.get(stored_name) {
            links.push((link_type, other.clone()));
        }
    }
    for (link_type, other) in links {
        out.push(Attr {
            name: "Link".into(),
            value: Ttlv::structure(
                tag::LINK,
                vec![
                    enumeration(tag::LINK_TYPE, link_type),
                    text(tag::LINKED_OBJECT_IDENTIFIER, other),
                ],
            ),
        });
    }
    if let Some(c) = stored.get(CONTACT_KEY) {
        out.push(attrs::simple(
            tag::CONTACT_INFORMATION,
            Value::TextString(c.clone()),
        ));
    }
    if let Some(changed) = crate::keys::parse_time(&key.updated_at) {
        out.push(date(tag::LAST_CHANGE_DATE, changed));
    }
    if v >= (1, 4) {
        let extractable = public || key.exportable;
        out.push(attrs::simple(tag::SENSITIVE, Value::Boolean(!extractable)));
        out.push(attrs::simple(tag::EXTRACTABLE, Value::Boolean(extractable)));
    }
    out
}

/// Client-defined attributes (`x-…`) of a key.
fn custom_attributes(stored: &Attributes) -> Vec<Attr> {
    stored
        .iter()
        .filter_map(|(k, v)| {
            let name = attrs::custom_name(k)?;
            let value = attrs::decode_value(v)?;
            Some(Attr {
                name,
                value: Ttlv::new(tag::CUSTOM_ATTRIBUTE, value.value),
            })
        })
        .collect()
}

/// Runs one batch item's operation.
pub async fn run(ctx: &Ctx<'_>, operation: u32, payload: &Ttlv) -> Answer {
    // A KMIP client is one project's (docs/KMIP.md); an identity of every project is not
    // a KMIP client.
    ctx.project()?;
    match operation {
        op::CREATE => create(ctx, payload).await,
        op::CREATE_KEY_PAIR => create_key_pair(ctx, payload).await,
        op::REGISTER => register(ctx, payload).await,
        op::LOCATE => locate(ctx, payload).await,
        op::GET => get(ctx, payload).await,
        op::GET_ATTRIBUTES => get_attributes(ctx, payload).await,
        op::GET_ATTRIBUTE_LIST => get_attribute_list(ctx, payload).await,
        op::ADD_ATTRIBUTE | op::MODIFY_ATTRIBUTE => set_attribute(ctx, operation, payload).await,
        op::DELETE_ATTRIBUTE => delete_attribute(ctx, payload).await,
        op::ACTIVATE => activate(ctx, payload).await,
        op::REVOKE => revoke(ctx, payload).await,
        op::DESTROY => destroy(ctx, payload).await,
        op::QUERY => Ok(query_answer(payload)),
        op::ENCRYPT => encrypt(ctx, payload).await,
        op::DECRYPT => decrypt(ctx, payload).await,
        op::SIGN => sign(ctx, payload).await,
        op::SIGNATURE_VERIFY => signature_verify(ctx, payload).await,
        op::MAC => mac(ctx, payload).await,
        op::MAC_VERIFY => mac_verify(ctx, payload).await,
        op::REKEY => rekey(ctx, payload).await,
        other => Err(Fail::new(
            reason::OPERATION_NOT_SUPPORTED,
            format!("operation 0x{other:02X} is not supported (Query lists those that are)"),
        )),
    }
}

/// Discover Versions (KMIP 1.1 §4.26): the versions of the request the gateway speaks,
/// in the request's order, or all of them, newest first.
pub fn discover_versions(payload: &Ttlv) -> Vec<Ttlv> {
    let asked: Vec<(i32, i32)> = payload
        .find_all(tag::PROTOCOL_VERSION)
        .filter_map(super::message::read_version)
        .collect();
    let answer: Vec<(i32, i32)> = if asked.is_empty() {
        VERSIONS.to_vec()
    } else {
        asked.into_iter().filter(|v| VERSIONS.contains(v)).collect()
    };
    answer
        .into_iter()
        .map(|(major, minor)| {
            Ttlv::structure(
                tag::PROTOCOL_VERSION,
                vec![
                    Ttlv::new(tag::PROTOCOL_VERSION_MAJOR, Value::Integer(major)),
                    Ttlv::new(tag::PROTOCOL_VERSION_MINOR, Value::Integer(minor)),
                ],
            )
        })
        .collect()
}

/// Query (KMIP 1.4 §4.25): operations, object types and server information.
fn query_answer(payload: &Ttlv) -> Vec<Ttlv> {
    let functions: Vec<u32> = payload
        .find_all(tag::QUERY_FUNCTION)
        .filter_map(Ttlv::as_enum)
        .collect();
    let mut out = Vec::new();
    if functions.contains(&query::OPERATIONS) {
        out.extend(
            op::SUPPORTED
                .iter()
                .map(|&o| enumeration(tag::OPERATION, o)),
        );
    }
    if functions.contains(&query::OBJECTS) {
        out.extend(
            [
                object_type::SYMMETRIC_KEY,
                object_type::PUBLIC_KEY,
                object_type::PRIVATE_KEY,
            ]
            .into_iter()
            .map(|t| enumeration(tag::OBJECT_TYPE, t)),
        );
    }
    if functions.contains(&query::SERVER_INFORMATION) {
        out.push(text(
            tag::VENDOR_IDENTIFICATION,
            format!("KMS Gateway {}", env!("CARGO_PKG_VERSION")),
        ));
    }
    out
}

/// The attributes of a Create / Register request: a 1.x Template-Attribute or a 2.x
/// Attributes structure (either one, both read).
fn request_attributes(payload: &Ttlv, v1: u32, v2: u32) -> Result<Vec<Attr>, Fail> {
    let mut out = Vec::new();
    if let Some(t) = payload.find(v1) {
        out.extend(attrs::read(t, false)?);
    }
    if let Some(t) = payload.find(v2) {
        out.extend(attrs::read(t, true)?);
    }
    Ok(out)
}

/// What a new key is made of, from its attributes.
struct NewObject {
    name: Option<String>,
    algorithm: Option<u32>,
    length: Option<i32>,
    curve: Option<u32>,
    active: bool,
    stored: Attributes,
}

/// KMIP keys are the gateway's exportable keys (Get to identities with `export`); one that
/// must never leave is made through another front-end, never over KMIP.
fn non_extractable() -> Fail {
    Fail::new(
        reason::FEATURE_NOT_SUPPORTED,
        "keys made over KMIP are extractable (to identities with the export permission): a key that never leaves the gateway is created through the native, AWS or Vault API",
    )
}

fn new_object(list: &[Attr]) -> Result<NewObject, Fail> {
    let mut o = NewObject {
        name: None,
        algorithm: None,
        length: None,
        curve: None,
        active: false,
        stored: Attributes::new(),
    };
    let now = now_seconds();
    for a in list {
        let v = &a.value;
        match v.tag {
            tag::NAME => {
                let n = attrs::name_value(v).ok_or_else(|| invalid("a Name has no Name Value"))?;
                o.stored.extend(name_attributes(n)?);
                if o.name.replace(key_name(n)).is_some() {
                    return Err(Fail::new(
                        reason::FEATURE_NOT_SUPPORTED,
                        "a key has one Name in the gateway",
                    ));
                }
            }
            tag::CRYPTOGRAPHIC_ALGORITHM => o.algorithm = v.as_enum(),
            tag::CRYPTOGRAPHIC_LENGTH => o.length = v.as_i32(),
            tag::CRYPTOGRAPHIC_DOMAIN_PARAMETERS => {
                o.curve = v.find(tag::RECOMMENDED_CURVE).and_then(Ttlv::as_enum)
            }
            tag::ACTIVATION_DATE => {
                let at = v.as_datetime().ok_or_else(|| invalid("Activation Date"))?;
                if at > now {
                    return Err(Fail::new(
                        reason::FEATURE_NOT_SUPPORTED,
                        "an Activation Date in the future is not supported; activate the key when it is due",
                    ));
                }
                o.active = true;
                o.stored.insert(ACTIVATION_KEY.into(), at.to_string());
            }
            tag::CUSTOM_ATTRIBUTE => {
                o.stored
                    .insert(attrs::custom_key(&a.name), attrs::encode_value(v));
            }
            tag::SENSITIVE if v.as_bool() == Some(true) => return Err(non_extractable()),
            tag::EXTRACTABLE if v.as_bool() == Some(false) => return Err(non_extractable()),
            // Accepted and not kept: the gateway's own policy and parameters apply.
            tag::OPERATION_POLICY_NAME
            | tag::CRYPTOGRAPHIC_PARAMETERS
            | tag::SENSITIVE
            | tag::EXTRACTABLE
            | tag::OBJECT_TYPE => {}
            t => match SETTABLE.iter().find(|(s, _)| *s == t) {
                Some((_, stored)) => {
                    o.stored.insert((*stored).into(), stored_value(v)?);
                }
                None => {
                    return Err(invalid(format!(
                        "attribute {:?} cannot be set by a client",
                        a.name
                    )))
                }
            },
        }
    }
    if !o.active {
        o.stored.insert(STATE_KEY.into(), "pre-active".into());
    }
    Ok(o)
}

/// A settable attribute's value as stored.
fn stored_value(v: &Ttlv) -> Result<String, Fail> {
    match &v.value {
        Value::TextString(s) => Ok(s.clone()),
        Value::Integer(i) => Ok(i.to_string()),
        _ => Err(invalid("unexpected type for this attribute")),
    }
}

/// The gateway's algorithm for KMIP's algorithm and length (and curve).
fn symmetric_algorithm(algorithm: Option<u32>, length: Option<i32>) -> Result<Algorithm, Fail> {
    match (algorithm, length) {
        (Some(alg::AES), Some(256)) => Ok(Algorithm::Aes256Gcm),
        (Some(alg::AES), Some(128)) => Ok(Algorithm::Aes128Gcm),
        (Some(alg::AES), l) => Err(invalid(format!(
            "AES keys are 128 or 256 bits long, not {l:?}"
        ))),
        (Some(alg::HMAC_SHA256), None | Some(256)) => Ok(Algorithm::HmacSha256),
        (Some(alg::HMAC_SHA384), None | Some(384)) => Ok(Algorithm::HmacSha384),
        (Some(alg::HMAC_SHA512), None | Some(512)) => Ok(Algorithm::HmacSha512),
        (None, _) => Err(missing("the Cryptographic Algorithm")),
        (Some(a), l) => Err(Fail::new(
            reason::FEATURE_NOT_SUPPORTED,
            format!("symmetric keys of algorithm 0x{a:02X} and length {l:?} are not supported (AES-128, AES-256, HMAC-SHA-256/384/512 are)"),
        )),
    }
}

fn asymmetric_algorithm(o: &NewObject) -> Result<Algorithm, Fail> {
    match (o.algorithm, o.length, o.curve) {
        (Some(alg::RSA), Some(2048), _) => Ok(Algorithm::Rsa2048),
        (Some(alg::RSA), Some(3072), _) => Ok(Algorithm::Rsa3072),
        (Some(alg::RSA), Some(4096), _) => Ok(Algorithm::Rsa4096),
        (Some(alg::RSA), l, _) => Err(Fail::new(
            reason::FEATURE_NOT_SUPPORTED,
            format!("RSA keys of {l:?} bits are not supported yet: RSA-2048, RSA-3072 and RSA-4096 are"),
        )),
        (Some(alg::ECDSA | alg::EC), Some(256) | None, None | Some(curve::P_256)) => {
            Ok(Algorithm::EccNistP256)
        }
        (Some(alg::ECDSA | alg::EC), Some(384) | None, None | Some(curve::P_384)) => {
            Ok(Algorithm::EccNistP384)
        }
        (Some(alg::ECDSA | alg::EC), Some(521) | None, None | Some(curve::P_521)) => {
            Ok(Algorithm::EccNistP521)
        }
        (Some(alg::ECDSA | alg::EC), l, c) => Err(Fail::new(
            reason::FEATURE_NOT_SUPPORTED,
            format!(
                "elliptic-curve keys of length {l:?} (curve {c:?}) are not supported yet: P-256, P-384 and P-521 are"
            ),
        )),
        (None, _, _) => Err(missing("the Cryptographic Algorithm")),
        (Some(a), _, _) => Err(Fail::new(
            reason::FEATURE_NOT_SUPPORTED,
            format!("key pairs of algorithm 0x{a:02X} are not supported (RSA and ECDSA are)"),
        )),
    }
}

fn generated_name() -> String {
    format!("kmip-{}", &Uuid::new_v4().simple().to_string()[..16])
}

async fn make_key(
    ctx: &Ctx<'_>,
    o: NewObject,
    algorithm: Algorithm,
    material: Option<Material>,
) -> Result<KeyRecord, Fail> {
    let project = ctx.project()?;
    let request = CreateKey {
        project_id: project,
        name: o.name.unwrap_or_else(generated_name),
        description: None,
        usage: Some(algorithm.usage()),
        algorithm: Some(algorithm),
        customer_fragment_id: None,
        protection: Protection::Software,
        rotation_period_days: None,
        attributes: o.stored,
        exportable: true,
        material,
        disabled: !o.active,
    };
    ctx.gateway
        .create_key(&ctx.caller, request)
        .await
        .map_err(|e| ctx.fail(e))
}

async fn create(ctx: &Ctx<'_>, payload: &Ttlv) -> Answer {
    let kind = payload
        .find(tag::OBJECT_TYPE)
        .and_then(Ttlv::as_enum)
        .ok_or_else(|| missing("the Object Type"))?;
    if kind != object_type::SYMMETRIC_KEY {
        return Err(Fail::new(
            reason::FEATURE_NOT_SUPPORTED,
            "Create makes symmetric keys; use Create Key Pair for key pairs",
        ));
    }
    let list = request_attributes(payload, tag::TEMPLATE_ATTRIBUTE, tag::ATTRIBUTES)?;
    let o = new_object(&list)?;
    let algorithm = symmetric_algorithm(o.algorithm, o.length)?;
    let key = make_key(ctx, o, algorithm, None).await?;
    Ok(vec![
        enumeration(tag::OBJECT_TYPE, kind),
        uid_item(uid(key.id, false)),
    ])
}

async fn create_key_pair(ctx: &Ctx<'_>, payload: &Ttlv) -> Answer {
    let mut list = Vec::new();
    for (v1, v2) in [
        (tag::COMMON_TEMPLATE_ATTRIBUTE, tag::COMMON_ATTRIBUTES),
        (
            tag::PRIVATE_KEY_TEMPLATE_ATTRIBUTE,
            tag::PRIVATE_KEY_ATTRIBUTES,
        ),
    ] {
        list.extend(request_attributes(payload, v1, v2)?);
    }
    // The public key's own attributes: only its algorithm and length may be named (they
    // must agree); the pair is one key in the gateway.
    let public = request_attributes(
        payload,
        tag::PUBLIC_KEY_TEMPLATE_ATTRIBUTE,
        tag::PUBLIC_KEY_ATTRIBUTES,
    )?;
    for a in public {
        let dup = list.iter().any(|b| b.value.tag == a.value.tag);
        match a.value.tag {
            tag::NAME | tag::CRYPTOGRAPHIC_USAGE_MASK | tag::OPERATION_POLICY_NAME => {}
            _ if !dup => list.push(a),
            _ => {}
        }
    }
    let o = new_object(&list)?;
    let algorithm = asymmetric_algorithm(&o)?;
    let key = make_key(ctx, o, algorithm, None).await?;
    Ok(vec![
        text(tag::PRIVATE_KEY_UNIQUE_IDENTIFIER, uid(key.id, false)),
        text(tag::PUBLIC_KEY_UNIQUE_IDENTIFIER, uid(key.id, true)),
    ])
}

/// The Key Block of a registered object: its format, material and algorithm.
struct KeyBlock {
    format: u32,
    material: Zeroizing<Vec<u8>>,
    algorithm: Option<u32>,
    length: Option<i32>,
}

fn key_block(object: &Ttlv) -> Result<KeyBlock, Fail> {
    let block = object
        .find(tag::KEY_BLOCK)
        .ok_or_else(|| missing("the Key Block"))?;
    if block.find(tag::KEY_WRAPPING_DATA).is_some() {
        return Err(Fail::new(
            reason::FEATURE_NOT_SUPPORTED,
            "wrapped key material is not supported in Register",
        ));
    }
    let format = block
        .find(tag::KEY_FORMAT_TYPE)
        .and_then(Ttlv::as_enum)
        .ok_or_else(|| missing("the Key Format Type"))?;
    let value = block
        .find(tag::KEY_VALUE)
        .ok_or_else(|| missing("the Key Value"))?;
    let material = match value.find(tag::KEY_MATERIAL) {
        Some(m) => match (&m.value, format) {
            (Value::ByteString(b), _) => b.clone(),
            (Value::Structure(_), format::TRANSPARENT_SYMMETRIC_KEY) => m
                .find(tag::KEY)
                .and_then(Ttlv::as_bytes)
                .ok_or_else(|| missing("the Key of a Transparent Symmetric Key"))?
                .to_vec(),
            _ => {
                return Err(Fail::new(
                    reason::KEY_FORMAT_TYPE_NOT_SUPPORTED,
                    "key material of this format is not supported",
                ))
            }
        },
        None => match &value.value {
            // KMIP 1.0 allowed the Key Value to be the bytes themselves.
            Value::ByteString(b) => b.clone(),
            _ => return Err(missing("the Key Material")),
        },
    };
    Ok(KeyBlock {
        format,
        material: Zeroizing::new(material),
        algorithm: block
            .find(tag::CRYPTOGRAPHIC_ALGORITHM)
            .and_then(Ttlv::as_enum),
        length: block.find(tag::CRYPTOGRAPHIC_LENGTH).and_then(Ttlv::as_i32),
    })
}

/// PKCS#1 RSAPrivateKey DER as PKCS#8 (the gateway stores PKCS#8).
fn pkcs1_to_pkcs8(der: &[u8]) -> Result<Zeroizing<Vec<u8>>, Fail> {
    use rsa::pkcs1::DecodeRsaPrivateKey;
    use rsa::pkcs8::EncodePrivateKey;
    let key = rsa::RsaPrivateKey::from_pkcs1_der(der)
        .map_err(|_| invalid("the key material is not a PKCS#1 RSA private key"))?;
    let doc = key
        .to_pkcs8_der()
        .map_err(|_| invalid("the RSA private key cannot be encoded as PKCS#8"))?;
    Ok(Zeroizing::new(doc.as_bytes().to_vec()))
}

async fn register(ctx: &Ctx<'_>, payload: &Ttlv) -> Answer {
    let kind = payload
        .find(tag::OBJECT_TYPE)
        .and_then(Ttlv::as_enum)
        .ok_or_else(|| missing("the Object Type"))?;
    let list = request_attributes(payload, tag::TEMPLATE_ATTRIBUTE, tag::ATTRIBUTES)?;
    let mut o = new_object(&list)?;
    let (algorithm, material) = match kind {
        object_type::SYMMETRIC_KEY => {
            let object = payload
                .find(tag::SYMMETRIC_KEY)
                .ok_or_else(|| missing("the Symmetric Key"))?;
            let block = key_block(object)?;
            if !matches!(block.format, format::RAW | format::TRANSPARENT_SYMMETRIC_KEY) {
                return Err(Fail::new(
                    reason::KEY_FORMAT_TYPE_NOT_SUPPORTED,
                    "a symmetric key is registered as Raw or Transparent Symmetric Key",
                ));
            }
            let bits = i32::try_from(block.material.len() * 8).unwrap_or(i32::MAX);
            let algorithm =
                symmetric_algorithm(block.algorithm.or(o.algorithm), Some(bits))?;
            if block.length.is_some_and(|l| l != bits) {
                return Err(invalid(format!(
                    "the Cryptographic Length says {:?} bits, the key material has {bits}",
                    block.length
                )));
            }
            (algorithm, block.material)
        }
        object_type::PRIVATE_KEY => {
            let object = payload
                .find(tag::PRIVATE_KEY)
                .ok_or_else(|| missing("the Private Key"))?;
            let block = key_block(object)?;
            o.algorithm = block.algorithm.or(o.algorithm);
            o.length = block.length.or(o.length);
            let algorithm = asymmetric_algorithm(&o)?;
            let material = match (block.format, algorithm) {
                (format::PKCS_8, _) => block.material,
                (format::PKCS_1, Algorithm::Rsa2048 | Algorithm::Rsa3072 | Algorithm::Rsa4096) => pkcs1_to_pkcs8(&block.material)?,
                _ => {
                    return Err(Fail::new(
                        reason::KEY_FORMAT_TYPE_NOT_SUPPORTED,
                        "a private key is registered as PKCS#8 (or PKCS#1 for RSA)",
                    ))
                }
            };
            (algorithm, material)
        }
        _ => {
            return Err(Fail::new(
                reason::FEATURE_NOT_SUPPORTED,
                "Register takes symmetric keys and private keys (public keys alone, certificates and secret data are not supported)",
            ))
        }
    };
    let key = make_key(ctx, o, algorithm, Some(Material(material))).await?;
    Ok(vec![uid_item(uid(key.id, false))])
}

/// Locate (KMIP 1.4 §4.9): the caller's project's objects matching every attribute
/// given, newest first, from Offset Items, at most Maximum Items.
async fn locate(ctx: &Ctx<'_>, payload: &Ttlv) -> Answer {
    let project = ctx.project()?;
    let mut filters = Vec::new();
    for a in payload.find_all(tag::ATTRIBUTE) {
        filters.push(attrs::read_v1(a)?);
    }
    if let Some(list) = payload.find(tag::ATTRIBUTES) {
        filters.extend(attrs::read(list, true)?);
    }
    let max = payload
        .find(tag::MAXIMUM_ITEMS)
        .and_then(Ttlv::as_i32)
        .map(|m| usize::try_from(m).unwrap_or(0));
    let offset = payload
        .find(tag::OFFSET_ITEMS)
        .and_then(Ttlv::as_i32)
        .map_or(0, |m| usize::try_from(m).unwrap_or(0));
    let name = filters
        .iter()
        .find(|a| a.value.tag == tag::NAME)
        .and_then(|a| attrs::name_value(&a.value))
        .map(key_name);
    let mut found: Vec<String> = Vec::new();
    let mut total = 0usize;
    let mut page = 0u64;
    loop {
        let query = ListQuery {
            project_id: project.0,
            offset: page * 100,
            limit: 100,
            order_by: OrderBy::CreatedAt,
            direction: Direction::Desc,
            search: name.clone(),
        };
        let (keys, count) = ctx
            .gateway
            .list_keys(&ctx.caller, query)
            .await
            .map_err(|e| ctx.fail(e))?;
        for key in &keys {
            if name.as_deref().is_some_and(|n| n != key.name)
                || kmip_algorithm(key.algorithm).is_none()
            {
                continue;
            }
            // Every attribute but these three is (or may be) kept beside the record.
            let needs_stored = filters.iter().any(|f| {
                !matches!(
                    f.value.tag,
                    tag::OBJECT_TYPE | tag::CRYPTOGRAPHIC_ALGORITHM | tag::CRYPTOGRAPHIC_LENGTH
                )
            });
            let details = if needs_stored {
                ctx.gateway
                    .key_details(&ctx.caller, KeyId(key.id))
                    .await
                    .map_err(|e| ctx.fail(e))?
            } else {
                KeyDetails {
                    key: key.clone(),
                    versions: Vec::new(),
                    attributes: Attributes::new(),
                }
            };
            let sides: &[bool] = if is_asymmetric(key.algorithm) {
                &[false, true]
            } else {
                &[false]
            };
            for &public in sides {
                let mut have = all_attributes(ctx.version, &details, public);
                have.extend(custom_attributes(&details.attributes));
                let matches = filters.iter().all(|f| match f.value.tag {
                    // By the name's value, whatever Name Type the request says.
                    tag::NAME => {
                        attrs::name_value(&f.value)
                            == Some(kmip_name(key, &details.attributes).as_str())
                    }
                    _ => have.iter().any(|h| h.name == f.name && h.value == f.value),
                });
                if matches {
                    total += 1;
                    if total > offset && max.is_none_or(|m| found.len() < m) {
                        found.push(uid(key.id, public));
                    }
                }
            }
        }
        page += 1;
        // Before 1.3 nothing reports the count: stop once the answer is full.
        let full = ctx.version < (1, 3) && max.is_some_and(|m| found.len() >= m);
        if full || keys.is_empty() || page * 100 >= count {
            break;
        }
    }
    let mut out = Vec::new();
    if ctx.version >= (1, 3) {
        out.push(Ttlv::new(
            tag::LOCATED_ITEMS,
            Value::Integer(i32::try_from(total).unwrap_or(i32::MAX)),
        ));
    }
    out.extend(found.into_iter().map(uid_item));
    Ok(out)
}

fn key_block_item(format: u32, material: Vec<u8>, algorithm: Algorithm) -> Result<Ttlv, Fail> {
    let (a, l) = kmip_type(algorithm)?;
    let key_material = if format == format::TRANSPARENT_SYMMETRIC_KEY {
        Ttlv::structure(
            tag::KEY_MATERIAL,
            vec![Ttlv::new(tag::KEY, Value::ByteString(material))],
        )
    } else {
        Ttlv::new(tag::KEY_MATERIAL, Value::ByteString(material))
    };
    Ok(Ttlv::structure(
        tag::KEY_BLOCK,
        vec![
            enumeration(tag::KEY_FORMAT_TYPE, format),
            Ttlv::structure(tag::KEY_VALUE, vec![key_material]),
            enumeration(tag::CRYPTOGRAPHIC_ALGORITHM, a),
            Ttlv::new(tag::CRYPTOGRAPHIC_LENGTH, Value::Integer(l)),
        ],
    ))
}

/// Get (KMIP 1.4 §4.11): a public key to anyone who may read it; the material of a
/// symmetric or private key only when the key is exportable and the caller has
/// `export` (an audited `key.export`).
async fn get(ctx: &Ctx<'_>, payload: &Ttlv) -> Answer {
    let object = object_of(payload)?;
    if payload.find(tag::KEY_WRAPPING_SPECIFICATION).is_some() {
        return Err(Fail::new(
            reason::FEATURE_NOT_SUPPORTED,
            "Get with a Key Wrapping Specification is not supported",
        ));
    }
    let wanted = payload.find(tag::KEY_FORMAT_TYPE).and_then(Ttlv::as_enum);
    if object.public {
        let details = ctx
            .gateway
            .key_details(&ctx.caller, object.id)
            .await
            .map_err(|e| ctx.fail(e))?;
        let algorithm = details.key.algorithm;
        kmip_type(algorithm)?;
        if !is_asymmetric(algorithm) {
            return Err(Fail::new(
                reason::ITEM_NOT_FOUND,
                format!("no object {:?}", object.uid()),
            ));
        }
        if details.key.deletion_date.is_some() {
            return Err(ctx.fail(crate::keys::KeyError::PendingDeletion.into()));
        }
        let spki = ctx
            .gateway
            .public_key(&ctx.caller, object.id)
            .await
            .map_err(|e| ctx.fail(e))?;
        let (format, bytes) =
            match (wanted, algorithm) {
                (None | Some(format::X_509), _) => (format::X_509, spki),
                (
                    Some(format::PKCS_1),
                    Algorithm::Rsa2048 | Algorithm::Rsa3072 | Algorithm::Rsa4096,
                ) => (format::PKCS_1, spki_to_pkcs1(&spki)?),
                _ => return Err(Fail::new(
                    reason::KEY_FORMAT_TYPE_NOT_SUPPORTED,
                    "a public key is returned as X.509 (SubjectPublicKeyInfo), or PKCS#1 for RSA",
                )),
            };
        return Ok(vec![
            enumeration(tag::OBJECT_TYPE, object_type::PUBLIC_KEY),
            uid_item(object.uid()),
            Ttlv::structure(
                tag::PUBLIC_KEY,
                vec![key_block_item(format, bytes, algorithm)?],
            ),
        ]);
    }
    let exported = ctx
        .gateway
        .export_key(&ctx.caller, object.id)
        .await
        .map_err(|e| ctx.fail(e))?;
    let algorithm = exported.key.algorithm;
    let material = exported.material.0.to_vec();
    let (kind, object_tag, format, bytes) = if is_asymmetric(algorithm) {
        match (wanted, algorithm) {
            (None | Some(format::PKCS_8), _) => (
                object_type::PRIVATE_KEY,
                tag::PRIVATE_KEY,
                format::PKCS_8,
                material,
            ),
            (
                Some(format::PKCS_1),
                Algorithm::Rsa2048 | Algorithm::Rsa3072 | Algorithm::Rsa4096,
            ) => (
                object_type::PRIVATE_KEY,
                tag::PRIVATE_KEY,
                format::PKCS_1,
                pkcs8_to_pkcs1(&material)?,
            ),
            _ => {
                return Err(Fail::new(
                    reason::KEY_FORMAT_TYPE_NOT_SUPPORTED,
                    "a private key is returned as PKCS#8, or PKCS#1 for RSA",
                ))
            }
        }
    } else {
        match wanted {
            None | Some(format::RAW) => (
                object_type::SYMMETRIC_KEY,
                tag::SYMMETRIC_KEY,
                format::RAW,
                material,
            ),
            Some(format::TRANSPARENT_SYMMETRIC_KEY) => (
                object_type::SYMMETRIC_KEY,
                tag::SYMMETRIC_KEY,
                format::TRANSPARENT_SYMMETRIC_KEY,
                material,
            ),
            _ => {
                return Err(Fail::new(
                    reason::KEY_FORMAT_TYPE_NOT_SUPPORTED,
                    "a symmetric key is returned as Raw or Transparent Symmetric Key",
                ))
            }
        }
    };
    Ok(vec![
        enumeration(tag::OBJECT_TYPE, kind),
        uid_item(object.uid()),
        Ttlv::structure(object_tag, vec![key_block_item(format, bytes, algorithm)?]),
    ])
}

fn pkcs8_to_pkcs1(der: &[u8]) -> Result<Vec<u8>, Fail> {
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::pkcs8::DecodePrivateKey;
    let key = rsa::RsaPrivateKey::from_pkcs8_der(der)
        .map_err(|_| Fail::new(reason::GENERAL_FAILURE, "the stored RSA key does not parse"))?;
    let doc = key.to_pkcs1_der().map_err(|_| {
        Fail::new(
            reason::GENERAL_FAILURE,
            "the RSA key cannot be encoded as PKCS#1",
        )
    })?;
    Ok(doc.as_bytes().to_vec())
}

fn spki_to_pkcs1(der: &[u8]) -> Result<Vec<u8>, Fail> {
    use rsa::pkcs1::EncodeRsaPublicKey;
    use rsa::pkcs8::DecodePublicKey;
    let key = rsa::RsaPublicKey::from_public_key_der(der)
        .map_err(|_| Fail::new(reason::GENERAL_FAILURE, "the RSA public key does not parse"))?;
    let doc = key.to_pkcs1_der().map_err(|_| {
        Fail::new(
            reason::GENERAL_FAILURE,
            "the RSA public key cannot be encoded as PKCS#1",
        )
    })?;
    Ok(doc.as_bytes().to_vec())
}

async fn details(ctx: &Ctx<'_>, object: Object) -> Result<KeyDetails, Fail> {
    let d = ctx
        .gateway
        .key_details(&ctx.caller, object.id)
        .await
        .map_err(|e| ctx.fail(e))?;
    kmip_type(d.key.algorithm)?;
    if object.public && !is_asymmetric(d.key.algorithm) {
        return Err(Fail::new(
            reason::ITEM_NOT_FOUND,
            format!("no object {:?}", object.uid()),
        ));
    }
    Ok(d)
}

/// The names a Get Attributes request asks for (1.x Attribute Name; 2.x Attribute
/// Reference, by tag).
fn asked_names(payload: &Ttlv) -> Vec<String> {
    let mut out: Vec<String> = payload
        .find_all(tag::ATTRIBUTE_NAME)
        .filter_map(Ttlv::as_text)
        .map(str::to_owned)
        .collect();
    for r in payload.find_all(tag::ATTRIBUTE_REFERENCE) {
        let name = match &r.value {
            Value::Enumeration(t) => attrs::name_of(*t).map(str::to_owned),
            Value::Structure(_) => r
                .find(tag::ATTRIBUTE_NAME)
                .and_then(Ttlv::as_text)
                .map(str::to_owned),
            _ => None,
        };
        out.extend(name);
    }
    out
}

async fn get_attributes(ctx: &Ctx<'_>, payload: &Ttlv) -> Answer {
    let object = object_of(payload)?;
    let d = details(ctx, object).await?;
    let asked = asked_names(payload);
    let mut all = all_attributes(ctx.version, &d, object.public);
    all.extend(custom_attributes(&d.attributes));
    if !asked.is_empty() {
        all.retain(|a| asked.contains(&a.name));
    }
    let v2 = ctx.v2();
    let mut out = vec![uid_item(object.uid())];
    if v2 {
        out.push(Ttlv::structure(
            tag::ATTRIBUTES,
            all.iter().map(|a| attrs::write(a, true)).collect(),
        ));
    } else {
        out.extend(all.iter().map(|a| attrs::write(a, false)));
    }
    Ok(out)
}

async fn get_attribute_list(ctx: &Ctx<'_>, payload: &Ttlv) -> Answer {
    let object = object_of(payload)?;
    let d = details(ctx, object).await?;
    let mut all = all_attributes(ctx.version, &d, object.public);
    all.extend(custom_attributes(&d.attributes));
    let mut out = vec![uid_item(object.uid())];
    for a in all {
        if ctx.v2() && a.value.tag != tag::CUSTOM_ATTRIBUTE {
            out.push(enumeration(tag::ATTRIBUTE_REFERENCE, a.value.tag));
        } else {
            out.push(text(tag::ATTRIBUTE_NAME, a.name));
        }
    }
    Ok(out)
}

/// The attribute of an Add / Modify / Delete Attribute request (1.x `Attribute`; 2.x
/// `New Attribute` / `Current Attribute` holding the attribute itself).
fn one_attribute(payload: &Ttlv) -> Result<Attr, Fail> {
    if let Some(a) = payload.find(tag::ATTRIBUTE) {
        return attrs::read_v1(a);
    }
    for t in [tag::NEW_ATTRIBUTE, tag::CURRENT_ATTRIBUTE] {
        if let Some(holder) = payload.find(t) {
            let list = attrs::read(holder, true)?;
            return list
                .into_iter()
                .next()
                .ok_or_else(|| missing("the attribute"));
        }
    }
    Err(missing("the Attribute"))
}

async fn set_attribute(ctx: &Ctx<'_>, operation: u32, payload: &Ttlv) -> Answer {
    let object = object_of(payload)?;
    let attr = one_attribute(payload)?;
    if object.public {
        return Err(Fail::new(
            reason::PERMISSION_DENIED,
            "a public key's attributes are its private key's: change them there",
        ));
    }
    let mut patch = KeyPatch::default();
    let mut set = Attributes::new();
    let mut remove = Vec::new();
    match attr.value.tag {
        tag::NAME if operation == op::MODIFY_ATTRIBUTE => {
            let n = attrs::name_value(&attr.value)
                .ok_or_else(|| invalid("a Name has no Name Value"))?;
            patch.name = Some(key_name(n));
            set = name_attributes(n)?;
            if !set.contains_key(NAME_KEY) {
                remove.push(NAME_KEY.to_owned());
            }
        }
        tag::NAME => {
            return Err(Fail::new(
                reason::FEATURE_NOT_SUPPORTED,
                "a key has one Name in the gateway: use Modify Attribute to rename it",
            ))
        }
        tag::CUSTOM_ATTRIBUTE => {
            set.insert(
                attrs::custom_key(&attr.name),
                attrs::encode_value(&attr.value),
            );
        }
        t => match SETTABLE.iter().find(|(s, _)| *s == t) {
            Some((_, stored)) => {
                set.insert((*stored).into(), stored_value(&attr.value)?);
            }
            None => {
                return Err(Fail::new(
                    reason::PERMISSION_DENIED,
                    format!("attribute {:?} is set by the server", attr.name),
                ))
            }
        },
    }
    if operation == op::ADD_ATTRIBUTE || operation == op::MODIFY_ATTRIBUTE {
        let d = details(ctx, object).await?;
        let present = set.keys().any(|k| d.attributes.contains_key(k));
        if operation == op::ADD_ATTRIBUTE && present {
            return Err(Fail::new(
                reason::PERMISSION_DENIED,
                format!(
                    "the key already has attribute {:?}; use Modify Attribute",
                    attr.name
                ),
            ));
        }
        if operation == op::MODIFY_ATTRIBUTE && !set.is_empty() && !present {
            return Err(Fail::new(
                reason::ITEM_NOT_FOUND,
                format!("the key has no attribute {:?} to modify", attr.name),
            ));
        }
    }
    ctx.gateway
        .update_key_and_attributes(&ctx.caller, object.id, patch, set, remove)
        .await
        .map_err(|e| ctx.fail(e))?;
    let mut out = vec![uid_item(object.uid())];
    if !ctx.v2() {
        out.push(attrs::write(&attr, false));
    }
    Ok(out)
}

async fn delete_attribute(ctx: &Ctx<'_>, payload: &Ttlv) -> Answer {
    let object = object_of(payload)?;
    let name = match payload.find(tag::ATTRIBUTE_NAME).and_then(Ttlv::as_text) {
        Some(n) => n.to_owned(),
        None => {
            let names = asked_names(payload);
            match names.into_iter().next() {
                Some(n) => n,
                None => one_attribute(payload)?.name,
            }
        }
    };
    let stored = if attrs::is_custom(&name) {
        attrs::custom_key(&name)
    } else {
        match attrs::tag_of(&name).and_then(|t| SETTABLE.iter().find(|(s, _)| *s == t)) {
            Some((_, s)) => (*s).to_owned(),
            None => {
                return Err(Fail::new(
                    reason::PERMISSION_DENIED,
                    format!("attribute {name:?} cannot be deleted"),
                ))
            }
        }
    };
    let d = details(ctx, object).await?;
    let Some(old) = d.attributes.get(&stored) else {
        return Err(Fail::new(
            reason::ITEM_NOT_FOUND,
            format!("the key has no attribute {name:?}"),
        ));
    };
    let old_value = if attrs::is_custom(&name) {
        attrs::decode_value(old).map(|v| Ttlv::new(tag::CUSTOM_ATTRIBUTE, v.value))
    } else {
        attrs::tag_of(&name).map(|t| match old.parse::<i32>() {
            Ok(i) if t == tag::CRYPTOGRAPHIC_USAGE_MASK => Ttlv::new(t, Value::Integer(i)),
            _ => Ttlv::new(t, Value::TextString(old.clone())),
        })
    };
    ctx.gateway
        .update_key_and_attributes(
            &ctx.caller,
            object.id,
            KeyPatch::default(),
            Attributes::new(),
            vec![stored],
        )
        .await
        .map_err(|e| ctx.fail(e))?;
    let mut out = vec![uid_item(object.uid())];
    if let (false, Some(v)) = (ctx.v2(), old_value) {
        out.push(attrs::write(&Attr { name, value: v }, false));
    }
    Ok(out)
}

/// The key an operation on `object` changes: the private key of a pair.
async fn state_change(
    ctx: &Ctx<'_>,
    object: Object,
    patch: KeyPatch,
    set: Attributes,
    remove: Vec<String>,
) -> Result<(), Fail> {
    ctx.gateway
        .update_key_and_attributes(&ctx.caller, object.id, patch, set, remove)
        .await
        .map(|_| ())
        .map_err(|e| ctx.fail(e))
}

async fn activate(ctx: &Ctx<'_>, payload: &Ttlv) -> Answer {
    let object = object_of(payload)?;
    let d = details(ctx, object).await?;
    let current = state_of(&d.key, &d.attributes);
    if object.public && current == state::ACTIVE {
        // A pair is one key: its public key became Active with its private key.
        return Ok(vec![uid_item(object.uid())]);
    }
    if current != state::PRE_ACTIVE {
        return Err(ctx.lifecycle("only a Pre-Active object can be activated"));
    }
    let set = [(ACTIVATION_KEY.to_owned(), now_seconds().to_string())].into();
    let enable = KeyPatch {
        is_disabled: Some(false),
        ..KeyPatch::default()
    };
    state_change(ctx, object, enable, set, vec![STATE_KEY.into()]).await?;
    Ok(vec![uid_item(object.uid())])
}

async fn revoke(ctx: &Ctx<'_>, payload: &Ttlv) -> Answer {
    let object = object_of(payload)?;
    let code = payload
        .find(tag::REVOCATION_REASON)
        .and_then(|r| r.find(tag::REVOCATION_REASON_CODE))
        .and_then(Ttlv::as_enum)
        .ok_or_else(|| missing("the Revocation Reason"))?;
    let d = details(ctx, object).await?;
    let now = now_seconds().to_string();
    let current = state_of(&d.key, &d.attributes);
    if matches!(current, state::DESTROYED | state::DESTROYED_COMPROMISED) {
        return Err(ctx.lifecycle("the object is destroyed"));
    }
    if object.public && matches!(current, state::DEACTIVATED | state::COMPROMISED) {
        // Revoked with its private key already.
        return Ok(vec![uid_item(object.uid())]);
    }
    // Dates already set stay as they were first set.
    let mut set = Attributes::new();
    let mut first = |name: &str, value: String| {
        if !d.attributes.contains_key(name) {
            set.insert(name.to_owned(), value);
        }
    };
    if matches!(code, revocation::KEY_COMPROMISE | revocation::CA_COMPROMISE) {
        let occurred = payload
            .find(tag::COMPROMISE_OCCURRENCE_DATE)
            .and_then(Ttlv::as_datetime)
            .map_or(now.clone(), |t| t.to_string());
        first(COMPROMISE_KEY, now.clone());
        first(COMPROMISE_OCCURRENCE_KEY, occurred);
        first(DEACTIVATION_KEY, now);
        set.insert(STATE_KEY.into(), "compromised".into());
    } else {
        if current == state::COMPROMISED {
            return Err(ctx.lifecycle("a compromised object stays compromised"));
        }
        first(DEACTIVATION_KEY, now);
        set.insert(STATE_KEY.into(), "deactivated".into());
    }
    // The key then only decrypts and verifies what it protected (KMIP 1.4 §3.22): the
    // core's `protect_stopped`, which no front-end undoes.
    let stop = KeyPatch {
        is_disabled: Some(false),
        protect_stopped: Some(true),
        ..KeyPatch::default()
    };
    state_change(ctx, object, stop, set, Vec::new()).await?;
    Ok(vec![uid_item(object.uid())])
}

/// Destroy (KMIP 1.4 §4.21): the key reads as Destroyed at once and no operation uses it;
/// its material is erased after the gateway's shortest pending window (see docs/KMIP.md).
async fn destroy(ctx: &Ctx<'_>, payload: &Ttlv) -> Answer {
    let object = object_of(payload)?;
    let d = details(ctx, object).await?;
    match state_of(&d.key, &d.attributes) {
        state::ACTIVE => {
            return Err(ctx.lifecycle("an Active object must be revoked before it is destroyed"))
        }
        state::DESTROYED | state::DESTROYED_COMPROMISED if object.public => {}
        state::DESTROYED | state::DESTROYED_COMPROMISED => {
            return Err(ctx.lifecycle("the object is already destroyed"))
        }
        _ if object.public => {
            return Err(Fail::new(
                reason::PERMISSION_DENIED,
                "a public key is destroyed with its private key: destroy that",
            ))
        }
        _ => {
            ctx.gateway
                .schedule_key_deletion(&ctx.caller, object.id, Some(DELETION_WINDOW_DAYS.0))
                .await
                .map_err(|e| ctx.fail(e))?;
        }
    }
    Ok(vec![uid_item(object.uid())])
}

/// The cipher of an Encrypt / Decrypt request (AES-GCM unless CBC is named).
fn cipher_mode(payload: &Ttlv) -> Result<RawMode, Fail> {
    let Some(p) = payload.find(tag::CRYPTOGRAPHIC_PARAMETERS) else {
        return Ok(RawMode::Gcm);
    };
    if let Some(a) = p.find(tag::CRYPTOGRAPHIC_ALGORITHM).and_then(Ttlv::as_enum) {
        if a != alg::AES {
            return Err(invalid("Encrypt and Decrypt take AES keys"));
        }
    }
    if let Some(t) = p.find(tag::TAG_LENGTH).and_then(Ttlv::as_i32) {
        if t != 16 {
            return Err(invalid("the AES-GCM tag is 16 bytes"));
        }
    }
    let padding = p.find(tag::PADDING_METHOD).and_then(Ttlv::as_enum);
    match p.find(tag::BLOCK_CIPHER_MODE).and_then(Ttlv::as_enum) {
        None | Some(mode::GCM) => match padding {
            None | Some(padding::NONE) => Ok(RawMode::Gcm),
            Some(_) => Err(invalid("AES-GCM takes no padding")),
        },
        Some(mode::CBC) => match padding {
            None | Some(padding::PKCS5) => Ok(RawMode::CbcPkcs7),
            Some(_) => Err(invalid("AES-CBC is supported with PKCS5 padding only")),
        },
        Some(m) => Err(Fail::new(
            reason::FEATURE_NOT_SUPPORTED,
            format!("block cipher mode 0x{m:02X} is not supported (GCM and CBC are)"),
        )),
    }
}

fn bytes_of(payload: &Ttlv, t: u32) -> Option<&[u8]> {
    payload.find(t).and_then(Ttlv::as_bytes)
}

async fn encrypt(ctx: &Ctx<'_>, payload: &Ttlv) -> Answer {
    let object = secret_object_of(payload)?;
    let mode = cipher_mode(payload)?;
    if payload.find(tag::IV_COUNTER_NONCE).is_some() {
        return Err(invalid(
            "the gateway makes every IV itself (a random one per encryption): send no IV/Counter/Nonce",
        ));
    }
    let data = bytes_of(payload, tag::DATA).ok_or_else(|| missing("the Data"))?;
    let aad = bytes_of(payload, tag::AUTHENTICATED_ENCRYPTION_ADDITIONAL_DATA).unwrap_or_default();
    let sealed = ctx
        .gateway
        .raw_encrypt(
            &ctx.caller,
            RawEncrypt {
                key_id: object.id,
                mode,
                plaintext: Zeroizing::new(data.to_vec()),
                aad: aad.to_vec(),
            },
        )
        .await
        .map_err(|e| ctx.fail(e))?;
    // KMIP 1.4 added the Authenticated Encryption Tag field (§2.1.11); before it, the
    // tag follows the ciphertext in Data, as clients of those versions expect.
    let separate_tag = ctx.version >= (1, 4);
    let mut data = sealed.ciphertext;
    if let (false, Some(t)) = (separate_tag, sealed.tag) {
        data.extend_from_slice(&t);
    }
    let mut out = vec![
        uid_item(object.uid()),
        Ttlv::new(tag::DATA, Value::ByteString(data)),
        Ttlv::new(tag::IV_COUNTER_NONCE, Value::ByteString(sealed.iv)),
    ];
    if let (true, Some(t)) = (separate_tag, sealed.tag) {
        out.push(Ttlv::new(
            tag::AUTHENTICATED_ENCRYPTION_TAG,
            Value::ByteString(t.to_vec()),
        ));
    }
    Ok(out)
}

async fn decrypt(ctx: &Ctx<'_>, payload: &Ttlv) -> Answer {
    let object = secret_object_of(payload)?;
    let mode = cipher_mode(payload)?;
    let data = bytes_of(payload, tag::DATA).ok_or_else(|| missing("the Data"))?;
    let iv =
        bytes_of(payload, tag::IV_COUNTER_NONCE).ok_or_else(|| missing("the IV/Counter/Nonce"))?;
    let aad = bytes_of(payload, tag::AUTHENTICATED_ENCRYPTION_ADDITIONAL_DATA).unwrap_or_default();
    let mut data = data;
    let mut tag_bytes = bytes_of(payload, tag::AUTHENTICATED_ENCRYPTION_TAG).map(<[u8]>::to_vec);
    if tag_bytes.is_none() && mode == RawMode::Gcm && ctx.version < (1, 4) {
        // Before KMIP 1.4 the tag is the last 16 bytes of Data (see `encrypt`).
        let split = data.len().checked_sub(16).ok_or_else(|| {
            Fail::new(
                reason::CRYPTOGRAPHIC_FAILURE,
                "decryption_failed: the data is shorter than the AES-GCM tag",
            )
        })?;
        tag_bytes = Some(data[split..].to_vec());
        data = &data[..split];
    }
    let plaintext = ctx
        .gateway
        .raw_decrypt(
            &ctx.caller,
            RawDecrypt {
                key_id: object.id,
                mode,
                iv: iv.to_vec(),
                ciphertext: data.to_vec(),
                tag: tag_bytes,
                aad: aad.to_vec(),
            },
        )
        .await
        .map_err(|e| ctx.fail(e))?;
    Ok(vec![
        uid_item(object.uid()),
        Ttlv::new(tag::DATA, Value::ByteString(plaintext.to_vec())),
    ])
}

/// The gateway's signing algorithm for a request's Cryptographic Parameters on `key`.
fn signing_algorithm(payload: &Ttlv, key: Algorithm) -> Result<&'static str, Fail> {
    kmip_type(key)?;
    let p = payload.find(tag::CRYPTOGRAPHIC_PARAMETERS);
    let get = |t| p.and_then(|p| p.find(t)).and_then(Ttlv::as_enum);
    let named = match get(tag::DIGITAL_SIGNATURE_ALGORITHM) {
        Some(signature::SHA256_WITH_RSA) => Some("RSASSA_PKCS1_V1_5_SHA_256"),
        Some(signature::SHA384_WITH_RSA) => Some("RSASSA_PKCS1_V1_5_SHA_384"),
        Some(signature::SHA512_WITH_RSA) => Some("RSASSA_PKCS1_V1_5_SHA_512"),
        Some(signature::ECDSA_WITH_SHA256) => Some("ECDSA_SHA_256"),
        Some(signature::ECDSA_WITH_SHA384) => Some("ECDSA_SHA_384"),
        Some(signature::ECDSA_WITH_SHA512) => Some("ECDSA_SHA_512"),
        Some(signature::RSASSA_PSS) | None => None,
        Some(other) => {
            return Err(Fail::new(
                reason::FEATURE_NOT_SUPPORTED,
                format!("digital signature algorithm 0x{other:02X} is not supported"),
            ))
        }
    };
    if let Some(n) = named {
        return Ok(n);
    }
    let pss = get(tag::DIGITAL_SIGNATURE_ALGORITHM) == Some(signature::RSASSA_PSS)
        || get(tag::PADDING_METHOD) == Some(padding::PSS);
    let bits = match get(tag::HASHING_ALGORITHM) {
        None | Some(hash::SHA_256) => 256,
        Some(hash::SHA_384) => 384,
        Some(hash::SHA_512) => 512,
        Some(h) => {
            return Err(Fail::new(
                reason::FEATURE_NOT_SUPPORTED,
                format!(
                    "hashing algorithm 0x{h:02X} is not supported (SHA-256, SHA-384, SHA-512 are)"
                ),
            ))
        }
    };
    let name = match (key, pss, bits) {
        (Algorithm::Rsa2048 | Algorithm::Rsa3072 | Algorithm::Rsa4096, true, 256) => {
            "RSASSA_PSS_SHA_256"
        }
        (Algorithm::Rsa2048 | Algorithm::Rsa3072 | Algorithm::Rsa4096, true, 384) => {
            "RSASSA_PSS_SHA_384"
        }
        (Algorithm::Rsa2048 | Algorithm::Rsa3072 | Algorithm::Rsa4096, true, _) => {
            "RSASSA_PSS_SHA_512"
        }
        (Algorithm::Rsa2048 | Algorithm::Rsa3072 | Algorithm::Rsa4096, false, 256) => {
            "RSASSA_PKCS1_V1_5_SHA_256"
        }
        (Algorithm::Rsa2048 | Algorithm::Rsa3072 | Algorithm::Rsa4096, false, 384) => {
            "RSASSA_PKCS1_V1_5_SHA_384"
        }
        (Algorithm::Rsa2048 | Algorithm::Rsa3072 | Algorithm::Rsa4096, false, _) => {
            "RSASSA_PKCS1_V1_5_SHA_512"
        }
        (_, _, 256) => "ECDSA_SHA_256",
        (_, _, 384) => "ECDSA_SHA_384",
        _ => "ECDSA_SHA_512",
    };
    Ok(name)
}

async fn key_algorithm(ctx: &Ctx<'_>, object: Object) -> Result<Algorithm, Fail> {
    Ok(details(ctx, object).await?.key.algorithm)
}

async fn sign(ctx: &Ctx<'_>, payload: &Ttlv) -> Answer {
    let object = object_of(payload)?;
    if object.public {
        return Err(Fail::new(
            reason::PERMISSION_DENIED,
            "a public key cannot sign",
        ));
    }
    let data = bytes_of(payload, tag::DATA).ok_or_else(|| missing("the Data"))?;
    let algorithm = signing_algorithm(payload, key_algorithm(ctx, object).await?)?;
    let signature = ctx
        .gateway
        .sign(
            &ctx.caller,
            Sign {
                key_id: object.id,
                data: data.to_vec(),
                signing_algorithm: algorithm.into(),
                is_digest: false,
                key_version: None,
            },
        )
        .await
        .map_err(|e| ctx.fail(e))?;
    Ok(vec![
        uid_item(object.uid()),
        Ttlv::new(tag::SIGNATURE_DATA, Value::ByteString(signature)),
    ])
}

fn validity_item(valid: bool) -> Ttlv {
    enumeration(
        tag::VALIDITY_INDICATOR,
        if valid {
            validity::VALID
        } else {
            validity::INVALID
        },
    )
}

async fn signature_verify(ctx: &Ctx<'_>, payload: &Ttlv) -> Answer {
    let object = object_of(payload)?;
    let data = bytes_of(payload, tag::DATA).ok_or_else(|| missing("the Data"))?;
    let sig =
        bytes_of(payload, tag::SIGNATURE_DATA).ok_or_else(|| missing("the Signature Data"))?;
    let algorithm = signing_algorithm(payload, key_algorithm(ctx, object).await?)?;
    let valid = ctx
        .gateway
        .verify(
            &ctx.caller,
            Sign {
                key_id: object.id,
                data: data.to_vec(),
                signing_algorithm: algorithm.into(),
                is_digest: false,
                key_version: None,
            },
            sig.to_vec(),
        )
        .await
        .map_err(|e| ctx.fail(e))?;
    Ok(vec![uid_item(object.uid()), validity_item(valid)])
}

fn mac_request(payload: &Ttlv, object: Object) -> Result<Mac, Fail> {
    let data = bytes_of(payload, tag::DATA).ok_or_else(|| missing("the Data"))?;
    let algorithm = payload
        .find(tag::CRYPTOGRAPHIC_PARAMETERS)
        .and_then(|p| p.find(tag::CRYPTOGRAPHIC_ALGORITHM))
        .and_then(Ttlv::as_enum)
        .map(|a| match a {
            alg::HMAC_SHA256 => Ok(crate::crypto::MacAlgorithm::HmacSha256),
            alg::HMAC_SHA384 => Ok(crate::crypto::MacAlgorithm::HmacSha384),
            alg::HMAC_SHA512 => Ok(crate::crypto::MacAlgorithm::HmacSha512),
            other => Err(Fail::new(
                reason::FEATURE_NOT_SUPPORTED,
                format!("MAC algorithm 0x{other:02X} is not supported"),
            )),
        })
        .transpose()?;
    Ok(Mac {
        key_id: object.id,
        data: data.to_vec(),
        algorithm,
        exact: true,
    })
}

async fn mac(ctx: &Ctx<'_>, payload: &Ttlv) -> Answer {
    let object = secret_object_of(payload)?;
    let request = mac_request(payload, object)?;
    let result = ctx
        .gateway
        .generate_mac(&ctx.caller, request)
        .await
        .map_err(|e| ctx.fail(e))?;
    Ok(vec![
        uid_item(object.uid()),
        Ttlv::new(tag::MAC_DATA, Value::ByteString(result.mac)),
    ])
}

async fn mac_verify(ctx: &Ctx<'_>, payload: &Ttlv) -> Answer {
    let object = secret_object_of(payload)?;
    let request = mac_request(payload, object)?;
    let given = bytes_of(payload, tag::MAC_DATA).ok_or_else(|| missing("the MAC Data"))?;
    let valid = ctx
        .gateway
        .verify_mac(&ctx.caller, request, given.to_vec(), None)
        .await
        .map_err(|e| ctx.fail(e))?;
    Ok(vec![uid_item(object.uid()), validity_item(valid)])
}

/// Re-key (KMIP 1.4 §4.4): a new symmetric key of the same type replaces the existing
/// one. The Name moves to the new key (the existing key keeps a server-made key name),
/// the client's attributes are copied, each key links to the other (Replacement Object,
/// Replaced Object), and the new key is Active if the existing one is. The existing key
/// stays as it is otherwise: revoke and destroy it when its data is re-encrypted.
async fn rekey(ctx: &Ctx<'_>, payload: &Ttlv) -> Answer {
    let object = object_of(payload)?;
    if payload
        .find(tag::OFFSET)
        .and_then(Ttlv::as_interval)
        .is_some_and(|o| o != 0)
    {
        return Err(Fail::new(
            reason::FEATURE_NOT_SUPPORTED,
            "Re-key with an Offset is not supported: the new key's dates are now",
        ));
    }
    let extra = request_attributes(payload, tag::TEMPLATE_ATTRIBUTE, tag::ATTRIBUTES)?;
    if !extra.is_empty() {
        return Err(Fail::new(
            reason::FEATURE_NOT_SUPPORTED,
            "Re-key copies the existing key's attributes; change them afterwards",
        ));
    }
    let old = details(ctx, object).await?;
    if object.public || is_asymmetric(old.key.algorithm) {
        return Err(Fail::new(
            reason::FEATURE_NOT_SUPPORTED,
            "Re-key replaces symmetric keys (Re-key Key Pair is not supported)",
        ));
    }
    let current = state_of(&old.key, &old.attributes);
    if matches!(current, state::DESTROYED | state::DESTROYED_COMPROMISED) {
        return Err(ctx.lifecycle("a destroyed key is not re-keyed"));
    }
    let name = old.key.name.clone();
    if old.attributes.contains_key(REPLACEMENT_KEY) {
        return Err(ctx.lifecycle("the key was re-keyed already: re-key its replacement"));
    }
    let retired = hashed_name(old.key.id.as_bytes());
    let old_id = KeyId(old.key.id);
    // The name first goes to the existing key's own server-made name...
    let rename = |to: String| KeyPatch {
        name: Some(to),
        ..KeyPatch::default()
    };
    ctx.gateway
        .update_key_and_attributes(
            &ctx.caller,
            old_id,
            rename(retired),
            Attributes::new(),
            vec![NAME_KEY.to_owned()],
        )
        .await
        .map_err(|e| ctx.fail(e))?;
    // ...then a new key takes it, with the existing key's client attributes.
    let mut stored: Attributes = old
        .attributes
        .iter()
        .filter(|(k, _)| {
            k.starts_with("kmip.x.")
                || [NAME_KEY, OBJECT_GROUP_KEY, CONTACT_KEY, USAGE_MASK_KEY].contains(&k.as_str())
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    stored.insert(REPLACED_KEY.into(), uid(old.key.id, false));
    let active = current == state::ACTIVE;
    if active {
        stored.insert(ACTIVATION_KEY.into(), now_seconds().to_string());
    } else {
        stored.insert(STATE_KEY.into(), "pre-active".into());
    }
    let fresh = NewObject {
        name: Some(name.clone()),
        algorithm: None,
        length: None,
        curve: None,
        active,
        stored,
    };
    let new = match make_key(ctx, fresh, old.key.algorithm, None).await {
        Ok(k) => k,
        Err(e) => {
            // The existing key gets its name back.
            let mut back = Attributes::new();
            if let Some(n) = old.attributes.get(NAME_KEY) {
                back.insert(NAME_KEY.into(), n.clone());
            }
            if let Err(undo) = ctx
                .gateway
                .update_key_and_attributes(&ctx.caller, old_id, rename(name), back, Vec::new())
                .await
            {
                tracing::error!(key_id = %old.key.id, error = %undo, "Re-key failed and the key's name was not restored");
            }
            return Err(e);
        }
    };
    let link = [(REPLACEMENT_KEY.to_owned(), uid(new.id, false))].into();
    ctx.gateway
        .update_key_and_attributes(&ctx.caller, old_id, KeyPatch::default(), link, Vec::new())
        .await
        .map_err(|e| ctx.fail(e))?;
    Ok(vec![uid_item(uid(new.id, false))])
}
