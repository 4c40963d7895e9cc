//! Customer fragments on a real token: the pinned vectors, the three modes, bad files and
//! the `gen-customer-fragment` command.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::sync::Arc;

use common::{b64, hex, vectors, Token};
use cryptoki::object::KeyType;
use kms_gateway::fragments::{
    FragmentError, FragmentHsm, FragmentId, FragmentSource, FragmentType, Fragments,
};
use kms_gateway::hsm::Hsm;
use zeroize::Zeroizing;

fn provider(hsm: &Hsm) -> Option<Arc<dyn FragmentHsm>> {
    Some(Arc::new(hsm.clone()))
}

fn entry(id: &str, ty: &str, seed_b64: &str, label: Option<&str>) -> serde_json::Value {
    let mut v = serde_json::json!({
        "id": id, "name": format!("name of {id}"), "fragment_type": ty, "value": seed_b64,
        "created_at": "2026-11-23T00:00:00Z"
    });
    if let Some(l) = label {
        v["hsm_key_label"] = l.into();
    }
    v
}

fn inline(entries: Vec<serde_json::Value>) -> FragmentSource {
    FragmentSource::Inline(Zeroizing::new(
        serde_json::json!({ "customer_fragments": entries }).to_string(),
    ))
}

/// The vector's HMAC key, imported as a non-extractable token object.
fn token_with_vector_key() -> (Token, serde_json::Value) {
    let v = vectors();
    let token = Token::new();
    token.import_secret(
        "vector-hmac",
        KeyType::GENERIC_SECRET,
        &hex(&v["fragment_hsm"]["hsm_hmac_key"]),
        &Token::hmac_attrs(),
    );
    (token, v)
}

#[test]
fn hsm_fragment_vector_is_reproduced_in_the_hsm() {
    let (token, v) = token_with_vector_key();
    let fh = &v["fragment_hsm"];
    let hsm = Hsm::connect(token.config()).unwrap();
    assert!(!hsm.key_attributes("vector-hmac").unwrap().value_readable);
    let prk = hsm
        .hmac_sha256("vector-hmac", &b64(&fh["seed_b64"]))
        .unwrap();
    assert_eq!(prk.to_vec(), hex(&fh["prk"]), "PRK = HMAC_hsm(seed)");

    let id = fh["fragment_id"].as_str().unwrap();
    for ty in ["hsm_wrapped", "hsm_secured"] {
        let source = inline(vec![entry(
            id,
            ty,
            fh["seed_b64"].as_str().unwrap(),
            Some("vector-hmac"),
        )]);
        let fragments = Fragments::load(&source, provider(&hsm)).unwrap();
        let value = fragments.value(&FragmentId(id.into())).unwrap();
        assert_eq!(value.to_vec(), hex(&fh["fragment_value"]), "{ty}");
    }
    hsm.shutdown();
}

#[test]
fn standard_fragment_vector_is_reproduced_without_an_hsm() {
    let v = vectors();
    let fs = &v["fragment_standard"];
    let id = fs["fragment_id"].as_str().unwrap();
    let source = inline(vec![entry(
        id,
        "standard",
        fs["seed_b64"].as_str().unwrap(),
        None,
    )]);
    let fragments = Fragments::load(&source, None).unwrap();
    let value = fragments.value(&FragmentId(id.into())).unwrap();
    assert_eq!(value.to_vec(), hex(&fs["fragment_value"]));
    assert_eq!(
        fragments.fragment_type(&FragmentId(id.into())),
        Some(FragmentType::Standard)
    );
}

#[test]
fn hsm_secured_derives_on_every_use_and_hsm_wrapped_once() {
    let (token, v) = token_with_vector_key();
    let seed = v["fragment_hsm"]["seed_b64"].as_str().unwrap().to_owned();
    let hsm = Hsm::connect(token.config()).unwrap();
    let source = inline(vec![
        entry("cf-wrapped", "hsm_wrapped", &seed, Some("vector-hmac")),
        entry("cf-secured", "hsm_secured", &seed, Some("vector-hmac")),
    ]);
    let fragments = Fragments::load(&source, provider(&hsm)).unwrap();
    let after_load = hsm.counts().hmac_calls;
    assert_eq!(after_load, 2, "one derivation each at load");

    for _ in 0..5 {
        fragments.value(&FragmentId("cf-wrapped".into())).unwrap();
    }
    assert_eq!(
        hsm.counts().hmac_calls,
        after_load,
        "hsm_wrapped uses its cached value"
    );

    let first = fragments.value(&FragmentId("cf-secured".into())).unwrap();
    for _ in 0..4 {
        assert_eq!(
            *fragments.value(&FragmentId("cf-secured".into())).unwrap(),
            *first
        );
    }
    assert_eq!(
        hsm.counts().hmac_calls,
        after_load + 5,
        "hsm_secured runs one HSM HMAC per use"
    );
    hsm.shutdown();
}

