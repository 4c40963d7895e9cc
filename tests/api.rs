//! The HTTPS API end to end: a real gateway process on a real SoftHSM2/Kryoptic token,
//! over TLS with a real client; signatures checked by the `openssl` command line.

mod common;

use std::process::Command;

use base64::Engine;
use common::gateway::{openssl, openssl_verifies, public_pem, write, Gateway, B64};
use serde_json::{json, Value};
use sha2::Digest;

/// A key name (Infisical's slug rule) made from an algorithm name.
fn slug(s: &str) -> String {
    s.to_lowercase().replace('_', "-")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aes_keys_encrypt_and_decrypt_with_and_without_context() {
    let gw = Gateway::start();
    let project = gw.project("payments").await;
    for alg in ["aes-256-gcm", "aes-128-gcm"] {
        let key = gw
            .key(
                &project,
                &slug(&format!("k-{alg}")),
                "encrypt-decrypt",
                alg,
                None,
            )
            .await;
        let plaintext = b"the quick brown fox";
        let ctx = json!({"tenant": "acme", "purpose": "billing"});
        let (s, enc) = gw.encrypt(&key, plaintext, Some(ctx.clone())).await;
        assert_eq!(s, 200, "{enc}");
        let ct = B64.decode(enc["ciphertext"].as_str().unwrap()).unwrap();
        // Format: 0x01 ‖ key id ‖ u32be(version) ‖ nonce ‖ ciphertext ‖ tag.
        assert_eq!(ct[0], 1);
        assert_eq!(&ct[1..17], uuid::Uuid::parse_str(&key).unwrap().as_bytes());
        assert_eq!(&ct[17..21], &1u32.to_be_bytes());
        assert_eq!(ct.len(), 21 + 12 + plaintext.len() + 16);
        let (s, dec) = gw
            .decrypt(&key, enc["ciphertext"].as_str().unwrap(), Some(ctx))
            .await;
        assert_eq!(s, 200, "{dec}");
        assert_eq!(
            B64.decode(dec["plaintext"].as_str().unwrap()).unwrap(),
            plaintext
        );

        let (_, enc2) = gw.encrypt(&key, plaintext, None).await;
        assert_ne!(
            enc2["ciphertext"], enc["ciphertext"],
            "fresh nonce per call"
        );
        let (s, dec2) = gw
            .decrypt(&key, enc2["ciphertext"].as_str().unwrap(), None)
            .await;
        assert_eq!(
            (s, B64.decode(dec2["plaintext"].as_str().unwrap()).unwrap()),
            (200, plaintext.to_vec())
        );
    }
}

fn digest(alg: &str, data: &[u8]) -> Vec<u8> {
    match &alg[alg.len() - 3..] {
        "256" => sha2::Sha256::digest(data).to_vec(),
        "384" => sha2::Sha384::digest(data).to_vec(),
        _ => sha2::Sha512::digest(data).to_vec(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_signing_algorithm_verifies_with_openssl() {
    let gw = Gateway::start();
    let project = gw.project("signing").await;
    for key_alg in ["RSA_4096", "ECC_NIST_P256"] {
        signs_with_every_algorithm_and_openssl_verifies(&gw, &project, key_alg).await;
    }
}

/// RSA_2048, RSA_3072 and ECC_NIST_P384 (issue 13): the public key is of the named size
/// or curve, and every signing algorithm of the key, over the message and over its
/// digest, gives a signature `openssl dgst -verify` accepts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsa_2048_3072_and_p384_keys_sign_with_every_algorithm_and_openssl_verifies() {
    let gw = Gateway::start();
    let project = gw.project("more-key-types").await;
    for key_alg in ["RSA_2048", "RSA_3072", "ECC_NIST_P384"] {
        signs_with_every_algorithm_and_openssl_verifies(&gw, &project, key_alg).await;
    }
}

/// What `openssl pkey -text_pub` says of a public key: its size, and the curve of an EC key.
fn openssl_describes(pem: &str) -> String {
    let out = Command::new("openssl")
        .args(["pkey", "-pubin", "-in", pem, "-noout", "-text_pub"])
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn signs_with_every_algorithm_and_openssl_verifies(
    gw: &Gateway,
    project: &str,
    key_alg: &str,
) {
    let data = b"message to be signed, not stored";
    let data_file = write(&gw.dir, "data.bin", data);
    let rsa = key_alg.starts_with("RSA");
    let key = gw
        .key(project, &slug(key_alg), "sign-verify", key_alg, None)
        .await;
    let (s, pk) = gw.get(&format!("/api/v1/kms/keys/{key}/public-key")).await;
    assert_eq!(s, 200, "{pk}");
    let pem = public_pem(
        &gw.dir,
        key_alg,
        &B64.decode(pk["publicKey"].as_str().unwrap()).unwrap(),
    );
    let shape: &[&str] = match key_alg {
        "RSA_2048" => &["Public-Key: (2048 bit)"],
        "RSA_3072" => &["Public-Key: (3072 bit)"],
        "RSA_4096" => &["Public-Key: (4096 bit)"],
        "ECC_NIST_P256" => &["Public-Key: (256 bit)", "NIST CURVE: P-256"],
        "ECC_NIST_P384" => &["Public-Key: (384 bit)", "NIST CURVE: P-384"],
        other => panic!("no shape for {other}"),
    };
    let described = openssl_describes(&pem);
    for line in shape {
        assert!(described.contains(line), "{key_alg}: {described}");
    }
    let (s, algs) = gw
        .get(&format!("/api/v1/kms/keys/{key}/signing-algorithms"))
        .await;
    assert_eq!(s, 200);
    let algs: Vec<String> = serde_json::from_value(algs["signingAlgorithms"].clone()).unwrap();
    assert_eq!(algs.len(), if rsa { 6 } else { 3 });
    for alg in &algs {
        for is_digest in [false, true] {
            if is_digest && alg.starts_with("RSASSA_PSS") {
                continue;
            }
            let payload = if is_digest {
                digest(alg, data)
            } else {
                data.to_vec()
            };
            let (s, sig) = gw
                .post(&format!("/api/v1/kms/keys/{key}/sign"), json!({"data": B64.encode(&payload), "signingAlgorithm": alg, "isDigest": is_digest}))
                .await;
            assert_eq!(s, 200, "{alg} {sig}");
            assert_eq!(sig["keyId"], key.as_str());
            assert_eq!(sig["signingAlgorithm"], alg.as_str());
            let sig_bytes = B64.decode(sig["signature"].as_str().unwrap()).unwrap();
            let sig_file = write(&gw.dir, "sig.bin", &sig_bytes);
            assert!(
                openssl_verifies(&pem, alg, &data_file, &sig_file),
                "openssl rejects {alg} (digest={is_digest})"
            );

            let (s, v) = gw
                .post(&format!("/api/v1/kms/keys/{key}/verify"), json!({"data": B64.encode(&payload), "signature": sig["signature"], "signingAlgorithm": alg, "isDigest": is_digest}))
                .await;
            assert_eq!(
                (s, v["signatureValid"].as_bool()),
                (200, Some(true)),
                "{alg} {v}"
            );
            let mut bad = sig_bytes.clone();
            let n = bad.len() / 2;
            bad[n] ^= 0x40;
            let (s, v) = gw
                .post(&format!("/api/v1/kms/keys/{key}/verify"), json!({"data": B64.encode(&payload), "signature": B64.encode(&bad), "signingAlgorithm": alg, "isDigest": is_digest}))
                .await;
            assert_eq!(
                (s, v["signatureValid"].as_bool()),
                (200, Some(false)),
                "{alg} {v}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_verifies_signatures_made_by_openssl_with_its_public_key_shape() {
    // The gateway never exports private keys, so openssl signs with a key of its own;
    // the gateway's verifier (same code as /verify) must accept those signatures.
    let gw = Gateway::start();
    let dir = gw.dir.clone();
    let data_file = write(&dir, "m.bin", b"signed by openssl");
    use kms_gateway::crypto::signing::AsymmetricKind;
    for (kind, gen, algs) in [
        (
            AsymmetricKind::EccNistP256,
            vec![
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ],
            vec!["ECDSA_SHA_256", "ECDSA_SHA_384", "ECDSA_SHA_512"],
        ),
        (
            AsymmetricKind::EccNistP384,
            vec![
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-384",
            ],
            vec!["ECDSA_SHA_256", "ECDSA_SHA_384", "ECDSA_SHA_512"],
        ),
        (
            AsymmetricKind::Rsa3072,
            vec![
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:3072",
            ],
            vec!["RSASSA_PSS_SHA_256", "RSASSA_PKCS1_V1_5_SHA_384"],
        ),
        (
            AsymmetricKind::Rsa2048,
            vec![
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ],
            vec![
                "RSASSA_PKCS1_V1_5_SHA_256",
                "RSASSA_PSS_SHA_384",
                "RSASSA_PKCS1_V1_5_SHA_512",
            ],
        ),
    ] {
        let key = dir.join("osl.key");
        let mut args = gen.clone();
        args.extend(["-out", key.to_str().unwrap()]);
        openssl(&args);
        let pub_der = openssl(&[
            "pkey",
            "-in",
            key.to_str().unwrap(),
            "-pubout",
            "-outform",
            "DER",
        ]);
        for alg in algs {
            let sig_path = dir.join("osl.sig");
            let mut a = vec![
                "dgst".to_string(),
                format!("-sha{}", &alg[alg.len() - 3..]),
                "-sign".into(),
                key.to_str().unwrap().into(),
            ];
            if alg.starts_with("RSASSA_PSS") {
                a.extend([
                    "-sigopt".into(),
                    "rsa_padding_mode:pss".into(),
                    "-sigopt".into(),
                    "rsa_pss_saltlen:digest".into(),
                ]);
            }
            a.extend([
                "-out".into(),
                sig_path.to_str().unwrap().into(),
                data_file.clone(),
            ]);
            let refs: Vec<&str> = a.iter().map(String::as_str).collect();
            openssl(&refs);
            let sig = std::fs::read(&sig_path).unwrap();
            let parsed = kms_gateway::crypto::signing::SigningAlgorithm::parse(alg).unwrap();
            let ok = kms_gateway::crypto::signing::verify(
                &pub_der,
                kind,
                parsed,
                kms_gateway::crypto::signing::Input::Message(b"signed by openssl"),
                &sig,
            )
            .unwrap();
            assert!(ok, "{alg}");
            let wrong = kms_gateway::crypto::signing::verify(
                &pub_der,
                kind,
                parsed,
                kms_gateway::crypto::signing::Input::Message(b"other"),
                &sig,
            )
            .unwrap();
            assert!(!wrong, "{alg}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_persist_across_restart_and_old_ciphertexts_decrypt() {
    let mut gw = Gateway::start();
    let project = gw.project("persist").await;
    let aes = gw
        .key(&project, "aes", "encrypt-decrypt", "aes-256-gcm", None)
        .await;
    let ec = gw
        .key(&project, "ec", "sign-verify", "ECC_NIST_P256", None)
        .await;
    let (_, enc) = gw
        .encrypt(&aes, b"survives restarts", Some(json!({"a": "b"})))
        .await;
    let (_, pk_before) = gw.get(&format!("/api/v1/kms/keys/{ec}/public-key")).await;
    gw.restart();
    let (s, dec) = gw
        .decrypt(
            &aes,
            enc["ciphertext"].as_str().unwrap(),
            Some(json!({"a": "b"})),
        )
        .await;
    assert_eq!(s, 200, "{dec}");
    assert_eq!(
        B64.decode(dec["plaintext"].as_str().unwrap()).unwrap(),
        b"survives restarts"
    );
    let (_, pk_after) = gw.get(&format!("/api/v1/kms/keys/{ec}/public-key")).await;
    assert_eq!(pk_before, pk_after);
    let (s, list) = gw
        .get(&format!("/api/v1/kms/keys?projectId={project}"))
        .await;
    assert_eq!((s, list["totalCount"].as_u64()), (200, Some(2)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_metadata_endpoints() {
    let gw = Gateway::start();
    let a = gw.project("team-a").await;
    let b = gw.project("team-b").await;
    let k1 = gw
        .key(&a, "alpha", "encrypt-decrypt", "aes-256-gcm", None)
        .await;
    gw.key(&a, "beta-1", "encrypt-decrypt", "aes-128-gcm", None)
        .await;
    gw.key(&b, "alpha", "encrypt-decrypt", "aes-256-gcm", None)
        .await;

    let (s, k) = gw.get(&format!("/api/v1/kms/keys/{k1}")).await;
    assert_eq!(s, 200);
    let key = &k["key"];
    for field in [
        "id",
        "name",
        "description",
        "projectId",
        "keyUsage",
        "encryptionAlgorithm",
        "orgId",
        "version",
        "isDisabled",
        "isReserved",
        "customerFragmentId",
        "createdAt",
        "updatedAt",
    ] {
        assert!(key.get(field).is_some(), "key has {field}: {key}");
    }
    assert_eq!(key["version"], 1);
    assert_eq!(key["encryptionAlgorithm"], "aes-256-gcm");
    assert!(
        key["orgId"]
            .as_str()
            .is_some_and(|o| uuid::Uuid::parse_str(o).is_ok()),
        "{key}"
    );

    let (s, by_name) = gw
        .get(&format!("/api/v1/kms/keys/key-name/alpha?projectId={a}"))
        .await;
    assert_eq!((s, by_name["key"]["id"].as_str()), (200, Some(k1.as_str())));
    // The same name in project B is another key; a name from A is not found via B.
    let (_, other) = gw
        .get(&format!("/api/v1/kms/keys/key-name/alpha?projectId={b}"))
        .await;
    assert_ne!(other["key"]["id"].as_str(), Some(k1.as_str()));
    let (s, e) = gw
        .get(&format!("/api/v1/kms/keys/key-name/beta-1?projectId={b}"))
        .await;
    assert_eq!((s, e["code"].as_str()), (404, Some("key_not_found")));

    let (s, list) = gw
        .get(&format!(
            "/api/v1/kms/keys?projectId={a}&orderBy=name&orderDirection=desc&limit=1"
        ))
        .await;
    assert_eq!(s, 200, "{list}");
    assert_eq!(list["totalCount"], 2);
    assert_eq!(list["keys"].as_array().unwrap().len(), 1);
    assert_eq!(list["keys"][0]["name"], "beta-1");
    let (_, search) = gw
        .get(&format!("/api/v1/kms/keys?projectId={a}&search=ALP"))
        .await;
    assert_eq!(search["totalCount"], 1);

    let (s, p) = gw
        .call(
            reqwest::Method::PATCH,
            &format!("/api/v1/kms/keys/{k1}"),
            Some(json!({"name": "alpha2", "description": "d", "isDisabled": true})),
        )
        .await;
    assert_eq!(s, 200, "{p}");
    assert_eq!(
        (p["key"]["name"].as_str(), p["key"]["isDisabled"].as_bool()),
        (Some("alpha2"), Some(true))
    );
    let (s, e) = gw.encrypt(&k1, b"x", None).await;
    assert_eq!((s, e["code"].as_str()), (409, Some("key_disabled")));
    let (s, _) = gw
        .call(
            reqwest::Method::PATCH,
            &format!("/api/v1/kms/keys/{k1}"),
            Some(json!({"isDisabled": false})),
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = gw.encrypt(&k1, b"x", None).await;
    assert_eq!(s, 200);
    let (s, e) = gw
        .call(
            reqwest::Method::PATCH,
            &format!("/api/v1/kms/keys/{k1}"),
            Some(json!({"name": "beta-1"})),
        )
        .await;
    assert_eq!((s, e["code"].as_str()), (409, Some("name_taken")));
    // Names follow Infisical's slug rule, on creation and on rename.
    for bad in ["Beta", "beta_1", "with space", "", &"x".repeat(33)] {
        let (s, e) = gw
            .call(
                reqwest::Method::PATCH,
                &format!("/api/v1/kms/keys/{k1}"),
                Some(json!({"name": bad})),
            )
            .await;
        assert_eq!(
            (s, e["code"].as_str()),
            (400, Some("invalid_name")),
            "{bad:?}: {e}"
        );
        let (s, e) = gw
            .call(
                reqwest::Method::POST,
                "/api/v1/kms/keys",
                Some(json!({"projectId": a, "name": bad})),
            )
            .await;
        assert_eq!(
            (s, e["code"].as_str()),
            (400, Some("invalid_name")),
            "{bad:?}: {e}"
        );
        assert!(
            e["message"].as_str().is_some_and(|m| m.contains("slug")),
            "{e}"
        );
    }
    let longest = gw.project("longest-name").await;
    let (s, e) = gw
        .call(
            reqwest::Method::POST,
            "/api/v1/kms/keys",
            Some(json!({"projectId": longest, "name": format!("{}-9", "a".repeat(30))})),
        )
        .await;
    assert_eq!(s, 200, "{e}");

    let (s, d) = gw
        .call(
            reqwest::Method::DELETE,
            &format!("/api/v1/kms/keys/{k1}"),
            None,
        )
        .await;
    assert_eq!((s, d["key"]["id"].as_str()), (200, Some(k1.as_str())));
    // Deletion is scheduled (default window 30 days); the key is visible but unusable.
    assert_eq!(d["key"]["keyState"], "PendingDeletion");
    let (s, e) = gw.get(&format!("/api/v1/kms/keys/{k1}")).await;
    assert_eq!(
        (s, e["key"]["keyState"].as_str()),
        (200, Some("PendingDeletion"))
    );
}

/// Asserts a request is refused with `status` and problem `code`.
async fn refused(
    gw: &Gateway,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
    status: u16,
    code: &str,
) {
    let (s, b) = gw.call(method, path, body).await;
    assert_eq!((s, b["code"].as_str()), (status, Some(code)), "{path}: {b}");
    assert_eq!(b["status"], status);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_get_specific_errors_and_lose_nothing() {
    use reqwest::Method as M;
    let gw = Gateway::start();
    let project = gw.project("bad-input").await;
    let aes = gw
        .key(&project, "aes", "encrypt-decrypt", "aes-256-gcm", None)
        .await;
    let other = gw
        .key(&project, "aes2", "encrypt-decrypt", "aes-256-gcm", None)
        .await;
    let rsa = gw
        .key(&project, "ec", "sign-verify", "ECC_NIST_P256", None)
        .await;
    let (_, good) = gw.encrypt(&aes, b"keep me", Some(json!({"k": "v"}))).await;
    let good_ct = good["ciphertext"].as_str().unwrap().to_owned();
    let enc = format!("/api/v1/kms/keys/{aes}/encrypt");
    let dec = format!("/api/v1/kms/keys/{aes}/decrypt");

    // Malformed JSON and unknown fields.
    let resp = gw
        .client
        .post(gw.url(&enc))
        .bearer_auth(&gw.bearer)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    let b: Value = resp.json().await.unwrap();
    assert_eq!(b["code"], "malformed_json");
    // Unknown fields are ignored (as Infisical does); a field of the wrong type is not.
    let (s, b) = gw
        .call(
            M::POST,
            &enc,
            Some(json!({"plaintext": "aGk=", "extra": 1})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    refused(
        &gw,
        M::POST,
        &enc,
        Some(json!({"plaintext": 12})),
        400,
        "invalid_request",
    )
    .await;
    refused(
        &gw,
        M::POST,
        &enc,
        Some(json!({"plaintext": 5})),
        400,
        "invalid_request",
    )
    .await;
    // Bad base64, empty and oversized plaintext.
    refused(
        &gw,
        M::POST,
        &enc,
        Some(json!({"plaintext": "not base64!"})),
        400,
        "invalid_base64",
    )
    .await;
    refused(
        &gw,
        M::POST,
        &enc,
        Some(json!({"plaintext": ""})),
        400,
        "empty_plaintext",
    )
    .await;
    let big = B64.encode(vec![7u8; 64 * 1024 + 1]);
    refused(
        &gw,
        M::POST,
        &enc,
        Some(json!({"plaintext": big})),
        413,
        "plaintext_too_large",
    )
    .await;
    let huge = "A".repeat(1024 * 1024);
    refused(
        &gw,
        M::POST,
        &enc,
        Some(json!({"plaintext": huge})),
        413,
        "payload_too_large",
    )
    .await;
    // Unknown key, malformed id, disabled key handled in key_metadata_endpoints.
    let missing = uuid::Uuid::new_v4();
    refused(
        &gw,
        M::POST,
        &format!("/api/v1/kms/keys/{missing}/encrypt"),
        Some(json!({"plaintext": "aGk="})),
        404,
        "key_not_found",
    )
    .await;
    refused(
        &gw,
        M::GET,
        "/api/v1/kms/keys/not-a-uuid",
        None,
        400,
        "invalid_id",
    )
    .await;
    // Unknown project.
    refused(
        &gw,
        M::POST,
        "/api/v1/kms/keys",
        Some(json!({"projectId": missing.to_string(), "name": "x"})),
        404,
        "project_not_found",
    )
    .await;
    refused(
        &gw,
        M::GET,
        &format!("/api/v1/kms/keys?projectId={missing}"),
        None,
        404,
        "project_not_found",
    )
    .await;
    // Wrong usage for the operation, and wrong algorithms.
    refused(
        &gw,
        M::POST,
        &format!("/api/v1/kms/keys/{rsa}/encrypt"),
        Some(json!({"plaintext": "aGk="})),
        400,
        "wrong_key_usage",
    )
    .await;
    refused(
        &gw,
        M::POST,
        &format!("/api/v1/kms/keys/{aes}/sign"),
        Some(json!({"data": "aGk=", "signingAlgorithm": "ECDSA_SHA_256"})),
        400,
        "wrong_key_usage",
    )
    .await;
    refused(
        &gw,
        M::POST,
        &format!("/api/v1/kms/keys/{rsa}/sign"),
        Some(json!({"data": "aGk=", "signingAlgorithm": "RSASSA_PSS_SHA_256"})),
        400,
        "invalid_signing_algorithm",
    )
    .await;
    refused(
        &gw,
        M::POST,
        &format!("/api/v1/kms/keys/{rsa}/sign"),
        Some(json!({"data": "aGk=", "signingAlgorithm": "ECDSA_SHA_1"})),
        400,
        "invalid_signing_algorithm",
    )
    .await;
    refused(
        &gw,
        M::POST,
        &format!("/api/v1/kms/keys/{rsa}/sign"),
        Some(json!({"data": "aGk=", "signingAlgorithm": "ECDSA_SHA_256", "isDigest": true})),
        400,
        "invalid_digest_length",
    )
    .await;
    refused(
        &gw,
        M::POST,
        "/api/v1/kms/keys",
        Some(json!({"projectId": project, "name": "x", "encryptionAlgorithm": "DES"})),
        400,
        "invalid_algorithm",
    )
    .await;
    refused(
        &gw,
        M::POST,
        "/api/v1/kms/keys",
        Some(json!({"projectId": project, "name": "x", "keyUsage": "wrap"})),
        400,
        "invalid_key_usage",
    )
    .await;
    refused(&gw, M::POST, "/api/v1/kms/keys", Some(json!({"projectId": project, "name": "x", "keyUsage": "sign-verify", "encryptionAlgorithm": "aes-256-gcm"})), 400, "invalid_request").await;
    refused(
        &gw,
        M::POST,
        "/api/v1/kms/keys",
        Some(json!({"projectId": project, "name": "aes"})),
        409,
        "name_taken",
    )
    .await;
    refused(
        &gw,
        M::POST,
        "/api/v1/kms/keys",
        Some(json!({"projectId": project, "name": "x", "customerFragmentId": "cf-nope"})),
        400,
        "fragment_not_found",
    )
    .await;
    // Ciphertexts: of another key, tampered, wrong context, malformed.
    refused(
        &gw,
        M::POST,
        &format!("/api/v1/kms/keys/{other}/decrypt"),
        Some(json!({"ciphertext": good_ct, "encryptionContext": {"k": "v"}})),
        400,
        "ciphertext_key_mismatch",
    )
    .await;
    let mut tampered = B64.decode(&good_ct).unwrap();
    let n = tampered.len() - 3;
    tampered[n] ^= 1;
    refused(
        &gw,
        M::POST,
        &dec,
        Some(json!({"ciphertext": B64.encode(&tampered), "encryptionContext": {"k": "v"}})),
        400,
        "decryption_failed",
    )
    .await;
    refused(
        &gw,
        M::POST,
        &dec,
        Some(json!({"ciphertext": good_ct, "encryptionContext": {"k": "other"}})),
        400,
        "decryption_failed",
    )
    .await;
    refused(
        &gw,
        M::POST,
        &dec,
        Some(json!({"ciphertext": good_ct})),
        400,
        "decryption_failed",
    )
    .await;
    refused(
        &gw,
        M::POST,
        &dec,
        Some(json!({"ciphertext": "AQID"})),
        400,
        "invalid_ciphertext",
    )
    .await;
    refused(
        &gw,
        M::POST,
        &dec,
        Some(json!({"ciphertext": "%%%"})),
        400,
        "invalid_base64",
    )
    .await;
    // Routing and methods.
    refused(&gw, M::GET, "/api/v1/nothing", None, 404, "not_found").await;
    refused(
        &gw,
        M::PUT,
        &format!("/api/v1/kms/keys/{aes}"),
        Some(json!({})),
        405,
        "method_not_allowed",
    )
    .await;
    // Auth: no token, wrong token.
    let r = gw
        .client
        .get(gw.url(&format!("/api/v1/kms/keys/{aes}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["code"], "unauthorized");
    let r = gw
        .client
        .get(gw.url(&format!("/api/v1/kms/keys/{aes}")))
        .bearer_auth("kmsgw_wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // Nothing was lost: the good ciphertext still decrypts.
    let (s, d) = gw.decrypt(&aes, &good_ct, Some(json!({"k": "v"}))).await;
    assert_eq!(
        (s, B64.decode(d["plaintext"].as_str().unwrap()).unwrap()),
        (200, b"keep me".to_vec())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hsm_secured_key_needs_the_hsm_on_every_call() {
    let mut gw = Gateway::start();
    let secured = gw.gen_fragment("secured", "hsm_secured", Some("cf-hmac"));
    let wrapped = gw.gen_fragment("wrapped", "hsm_wrapped", Some("cf-hmac"));
    gw.restart();
    let project = gw.project("fragments").await;
    let ks = gw
        .key(
            &project,
            "secured",
            "encrypt-decrypt",
            "aes-256-gcm",
            Some(&secured),
        )
        .await;
    let kw = gw
        .key(
            &project,
            "wrapped",
            "encrypt-decrypt",
            "aes-256-gcm",
            Some(&wrapped),
        )
        .await;
    let (_, k) = gw.get(&format!("/api/v1/kms/keys/{ks}")).await;
    assert_eq!(k["key"]["customerFragmentId"], secured.as_str());

    let before = gw.metric("kmsgw_hsm_hmac_calls_total").await;
    for i in 0..5u8 {
        let (s, e) = gw.encrypt(&ks, &[i; 8], None).await;
        assert_eq!(s, 200, "{e}");
    }
    let after = gw.metric("kmsgw_hsm_hmac_calls_total").await;
    assert_eq!(
        after - before,
        5,
        "one HSM HMAC per operation on an hsm_secured key"
    );

    for i in 0..5u8 {
        let (s, _) = gw.encrypt(&kw, &[i; 8], None).await;
        assert_eq!(s, 200);
    }
    assert_eq!(
        gw.metric("kmsgw_hsm_hmac_calls_total").await,
        after,
        "hsm_wrapped needs no HSM call per operation"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_of_a_removed_fragment_fails_clearly_while_others_work() {
    let mut gw = Gateway::start();
    let f1 = gw.gen_fragment("one", "hsm_wrapped", Some("cf-one"));
    let f2 = gw.gen_fragment("two", "standard", None);
    gw.restart();
    let project = gw.project("removal").await;
    let k1 = gw
        .key(
            &project,
            "bound",
            "encrypt-decrypt",
            "aes-256-gcm",
            Some(&f1),
        )
        .await;
    let k2 = gw
        .key(
            &project,
            "other",
            "encrypt-decrypt",
            "aes-256-gcm",
            Some(&f2),
        )
        .await;
    let k3 = gw
        .key(&project, "unbound", "encrypt-decrypt", "aes-256-gcm", None)
        .await;
    let (_, c1) = gw.encrypt(&k1, b"one", None).await;
    let (_, c2) = gw.encrypt(&k2, b"two", None).await;

    // Remove fragment one from the file and restart.
    let mut file: Value =
        serde_json::from_slice(&std::fs::read(gw.fragments_file()).unwrap()).unwrap();
    file["customer_fragments"]
        .as_array_mut()
        .unwrap()
        .retain(|f| f["id"] != f1.as_str());
    std::fs::write(gw.fragments_file(), serde_json::to_vec(&file).unwrap()).unwrap();
    gw.restart();

    let (s, e) = gw
        .decrypt(&k1, c1["ciphertext"].as_str().unwrap(), None)
        .await;
    assert_eq!(
        (s, e["code"].as_str()),
        (503, Some("fragment_not_loaded")),
        "{e}"
    );
    assert!(e["detail"].as_str().unwrap().contains(&f1));
    let (s, _) = gw.encrypt(&k1, b"x", None).await;
    assert_eq!(s, 503);
    let (s, d) = gw
        .decrypt(&k2, c2["ciphertext"].as_str().unwrap(), None)
        .await;
    assert_eq!(
        (s, B64.decode(d["plaintext"].as_str().unwrap()).unwrap()),
        (200, b"two".to_vec())
    );
    let (s, _) = gw.encrypt(&k3, b"three", None).await;
    assert_eq!(s, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_metrics() {
    let gw = Gateway::start();
    let r = gw.client.get(gw.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = gw.client.get(gw.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["checks"]["hsm"], "ok");
    assert_eq!(b["checks"]["store"], "ok");
    assert_eq!(gw.metric("kmsgw_hsm_healthy").await, 1);
    let project = gw.project("metrics").await;
    let key = gw
        .key(&project, "m", "encrypt-decrypt", "aes-256-gcm", None)
        .await;
    for _ in 0..3 {
        assert_eq!(gw.encrypt(&key, b"m", None).await.0, 200);
    }
    assert_eq!(
        gw.get(&format!("/api/v1/kms/keys/{key}/public-key"))
            .await
            .0,
        400
    );
    let text = gw
        .client
        .get(gw.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // By route template (never by key id) and status, with a latency histogram.
    assert!(
        text.contains(
            r#"kmsgw_http_requests_total{frontend="native",operation="key.encrypt",status="200"} 3"#
        ),
        "{text}"
    );
    assert!(text.contains(r#"kmsgw_http_requests_total{frontend="native",operation="key.public_key",status="400"} 1"#), "{text}");
    assert!(text.contains(r#"kmsgw_http_request_duration_seconds_count{frontend="native",operation="key.encrypt"} 3"#), "{text}");
    assert!(!text.contains(&key), "no key id in label values");
    // The first encrypt unwrapped the material, the next two used the cache.
    assert_eq!(gw.metric("kmsgw_key_cache_misses_total").await, 1);
    assert_eq!(gw.metric("kmsgw_key_cache_hits_total").await, 2);
    assert!(
        gw.metric("kmsgw_hsm_operation_duration_seconds_count")
            .await
            >= 1
    );
    assert_eq!(gw.metric("kmsgw_hsm_sessions_in_use").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_reports_a_fragment_that_failed_to_load() {
    let mut gw = Gateway::start();
    std::fs::write(
        gw.fragments_file(),
        serde_json::to_vec(&json!({"customer_fragments": [{"id": "cf-bad", "name": "bad", "fragment_type": "standard", "value": "!!", "created_at": "x"}]})).unwrap(),
    )
    .unwrap();
    gw.restart();
    let r = gw.client.get(gw.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["checks"]["fragments"], "failing");
    // The rest keeps working.
    let project = gw.project("still-works").await;
    let k = gw
        .key(&project, "k", "encrypt-decrypt", "aes-256-gcm", None)
        .await;
    assert_eq!(gw.encrypt(&k, b"ok", None).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_of_a_full_run_hold_no_secrets() {
    let mut gw = Gateway::start();
    let fid = gw.gen_fragment("logcheck", "hsm_secured", Some("cf-log"));
    gw.restart();
    let project = gw.project("logs").await;
    let aes = gw
        .key(
            &project,
            "aes",
            "encrypt-decrypt",
            "aes-256-gcm",
            Some(&fid),
        )
        .await;
    let ec = gw
        .key(&project, "ec", "sign-verify", "ECC_NIST_P256", None)
        .await;
    let secret_text = b"SECRET-PLAINTEXT-do-not-log-4711";
    let (_, enc) = gw
        .encrypt(
            &aes,
            secret_text,
            Some(json!({"ctxkey": "CTX-SECRET-VALUE"})),
        )
        .await;
    let (_, dec) = gw
        .decrypt(
            &aes,
            enc["ciphertext"].as_str().unwrap(),
            Some(json!({"ctxkey": "CTX-SECRET-VALUE"})),
        )
        .await;
    assert_eq!(dec["plaintext"], B64.encode(secret_text));
    let (_, sig) = gw
        .post(
            &format!("/api/v1/kms/keys/{ec}/sign"),
            json!({"data": B64.encode(b"SIGNED-DATA-secret"), "signingAlgorithm": "ECDSA_SHA_256"}),
        )
        .await;
    let hmac = gw
        .key(
            &project,
            "hmac",
            "generate-verify-mac",
            "HMAC_SHA_256",
            Some(&fid),
        )
        .await;
    let mac_data = B64.encode(b"MAC-DATA-secret-0815");
    let (s, mac) = gw
        .post(
            &format!("/api/v1/kms/keys/{hmac}/generate-mac"),
            json!({"data": mac_data}),
        )
        .await;
    assert_eq!(s, 200, "{mac}");
    let (_, checked) = gw
        .post(
            &format!("/api/v1/kms/keys/{hmac}/verify-mac"),
            json!({"data": mac_data, "mac": mac["mac"]}),
        )
        .await;
    assert_eq!(checked["macValid"], true);
    let _ = gw.decrypt(&aes, "AQID", None).await;
    let _ = gw.encrypt(&aes, b"", None).await;
    gw.stop();

    let log = gw.log();
    assert!(log.contains("request"), "the log has request lines:\n{log}");
    let fragments = kms_gateway::fragments::read_fragment_file(&gw.fragments_file()).unwrap();
    let mut secrets: Vec<String> = vec![
        String::from_utf8_lossy(secret_text).into_owned(),
        B64.encode(secret_text),
        "CTX-SECRET-VALUE".into(),
        B64.encode(b"SIGNED-DATA-secret"),
        enc["ciphertext"].as_str().unwrap().to_owned(),
        sig["signature"].as_str().unwrap().to_owned(),
        mac_data,
        "MAC-DATA-secret-0815".into(),
        mac["mac"].as_str().unwrap().to_owned(),
        gw.bearer.clone(),
        std::fs::read_to_string(gw.path("root.key"))
            .unwrap()
            .trim()
            .to_owned(),
        format!("PIN={}", gw.token.pin()),
        format!("pin={}", gw.token.pin()),
    ];
    secrets.extend(fragments.customer_fragments.iter().map(|f| f.value.clone()));
    for s in secrets {
        assert!(!log.contains(&s), "the log contains a secret: {s}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_root_encryption_key_is_detected_not_used() {
    let mut gw = Gateway::start();
    let project = gw.project("root").await;
    let key = gw
        .key(&project, "k", "encrypt-decrypt", "aes-256-gcm", None)
        .await;
    let (_, enc) = gw.encrypt(&key, b"root-protected", None).await;
    gw.stop();
    let good = std::fs::read(gw.path("root.key")).unwrap();
    std::fs::write(gw.path("root.key"), B64.encode([9u8; 32])).unwrap();
    let out = Command::new(common::gateway_bin())
        .arg("serve")
        .envs(gw.env())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("does not open the stored instance root key"),
        "{err}"
    );
    std::fs::write(gw.path("root.key"), good).unwrap();
    gw.launch();
    let (s, d) = gw
        .decrypt(&key, enc["ciphertext"].as_str().unwrap(), None)
        .await;
    assert_eq!(
        (s, B64.decode(d["plaintext"].as_str().unwrap()).unwrap()),
        (200, b"root-protected".to_vec())
    );
}
