//! HMAC keys (usage generate-verify-mac): over the native API of a real gateway process
//! on a real token, and through the operations core in this process (on a SQLite store,
//! with the token's RNG) for what the API does not expose, such as naming a version.

mod common;

use std::sync::Arc;

use base64::Engine;
use common::gateway::{Gateway, B64};
use common::Token;
use kms_gateway::audit::{AuditLog, Stream};
use kms_gateway::core::crypto::{Mac, MacAlgorithm};
use kms_gateway::core::keys::CreateKey;
use kms_gateway::core::{
    Auth, Caller, CoreLimits, ErrorKind, Frontend, Gateway as Core, KeyId, Parts, Principal,
    ProjectId, RootAdmin,
};
use kms_gateway::fragments::Fragments;
use kms_gateway::hsm::Hsm;
use kms_gateway::keys::{Algorithm, KeyService, KeyUsage, Protection};
use kms_gateway::random::RandomSource;
use kms_gateway::store::KeyPatch;
use serde_json::{json, Value};

const ALGORITHMS: [(&str, usize); 3] = [
    ("HMAC_SHA_256", 32),
    ("HMAC_SHA_384", 48),
    ("HMAC_SHA_512", 64),
];

async fn generate(gw: &Gateway, key: &str, body: Value) -> (u16, Value) {
    gw.post(&format!("/api/v1/kms/keys/{key}/generate-mac"), body)
        .await
}

async fn verify(gw: &Gateway, key: &str, body: Value) -> (u16, Value) {
    gw.post(&format!("/api/v1/kms/keys/{key}/verify-mac"), body)
        .await
}

