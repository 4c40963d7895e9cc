//! Least-privilege HSM objects (issue 12, items 4-6): every object the gateway makes is
//! read back from the real token with C_GetAttributeValue and must carry exactly the
//! attributes of docs/HSM.md; the root key cannot be copied or changed; keys usable
//! without the PIN, copyable keys given now, fragment keys and ambiguous labels are
//! refused, at adoption and at `gen-customer-fragment`, with nothing stored.

mod common;

use common::gateway::{run_cli, Gateway};
use common::raw::{assert_key_pair, assert_secret_key, Raw, AES_USAGE, HMAC_USAGE};
use common::Token;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass};
use kms_gateway::fragments::{FragmentHsm, FragmentSource, Fragments};
use kms_gateway::hsm::{Hsm, HsmConfig, HsmError, KeyOrigin, ResidentKind, SecretKeyKind};
use serde_json::{json, Value};

fn cli(token: &Token, args: &[&str]) -> common::gateway::CliRun {
    run_cli(token.child_env(), args)
}

#[test]
fn every_object_the_gateway_makes_carries_exactly_the_documented_attributes() {
    let token = Token::new();
    // A fragment's HMAC key and key-encryption key, made by the command operators run.
    let file = token.dir.path().join("customer_fragments.json");
    let made = cli(
        &token,
        &[
            "gen-customer-fragment",
            "--name",
            "acme",
            "--type",
            "hsm_wrap_encrypt",
            "--hsm-key-label",
            "acme-hmac",
            "--kek-label",
            "acme-kek",
            "--output",
            file.to_str().unwrap(),
        ],
    );
    assert!(made.ok, "{}", made.all());
    assert!(
        made.stderr.contains("\"acme-hmac\": created"),
        "{}",
        made.all()
    );
    // The root keys, and HSM-resident KMS keys of each type.
    let hsm = Hsm::connect(HsmConfig {
        key_label: Some("root-wrap".into()),
        ..token.config()
    })
    .unwrap();
    assert_eq!(
        hsm.ensure_root_keys().unwrap(),
        (KeyOrigin::Created, KeyOrigin::Created)
    );
    for (label, kind) in [
        ("kms-aes", ResidentKind::Aes256),
        ("kms-ec", ResidentKind::EcP256),
        ("kms-rsa", ResidentKind::Rsa4096),
    ] {
        hsm.generate_resident(label, kind).unwrap();
    }
    // The gateway's own view agrees: nothing extra to warn about.
    for (label, kind) in [
        ("root-wrap", SecretKeyKind::Aes256),
        ("root-wrap_HMAC", SecretKeyKind::Hmac),
        ("acme-hmac", SecretKeyKind::Hmac),
        ("acme-kek", SecretKeyKind::Aes256),
    ] {
        let attrs = hsm.check_secret_key(label, kind).unwrap();
        assert_eq!(
            attrs.extras(kms_gateway::hsm::KeyNeeds::Secret(kind)),
            Vec::<&str>::new(),
            "{label}"
        );
    }
    hsm.shutdown();

    let raw = Raw::open(&token);
    assert_secret_key(&raw, "root-wrap", KeyType::AES, &AES_USAGE);
    assert_secret_key(&raw, "acme-kek", KeyType::AES, &AES_USAGE);
    assert_secret_key(&raw, "kms-aes", KeyType::AES, &AES_USAGE);
    assert_secret_key(&raw, "root-wrap_HMAC", KeyType::GENERIC_SECRET, &HMAC_USAGE);
    assert_secret_key(&raw, "acme-hmac", KeyType::GENERIC_SECRET, &HMAC_USAGE);
    assert_key_pair(&raw, "kms-ec", KeyType::EC);
    assert_key_pair(&raw, "kms-rsa", KeyType::RSA);
    raw.close();

    // `hsm check` reports each of them as having nothing extra.
    let mut env = token.child_env();
    env.push(("HSM_KEY_LABEL".into(), "root-wrap".into()));
    env.push((
        "CUSTOMER_FRAGMENTS_FILE".into(),
        file.to_str().unwrap().into(),
    ));
    let check = run_cli(env, &["hsm", "check"]);
    assert!(check.ok, "{}", check.all());
    let clean =
        "ok (private, sensitive, not extractable, not modifiable, not copyable, no extra usage)";
    for line in [
        "root key \"root-wrap\": ".to_owned(),
        "root key \"root-wrap_HMAC\": ".to_owned(),
        format!("HMAC key \"acme-hmac\" of fragment {}: ", made.stdout),
        format!(
            "key-encryption key \"acme-kek\" of fragment {}: ",
            made.stdout
        ),
    ] {
        assert!(
            check.stdout.contains(&format!("{line}{clean}")),
            "{line}: {}",
            check.all()
        );
    }
}

