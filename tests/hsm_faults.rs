//! The HSM going away under load and coming back, seen at the API: requests fail with
//! 503 and `Retry-After`, never with a wrong answer or a crash, and work again without a
//! restart. The token is SoftHSM2 whatever the run's module, because the fault is made by
//! moving SoftHSM2's token directory away and back.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use common::gateway::{Gateway, B64};
use common::Token;
use serde_json::json;

async fn status_of(gw: &Gateway, key: &str) -> (u16, Option<String>, Option<String>) {
    let resp = gw
        .client
        .post(gw.url(&format!("/api/v1/kms/keys/{key}/encrypt")))
        .bearer_auth(&gw.bearer)
        .json(&json!({"plaintext": B64.encode(b"probe")}))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let body: serde_json::Value = resp.json().await.unwrap();
    (status, retry, body["code"].as_str().map(str::to_owned))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn token_away_and_back_under_load() {
    let token = Token::on_module("softhsm", "kmsgw-test");
    let mut gw = Gateway::start_on(token, &[("HSM_KEY_LABEL", "kmsgw-root")]);
    let secured = gw.gen_fragment("secured", "hsm_secured", Some("cf-fault"));
    gw.restart();
    let project = gw.project("faults").await;
    let k_secured = gw
        .key(
            &project,
            "secured",
            "encrypt-decrypt",
            "aes-256-gcm",
            Some(&secured),
        )
        .await;
    let (s, h) = gw
        .post(
            "/api/v1/kms/keys",
            json!({"projectId": project, "name": "resident", "protection": "hsm"}),
        )
        .await;
    assert_eq!(s, 200, "{h}");
    let k_hsm = h["key"]["id"].as_str().unwrap().to_owned();
    let k_soft = gw
        .key(&project, "software", "encrypt-decrypt", "aes-256-gcm", None)
        .await;
    for k in [&k_secured, &k_hsm, &k_soft] {
        assert_eq!(status_of(&gw, k).await.0, 200);
    }

    // Load: encrypt continuously on the HSM-bound keys, remembering every answer.
    let gw = Arc::new(gw);
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for (w, key) in [k_secured.clone(), k_hsm.clone()].into_iter().enumerate() {
        let (gw, stop) = (gw.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut i = 0u32;
            while !stop.load(Ordering::Relaxed) && i < 5000 {
                let pt = format!("worker {w} message {i}");
                let (s, body) = gw.encrypt(&key, pt.as_bytes(), None).await;
                seen.push((s, pt, body));
                i += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (key, seen)
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The token's storage goes away.
    let tokens = gw.token.dir.path().join("tokens");
    let away = gw.token.dir.path().join("tokens.away");
    std::fs::rename(&tokens, &away).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    for k in [&k_secured, &k_hsm] {
        let (s, retry, code) = status_of(&gw, k).await;
        assert_eq!(s, 503, "{code:?}");
        assert!(retry.is_some(), "503 carries Retry-After");
        assert!(
            matches!(
                code.as_deref(),
                Some("hsm_unavailable" | "hsm_key_unavailable")
            ),
            "{code:?}"
        );
    }
    let r = gw.client.get(gw.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503, "not ready while the HSM keys are away");
    // Keys that need no HSM keep working.
    assert_eq!(status_of(&gw, &k_soft).await.0, 200);

    // It comes back: the same process serves again, without a restart.
    std::fs::rename(&away, &tokens).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if status_of(&gw, &k_secured).await.0 == 200 && status_of(&gw, &k_hsm).await.0 == 200 {
            break;
        }
        if Instant::now() > deadline {
            let log = gw.log();
            let tail: Vec<&str> = log.lines().rev().take(12).collect();
            panic!(
                "the gateway did not recover; last log lines:\n{}",
                tail.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = gw.client.get(gw.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);

    // Every answer under load was a success or a clean 503, and every success is right.
    let (mut ok, mut unavailable) = (0, 0);
    for w in workers {
        let (key, seen) = w.await.unwrap();
        for (s, pt, body) in seen {
            match s {
                200 => {
                    let (ds, d) = gw
                        .decrypt(&key, body["ciphertext"].as_str().unwrap(), None)
                        .await;
                    assert_eq!(ds, 200, "{d}");
                    assert_eq!(
                        B64.decode(d["plaintext"].as_str().unwrap()).unwrap(),
                        pt.as_bytes()
                    );
                    ok += 1;
                }
                503 => unavailable += 1,
                other => panic!("unexpected status {other} under HSM loss: {body}"),
            }
        }
    }
    assert!(
        ok > 0 && unavailable > 0,
        "ok {ok}, unavailable {unavailable}"
    );
}
