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
    let out = std::process::Command::new(common::gateway_bin())
        .args(["audit", "verify"])
        .envs(gw.env())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
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
