//! HSM-resident keys (protection `hsm`): generated in the token, used in place, verified
//! by openssl, adopted by label, destroyed on deletion.

mod common;

use base64::Engine;
use common::gateway::{openssl, openssl_verifies, write, Gateway, B64};
use common::Token;
use cryptoki::object::{Attribute, KeyType};
use kms_gateway::hsm::{Hsm, ResidentKind};
use serde_json::{json, Value};
use sha2::Digest;

async fn hsm_key(
    gw: &Gateway,
    project: &str,
    name: &str,
    usage: &str,
    alg: &str,
    extra: Value,
) -> (u16, Value) {
    let mut body = json!({"projectId": project, "name": name, "keyUsage": usage, "encryptionAlgorithm": alg, "protection": "hsm"});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    gw.post("/api/v1/kms/keys", body).await
}

/// A second connection to the same token, from the test process.
fn inspect(token: &Token) -> Hsm {
    Hsm::connect(token.config()).expect("connect to the gateway's token")
}

fn openssl_verify(gw: &Gateway, pem: &str, alg: &str, data: &str, sig: &[u8]) -> bool {
    let sig_file = write(&gw.dir, "hsm.sig", sig);
    openssl_verifies(pem, alg, data, &sig_file)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hsm_aes_key_encrypts_in_the_hsm_and_is_destroyed_on_delete() {
    let mut gw = Gateway::start();
    let project = gw.project("hsm-aes").await;
    let (s, k) = hsm_key(
        &gw,
        &project,
        "vault-unseal",
        "encrypt-decrypt",
        "aes-256-gcm",
        json!({}),
    )
    .await;
    assert_eq!(s, 200, "{k}");
    assert_eq!(k["key"]["protection"], "hsm");
    let id = k["key"]["id"].as_str().unwrap().to_owned();
    let label = k["key"]["hsmKeyLabel"].as_str().unwrap().to_owned();
    assert_eq!(label, format!("kmsgw-{id}"));

    let ctx = json!({"purpose": "unseal"});
    let (s, enc) = gw
        .encrypt(&id, b"unseal key share 1", Some(ctx.clone()))
        .await;
    assert_eq!(s, 200, "{enc}");
    let ct = B64.decode(enc["ciphertext"].as_str().unwrap()).unwrap();
    assert_eq!(
        (ct[0], &ct[1..17]),
        (1, uuid::Uuid::parse_str(&id).unwrap().as_bytes().as_slice()),
        "same ciphertext format"
    );
    let (s, dec) = gw
        .decrypt(&id, enc["ciphertext"].as_str().unwrap(), Some(ctx.clone()))
        .await;
    assert_eq!(
        (s, B64.decode(dec["plaintext"].as_str().unwrap()).unwrap()),
        (200, b"unseal key share 1".to_vec())
    );
    let (s, e) = gw
        .decrypt(
            &id,
            enc["ciphertext"].as_str().unwrap(),
            Some(json!({"purpose": "other"})),
        )
        .await;
    assert_eq!((s, e["code"].as_str()), (400, Some("decryption_failed")));
    let mut tampered = ct.clone();
    tampered[25] ^= 1;
    let (s, e) = gw
        .decrypt(&id, &B64.encode(&tampered), Some(ctx.clone()))
        .await;
    assert_eq!((s, e["code"].as_str()), (400, Some("decryption_failed")));

    // Survives a restart.
    gw.restart();
    let (s, _) = gw
        .decrypt(&id, enc["ciphertext"].as_str().unwrap(), Some(ctx))
        .await;
    assert_eq!(s, 200);

    // The token object is non-extractable and its value unreadable.
    gw.stop();
    let hsm = inspect(&gw.token);
    let attrs = hsm.key_attributes(&label).unwrap();
    assert_eq!(
        (attrs.extractable, attrs.sensitive, attrs.token),
        (Some(false), Some(true), Some(true))
    );
    assert!(!attrs.value_readable);
    hsm.shutdown();
    gw.launch();

    let (s, _) = gw
        .call(
            reqwest::Method::DELETE,
            &format!("/api/v1/kms/keys/{id}"),
            None,
        )
        .await;
    assert_eq!(s, 200);
    // The deletion is scheduled; make its date pass, and the sweeper destroys the key.
    gw.stop();
    let hsm = inspect(&gw.token);
    assert!(hsm.resident_exists(&label).unwrap(), "kept while pending");
    hsm.shutdown();
    assert_eq!(
        gw.sql(&format!(
            "UPDATE keys SET deletion_date = '2020-01-01T00:00:00Z' WHERE id = '{id}'"
        )),
        1
    );
    gw.launch();
    gw.wait_for_status(&format!("/api/v1/kms/keys/{id}"), 404, 20)
        .await;
    gw.stop();
    let hsm = inspect(&gw.token);
    assert!(
        !hsm.resident_exists(&label).unwrap(),
        "deleting the key destroyed the token object"
    );
    hsm.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hsm_signing_keys_sign_in_the_hsm_and_openssl_verifies() {
    let mut gw = Gateway::start();
    let project = gw.project("hsm-sign").await;
    let data = b"firmware image 2.1";
    let data_file = write(&gw.dir, "fw.bin", data);
    let mut labels = Vec::new();
    for (alg, algs) in [
        (
            "ECC_NIST_P256",
            vec!["ECDSA_SHA_256", "ECDSA_SHA_384", "ECDSA_SHA_512"],
        ),
        (
            "RSA_4096",
            vec![
                "RSASSA_PKCS1_V1_5_SHA_256",
                "RSASSA_PKCS1_V1_5_SHA_512",
                "RSASSA_PSS_SHA_256",
                "RSASSA_PSS_SHA_384",
            ],
        ),
    ] {
        let (s, k) = hsm_key(
            &gw,
            &project,
            &alg.to_lowercase().replace('_', "-"),
            "sign-verify",
            alg,
            json!({}),
        )
        .await;
        assert_eq!(s, 200, "{k}");
        let id = k["key"]["id"].as_str().unwrap().to_owned();
        labels.push(k["key"]["hsmKeyLabel"].as_str().unwrap().to_owned());
        let (_, pk) = gw.get(&format!("/api/v1/kms/keys/{id}/public-key")).await;
        let der = write(
            &gw.dir,
            "hsmpub.der",
            &B64.decode(pk["publicKey"].as_str().unwrap()).unwrap(),
        );
        let pem = gw
            .dir
            .join(format!("{alg}.pem"))
            .to_str()
            .unwrap()
            .to_owned();
        openssl(&[
            "pkey", "-pubin", "-inform", "DER", "-in", &der, "-out", &pem,
        ]);
        for sa in algs {
            let (s, sig) = gw
                .post(
                    &format!("/api/v1/kms/keys/{id}/sign"),
                    json!({"data": B64.encode(data), "signingAlgorithm": sa}),
                )
                .await;
            assert_eq!(s, 200, "{sa} {sig}");
            let bytes = B64.decode(sig["signature"].as_str().unwrap()).unwrap();
            assert!(
                openssl_verify(&gw, &pem, sa, &data_file, &bytes),
                "openssl rejects {alg} {sa}"
            );
            let (s, v) = gw.post(&format!("/api/v1/kms/keys/{id}/verify"), json!({"data": B64.encode(data), "signature": sig["signature"], "signingAlgorithm": sa})).await;
            assert_eq!(
                (s, v["signatureValid"].as_bool()),
                (200, Some(true)),
                "{sa}"
            );
            if !sa.starts_with("RSASSA_PSS") {
                let digest = match &sa[sa.len() - 3..] {
                    "256" => sha2::Sha256::digest(data).to_vec(),
                    "384" => sha2::Sha384::digest(data).to_vec(),
                    _ => sha2::Sha512::digest(data).to_vec(),
                };
                let (s, sig) = gw.post(&format!("/api/v1/kms/keys/{id}/sign"), json!({"data": B64.encode(&digest), "signingAlgorithm": sa, "isDigest": true})).await;
                assert_eq!(s, 200, "{sa} digest {sig}");
                let bytes = B64.decode(sig["signature"].as_str().unwrap()).unwrap();
                assert!(
                    openssl_verify(&gw, &pem, sa, &data_file, &bytes),
                    "openssl rejects {alg} {sa} over a digest"
                );
            }
        }
    }
    gw.stop();
    let hsm = inspect(&gw.token);
    for l in &labels {
        assert!(hsm.resident_exists(l).unwrap(), "{l} lives in the token");
    }
    hsm.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_hsm_keys_are_adopted_by_label_after_checks() {
    // The operator pre-creates keys (the Bank-Vaults case) before the gateway starts.
    let mut gw = Gateway::start_with(&[("HSM_KEY_LABEL", "root-wrap")]);
    gw.stop();
    gw.token.import_secret(
        "operator-aes",
        KeyType::AES,
        &[0x42; 32],
        &[
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
            Attribute::Extractable(false),
            Attribute::Sensitive(true),
            Attribute::Private(true),
            Attribute::Copyable(false),
        ],
    );
    gw.token.import_secret(
        "operator-extractable",
        KeyType::AES,
        &[0x43; 32],
        &[
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
            Attribute::Extractable(true),
            Attribute::Sensitive(true),
        ],
    );
    let hsm = inspect(&gw.token);
    hsm.generate_resident("operator-ec", ResidentKind::EcP256)
        .unwrap();
    hsm.shutdown();
    gw.launch();
    let project = gw.project("adopt").await;

    let (s, k) = hsm_key(
        &gw,
        &project,
        "adopted-aes",
        "encrypt-decrypt",
        "aes-256-gcm",
        json!({"hsmKeyLabel": "operator-aes"}),
    )
    .await;
    assert_eq!(s, 200, "{k}");
    assert_eq!(k["key"]["hsmKeyLabel"], "operator-aes");
    let id = k["key"]["id"].as_str().unwrap().to_owned();
    let (s, enc) = gw.encrypt(&id, b"bank-vaults", None).await;
    assert_eq!(s, 200);
    let (_, dec) = gw
        .decrypt(&id, enc["ciphertext"].as_str().unwrap(), None)
        .await;
    assert_eq!(
        B64.decode(dec["plaintext"].as_str().unwrap()).unwrap(),
        b"bank-vaults"
    );

    let (s, k) = hsm_key(
        &gw,
        &project,
        "adopted-ec",
        "sign-verify",
        "ECC_NIST_P256",
        json!({"hsmKeyLabel": "operator-ec"}),
    )
    .await;
    assert_eq!(s, 200, "{k}");
    let ec = k["key"]["id"].as_str().unwrap().to_owned();
    let (s, sig) = gw
        .post(
            &format!("/api/v1/kms/keys/{ec}/sign"),
            json!({"data": "aGk=", "signingAlgorithm": "ECDSA_SHA_256"}),
        )
        .await;
    assert_eq!(s, 200);
    let (_, v) = gw.post(&format!("/api/v1/kms/keys/{ec}/verify"), json!({"data": "aGk=", "signature": sig["signature"], "signingAlgorithm": "ECDSA_SHA_256"})).await;
    assert_eq!(v["signatureValid"], true);

    // Refusals: missing label, extractable key, wrong type, a label already in use, a fragment.
    let (s, e) = hsm_key(
        &gw,
        &project,
        "x1",
        "encrypt-decrypt",
        "aes-256-gcm",
        json!({"hsmKeyLabel": "no-such-key"}),
    )
    .await;
    assert_eq!(
        (s, e["code"].as_str()),
        (400, Some("hsm_key_not_found")),
        "{e}"
    );
    let (s, e) = hsm_key(
        &gw,
        &project,
        "x2",
        "encrypt-decrypt",
        "aes-256-gcm",
        json!({"hsmKeyLabel": "operator-extractable"}),
    )
    .await;
    assert_eq!(
        (s, e["code"].as_str()),
        (400, Some("hsm_key_unusable")),
        "{e}"
    );
    let (s, e) = hsm_key(
        &gw,
        &project,
        "x3",
        "sign-verify",
        "RSA_4096",
        json!({"hsmKeyLabel": "operator-ec"}),
    )
    .await;
    assert_eq!(
        (s, e["code"].as_str()),
        (400, Some("hsm_key_unusable")),
        "{e}"
    );
    let (s, e) = hsm_key(
        &gw,
        &project,
        "x4",
        "encrypt-decrypt",
        "aes-256-gcm",
        json!({"hsmKeyLabel": "operator-aes"}),
    )
    .await;
    assert_eq!(s, 409, "{e}");
    let (s, e) = hsm_key(
        &gw,
        &project,
        "x5",
        "encrypt-decrypt",
        "aes-128-gcm",
        json!({}),
    )
    .await;
    assert_eq!(
        (s, e["code"].as_str()),
        (400, Some("invalid_request")),
        "{e}"
    );
    let (s, e) = gw
        .post(
            "/api/v1/kms/keys",
            json!({"projectId": project, "name": "x6", "protection": "cloud"}),
        )
        .await;
    assert_eq!(
        (s, e["code"].as_str()),
        (400, Some("invalid_protection")),
        "{e}"
    );
    let (s, e) = gw
        .post(
            "/api/v1/kms/keys",
            json!({"projectId": project, "name": "x7", "hsmKeyLabel": "operator-aes"}),
        )
        .await;
    assert_eq!(
        (s, e["code"].as_str()),
        (400, Some("invalid_request")),
        "{e}"
    );

    // createIfMissing generates it on the fly under the given label.
    let (s, k) = hsm_key(
        &gw,
        &project,
        "on-the-fly",
        "encrypt-decrypt",
        "aes-256-gcm",
        json!({"hsmKeyLabel": "made-on-demand", "createIfMissing": true}),
    )
    .await;
    assert_eq!(s, 200, "{k}");
    let fly = k["key"]["id"].as_str().unwrap().to_owned();
    assert_eq!(gw.encrypt(&fly, b"x", None).await.0, 200);

    // The gateway's own keys are never adopted, and adopting is for administrators of
    // every project.
    for (label, alg) in [
        ("root-wrap", "aes-256-gcm"),
        ("root-wrap_HMAC", "aes-256-gcm"),
        (&format!("kmsgw-{fly}"), "aes-256-gcm"),
    ] {
        let (s, e) = hsm_key(
            &gw,
            &project,
            "grab",
            "encrypt-decrypt",
            alg,
            json!({"hsmKeyLabel": label}),
        )
        .await;
        assert_eq!(
            (s, e["code"].as_str()),
            (400, Some("hsm_key_reserved")),
            "{label}: {e}"
        );
    }
    let (s, b) = gw
        .post(
            "/api/v1/identities",
            json!({"name": "manager", "projectId": project, "role": "keys:manage"}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let (s, e) = gw
        .call_as(
            b["token"].as_str(),
            reqwest::Method::POST,
            "/api/v1/kms/keys",
            Some(json!({"projectId": project, "name": "mine", "keyUsage": "encrypt-decrypt", "encryptionAlgorithm": "aes-256-gcm", "protection": "hsm", "hsmKeyLabel": "made-on-demand"})),
        )
        .await;
    assert_eq!((s, e["code"].as_str()), (403, Some("forbidden")), "{e}");

    // Deleting a key that adopted an object leaves the object on the token.
    let (s, _) = gw
        .call(
            reqwest::Method::DELETE,
            &format!("/api/v1/kms/keys/{fly}"),
            None,
        )
        .await;
    assert_eq!(s, 200);
    gw.stop();
    gw.sql(&format!(
        "UPDATE keys SET deletion_date = '2020-01-01T00:00:00Z' WHERE id = '{fly}'"
    ));
    gw.launch();
    gw.wait_for_status(&format!("/api/v1/kms/keys/{fly}"), 404, 20)
        .await;
    gw.stop();
    let hsm = inspect(&gw.token);
    assert!(
        hsm.resident_exists("made-on-demand").unwrap(),
        "an adopted object stays"
    );
    let attrs = hsm.key_attributes("made-on-demand").unwrap();
    assert_eq!(attrs.extractable, Some(false));
    hsm.shutdown();
}

/// RSA_2048, RSA_3072 and ECC_NIST_P384 are software keys for now: an HSM-resident one is
/// refused at creation, naming the type, with or without a label to adopt, and nothing is
/// made on the token or in the key store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hsm_resident_keys_of_the_newer_signing_types_are_refused_by_name() {
    let mut gw = Gateway::start();
    let project = gw.project("hsm-new-types").await;
    for alg in ["RSA_2048", "RSA_3072", "ECC_NIST_P384"] {
        for (i, extra) in [
            json!({}),
            json!({"hsmKeyLabel": "new-type-label", "createIfMissing": true}),
        ]
        .into_iter()
        .enumerate()
        {
            let name = format!("{}-{i}", alg.to_lowercase().replace('_', "-"));
            let (s, e) = hsm_key(&gw, &project, &name, "sign-verify", alg, extra).await;
            assert_eq!(
                (s, e["code"].as_str()),
                (400, Some("invalid_request")),
                "{alg}: {e}"
            );
            let message = e["message"].as_str().unwrap();
            assert!(
                message.contains(&format!("HSM-resident {alg} keys are not supported yet")),
                "{alg}: {message}"
            );
        }
        // The same type as a software key is fine.
        let (s, k) = gw
            .post(
                "/api/v1/kms/keys",
                json!({"projectId": project, "name": format!("sw-{}", alg.to_lowercase().replace('_', "-")), "keyUsage": "sign-verify", "encryptionAlgorithm": alg}),
            )
            .await;
        assert_eq!(
            (s, k["key"]["protection"].as_str()),
            (200, Some("software")),
            "{k}"
        );
    }
    let (s, list) = gw
        .get(&format!("/api/v1/kms/keys?projectId={project}"))
        .await;
    assert_eq!((s, list["totalCount"].as_u64()), (200, Some(3)), "{list}");
    gw.stop();
    let hsm = inspect(&gw.token);
    assert!(!hsm.resident_exists("new-type-label").unwrap());
    hsm.shutdown();
}
