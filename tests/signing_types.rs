//! The signing key types ECC_NIST_P521, ED25519 and ML_DSA_44/65/87 (issue 13) end to end:
//! a real gateway on a real token, keys created and used through the native API, and the
//! signatures checked by the `openssl` command (P-521: `dgst -verify`; Ed25519: `pkeyutl
//! -verify -rawin`). Debian 12's OpenSSL 3.0 has no ML-DSA: here its public key's shape is
//! checked by `openssl asn1parse` and its signatures by the gateway; the client tests
//! (`tests/clients/`) verify them with a second implementation (PyPI `cryptography`).

mod common;

use base64::Engine;
use common::gateway::{openssl, openssl_verifies, write, Gateway, B64};
use serde_json::{json, Value};
use sha2::Digest;

use kms_gateway::crypto::signing::{self, AsymmetricKind, Input, SigningAlgorithm};

fn slug(s: &str) -> String {
    s.to_lowercase().replace('_', "-")
}

fn openssl_text(args: &[&str]) -> String {
    String::from_utf8_lossy(&openssl(args)).into_owned()
}

async fn signing_algorithms(gw: &Gateway, key: &str) -> Vec<String> {
    let (s, algs) = gw
        .get(&format!("/api/v1/kms/keys/{key}/signing-algorithms"))
        .await;
    assert_eq!(s, 200, "{algs}");
    serde_json::from_value(algs["signingAlgorithms"].clone()).unwrap()
}

async fn sign(gw: &Gateway, key: &str, data: &[u8], alg: &str, is_digest: bool) -> (u16, Value) {
    gw.post(
        &format!("/api/v1/kms/keys/{key}/sign"),
        json!({"data": B64.encode(data), "signingAlgorithm": alg, "isDigest": is_digest}),
    )
    .await
}

async fn verify(
    gw: &Gateway,
    key: &str,
    data: &[u8],
    sig: &[u8],
    alg: &str,
    is_digest: bool,
) -> (u16, Value) {
    gw.post(
        &format!("/api/v1/kms/keys/{key}/verify"),
        json!({"data": B64.encode(data), "signature": B64.encode(sig), "signingAlgorithm": alg, "isDigest": is_digest}),
    )
    .await
}

/// A verify answer as (status, signatureValid), and the body for the failure message.
fn verdict((s, v): (u16, Value)) -> ((u16, Option<bool>), Value) {
    ((s, v["signatureValid"].as_bool()), v)
}

/// The gateway's own verdict on a signature, and on the same signature with a bit flipped.
async fn gateway_accepts_only_the_real_signature(
    gw: &Gateway,
    key: &str,
    data: &[u8],
    sig: &[u8],
    alg: &str,
    is_digest: bool,
) {
    let (got, v) = verdict(verify(gw, key, data, sig, alg, is_digest).await);
    assert_eq!(got, (200, Some(true)), "{alg} {v}");
    let mut bad = sig.to_vec();
    let n = bad.len() / 2;
    bad[n] ^= 0x40;
    let (got, v) = verdict(verify(gw, key, data, &bad, alg, is_digest).await);
    assert_eq!(got, (200, Some(false)), "{alg} {v}");
    if !is_digest {
        let (got, v) = verdict(verify(gw, key, b"another message", sig, alg, false).await);
        assert_eq!(got, (200, Some(false)), "{alg} {v}");
    }
}

/// ECC_NIST_P521 with each of ECDSA_SHA_256/384/512, over the message and over its digest:
/// the key is on P-521 (openssl says so), and `openssl dgst -verify` accepts every signature.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p521_keys_sign_with_every_ecdsa_hash_and_openssl_verifies() {
    let gw = Gateway::start();
    let project = gw.project("p521").await;
    let key = gw
        .key(&project, "p521", "sign-verify", "ECC_NIST_P521", None)
        .await;
    let (_, pem) = gw.public_key(&key, "p521").await;
    let described = openssl_text(&["pkey", "-pubin", "-in", &pem, "-noout", "-text_pub"]);
    assert!(
        described.contains("Public-Key: (521 bit)") && described.contains("NIST CURVE: P-521"),
        "{described}"
    );
    let algs = signing_algorithms(&gw, &key).await;
    assert_eq!(algs, ["ECDSA_SHA_256", "ECDSA_SHA_384", "ECDSA_SHA_512"]);
    let data = b"signed on P-521";
    let data_file = write(&gw.dir, "p521.bin", data);
    for alg in &algs {
        for is_digest in [false, true] {
            let payload = if is_digest {
                match alg.as_str() {
                    "ECDSA_SHA_256" => sha2::Sha256::digest(data).to_vec(),
                    "ECDSA_SHA_384" => sha2::Sha384::digest(data).to_vec(),
                    _ => sha2::Sha512::digest(data).to_vec(),
                }
            } else {
                data.to_vec()
            };
            let (s, out) = sign(&gw, &key, &payload, alg, is_digest).await;
            assert_eq!(s, 200, "{alg} {out}");
            assert_eq!(out["signingAlgorithm"], alg.as_str());
            let sig = B64.decode(out["signature"].as_str().unwrap()).unwrap();
            let sig_file = write(&gw.dir, "p521.sig", &sig);
            assert!(
                openssl_verifies(&pem, alg, &data_file, &sig_file),
                "openssl rejects {alg} (digest={is_digest})"
            );
            gateway_accepts_only_the_real_signature(&gw, &key, &payload, &sig, alg, is_digest)
                .await;
        }
    }
    // A digest of another hash's length is refused by its length.
    let (s, e) = sign(&gw, &key, &[0u8; 32], "ECDSA_SHA_512", true).await;
    assert_eq!(
        (s, e["code"].as_str()),
        (400, Some("invalid_digest_length"))
    );
}

