//! Several gateways as one service: three gateway processes on different ports, one
//! PostgreSQL, one SoftHSM2 (or Kryoptic) token. What one does, the others see at once
//! (keys are not cached; identity changes arrive by LISTEN/NOTIFY well before the cache's
//! 5 s limit); gateways starting together make one root key and one bootstrap identity.

mod common;

use std::time::{Duration, Instant};

use base64::Engine;
use common::gateway::{Gateway, B64};
use common::pg::PgCluster;
use common::Token;
use reqwest::Method as M;
use serde_json::json;

const BOOTSTRAP: &str = "kmsgw_cluster-test-bootstrap-token";

/// Everything the nodes share: the database, the HSM token, the root key, the fragments.
struct Shared {
    cluster: PgCluster,
    token: Token,
    secrets: tempfile::TempDir,
}

impl Shared {
    fn new() -> Self {
        let cluster = PgCluster::start();
        let token = Token::new();
        let secrets = tempfile::tempdir().unwrap();
        std::fs::write(secrets.path().join("db-password"), cluster.password()).unwrap();
        std::fs::write(
            secrets.path().join("root.key"),
            B64.encode(common::gateway::rand_bytes(32)),
        )
        .unwrap();
        std::fs::write(secrets.path().join("bootstrap-token"), BOOTSTRAP).unwrap();
        std::fs::write(
            secrets.path().join("customer_fragments.json"),
            r#"{"customer_fragments": []}"#,
        )
        .unwrap();
        // One server certificate for every node, as behind a load balancer.
        let made = std::process::Command::new(common::project_root().join("scripts/dev-cert.sh"))
            .arg(secrets.path().join("tls"))
            .output()
            .unwrap();
        assert!(made.status.success());
        Shared {
            cluster,
            token,
            secrets,
        }
    }

    fn path(&self, name: &str) -> String {
        self.secrets.path().join(name).to_str().unwrap().to_owned()
    }

    /// The environment every node gets: the shared token (its state directory is the
    /// node's own), database, root key, bootstrap token and fragments.
    fn env(&self) -> Vec<(String, String)> {
        let mut env = self.token.child_env();
        env.extend(self.store_env());
        env.push(("HSM_KEY_LABEL".into(), "kmsgw-root".into()));
        env
    }

    /// All but the HSM: database, root key, bootstrap token and fragments.
    fn store_env(&self) -> Vec<(String, String)> {
        vec![
            (
                "KMSGW__STORE__URL".into(),
                format!("postgres://kmsgw@127.0.0.1:{}/kmsgw", self.cluster.port()),
            ),
            (
                "KMSGW__STORE__PASSWORD_FILE".into(),
                self.path("db-password"),
            ),
            ("ROOT_ENCRYPTION_KEY_FILE".into(), self.path("root.key")),
            (
                "KMSGW__AUTH__BOOTSTRAP_TOKEN_FILE".into(),
                self.path("bootstrap-token"),
            ),
            (
                "CUSTOMER_FRAGMENTS_FILE".into(),
                self.path("customer_fragments.json"),
            ),
        ]
    }

    /// A gateway process of its own (own port and state directory) on the shared parts.
    fn node(&self) -> Gateway {
        self.node_with(self.env())
    }

    /// A node on the shared database and root key but with an HSM token of its own:
    /// SoftHSM2 rewrites its token file at every login, and processes logging in to one
    /// SoftHSM2 token at the very same moment can read it half-written (a real HSM has
    /// no such file); for tests of the database side of a simultaneous start.
    fn node_on_own_token(&self) -> Gateway {
        self.node_with(self.store_env())
    }

