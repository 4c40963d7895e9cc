//! The root encryption strategy: switching in both directions (API and CLI) with keys in
//! use, both HSM mechanisms, refusals that change nothing, and a switch killed midway.

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use base64::Engine;
use common::gateway::{Gateway, B64};
use serde_json::json;

fn cli(gw: &Gateway, args: &[&str], extra: &[(&str, &str)], remove: &[&str]) -> Output {
    let mut cmd = Command::new(common::gateway_bin());
    cmd.args(args).envs(gw.env()).envs(extra.iter().copied());
    for r in remove {
        cmd.env_remove(r);
    }
    cmd.output().unwrap()
}

fn show(gw: &Gateway) -> String {
    let out = cli(gw, &["root-strategy", "show"], &[], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

async fn decrypts(gw: &Gateway, key: &str, ct: &str, expected: &[u8]) {
    let (s, d) = gw.decrypt(key, ct, None).await;
    assert_eq!(s, 200, "{d}");
    assert_eq!(
        B64.decode(d["plaintext"].as_str().unwrap()).unwrap(),
        expected
    );
}

async fn switch_round_trip(mechanism: &str, expected_detail: &str) {
    let mut gw = Gateway::start_with(&[
        ("HSM_KEY_LABEL", "kmsgw-root"),
        ("KMSGW__ROOT__HSM_MECHANISM", mechanism),
    ]);
    assert_eq!(show(&gw), "software (software AES-256-GCM)");
    let project = gw.project("root").await;
    let key = gw
        .key(&project, "k", "encrypt-decrypt", "aes-256-gcm", None)
        .await;
    let (_, c1) = gw.encrypt(&key, b"before", None).await;
    let c1 = c1["ciphertext"].as_str().unwrap().to_owned();

    // software -> hsm through the admin API, while the gateway serves.
    let (s, r) = gw
        .call(
            reqwest::Method::PATCH,
            "/api/v1/admin/encryption-strategy",
            Some(json!({"strategy": "hsm"})),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(
        (
            r["strategy"].as_str(),
            r["changed"].as_bool(),
            r["wrapping"].as_str()
        ),
        (Some("hsm"), Some(true), Some(expected_detail))
    );
    let (_, again) = gw
        .call(
            reqwest::Method::PATCH,
            "/api/v1/admin/encryption-strategy",
            Some(json!({"strategy": "hsm"})),
        )
        .await;
    assert_eq!(again["changed"], false);
    let (s, g) = gw.get("/api/v1/admin/encryption-strategy").await;
    assert_eq!((s, g["strategy"].as_str()), (200, Some("hsm")));
    decrypts(&gw, &key, &c1, b"before").await;
    let (_, c2) = gw.encrypt(&key, b"during hsm", None).await;
    let c2 = c2["ciphertext"].as_str().unwrap().to_owned();

    // A restart unwraps the root key in the HSM.
    gw.restart();
    assert_eq!(show(&gw), format!("hsm ({expected_detail})"));
    decrypts(&gw, &key, &c1, b"before").await;
    decrypts(&gw, &key, &c2, b"during hsm").await;

    // hsm -> software with the CLI, gateway stopped; then everything still decrypts.
    gw.stop();
    let out = cli(&gw, &["root-strategy", "set", "software"], &[], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(show(&gw), "software (software AES-256-GCM)");
    gw.launch();
    decrypts(&gw, &key, &c1, b"before").await;
    decrypts(&gw, &key, &c2, b"during hsm").await;
    let k2 = gw
        .key(&project, "k2", "encrypt-decrypt", "aes-128-gcm", None)
        .await;
    assert_eq!(gw.encrypt(&k2, b"after", None).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switch_both_ways_with_aes_gcm() {
    switch_round_trip("aes_gcm", "hsm AES-GCM").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switch_both_ways_with_cbc_pad_and_hmac() {
    switch_round_trip("aes_cbc_pad_hmac", "hsm AES-CBC-PAD + HMAC-SHA256").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_switches_change_nothing() {
    let mut gw = Gateway::start_with(&[("HSM_KEY_LABEL", "kmsgw-root")]);
    let project = gw.project("refusals").await;
    let key = gw
        .key(&project, "k", "encrypt-decrypt", "aes-256-gcm", None)
        .await;
    let (_, c) = gw.encrypt(&key, b"kept", None).await;
    let c = c["ciphertext"].as_str().unwrap().to_owned();
    let (s, e) = gw
        .call(
            reqwest::Method::PATCH,
            "/api/v1/admin/encryption-strategy",
            Some(json!({"strategy": "cloud"})),
        )
        .await;
    assert_eq!((s, e["code"].as_str()), (400, Some("invalid_strategy")));
    gw.stop();

    // A wrong ROOT_ENCRYPTION_KEY cannot open the current root key: refused, unchanged.
    let out = cli(
        &gw,
        &["root-strategy", "set", "hsm"],
        &[("ROOT_ENCRYPTION_KEY", &B64.encode([3u8; 32]))],
        &["ROOT_ENCRYPTION_KEY_FILE"],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("ROOT_ENCRYPTION_KEY does not open"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(show(&gw).starts_with("software"));

    // Into hsm, then: leaving hsm without an HSM is refused with a clear reason.
    assert!(cli(&gw, &["root-strategy", "set", "hsm"], &[], &[])
        .status
        .success());
    let out = cli(
        &gw,
        &["root-strategy", "set", "software"],
        &[],
        &["PKCS11_LIB_PATH"],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("needs the HSM"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A token that cannot be reached (wrong label) is refused too.
    let out = cli(
        &gw,
        &["root-strategy", "set", "software"],
        &[("HSM_TOKEN_LABEL", "absent-token")],
        &[],
    );
    assert!(!out.status.success());
    assert!(show(&gw).starts_with("hsm"));
    // Another HSM key label does not open the root key: the gateway refuses to start.
    let out = Command::new(common::gateway_bin())
        .arg("serve")
        .envs(gw.env())
        .env("HSM_KEY_LABEL", "other-root")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("does not open the stored instance root key"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    gw.launch();
    decrypts(&gw, &key, &c, b"kept").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switch_killed_midway_leaves_a_working_root_key() {
    let mut gw = Gateway::start_with(&[("HSM_KEY_LABEL", "kmsgw-root")]);
    let project = gw.project("crash").await;
    let key = gw
        .key(&project, "k", "encrypt-decrypt", "aes-256-gcm", None)
        .await;
    let (_, c) = gw.encrypt(&key, b"survives a crash", None).await;
    let c = c["ciphertext"].as_str().unwrap().to_owned();
    gw.stop();
    // Make the HSM keys once, then snapshot the token. A killed process can leave
    // SoftHSM2's own files half-written (it rewrites token.object at every login; a real
    // HSM is a separate device): the snapshot is put back after each kill so that what is
    // tested is the gateway's store, not the emulator.
    assert!(cli(&gw, &["root-strategy", "set", "hsm"], &[], &[])
        .status
        .success());
    assert!(cli(&gw, &["root-strategy", "set", "software"], &[], &[])
        .status
        .success());
    let tokens = gw.token.dir.path().join("tokens");
    let snapshot = gw.token.dir.path().join("tokens.snapshot");
    let copy = |from: &std::path::Path, to: &std::path::Path| {
        let _ = std::fs::remove_dir_all(to);
        assert!(Command::new("cp")
            .arg("-a")
            .arg(from)
            .arg(to)
            .status()
            .unwrap()
            .success());
    };
    let softhsm = gw.token.env.contains_key("SOFTHSM2_CONF");
    if softhsm {
        copy(&tokens, &snapshot);
    }
    let mut killed = 0;
    for round in 0..12u64 {
        let to = if round % 2 == 0 { "hsm" } else { "software" };
        let mut child = Command::new(common::gateway_bin())
            .args(["root-strategy", "set", to])
            .envs(gw.env())
            .spawn()
            .unwrap();
        // Kill at a different moment each round (SIGKILL: no clean-up runs).
        std::thread::sleep(Duration::from_millis(3 * round));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            killed += 1;
        }
        let _ = child.wait();
        if softhsm {
            copy(&snapshot, &tokens);
        }
        let state = show(&gw);
        assert!(
            state.starts_with("hsm") || state.starts_with("software"),
            "{state}"
        );
    }
    assert!(killed > 0, "at least one switch was killed midway");
    gw.launch();
    decrypts(&gw, &key, &c, b"survives a crash").await;
}
