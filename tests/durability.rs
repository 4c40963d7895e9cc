//! Durability under SIGKILL: many concurrent key creations and rotations while the
//! gateway is killed at random moments, several rounds. Every creation and rotation the
//! client saw acknowledged is there after the restart, and nothing half-written is
//! visible: every key that exists has all its versions and works.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use base64::Engine;
use common::gateway::{Gateway, B64};
use serde_json::{json, Value};

/// What the clients saw acknowledged: key id -> highest version acknowledged.
type Acked = Arc<Mutex<HashMap<String, u64>>>;

struct Shared {
    base: RwLock<String>,
    token: String,
    project: String,
    acked: Acked,
    stop: std::sync::atomic::AtomicBool,
    /// Requests that got an answer other than success or a connection error.
    wrong: Mutex<Vec<String>>,
}

async fn send(
    client: &reqwest::Client,
    shared: &Shared,
    path: &str,
    body: Value,
) -> Option<(u16, Value)> {
    let url = format!("{}{}", shared.base.read().unwrap(), path);
    let resp = client
        .post(url)
        .bearer_auth(&shared.token)
        .json(&body)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .ok()?;
    let status = resp.status().as_u16();
    // A body cut off by the kill is a connection error: not acknowledged.
    let body: Value = resp.json().await.ok()?;
    Some((status, body))
}

async fn worker(id: usize, client: reqwest::Client, shared: Arc<Shared>) {
    let mut n = 0u64;
    while !shared.stop.load(std::sync::atomic::Ordering::Relaxed) {
        n += 1;
        let rotate = n % 3 == 0;
        let target = if rotate {
            let acked = shared.acked.lock().unwrap();
            acked
                .keys()
                .nth((n as usize * 7 + id) % acked.len().max(1))
                .cloned()
        } else {
            None
        };
        match target {
            Some(key) => {
                let Some((s, b)) = send(
                    &client,
                    &shared,
                    &format!("/api/v1/kms/keys/{key}/rotate"),
                    json!({}),
                )
                .await
                else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                match s {
                    200 => {
                        let v = b["key"]["version"].as_u64().unwrap();
                        let mut acked = shared.acked.lock().unwrap();
                        let e = acked.entry(key).or_insert(0);
                        *e = (*e).max(v);
                    }
                    // Two workers rotating the same key at once: one loses, by design.
                    409 if b["code"] == "concurrent_update" => {}
                    503 => {}
                    _ => shared
                        .wrong
                        .lock()
                        .unwrap()
                        .push(format!("rotate {key}: {s} {b}")),
                }
            }
            None => {
                let name = format!("w{id}-{n}");
                let body = json!({"projectId": shared.project, "name": name});
                let Some((s, b)) = send(&client, &shared, "/api/v1/kms/keys", body).await else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                match s {
                    200 => {
                        let key = b["key"]["id"].as_str().unwrap().to_owned();
                        shared.acked.lock().unwrap().insert(key, 1);
                    }
                    503 => {}
                    _ => shared
                        .wrong
                        .lock()
                        .unwrap()
                        .push(format!("create {name}: {s} {b}")),
                }
            }
        }
    }
}