#[test]
fn bad_entries_fail_by_name_and_the_others_still_load() {
    let (token, v) = token_with_vector_key();
    let seed = v["fragment_hsm"]["seed_b64"].as_str().unwrap().to_owned();
    let hsm = Hsm::connect(token.config()).unwrap();
    let source = inline(vec![
        entry("cf-good", "hsm_wrapped", &seed, Some("vector-hmac")),
        entry("cf-std", "standard", &seed, None),
        entry("cf-nokey", "hsm_wrapped", &seed, Some("no-such-hsm-key")),
        entry("cf-badseed", "standard", "not base64!!", None),
        entry("cf-dup", "standard", &seed, None),
        entry("cf-dup", "standard", &seed, None),
        entry("cf-nolabel", "hsm_secured", &seed, None),
        serde_json::json!({"id": "cf-badtype", "name": "x", "fragment_type": "quantum", "value": seed, "created_at": "x"}),
        serde_json::json!({"name": "no id at all"}),
    ]);
    let fragments = Fragments::load(&source, provider(&hsm)).unwrap();
    let problem = |id: &str| {
        fragments
            .statuses()
            .into_iter()
            .find(|s| s.id.0 == id)
            .and_then(|s| s.problem)
            .unwrap_or_default()
    };
    assert!(fragments.is_loaded(&FragmentId("cf-good".into())));
    assert!(fragments.is_loaded(&FragmentId("cf-std".into())));
    assert!(
        problem("cf-nokey").contains("no-such-hsm-key"),
        "{}",
        problem("cf-nokey")
    );
    assert!(
        problem("cf-badseed").contains("base64"),
        "{}",
        problem("cf-badseed")
    );
    assert!(
        problem("cf-dup").contains("more than once"),
        "{}",
        problem("cf-dup")
    );
    assert!(
        problem("cf-nolabel").contains("hsm_key_label"),
        "{}",
        problem("cf-nolabel")
    );
    assert!(
        problem("cf-badtype").contains("malformed"),
        "{}",
        problem("cf-badtype")
    );
    assert_eq!(fragments.anonymous_failures().len(), 1);

    let err = fragments.value(&FragmentId("cf-nokey".into())).unwrap_err();
    assert!(matches!(err, FragmentError::NotLoaded { .. }), "{err}");
    assert!(err.to_string().contains("cf-nokey"));
    let err = fragments
        .value(&FragmentId("cf-unknown".into()))
        .unwrap_err();
    assert!(err.to_string().contains("cf-unknown"));
    hsm.shutdown();
}

#[test]
fn hsm_types_without_an_hsm_fail_clearly() {
    let seed = "nVNsE9FnVc6LFAXuyuSuuJH7bptuFmwSrSPIQpksOJM=";
    let source = inline(vec![
        entry("cf-x", "hsm_wrapped", seed, Some("k")),
        entry("cf-y", "standard", seed, None),
    ]);
    let fragments = Fragments::load(&source, None).unwrap();
    assert!(fragments.is_loaded(&FragmentId("cf-y".into())));
    let err = fragments.value(&FragmentId("cf-x".into())).unwrap_err();
    assert!(err.to_string().contains("needs an HSM"), "{err}");
}

#[test]
fn malformed_or_unreadable_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("customer_fragments.json");
    std::fs::write(&path, b"{ not json").unwrap();
    let err = Fragments::load(&FragmentSource::File(path.clone()), None).unwrap_err();
    assert!(matches!(err, FragmentError::FileMalformed { .. }), "{err}");
    std::fs::write(&path, br#"{"fragments": []}"#).unwrap();
    let err = Fragments::load(&FragmentSource::File(path.clone()), None).unwrap_err();
    assert!(matches!(err, FragmentError::FileMalformed { .. }), "{err}");
    // A missing file means no fragments.
    let none =
        Fragments::load(&FragmentSource::File(dir.path().join("absent.json")), None).unwrap();
    assert!(none.statuses().is_empty());
    // A directory is not readable as a file.
    let err = Fragments::load(&FragmentSource::File(dir.path().to_path_buf()), None).unwrap_err();
    assert!(matches!(err, FragmentError::FileUnreadable { .. }), "{err}");
}

fn cli(token: &Token, args: &[&str]) -> std::process::Output {
    Command::new(common::gateway_bin())
        .args(args)
        .envs(token.child_env())
        .output()
        .expect("run kms-gateway")
}

