//! The gateway's own ciphertext formats on arbitrary bytes: the DESIGN.md §4 ciphertext
//! (header, nonce, sealed part; the native API's and AWS's `CiphertextBlob` after base64),
//! Vault's `vault:v<N>:` value around it, and the encoding of an encryption context. None
//! panics; a ciphertext that is accepted reassembles byte for byte, a Vault value
//! re-encodes to one that decodes the same, and an encoded context reads back as the pairs
//! it was made of.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../src/crypto/format.rs"]
mod format;

#[allow(dead_code)]
#[path = "../../src/api/vault/params.rs"]
mod params;

fuzz_target!(|data: &[u8]| {
    raw_ciphertext(data);
    if let Ok(text) = std::str::from_utf8(data) {
        vault_value(text);
    }
    context(data);
});

fn raw_ciphertext(data: &[u8]) {
    match format::decode_ciphertext_header(data) {
        Ok(header) => {
            let (nonce, sealed) =
                format::split_data(data).expect("a ciphertext whose header reads splits");
            assert_eq!(format::assemble_data(header, &nonce, sealed), data);
            assert_eq!(
                format::data_aad(header, b""),
                &data[..format::CIPHERTEXT_HEADER_LEN]
            );
            assert!(sealed.len() >= format::TAG_LEN);
        }
        Err(e) => {
            assert_eq!(e, format::CryptoError::Malformed("ciphertext"));
            assert!(format::split_data(data).is_err());
        }
    }
}

fn vault_value(text: &str) {
    match params::decode(text, "ciphertext") {
        Ok((version, bytes)) => {
            assert!(version > 0);
            let again = params::encode(version, &bytes);
            assert_eq!(
                params::decode(&again, "ciphertext"),
                Ok((version, bytes.clone()))
            );
            match params::gateway_ciphertext(text) {
                Ok(inner) => {
                    assert_eq!(inner, bytes);
                    if let Ok(header) = format::decode_ciphertext_header(&inner) {
                        assert_eq!(header.version, version);
                    }
                }
                Err(r) => assert_eq!(r.code, "invalid_ciphertext"),
            }
        }
        Err(r) => {
            assert_eq!(r.code, "invalid_ciphertext");
            assert!(params::gateway_ciphertext(text).is_err());
        }
    }
}

/// The input as the pairs of a context (NUL-separated, lossy UTF-8), encoded and then
/// read back by the layout DESIGN.md gives.
fn context(data: &[u8]) {
    let parts: Vec<String> = data
        .split(|b| *b == 0)
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    let pairs: BTreeMap<String, String> = parts
        .chunks_exact(2)
        .map(|kv| (kv[0].clone(), kv[1].clone()))
        .collect();
    let encoded = format::encode_context(&pairs);
    let mut rest = &encoded[..];
    let mut read = Vec::new();
    while !rest.is_empty() {
        let (k, r) = length_prefixed(rest);
        let (v, r) = length_prefixed(r);
        read.push((k.to_owned(), v.to_owned()));
        rest = r;
    }
    let expected: Vec<(String, String)> = pairs.into_iter().collect();
    assert_eq!(read, expected, "the encoded context does not read back");
}

fn length_prefixed(bytes: &[u8]) -> (&str, &[u8]) {
    let (len, rest) = bytes.split_first_chunk::<4>().expect("a length");
    let (part, rest) = rest.split_at(u32::from_be_bytes(*len) as usize);
    (std::str::from_utf8(part).expect("UTF-8"), rest)
}