    fn node_with(&self, env: Vec<(String, String)>) -> Gateway {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let own = Token::new();
        let dir = own.dir.path().join("gw");
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["ca.pem", "cert.pem", "key.pem"] {
            std::fs::copy(self.secrets.path().join("tls").join(f), dir.join(f)).unwrap();
        }
        Gateway::start_on(own, &env)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_one_gateway_does_the_others_see_at_once() {
    let shared = Shared::new();
    let g1 = shared.node();
    let mut g2 = shared.node();
    let g3 = shared.node();
    let p = g1.project("shared").await;
    let key = g1
        .key(&p, "k", "encrypt-decrypt", "aes-256-gcm", None)
        .await;
    // Created on 1, used on 2 and 3 at once.
    let (s, enc) = g2.encrypt(&key, b"written on node 2", None).await;
    assert_eq!(s, 200, "{enc}");
    let (s, dec) = g3
        .decrypt(&key, enc["ciphertext"].as_str().unwrap(), None)
        .await;
    assert_eq!(
        (s, B64.decode(dec["plaintext"].as_str().unwrap()).unwrap()),
        (200, b"written on node 2".to_vec())
    );

    // Every node has the key's record cached now.
    for g in [&g1, &g2, &g3] {
        let (s, _) = g.encrypt(&key, b"warm", None).await;
        assert_eq!(s, 200);
    }
    // A rotation on 2: 1 encrypts with version 2 as soon as the change notice arrives.
    let (s, _) = g2
        .post(&format!("/api/v1/kms/keys/{key}/rotate"), json!({}))
        .await;
    assert_eq!(s, 200);
    let changed = Instant::now();
    let enc2 = loop {
        let (_, enc2) = g1.encrypt(&key, b"v2", None).await;
        let ct2 = B64.decode(enc2["ciphertext"].as_str().unwrap()).unwrap();
        if ct2[17..21] == 2u32.to_be_bytes() {
            break enc2;
        }
        assert!(
            changed.elapsed() < Duration::from_secs(2),
            "node 1 still encrypts with version 1"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    eprintln!(
        "cluster: a rotation on node 2 reached node 1 in {} ms",
        changed.elapsed().as_millis()
    );
    // Disabled on 3: refused on 1 as soon as the notice arrives; enabled again.
    let path = format!("/api/v1/kms/keys/{key}");
    let (s, _) = g3
        .call(M::PATCH, &path, Some(json!({"isDisabled": true})))
        .await;
    assert_eq!(s, 200);
    let changed = Instant::now();
    loop {
        let (s, e) = g1.encrypt(&key, b"x", None).await;
        if (s, e["code"].as_str()) == (409, Some("key_disabled")) {
            break;
        }
        assert_eq!(s, 200);
        assert!(
            changed.elapsed() < Duration::from_secs(2),
            "node 1 still uses a key disabled on node 3"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (s, _) = g3
        .call(M::PATCH, &path, Some(json!({"isDisabled": false})))
        .await;
    assert_eq!(s, 200);
    // Scheduled for deletion on 1: refused on 2 as soon as the notice arrives.
    let (s, _) = g1.call(M::DELETE, &path, None).await;
    assert_eq!(s, 200);
    let changed = Instant::now();
    loop {
        let (s, e) = g2
            .decrypt(&key, enc["ciphertext"].as_str().unwrap(), None)
            .await;
        if (s, e["code"].as_str()) == (409, Some("key_pending_deletion")) {
            break;
        }
        assert!(s == 200 || e["code"] == "key_disabled", "{s} {e}");
        assert!(
            changed.elapsed() < Duration::from_secs(2),
            "node 2 still uses a key pending deletion"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (s, _) = g3.post(&format!("{path}/cancel-deletion"), json!({})).await;
    assert_eq!(s, 200);

    // An identity made on 1 works on 2; revoked on 3, node 2 refuses it through the change
    // feed, long before its 5 s cache would expire.
    let (s, b) = g1
        .post(
            "/api/v1/identities",
            json!({"name": "app", "projectId": p, "role": "encrypt"}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let (id, token) = (
        b["identity"]["id"].as_str().unwrap().to_owned(),
        b["token"].as_str().unwrap().to_owned(),
    );
    let use_it = |gw: &Gateway| {
        let token = token.clone();
        let path = format!("/api/v1/kms/keys/{key}/encrypt");
        let gw_url = gw.url(&path);
        let client = gw.client.clone();
        async move {
            let r = client
                .post(gw_url)
                .bearer_auth(token)
                .json(&json!({"plaintext": B64.encode(b"x")}))
                .send()
                .await
                .unwrap();
            r.status().as_u16()
        }
    };
    assert_eq!(use_it(&g2).await, 200);
    assert_eq!(use_it(&g2).await, 200, "now cached on node 2");
    let (s, _) = g3
        .call(M::DELETE, &format!("/api/v1/identities/{id}"), None)
        .await;
    assert_eq!(s, 200);
    let revoked = Instant::now();
    loop {
        let s = use_it(&g2).await;
        if s == 401 {
            break;
        }
        assert_eq!(s, 200);
        assert!(
            revoked.elapsed() < Duration::from_secs(2),
            "node 2 still accepts a token revoked on node 3"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "cluster: a revocation on node 3 reached node 2 in {} ms",
        revoked.elapsed().as_millis()
    );

    // The root strategy switched through 1 is what 2 reports, and 2 restarts on it.
    let (s, r) = g1
        .call(
            M::PATCH,
            "/api/v1/admin/encryption-strategy",
            Some(json!({"strategy": "hsm"})),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    let (s, r) = g2.get("/api/v1/admin/encryption-strategy").await;
    assert_eq!((s, r["strategy"].as_str()), (200, Some("hsm")));
    g2.restart();
    let (s, dec) = g2
        .decrypt(&key, enc2["ciphertext"].as_str().unwrap(), None)
        .await;
    assert_eq!(
        (s, B64.decode(dec["plaintext"].as_str().unwrap()).unwrap()),
        (200, b"v2".to_vec())
    );

    // One audit chain, written by three processes, intact.
    common::gateway::assert_audit_verifies(shared.env());
    let nodes: std::collections::HashSet<String> = shared
        .cluster
        .query("SELECT record FROM audit")
        .into_iter()
        .filter_map(|r| serde_json::from_str::<serde_json::Value>(&r[0]).ok())
        .filter_map(|v| {
            v["requestId"]
                .as_str()
                .map(|id| id.split('-').nth(1).unwrap_or("").to_owned())
        })
        .collect();
    assert!(
        nodes.len() >= 3,
        "records of every node (by process id in the request id): {nodes:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_starting_together_make_one_root_key_and_one_bootstrap_identity() {
    let shared = std::sync::Arc::new(Shared::new());
    let nodes: Vec<Gateway> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..3)
            .map(|_| s.spawn(|| shared.node_on_own_token()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let count = |sql: &str| shared.cluster.query(sql)[0][0].clone();
    assert_eq!(
        count("SELECT count(*) FROM meta WHERE name = 'root.wrapped'"),
        "1"
    );
    assert_eq!(count("SELECT count(*) FROM identities"), "1");
    assert_eq!(
        count("SELECT count(*) FROM schema_version"),
        count("SELECT max(version) FROM schema_version")
    );
    // Every node unwrapped the same root key: each decrypts what the others encrypt.
    let p = nodes[0].project("together").await;
    let key = nodes[1]
        .key(&p, "k", "encrypt-decrypt", "aes-256-gcm", None)
        .await;
    for (i, from) in nodes.iter().enumerate() {
        let msg = format!("from node {i}");
        let (s, enc) = from.encrypt(&key, msg.as_bytes(), None).await;
        assert_eq!(s, 200, "{enc}");
        for to in &nodes {
            let (s, dec) = to
                .decrypt(&key, enc["ciphertext"].as_str().unwrap(), None)
                .await;
            assert_eq!(
                (s, B64.decode(dec["plaintext"].as_str().unwrap()).unwrap()),
                (200, msg.as_bytes().to_vec())
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_retrying_on_other_gateways_see_no_wrong_answer_while_one_is_killed() {
    use std::sync::{Arc, Mutex, RwLock};
    let shared = Shared::new();
    let mut g1 = shared.node();
    let g2 = shared.node();
    let p = g2.project("failover").await;
    let key = g2
        .key(&p, "k", "encrypt-decrypt", "aes-256-gcm", None)
        .await;
    // Known ciphertexts to decrypt throughout.
    let mut known = Vec::new();
    for i in 0..8 {
        let msg = format!("known {i}");
        let (_, enc) = g2.encrypt(&key, msg.as_bytes(), None).await;
        known.push((enc["ciphertext"].as_str().unwrap().to_owned(), msg));
    }
    let known = Arc::new(known);
    let urls = Arc::new(RwLock::new(vec![g1.url(""), g2.url("")]));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let made: Arc<Mutex<Vec<(String, String)>>> = Default::default();
    let failovers = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let client = g2.client.clone();
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let (urls, stop, made, known, key, client, failovers) = (
                urls.clone(),
                stop.clone(),
                made.clone(),
                known.clone(),
                key.clone(),
                client.clone(),
                failovers.clone(),
            );
            tokio::spawn(async move {
                let mut n = 0usize;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    n += 1;
                    let encrypting = n % 2 == 0;
                    let (ct, msg) = &known[(w + n) % known.len()];
                    let mine = format!("w{w} n{n}");
                    let (path, body) = if encrypting {
                        (
                            format!("/api/v1/kms/keys/{key}/encrypt"),
                            json!({"plaintext": B64.encode(mine.as_bytes())}),
                        )
                    } else {
                        (
                            format!("/api/v1/kms/keys/{key}/decrypt"),
                            json!({"ciphertext": ct}),
                        )
                    };
                    // Round robin; on a connection error, the same request on the other node.
                    let first = n % 2;
                    let mut answer = None;
                    for attempt in 0..4 {
                        let url = urls.read().unwrap()[(first + attempt) % 2].clone();
                        let sent = client
                            .post(format!("{url}{path}"))
                            .bearer_auth(BOOTSTRAP)
                            .json(&body)
                            .timeout(Duration::from_secs(10))
                            .send()
                            .await;
                        if let Ok(r) = sent {
                            let s = r.status().as_u16();
                            if let Ok(b) = r.json::<serde_json::Value>().await {
                                answer = Some((s, b));
                                break;
                            }
                        }
                        failovers.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    let Some((s, b)) = answer else { continue };
                    assert_eq!(s, 200, "{path}: {b}");
                    if encrypting {
                        made.lock()
                            .unwrap()
                            .push((b["ciphertext"].as_str().unwrap().to_owned(), mine));
                    } else {
                        assert_eq!(
                            B64.decode(b["plaintext"].as_str().unwrap()).unwrap(),
                            msg.as_bytes(),
                            "a wrong answer"
                        );
                    }
                }
            })
        })
        .collect();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        g1.signal("KILL");
        assert!(g1.wait_exit(10));
        tokio::time::sleep(Duration::from_millis(300)).await;
        g1.launch();
        urls.write().unwrap()[0] = g1.url("");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    // Every ciphertext a client got back decrypts to what it sent, on either node.
    let made = made.lock().unwrap().clone();
    for (i, (ct, msg)) in made.iter().enumerate() {
        let node = if i % 2 == 0 { &g1 } else { &g2 };
        let (s, d) = node.decrypt(&key, ct, None).await;
        assert_eq!(
            (s, B64.decode(d["plaintext"].as_str().unwrap()).unwrap()),
            (200, msg.as_bytes().to_vec())
        );
    }
    let served_by_node_1 = made.len() as u64 > failovers.load(std::sync::atomic::Ordering::Relaxed);
    assert!(served_by_node_1, "node 1 served between its kills");
    eprintln!(
        "cluster: node 1 killed 3 times; {} encryptions checked, {} requests moved to the other node",
        made.len(),
        failovers.load(std::sync::atomic::Ordering::Relaxed)
    );
    assert!(made.len() > 100, "{}", made.len());
}