#[test]
fn gen_customer_fragment_appends_atomically_with_mode_0600() {
    let token = Token::new();
    let out_path = token.dir.path().join("frag/customer_fragments.json");
    let out = out_path.to_str().unwrap();

    let a = cli(
        &token,
        &[
            "gen-customer-fragment",
            "--name",
            "acme",
            "--type",
            "hsm_wrapped",
            "--hsm-key-label",
            "acme-cf",
            "--description",
            "ACME",
            "--output",
            out,
        ],
    );
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    let id_a = String::from_utf8(a.stdout).unwrap().trim().to_owned();
    assert!(id_a.starts_with("cf-") && id_a.len() == 19, "{id_a}");
    let mode = std::fs::metadata(&out_path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    let b = cli(
        &token,
        &[
            "gen-customer-fragment",
            "--name",
            "beta",
            "--type",
            "hsm_secured",
            "--hsm-key-label",
            "acme-cf",
            "--output",
            out,
        ],
    );
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    let c = cli(
        &token,
        &[
            "gen-customer-fragment",
            "--name",
            "gamma",
            "--type",
            "standard",
            "--output",
            out,
        ],
    );
    assert!(c.status.success(), "{}", String::from_utf8_lossy(&c.stderr));

    let file = kms_gateway::fragments::read_fragment_file(&out_path).unwrap();
    let names: Vec<_> = file
        .customer_fragments
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(
        names,
        ["acme", "beta", "gamma"],
        "existing fragments are kept"
    );
    assert_eq!(file.customer_fragments[0].id.0, id_a);
    assert_eq!(
        file.customer_fragments[0].hsm_key_label.as_deref(),
        Some("acme-cf")
    );
    assert_eq!(
        file.customer_fragments[0].description.as_deref(),
        Some("ACME")
    );
    // The seeds printed nowhere: not on stdout or stderr.
    for r in &file.customer_fragments {
        for o in [&a.stderr, &b.stderr, &c.stderr] {
            assert!(!String::from_utf8_lossy(o).contains(&r.value));
        }
    }
    // The gateway's HSM key exists with the design attributes, and every fragment loads.
    let hsm = Hsm::connect(token.config()).unwrap();
    let attrs = hsm.key_attributes("acme-cf").unwrap();
    assert_eq!(
        (attrs.extractable, attrs.sensitive, attrs.sign),
        (Some(false), Some(true), Some(true))
    );
    let fragments =
        Fragments::load(&FragmentSource::File(out_path.clone()), provider(&hsm)).unwrap();
    assert!(
        fragments.statuses().iter().all(|s| s.problem.is_none()),
        "{:?}",
        fragments.statuses()
    );
    hsm.shutdown();

    // `hsm check` reads the same file and passes.
    let check = Command::new(common::gateway_bin())
        .args(["hsm", "check"])
        .envs(token.child_env())
        .env("CUSTOMER_FRAGMENTS_FILE", out)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(String::from_utf8_lossy(&check.stdout).contains(&id_a));
}

#[test]
fn gen_customer_fragment_refuses_bad_input_and_keeps_the_file() {
    let token = Token::new();
    let path = token.dir.path().join("customer_fragments.json");
    let out = path.to_str().unwrap();
    std::fs::write(&path, b"{ this is not json").unwrap();
    let r = cli(
        &token,
        &[
            "gen-customer-fragment",
            "--name",
            "x",
            "--type",
            "standard",
            "--output",
            out,
        ],
    );
    assert!(!r.status.success());
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("malformed"), "{err}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        b"{ this is not json",
        "left untouched"
    );

    let r = cli(
        &token,
        &[
            "gen-customer-fragment",
            "--name",
            "x",
            "--type",
            "hsm_wrapped",
            "--output",
            out,
        ],
    );
    assert!(!r.status.success());
    assert!(String::from_utf8_lossy(&r.stderr).contains("--hsm-key-label"));
    let r = cli(
        &token,
        &[
            "gen-customer-fragment",
            "--name",
            "x",
            "--type",
            "bogus",
            "--output",
            out,
        ],
    );
    assert!(!r.status.success());
    assert!(String::from_utf8_lossy(&r.stderr).contains("standard, hsm_wrapped or hsm_secured"));
    let r = Command::new(common::gateway_bin())
        .args([
            "gen-customer-fragment",
            "--name",
            "x",
            "--type",
            "hsm_wrapped",
            "--hsm-key-label",
            "k",
            "--output",
            out,
        ])
        .envs(token.child_env())
        .env("HSM_PIN", "0000")
        .output()
        .unwrap();
    assert!(!r.status.success());
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        err.contains("CKR_PIN_INCORRECT") && !err.contains("0000"),
        "{err}"
    );
}

#[test]
fn hsm_list_slots_shows_the_token() {
    let token = Token::new();
    let r = cli(&token, &["hsm", "list-slots"]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let out = String::from_utf8_lossy(&r.stdout);
    assert!(
        out.contains("kmsgw-test") && out.contains(&token.slot().to_string()),
        "{out}"
    );
}
