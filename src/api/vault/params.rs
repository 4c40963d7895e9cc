//! Request parameters as Vault reads them and the `vault:v<N>:` wire format. Vault's
//! framework decodes weakly (a number may come as `"256"`, a boolean as `"true"`), so the
//! body is read as a JSON object and each field is taken by name with that tolerance.
//! Pure parsing (serde_json and base64 only, refusals as [`Refusal`]), so the fuzz
//! targets of `fuzz/` compile this file on its own.

use base64::Engine;
use serde_json::{Map, Value};

pub const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Items one `batch_input` may hold.
pub const MAX_BATCH_ITEMS: usize = 256;

/// A parameter the client got wrong: always answered 400, with a stable `code`
/// (`invalid_request`, `malformed_json` or `invalid_ciphertext`) and Vault's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: &'static str,
    pub message: String,
}

fn bad(message: impl Into<String>) -> Refusal {
    Refusal {
        code: "invalid_request",
        message: message.into(),
    }
}

/// A request body or one `batch_input` item.
#[derive(Debug, Clone, Default)]
pub struct Params(pub Map<String, Value>);

impl Params {
    /// The body as an object; an empty body is `{}` (Vault's CLI sends none for rotate).
    pub fn parse(body: &[u8]) -> Result<Self, Refusal> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self::default());
        }
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(m)) => Ok(Self(m)),
            Ok(_) => Err(bad("the request body must be a JSON object")),
            Err(e) => Err(Refusal {
                code: "malformed_json",
                message: format!(
                    "failed to parse JSON input: malformed JSON at line {} column {}",
                    e.line(),
                    e.column()
                ),
            }),
        }
    }

    /// A string field; `None` when absent, null or empty.
    pub fn str(&self, name: &str) -> Result<Option<&str>, Refusal> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(bad(format!("{name} must be a string"))),
        }
    }

    pub fn bool(&self, name: &str) -> Result<Option<bool>, Refusal> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) => match s.as_str() {
                "" => Ok(None),
                "true" | "1" => Ok(Some(true)),
                "false" | "0" => Ok(Some(false)),
                _ => Err(bad(format!("{name} must be a boolean"))),
            },
            Some(_) => Err(bad(format!("{name} must be a boolean"))),
        }
    }

    /// A non-negative integer field (a JSON number or a decimal string).
    pub fn uint(&self, name: &str) -> Result<Option<u64>, Refusal> {
        let err = || bad(format!("{name} must be a non-negative integer"));
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n.as_u64().map(Some).ok_or_else(err),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => s.parse().map(Some).map_err(|_| err()),
            Some(_) => Err(err()),
        }
    }

    /// An integer field that must fit in `u32`.
    pub fn u32(&self, name: &str) -> Result<Option<u32>, Refusal> {
        self.uint(name)?
            .map(|n| u32::try_from(n).map_err(|_| bad(format!("{name} is too large"))))
            .transpose()
    }

    /// A base64 field, decoded.
    pub fn b64(&self, name: &str) -> Result<Option<Vec<u8>>, Refusal> {
        self.str(name)?
            .map(|s| {
                B64.decode(s)
                    .map_err(|_| bad(format!("unable to decode {name} as base64")))
            })
            .transpose()
    }

    /// `batch_input`: `None` when absent; each item an object.
    pub fn batch(&self) -> Result<Option<Vec<Params>>, Refusal> {
        match self.0.get("batch_input") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(items)) => {
                if items.is_empty() {
                    return Err(bad("missing batch input to process"));
                }
                if items.len() > MAX_BATCH_ITEMS {
                    return Err(bad(format!(
                        "batch_input has {} items; at most {} are accepted",
                        items.len(),
                        MAX_BATCH_ITEMS
                    )));
                }
                items
                    .iter()
                    .map(|i| match i {
                        Value::Object(m) => Ok(Params(m.clone())),
                        _ => Err(bad("each batch_input item must be an object")),
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map(Some)
            }
            Some(_) => Err(bad("batch_input must be a list of objects")),
        }
    }
}

/// `vault:v<N>:<base64>`: Vault's format of ciphertexts, signatures and HMACs.
pub fn encode(version: u32, bytes: &[u8]) -> String {
    format!("vault:v{version}:{}", B64.encode(bytes))
}

/// The version and bytes of a `vault:v<N>:` value, or Vault's error message.
pub fn decode(value: &str, what: &str) -> Result<(u32, Vec<u8>), Refusal> {
    decode_with(value, what, &B64)
}

/// As `decode`, with the bytes in `engine`'s base64 (JWS signatures are base64url).
pub fn decode_with(
    value: &str,
    what: &str,
    engine: &impl Engine,
) -> Result<(u32, Vec<u8>), Refusal> {
    let rest = value
        .strip_prefix("vault:")
        .ok_or_else(|| invalid_value(what, "no prefix"))?;
    let (version, encoded) = rest
        .strip_prefix('v')
        .and_then(|r| r.split_once(':'))
        .ok_or_else(|| invalid_value(what, "wrong number of fields"))?;
    let version: u32 = version
        .parse()
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| invalid_value(what, "version number could not be decoded"))?;
    let bytes = engine
        .decode(encoded)
        .map_err(|_| invalid_value(what, "could not decode base64"))?;
    Ok((version, bytes))
}

fn invalid_value(what: &str, why: &str) -> Refusal {
    Refusal {
        code: "invalid_ciphertext",
        message: format!("invalid {what}: {why}"),
    }
}

