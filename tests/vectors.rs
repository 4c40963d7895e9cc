//! The software parts of `../shared/vectors/key-hierarchy.json`: root wrapping, KEK
//! derivation, wrapped material and the data ciphertext format. (The fragment vectors
//! run on a real token in tests/fragments.rs.)

mod common;

use std::collections::BTreeMap;

use common::{b64, hex, vectors};
use kms_gateway::crypto::{self, AeadKey, CiphertextHeader, CryptoError};

fn arr32(v: &[u8]) -> [u8; 32] {
    v.try_into().expect("32 bytes")
}

fn arr12(v: &[u8]) -> [u8; 12] {
    v.try_into().expect("12 bytes")
}

fn uuid_bytes(v: &serde_json::Value) -> [u8; 16] {
    *uuid::Uuid::parse_str(v.as_str().unwrap())
        .unwrap()
        .as_bytes()
}

#[test]
fn root_software_vector() {
    let v = vectors();
    let r = &v["root_software"];
    let rek = arr32(&b64(&r["root_encryption_key_b64"]));
    let irk = arr32(&hex(&r["instance_root_key"]));
    let blob = crypto::seal_root_software(&rek, &arr12(&hex(&r["nonce"])), &irk);
    assert_eq!(blob, b64(&r["wrapped_root_b64"]));
    assert_eq!(*crypto::open_root_software(&rek, &blob).unwrap(), irk);
    let mut wrong = rek;
    wrong[0] ^= 1;
    assert_eq!(
        crypto::open_root_software(&wrong, &blob).unwrap_err(),
        CryptoError::Authentication
    );
}

#[test]
fn kek_vector() {
    let v = vectors();
    let k = &v["kek"];
    let irk = arr32(&hex(&k["instance_root_key"]));
    let fv = arr32(&hex(&k["fragment_value"]));
    let id = uuid_bytes(&k["key_id"]);
    let version = k["version"].as_u64().unwrap() as u32;
    assert_eq!(
        crypto::kek(&irk, Some(&fv), &id, version).to_vec(),
        hex(&k["kek_with_fragment"])
    );
    assert_eq!(
        crypto::kek(&irk, None, &id, version).to_vec(),
        hex(&k["kek_without_fragment"])
    );
    assert_ne!(
        crypto::kek(&irk, None, &id, version + 1).to_vec(),
        hex(&k["kek_without_fragment"])
    );
}

#[test]
fn material_vector() {
    let v = vectors();
    let m = &v["material"];
    let kek = arr32(&hex(&m["kek"]));
    let id = uuid_bytes(&m["key_id"]);
    let version = m["version"].as_u64().unwrap() as u32;
    let aad = crypto::material_aad(&id, version, m["algorithm"].as_str().unwrap());
    let wrapped =
        crypto::seal_material(&kek, &arr12(&hex(&m["nonce"])), &hex(&m["material"]), &aad);
    assert_eq!(wrapped, b64(&m["wrapped_b64"]));
    assert_eq!(
        crypto::open_material(&kek, &wrapped, &aad)
            .unwrap()
            .to_vec(),
        hex(&m["material"])
    );
    let other_aad = crypto::material_aad(&id, version + 1, m["algorithm"].as_str().unwrap());
    assert!(
        crypto::open_material(&kek, &wrapped, &other_aad).is_err(),
        "version is bound"
    );
}

#[test]
fn data_vectors() {
    let v = vectors();
    for d in v["data"].as_array().unwrap() {
        let key = AeadKey::new(&hex(&d["key"])).unwrap();
        let header = CiphertextHeader {
            key_id: uuid_bytes(&d["key_id"]),
            version: d["version"].as_u64().unwrap() as u32,
        };
        let ctx: BTreeMap<String, String> =
            serde_json::from_value(d["encryption_context"].clone()).unwrap();
        let encoded = crypto::encode_context(&ctx);
        let pt = b64(&d["plaintext_b64"]);
        let ct = crypto::seal_data(&key, header, &arr12(&hex(&d["nonce"])), &pt, &encoded);
        assert_eq!(ct, b64(&d["ciphertext_b64"]), "{}", d["algorithm"]);
        assert_eq!(crypto::decode_ciphertext_header(&ct).unwrap(), header);
        assert_eq!(crypto::open_data(&key, &ct, &encoded).unwrap().to_vec(), pt);
        let mut other = ctx.clone();
        other.insert("extra".into(), "x".into());
        assert_eq!(
            crypto::open_data(&key, &ct, &crypto::encode_context(&other)).unwrap_err(),
            CryptoError::Authentication
        );
        let mut tampered = ct.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert_eq!(
            crypto::open_data(&key, &tampered, &encoded).unwrap_err(),
            CryptoError::Authentication
        );
    }
}

#[test]
fn context_encoding_is_in_byte_order_of_keys() {
    let mut ctx = BTreeMap::new();
    ctx.insert("b".to_string(), "2".to_string());
    ctx.insert("a".to_string(), "1".to_string());
    assert_eq!(
        crypto::encode_context(&ctx),
        b"\0\0\0\x01a\0\0\0\x011\0\0\0\x01b\0\0\0\x012".to_vec()
    );
    assert!(crypto::encode_context(&BTreeMap::new()).is_empty());
}
