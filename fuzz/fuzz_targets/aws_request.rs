//! AWS KMS JSON 1.1 bodies on arbitrary bytes: the body as a JSON object and each field
//! read by every accessor the adapter has. Nothing panics; every refusal is a 400 with a
//! code of the adapter's; an accepted blob re-encodes to its own text.
#![no_main]

use base64::Engine;
use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../src/api/aws/fields.rs"]
mod fields;

use fields::{Fields, Refusal};

fuzz_target!(|data: &[u8]| {
    let body = match fields::parse_body(data) {
        Ok(body) => body,
        Err(r) => {
            assert_eq!(r.code, "malformed_json", "{r:?}");
            return;
        }
    };
    let f = Fields(&body);
    let names: Vec<&str> = body.keys().map(String::as_str).collect();
    for name in names.into_iter().chain(["Missing", ""]) {
        let text = f.str(name).map_err(|r| refused(&r)).ok().flatten();
        match f.required_str(name) {
            Ok(s) => assert_eq!(Some(s), text),
            Err(r) => refused(&r),
        }
        if let Err(r) = f.int(name) {
            refused(&r);
        }
        match f.required_blob(name) {
            Ok(bytes) => assert_eq!(Some(fields::B64.encode(bytes).as_str()), text),
            Err(r) => refused(&r),
        }
        if let Err(r) = f.string_map(name) {
            refused(&r);
        }
        if let Err(r) = f.list(name) {
            refused(&r);
        }
        if let Err(r) = f.refuse_field(name, "not here") {
            refused(&r);
        }
    }
});

fn refused(r: &Refusal) {
    assert!(
        ["malformed_json", "invalid_request", "unsupported_operation"].contains(&r.code),
        "{r:?}"
    );
    assert!(!r.message.is_empty());
}
