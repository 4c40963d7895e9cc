//! KMIP attributes as the gateway keeps them: read from a request in either encoding
//! (KMIP 1.x's `Attribute {Attribute Name, Attribute Index, Attribute Value}`, KMIP 2.x's
//! items tagged with the attribute's own tag), written back the same way, and stored as
//! the key's named attributes under `kmip.` where the key record has no field for them.

use super::operations::Fail;
use super::spec::{reason, tag};
use super::ttlv::{self, Ttlv, Value};

/// One attribute: its tag (the standard attribute's, or `CUSTOM_ATTRIBUTE` for `x-`
/// names) and its value, tagged with that tag.
#[derive(Debug, Clone, PartialEq)]
pub struct Attr {
    pub name: String,
    pub value: Ttlv,
}

/// The standard attributes the gateway reads or reports (KMIP 1.4 §3), by name and tag.
const KNOWN: &[(&str, u32)] = &[
    ("Unique Identifier", tag::UNIQUE_IDENTIFIER),
    ("Name", tag::NAME),
    ("Object Type", tag::OBJECT_TYPE),
    ("Cryptographic Algorithm", tag::CRYPTOGRAPHIC_ALGORITHM),
    ("Cryptographic Length", tag::CRYPTOGRAPHIC_LENGTH),
    ("Cryptographic Parameters", tag::CRYPTOGRAPHIC_PARAMETERS),
    (
        "Cryptographic Domain Parameters",
        tag::CRYPTOGRAPHIC_DOMAIN_PARAMETERS,
    ),
    ("Cryptographic Usage Mask", tag::CRYPTOGRAPHIC_USAGE_MASK),
    ("Operation Policy Name", tag::OPERATION_POLICY_NAME),
    ("State", tag::STATE),
    ("Initial Date", tag::INITIAL_DATE),
    ("Activation Date", tag::ACTIVATION_DATE),
    ("Deactivation Date", tag::DEACTIVATION_DATE),
    ("Destroy Date", tag::DESTROY_DATE),
    (
        "Compromise Occurrence Date",
        tag::COMPROMISE_OCCURRENCE_DATE,
    ),
    ("Compromise Date", tag::COMPROMISE_DATE),
    ("Revocation Reason", tag::REVOCATION_REASON),
    ("Object Group", tag::OBJECT_GROUP),
    ("Link", tag::LINK),
    ("Contact Information", tag::CONTACT_INFORMATION),
    ("Last Change Date", tag::LAST_CHANGE_DATE),
    ("Original Creation Date", tag::ORIGINAL_CREATION_DATE),
    (
        "Digital Signature Algorithm",
        tag::DIGITAL_SIGNATURE_ALGORITHM,
    ),
    ("Sensitive", tag::SENSITIVE),
    ("Always Sensitive", tag::ALWAYS_SENSITIVE),
    ("Extractable", tag::EXTRACTABLE),
    ("Never Extractable", tag::NEVER_EXTRACTABLE),
];

pub fn tag_of(name: &str) -> Option<u32> {
    KNOWN.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

pub fn name_of(t: u32) -> Option<&'static str> {
    KNOWN.iter().find(|(_, k)| *k == t).map(|(n, _)| *n)
}

/// Client-defined attributes (KMIP 1.4 §3.40: names starting `x-`).
pub fn is_custom(name: &str) -> bool {
    name.starts_with("x-") && name.len() > 2
}

/// The attributes in `container`: a 1.x Template-Attribute (or a payload holding
/// `Attribute` items) or a 2.x Attributes structure.
pub fn read(container: &Ttlv, v2: bool) -> Result<Vec<Attr>, Fail> {
    let mut out = Vec::new();
    for item in container.items() {
        if item.tag == tag::ATTRIBUTE {
            out.push(read_v1(item)?);
        } else if v2 {
            let name = name_of(item.tag).ok_or_else(|| {
                Fail::new(
                    reason::INVALID_FIELD,
                    format!(
                        "attribute tag 0x{:06X} is not one the gateway knows",
                        item.tag
                    ),
                )
            })?;
            out.push(Attr {
                name: name.to_owned(),
                value: item.clone(),
            });
        }
    }
    Ok(out)
}

/// One 1.x `Attribute` structure.
pub fn read_v1(item: &Ttlv) -> Result<Attr, Fail> {
    let name = item
        .find(tag::ATTRIBUTE_NAME)
        .and_then(Ttlv::as_text)
        .ok_or_else(|| Fail::new(reason::INVALID_FIELD, "an Attribute has no Attribute Name"))?;
    let value = item.find(tag::ATTRIBUTE_VALUE).ok_or_else(|| {
        Fail::new(
            reason::INVALID_FIELD,
            format!("attribute {name:?} has no value"),
        )
    })?;
    let t = match tag_of(name) {
        Some(t) => t,
        None if is_custom(name) => tag::CUSTOM_ATTRIBUTE,
        None => {
            return Err(Fail::new(
                reason::INVALID_FIELD,
                format!("attribute {name:?} is not one the gateway knows"),
            ))
        }
    };
    Ok(Attr {
        name: name.to_owned(),
        value: Ttlv::new(t, value.value.clone()),
    })
}

/// `attr` as a request or response carries it in `version`.
pub fn write(attr: &Attr, v2: bool) -> Ttlv {
    if v2 && attr.value.tag != tag::CUSTOM_ATTRIBUTE {
        return attr.value.clone();
    }
    Ttlv::structure(
        tag::ATTRIBUTE,
        vec![
            Ttlv::new(tag::ATTRIBUTE_NAME, Value::TextString(attr.name.clone())),
            Ttlv::new(tag::ATTRIBUTE_VALUE, attr.value.value.clone()),
        ],
    )
}

/// The name of the key attribute that stores a client-defined attribute: `kmip.x.` then
/// the hex of its KMIP name (stored names are lower-case ASCII).
pub fn custom_key(name: &str) -> String {
    format!("kmip.x.{}", hex::encode(name.as_bytes()))
}

/// The KMIP name of a stored client-defined attribute.
pub fn custom_name(stored: &str) -> Option<String> {
    let h = stored.strip_prefix("kmip.x.")?;
    String::from_utf8(hex::decode(h).ok()?).ok()
}

/// A stored value: the hex of the value's TTLV encoding (any type round-trips).
pub fn encode_value(value: &Ttlv) -> String {
    hex::encode(ttlv::encode(value))
}

pub fn decode_value(stored: &str) -> Option<Ttlv> {
    let bytes = hex::decode(stored).ok()?;
    ttlv::decode(&bytes, &ttlv::Limits::default()).ok()
}

/// The text of a Name attribute's value.
pub fn name_value(value: &Ttlv) -> Option<&str> {
    value.find(tag::NAME_VALUE).and_then(Ttlv::as_text)
}

pub fn name_attr(name: &str) -> Attr {
    Attr {
        name: "Name".into(),
        value: Ttlv::structure(
            tag::NAME,
            vec![
                Ttlv::new(tag::NAME_VALUE, Value::TextString(name.to_owned())),
                Ttlv::new(
                    tag::NAME_TYPE,
                    Value::Enumeration(super::spec::NAME_TYPE_TEXT),
                ),
            ],
        ),
    }
}

pub fn simple(t: u32, value: Value) -> Attr {
    Attr {
        name: name_of(t).unwrap_or("?").to_owned(),
        value: Ttlv::new(t, value),
    }
}
