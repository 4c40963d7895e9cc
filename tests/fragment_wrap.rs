//! The `hsm_wrap_encrypt` fragment mode on a real token: the seed envelope's exact bytes,
//! a fragment value equal to `hsm_wrapped` of the same seed (and to the pinned vector),
//! per-fragment load errors, and `rewrap-customer-fragment` — a key bound to the fragment
//! still decrypts its old ciphertexts after the seed is re-sealed under a new HSM key.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use base64::Engine;
use common::gateway::{Gateway, B64};
use common::{b64, hex, vectors, Token};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::object::{Attribute, KeyType, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::slot::Slot;
use kms_gateway::fragments::{
    self, FragmentHsm, FragmentId, FragmentSource, FragmentType, Fragments,
};
use kms_gateway::hsm::{Hsm, SecretKeyKind};
use kms_gateway::random::RandomSource;
use secrecy::SecretString;
use serde_json::{json, Value};
use zeroize::Zeroizing;

const AAD_LABEL: &[u8] = b"kms-gateway/v1/fragment-seed";

fn provider(hsm: &Hsm) -> Option<Arc<dyn FragmentHsm>> {
    Some(Arc::new(hsm.clone()))
}

fn cli(token: &Token, args: &[&str]) -> Output {
    Command::new(common::gateway_bin())
        .args(args)
        .envs(token.child_env())
        .output()
        .expect("run kms-gateway")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .trim()
        .to_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `gen-customer-fragment --type hsm_wrap_encrypt`; returns the new id.
fn gen_wrap_encrypt(token: &Token, file: &Path, name: &str, hmac: &str, kek: &str) -> String {
    ok(&cli(
        token,
        &[
            "gen-customer-fragment",
            "--name",
            name,
            "--type",
            "hsm_wrap_encrypt",
            "--hsm-key-label",
            hmac,
            "--kek-label",
            kek,
            "--output",
            file.to_str().unwrap(),
        ],
    ))
}

fn gen_plain(token: &Token, file: &Path, name: &str, ty: &str, hmac: Option<&str>) -> String {
    let mut args = vec!["gen-customer-fragment", "--name", name, "--type", ty];
    if let Some(l) = hmac {
        args.extend(["--hsm-key-label", l]);
    }
    args.extend(["--output", file.to_str().unwrap()]);
    ok(&cli(token, &args))
}

fn rewrap(token: &Token, file: &Path, id: &str, new_kek: &str) -> Output {
    cli(
        token,
        &[
            "rewrap-customer-fragment",
            "--input-file",
            file.to_str().unwrap(),
            "--cf-id",
            id,
            "--new-kek-label",
            new_kek,
        ],
    )
}

/// The entries of a fragment file as JSON, by id.
fn entries(file: &Path) -> Vec<Value> {
    let v: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    v["customer_fragments"].as_array().unwrap().clone()
}

fn entry<'a>(all: &'a [Value], id: &str) -> &'a Value {
    all.iter()
        .find(|e| e["id"] == id)
        .unwrap_or_else(|| panic!("no entry {id}"))
}

fn aad(id: &str) -> Vec<u8> {
    [AAD_LABEL, &[0u8], id.as_bytes()].concat()
}

/// Opens a `value` by the documented bytes, with the HSM's AES-GCM primitive only:
/// `base64(0x01 ‖ iv(12) ‖ C ‖ tag(16))`, AAD = label ‖ 0x00 ‖ id.
fn open_by_hand(hsm: &Hsm, kek: &str, id: &str, value: &str) -> Zeroizing<Vec<u8>> {
    let blob = B64.decode(value).unwrap();
    assert_eq!(blob[0], 0x01, "format byte");
    let iv: [u8; 12] = blob[1..13].try_into().unwrap();
    hsm.aes_gcm_decrypt(kek, &iv, &aad(id), &blob[13..])
        .expect("the documented format opens")
}

fn inline(entries: Vec<Value>) -> FragmentSource {
    FragmentSource::Inline(Zeroizing::new(
        json!({ "customer_fragments": entries }).to_string(),
    ))
}

fn raw(id: &str, ty: &str, value: &str, hmac: Option<&str>, kek: Option<&str>) -> Value {
    let mut v = json!({
        "id": id, "name": format!("name of {id}"), "fragment_type": ty, "value": value,
        "created_at": "2026-11-23T00:00:00Z"
    });
    if let Some(l) = hmac {
        v["hsm_key_label"] = l.into();
    }
    if let Some(l) = kek {
        v["kek_label"] = l.into();
    }
    v
}

