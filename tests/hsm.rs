//! The PKCS#11 layer against a real token: selection, errors, key attributes, the
//! session pool and recovery, and the HSM RNG.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use common::Token;
use cryptoki::object::{Attribute, KeyType, ObjectClass};
use kms_gateway::hsm::{Hsm, HsmConfig, HsmError, KeyOrigin, SecretKeyKind};
use kms_gateway::random::RandomSource;
use secrecy::SecretString;

#[test]
fn token_is_found_by_slot_label_and_serial() {
    let token = Token::new();
    let by_label = Hsm::connect(token.config()).expect("by label");
    let desc = by_label.token();
    assert_eq!(desc.label, "kmsgw-test");
    assert_eq!(desc.id, token.slot());
    by_label.shutdown();

    let by_slot = Hsm::connect(HsmConfig {
        token_label: None,
        slot: Some(token.slot().to_string()),
        ..token.config()
    })
    .expect("by slot");
    assert_eq!(by_slot.token().id, token.slot());
    by_slot.shutdown();

    let by_serial = Hsm::connect(HsmConfig {
        token_label: None,
        token_serial: Some(desc.serial.clone()),
        ..token.config()
    })
    .expect("by serial");
    assert_eq!(by_serial.token().serial, desc.serial);
    by_serial.shutdown();
}

fn connect_err(cfg: HsmConfig) -> HsmError {
    match Hsm::connect(cfg) {
        Ok(_) => panic!("connect should have failed"),
        Err(e) => e,
    }
}

#[test]
fn selector_errors_are_distinct_and_list_the_slots() {
    let token = Token::new();
    let none = connect_err(HsmConfig {
        token_label: None,
        ..token.config()
    });
    assert!(matches!(none, HsmError::NoTokenSelector { .. }), "{none}");
    assert!(
        none.to_string().contains("kmsgw-test"),
        "lists the slots: {none}"
    );
    assert!(
        none.to_string().contains(&format!("ID {}", token.slot())),
        "{none}"
    );

    let two = connect_err(HsmConfig {
        slot: Some(token.slot().to_string()),
        ..token.config()
    });
    assert!(
        matches!(two, HsmError::ConflictingSelectors { .. }),
        "{two}"
    );
    assert!(
        two.to_string().contains("HSM_SLOT, HSM_TOKEN_LABEL"),
        "{two}"
    );
    assert!(two.to_string().contains("kmsgw-test"), "{two}");

    let missing = connect_err(HsmConfig {
        token_label: Some("no-such-token".into()),
        ..token.config()
    });
    assert!(
        matches!(missing, HsmError::TokenNotFound { .. }),
        "{missing}"
    );
    assert!(
        missing.to_string().contains("no-such-token") && missing.to_string().contains("kmsgw-test"),
        "{missing}"
    );

    let bad_slot = connect_err(HsmConfig {
        token_label: None,
        slot: Some("abc".into()),
        ..token.config()
    });
    assert!(matches!(bad_slot, HsmError::BadSlotId(_)), "{bad_slot}");

    let wrong_slot = connect_err(HsmConfig {
        token_label: None,
        slot: Some("4242".into()),
        ..token.config()
    });
    assert!(
        matches!(wrong_slot, HsmError::TokenNotFound { .. }),
        "{wrong_slot}"
    );
    for e in [&none, &two, &missing, &wrong_slot] {
        assert_eq!(e.to_string().lines().count(), 1, "one line: {e}");
    }
}

#[test]
fn library_errors_are_clear() {
    let token = Token::new();
    let relative = connect_err(HsmConfig {
        lib_path: Some(PathBuf::from("lib/libsofthsm2.so")),
        ..token.config()
    });
    assert!(
        matches!(relative, HsmError::LibraryPathNotAbsolute(_)),
        "{relative}"
    );
    let absent = connect_err(HsmConfig {
        lib_path: Some(PathBuf::from("/nonexistent/libpkcs11.so")),
        ..token.config()
    });
    assert!(matches!(absent, HsmError::LibraryLoad { .. }), "{absent}");
    assert!(absent.to_string().contains("/nonexistent/libpkcs11.so"));
    let not_a_lib = token.dir.path().join("not-a-library.so");
    std::fs::write(&not_a_lib, b"hello").unwrap();
    let garbage = connect_err(HsmConfig {
        lib_path: Some(not_a_lib),
        ..token.config()
    });
    assert!(matches!(garbage, HsmError::LibraryLoad { .. }), "{garbage}");
    let unset = connect_err(HsmConfig {
        lib_path: None,
        ..token.config()
    });
    assert!(matches!(unset, HsmError::LibraryNotConfigured), "{unset}");
}