/// ED25519 (PureEdDSA): a 64-byte signature of the message that `openssl pkeyutl -verify
/// -rawin` accepts; the key's SubjectPublicKeyInfo is an ED25519 key to openssl; and
/// Infisical's name of the type, ECC_NIST_EDWARDS25519, makes the same type.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ed25519_keys_sign_the_message_and_openssl_verifies() {
    let gw = Gateway::start();
    let project = gw.project("ed25519").await;
    for (name, type_name) in [("ed", "ED25519"), ("ed-aws-name", "ECC_NIST_EDWARDS25519")] {
        let (s, created) = gw
            .post(
                "/api/v1/kms/keys",
                json!({"projectId": project, "name": name, "keyUsage": "sign-verify", "encryptionAlgorithm": type_name}),
            )
            .await;
        assert_eq!(s, 200, "{created}");
        assert_eq!(created["key"]["encryptionAlgorithm"], "ED25519");
        let key = created["key"]["id"].as_str().unwrap().to_owned();
        let (der, pem) = gw.public_key(&key, name).await;
        assert_eq!(der.len(), 44, "RFC 8410 SubjectPublicKeyInfo of 32 bytes");
        let described = openssl_text(&["pkey", "-pubin", "-in", &pem, "-noout", "-text_pub"]);
        assert!(described.contains("ED25519 Public-Key"), "{described}");
        assert_eq!(signing_algorithms(&gw, &key).await, ["ED25519_SHA_512"]);
        for data in [&b"signed by Ed25519"[..], b""] {
            let (s, out) = sign(&gw, &key, data, "ED25519_SHA_512", false).await;
            assert_eq!(s, 200, "{out}");
            let sig = B64.decode(out["signature"].as_str().unwrap()).unwrap();
            assert_eq!(sig.len(), 64);
            // PureEdDSA is deterministic (RFC 8032): the same message, the same signature.
            let (_, again) = sign(&gw, &key, data, "ED25519_SHA_512", false).await;
            assert_eq!(again["signature"], out["signature"]);
            // OpenSSL 3.0's pkeyutl cannot read an empty message: the gateway alone checks that one.
            if !data.is_empty() {
                let data_file = write(&gw.dir, "ed.bin", data);
                let sig_file = write(&gw.dir, "ed.sig", &sig);
                let verified = openssl_text(&[
                    "pkeyutl", "-verify", "-rawin", "-pubin", "-inkey", &pem, "-in", &data_file,
                    "-sigfile", &sig_file,
                ]);
                assert!(
                    verified.contains("Signature Verified Successfully"),
                    "{verified}"
                );
            }
            gateway_accepts_only_the_real_signature(
                &gw,
                &key,
                data,
                &sig,
                "ED25519_SHA_512",
                false,
            )
            .await;
        }
    }
}

/// The FIPS 204 object identifiers of the ML-DSA parameter sets (id-ml-dsa-44/65/87).
fn ml_dsa_oid(alg: &str) -> &'static str {
    match alg {
        "ML_DSA_44" => "2.16.840.1.101.3.4.3.17",
        "ML_DSA_65" => "2.16.840.1.101.3.4.3.18",
        _ => "2.16.840.1.101.3.4.3.19",
    }
}