#[test]
fn the_root_key_can_be_neither_copied_nor_changed() {
    let token = Token::new();
    let hsm = Hsm::connect(HsmConfig {
        key_label: Some("root-wrap".into()),
        ..token.config()
    })
    .unwrap();
    hsm.ensure_root_keys().unwrap();
    hsm.shutdown();

    let raw = Raw::open(&token);
    for label in ["root-wrap", "root-wrap_HMAC"] {
        let root = raw.one(label, ObjectClass::SECRET_KEY);
        // A PIN holder copying it under a new label, or copying it out of the PIN's reach.
        for template in [
            vec![Attribute::Label(b"stolen".to_vec())],
            vec![
                Attribute::Label(b"stolen".to_vec()),
                Attribute::Private(false),
            ],
        ] {
            match raw.s().copy_object(root, &template) {
                Err(CkError::Pkcs11(rv, _)) => assert_eq!(rv, RvError::ActionProhibited, "{label}"),
                other => panic!("{label}: C_CopyObject must fail, got {other:?}"),
            }
        }
        assert!(raw.find("stolen", ObjectClass::SECRET_KEY).is_empty());
        // Nor given more usages, nor relabelled.
        for change in [Attribute::Wrap(true), Attribute::Label(b"renamed".to_vec())] {
            let r = raw.s().update_attributes(root, &[change]);
            assert!(
                matches!(
                    r,
                    Err(CkError::Pkcs11(
                        RvError::ActionProhibited | RvError::AttributeReadOnly,
                        _
                    ))
                ),
                "{label}: C_SetAttributeValue must fail, got {r:?}"
            );
        }
        assert_eq!(raw.flags(root).get(&AttributeType::Wrap), Some(&false));
        assert_eq!(raw.find(label, ObjectClass::SECRET_KEY).len(), 1);
    }
    raw.close();
}

