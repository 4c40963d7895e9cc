//! Configuration through the real binary: unknown keys, seed names, `*_FILE` secrets.

mod common;

use std::process::Command;

use common::{gateway_bin, Token};

fn run(token: &Token, args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let out = Command::new(gateway_bin())
        .args(args)
        .envs(token.child_env())
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn unknown_settings_are_errors() {
    let token = Token::new();
    let (ok, _, err) = run(
        &token,
        &["hsm", "list-slots"],
        &[("KMSGW__SERVER__LISTN", "x")],
    );
    assert!(!ok);
    assert!(err.contains("listn"), "{err}");
    let file = token.dir.path().join("gw.toml");
    std::fs::write(
        &file,
        "[server]\nlisten = \"127.0.0.1:1\"\n[bogus]\nx = 1\n",
    )
    .unwrap();
    let (ok, _, err) = run(
        &token,
        &["--config", file.to_str().unwrap(), "hsm", "list-slots"],
        &[],
    );
    assert!(!ok);
    assert!(err.contains("bogus"), "{err}");
    let (ok, _, err) = run(
        &token,
        &["--config", "/nonexistent/gw.toml", "hsm", "list-slots"],
        &[],
    );
    assert!(!ok && err.contains("does not exist"), "{err}");
    let (ok, _, err) = run(&token, &["hsm", "check"], &[("HSM_USE_RAND", "maybe")]);
    assert!(!ok && err.contains("HSM_USE_RAND"), "{err}");
}

#[test]
fn seed_names_aliases_and_secret_files_work() {
    let token = Token::new();
    // HSM_LIB_PATH is an alias of PKCS11_LIB_PATH.
    let lib = token.lib();
    let out = Command::new(gateway_bin())
        .args(["hsm", "check"])
        .envs(
            token
                .child_env()
                .into_iter()
                .filter(|(k, _)| k != "PKCS11_LIB_PATH" && k != "HSM_PIN"),
        )
        .env("HSM_LIB_PATH", &lib)
        .env("HSM_PIN_FILE", {
            let p = token.dir.path().join("pin");
            std::fs::write(&p, format!("{}\n", token.pin())).unwrap();
            p
        })
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("check passed"));
    // PIN and PIN file together are refused.
    let (ok, _, err) = run(&token, &["hsm", "check"], &[("HSM_PIN_FILE", "/dev/null")]);
    assert!(!ok && err.contains("not both"), "{err}");
    // The PIN is never printed, even in errors.
    let (ok, _, err) = run(&token, &["hsm", "check"], &[("HSM_PIN", "98765432")]);
    assert!(!ok && !err.contains("98765432"), "{err}");
}

#[test]
fn serve_refuses_bad_root_keys_clearly() {
    let token = Token::new();
    let dir = token.dir.path();
    let made = Command::new(common::project_root().join("scripts/dev-cert.sh"))
        .arg(dir.join("tls"))
        .output()
        .unwrap();
    assert!(made.status.success());
    let db = format!("sqlite://{}", dir.join("data/db").display());
    let cert = dir.join("tls/cert.pem");
    let key = dir.join("tls/key.pem");
    let base: Vec<(&str, &str)> = vec![
        ("KMSGW__SERVER__LISTEN", "127.0.0.1:0"),
        ("KMSGW__TLS__CERT_FILE", cert.to_str().unwrap()),
        ("KMSGW__TLS__KEY_FILE", key.to_str().unwrap()),
        ("KMSGW__STORE__URL", &db),
    ];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut v = base.clone();
        v.extend_from_slice(extra);
        v
    };
    let (ok, _, err) = run(&token, &["serve"], &with(&[]));
    assert!(!ok && err.contains("ROOT_ENCRYPTION_KEY"), "{err}");
    let (ok, _, err) = run(
        &token,
        &["serve"],
        &with(&[("ROOT_ENCRYPTION_KEY", "c2hvcnQ=")]),
    );
    assert!(
        !ok && err.contains("exactly 32 bytes") && !err.contains("c2hvcnQ="),
        "{err}"
    );
    let (ok, _, err) = run(
        &token,
        &["serve"],
        &with(&[
            ("ROOT_ENCRYPTION_KEY", "AAAA"),
            ("KMSGW__TLS__CERT_FILE", "/nonexistent.pem"),
        ]),
    );
    assert!(!ok && err.contains("/nonexistent.pem"), "{err}");
}

