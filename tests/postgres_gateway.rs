//! The gateway end to end on PostgreSQL: a real gateway process (TLS, a throw-away token)
//! whose key store is a throw-away PostgreSQL cluster reached over verified TLS, with the
//! password from `KMSGW__STORE__PASSWORD_FILE`. Keys survive a gateway restart, a second
//! gateway sharing the database serves the same keys, and a database restart costs at
//! most a failed request or two.

mod common;

use base64::Engine;
use common::gateway::{Gateway, B64};
use common::pg::PgCluster;
use common::Token;
use serde_json::{json, Value};

const BOOTSTRAP: &str = "kmsgw_postgres-e2e-bootstrap-token";

/// A gateway on `token` whose store is `url`, with the given bootstrap token file (there
/// is no SQLite directory to generate one beside).
fn gateway_on(token: Token, url: &str, password_file: &str, extra: &[(&str, &str)]) -> Gateway {
    let data = token.dir.path().join("gw/data");
    std::fs::create_dir_all(&data).unwrap();
    let bootstrap = data.join("bootstrap-token");
    std::fs::write(&bootstrap, BOOTSTRAP).unwrap();
    let mut env = vec![
        ("KMSGW__STORE__URL", url),
        ("KMSGW__STORE__PASSWORD_FILE", password_file),
        (
            "KMSGW__AUTH__BOOTSTRAP_TOKEN_FILE",
            bootstrap.to_str().unwrap(),
        ),
    ];
    env.extend_from_slice(extra);
    Gateway::start_on(token, &env)
}

/// Decrypts `ciphertext`: the status and the plaintext (empty on failure).
async fn decrypt(gw: &Gateway, key: &str, ciphertext: &str, ctx: &Value) -> (u16, Vec<u8>) {
    let (s, dec) = gw.decrypt(key, ciphertext, Some(ctx.clone())).await;
    let plaintext = dec["plaintext"]
        .as_str()
        .map(|p| B64.decode(p).unwrap())
        .unwrap_or_default();
    (s, plaintext)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_serves_keys_from_postgres_across_restarts() {
    let cluster = PgCluster::start();
    let secrets = tempfile::tempdir().unwrap();
    let password_file = secrets.path().join("db-password");
    std::fs::write(&password_file, format!("{}\n", cluster.password())).unwrap();
    let password_file = password_file.to_str().unwrap().to_owned();
    // No password in the URL; TLS with the server's certificate checked.
    let url = format!(
        "postgres://kmsgw@127.0.0.1:{}/kmsgw?sslmode=verify-full&sslrootcert={}",
        cluster.port(),
        cluster.ca().display()
    );

    let mut gw = gateway_on(Token::new(), &url, &password_file, &[]);
    assert!(
        !gw.path("data/kms-gateway.db").exists(),
        "no SQLite file is made"
    );
    let project = gw.project("on-postgres").await;
    let key = gw
        .key(&project, "orders", "encrypt-decrypt", "aes-256-gcm", None)
        .await;
    let ctx = json!({"tenant": "acme"});
    let (s, enc) = gw
        .encrypt(&key, b"stored in postgres", Some(ctx.clone()))
        .await;
    assert_eq!(s, 200, "{enc}");
    let ciphertext = enc["ciphertext"].as_str().unwrap().to_owned();
    assert_eq!(
        decrypt(&gw, &key, &ciphertext, &ctx).await,
        (200, b"stored in postgres".to_vec())
    );
    // The rows are in PostgreSQL.
    assert_eq!(
        cluster.query(&format!("SELECT name FROM keys WHERE id = '{key}'")),
        [["orders"]]
    );

    // The gateway restarts: the key and its material come back from the database.
    gw.restart();
    assert_eq!(
        decrypt(&gw, &key, &ciphertext, &ctx).await,
        (200, b"stored in postgres".to_vec())
    );
    let (s, list) = gw
        .get(&format!("/api/v1/kms/keys?projectId={project}"))
        .await;
    assert_eq!((s, list["totalCount"].as_u64()), (200, Some(1)), "{list}");

    // A second gateway (its own token, the same root key and database) serves the same
    // keys: what several gateways behind a load balancer do.
    let root_key = gw.path("root.key");
    let other = gateway_on(
        Token::with_label("kmsgw-second"),
        &url,
        &password_file,
        &[("ROOT_ENCRYPTION_KEY_FILE", root_key.to_str().unwrap())],
    );
    assert_eq!(
        decrypt(&other, &key, &ciphertext, &ctx).await,
        (200, b"stored in postgres".to_vec())
    );
    let (s, enc) = other.encrypt(&key, b"from the second", None).await;
    assert_eq!(s, 200, "{enc}");
    let (s, dec) = gw
        .decrypt(&key, enc["ciphertext"].as_str().unwrap(), None)
        .await;
    assert_eq!(s, 200, "{dec}");

    // The database restarts under a running gateway: a request may fail as 503 while
    // the pooled connections are found dead; then the gateway reconnects by itself.
    cluster.restart();
    let mut statuses = vec![];
    for _ in 0..10 {
        let (s, _) = decrypt(&gw, &key, &ciphertext, &ctx).await;
        statuses.push(s);
        if s == 200 {
            break;
        }
        assert_eq!(s, 503, "{statuses:?}");
    }
    assert_eq!(statuses.last(), Some(&200), "{statuses:?}");
    let r = gw.client.get(gw.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // The database password never reaches a log.
    for log in [gw.log(), other.log()] {
        assert!(log.contains("opened the PostgreSQL key store"), "{log}");
        assert!(!log.contains(cluster.password()), "{log}");
    }
}