/// ML_DSA_44/65/87: the public key is a SubjectPublicKeyInfo with the parameter set's OID
/// and key length (as `openssl asn1parse` reads it); signatures under both names (AWS's
/// ML_DSA_SHAKE_256, Infisical's key-type name) have FIPS 204's length and verify, and not
/// for another message or a flipped bit; a key's signature does not verify under another
/// key of another parameter set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ml_dsa_keys_sign_and_their_public_keys_are_fips_204_spki() {
    let gw = Gateway::start();
    let project = gw.project("ml-dsa").await;
    let mut made: Vec<(String, Vec<u8>, Vec<u8>)> = Vec::new();
    for (alg, public_len, sig_len) in [
        ("ML_DSA_44", 1312, 2420),
        ("ML_DSA_65", 1952, 3309),
        ("ML_DSA_87", 2592, 4627),
    ] {
        let key = gw.key(&project, &slug(alg), "sign-verify", alg, None).await;
        let (s, pk) = gw.get(&format!("/api/v1/kms/keys/{key}/public-key")).await;
        assert_eq!(s, 200, "{pk}");
        let der = B64.decode(pk["publicKey"].as_str().unwrap()).unwrap();
        let der_file = write(&gw.dir, &format!("{alg}.der"), &der);
        let parsed = openssl_text(&["asn1parse", "-inform", "DER", "-in", &der_file]);
        assert!(parsed.contains(ml_dsa_oid(alg)), "{alg}: {parsed}");
        // SEQUENCE { SEQUENCE { OID }, BIT STRING (0 unused bits ‖ the key) }.
        assert!(
            parsed.contains("BIT STRING") && der.len() > public_len,
            "{alg}: {parsed}"
        );
        assert_eq!(
            &der[der.len() - public_len - 1..der.len() - public_len],
            &[0]
        );
        assert_eq!(
            signing_algorithms(&gw, &key).await,
            [alg, "ML_DSA_SHAKE_256"]
        );
        let data = format!("firmware image signed by {alg}").into_bytes();
        let mut sig = Vec::new();
        for name in [alg, "ML_DSA_SHAKE_256"] {
            let (s, out) = sign(&gw, &key, &data, name, false).await;
            assert_eq!(s, 200, "{name} {out}");
            assert_eq!(out["signingAlgorithm"], name);
            sig = B64.decode(out["signature"].as_str().unwrap()).unwrap();
            assert_eq!(sig.len(), sig_len, "{name}");
            gateway_accepts_only_the_real_signature(&gw, &key, &data, &sig, name, false).await;
            // The gateway's verifier, from the public key alone, agrees.
            let kind = match alg {
                "ML_DSA_44" => AsymmetricKind::MlDsa(signing::MlDsaLevel::MlDsa44),
                "ML_DSA_65" => AsymmetricKind::MlDsa(signing::MlDsaLevel::MlDsa65),
                _ => AsymmetricKind::MlDsa(signing::MlDsaLevel::MlDsa87),
            };
            let parsed_alg = SigningAlgorithm::parse(name).unwrap();
            assert!(signing::verify(&der, kind, parsed_alg, Input::Message(&data), &sig).unwrap());
        }
        made.push((key, data, sig));
    }
    // The ML-DSA-44 signature, given to the ML-DSA-65 key.
    let (got, v) = verdict(
        verify(
            &gw,
            &made[1].0,
            &made[0].1,
            &made[0].2,
            "ML_DSA_SHAKE_256",
            false,
        )
        .await,
    );
    assert_eq!(got, (200, Some(false)), "{v}");
}