#[test]
fn serve_refuses_bad_connection_and_failure_settings_clearly() {
    let token = Token::new();
    let dir = token.dir.path();
    let made = Command::new(common::project_root().join("scripts/dev-cert.sh"))
        .arg(dir.join("tls"))
        .output()
        .unwrap();
    assert!(made.status.success());
    let cert = dir.join("tls/cert.pem");
    let key = dir.join("tls/key.pem");
    let db = format!("sqlite://{}", dir.join("data/db").display());
    for (name, value, says) in [
        (
            "KMSGW__SERVER__IDLE_TIMEOUT_SECONDS",
            "0",
            "is not between 1 and 3600",
        ),
        (
            "KMSGW__SERVER__HEADER_READ_TIMEOUT_SECONDS",
            "100000",
            "is not between 1 and 300",
        ),
        (
            "KMSGW__SERVER__TLS_HANDSHAKE_TIMEOUT_SECONDS",
            "0",
            "is not between 1 and 300",
        ),
        (
            "KMSGW__SERVER__REQUEST_BODY_TIMEOUT_SECONDS",
            "0",
            "is not between 1 and 3600",
        ),
        (
            "KMSGW__SERVER__HTTP2_KEEP_ALIVE_TIMEOUT_SECONDS",
            "0",
            "is not between 1 and 300",
        ),
        (
            "KMSGW__SERVER__MAX_CONNECTIONS_PER_ADDRESS",
            "5000",
            "is not between 1 and 1024",
        ),
        (
            "KMSGW__SERVER__MAX_CONNECTIONS",
            "0",
            "is not between 1 and",
        ),
        (
            "KMSGW__AUTH__MAX_FAILURES_PER_ADDRESS",
            "0",
            "is not between 1 and 100000",
        ),
        (
            "KMSGW__AUTH__FAILURE_WINDOW_SECONDS",
            "0",
            "is not between 1 and 86400",
        ),
    ] {
        let (ok, _, err) = run(
            &token,
            &["serve"],
            &[
                ("KMSGW__SERVER__LISTEN", "127.0.0.1:0"),
                ("KMSGW__TLS__CERT_FILE", cert.to_str().unwrap()),
                ("KMSGW__TLS__KEY_FILE", key.to_str().unwrap()),
                ("KMSGW__STORE__URL", &db),
                ("ROOT_ENCRYPTION_KEY", "AAAA"),
                (name, value),
            ],
        );
        assert!(
            !ok && err.contains(name) && err.contains(says),
            "{name}={value}: {err}"
        );
    }
    // A value that is not a number names the setting too.
    let (ok, _, err) = run(
        &token,
        &["serve"],
        &[("KMSGW__SERVER__IDLE_TIMEOUT_SECONDS", "soon")],
    );
    assert!(!ok && err.contains("idle_timeout_seconds"), "{err}");
}

#[test]
fn store_password_file_and_urls_never_leak_the_password() {
    let token = Token::new();
    let dir = token.dir.path();
    let password = "pg-password-6b1e9";
    let file = dir.join("db-password");
    std::fs::write(&file, format!("{password}\n")).unwrap();
    let file = file.to_str().unwrap();
    let sqlite = format!("sqlite://{}", dir.join("data/db").display());

    // The password file is for PostgreSQL only, and must be readable.
    let (ok, _, err) = run(
        &token,
        &["root-strategy", "show"],
        &[
            ("KMSGW__STORE__URL", &sqlite),
            ("KMSGW__STORE__PASSWORD_FILE", file),
        ],
    );
    assert!(!ok && err.contains("postgres:// URLs only"), "{err}");
    let (ok, _, err) = run(
        &token,
        &["root-strategy", "show"],
        &[
            ("KMSGW__STORE__URL", "postgres://kms@127.0.0.1:1/kms"),
            ("KMSGW__STORE__PASSWORD_FILE", "/nonexistent/db-password"),
        ],
    );
    assert!(!ok && err.contains("KMSGW__STORE__PASSWORD_FILE"), "{err}");

    // No server listens on port 1: the error names the server, not the password, whether
    // the password came from the file, from the URL, or from a URL with a mistyped scheme.
    let in_url = format!("postgres://kms:{password}@127.0.0.1:1/kms");
    let mistyped = format!("postgress://kms:{password}@127.0.0.1:1/kms");
    for env in [
        vec![
            ("KMSGW__STORE__URL", "postgres://kms@127.0.0.1:1/kms"),
            ("KMSGW__STORE__PASSWORD_FILE", file),
        ],
        vec![("KMSGW__STORE__URL", in_url.as_str())],
        vec![("KMSGW__STORE__URL", mistyped.as_str())],
    ] {
        let (ok, out, err) = run(&token, &["root-strategy", "show"], &env);
        assert!(!ok, "{out}");
        assert!(!err.contains(password) && !out.contains(password), "{err}");
    }
    let (_, _, err) = run(
        &token,
        &["root-strategy", "show"],
        &[("KMSGW__STORE__URL", in_url.as_str())],
    );
    assert!(err.contains("127.0.0.1:1"), "{err}");
}
