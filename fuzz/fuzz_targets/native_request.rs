//! Native API bodies on arbitrary bytes: the first byte picks the request (`e`ncrypt,
//! `d`ecrypt, `s`ign, `v`erify, `m`ac, data `k`ey, `r`e-encrypt, `c`reate key, `p`atch key,
//! `x` delete key, pro`j`ect, s`t`rategy), the rest is its body, read into the typed body
//! and checked as the adapter checks it before the core runs. Nothing panics; every
//! refusal is a 4xx with a code of the adapter's; a body that is not UTF-8 is
//! `malformed_json`; an accepted base64 field re-encodes to its own text.
#![no_main]

use base64::Engine;
use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../src/api/native/bodies.rs"]
mod bodies;

use bodies::*;

/// The key id of the path.
const PATH_KEY: &str = "6f1c9d7e-2b4a-4c3e-9a51-0d8e7f6a5b4c";
/// A small `limits.max_plaintext_bytes`, so the size bound is reached.
const MAX: usize = 1024;
const KINDS: &[u8] = b"edsvmkrcpxjt";

/// The codes of refusals `bodies` can make (docs/API-ERRORS.md).
const CODES: &[&str] = &[
    "malformed_json",
    "invalid_request",
    "invalid_id",
    "invalid_base64",
    "key_id_mismatch",
    "invalid_key_spec",
    "plaintext_too_large",
    "data_too_large",
];

fuzz_target!(|data: &[u8]| {
    let Some((&first, body)) = data.split_first() else {
        return;
    };
    let kind = if KINDS.contains(&first) {
        first
    } else {
        KINDS[usize::from(first) % KINDS.len()]
    };
    let result = check(kind, body);
    if let Err(r) = &result {
        assert!(CODES.contains(&r.code), "unexpected code {r:?}");
        assert!(!r.message.is_empty());
        assert_eq!(
            r.kind == RefusalKind::TooLarge,
            r.code.ends_with("_too_large"),
            "{r:?}"
        );
    }
    if std::str::from_utf8(body).is_err() {
        assert!(
            matches!(&result, Err(r) if r.code == "malformed_json"),
            "a body that is not UTF-8 was not refused as malformed_json"
        );
    }
});

/// What the adapter does with a body of `kind` before the core sees it.
fn check(kind: u8, body: &[u8]) -> Result<(), Refusal> {
    match kind {
        b'e' => {
            let b: EncryptBody = parse_body(body, false)?;
            key_id(PATH_KEY, b.key_id.as_deref())?;
            b64(bounded_b64("plaintext", &b.plaintext, MAX, "plaintext_too_large"), &b.plaintext)?;
        }
        b'd' => {
            let b: DecryptBody = parse_body(body, false)?;
            key_id(PATH_KEY, b.key_id.as_deref())?;
            b64(decode_b64("ciphertext", &b.ciphertext), &b.ciphertext)?;
        }
        b's' | b'v' => {
            let b: SignBody = parse_body(body, false)?;
            key_id(PATH_KEY, b.key_id.as_deref())?;
            b64(decode_b64("data", &b.data), &b.data)?;
            if kind == b'v' {
                let s = b.signature.as_deref().unwrap_or_default();
                b64(decode_b64("signature", s), s)?;
            }
        }
        b'm' => {
            let b: MacBody = parse_body(body, false)?;
            key_id(PATH_KEY, b.key_id.as_deref())?;
            b64(bounded_b64("data", &b.data, MAX, "data_too_large"), &b.data)?;
            if let Some(mac) = &b.mac {
                b64(decode_b64("mac", mac), mac)?;
            }
        }
        b'k' => {
            let b: DataKeyBody = parse_body(body, false)?;
            let length = data_key_length(&b.key_spec)?;
            assert!(length == 16 || length == 32);
        }
        b'r' => {
            let b: ReEncryptBody = parse_body(body, false)?;
            if let Some(d) = &b.destination_key_id {
                id::<uuid::Uuid>(d, "destinationKeyId")?;
            }
            b64(decode_b64("ciphertext", &b.ciphertext), &b.ciphertext)?;
        }
        b'c' => {
            let b: CreateKeyBody = parse_body(body, false)?;
            id::<uuid::Uuid>(&b.project_id, "projectId")?;
        }
        b'p' => {
            let _: PatchKeyBody = parse_body(body, false)?;
        }
        b'x' => {
            let _: DeleteKeyBody = parse_body(body, true)?;
        }
        b'j' => {
            let _: CreateProjectBody = parse_body(body, false)?;
        }
        _ => {
            let _: SetStrategyBody = parse_body(body, false)?;
        }
    }
    Ok(())
}

/// A decoded base64 field: it encodes back to its text (the decoder takes only the
/// canonical form), but for the surrounding whitespace the adapter trims.
fn b64(decoded: Result<Vec<u8>, Refusal>, text: &str) -> Result<(), Refusal> {
    let bytes = decoded?;
    assert_eq!(B64.encode(bytes), text.trim());
    Ok(())
}