/// Refusals, each with its code: a signing algorithm of another key type
/// (`invalid_signing_algorithm`, on sign and verify), a digest for a pure scheme
/// (`digest_not_supported`), AWS's prehashed Ed25519 (`ED25519_PH_SHA_512`, not offered), and
/// the new types as HSM-resident keys (`invalid_request`, naming the PKCS#11 mechanisms).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_algorithms_digests_and_hsm_protection_are_refused_by_code() {
    let gw = Gateway::start();
    let project = gw.project("refusals").await;
    let ed = gw.key(&project, "ed", "sign-verify", "ED25519", None).await;
    let p521 = gw
        .key(&project, "p521", "sign-verify", "ECC_NIST_P521", None)
        .await;
    let ml44 = gw
        .key(&project, "ml44", "sign-verify", "ML_DSA_44", None)
        .await;
    let ml65 = gw
        .key(&project, "ml65", "sign-verify", "ML_DSA_65", None)
        .await;
    let digest = sha2::Sha512::digest(b"m").to_vec();
    for (key, alg) in [
        (&ed, "ECDSA_SHA_512"),
        (&ed, "ML_DSA_SHAKE_256"),
        (&ed, "ED25519_PH_SHA_512"),
        (&p521, "ED25519_SHA_512"),
        (&p521, "RSASSA_PSS_SHA_512"),
        (&ml44, "ML_DSA_65"),
        (&ml65, "ML_DSA_44"),
        (&ml65, "ED25519_SHA_512"),
        (&ml65, "ECDSA_SHA_256"),
    ] {
        let (s, e) = sign(&gw, key, b"m", alg, false).await;
        assert_eq!(
            (s, e["code"].as_str()),
            (400, Some("invalid_signing_algorithm")),
            "sign {alg}: {e}"
        );
        let (s, e) = verify(&gw, key, b"m", &[0u8; 64], alg, false).await;
        assert_eq!(
            (s, e["code"].as_str()),
            (400, Some("invalid_signing_algorithm")),
            "verify {alg}: {e}"
        );
    }
    for (key, alg) in [
        (&ed, "ED25519_SHA_512"),
        (&ml44, "ML_DSA_44"),
        (&ml65, "ML_DSA_SHAKE_256"),
    ] {
        let (s, e) = sign(&gw, key, &digest, alg, true).await;
        assert_eq!(
            (s, e["code"].as_str()),
            (400, Some("digest_not_supported")),
            "sign {alg}: {e}"
        );
        assert!(
            e["message"].as_str().unwrap().contains(alg),
            "the message names the algorithm: {e}"
        );
        let (s, e) = verify(&gw, key, &digest, &[0u8; 64], alg, true).await;
        assert_eq!(
            (s, e["code"].as_str()),
            (400, Some("digest_not_supported")),
            "verify {alg}: {e}"
        );
    }
    for (alg, mechanism) in [
        ("ECC_NIST_P521", "CKM_ECDSA"),
        ("ED25519", "CKM_EDDSA"),
        ("ML_DSA_44", "CKM_ML_DSA"),
        ("ML_DSA_65", "CKM_ML_DSA"),
        ("ML_DSA_87", "CKM_ML_DSA"),
    ] {
        let (s, e) = gw
            .post(
                "/api/v1/kms/keys",
                json!({"projectId": project, "name": format!("hsm-{}", slug(alg)), "keyUsage": "sign-verify", "encryptionAlgorithm": alg, "protection": "hsm"}),
            )
            .await;
        assert_eq!(
            (s, e["code"].as_str()),
            (400, Some("invalid_request")),
            "{alg}: {e}"
        );
        let message = e["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("HSM-resident {alg} keys are not supported yet"))
                && message.contains(mechanism),
            "{alg}: {message}"
        );
    }
    let (s, list) = gw
        .get(&format!("/api/v1/kms/keys?projectId={project}"))
        .await;
    assert_eq!((s, list["totalCount"].as_u64()), (200, Some(4)), "{list}");
}

/// Signatures made by openssl with keys of its own (P-521 with each hash, Ed25519) are
/// accepted by the gateway's verifier, the code behind every front-end's Verify.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_verifies_p521_and_ed25519_signatures_made_by_openssl() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let data = b"signed by openssl";
    let data_file = dir.join("m.bin");
    std::fs::write(&data_file, data).unwrap();
    let data_file = data_file.to_str().unwrap();
    let p521_key = dir.join("p521.key");
    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-521",
        "-out",
        p521_key.to_str().unwrap(),
    ]);
    let ed_key = dir.join("ed.key");
    openssl(&[
        "genpkey",
        "-algorithm",
        "ED25519",
        "-out",
        ed_key.to_str().unwrap(),
    ]);
    let der_of = |key: &std::path::Path| {
        openssl(&[
            "pkey",
            "-in",
            key.to_str().unwrap(),
            "-pubout",
            "-outform",
            "DER",
        ])
    };
    let sig_file = dir.join("s.sig");
    let sig_path = sig_file.to_str().unwrap();
    let check = |der: &[u8], kind: AsymmetricKind, alg: &str| {
        let sig = std::fs::read(&sig_file).unwrap();
        let parsed = SigningAlgorithm::parse(alg).unwrap();
        assert!(
            signing::verify(der, kind, parsed, Input::Message(data), &sig).unwrap(),
            "{alg}"
        );
        assert!(
            !signing::verify(der, kind, parsed, Input::Message(b"other"), &sig).unwrap(),
            "{alg}"
        );
    };
    let p521_der = der_of(&p521_key);
    for (alg, hash) in [
        ("ECDSA_SHA_256", "-sha256"),
        ("ECDSA_SHA_384", "-sha384"),
        ("ECDSA_SHA_512", "-sha512"),
    ] {
        openssl(&[
            "dgst",
            hash,
            "-sign",
            p521_key.to_str().unwrap(),
            "-out",
            sig_path,
            data_file,
        ]);
        check(&p521_der, AsymmetricKind::EccNistP521, alg);
    }
    let ed_der = der_of(&ed_key);
    openssl(&[
        "pkeyutl",
        "-sign",
        "-rawin",
        "-inkey",
        ed_key.to_str().unwrap(),
        "-in",
        data_file,
        "-out",
        sig_path,
    ]);
    check(&ed_der, AsymmetricKind::Ed25519, "ED25519_SHA_512");
}