/// AES keys a customer could bring, each with one protection missing.
fn import_customer_keys(token: &Token) {
    let aes = |private: bool, sensitive: bool, copyable: bool| {
        vec![
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
            Attribute::Extractable(false),
            Attribute::Sensitive(sensitive),
            Attribute::Private(private),
            Attribute::Copyable(copyable),
        ]
    };
    for (label, attrs) in [
        ("open-aes", aes(false, true, false)),
        ("readable-aes", aes(true, false, false)),
        ("copyable-aes", aes(true, true, true)),
        ("dup-aes", aes(true, true, false)),
        ("dup-aes", aes(true, true, false)),
    ] {
        token.import_secret(label, KeyType::AES, &[0x42; 32], &attrs);
    }
    let raw = Raw::open(token);
    raw.customer_ec_pair(
        "open-ec",
        &[Attribute::Private(false), Attribute::Copyable(false)],
    );
    raw.customer_ec_pair(
        "copyable-ec",
        &[Attribute::Private(true), Attribute::Copyable(true)],
    );
    raw.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_usable_without_the_pin_or_copyable_are_refused_at_adoption_and_nothing_is_stored() {
    let mut gw = Gateway::start_with(&[("HSM_KEY_LABEL", "root-wrap")]);
    gw.stop();
    import_customer_keys(&gw.token);
    gw.launch();
    let project = gw.project("byok").await;
    for (i, (label, alg, code, names)) in [
        (
            "open-aes",
            "aes-256-gcm",
            "hsm_key_insecure",
            "CKA_PRIVATE is false",
        ),
        (
            "readable-aes",
            "aes-256-gcm",
            "hsm_key_insecure",
            "CKA_SENSITIVE is false",
        ),
        (
            "copyable-aes",
            "aes-256-gcm",
            "hsm_key_insecure",
            "CKA_COPYABLE is true",
        ),
        (
            "open-ec",
            "ECC_NIST_P256",
            "hsm_key_insecure",
            "CKA_PRIVATE is false",
        ),
        (
            "copyable-ec",
            "ECC_NIST_P256",
            "hsm_key_insecure",
            "CKA_COPYABLE is true",
        ),
        ("dup-aes", "aes-256-gcm", "hsm_key_ambiguous", "2 objects"),
    ]
    .into_iter()
    .enumerate()
    {
        let usage = if alg == "aes-256-gcm" {
            "encrypt-decrypt"
        } else {
            "sign-verify"
        };
        // Found, so createIfMissing changes nothing.
        for create in [false, true] {
            let (s, e) = gw
                .post(
                    "/api/v1/kms/keys",
                    json!({"projectId": project, "name": format!("byok-{i}"), "keyUsage": usage,
                           "encryptionAlgorithm": alg, "protection": "hsm", "hsmKeyLabel": label,
                           "createIfMissing": create}),
                )
                .await;
            assert_eq!((s, e["code"].as_str()), (400, Some(code)), "{label}: {e}");
            let message = e["message"].as_str().unwrap();
            assert!(
                message.contains(names) && message.contains(label),
                "{label}: {message}"
            );
        }
    }
    let (s, list) = gw
        .get(&format!("/api/v1/kms/keys?projectId={project}"))
        .await;
    assert_eq!((s, list["totalCount"].as_u64()), (200, Some(0)), "{list}");
    // Refusals left the token as it was: nothing generated in place of a refused key.
    gw.stop();
    let raw = Raw::open(&gw.token);
    assert_eq!(raw.find("dup-aes", ObjectClass::SECRET_KEY).len(), 2);
    assert_eq!(raw.find("open-ec", ObjectClass::PRIVATE_KEY).len(), 1);
    raw.close();
}

#[test]
fn keys_that_lose_their_protection_are_refused_at_use() {
    let token = Token::new();
    import_customer_keys(&token);
    let hsm = Hsm::connect(token.config()).unwrap();
    let e = hsm
        .aes_gcm_encrypt("open-aes", &[0; 12], b"", b"data")
        .unwrap_err();
    assert!(
        matches!(e, HsmError::KeyInsecure { .. }) && e.to_string().contains("CKA_PRIVATE"),
        "{e}"
    );
    let e = hsm
        .aes_gcm_encrypt("readable-aes", &[0; 12], b"", b"data")
        .unwrap_err();
    assert!(e.to_string().contains("CKA_SENSITIVE"), "{e}");
    let e = hsm
        .sign_resident(
            "open-ec",
            kms_gateway::hsm::ResidentSignature::Ecdsa,
            &[1; 32],
        )
        .unwrap_err();
    assert!(e.to_string().contains("CKA_PRIVATE"), "{e}");
    let e = hsm
        .aes_gcm_encrypt("dup-aes", &[0; 12], b"", b"data")
        .unwrap_err();
    assert!(
        matches!(e, HsmError::DuplicateLabel { count: 2, .. }),
        "{e}"
    );
    hsm.shutdown();
}

fn hmac(private: bool, copyable: bool) -> Vec<Attribute> {
    vec![
        Attribute::Sign(true),
        Attribute::Verify(true),
        Attribute::Extractable(false),
        Attribute::Sensitive(true),
        Attribute::Private(private),
        Attribute::Copyable(copyable),
    ]
}

#[test]
fn gen_customer_fragment_refuses_unprotected_copyable_and_reserved_keys() {
    let token = Token::new();
    token.import_secret(
        "open-hmac",
        KeyType::GENERIC_SECRET,
        &[7; 32],
        &hmac(false, false),
    );
    token.import_secret(
        "copy-hmac",
        KeyType::GENERIC_SECRET,
        &[7; 32],
        &hmac(true, true),
    );
    token.import_secret(
        "good-hmac",
        KeyType::GENERIC_SECRET,
        &[7; 32],
        &hmac(true, false),
    );
    token.import_secret(
        "open-kek",
        KeyType::AES,
        &[9; 32],
        &[
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
            Attribute::Extractable(false),
            Attribute::Sensitive(true),
            Attribute::Private(false),
            Attribute::Copyable(false),
        ],
    );
    let file = token.dir.path().join("customer_fragments.json");
    let out = file.to_str().unwrap();
    let mut env = token.child_env();
    env.push(("HSM_KEY_LABEL".into(), "root-wrap".into()));
    for (ty, hmac_label, kek, names) in [
        ("hsm_wrapped", "open-hmac", None, "CKA_PRIVATE is false"),
        ("hsm_secured", "copy-hmac", None, "CKA_COPYABLE is true"),
        (
            "hsm_wrap_encrypt",
            "good-hmac",
            Some("open-kek"),
            "CKA_PRIVATE is false",
        ),
        ("hsm_wrapped", "root-wrap_HMAC", None, "gateway's own"),
        ("hsm_wrapped", "kmsgw-anything", None, "gateway's own"),
        (
            "hsm_wrap_encrypt",
            "good-hmac",
            Some("root-wrap"),
            "gateway's own",
        ),
    ] {
        let mut args = vec![
            "gen-customer-fragment",
            "--name",
            "acme",
            "--type",
            ty,
            "--hsm-key-label",
            hmac_label,
            "--output",
            out,
        ];
        if let Some(k) = kek {
            args.extend(["--kek-label", k]);
        }
        let r = run_cli(env.clone(), &args);
        assert!(!r.ok, "{hmac_label}/{kek:?} accepted: {}", r.all());
        assert!(
            r.stderr.contains(names),
            "{hmac_label}/{kek:?}: {}",
            r.all()
        );
        assert!(!file.exists(), "{hmac_label}/{kek:?}: nothing is written");
    }
    // Refusals created nothing: no root keys under the reserved labels.
    let hsm = Hsm::connect(token.config()).unwrap();
    for label in ["root-wrap", "root-wrap_HMAC", "kmsgw-anything"] {
        assert!(hsm.key_attributes(label).is_err(), "{label}");
    }
    hsm.shutdown();
    // The protected key is accepted.
    let r = run_cli(
        env,
        &[
            "gen-customer-fragment",
            "--name",
            "acme",
            "--type",
            "hsm_wrapped",
            "--hsm-key-label",
            "good-hmac",
            "--output",
            out,
        ],
    );
    assert!(r.ok, "{}", r.all());
}

#[test]
fn a_fragment_whose_key_is_usable_without_the_pin_does_not_load() {
    let token = Token::new();
    token.import_secret(
        "open-hmac",
        KeyType::GENERIC_SECRET,
        &[7; 32],
        &hmac(false, false),
    );
    token.import_secret(
        "good-hmac",
        KeyType::GENERIC_SECRET,
        &[7; 32],
        &hmac(true, false),
    );
    token.import_secret(
        "dup-hmac",
        KeyType::GENERIC_SECRET,
        &[7; 32],
        &hmac(true, false),
    );
    token.import_secret(
        "dup-hmac",
        KeyType::GENERIC_SECRET,
        &[8; 32],
        &hmac(true, false),
    );
    use base64::Engine;
    let seed = base64::engine::general_purpose::STANDARD.encode([5u8; 32]);
    let entry = |id: &str, label: &str| {
        json!({"id": id, "name": id, "fragment_type": "hsm_wrapped", "value": seed,
               "hsm_key_label": label, "created_at": "2026-01-01T00:00:00Z"})
    };
    let doc = json!({"customer_fragments": [
        entry("cf-open", "open-hmac"), entry("cf-good", "good-hmac"), entry("cf-dup", "dup-hmac")]});
    let hsm = Hsm::connect(token.config()).unwrap();
    let provider: std::sync::Arc<dyn FragmentHsm> = std::sync::Arc::new(hsm.clone());
    let fragments = Fragments::load(
        &FragmentSource::Inline(doc.to_string().into()),
        Some(provider),
    )
    .unwrap();
    let problem = |id: &str| {
        fragments
            .statuses()
            .into_iter()
            .find(|s| s.id.0 == id)
            .unwrap()
            .problem
    };
    assert_eq!(problem("cf-good"), None);
    let open = problem("cf-open").expect("refused");
    assert!(open.contains("CKA_PRIVATE is false"), "{open}");
    let dup = problem("cf-dup").expect("refused");
    assert!(
        dup.contains("2 objects") && dup.contains("dup-hmac"),
        "{dup}"
    );
    // Every label the file names is reserved, loaded or not.
    for label in ["open-hmac", "good-hmac", "dup-hmac"] {
        assert!(fragments.label_owner(label).is_some(), "{label}");
    }
    hsm.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragment_keys_cannot_be_adopted_as_kms_keys() {
    let mut gw = Gateway::start();
    let made = gw.cli(
        &[
            "gen-customer-fragment",
            "--name",
            "acme",
            "--type",
            "hsm_wrap_encrypt",
            "--hsm-key-label",
            "acme-hmac",
            "--kek-label",
            "acme-kek",
            "--output",
            gw.fragments_file().to_str().unwrap(),
        ],
        &[],
    );
    assert!(made.ok, "{}", made.all());
    let id = made.stdout.clone();
    // A fragment entry whose key is not on the token (yet): its label is reserved too.
    let mut doc: Value =
        serde_json::from_slice(&std::fs::read(gw.fragments_file()).unwrap()).unwrap();
    let mut other = doc["customer_fragments"][0].clone();
    other["id"] = "cf-0000000000000000".into();
    other["kek_label"] = "future-kek".into();
    doc["customer_fragments"]
        .as_array_mut()
        .unwrap()
        .push(other);
    std::fs::write(gw.fragments_file(), doc.to_string()).unwrap();
    gw.restart();
    let project = gw.project("grab").await;
    for (label, alg, usage, create, role) in [
        (
            "acme-kek",
            "aes-256-gcm",
            "encrypt-decrypt",
            false,
            "key-encryption key",
        ),
        (
            "acme-hmac",
            "aes-256-gcm",
            "encrypt-decrypt",
            false,
            "HMAC key",
        ),
        (
            "acme-hmac",
            "ECC_NIST_P256",
            "sign-verify",
            true,
            "HMAC key",
        ),
        (
            "future-kek",
            "aes-256-gcm",
            "encrypt-decrypt",
            true,
            "key-encryption key",
        ),
    ] {
        let (s, e) = gw
            .post(
                "/api/v1/kms/keys",
                json!({"projectId": project, "name": "grab", "keyUsage": usage, "encryptionAlgorithm": alg,
                       "protection": "hsm", "hsmKeyLabel": label, "createIfMissing": create}),
            )
            .await;
        assert_eq!(
            (s, e["code"].as_str()),
            (400, Some("hsm_key_reserved")),
            "{label}: {e}"
        );
        let message = e["message"].as_str().unwrap();
        assert!(
            message.contains(role) && message.contains(label),
            "{message}"
        );
    }
    // The fragment itself still works.
    let (s, k) = gw
        .post(
            "/api/v1/kms/keys",
            json!({"projectId": project, "name": "bound", "keyUsage": "encrypt-decrypt",
                   "encryptionAlgorithm": "aes-256-gcm", "customerFragmentId": id}),
        )
        .await;
    assert_eq!(s, 200, "{k}");
    let bound = k["key"]["id"].as_str().unwrap().to_owned();
    assert_eq!(gw.encrypt(&bound, b"x", None).await.0, 200);
    let (s, list) = gw
        .get(&format!("/api/v1/kms/keys?projectId={project}"))
        .await;
    assert_eq!((s, list["totalCount"].as_u64()), (200, Some(1)), "{list}");
    gw.stop();
    let hsm = Hsm::connect(gw.token.config()).unwrap();
    assert!(
        hsm.key_attributes("future-kek").is_err(),
        "createIfMissing made nothing under a fragment's label"
    );
    hsm.shutdown();
}

#[test]
fn a_duplicated_root_key_label_is_refused_rather_than_one_picked() {
    let token = Token::new();
    for value in [[1u8; 32], [2u8; 32]] {
        token.import_secret(
            "root-wrap",
            KeyType::AES,
            &value,
            &[
                Attribute::Encrypt(true),
                Attribute::Decrypt(true),
                Attribute::Extractable(false),
                Attribute::Sensitive(true),
                Attribute::Private(true),
            ],
        );
    }
    let hsm = Hsm::connect(HsmConfig {
        key_label: Some("root-wrap".into()),
        ..token.config()
    })
    .unwrap();
    let e = hsm.ensure_root_keys().unwrap_err();
    assert!(
        matches!(&e, HsmError::DuplicateLabel { label, count: 2, .. } if label == "root-wrap"),
        "{e}"
    );
    assert!(hsm.self_test().is_err(), "start-up stops");
    hsm.shutdown();
}

/// Root keys made by earlier versions (copyable, modifiable, with the token's default
/// usages) keep working, with a warning; the same key handed over now is refused.
#[test]
fn root_keys_of_earlier_versions_keep_working_with_a_warning() {
    let token = Token::new();
    // What an earlier version's template left to the token's defaults, made explicit so
    // that the test does not depend on those defaults.
    let old = |aes: bool| {
        vec![
            Attribute::Extractable(false),
            Attribute::Sensitive(true),
            Attribute::Private(true),
            Attribute::Modifiable(true),
            Attribute::Copyable(true),
            Attribute::Encrypt(aes),
            Attribute::Decrypt(aes),
            Attribute::Sign(!aes),
            Attribute::Verify(!aes),
            Attribute::Wrap(true),
            Attribute::Unwrap(false),
            Attribute::Derive(false),
        ]
    };
    token.import_secret("old-root", KeyType::AES, &[3; 32], &old(true));
    token.import_secret(
        "old-root_HMAC",
        KeyType::GENERIC_SECRET,
        &[4; 32],
        &old(false),
    );
    let mut env = token.child_env();
    env.push(("HSM_KEY_LABEL".into(), "old-root".into()));
    env.push((
        "CUSTOMER_FRAGMENTS_FILE".into(),
        token.dir.path().join("none.json").to_str().unwrap().into(),
    ));
    let check = run_cli(env, &["hsm", "check"]);
    assert!(check.ok, "{}", check.all());
    assert!(
        check
            .stdout
            .contains("root key \"old-root\": ok (private, sensitive, not extractable), WARNING: also CKA_WRAP, CKA_MODIFIABLE, CKA_COPYABLE true"),
        "{}",
        check.all()
    );

    let hsm = Hsm::connect(HsmConfig {
        key_label: Some("old-root".into()),
        ..token.config()
    })
    .unwrap();
    assert_eq!(
        hsm.ensure_root_keys().unwrap(),
        (KeyOrigin::Found, KeyOrigin::Found)
    );
    let sealed = hsm
        .aes_gcm_encrypt("old-root", &[1; 12], b"aad", b"root key")
        .unwrap();
    assert_eq!(
        hsm.aes_gcm_decrypt("old-root", &[1; 12], b"aad", &sealed)
            .unwrap()
            .as_slice(),
        b"root key"
    );
    let e = hsm
        .ensure_secret_key("old-root_HMAC", SecretKeyKind::Hmac)
        .unwrap_err();
    assert!(e.to_string().contains("CKA_COPYABLE is true"), "{e}");
    hsm.shutdown();

    // The fix docs/HSM.md gives: switch the extra usages off in place (the old key is
    // still modifiable); its value, and so everything wrapped under it, is unchanged.
    // CKA_COPYABLE cannot be switched off afterwards on SoftHSM2 (read-only once made).
    let raw = Raw::open(&token);
    let mut copyable_fixed = Vec::new();
    for label in ["old-root", "old-root_HMAC"] {
        let h = raw.one(label, ObjectClass::SECRET_KEY);
        raw.s()
            .update_attributes(h, &[Attribute::Wrap(false)])
            .unwrap_or_else(|e| panic!("{label}: CKA_WRAP to false: {e}"));
        match raw.s().update_attributes(h, &[Attribute::Copyable(false)]) {
            Ok(()) => copyable_fixed.push(true),
            Err(CkError::Pkcs11(RvError::AttributeReadOnly, _)) => copyable_fixed.push(false),
            Err(e) => panic!("{label}: CKA_COPYABLE to false: {e}"),
        }
    }
    raw.close();
    assert_eq!(
        copyable_fixed,
        [common::module() == "kryoptic"; 2],
        "docs/HSM.md says which token lets CKA_COPYABLE be switched off"
    );
    let hsm = Hsm::connect(token.config()).unwrap();
    let attrs = hsm
        .check_secret_key("old-root", SecretKeyKind::Aes256)
        .unwrap();
    let mut left = vec!["CKA_MODIFIABLE"];
    if !copyable_fixed[0] {
        left.push("CKA_COPYABLE");
    }
    assert_eq!(
        attrs.extras(kms_gateway::hsm::KeyNeeds::Secret(SecretKeyKind::Aes256)),
        left
    );
    assert_eq!(
        hsm.ensure_secret_key("old-root_HMAC", SecretKeyKind::Hmac)
            .is_ok(),
        copyable_fixed[1]
    );
    assert_eq!(
        hsm.aes_gcm_decrypt("old-root", &[1; 12], b"aad", &sealed)
            .unwrap()
            .as_slice(),
        b"root key"
    );
    hsm.shutdown();
}

/// `hsm check` reports the KMS keys that live in the HSM too (adopted and generated),
/// with their extra usages, and fails on one whose object is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hsm_check_reports_every_hsm_resident_kms_key_and_its_extra_usages() {
    let mut gw = Gateway::start_with(&[("HSM_KEY_LABEL", "root-wrap")]);
    gw.stop();
    // A customer's AES key that can also wrap, and an EC pair whose private key can also
    // derive: accepted at adoption (not copyable), warned about.
    let wide = |extra: Attribute| {
        vec![
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
            Attribute::Extractable(false),
            Attribute::Sensitive(true),
            Attribute::Private(true),
            Attribute::Copyable(false),
            Attribute::Modifiable(false),
            Attribute::Sign(false),
            Attribute::Verify(false),
            Attribute::Unwrap(false),
            Attribute::Derive(false),
            extra,
        ]
    };
    gw.token.import_secret(
        "wide-aes",
        KeyType::AES,
        &[0x24; 32],
        &wide(Attribute::Wrap(true)),
    );
    gw.token.import_secret(
        "gone-aes",
        KeyType::AES,
        &[0x25; 32],
        &wide(Attribute::Wrap(false)),
    );
    let raw = Raw::open(&gw.token);
    raw.customer_ec_pair(
        "wide-ec",
        &[
            Attribute::Private(true),
            Attribute::Copyable(false),
            Attribute::Modifiable(false),
            Attribute::Decrypt(false),
            Attribute::Unwrap(false),
            Attribute::SignRecover(false),
            Attribute::Derive(true),
        ],
    );
    raw.close();
    gw.launch();
    let project = gw.project("resident").await;
    let mut ids = Vec::new();
    for (name, alg, usage, label) in [
        (
            "wide-aes",
            "aes-256-gcm",
            "encrypt-decrypt",
            Some("wide-aes"),
        ),
        ("wide-ec", "ECC_NIST_P256", "sign-verify", Some("wide-ec")),
        (
            "gone-aes",
            "aes-256-gcm",
            "encrypt-decrypt",
            Some("gone-aes"),
        ),
        ("made", "ECC_NIST_P256", "sign-verify", None),
        ("soft", "aes-256-gcm", "encrypt-decrypt", Some("-")),
    ] {
        let mut body = json!({"projectId": project, "name": name, "keyUsage": usage,
                              "encryptionAlgorithm": alg, "protection": "hsm"});
        match label {
            Some("-") => body["protection"] = "software".into(),
            Some(l) => body["hsmKeyLabel"] = l.into(),
            None => {}
        }
        let (s, k) = gw.post("/api/v1/kms/keys", body).await;
        assert_eq!(s, 200, "{name}: {k}");
        ids.push(k["key"]["id"].as_str().unwrap().to_owned());
    }
    gw.stop();
    let line = |i: usize, name: &str, label: &str| {
        format!(
            "KMS key {} {name:?} of project {project}, HSM key {label:?}: ",
            ids[i]
        )
    };
    let check = gw.cli(&["hsm", "check"], &[]);
    assert!(check.ok, "{}", check.all());
    for expected in [
        format!(
            "{}ok (private, sensitive, not extractable), WARNING: also CKA_WRAP true",
            line(0, "wide-aes", "wide-aes")
        ),
        format!(
            "{}ok (private, sensitive, not extractable), WARNING: also CKA_DERIVE true",
            line(1, "wide-ec", "wide-ec")
        ),
        format!(
            "{}ok (private, sensitive, not extractable, not modifiable, not copyable, no extra usage)",
            line(2, "gone-aes", "gone-aes")
        ),
        format!(
            "{}ok (private, sensitive, not extractable, not modifiable, not copyable, no extra usage)",
            line(3, "made", &format!("kmsgw-{}", ids[3]))
        ),
    ] {
        assert!(check.stdout.contains(&expected), "{expected}\n{}", check.all());
    }
    assert!(!check.stdout.contains(&ids[4]), "{}", check.all());

    // A KMS key whose object went away fails the check, by name.
    let raw = Raw::open(&gw.token);
    let h = raw.one("gone-aes", ObjectClass::SECRET_KEY);
    raw.s().destroy_object(h).unwrap();
    raw.close();
    let check = gw.cli(&["hsm", "check"], &[]);
    assert!(!check.ok, "{}", check.all());
    assert!(
        check
            .stdout
            .contains(&format!("{}REFUSED: ", line(2, "gone-aes", "gone-aes"))),
        "{}",
        check.all()
    );
    assert!(
        check
            .all()
            .contains("1 HSM-resident KMS key(s) failed their checks"),
        "{}",
        check.all()
    );
}