/// A `ciphertext` parameter: `vault:v<N>:` and the gateway ciphertext (DESIGN.md §4) of
/// version N. A value too short to have a version is left to the core to refuse.
pub fn gateway_ciphertext(text: &str) -> Result<Vec<u8>, Refusal> {
    let (version, bytes) = decode(text, "ciphertext")?;
    if let Some(inner) = bytes.get(17..21) {
        if u32::from_be_bytes([inner[0], inner[1], inner[2], inner[3]]) != version {
            return Err(Refusal {
                code: "invalid_ciphertext",
                message:
                    "invalid ciphertext: its prefix names another key version than the ciphertext"
                        .into(),
            });
        }
    }
    Ok(bytes)
}

/// DER SubjectPublicKeyInfo as PEM (`-----BEGIN PUBLIC KEY-----`), as Vault shows keys.
pub fn public_key_pem(der: &[u8]) -> String {
    let b64 = B64.encode(der);
    let mut out = String::from("-----BEGIN PUBLIC KEY-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END PUBLIC KEY-----\n");
    out
}

/// A duration as Vault takes it: seconds as a number, or a string of `<n>s|m|h|d`.
pub fn duration_seconds(params: &Params, name: &str) -> Result<Option<u64>, Refusal> {
    let err = || {
        bad(format!(
            "{name} must be seconds or a duration such as \"720h\""
        ))
    };
    let text = match params.0.get(name) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => return n.as_u64().map(Some).ok_or_else(err),
        Some(Value::String(s)) if s.is_empty() => return Ok(None),
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(err()),
    };
    if let Ok(n) = text.parse::<u64>() {
        return Ok(Some(n));
    }
    // The unit is the last character, which need not be one byte.
    let mut chars = text.chars();
    let unit = chars.next_back();
    let number = chars.as_str();
    let factor = match unit {
        Some('s') => 1,
        Some('m') => 60,
        Some('h') => 3600,
        Some('d') => 86400,
        _ => return Err(err()),
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(factor))
        .map(Some)
        .ok_or_else(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vault_values_round_trip_and_bad_ones_are_refused() {
        let v = encode(7, b"abc");
        assert_eq!(v, "vault:v7:YWJj");
        assert_eq!(decode(&v, "ciphertext").ok(), Some((7, b"abc".to_vec())));
        for bad in [
            "v7:YWJj",
            "vault:7:YWJj",
            "vault:v0:YWJj",
            "vault:vx:YWJj",
            "vault:v7",
            "vault:v7:***",
        ] {
            assert!(decode(bad, "ciphertext").is_err(), "{bad}");
        }
    }

    #[test]
    fn parameters_are_read_as_vault_reads_them() {
        let p = Params::parse(br#"{"bits": "512", "n": 3, "t": "true", "f": false, "s": ""}"#)
            .ok()
            .unwrap();
        assert_eq!(p.uint("bits").ok().flatten(), Some(512));
        assert_eq!(p.uint("n").ok().flatten(), Some(3));
        assert_eq!(p.bool("t").ok().flatten(), Some(true));
        assert_eq!(p.bool("f").ok().flatten(), Some(false));
        assert_eq!(p.str("s").ok().flatten(), None);
        assert!(p.uint("t").is_err());
        assert!(Params::parse(b"[1]").is_err());
        assert!(Params::parse(b"").is_ok());
        let d = Params::parse(br#"{"a": "720h", "b": 86400, "c": "1x"}"#)
            .ok()
            .unwrap();
        assert_eq!(duration_seconds(&d, "a").ok().flatten(), Some(720 * 3600));
        assert_eq!(duration_seconds(&d, "b").ok().flatten(), Some(86400));
        assert!(duration_seconds(&d, "c").is_err());
    }

    #[test]
    fn a_duration_ending_in_a_multibyte_character_is_refused() {
        // Found by the vault_request fuzz target: the unit was split off at a byte
        // offset, which panicked inside a character.
        for text in ["1é", "é", "720h€", "🕐"] {
            let body = serde_json::json!({ "ttl": text }).to_string();
            let p = Params::parse(body.as_bytes()).unwrap();
            let refused = duration_seconds(&p, "ttl").unwrap_err();
            assert_eq!(refused.code, "invalid_request", "{text}");
        }
        let p = Params::parse(br#"{"ttl": "3d"}"#).unwrap();
        assert_eq!(duration_seconds(&p, "ttl").unwrap(), Some(3 * 86400));
    }

    #[test]
    fn a_ciphertext_whose_prefix_names_another_version_is_refused() {
        let mut raw = vec![1u8; 49];
        raw[17..21].copy_from_slice(&3u32.to_be_bytes());
        assert_eq!(gateway_ciphertext(&encode(3, &raw)).unwrap(), raw);
        let refused = gateway_ciphertext(&encode(2, &raw)).unwrap_err();
        assert_eq!(refused.code, "invalid_ciphertext");
        assert_eq!(gateway_ciphertext(&encode(2, b"short")).unwrap(), b"short");
    }

    #[test]
    fn public_keys_are_pem_with_64_character_lines() {
        let pem = public_key_pem(&[7u8; 100]);
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        assert!(pem.lines().all(|l| l.len() <= 64));
        assert!(pem.ends_with("-----END PUBLIC KEY-----\n"));
    }
}
