//! RSA encrypt-decrypt keys (issue 13) over the native API of a real gateway process on a
//! real token: ciphertexts made by `openssl pkeyutl -encrypt` from the key's public key
//! decrypt in the gateway (RSA-OAEP with SHA-256 or SHA-1 and MGF1 on the same hash, no
//! label); every bad ciphertext gets one and the same error; wrong usages and algorithms,
//! an encryption context and a plaintext over the OAEP limit are refused with their codes.

mod common;

use base64::Engine;
use common::gateway::{openssl, rand_bytes, write, Gateway, B64};
use serde_json::{json, Value};

const SIZES: [(&str, usize); 3] = [("RSA_2048", 2048), ("RSA_3072", 3072), ("RSA_4096", 4096)];

/// (name, openssl's digest name, hash length) of the two OAEP algorithms.
const OAEP: [(&str, &str, usize); 2] = [
    ("RSAES_OAEP_SHA_256", "sha256", 32),
    ("RSAES_OAEP_SHA_1", "sha1", 20),
];

async fn rsa_key(gw: &Gateway, project: &str, name: &str, spec: &str) -> String {
    gw.key(project, name, "encrypt-decrypt", spec, None).await
}

/// `openssl pkeyutl -encrypt` with OAEP on `md` and MGF1 on `md`.
fn openssl_encrypt(gw: &Gateway, pem: &str, md: &str, plaintext: &[u8]) -> Vec<u8> {
    let input = write(&gw.dir, "plain.bin", plaintext);
    let out = gw.dir.join("cipher.bin");
    let oaep_md = format!("rsa_oaep_md:{md}");
    let mgf1_md = format!("rsa_mgf1_md:{md}");
    openssl(&[
        "pkeyutl",
        "-encrypt",
        "-pubin",
        "-inkey",
        pem,
        "-in",
        &input,
        "-out",
        out.to_str().unwrap(),
        "-pkeyopt",
        "rsa_padding_mode:oaep",
        "-pkeyopt",
        &oaep_md,
        "-pkeyopt",
        &mgf1_md,
    ]);
    std::fs::read(out).unwrap()
}

async fn decrypt(gw: &Gateway, key: &str, ciphertext: &[u8], alg: Option<&str>) -> (u16, Value) {
    let mut body = json!({"ciphertext": B64.encode(ciphertext)});
    if let Some(a) = alg {
        body["encryptionAlgorithm"] = a.into();
    }
    gw.post(&format!("/api/v1/kms/keys/{key}/decrypt"), body)
        .await
}

async fn encrypt(gw: &Gateway, key: &str, plaintext: &[u8], alg: Option<&str>) -> (u16, Value) {
    let mut body = json!({"plaintext": B64.encode(plaintext)});
    if let Some(a) = alg {
        body["encryptionAlgorithm"] = a.into();
    }
    gw.post(&format!("/api/v1/kms/keys/{key}/encrypt"), body)
        .await
}

