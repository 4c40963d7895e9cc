//! Key lifecycle and envelope encryption: rotation, every version decrypting,
//! `minDecryptionVersion`, re-encryption to the newest version, data keys.

mod common;

use base64::Engine;
use common::gateway::{Gateway, B64};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_keeps_every_version_decryptable_down_to_the_minimum() {
    let mut gw = Gateway::start();
    let project = gw.project("lifecycle").await;
    let key = gw
        .key(&project, "rotating", "encrypt-decrypt", "aes-256-gcm", None)
        .await;
    let ctx = Some(json!({"app": "billing"}));
    let mut cts = Vec::new();
    for v in 1..=3u32 {
        let (s, enc) = gw
            .encrypt(&key, format!("v{v}").as_bytes(), ctx.clone())
            .await;
        assert_eq!(s, 200);
        let ct = B64.decode(enc["ciphertext"].as_str().unwrap()).unwrap();
        assert_eq!(
            &ct[17..21],
            &v.to_be_bytes(),
            "encrypt uses the newest version"
        );
        cts.push(enc["ciphertext"].as_str().unwrap().to_owned());
        if v < 3 {
            let (s, r) = gw
                .post(&format!("/api/v1/kms/keys/{key}/rotate"), json!({}))
                .await;
            assert_eq!(
                (s, r["key"]["version"].as_u64()),
                (200, Some(u64::from(v) + 1)),
                "{r}"
            );
        }
    }
    gw.restart();
    for (i, ct) in cts.iter().enumerate() {
        let (s, d) = gw.decrypt(&key, ct, ctx.clone()).await;
        assert_eq!(s, 200, "{d}");
        assert_eq!(
            B64.decode(d["plaintext"].as_str().unwrap()).unwrap(),
            format!("v{}", i + 1).as_bytes()
        );
    }
    let (_, k) = gw.get(&format!("/api/v1/kms/keys/{key}")).await;
    let versions: Vec<u64> = k["key"]["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, [1, 2, 3]);
    assert_eq!(k["key"]["minDecryptionVersion"], 1);

    // Re-encrypt moves an old ciphertext to the newest version without showing plaintext.
    let (s, re) = gw
        .post(
            &format!("/api/v1/kms/keys/{key}/re-encrypt"),
            json!({"ciphertext": cts[0], "encryptionContext": {"app": "billing"}}),
        )
        .await;
    assert_eq!(s, 200, "{re}");
    assert_eq!(re["version"], 3);
    assert!(re.get("plaintext").is_none());
    let moved = re["ciphertext"].as_str().unwrap().to_owned();

    // Raise the floor: version 1 and 2 ciphertexts are refused with their own code.
    let (s, p) = gw
        .call(
            reqwest::Method::PATCH,
            &format!("/api/v1/kms/keys/{key}"),
            Some(json!({"minDecryptionVersion": 3})),
        )
        .await;
    assert_eq!(
        (s, p["key"]["minDecryptionVersion"].as_u64()),
        (200, Some(3))
    );
    for ct in &cts[..2] {
        let (s, e) = gw.decrypt(&key, ct, ctx.clone()).await;
        assert_eq!(
            (s, e["code"].as_str()),
            (400, Some("version_below_minimum")),
            "{e}"
        );
    }
    let (s, d) = gw.decrypt(&key, &moved, ctx.clone()).await;
    assert_eq!(
        (s, B64.decode(d["plaintext"].as_str().unwrap()).unwrap()),
        (200, b"v1".to_vec())
    );
    for bad in [0, 4] {
        let (s, e) = gw
            .call(
                reqwest::Method::PATCH,
                &format!("/api/v1/kms/keys/{key}"),
                Some(json!({"minDecryptionVersion": bad})),
            )
            .await;
        assert_eq!(
            (s, e["code"].as_str()),
            (400, Some("invalid_request")),
            "{bad}: {e}"
        );
    }

    // Re-encrypt into another key, with another context.
    let other = gw
        .key(&project, "other", "encrypt-decrypt", "aes-128-gcm", None)
        .await;
    let (s, re) = gw.post(&format!("/api/v1/kms/keys/{key}/re-encrypt"), json!({"ciphertext": cts[2], "encryptionContext": {"app": "billing"}, "destinationKeyId": other, "destinationEncryptionContext": {"app": "archive"}})).await;
    assert_eq!(
        (s, re["keyId"].as_str()),
        (200, Some(other.as_str())),
        "{re}"
    );
    let (s, d) = gw
        .decrypt(
            &other,
            re["ciphertext"].as_str().unwrap(),
            Some(json!({"app": "archive"})),
        )
        .await;
    assert_eq!(
        (s, B64.decode(d["plaintext"].as_str().unwrap()).unwrap()),
        (200, b"v3".to_vec())
    );

    // Signing keys are not rotated (a signature names no version).
    let ec = gw
        .key(&project, "signer", "sign-verify", "ECC_NIST_P256", None)
        .await;
    let (s, e) = gw
        .post(&format!("/api/v1/kms/keys/{ec}/rotate"), json!({}))
        .await;
    assert_eq!((s, e["code"].as_str()), (400, Some("not_supported")));
    // A disabled key is not rotated either.
    gw.call(
        reqwest::Method::PATCH,
        &format!("/api/v1/kms/keys/{key}"),
        Some(json!({"isDisabled": true})),
    )
    .await;
    let (s, e) = gw
        .post(&format!("/api/v1/kms/keys/{key}/rotate"), json!({}))
        .await;
    assert_eq!((s, e["code"].as_str()), (409, Some("key_disabled")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_keys_for_envelope_encryption() {
    let gw = Gateway::start();
    let project = gw.project("envelope").await;
    let key = gw
        .key(&project, "kek", "encrypt-decrypt", "aes-256-gcm", None)
        .await;
    for (spec, len) in [("AES_256", 32), ("AES_128", 16)] {
        let (s, dk) = gw
            .post(
                &format!("/api/v1/kms/keys/{key}/generate-data-key"),
                json!({"keySpec": spec, "encryptionContext": {"file": "a.bin"}}),
            )
            .await;
        assert_eq!(s, 200, "{dk}");
        let plaintext = B64.decode(dk["plaintext"].as_str().unwrap()).unwrap();
        assert_eq!(plaintext.len(), len);
        let (s, d) = gw
            .decrypt(
                &key,
                dk["ciphertextBlob"].as_str().unwrap(),
                Some(json!({"file": "a.bin"})),
            )
            .await;
        assert_eq!(
            (s, B64.decode(d["plaintext"].as_str().unwrap()).unwrap()),
            (200, plaintext)
        );
        let (s, e) = gw
            .decrypt(&key, dk["ciphertextBlob"].as_str().unwrap(), None)
            .await;
        assert_eq!(
            (s, e["code"].as_str()),
            (400, Some("decryption_failed")),
            "the context is bound"
        );
    }
    let (s, dk) = gw
        .post(
            &format!("/api/v1/kms/keys/{key}/generate-data-key-without-plaintext"),
            json!({"keySpec": "AES_256"}),
        )
        .await;
    assert_eq!(s, 200);
    assert!(dk.get("plaintext").is_none(), "{dk}");
    let (s, d) = gw
        .decrypt(&key, dk["ciphertextBlob"].as_str().unwrap(), None)
        .await;
    assert_eq!(
        (
            s,
            B64.decode(d["plaintext"].as_str().unwrap()).unwrap().len()
        ),
        (200, 32)
    );
    let (s, dk) = gw
        .post(
            &format!("/api/v1/kms/keys/{key}/generate-data-key"),
            json!({"keySpec": "AES_256", "withoutPlaintext": true}),
        )
        .await;
    assert_eq!(s, 200);
    assert!(dk.get("plaintext").is_none());
    let (s, e) = gw
        .post(
            &format!("/api/v1/kms/keys/{key}/generate-data-key"),
            json!({"keySpec": "DES"}),
        )
        .await;
    assert_eq!((s, e["code"].as_str()), (400, Some("invalid_key_spec")));
    let ec = gw
        .key(&project, "ec", "sign-verify", "ECC_NIST_P256", None)
        .await;
    let (s, e) = gw
        .post(
            &format!("/api/v1/kms/keys/{ec}/generate-data-key"),
            json!({"keySpec": "AES_256"}),
        )
        .await;
    assert_eq!((s, e["code"].as_str()), (400, Some("wrong_key_usage")));
}
