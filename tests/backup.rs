//! `kms-gateway backup` and `restore` on the SQLite store: an online copy that decrypts
//! everything encrypted before it, and a restore that refuses, changing nothing, with
//! another HSM token, another root key or without the fragments.

mod common;

use base64::Engine;
use common::gateway::{Gateway, B64};
use common::Token;
use serde_json::json;

fn cli(gw: &Gateway, args: &[&str], env: &[(String, String)]) -> (bool, String) {
    let r = gw.cli(args, env);
    (r.ok, r.all())
}

fn db(gw: &Gateway) -> std::path::PathBuf {
    gw.dir.join("data/kms-gateway.db")
}

/// What the store holds, row by row (the file's bytes also move with WAL checkpoints).
fn contents(gw: &Gateway) -> String {
    let conn = rusqlite::Connection::open(db(gw)).unwrap();
    let mut out = String::new();
    for table in [
        "meta",
        "projects",
        "keys",
        "key_versions",
        "identities",
        "universal_auth",
        "audit",
        "audit_head",
    ] {
        let mut stmt = conn
            .prepare(&format!("SELECT * FROM {table} ORDER BY 1"))
            .unwrap();
        let n = stmt.column_count();
        let mut rows = stmt.query([]).unwrap();
        while let Some(row) = rows.next().unwrap() {
            out.push_str(table);
            for i in 0..n {
                out.push_str(&format!("|{:?}", row.get_ref(i).unwrap()));
            }
            out.push('\n');
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_online_backup_restores_and_decrypts_everything_before_it() {
    let mut gw = Gateway::start();
    let fragment = gw.gen_fragment("backup-cf", "hsm_wrapped", Some("backup-cf-key"));
    gw.restart();
    let p = gw.project("backed-up").await;
    let plain = gw
        .key(&p, "plain", "encrypt-decrypt", "aes-256-gcm", None)
        .await;
    let bound = gw
        .key(
            &p,
            "bound",
            "encrypt-decrypt",
            "aes-128-gcm",
            Some(&fragment),
        )
        .await;
    let signer = gw
        .key(&p, "signer", "sign-verify", "ECC_NIST_P256", None)
        .await;
    let mut saved = Vec::new();
    for (key, i) in [(&plain, 0), (&bound, 1), (&plain, 2)] {
        let msg = format!("message {i}");
        let (s, enc) = gw
            .encrypt(key, msg.as_bytes(), Some(json!({"i": i.to_string()})))
            .await;
        assert_eq!(s, 200);
        saved.push((
            key.clone(),
            i,
            msg,
            enc["ciphertext"].as_str().unwrap().to_owned(),
        ));
    }
    let (s, r) = gw
        .post(&format!("/api/v1/kms/keys/{plain}/rotate"), json!({}))
        .await;
    assert_eq!(s, 200, "{r}");
    let (_, enc) = gw.encrypt(&plain, b"after rotation", None).await;
    let rotated_ct = enc["ciphertext"].as_str().unwrap().to_owned();

    // Online: the gateway keeps serving while the copy is made.
    let backup = gw.dir.join("backup.db");
    let load = {
        let client_gw = &gw;
        let plain = plain.clone();
        async move {
            for _ in 0..30 {
                let (s, _) = client_gw.encrypt(&plain, b"during backup", None).await;
                assert_eq!(s, 200);
            }
        }
    };
    let (made, ()) = tokio::join!(
        tokio::task::spawn_blocking({
            let env = gw.env();
            let backup = backup.clone();
            move || {
                std::process::Command::new(common::gateway_bin())
                    .args(["backup", "--output", backup.to_str().unwrap()])
                    .envs(env)
                    .output()
                    .unwrap()
            }
        }),
        load
    );
    let made = made.unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let (ok, out) = cli(&gw, &["backup", "--output", backup.to_str().unwrap()], &[]);
    assert!(!ok && out.contains("exists"), "never overwrites: {out}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&backup).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    // After the backup: a key the backup does not hold.
    let later = gw
        .key(&p, "later", "encrypt-decrypt", "aes-256-gcm", None)
        .await;

    let (ok, out) = cli(&gw, &["restore", "--input", backup.to_str().unwrap()], &[]);
    assert!(!ok && out.contains("--force"), "{out}");
    let (ok, out) = cli(
        &gw,
        &["restore", "--input", backup.to_str().unwrap(), "--force"],
        &[],
    );
    assert!(
        !ok && out.contains("in use"),
        "refused while the gateway runs: {out}"
    );

    gw.stop();
    let (ok, out) = cli(
        &gw,
        &["restore", "--input", backup.to_str().unwrap(), "--force"],
        &[],
    );
    assert!(ok, "{out}");
    gw.launch();
    for (key, i, msg, ct) in &saved {
        let (s, d) = gw.decrypt(key, ct, Some(json!({"i": i.to_string()}))).await;
        assert_eq!(s, 200, "{d}");
        assert_eq!(
            B64.decode(d["plaintext"].as_str().unwrap()).unwrap(),
            msg.as_bytes()
        );
    }
    let (s, d) = gw.decrypt(&plain, &rotated_ct, None).await;
    assert_eq!(
        (s, B64.decode(d["plaintext"].as_str().unwrap()).unwrap()),
        (200, b"after rotation".to_vec())
    );
    let (s, sig) = gw
        .post(
            &format!("/api/v1/kms/keys/{signer}/sign"),
            json!({"data": B64.encode(b"x"), "signingAlgorithm": "ECDSA_SHA_256"}),
        )
        .await;
    assert_eq!(s, 200, "{sig}");
    let (s, e) = gw.get(&format!("/api/v1/kms/keys/{later}")).await;
    assert_eq!(
        (s, e["code"].as_str()),
        (404, Some("key_not_found")),
        "a key made after the backup is not in it"
    );
    // The restored audit chain is intact and goes on.
    gw.stop();
    let (ok, out) = cli(&gw, &["audit", "verify"], &[]);
    assert!(ok, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_refuses_another_token_another_root_key_or_missing_fragments() {
    let mut gw = Gateway::start_with(&[
        ("HSM_KEY_LABEL", "kmsgw-root"),
        ("KMSGW__ROOT__STRATEGY", "hsm"),
    ]);
    let fragment = gw.gen_fragment("cf", "hsm_secured", Some("cf-key"));
    gw.restart();
    let p = gw.project("p").await;
    let key = gw
        .key(&p, "k", "encrypt-decrypt", "aes-256-gcm", Some(&fragment))
        .await;
    let (s, _) = gw.encrypt(&key, b"x", None).await;
    assert_eq!(s, 200);
    let backup = gw.dir.join("backup.db");
    let (ok, out) = cli(&gw, &["backup", "--output", backup.to_str().unwrap()], &[]);
    assert!(ok, "{out}");
    gw.stop();
    let before = contents(&gw);
    assert!(before.contains("keys|"), "{before}");
    let restore = |extra: Vec<(String, String)>| {
        let gw = &gw;
        let backup = backup.clone();
        move || {
            cli(
                gw,
                &["restore", "--input", backup.to_str().unwrap(), "--force"],
                &extra,
            )
        }
    };

    // Another HSM token (its own root key of the same label does not open the backup).
    let other = Token::new();
    let (ok, out) = restore(other.child_env())();
    assert!(
        !ok && out.contains("does not open with this configuration"),
        "{out}"
    );
    drop(other);
    // Without the fragment file.
    let (ok, out) = restore(vec![(
        "CUSTOMER_FRAGMENTS_FILE".into(),
        gw.dir.join("none.json").to_str().unwrap().into(),
    )])();
    assert!(
        !ok && out.contains(&fragment) && out.contains("not loaded"),
        "{out}"
    );
    assert!(contents(&gw) == before, "refusals change nothing");
    assert!(!gw.dir.join("data/kms-gateway.db.restore-tmp").exists());
    // With both, it restores.
    let (ok, out) = restore(vec![])();
    assert!(ok, "{out}");
    gw.launch();
    let (s, _) = gw.encrypt(&key, b"y", None).await;
    assert_eq!(s, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_refuses_another_root_encryption_key() {
    let mut gw = Gateway::start();
    let p = gw.project("p").await;
    gw.key(&p, "k", "encrypt-decrypt", "aes-256-gcm", None)
        .await;
    let backup = gw.dir.join("backup.db");
    let (ok, out) = cli(&gw, &["backup", "--output", backup.to_str().unwrap()], &[]);
    assert!(ok, "{out}");
    gw.stop();
    let before = contents(&gw);
    assert!(before.contains("keys|"), "{before}");
    let wrong = gw.dir.join("wrong.key");
    std::fs::write(&wrong, B64.encode([7u8; 32])).unwrap();
    let (ok, out) = cli(
        &gw,
        &["restore", "--input", backup.to_str().unwrap(), "--force"],
        &[(
            "ROOT_ENCRYPTION_KEY_FILE".into(),
            wrong.to_str().unwrap().into(),
        )],
    );
    assert!(!ok && out.contains("does not open"), "{out}");
    assert!(contents(&gw) == before, "the store changed");
    // Not a database at all.
    std::fs::write(gw.dir.join("junk.db"), b"not a database").unwrap();
    let (ok, out) = cli(
        &gw,
        &[
            "restore",
            "--input",
            gw.dir.join("junk.db").to_str().unwrap(),
            "--force",
        ],
        &[],
    );
    assert!(!ok && out.contains("not a usable key store"), "{out}");
    assert!(contents(&gw) == before, "the store changed");
}