async fn kill_rounds(mut gw: Gateway, rounds: usize, target: usize) {
    let project = gw.project("durable").await;
    let client = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(gw.dir.join("ca.pem")).unwrap()).unwrap(),
        )
        .use_rustls_tls()
        .build()
        .unwrap();
    let shared = Arc::new(Shared {
        base: RwLock::new(gw.url("")),
        token: gw.bootstrap_token().to_owned(),
        project,
        acked: Default::default(),
        stop: Default::default(),
        wrong: Default::default(),
    });
    let workers: Vec<_> = (0..16)
        .map(|i| tokio::spawn(worker(i, client.clone(), shared.clone())))
        .collect();
    let started = Instant::now();
    let mut kills = 0;
    for round in 0..rounds {
        // Each round: let the clients run a random while, then SIGKILL mid-flight.
        let wait = 150 + (rand_u64() % 600);
        let round_start = shared.acked.lock().unwrap().len();
        tokio::time::sleep(Duration::from_millis(wait)).await;
        while shared.acked.lock().unwrap().len() < round_start + target / rounds
            && started.elapsed() < Duration::from_secs(240)
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        gw.signal("KILL");
        assert!(gw.wait_exit(10), "round {round}: the gateway did not die");
        kills += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
        gw.launch();
        *shared.base.write().unwrap() = gw.url("");
    }
    // A last stretch without kills, then stop the clients.
    tokio::time::sleep(Duration::from_millis(500)).await;
    shared
        .stop
        .store(true, std::sync::atomic::Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let wrong = shared.wrong.lock().unwrap().clone();
    assert!(wrong.is_empty(), "wrong answers:\n{}", wrong.join("\n"));
    let acked = shared.acked.lock().unwrap().clone();
    assert!(
        acked.len() >= target,
        "only {} creations acknowledged in {kills} kills",
        acked.len()
    );

    // After one more crash and restart: every acknowledged creation and rotation is there.
    gw.signal("KILL");
    assert!(gw.wait_exit(10));
    gw.launch();
    let mut listed = Vec::new();
    let mut offset = 0;
    loop {
        let (s, page) = gw
            .get(&format!(
                "/api/v1/kms/keys?projectId={}&offset={offset}&limit=100&orderBy=createdAt",
                shared.project
            ))
            .await;
        assert_eq!(s, 200, "{page}");
        let keys = page["keys"].as_array().unwrap().clone();
        if keys.is_empty() {
            break;
        }
        offset += keys.len();
        listed.extend(keys);
    }
    let versions: HashMap<String, u64> = listed
        .iter()
        .map(|k| {
            (
                k["id"].as_str().unwrap().to_owned(),
                k["version"].as_u64().unwrap(),
            )
        })
        .collect();
    for (key, v) in &acked {
        let have = versions
            .get(key)
            .unwrap_or_else(|| panic!("acknowledged key {key} is gone"));
        assert!(
            have >= v,
            "key {key}: version {v} was acknowledged, {have} is stored"
        );
    }
    // Nothing half-written: every stored key (acknowledged or not) has all its versions,
    // and encrypts and decrypts. A sample of them, and all acknowledged rotations.
    let mut checked = 0;
    for (i, k) in listed.iter().enumerate() {
        let id = k["id"].as_str().unwrap();
        if i % 10 != 0 && acked.get(id).copied().unwrap_or(1) == 1 {
            continue;
        }
        let (s, full) = gw.get(&format!("/api/v1/kms/keys/{id}")).await;
        assert_eq!(s, 200);
        let vs: Vec<u64> = full["key"]["versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["version"].as_u64().unwrap())
            .collect();
        let top = full["key"]["version"].as_u64().unwrap();
        assert_eq!(vs, (1..=top).collect::<Vec<_>>(), "key {id}");
        let (s, enc) = gw.encrypt(id, b"still works", None).await;
        assert_eq!(s, 200, "{enc}");
        let (s, dec) = gw
            .decrypt(id, enc["ciphertext"].as_str().unwrap(), None)
            .await;
        assert_eq!(
            (s, B64.decode(dec["plaintext"].as_str().unwrap()).unwrap()),
            (200, b"still works".to_vec())
        );
        checked += 1;
    }
    eprintln!(
        "durability: {kills} kills, {} creations acknowledged, {} keys stored, {} rotations acknowledged, {checked} keys checked in full, {:.1} s",
        acked.len(),
        listed.len(),
        acked.values().filter(|v| **v > 1).count(),
        started.elapsed().as_secs_f64()
    );
    gw.stop();
    // The audit chain went through the same crashes and is intact.
    common::gateway::assert_audit_verifies(gw.env());
}

fn rand_u64() -> u64 {
    u64::from_le_bytes(common::gateway::rand_bytes(8).try_into().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_acknowledged_writes_survive_sigkill() {
    // The audit log shares the store: every acknowledged write has its record too.
    let gw = Gateway::start_with(&[("KMSGW__SERVER__MAX_CONCURRENT_PER_IDENTITY", "64")]);
    kill_rounds(gw, 5, 1000).await;
}

/// A gateway whose store is a PostgreSQL database of its own cluster (returned, so that
/// it lives as long as the test).
fn on_postgres(extra: &[(&str, &str)]) -> (common::pg::PgCluster, tempfile::TempDir, Gateway) {
    let cluster = common::pg::PgCluster::start();
    let secrets = tempfile::tempdir().unwrap();
    let pw = secrets.path().join("db-password");
    std::fs::write(&pw, cluster.password()).unwrap();
    let token_file = secrets.path().join("bootstrap-token");
    std::fs::write(&token_file, "kmsgw_durability-bootstrap-token").unwrap();
    let url = format!("postgres://kmsgw@127.0.0.1:{}/kmsgw", cluster.port());
    let mut env = vec![
        ("KMSGW__STORE__URL", url.as_str()),
        ("KMSGW__STORE__PASSWORD_FILE", pw.to_str().unwrap()),
        (
            "KMSGW__AUTH__BOOTSTRAP_TOKEN_FILE",
            token_file.to_str().unwrap(),
        ),
        ("KMSGW__SERVER__MAX_CONCURRENT_PER_IDENTITY", "64"),
    ];
    env.extend_from_slice(extra);
    let gw = Gateway::start_with(&env);
    (cluster, secrets, gw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_acknowledged_writes_survive_sigkill() {
    let (_cluster, _secrets, gw) = on_postgres(&[]);
    kill_rounds(gw, 5, 1000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart_under_load_gives_503_then_recovers_without_a_gateway_restart() {
    let (cluster, _secrets, gw) = on_postgres(&[]);
    let p = gw.project("db-restart").await;
    let key = gw
        .key(&p, "k", "encrypt-decrypt", "aes-256-gcm", None)
        .await;
    let (_, enc) = gw.encrypt(&key, b"known plaintext", None).await;
    let ct = enc["ciphertext"].as_str().unwrap().to_owned();
    let pid = gw.pid();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen: Arc<Mutex<HashMap<String, u64>>> = Default::default();
    let gw = Arc::new(gw);
    let workers: Vec<_> = (0..8)
        .map(|i| {
            let (gw, stop, seen, key, ct) = (
                gw.clone(),
                stop.clone(),
                seen.clone(),
                key.clone(),
                ct.clone(),
            );
            tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let (path, body) = if i % 2 == 0 {
                        (
                            format!("/api/v1/kms/keys/{key}/decrypt"),
                            json!({"ciphertext": ct}),
                        )
                    } else {
                        (
                            format!("/api/v1/kms/keys/{key}/encrypt"),
                            json!({"plaintext": B64.encode(b"during the restart")}),
                        )
                    };
                    let sent = gw
                        .client
                        .post(gw.url(&path))
                        .bearer_auth(gw.bootstrap_token())
                        .json(&body)
                        .send()
                        .await;
                    let (s, b) = match sent {
                        Ok(r) => {
                            let s = r.status().as_u16();
                            (s, r.json::<Value>().await.unwrap_or_default())
                        }
                        Err(e) => {
                            *seen
                                .lock()
                                .unwrap()
                                .entry(format!("connection error {e:?}"))
                                .or_default() += 1;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let label = match s {
                        200 if i % 2 == 0 => {
                            assert_eq!(
                                B64.decode(b["plaintext"].as_str().unwrap()).unwrap(),
                                b"known plaintext",
                                "a wrong answer"
                            );
                            "200".to_string()
                        }
                        200 => "200".to_string(),
                        503 => format!("503 {}", b["code"].as_str().unwrap_or("?")),
                        other => format!("{other} {b}"),
                    };
                    *seen.lock().unwrap().entry(label).or_default() += 1;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let restarted_at = Instant::now();
    let _cluster = tokio::task::spawn_blocking(move || {
        cluster.stop();
        std::thread::sleep(Duration::from_millis(1500));
        cluster.start_again();
        cluster
    })
    .await
    .unwrap();
    // Recovery: requests succeed again, with the same gateway process.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (s, _) = gw.decrypt(&key, &ct, None).await;
        if s == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "no recovery: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let recovered = restarted_at.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    assert_eq!(gw.pid(), pid, "the gateway was not restarted");
    let seen = seen.lock().unwrap().clone();
    eprintln!("durability: database stopped 1.5 s under load; answers {seen:?}; serving again {:.1} s after the stop began", recovered.as_secs_f64());
    for label in seen.keys() {
        assert!(
            label == "200" || label == "503 store_unavailable" || label == "503 audit_unavailable",
            "unexpected answer during the outage: {label}"
        );
    }
    assert!(
        seen.keys().any(|l| l.starts_with("503")),
        "the outage was seen: {seen:?}"
    );
    let r = gw.client.get(gw.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}