#[test]
fn wrong_pin_stops_at_once_and_is_not_retried() {
    let token = Token::new();
    let wrong = connect_err(HsmConfig {
        pin: Some(SecretString::from("0000")),
        ..token.config()
    });
    assert!(matches!(wrong, HsmError::PinIncorrect), "{wrong}");
    assert!(!wrong.to_string().contains("0000"), "the PIN is not echoed");
    // One failed login only: the token is still usable with the right PIN (SoftHSM2 and
    // Kryoptic lock after several failures, so a retry loop would show here).
    let ok = Hsm::connect(token.config()).expect("right PIN still works");
    ok.shutdown();
    let missing = connect_err(HsmConfig {
        pin: None,
        ..token.config()
    });
    assert!(matches!(missing, HsmError::PinMissing), "{missing}");
}

#[test]
fn created_keys_carry_exactly_the_design_attributes() {
    let token = Token::new();
    let hsm = Hsm::connect(HsmConfig {
        key_label: Some("kmsgw-root".into()),
        ..token.config()
    })
    .unwrap();
    let (aes, hmac) = hsm.ensure_root_keys().unwrap();
    assert_eq!((aes, hmac), (KeyOrigin::Created, KeyOrigin::Created));
    assert_eq!(
        hsm.ensure_root_keys().unwrap(),
        (KeyOrigin::Found, KeyOrigin::Found),
        "second call finds them"
    );

    let a = hsm.key_attributes("kmsgw-root").unwrap();
    assert_eq!(a.class, Some(ObjectClass::SECRET_KEY));
    assert_eq!(a.key_type, Some(KeyType::AES));
    assert_eq!(a.value_len, Some(32));
    assert_eq!(
        (a.encrypt, a.decrypt, a.token),
        (Some(true), Some(true), Some(true))
    );
    assert_eq!(
        (a.extractable, a.sensitive, a.private),
        (Some(false), Some(true), Some(true))
    );
    assert_eq!(a.label.as_deref(), Some("kmsgw-root"));
    assert!(!a.value_readable, "CKA_VALUE must not be readable");

    let h = hsm.key_attributes("kmsgw-root_HMAC").unwrap();
    assert_eq!(h.class, Some(ObjectClass::SECRET_KEY));
    assert_eq!(h.key_type, Some(KeyType::GENERIC_SECRET));
    assert_eq!(h.value_len, Some(32));
    assert_eq!(
        (h.sign, h.verify, h.token),
        (Some(true), Some(true), Some(true))
    );
    assert_eq!(
        (h.extractable, h.sensitive, h.private),
        (Some(false), Some(true), Some(true))
    );
    assert!(!h.value_readable, "CKA_VALUE must not be readable");

    let report = hsm.self_test().unwrap();
    assert!(report.mechanism_count > 0);
    assert_eq!(report.root_round_trip, report.aes_gcm);
    hsm.shutdown();
}

#[test]
fn customer_brought_keys_are_validated() {
    let token = Token::new();
    // Lacks CKA_VERIFY.
    token.import_secret(
        "no-verify",
        KeyType::GENERIC_SECRET,
        &[7u8; 32],
        &[
            Attribute::Sign(true),
            Attribute::Verify(false),
            Attribute::Extractable(false),
            Attribute::Sensitive(true),
        ],
    );
    // Wrong length.
    token.import_secret(
        "short",
        KeyType::GENERIC_SECRET,
        &[7u8; 16],
        &Token::hmac_attrs(),
    );
    // Extractable.
    token.import_secret(
        "extractable",
        KeyType::GENERIC_SECRET,
        &[7u8; 32],
        &[
            Attribute::Sign(true),
            Attribute::Verify(true),
            Attribute::Extractable(true),
            Attribute::Sensitive(true),
            Attribute::Private(true),
            Attribute::Copyable(false),
        ],
    );
    // Good.
    token.import_secret(
        "good",
        KeyType::GENERIC_SECRET,
        &[7u8; 32],
        &Token::hmac_attrs(),
    );

    let hsm = Hsm::connect(token.config()).unwrap();
    let e = hsm
        .ensure_secret_key("no-verify", SecretKeyKind::Hmac)
        .unwrap_err();
    assert!(
        matches!(e, HsmError::KeyAttributes { .. }) && e.to_string().contains("CKA_VERIFY"),
        "{e}"
    );
    let e = hsm
        .check_secret_key("short", SecretKeyKind::Hmac)
        .unwrap_err();
    assert!(e.to_string().contains("CKA_VALUE_LEN is 16"), "{e}");
    let e = hsm
        .check_secret_key("good", SecretKeyKind::Aes256)
        .unwrap_err();
    assert!(e.to_string().contains("CKA_KEY_TYPE"), "{e}");
    let e = hsm
        .ensure_secret_key("extractable", SecretKeyKind::Hmac)
        .unwrap_err();
    assert!(matches!(e, HsmError::ExtractableKeyRefused { .. }), "{e}");
    assert_eq!(
        hsm.ensure_secret_key("good", SecretKeyKind::Hmac).unwrap(),
        KeyOrigin::Found
    );
    let e = hsm.hmac_sha256("absent", b"x").unwrap_err();
    assert!(matches!(e, HsmError::KeyNotFound { .. }), "{e}");
    hsm.shutdown();

    let opted_in = Hsm::connect(HsmConfig {
        danger_allow_extractable_keys: true,
        ..token.config()
    })
    .unwrap();
    assert_eq!(
        opted_in
            .ensure_secret_key("extractable", SecretKeyKind::Hmac)
            .unwrap(),
        KeyOrigin::Found
    );
    opted_in.shutdown();
}

