//! The AWS KMS JSON 1.1 body and its fields as the adapter reads them: a JSON object,
//! strings, integers, blobs (base64), maps of strings, lists, fields refused when set, with
//! AWS's messages. Pure parsing (serde_json and base64 only, refusals as [`Refusal`]), so
//! the fuzz targets of `fuzz/` compile this file on its own.

use std::collections::BTreeMap;

use base64::Engine;
use serde_json::{Map, Value};

pub const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A body or field the client got wrong: always a 400, with a stable `code`
/// (`malformed_json`, `invalid_request` or `unsupported_operation`) and AWS's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: &'static str,
    pub message: String,
}

fn wrong_type(name: &str, what: &str) -> Refusal {
    Refusal {
        code: "malformed_json",
        message: format!("{name} must be {what}"),
    }
}

fn missing(name: &str) -> Refusal {
    Refusal {
        code: "invalid_request",
        message: format!(
            "1 validation error detected: Value null at '{}' failed to satisfy constraint: Member must not be null",
            lower_first(name)
        ),
    }
}

/// `KeyId` → `keyId`, as AWS names members in its messages.
pub fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

/// The body as a JSON object; an empty (or all-whitespace) body is `{}`.
pub fn parse_body(body: &[u8]) -> Result<Map<String, Value>, Refusal> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(Refusal {
            code: "malformed_json",
            message: "the request body must be a JSON object".into(),
        }),
        Err(e) => Err(Refusal {
            code: "malformed_json",
            message: format!("malformed JSON at line {} column {}", e.line(), e.column()),
        }),
    }
}

/// The fields of a request.
#[derive(Debug, Clone, Copy)]
pub struct Fields<'a>(pub &'a Map<String, Value>);

impl<'a> Fields<'a> {
    pub fn str(&self, name: &str) -> Result<Option<&'a str>, Refusal> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(wrong_type(name, "a string")),
        }
    }

    pub fn required_str(&self, name: &str) -> Result<&'a str, Refusal> {
        self.str(name)?
            .filter(|s| !s.is_empty())
            .ok_or_else(|| missing(name))
    }

    pub fn int(&self, name: &str) -> Result<Option<i64>, Refusal> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .map(Some)
                .ok_or_else(|| wrong_type(name, "an integer")),
            Some(_) => Err(wrong_type(name, "an integer")),
        }
    }

    /// A blob field (base64 in the JSON protocol); `None` when absent.
    pub fn blob(&self, name: &str) -> Result<Option<Vec<u8>>, Refusal> {
        match self.str(name)? {
            None => Ok(None),
            Some(s) => B64
                .decode(s)
                .map(Some)
                .map_err(|_| wrong_type(name, "base64 (a blob)")),
        }
    }

    pub fn required_blob(&self, name: &str) -> Result<Vec<u8>, Refusal> {
        self.blob(name)?.ok_or_else(|| missing(name))
    }

    /// A map of strings (`EncryptionContext`); empty when absent.
    pub fn string_map(&self, name: &str) -> Result<BTreeMap<String, String>, Refusal> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(Default::default()),
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k.clone(), s.clone())),
                    _ => Err(wrong_type(name, "a map of strings")),
                })
                .collect(),
            Some(_) => Err(wrong_type(name, "a map of strings")),
        }
    }

    pub fn list(&self, name: &str) -> Result<Vec<Value>, Refusal> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(a)) => Ok(a.clone()),
            Some(_) => Err(wrong_type(name, "a list")),
        }
    }

    /// Refuses a field this gateway does not support when it is set.
    pub fn refuse_field(&self, name: &str, why: &str) -> Result<(), Refusal> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(()),
            Some(Value::Bool(false)) => Ok(()),
            Some(_) => Err(Refusal {
                code: "unsupported_operation",
                message: format!("{name} is not supported: {why}"),
            }),
        }
    }
}