/// `macValid` of verify-mac, asserting a 200 that names the key and the algorithm.
async fn valid(gw: &Gateway, key: &str, data: &[u8], mac: &[u8], alg: Option<&str>) -> bool {
    let mut body = json!({"data": B64.encode(data), "mac": B64.encode(mac)});
    if let Some(a) = alg {
        body["macAlgorithm"] = a.into();
    }
    let (s, b) = verify(gw, key, body).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["keyId"], key);
    assert!(b["macAlgorithm"].is_string(), "{b}");
    b["macValid"].as_bool().expect("macValid is a boolean")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hmac_algorithm_generates_and_verifies_over_the_native_api() {
    let mut gw = Gateway::start();
    let fid = gw.gen_fragment("macs", "hsm_wrapped", Some("cf-macs"));
    gw.restart();
    let project = gw.project("macs").await;
    let data = b"the message to authenticate, never stored";
    for (alg, len) in ALGORITHMS {
        for fragment in [None, Some(fid.as_str())] {
            let name = format!(
                "{}{}",
                alg.to_lowercase().replace('_', "-"),
                if fragment.is_some() { "-cf" } else { "" }
            );
            let mut body = json!({"projectId": project, "name": name, "keyUsage": "generate-verify-mac", "encryptionAlgorithm": alg});
            if let Some(f) = fragment {
                body["customerFragmentId"] = f.into();
            }
            let (s, created) = gw.post("/api/v1/kms/keys", body).await;
            assert_eq!(s, 200, "{created}");
            assert_eq!(created["key"]["keyUsage"], "generate-verify-mac");
            assert_eq!(created["key"]["encryptionAlgorithm"], alg);
            assert_eq!(created["key"]["protection"], "software");
            let key = created["key"]["id"].as_str().unwrap().to_owned();

            let (s, out) = generate(&gw, &key, json!({"data": B64.encode(data)})).await;
            assert_eq!(s, 200, "{out}");
            assert_eq!(
                (out["keyId"].as_str(), out["macAlgorithm"].as_str()),
                (Some(key.as_str()), Some(alg))
            );
            let mac = B64.decode(out["mac"].as_str().unwrap()).unwrap();
            assert_eq!(mac.len(), len, "{alg}");
            // HMAC is deterministic: the same data gives the same MAC.
            let (_, again) = generate(
                &gw,
                &key,
                json!({"data": B64.encode(data), "macAlgorithm": alg}),
            )
            .await;
            assert_eq!(again["mac"], out["mac"]);

            assert!(valid(&gw, &key, data, &mac, None).await, "{alg}");
            assert!(valid(&gw, &key, data, &mac, Some(alg)).await, "{alg}");
            let mut changed_data = data.to_vec();
            changed_data[3] ^= 0x01;
            assert!(!valid(&gw, &key, &changed_data, &mac, None).await);
            let mut changed_mac = mac.clone();
            changed_mac[len - 1] ^= 0x80;
            assert!(!valid(&gw, &key, data, &changed_mac, None).await);
            assert!(!valid(&gw, &key, data, &mac[..len - 1], None).await);
            assert!(!valid(&gw, &key, data, &[mac.clone(), vec![0]].concat(), None).await);
            assert!(!valid(&gw, &key, data, &[], None).await);

            // Empty data has a MAC too.
            let (s, empty) = generate(&gw, &key, json!({"data": ""})).await;
            assert_eq!(s, 200, "{empty}");
            let empty_mac = B64.decode(empty["mac"].as_str().unwrap()).unwrap();
            assert_eq!(empty_mac.len(), len);
            assert!(valid(&gw, &key, b"", &empty_mac, None).await);
            assert!(!valid(&gw, &key, b"", &mac, None).await);

            // Another hash than the key's own may be named; its MAC verifies only with it.
            for (other, other_len) in ALGORITHMS.into_iter().filter(|(a, _)| *a != alg) {
                let (s, o) = generate(
                    &gw,
                    &key,
                    json!({"data": B64.encode(data), "macAlgorithm": other}),
                )
                .await;
                assert_eq!(s, 200, "{o}");
                assert_eq!(o["macAlgorithm"], other);
                let other_mac = B64.decode(o["mac"].as_str().unwrap()).unwrap();
                assert_eq!(other_mac.len(), other_len);
                assert!(valid(&gw, &key, data, &other_mac, Some(other)).await);
                assert!(!valid(&gw, &key, data, &other_mac, None).await);
                assert!(!valid(&gw, &key, data, &mac, Some(other)).await);
            }
        }
    }
    // Each key's MAC is its own: the same data under two keys of one algorithm differs.
    let a = gw
        .key(
            &project,
            "twin-a",
            "generate-verify-mac",
            "HMAC_SHA_256",
            None,
        )
        .await;
    let b = gw
        .key(
            &project,
            "twin-b",
            "generate-verify-mac",
            "HMAC_SHA_256",
            None,
        )
        .await;
    let (_, ma) = generate(&gw, &a, json!({"data": B64.encode(data)})).await;
    let (_, mb) = generate(&gw, &b, json!({"data": B64.encode(data)})).await;
    assert_ne!(ma["mac"], mb["mac"]);
    let mac_a = B64.decode(ma["mac"].as_str().unwrap()).unwrap();
    assert!(!valid(&gw, &b, data, &mac_a, None).await);

    // After a restart (material unwrapped again from the store) the MAC is the same.
    gw.restart();
    let (s, after) = generate(&gw, &a, json!({"data": B64.encode(data)})).await;
    assert_eq!((s, &after["mac"]), (200, &ma["mac"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_mac_requests_are_refused_with_their_codes() {
    let gw = Gateway::start_with(&[("KMSGW__SERVER__MAX_PLAINTEXT_BYTES", "1000")]);
    let project = gw.project("mac-errors").await;
    let key = gw
        .key(&project, "mac", "generate-verify-mac", "HMAC_SHA_256", None)
        .await;
    let data = B64.encode(b"x");
    let cases = [
        (
            "generate-mac",
            json!({"data": "not base64!"}),
            400,
            "invalid_base64",
        ),
        (
            "verify-mac",
            json!({"data": data, "mac": "%%%"}),
            400,
            "invalid_base64",
        ),
        ("verify-mac", json!({"data": data}), 400, "invalid_request"),
        ("generate-mac", json!({}), 400, "invalid_request"),
        (
            "generate-mac",
            json!({"data": data, "macAlgorithm": "HMAC_SHA_1"}),
            400,
            "invalid_mac_algorithm",
        ),
        (
            "verify-mac",
            json!({"data": data, "mac": data, "macAlgorithm": "hmac-sha-256"}),
            400,
            "invalid_mac_algorithm",
        ),
        (
            "generate-mac",
            json!({"data": data, "keyId": uuid::Uuid::nil().to_string()}),
            400,
            "key_id_mismatch",
        ),
        // Over the bound (server.max_plaintext_bytes, 1000 here), decoded or not.
        (
            "generate-mac",
            json!({"data": B64.encode(vec![7u8; 1001])}),
            413,
            "data_too_large",
        ),
        (
            "verify-mac",
            json!({"data": B64.encode(vec![7u8; 10_000]), "mac": data}),
            413,
            "data_too_large",
        ),
    ];
    for (route, body, status, code) in cases {
        let (s, b) = gw
            .post(&format!("/api/v1/kms/keys/{key}/{route}"), body.clone())
            .await;
        assert_eq!(
            (s, b["code"].as_str()),
            (status, Some(code)),
            "{route} {body}: {b}"
        );
    }
    let (s, b) = generate(&gw, &key, json!({"data": B64.encode(vec![7u8; 1000])})).await;
    assert_eq!(s, 200, "data of exactly the bound is accepted: {b}");
    let (s, b) = generate(
        &gw,
        &uuid::Uuid::new_v4().to_string(),
        json!({"data": data}),
    )
    .await;
    assert_eq!((s, b["code"].as_str()), (404, Some("key_not_found")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usages_do_not_mix_and_hsm_protection_is_refused() {
    let gw = Gateway::start();
    let project = gw.project("mac-usage").await;
    let hmac = gw
        .key(&project, "mac", "generate-verify-mac", "HMAC_SHA_384", None)
        .await;
    let aes = gw
        .key(&project, "aes", "encrypt-decrypt", "aes-256-gcm", None)
        .await;
    let ec = gw
        .key(&project, "ec", "sign-verify", "ECC_NIST_P256", None)
        .await;
    let data = B64.encode(b"data");
    let wrong = |s: u16, b: &Value| {
        assert_eq!(
            (s, b["code"].as_str()),
            (400, Some("wrong_key_usage")),
            "{b}"
        )
    };

    let (s, b) = gw.encrypt(&hmac, b"data", None).await;
    wrong(s, &b);
    let (s, b) = gw
        .post(
            &format!("/api/v1/kms/keys/{hmac}/sign"),
            json!({"data": data, "signingAlgorithm": "ECDSA_SHA_256"}),
        )
        .await;
    wrong(s, &b);
    let (s, b) = gw.get(&format!("/api/v1/kms/keys/{hmac}/public-key")).await;
    wrong(s, &b);
    let (s, b) = gw
        .post(
            &format!("/api/v1/kms/keys/{hmac}/generate-data-key"),
            json!({"keySpec": "AES_256"}),
        )
        .await;
    wrong(s, &b);
    for other in [&aes, &ec] {
        let (s, b) = generate(&gw, other, json!({"data": data})).await;
        wrong(s, &b);
        let (s, b) = verify(&gw, other, json!({"data": data, "mac": data})).await;
        wrong(s, &b);
    }

    // HSM-resident HMAC keys are not offered (yet), with or without a label to adopt.
    for extra in [
        json!({}),
        json!({"hsmKeyLabel": "some-hmac", "createIfMissing": true}),
    ] {
        let mut body = json!({"projectId": project, "name": "in-hsm", "keyUsage": "generate-verify-mac", "encryptionAlgorithm": "HMAC_SHA_256", "protection": "hsm"});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let (s, b) = gw.post("/api/v1/kms/keys", body).await;
        assert_eq!(
            (s, b["code"].as_str()),
            (400, Some("invalid_request")),
            "{b}"
        );
        assert!(
            b["message"]
                .as_str()
                .unwrap()
                .contains("HSM-resident HMAC keys are not supported yet"),
            "{b}"
        );
    }
    // An algorithm of another usage, and automatic rotation (a verify-mac names no
    // version, so a rotation the caller did not ask for would fail every MAC).
    let (s, b) = gw.post("/api/v1/kms/keys", json!({"projectId": project, "name": "mixed", "keyUsage": "sign-verify", "encryptionAlgorithm": "HMAC_SHA_256"})).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (400, Some("invalid_request")),
        "{b}"
    );
    let (s, b) = gw.post("/api/v1/kms/keys", json!({"projectId": project, "name": "auto", "keyUsage": "generate-verify-mac", "rotationPeriodDays": 30})).await;
    assert_eq!((s, b["code"].as_str()), (400, Some("not_supported")), "{b}");
    let (s, b) = gw
        .post(
            "/api/v1/kms/keys",
            json!({"projectId": project, "name": "unknown", "encryptionAlgorithm": "HMAC_SHA_224"}),
        )
        .await;
    assert_eq!(
        (s, b["code"].as_str()),
        (400, Some("invalid_algorithm")),
        "{b}"
    );

    // A disabled HMAC key refuses, as any key does; enabled again it works.
    let patch = |disabled: bool| json!({"isDisabled": disabled});
    let (s, _) = gw
        .call(
            reqwest::Method::PATCH,
            &format!("/api/v1/kms/keys/{hmac}"),
            Some(patch(true)),
        )
        .await;
    assert_eq!(s, 200);
    let (s, b) = generate(&gw, &hmac, json!({"data": data})).await;
    assert_eq!((s, b["code"].as_str()), (409, Some("key_disabled")), "{b}");
    let (s, _) = gw
        .call(
            reqwest::Method::PATCH,
            &format!("/api/v1/kms/keys/{hmac}"),
            Some(patch(false)),
        )
        .await;
    assert_eq!(s, 200);
    let (s, b) = generate(&gw, &hmac, json!({"data": data})).await;
    assert_eq!(s, 200, "{b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_verify_mac_keys_default_to_hmac_sha_256() {
    let gw = Gateway::start();
    let project = gw.project("mac-defaults").await;
    let (s, b) = gw
        .post(
            "/api/v1/kms/keys",
            json!({"projectId": project, "name": "plain", "keyUsage": "generate-verify-mac"}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        (
            b["key"]["keyUsage"].as_str(),
            b["key"]["encryptionAlgorithm"].as_str()
        ),
        (Some("generate-verify-mac"), Some("HMAC_SHA_256"))
    );
    let key = b["key"]["id"].as_str().unwrap().to_owned();
    let (s, out) = generate(&gw, &key, json!({"data": B64.encode(b"d")})).await;
    assert_eq!(
        (s, out["macAlgorithm"].as_str()),
        (200, Some("HMAC_SHA_256"))
    );
    assert_eq!(B64.decode(out["mac"].as_str().unwrap()).unwrap().len(), 32);
    // The algorithm alone decides the usage.
    let (s, b) = gw
        .post(
            "/api/v1/kms/keys",
            json!({"projectId": project, "name": "by-alg", "encryptionAlgorithm": "HMAC_SHA_512"}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["key"]["keyUsage"], "generate-verify-mac");
    // And it reads back the same from the store.
    let id = b["key"]["id"].as_str().unwrap();
    let (_, got) = gw.get(&format!("/api/v1/kms/keys/{id}")).await;
    assert_eq!(
        (
            got["key"]["keyUsage"].as_str(),
            got["key"]["encryptionAlgorithm"].as_str()
        ),
        (Some("generate-verify-mac"), Some("HMAC_SHA_512"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_gives_fresh_material_for_new_macs() {
    let gw = Gateway::start();
    let project = gw.project("mac-rotation").await;
    let key = gw
        .key(
            &project,
            "rotating",
            "generate-verify-mac",
            "HMAC_SHA_256",
            None,
        )
        .await;
    let data = b"rotate me";
    let (_, v1) = generate(&gw, &key, json!({"data": B64.encode(data)})).await;
    let mac1 = B64.decode(v1["mac"].as_str().unwrap()).unwrap();
    let (s, r) = gw
        .post(&format!("/api/v1/kms/keys/{key}/rotate"), json!({}))
        .await;
    assert_eq!((s, r["key"]["version"].as_u64()), (200, Some(2)), "{r}");
    let (_, v2) = generate(&gw, &key, json!({"data": B64.encode(data)})).await;
    let mac2 = B64.decode(v2["mac"].as_str().unwrap()).unwrap();
    assert_ne!(mac1, mac2, "the new version has new material");
    assert!(valid(&gw, &key, data, &mac2, None).await);
    // verify-mac checks the newest version: a MAC of version 1 is no longer valid there.
    assert!(!valid(&gw, &key, data, &mac1, None).await);
}

/// The operations core over a SQLite store in `dir`, drawing randomness from `hsm`.
fn core(dir: &std::path::Path, hsm: &Hsm) -> Core {
    let store = kms_gateway::store::open(&format!("sqlite://{}", dir.join("kms.db").display()))
        .expect("store");
    let irk: zeroize::Zeroizing<[u8; 32]> =
        zeroize::Zeroizing::new(common::gateway::rand_bytes(32).try_into().unwrap());
    let random = RandomSource::Hsm(hsm.clone());
    let keys = Arc::new(KeyService::new(
        store.clone(),
        Arc::new(Fragments::empty()),
        irk.clone(),
        random,
        None,
        Some(hsm.clone()),
    ));
    Core::new(Parts {
        keys,
        auth: Auth::new(store.clone()),
        hsm: Some(hsm.clone()),
        audit: AuditLog::start(store, &irk, Stream::parse(None)),
        root: RootAdmin {
            root_encryption_key: None,
            mechanism: Default::default(),
        },
        limits: CoreLimits::default(),
        irk,
    })
    .expect("core")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_core_verifies_macs_of_a_named_version_down_to_the_minimum() {
    let token = Token::new();
    let hsm = Hsm::connect(token.config()).expect("connect");
    let dir = tempfile::tempdir().unwrap();
    let gw = core(dir.path(), &hsm);
    let caller = Caller {
        principal: Some(Arc::new(Principal::operator())),
        frontend: Frontend::Cli,
        request_id: "mac-test".into(),
        client: None,
    };
    let project = gw
        .create_project(&caller, "core-macs".into())
        .await
        .unwrap();
    let create = |name: &str, usage, algorithm| CreateKey {
        project_id: ProjectId(project.id),
        name: name.into(),
        description: None,
        usage,
        algorithm,
        customer_fragment_id: None,
        protection: Protection::Software,
        rotation_period_days: None,
        attributes: Default::default(),
        exportable: false,
        material: None,
        disabled: false,
    };
    let key = gw
        .create_key(
            &caller,
            create("hmac", Some(KeyUsage::GenerateVerifyMac), None),
        )
        .await
        .unwrap();
    assert_eq!(key.algorithm, Algorithm::HmacSha256);
    let id = KeyId(key.id);
    let req = |data: &[u8], algorithm| Mac {
        key_id: id,
        data: data.to_vec(),
        algorithm,
        exact: false,
    };
    let data = b"versioned data";
    let v1 = gw.generate_mac(&caller, req(data, None)).await.unwrap();
    assert_eq!(
        (v1.key_version, v1.algorithm, v1.mac.len()),
        (1, MacAlgorithm::HmacSha256, 32)
    );
    let v1_512 = gw
        .generate_mac(&caller, req(data, Some(MacAlgorithm::HmacSha512)))
        .await
        .unwrap();
    assert_eq!(
        (v1_512.algorithm, v1_512.mac.len()),
        (MacAlgorithm::HmacSha512, 64)
    );

    let rotated = gw.rotate_key(&caller, id).await.unwrap();
    assert_eq!(rotated.version, 2);
    let v2 = gw.generate_mac(&caller, req(data, None)).await.unwrap();
    assert_eq!(v2.key_version, 2);
    assert_ne!(v1.mac, v2.mac);

    let check = |mac: &[u8], algorithm, version| {
        gw.verify_mac(&caller, req(data, algorithm), mac.to_vec(), version)
    };
    assert!(
        check(&v1.mac, None, Some(1)).await.unwrap(),
        "version 1 still verifies when named"
    );
    assert!(
        !check(&v1.mac, None, None).await.unwrap(),
        "not as the newest"
    );
    assert!(!check(&v1.mac, None, Some(2)).await.unwrap());
    assert!(check(&v2.mac, None, None).await.unwrap());
    assert!(check(&v2.mac, None, Some(2)).await.unwrap());
    assert!(check(&v1_512.mac, Some(MacAlgorithm::HmacSha512), Some(1))
        .await
        .unwrap());
    assert!(!check(&v1_512.mac, None, Some(1)).await.unwrap());
    let checked = gw
        .check_mac(&caller, req(data, None), v1.mac.clone(), Some(1))
        .await
        .unwrap();
    assert_eq!(
        (checked.valid, checked.key_version, checked.algorithm),
        (true, 1, MacAlgorithm::HmacSha256)
    );
    for missing in [0, 3] {
        let e = check(&v1.mac, None, Some(missing)).await.unwrap_err();
        assert_eq!(
            (e.kind, e.code),
            (ErrorKind::Invalid, "invalid_key_version"),
            "{e}"
        );
    }

    // Raising the minimum decryption version retires version 1 for MACs too.
    let patch = KeyPatch {
        min_decryption_version: Some(2),
        ..KeyPatch::default()
    };
    gw.update_key(&caller, id, patch).await.unwrap();
    let e = check(&v1.mac, None, Some(1)).await.unwrap_err();
    assert_eq!(e.code, "version_below_minimum", "{e}");
    assert!(check(&v2.mac, None, Some(2)).await.unwrap());

    // Empty data is fine; data over the bound is TooLarge.
    let empty = gw.generate_mac(&caller, req(b"", None)).await.unwrap();
    assert!(gw
        .verify_mac(&caller, req(b"", None), empty.mac, None)
        .await
        .unwrap());
    let max = CoreLimits::default().max_plaintext_bytes;
    let e = gw
        .generate_mac(&caller, req(&vec![1; max + 1], None))
        .await
        .unwrap_err();
    assert_eq!((e.kind, e.code), (ErrorKind::TooLarge, "data_too_large"));

    // Wrong usage, both ways.
    let aes = gw
        .create_key(&caller, create("aes", None, Some(Algorithm::Aes256Gcm)))
        .await
        .unwrap();
    let e = gw
        .generate_mac(
            &caller,
            Mac {
                key_id: KeyId(aes.id),
                data: data.to_vec(),
                algorithm: None,
                exact: false,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, "wrong_key_usage");
    let e = gw
        .encrypt(
            &caller,
            kms_gateway::core::crypto::Encrypt {
                key_id: id,
                plaintext: zeroize::Zeroizing::new(data.to_vec()),
                context: Default::default(),
                algorithm: None,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, "wrong_key_usage");

    // Each operation wrote one audit record naming the key version it used.
    let page = gw.audit_page(&caller, 0, 1000).await.unwrap();
    let macs: Vec<(String, Option<u32>, String)> = page
        .records
        .iter()
        .filter(|r| r.event.operation.starts_with("key.") && r.event.operation.ends_with("_mac"))
        .map(|r| {
            (
                r.event.operation.clone(),
                r.event.key_version,
                r.event.outcome.clone(),
            )
        })
        .collect();
    let expect = |op: &str, v: u32, outcome: &str| (op.to_owned(), Some(v), outcome.to_owned());
    assert_eq!(
        macs[..12],
        [
            expect("key.generate_mac", 1, "ok"),
            expect("key.generate_mac", 1, "ok"),
            expect("key.generate_mac", 2, "ok"),
            expect("key.verify_mac", 1, "ok"),
            expect("key.verify_mac", 2, "ok"),
            expect("key.verify_mac", 2, "ok"),
            expect("key.verify_mac", 2, "ok"),
            expect("key.verify_mac", 2, "ok"),
            expect("key.verify_mac", 1, "ok"),
            expect("key.verify_mac", 1, "ok"),
            expect("key.verify_mac", 1, "ok"),
            expect("key.verify_mac", 0, "invalid_key_version"),
        ]
    );
    drop(gw);
    hsm.shutdown();
}