#[test]
fn hsm_rng_draws_from_c_generate_random() {
    let token = Token::new();
    let hsm = Hsm::connect(HsmConfig {
        use_rand: true,
        ..token.config()
    })
    .unwrap();
    let random = RandomSource::Hsm(hsm.clone());
    let before = hsm.counts().random_calls;
    let a: [u8; 32] = random.array().unwrap();
    let b: [u8; 32] = random.array().unwrap();
    assert_ne!(a, b);
    assert_ne!(a, [0u8; 32]);
    assert_eq!(hsm.counts().random_calls - before, 2);
    let mut rng = random.hsm_rng().expect("an HSM RNG");
    let x = rand_core::RngCore::next_u64(&mut rng);
    let y = rand_core::RngCore::next_u64(&mut rng);
    assert_ne!(x, y);
    assert_eq!(hsm.counts().random_calls - before, 4);
    hsm.shutdown();
}

#[test]
fn session_pool_serves_many_threads_within_its_bound() {
    let token = Token::new();
    token.import_secret(
        "k",
        KeyType::GENERIC_SECRET,
        &[9u8; 32],
        &Token::hmac_attrs(),
    );
    let hsm = Hsm::connect(HsmConfig {
        pool_size: 3,
        ..token.config()
    })
    .unwrap();
    let expected = hsm.hmac_sha256("k", b"message").unwrap();
    let threads: Vec<_> = (0..16)
        .map(|_| {
            let hsm = hsm.clone();
            let expected = expected.clone();
            std::thread::spawn(move || {
                for _ in 0..50 {
                    assert_eq!(*hsm.hmac_sha256("k", b"message").unwrap(), *expected);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("worker");
    }
    let counts = hsm.counts();
    assert_eq!(counts.hmac_calls, 1 + 16 * 50);
    // keeper + at most pool_size working sessions
    assert!(
        counts.sessions_opened <= 1 + 3,
        "opened {}",
        counts.sessions_opened
    );
    hsm.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn session_pool_serves_many_async_tasks() {
    let token = Token::new();
    token.import_secret(
        "k",
        KeyType::GENERIC_SECRET,
        &[9u8; 32],
        &Token::hmac_attrs(),
    );
    let hsm = Arc::new(Hsm::connect(token.config()).unwrap());
    let mut tasks = Vec::new();
    for i in 0..64u32 {
        let hsm = hsm.clone();
        tasks.push(tokio::task::spawn_blocking(move || {
            hsm.hmac_sha256("k", &i.to_be_bytes()).map(|m| *m)
        }));
    }
    let mut macs = std::collections::HashSet::new();
    for t in tasks {
        macs.insert(t.await.unwrap().unwrap());
    }
    assert_eq!(macs.len(), 64, "every input has its own MAC");
    hsm.shutdown();
}

#[test]
fn pool_recovers_after_sessions_are_closed_underneath_it() {
    let token = Token::new();
    token.import_secret(
        "k",
        KeyType::GENERIC_SECRET,
        &[9u8; 32],
        &Token::hmac_attrs(),
    );
    let hsm = Hsm::connect(token.config()).unwrap();
    let expected = hsm.hmac_sha256("k", b"m").unwrap();
    // Warm up several pooled sessions.
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| hsm.hmac_sha256("k", b"m").unwrap());
        }
    });
    assert!(hsm.is_healthy());
    let reconnects = hsm.counts().reconnects;

    // Close every session of the application through the library itself, as a token
    // reset or an operator's tool would: this also logs the application out.
    unsafe {
        // Through the function list: not every module exports C_CloseAllSessions by name.
        let lib = cryptoki_sys::Pkcs11::new(token.lib()).expect("load module");
        let mut list: *mut cryptoki_sys::CK_FUNCTION_LIST = std::ptr::null_mut();
        assert_eq!(lib.C_GetFunctionList(&mut list), cryptoki_sys::CKR_OK);
        let close_all = (*list).C_CloseAllSessions.expect("C_CloseAllSessions");
        let rv = close_all(token.slot() as cryptoki_sys::CK_SLOT_ID);
        assert_eq!(rv, cryptoki_sys::CKR_OK);
    }

    // The next call notices, rebuilds the connection, logs in again and succeeds.
    assert_eq!(*hsm.hmac_sha256("k", b"m").unwrap(), *expected);
    assert!(hsm.counts().reconnects > reconnects, "a reconnect happened");
    assert!(hsm.is_healthy());
    // And concurrent use keeps working afterwards.
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| assert_eq!(*hsm.hmac_sha256("k", b"m").unwrap(), *expected));
        }
    });
    hsm.shutdown();
}
