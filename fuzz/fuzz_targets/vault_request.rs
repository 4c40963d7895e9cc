//! Vault Transit request parameters on arbitrary bodies: the body as a JSON object, each
//! field read as every accessor the adapter has (Vault's weak typing), `batch_input` and
//! durations. Nothing panics; every refusal is a 400 with a code of its own; a base64
//! field that is accepted re-encodes to its own text.
#![no_main]

use base64::Engine;
use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../src/api/vault/params.rs"]
mod params;

use params::{Params, Refusal};

fuzz_target!(|data: &[u8]| {
    let p = match Params::parse(data) {
        Ok(p) => p,
        Err(r) => {
            assert!(
                ["malformed_json", "invalid_request"].contains(&r.code),
                "{r:?}"
            );
            return;
        }
    };
    fields(&p);
    match p.batch() {
        Ok(Some(items)) => {
            assert!(!items.is_empty() && items.len() <= params::MAX_BATCH_ITEMS);
            items.iter().for_each(fields);
        }
        Ok(None) => {}
        Err(r) => refused(&r),
    }
});

fn fields(p: &Params) {
    let names: Vec<String> = p.0.keys().cloned().collect();
    for name in names.iter().map(String::as_str).chain(["missing"]) {
        if let Err(r) = p.str(name) {
            refused(&r);
        }
        if let Err(r) = p.bool(name) {
            refused(&r);
        }
        match (p.uint(name), p.u32(name)) {
            (Ok(Some(n)), Ok(Some(m))) => assert_eq!(n, u64::from(m)),
            (Ok(Some(n)), Err(r)) => {
                assert!(n > u64::from(u32::MAX));
                refused(&r);
            }
            (Ok(_), _) => {}
            (Err(r), _) => refused(&r),
        }
        match p.b64(name) {
            Ok(Some(bytes)) => {
                let text = p.str(name).ok().flatten().expect("a base64 field is a string");
                assert_eq!(params::B64.encode(bytes), text);
            }
            Ok(None) => {}
            Err(r) => refused(&r),
        }
        if let Err(r) = params::duration_seconds(p, name) {
            refused(&r);
        }
        if let Ok(Some(text)) = p.str(name) {
            if let Err(r) = params::gateway_ciphertext(text) {
                assert_eq!(r.code, "invalid_ciphertext");
            }
        }
    }
}

/// A parameter refused: answered 400 `invalid_request`, with a message.
fn refused(r: &Refusal) {
    assert_eq!(r.code, "invalid_request", "{r:?}");
    assert!(!r.message.is_empty());
}