fn problem(fragments: &Fragments, id: &str) -> String {
    fragments
        .statuses()
        .into_iter()
        .find(|s| s.id.0 == id)
        .and_then(|s| s.problem)
        .unwrap_or_default()
}

/// Destroys the secret key `label` on the token, through a context of its own.
fn destroy_secret_key(token: &Token, label: &str) {
    let ctx = Pkcs11::new(token.lib()).expect("load module");
    ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .expect("init");
    let session = ctx
        .open_rw_session(Slot::try_from(token.slot()).unwrap())
        .unwrap();
    session
        .login(UserType::User, Some(&SecretString::from(token.pin())))
        .unwrap();
    let found = session
        .find_objects(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::Label(label.as_bytes().to_vec()),
        ])
        .unwrap();
    assert_eq!(found.len(), 1, "one key labelled {label}");
    session.destroy_object(found[0]).unwrap();
    drop(session);
    ctx.finalize().unwrap();
}

#[test]
fn generated_fragment_has_the_documented_envelope_and_the_hsm_wrapped_value() {
    let token = Token::new();
    let file = token.dir.path().join("customer_fragments.json");
    let gen = cli(
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
    let id = ok(&gen);
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    let all = entries(&file);
    let e = entry(&all, &id);
    assert_eq!(e["fragment_type"], "hsm_wrap_encrypt");
    assert_eq!(e["hsm_key_label"], "acme-hmac");
    assert_eq!(e["kek_label"], "acme-kek");
    let value = e["value"].as_str().unwrap().to_owned();
    assert_eq!(
        B64.decode(&value).unwrap().len(),
        1 + 12 + 32 + 16,
        "0x01 ‖ iv ‖ 32-byte seed sealed ‖ tag"
    );

    let hsm = Hsm::connect(token.config()).unwrap();
    // Both keys were made with the design attributes.
    let kek = hsm.key_attributes("acme-kek").unwrap();
    assert_eq!(
        (
            kek.extractable,
            kek.sensitive,
            kek.encrypt,
            kek.decrypt,
            kek.value_len
        ),
        (Some(false), Some(true), Some(true), Some(true), Some(32))
    );
    hsm.check_secret_key("acme-hmac", SecretKeyKind::Hmac)
        .unwrap();

    let seed = open_by_hand(&hsm, "acme-kek", &id, &value);
    assert_eq!(seed.len(), 32);
    let seed_b64 = B64.encode(seed.as_slice());
    assert!(
        !stderr(&gen).contains(&seed_b64) && !stderr(&gen).contains(&value),
        "nothing secret printed"
    );
    // The sealed seed is bound to its id: under another id's AAD it does not open.
    let blob = B64.decode(&value).unwrap();
    let iv: [u8; 12] = blob[1..13].try_into().unwrap();
    assert!(hsm
        .aes_gcm_decrypt("acme-kek", &iv, &aad("cf-other"), &blob[13..])
        .is_err());

    let loaded = Fragments::load(&FragmentSource::File(file.clone()), provider(&hsm)).unwrap();
    let fid = FragmentId(id.clone());
    assert_eq!(
        loaded.fragment_type(&fid),
        Some(FragmentType::HsmWrapEncrypt)
    );
    let hmacs = hsm.counts().hmac_calls;
    let fv = loaded.value(&fid).unwrap();
    for _ in 0..3 {
        assert_eq!(*loaded.value(&fid).unwrap(), *fv);
    }
    assert_eq!(
        hsm.counts().hmac_calls,
        hmacs,
        "the value is cached like hsm_wrapped"
    );

    // Same id, same seed in the clear, same HMAC key, type hsm_wrapped: the same value.
    let wrapped = Fragments::load(
        &inline(vec![raw(
            &id,
            "hsm_wrapped",
            &seed_b64,
            Some("acme-hmac"),
            None,
        )]),
        provider(&hsm),
    )
    .unwrap();
    assert_eq!(*wrapped.value(&fid).unwrap(), *fv);
    hsm.shutdown();
}

#[test]
fn wrap_encrypt_reproduces_the_pinned_hsm_fragment_vector() {
    let v = vectors();
    let fh = &v["fragment_hsm"];
    let token = Token::new();
    token.import_secret(
        "vector-hmac",
        KeyType::GENERIC_SECRET,
        &hex(&fh["hsm_hmac_key"]),
        &Token::hmac_attrs(),
    );
    let hsm = Hsm::connect(token.config()).unwrap();
    hsm.ensure_secret_key("vector-kek", SecretKeyKind::Aes256)
        .unwrap();
    let id = FragmentId(fh["fragment_id"].as_str().unwrap().to_owned());

    // The IV comes from the configured source: the HSM's RNG here (HSM_USE_RAND=true).
    let draws = hsm.counts().random_calls;
    let value = fragments::seal_seed(
        &hsm,
        "vector-kek",
        &id,
        &b64(&fh["seed_b64"]),
        &RandomSource::Hsm(hsm.clone()),
    )
    .unwrap();
    assert_eq!(
        hsm.counts().random_calls,
        draws + 1,
        "one C_GenerateRandom for the IV"
    );
    let again = fragments::seal_seed(
        &hsm,
        "vector-kek",
        &id,
        &b64(&fh["seed_b64"]),
        &RandomSource::Os,
    )
    .unwrap();
    assert_eq!(
        hsm.counts().random_calls,
        draws + 1,
        "the OS RNG leaves the HSM alone"
    );
    assert_ne!(value, again, "a fresh IV each time");

    for sealed in [&value, &again] {
        let loaded = Fragments::load(
            &inline(vec![raw(
                &id.0,
                "hsm_wrap_encrypt",
                sealed,
                Some("vector-hmac"),
                Some("vector-kek"),
            )]),
            provider(&hsm),
        )
        .unwrap();
        assert_eq!(
            loaded.value(&id).unwrap().to_vec(),
            hex(&fh["fragment_value"]),
            "FV of the vector"
        );
    }
    hsm.shutdown();
}

#[test]
fn load_errors_name_the_fragment_and_the_others_still_load() {
    let token = Token::new();
    let hsm = Hsm::connect(token.config()).unwrap();
    for (label, kind) in [
        ("hmac", SecretKeyKind::Hmac),
        ("kek-a", SecretKeyKind::Aes256),
        ("kek-b", SecretKeyKind::Aes256),
    ] {
        hsm.ensure_secret_key(label, kind).unwrap();
    }
    let seed = [7u8; 32];
    let seal = |id: &str| {
        fragments::seal_seed(
            &hsm,
            "kek-a",
            &FragmentId(id.into()),
            &seed,
            &RandomSource::Os,
        )
        .unwrap()
    };
    let tampered = {
        let mut blob = B64.decode(seal("cf-tampered")).unwrap();
        blob[20] ^= 0x01;
        B64.encode(blob)
    };
    let unknown_format = {
        let mut blob = B64.decode(seal("cf-format")).unwrap();
        blob[0] = 0x02;
        B64.encode(blob)
    };
    let w = "hsm_wrap_encrypt";
    let source = inline(vec![
        raw("cf-good", w, &seal("cf-good"), Some("hmac"), Some("kek-a")),
        raw(
            "cf-wrongkek",
            w,
            &seal("cf-wrongkek"),
            Some("hmac"),
            Some("kek-b"),
        ),
        raw(
            "cf-nokek",
            w,
            &seal("cf-nokek"),
            Some("hmac"),
            Some("no-such-kek"),
        ),
        raw("cf-tampered", w, &tampered, Some("hmac"), Some("kek-a")),
        // A sealed seed copied to another id does not open there (AAD = id).
        raw("cf-moved", w, &seal("cf-good"), Some("hmac"), Some("kek-a")),
        raw("cf-format", w, &unknown_format, Some("hmac"), Some("kek-a")),
        raw(
            "cf-nokeklabel",
            w,
            &seal("cf-nokeklabel"),
            Some("hmac"),
            None,
        ),
        raw(
            "cf-nohmac",
            w,
            &seal("cf-nohmac"),
            Some("no-such-hmac"),
            Some("kek-a"),
        ),
        raw(
            "cf-wrapped",
            "hsm_wrapped",
            &B64.encode(seed),
            Some("hmac"),
            None,
        ),
        raw(
            "cf-stray",
            "hsm_wrapped",
            &B64.encode(seed),
            Some("hmac"),
            Some("kek-a"),
        ),
        raw("cf-std", "standard", &B64.encode(seed), None, None),
    ]);
    let loaded = Fragments::load(&source, provider(&hsm)).unwrap();
    for id in ["cf-good", "cf-wrapped", "cf-std"] {
        assert!(
            loaded.is_loaded(&FragmentId(id.into())),
            "{id}: {}",
            problem(&loaded, id)
        );
    }
    let expect = [
        ("cf-wrongkek", vec!["does not unseal", "\"kek-b\""]),
        ("cf-nokek", vec!["\"no-such-kek\"", "not on the token"]),
        ("cf-tampered", vec!["does not unseal", "altered"]),
        ("cf-moved", vec!["does not unseal"]),
        ("cf-format", vec!["format byte 0x02"]),
        ("cf-nokeklabel", vec!["needs kek_label"]),
        ("cf-nohmac", vec!["no-such-hmac"]),
        (
            "cf-stray",
            vec!["kek_label applies only to hsm_wrap_encrypt"],
        ),
    ];
    for (id, words) in &expect {
        let p = problem(&loaded, id);
        for word in words {
            assert!(p.contains(word), "{id}: {p:?} lacks {word:?}");
        }
        let err = loaded.value(&FragmentId((*id).into())).unwrap_err();
        assert!(err.to_string().contains(id), "{err}");
        assert!(!err.to_string().contains(&B64.encode(seed)));
    }
    assert_eq!(loaded.statuses().len(), 3 + expect.len());
    assert!(
        hsm.is_healthy(),
        "a bad sealed seed is a fragment problem, not an HSM outage"
    );
    assert!(loaded.value(&FragmentId("cf-good".into())).is_ok());

    // Without an HSM, the type says what it needs.
    let none = Fragments::load(
        &inline(vec![raw(
            "cf-x",
            w,
            &seal("cf-x"),
            Some("hmac"),
            Some("kek-a"),
        )]),
        None,
    )
    .unwrap();
    assert!(problem(&none, "cf-x").contains("needs an HSM"));
    hsm.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_rewrap_a_bound_key_still_decrypts_its_old_ciphertexts() {
    let mut gw = Gateway::start();
    let file = gw.fragments_file();
    let cf = gen_wrap_encrypt(&gw.token, &file, "acme", "acme-hmac", "acme-kek-2026");
    let other = gw.gen_fragment("beta", "hsm_wrapped", Some("beta-hmac"));
    let plain = gw.gen_fragment("gamma", "standard", None);
    gw.restart();

    let project = gw.project("rewrap").await;
    let key = gw
        .key(
            &project,
            "bound",
            "encrypt-decrypt",
            "aes-256-gcm",
            Some(&cf),
        )
        .await;
    let other_key = gw
        .key(
            &project,
            "other",
            "encrypt-decrypt",
            "aes-256-gcm",
            Some(&other),
        )
        .await;
    let ctx = json!({"tenant": "acme"});
    let (s, enc) = gw.encrypt(&key, b"ledger 2026", Some(ctx.clone())).await;
    assert_eq!(s, 200, "{enc}");
    let old_ct = enc["ciphertext"].as_str().unwrap().to_owned();
    let (s, enc) = gw.encrypt(&other_key, b"beta data", None).await;
    assert_eq!(s, 200, "{enc}");
    let other_ct = enc["ciphertext"].as_str().unwrap().to_owned();
    gw.stop();

    let before = entries(&file);
    let text_before = std::fs::read_to_string(&file).unwrap();
    let out = rewrap(&gw.token, &file, &cf, "acme-kek-2027");
    assert_eq!(ok(&out), cf, "prints the id");
    let after = entries(&file);

    // Only the re-wrapped entry's value and kek_label changed; the rest is as it was.
    assert_eq!(after.len(), 3);
    for id in [&other, &plain] {
        assert_eq!(entry(&after, id), entry(&before, id), "{id} kept");
    }
    let (old_e, new_e) = (entry(&before, &cf), entry(&after, &cf));
    assert_ne!(new_e["value"], old_e["value"]);
    assert_eq!(new_e["kek_label"], "acme-kek-2027");
    let mut unchanged = new_e.clone();
    unchanged["value"] = old_e["value"].clone();
    unchanged["kek_label"] = old_e["kek_label"].clone();
    assert_eq!(&unchanged, old_e, "no other field of the entry changed");
    assert_eq!(
        after.iter().map(|e| e["id"].clone()).collect::<Vec<_>>(),
        before.iter().map(|e| e["id"].clone()).collect::<Vec<_>>(),
        "order kept"
    );
    // Byte for byte: the new file is the old one with those two strings replaced.
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        text_before
            .replace(
                old_e["value"].as_str().unwrap(),
                new_e["value"].as_str().unwrap()
            )
            .replace("\"acme-kek-2026\"", "\"acme-kek-2027\""),
    );
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    {
        let hsm = Hsm::connect(gw.token.config()).unwrap();
        let old_seed = open_by_hand(&hsm, "acme-kek-2026", &cf, old_e["value"].as_str().unwrap());
        let new_seed = open_by_hand(&hsm, "acme-kek-2027", &cf, new_e["value"].as_str().unwrap());
        assert_eq!(*old_seed, *new_seed, "the same seed under the new key");
        let seed_b64 = B64.encode(new_seed.as_slice());
        assert!(!stderr(&out).contains(&seed_b64) && !ok(&out).contains(&seed_b64));
        assert!(
            !gw.log().contains(&seed_b64),
            "the gateway never logs the seed"
        );
        let kek = hsm.key_attributes("acme-kek-2027").unwrap();
        assert_eq!(
            (kek.extractable, kek.sensitive, kek.encrypt),
            (Some(false), Some(true), Some(true))
        );
        hsm.shutdown();
    }
    // The old key is no longer needed: destroy it, then start again.
    destroy_secret_key(&gw.token, "acme-kek-2026");
    gw.launch();

    let (s, dec) = gw.decrypt(&key, &old_ct, Some(ctx.clone())).await;
    assert_eq!(s, 200, "{dec}");
    assert_eq!(
        B64.decode(dec["plaintext"].as_str().unwrap()).unwrap(),
        b"ledger 2026"
    );
    let (s, dec) = gw.decrypt(&other_key, &other_ct, None).await;
    assert_eq!(s, 200, "{dec}");
    assert_eq!(
        B64.decode(dec["plaintext"].as_str().unwrap()).unwrap(),
        b"beta data"
    );
    let (s, enc) = gw.encrypt(&key, b"ledger 2027", None).await;
    assert_eq!(s, 200, "{enc}");
    let (s, dec) = gw
        .decrypt(&key, enc["ciphertext"].as_str().unwrap(), None)
        .await;
    assert_eq!(s, 200, "{dec}");
    assert!(!gw.log().contains("not loaded"), "every fragment loaded");
}

#[test]
fn rewrap_refusals_leave_the_file_unchanged() {
    let token = Token::new();
    let file = token.dir.path().join("customer_fragments.json");
    let cf = gen_wrap_encrypt(&token, &file, "acme", "acme-hmac", "kek-1");
    let wrapped = gen_plain(&token, &file, "beta", "hsm_wrapped", Some("beta-hmac"));
    let original = std::fs::read(&file).unwrap();

    let refused = |file: &Path, id: &str, new_kek: &str, words: &[&str]| {
        let before = std::fs::read(file).ok();
        let out = rewrap(&token, file, id, new_kek);
        let err = stderr(&out);
        assert!(!out.status.success(), "{id} -> {new_kek}: {err}");
        let reason = err.trim().lines().last().unwrap_or_default();
        assert!(reason.starts_with("kms-gateway: "), "{err}");
        for w in words {
            assert!(reason.contains(w), "{reason:?} lacks {w:?}");
        }
        assert_eq!(
            std::fs::read(file).ok(),
            before,
            "file untouched (or still absent)"
        );
        assert!(out.stdout.is_empty());
    };
    refused(&file, "cf-nope", "kek-2", &["no fragment with id cf-nope"]);
    refused(
        &file,
        &wrapped,
        "kek-2",
        &[&wrapped, "type hsm_wrapped", "only hsm_wrap_encrypt"],
    );
    refused(&file, &cf, "kek-1", &["already sealed", "\"kek-1\""]);
    refused(
        &token.dir.path().join("absent.json"),
        &cf,
        "kek-2",
        &["does not exist"],
    );

    // The current key is missing: refused before any key is created.
    let edited = token.dir.path().join("edited.json");
    let mut doc: Value = serde_json::from_slice(&original).unwrap();
    doc["customer_fragments"][0]["kek_label"] = "kek-gone".into();
    std::fs::write(&edited, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    refused(&edited, &cf, "kek-new", &[&cf, "\"kek-gone\"", "not found"]);
    // The current key exists but did not seal this seed.
    let hsm = Hsm::connect(token.config()).unwrap();
    hsm.ensure_secret_key("kek-impostor", SecretKeyKind::Aes256)
        .unwrap();
    doc["customer_fragments"][0]["kek_label"] = "kek-impostor".into();
    std::fs::write(&edited, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    refused(
        &edited,
        &cf,
        "kek-new",
        &[&cf, "does not unseal", "\"kek-impostor\""],
    );
    for label in ["kek-2", "kek-new"] {
        assert!(
            hsm.key_attributes(label).is_err(),
            "no refusal created a key"
        );
    }
    hsm.shutdown();

    assert_eq!(std::fs::read(&file).unwrap(), original);
    let help = ok(&cli(&token, &["rewrap-customer-fragment", "--help"]));
    assert!(
        help.contains("Example") && help.contains("--new-kek-label"),
        "{help}"
    );
}
