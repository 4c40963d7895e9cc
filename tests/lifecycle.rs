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

fn days_from_now(rfc3339: &str) -> f64 {
    let t = time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .unwrap();
    (t - time::OffsetDateTime::now_utc()).as_seconds_f64() / 86_400.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_deletion_refuses_use_can_be_cancelled_then_destroys() {
    use reqwest::Method as M;
    let gw = Gateway::start_with(&[("KMSGW__LIFECYCLE__SWEEP_INTERVAL_SECONDS", "1")]);
    let project = gw.project("deletion").await;
    let key = gw
        .key(&project, "doomed", "encrypt-decrypt", "aes-256-gcm", None)
        .await;
    let keep = gw
        .key(&project, "kept", "encrypt-decrypt", "aes-256-gcm", None)
        .await;
    let (_, enc) = gw.encrypt(&key, b"before deletion", None).await;
    let ct = enc["ciphertext"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/kms/keys/{key}");
    for days in ["6", "31", "x"] {
        let (s, e) = gw
            .call(M::DELETE, &format!("{path}?pendingWindowDays={days}"), None)
            .await;
        assert_eq!(
            (s, e["code"].as_str()),
            (400, Some("invalid_request")),
            "{days}: {e}"
        );
    }
    let (s, d) = gw.call(M::DELETE, &path, None).await;
    assert_eq!(
        (s, d["key"]["keyState"].as_str()),
        (200, Some("PendingDeletion")),
        "{d}"
    );
    let window = days_from_now(d["key"]["deletionDate"].as_str().unwrap());
    assert!(
        (29.9..=30.0).contains(&window),
        "default window is 30 days: {window}"
    );

    // Pending: every use is refused with its own code; metadata stays readable.
    let (s, e) = gw.encrypt(&key, b"x", None).await;
    assert_eq!((s, e["code"].as_str()), (409, Some("key_pending_deletion")));
    let (s, e) = gw.decrypt(&key, &ct, None).await;
    assert_eq!((s, e["code"].as_str()), (409, Some("key_pending_deletion")));
    let (s, e) = gw.post(&format!("{path}/rotate"), json!({})).await;
    assert_eq!((s, e["code"].as_str()), (409, Some("key_pending_deletion")));
    let (s, e) = gw
        .call(M::PATCH, &path, Some(json!({"isDisabled": false})))
        .await;
    assert_eq!((s, e["code"].as_str()), (409, Some("key_pending_deletion")));
    let (s, e) = gw.call(M::DELETE, &path, None).await;
    assert_eq!((s, e["code"].as_str()), (409, Some("key_pending_deletion")));
    let (s, _) = gw.get(&path).await;
    assert_eq!(s, 200);

    // Cancelled: usable again, old ciphertexts decrypt.
    let (s, c) = gw.post(&format!("{path}/cancel-deletion"), json!({})).await;
    assert_eq!(
        (s, c["key"]["keyState"].as_str()),
        (200, Some("Enabled")),
        "{c}"
    );
    assert!(c["key"]["deletionDate"].is_null());
    let (s, d) = gw.decrypt(&key, &ct, None).await;
    assert_eq!(
        (s, B64.decode(d["plaintext"].as_str().unwrap()).unwrap()),
        (200, b"before deletion".to_vec())
    );
    let (s, e) = gw.post(&format!("{path}/cancel-deletion"), json!({})).await;
    assert_eq!(
        (s, e["code"].as_str()),
        (409, Some("key_not_pending_deletion"))
    );

    // Scheduled again with the shortest window; when the date passes, the sweeper
    // destroys the key and its wrapped material, and records it.
    let (s, d) = gw
        .call(M::DELETE, &format!("{path}?pendingWindowDays=7"), None)
        .await;
    assert_eq!(s, 200);
    let window = days_from_now(d["key"]["deletionDate"].as_str().unwrap());
    assert!((6.9..=7.0).contains(&window), "{window}");
    let (s, _) = gw.get(&path).await;
    assert_eq!(s, 200, "not destroyed before its date");
    assert_eq!(
        gw.sql(&format!(
            "UPDATE keys SET deletion_date = '2020-01-01T00:00:00Z' WHERE id = '{key}'"
        )),
        1
    );
    let e = gw.wait_for_status(&path, 404, 20).await;
    assert_eq!(e["code"], "key_not_found");
    assert_eq!(
        gw.sql(&format!("DELETE FROM key_versions WHERE key_id = '{key}'")),
        0,
        "no wrapped material is left"
    );
    let (s, _) = gw.encrypt(&keep, b"unaffected", None).await;
    assert_eq!(s, 200, "other keys are untouched");
    let (_, page) = gw.get("/api/v1/audit?limit=1000").await;
    let destroyed = page["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["operation"] == "lifecycle.destroy")
        .expect("the destruction is audited")
        .clone();
    assert_eq!(
        (
            destroyed["source"].as_str(),
            destroyed["keyId"].as_str(),
            destroyed["outcome"].as_str()
        ),
        (Some("system"), Some(key.as_str()), Some("ok"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_automatically_when_their_period_elapses() {
    use reqwest::Method as M;
    let gw = Gateway::start_with(&[("KMSGW__LIFECYCLE__SWEEP_INTERVAL_SECONDS", "1")]);
    let project = gw.project("auto").await;
    let (s, k) = gw
        .post(
            "/api/v1/kms/keys",
            json!({"projectId": project, "name": "monthly", "rotationPeriodDays": 30}),
        )
        .await;
    assert_eq!(
        (s, k["key"]["rotationPeriodDays"].as_u64()),
        (200, Some(30)),
        "{k}"
    );
    let key = k["key"]["id"].as_str().unwrap().to_owned();
    let (_, enc) = gw.encrypt(&key, b"v1 data", None).await;
    let path = format!("/api/v1/kms/keys/{key}");
    // Not due yet: several sweeps pass without a rotation.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let (_, k) = gw.get(&path).await;
    assert_eq!(k["key"]["version"], 1);
    // 31 days later (the version's creation time moved back).
    assert_eq!(
        gw.sql(&format!(
            "UPDATE key_versions SET created_at = '2020-01-01T00:00:00Z' WHERE key_id = '{key}'"
        )),
        1
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (_, k) = gw.get(&path).await;
        if k["key"]["version"] == 2 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not rotated: {k}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // Exactly one rotation: the new version is fresh.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let (_, k) = gw.get(&path).await;
    assert_eq!(k["key"]["version"], 2);
    let (s, d) = gw
        .decrypt(&key, enc["ciphertext"].as_str().unwrap(), None)
        .await;
    assert_eq!(
        (s, B64.decode(d["plaintext"].as_str().unwrap()).unwrap()),
        (200, b"v1 data".to_vec())
    );
    let (_, enc2) = gw.encrypt(&key, b"v2 data", None).await;
    let ct2 = B64.decode(enc2["ciphertext"].as_str().unwrap()).unwrap();
    assert_eq!(&ct2[17..21], &2u32.to_be_bytes());

    // Turned off with null; invalid periods and signing keys are refused.
    let (s, k) = gw
        .call(M::PATCH, &path, Some(json!({"rotationPeriodDays": null})))
        .await;
    assert_eq!(
        (s, k["key"]["rotationPeriodDays"].clone()),
        (200, serde_json::Value::Null)
    );
    let (s, e) = gw
        .call(M::PATCH, &path, Some(json!({"rotationPeriodDays": 0})))
        .await;
    assert_eq!((s, e["code"].as_str()), (400, Some("invalid_request")));
    let (s, e) = gw
        .post(
            "/api/v1/kms/keys",
            json!({"projectId": project, "name": "signer", "keyUsage": "sign-verify", "encryptionAlgorithm": "ECC_NIST_P256", "rotationPeriodDays": 30}),
        )
        .await;
    assert_eq!((s, e["code"].as_str()), (400, Some("not_supported")));
}
