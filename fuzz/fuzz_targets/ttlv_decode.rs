//! The KMIP TTLV decoder on arbitrary bytes: it never panics, and what it accepts it
//! re-encodes byte for byte (the decoder admits only the canonical encoding).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../src/kmip/ttlv.rs"]
mod ttlv;

fuzz_target!(|data: &[u8]| {
    let limits = ttlv::Limits::default();
    let Ok(item) = ttlv::decode(data, &limits) else {
        return;
    };
    assert_eq!(
        ttlv::encode(&item),
        data,
        "decode then encode changed the bytes"
    );
    // A structure that decodes frames to exactly its own length.
    if let Some(header) = data.first_chunk::<{ ttlv::HEADER_LEN }>() {
        if matches!(item.value, ttlv::Value::Structure(_)) {
            assert_eq!(ttlv::message_length(header, &limits), Ok(data.len()));
        }
    }
});