fn plaintext_of(body: &Value) -> Vec<u8> {
    B64.decode(body["plaintext"].as_str().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_oaep_ciphertexts_decrypt_in_the_gateway_for_every_size_and_hash() {
    let gw = Gateway::start();
    let project = gw.project("rsa-oaep").await;
    for (spec, bits) in SIZES {
        let name = spec.to_lowercase().replace('_', "-");
        let key = rsa_key(&gw, &project, &name, spec).await;
        let (s, k) = gw.get(&format!("/api/v1/kms/keys/{key}")).await;
        assert_eq!(s, 200);
        assert_eq!(k["key"]["keyUsage"], "encrypt-decrypt");
        assert_eq!(k["key"]["encryptionAlgorithm"], spec);
        let pem = gw.public_key(&key, &name).await.1;
        let described = String::from_utf8(openssl(&[
            "pkey",
            "-pubin",
            "-in",
            &pem,
            "-noout",
            "-text_pub",
        ]))
        .unwrap();
        assert!(
            described.contains(&format!("Public-Key: ({bits} bit)")),
            "{described}"
        );
        for (alg, md, hash_len) in OAEP {
            let max = bits / 8 - 2 * hash_len - 2;
            for len in [1, 32, max] {
                let plaintext = rand_bytes(len);
                let ciphertext = openssl_encrypt(&gw, &pem, md, &plaintext);
                assert_eq!(ciphertext.len(), bits / 8);
                let (s, out) = decrypt(&gw, &key, &ciphertext, Some(alg)).await;
                assert_eq!(s, 200, "{spec} {alg} {len}: {out}");
                assert_eq!(plaintext_of(&out), plaintext, "{spec} {alg} {len}");
                assert_eq!(out["encryptionAlgorithm"], alg);
                if alg == "RSAES_OAEP_SHA_256" {
                    // The default when none is named.
                    let (s, out) = decrypt(&gw, &key, &ciphertext, None).await;
                    assert_eq!(s, 200, "{out}");
                    assert_eq!(plaintext_of(&out), plaintext);
                }
            }
            // The gateway's own encryption round-trips, and a fresh seed makes every
            // ciphertext different.
            let plaintext = rand_bytes(max);
            let (s, a) = encrypt(&gw, &key, &plaintext, Some(alg)).await;
            assert_eq!(s, 200, "{a}");
            assert_eq!(a["encryptionAlgorithm"], alg);
            let (_, b) = encrypt(&gw, &key, &plaintext, Some(alg)).await;
            assert_ne!(a["ciphertext"], b["ciphertext"]);
            let ct = B64.decode(a["ciphertext"].as_str().unwrap()).unwrap();
            assert_eq!(ct.len(), bits / 8);
            let (s, out) = decrypt(&gw, &key, &ct, Some(alg)).await;
            assert_eq!(s, 200, "{out}");
            assert_eq!(plaintext_of(&out), plaintext);
            // One byte over the OAEP limit: its own code, naming the limit.
            let (s, e) = encrypt(&gw, &key, &rand_bytes(max + 1), Some(alg)).await;
            assert_eq!(s, 400, "{e}");
            assert_eq!(e["code"], "oaep_plaintext_too_large");
            assert!(
                e["message"].as_str().unwrap().contains(&max.to_string()),
                "{e}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_ciphertext_gets_the_same_error() {
    let gw = Gateway::start();
    let project = gw.project("rsa-oaep-oracle").await;
    let key = rsa_key(&gw, &project, "victim", "RSA_2048").await;
    let other = rsa_key(&gw, &project, "other", "RSA_2048").await;
    let pem = gw.public_key(&key, "victim").await.1;
    let other_pem = gw.public_key(&other, "other").await.1;
    let plaintext = b"unseal key share 1";
    let good = openssl_encrypt(&gw, &pem, "sha256", plaintext);
    let (s, out) = decrypt(&gw, &key, &good, None).await;
    assert_eq!(s, 200, "{out}");
    assert_eq!(plaintext_of(&out), plaintext);

    let mut bad: Vec<(&str, Vec<u8>, &str)> = Vec::new();
    for at in [0, 1, 100, 255] {
        let mut changed = good.clone();
        changed[at] ^= 0x01;
        bad.push(("a changed byte", changed, "RSAES_OAEP_SHA_256"));
    }
    bad.push(("one byte short", good[1..].to_vec(), "RSAES_OAEP_SHA_256"));
    bad.push((
        "one byte long",
        [good.as_slice(), &[0]].concat(),
        "RSAES_OAEP_SHA_256",
    ));
    bad.push(("a single byte", vec![7], "RSAES_OAEP_SHA_256"));
    bad.push((
        "all ones (above the modulus)",
        vec![0xff; 256],
        "RSAES_OAEP_SHA_256",
    ));
    bad.push(("all zeros", vec![0; 256], "RSAES_OAEP_SHA_256"));
    bad.push((
        "another key's ciphertext",
        openssl_encrypt(&gw, &other_pem, "sha256", plaintext),
        "RSAES_OAEP_SHA_256",
    ));
    bad.push((
        "SHA-256 ciphertext as SHA-1",
        good.clone(),
        "RSAES_OAEP_SHA_1",
    ));
    bad.push((
        "SHA-1 ciphertext as SHA-256",
        openssl_encrypt(&gw, &pem, "sha1", plaintext),
        "RSAES_OAEP_SHA_256",
    ));
    // A PKCS#1 v1.5 ciphertext of the same key.
    let input = write(&gw.dir, "p.bin", plaintext);
    let out = gw.dir.join("pkcs1.bin");
    openssl(&[
        "pkeyutl",
        "-encrypt",
        "-pubin",
        "-inkey",
        &pem,
        "-in",
        &input,
        "-out",
        out.to_str().unwrap(),
        "-pkeyopt",
        "rsa_padding_mode:pkcs1",
    ]);
    bad.push((
        "a PKCS#1 v1.5 ciphertext",
        std::fs::read(&out).unwrap(),
        "RSAES_OAEP_SHA_256",
    ));
    let mut answers = Vec::new();
    for (what, ciphertext, alg) in &bad {
        let (s, e) = decrypt(&gw, &key, ciphertext, Some(alg)).await;
        assert_eq!(s, 400, "{what}: {e}");
        assert_eq!(e["code"], "decryption_failed", "{what}: {e}");
        answers.push((
            what,
            s,
            e["code"].clone(),
            e["message"].clone(),
            e["error"].clone(),
        ));
    }
    let first = &answers[0];
    for a in &answers {
        assert_eq!(
            (a.1, &a.2, &a.3, &a.4),
            (first.1, &first.2, &first.3, &first.4),
            "{} answers differently from {}",
            a.0,
            first.0
        );
    }
    // The key still decrypts afterwards, and the log holds neither plaintext nor why a
    // ciphertext failed.
    let (s, out) = decrypt(&gw, &key, &good, None).await;
    assert_eq!(s, 200, "{out}");
    let log = gw.log();
    assert!(
        !log.contains("unseal key share") && !log.contains(&B64.encode(plaintext)),
        "the plaintext is in the log"
    );
    assert!(
        !log.to_lowercase().contains("padding"),
        "the log says why a ciphertext failed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_usages_algorithms_and_options_are_refused() {
    let gw = Gateway::start();
    let project = gw.project("rsa-oaep-refusals").await;
    let rsa = rsa_key(&gw, &project, "rsa-enc", "RSA_2048").await;
    let signing = gw
        .key(&project, "rsa-sign", "sign-verify", "RSA_2048", None)
        .await;
    let aes = gw
        .key(&project, "aes", "encrypt-decrypt", "aes-256-gcm", None)
        .await;
    let code = |v: &Value| v["code"].as_str().unwrap_or_default().to_owned();

    // An RSA encrypt-decrypt key neither signs nor lists signing algorithms.
    let (s, e) = gw
        .post(
            &format!("/api/v1/kms/keys/{rsa}/sign"),
            json!({"data": B64.encode(b"m"), "signingAlgorithm": "RSASSA_PSS_SHA_256"}),
        )
        .await;
    assert_eq!((s, code(&e)), (400, "wrong_key_usage".into()), "{e}");
    let (s, e) = gw
        .get(&format!("/api/v1/kms/keys/{rsa}/signing-algorithms"))
        .await;
    assert_eq!((s, code(&e)), (400, "wrong_key_usage".into()), "{e}");
    // An RSA signing key does not encrypt, whatever algorithm is named.
    for alg in [None, Some("RSAES_OAEP_SHA_256")] {
        let (s, e) = encrypt(&gw, &signing, b"x", alg).await;
        assert_eq!((s, code(&e)), (400, "wrong_key_usage".into()), "{e}");
    }
    // An AES key refuses an RSA-OAEP name; an unknown name is refused by the adapter.
    let (s, e) = encrypt(&gw, &aes, b"x", Some("RSAES_OAEP_SHA_256")).await;
    assert_eq!(
        (s, code(&e)),
        (400, "invalid_encryption_algorithm".into()),
        "{e}"
    );
    for name in ["RSAES_OAEP_SHA_512", "SYMMETRIC_DEFAULT", "rsa-oaep"] {
        let (s, e) = encrypt(&gw, &rsa, b"x", Some(name)).await;
        assert_eq!(
            (s, code(&e)),
            (400, "invalid_encryption_algorithm".into()),
            "{name}: {e}"
        );
    }
    // RSA-OAEP has no place for an encryption context.
    let (s, e) = gw
        .post(
            &format!("/api/v1/kms/keys/{rsa}/encrypt"),
            json!({"plaintext": B64.encode(b"x"), "encryptionContext": {"a": "b"}}),
        )
        .await;
    assert_eq!((s, code(&e)), (400, "not_supported".into()), "{e}");
    // No data keys, re-encryption or rotation with an RSA encrypt-decrypt key.
    let (s, e) = gw
        .post(
            &format!("/api/v1/kms/keys/{rsa}/generate-data-key"),
            json!({"keySpec": "AES_256"}),
        )
        .await;
    assert_eq!((s, code(&e)), (400, "not_supported".into()), "{e}");
    let (s, e) = gw
        .post(&format!("/api/v1/kms/keys/{rsa}/rotate"), json!({}))
        .await;
    assert_eq!((s, code(&e)), (400, "not_supported".into()), "{e}");
    // An RSA encrypt-decrypt key in the HSM is refused at creation, naming the mechanism.
    let (s, e) = gw
        .post(
            "/api/v1/kms/keys",
            json!({"projectId": project, "name": "rsa-hsm", "keyUsage": "encrypt-decrypt",
                   "encryptionAlgorithm": "RSA_4096", "protection": "hsm"}),
        )
        .await;
    assert_eq!((s, code(&e)), (400, "not_supported".into()), "{e}");
    assert!(
        e["message"].as_str().unwrap().contains("CKM_RSA_PKCS_OAEP"),
        "{e}"
    );
    // ECC and HMAC keys have no encrypt-decrypt usage.
    for alg in ["ECC_NIST_P256", "HMAC_SHA_256"] {
        let (s, e) = gw
            .post(
                "/api/v1/kms/keys",
                json!({"projectId": project, "name": "nope", "keyUsage": "encrypt-decrypt",
                       "encryptionAlgorithm": alg}),
            )
            .await;
        assert_eq!((s, code(&e)), (400, "invalid_request".into()), "{alg}: {e}");
    }
    // The encrypt-decrypt key's public key is the one the signing key API serves.
    let (s, pk) = gw.get(&format!("/api/v1/kms/keys/{rsa}/public-key")).await;
    assert_eq!(s, 200, "{pk}");
    // The AES key still has none.
    let (s, e) = gw.get(&format!("/api/v1/kms/keys/{aes}/public-key")).await;
    assert_eq!((s, code(&e)), (400, "wrong_key_usage".into()), "{e}");
}
