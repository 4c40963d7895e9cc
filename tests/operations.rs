//! Operating the gateway: TLS reload on SIGHUP, JSON logs, graceful shutdown on SIGTERM.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::gateway::Gateway;
use serde_json::{json, Value};

/// The serial number of the certificate the gateway presents now.
fn served_serial(gw: &Gateway) -> String {
    let addr = gw.base.trim_start_matches("https://").to_owned();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("openssl s_client -connect {addr} -servername localhost </dev/null 2>/dev/null | openssl x509 -noout -serial"))
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(s.starts_with("serial="), "no certificate served: {s:?}");
    s
}

fn remake_certificate(gw: &Gateway) {
    for f in ["cert.pem", "key.pem", "ca.pem", "ca.key"] {
        let _ = std::fs::remove_file(gw.path(f));
    }
    let out = Command::new(common::project_root().join("scripts/dev-cert.sh"))
        .arg(&gw.dir)
        .output()
        .unwrap();
    assert!(out.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_tls_certificate_and_keeps_the_old_one_on_error() {
    let gw = Gateway::start();
    let first = served_serial(&gw);
    remake_certificate(&gw);
    gw.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut second = served_serial(&gw);
    while second == first && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        second = served_serial(&gw);
    }
    assert_ne!(first, second, "the new certificate is served after SIGHUP");

    // A broken file: the reload is refused and the current certificate stays.
    std::fs::write(gw.path("cert.pem"), b"not a certificate").unwrap();
    gw.signal("HUP");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(served_serial(&gw), second);
    assert!(
        gw.log().contains("TLS certificate not reloaded"),
        "the refusal is logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_request_ids() {
    let mut gw = Gateway::start_with(&[("KMSGW__LOG__FORMAT", "json")]);
    let project = gw.project("json-logs").await;
    let key = gw
        .key(&project, "k", "encrypt-decrypt", "aes-256-gcm", None)
        .await;
    let (s, body) = gw.decrypt(&key, "AQID", None).await;
    assert_eq!(s, 400);
    let request_id = body["requestId"].as_str().unwrap().to_owned();
    gw.stop();
    let log = gw.log();
    let mut requests = 0;
    let mut found = false;
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(
            v.get("timestamp").is_some() && v.get("level").is_some(),
            "{line}"
        );
        if v["fields"]["message"] == "request" {
            requests += 1;
            assert!(v["fields"]["request_id"].is_string(), "{line}");
            found |= v["fields"]["request_id"] == request_id.as_str();
        }
    }
    assert!(requests >= 3, "{requests} request lines");
    assert!(found, "the error's requestId {request_id} is in the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_requests_then_exits() {
    // With the HSM RNG, RSA-4096 generation takes long enough to be in flight.
    let mut gw = Gateway::start_with(&[
        ("HSM_USE_RAND", "true"),
        ("KMSGW__SERVER__SHUTDOWN_GRACE_SECONDS", "120"),
    ]);
    let project = gw.project("shutdown").await;
    let client = gw.client.clone();
    let url = gw.url("/api/v1/kms/keys");
    let bearer = gw.bearer.clone();
    let slow = tokio::spawn(async move {
        let started = Instant::now();
        let r = client
            .post(url)
            .bearer_auth(bearer)
            .json(&json!({"projectId": project, "name": "rsa", "keyUsage": "sign-verify", "encryptionAlgorithm": "RSA_4096"}))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), started.elapsed())
    });
    // Wait until the server is busy with it: RSA generation draws from the HSM RNG.
    let baseline = gw.metric("kmsgw_hsm_random_calls_total").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    // (The first draws suffice: a prime search takes far longer than the poll; waiting for
    // many could outlast a lucky, short search.)
    while gw.metric("kmsgw_hsm_random_calls_total").await < baseline + 5 {
        assert!(Instant::now() < deadline, "the slow request never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    gw.signal("TERM");
    let (status, took) = slow.await.unwrap();
    assert_eq!(status, 200, "the in-flight request completed");
    assert!(
        took > Duration::from_millis(150),
        "it was in flight when SIGTERM came ({took:?})"
    );
    assert!(gw.wait_exit(20), "the gateway exits after finishing");
    let log = gw.log();
    assert!(
        log.contains("shutdown requested") && log.contains("in-flight requests finished"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_identity_over_its_concurrency_bound_gets_429_with_retry_after() {
    // One request in flight per identity; RSA generation with the HSM RNG keeps it busy.
    let gw = Gateway::start_with(&[
        ("HSM_USE_RAND", "true"),
        ("KMSGW__SERVER__MAX_CONCURRENT_PER_IDENTITY", "1"),
    ]);
    let project = gw.project("limits").await;
    let mut tasks = Vec::new();
    for i in 0..3 {
        let (client, url, bearer, project) = (
            gw.client.clone(),
            gw.url("/api/v1/kms/keys"),
            gw.bearer.clone(),
            project.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let r = client
                .post(url)
                .bearer_auth(bearer)
                .json(&json!({"projectId": project, "name": format!("rsa-{i}"), "keyUsage": "sign-verify", "encryptionAlgorithm": "RSA_4096"}))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let retry = r.headers().get("retry-after").is_some();
            let body: Value = r.json().await.unwrap();
            (status, retry, body["code"].as_str().map(str::to_owned))
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert!(statuses.iter().any(|(s, _, _)| *s == 200), "{statuses:?}");
    let limited: Vec<_> = statuses.iter().filter(|(s, _, _)| *s == 429).collect();
    assert!(!limited.is_empty(), "{statuses:?}");
    for (_, retry, code) in limited {
        assert!(*retry, "429 carries Retry-After");
        assert_eq!(code.as_deref(), Some("too_many_requests"));
    }
    // Once the slow request is done, the identity is served again.
    let (s, _) = gw
        .get(&format!(
            "/api/v1/kms/keys?projectId={}",
            gw.project("after").await
        ))
        .await;
    assert_eq!(s, 200);
}
