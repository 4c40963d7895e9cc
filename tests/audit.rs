//! The tamper-evident audit log: what API calls and admin commands record (and never
//! record), the JSON-lines stream, paging, `audit verify` against edited, removed,
//! reordered and truncated records, and operations failing when no record can be written.

mod common;

use base64::Engine;
use common::gateway::{Gateway, B64};
use reqwest::Method as M;
use serde_json::{json, Value};

fn cli(gw: &Gateway, args: &[&str]) -> (bool, String) {
    let r = gw.cli(args, &[]);
    (r.ok, r.all())
}

/// Pages through the log (7 at a time). Each page request is itself recorded, so the
/// log grows by one per page: a short page is the end.
async fn all_records(gw: &Gateway) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let (s, page) = gw
            .get(&format!("/api/v1/audit?after={after}&limit=7"))
            .await;
        assert_eq!(s, 200, "{page}");
        let records = page["records"].as_array().unwrap().clone();
        let short = records.len() < 7;
        if let Some(last) = records.last() {
            after = last["seq"].as_u64().unwrap();
            assert_eq!(page["nextAfter"].as_u64(), Some(after));
        }
        out.extend(records);
        if short {
            return out;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_recorded_without_secrets_and_streamed() {
    let out = tempfile::tempdir().unwrap();
    let stream = out.path().join("audit.jsonl");
    let mut gw = Gateway::start_with(&[("KMSGW__AUDIT__STREAM", stream.to_str().unwrap())]);
    let gw = &mut gw;
    let p = gw.project("audited").await;
    let key = gw
        .key(&p, "k", "encrypt-decrypt", "aes-256-gcm", None)
        .await;
    let secret = b"the audit log must never see this";
    let (_, enc) = gw.encrypt(&key, secret, None).await;
    let ct = enc["ciphertext"].as_str().unwrap().to_owned();
    let (s, _) = gw.decrypt(&key, &ct, None).await;
    assert_eq!(s, 200);
    let (s, _) = gw
        .call_as(None, M::GET, &format!("/api/v1/kms/keys/{key}"), None)
        .await;
    assert_eq!(s, 401);
    let (s, _) = gw
        .get(&format!("/api/v1/kms/keys/{}", uuid::Uuid::new_v4()))
        .await;
    assert_eq!(s, 404);

    let records = all_records(gw).await;
    let seqs: Vec<u64> = records.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "paging is gapless"
    );
    let find = |op: &str| {
        records
            .iter()
            .find(|r| r["operation"] == op)
            .unwrap_or_else(|| panic!("no record of {op}: {records:?}"))
            .clone()
    };
    let e = find("key.encrypt");
    assert_eq!(
        (e["outcome"].as_str(), e["frontend"].as_str()),
        (Some("ok"), Some("native"))
    );
    assert_eq!(
        (e["keyId"].as_str(), e["keyVersion"].as_u64()),
        (Some(key.as_str()), Some(1))
    );
    assert_eq!(e["projectId"].as_str(), Some(p.as_str()));
    assert_eq!(
        (e["identityName"].as_str(), e["source"].as_str()),
        (Some("bootstrap-admin"), Some("api"))
    );
    assert!(e["requestId"].as_str().unwrap().starts_with("req-"));
    assert!(e["client"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert_eq!(e["hash"].as_str().unwrap().len(), 64);
    let unauth = records
        .iter()
        .find(|r| r["outcome"] == "unauthorized")
        .expect("a 401 is recorded");
    assert_eq!(
        (unauth["outcome"].as_str(), unauth["identityId"].as_str()),
        (Some("unauthorized"), None)
    );
    let missing = records
        .iter()
        .find(|r| r["outcome"] == "key_not_found")
        .expect("a 404 is recorded");
    assert_eq!(missing["operation"], "key.get");

    // No plaintext, ciphertext or token anywhere: not in the API's pages, the stream or
    // the database file.
    gw.stop();
    let db = std::fs::read(gw.dir.join("data/kms-gateway.db")).unwrap();
    let streamed = std::fs::read_to_string(&stream).unwrap();
    let pages = serde_json::to_string(&records).unwrap();
    let token = std::fs::read_to_string(gw.dir.join("data/bootstrap-token")).unwrap();
    for (what, needle) in [
        ("plaintext", secret.to_vec()),
        ("plaintext b64", B64.encode(secret).into_bytes()),
        ("ciphertext", ct.clone().into_bytes()),
        ("token", token.trim().as_bytes().to_vec()),
    ] {
        for (place, hay) in [
            ("db", &db),
            ("stream", &streamed.as_bytes().to_vec()),
            ("pages", &pages.as_bytes().to_vec()),
        ] {
            assert!(
                !hay.windows(needle.len()).any(|w| w == needle.as_slice()),
                "{what} found in {place}"
            );
        }
    }
    // The stream has one JSON line per committed record, in order, the same records.
    let lines: Vec<Value> = streamed
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        lines.len() >= records.len(),
        "{} lines, {} records",
        lines.len(),
        records.len()
    );
    for (l, r) in lines.iter().zip(&records) {
        assert_eq!(
            (
                l["seq"].clone(),
                l["operation"].clone(),
                l["outcome"].clone()
            ),
            (
                r["seq"].clone(),
                r["operation"].clone(),
                r["outcome"].clone()
            )
        );
    }

    // Admin commands are recorded too.
    let (ok, out) = cli(
        gw,
        &[
            "identity", "create", "--name", "from-cli", "--role", "admin",
        ],
    );
    assert!(ok, "{out}");
    let (ok, out) = cli(gw, &["audit", "export"]);
    assert!(ok, "{out}");
    let last: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(
        (
            last["source"].as_str(),
            last["operation"].as_str(),
            last["outcome"].as_str()
        ),
        (Some("cli"), Some("identity.create"), Some("ok"))
    );
    let (ok, out) = cli(gw, &["audit", "verify"]);
    assert!(ok && out.contains("audit log intact"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_edited_removed_reordered_and_truncated_records() {
    let mut gw = Gateway::start();
    let p = gw.project("tamper").await;
    let key = gw
        .key(&p, "k", "encrypt-decrypt", "aes-256-gcm", None)
        .await;
    for i in 0..6 {
        let (s, _) = gw.encrypt(&key, format!("m{i}").as_bytes(), None).await;
        assert_eq!(s, 200);
    }
    gw.stop();
    let (ok, out) = cli(&gw, &["audit", "verify"]);
    assert!(ok, "{out}");
    let db = gw.dir.join("data/kms-gateway.db");
    // Everything into the main file, so that one file is the whole store.
    let settle = |db: &std::path::Path| {
        let conn = rusqlite::Connection::open(db).unwrap();
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
        drop(conn);
        for suffix in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
        }
    };
    settle(&db);
    let pristine = std::fs::read(&db).unwrap();
    let count: usize = {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.query_row("SELECT count(*) FROM audit", [], |r| r.get(0))
            .unwrap()
    };
    assert!(count >= 8, "{count}");
    let last = count;

    let cases: Vec<(&str, String, Vec<String>)> = vec![
        (
            "edited",
            "UPDATE audit SET record = replace(record, '\"outcome\":\"ok\"', '\"outcome\":\"forbidden\"') WHERE seq = 5".into(),
            vec!["record 5 was altered".into()],
        ),
        ("removed", "DELETE FROM audit WHERE seq = 4".into(), vec!["records 4 to 4 were removed".into()]),
        (
            "reordered",
            "UPDATE audit SET record = CASE seq WHEN 2 THEN (SELECT record FROM audit WHERE seq = 3) ELSE (SELECT record FROM audit WHERE seq = 2) END, \
             hash = CASE seq WHEN 2 THEN (SELECT hash FROM audit WHERE seq = 3) ELSE (SELECT hash FROM audit WHERE seq = 2) END WHERE seq IN (2, 3)".into(),
            vec!["record 2 was altered or moved".into()],
        ),
        (
            "tail removed",
            format!("DELETE FROM audit WHERE seq = {last}"),
            vec![format!("names record {last} but the last record is {}", last - 1)],
        ),
        (
            "tail removed and head rewritten",
            format!(
                "DELETE FROM audit WHERE seq = {last}; \
                 UPDATE audit_head SET seq = {prev}, hash = (SELECT hash FROM audit WHERE seq = {prev})",
                prev = last - 1
            ),
            vec!["MAC is not valid".into()],
        ),
        ("head removed", "DELETE FROM audit_head".into(), vec!["chain head is missing".into()]),
    ];
    for (name, sql, expected) in cases {
        settle(&db);
        std::fs::write(&db, &pristine).unwrap();
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(&sql).unwrap();
        drop(conn);
        let (ok, out) = cli(&gw, &["audit", "verify"]);
        assert!(!ok, "{name}: verify passed a tampered log:\n{out}");
        for e in expected {
            assert!(out.contains(&e), "{name}: expected {e:?} in:\n{out}");
        }
        assert!(out.contains("TAMPERED"), "{name}: {out}");
    }
    // The untouched log still verifies, and the gateway starts on it and keeps appending.
    settle(&db);
    std::fs::write(&db, &pristine).unwrap();
    gw.launch();
    let (s, _) = gw.encrypt(&key, b"after", None).await;
    assert_eq!(s, 200);
    gw.stop();
    let (ok, out) = cli(&gw, &["audit", "verify"]);
    assert!(ok, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operation_fails_when_its_record_cannot_be_written() {
    let gw = Gateway::start();
    let p = gw.project("no-audit").await;
    let key = gw
        .key(&p, "k", "encrypt-decrypt", "aes-256-gcm", None)
        .await;
    // The database refuses audit rows from now on (as a full disk or a broken store would).
    gw.sql("CREATE TRIGGER refuse_audit BEFORE INSERT ON audit BEGIN SELECT RAISE(ABORT, 'audit refused'); END");
    let (s, e) = gw.encrypt(&key, b"withheld", None).await;
    assert_eq!(
        (s, e["code"].as_str()),
        (503, Some("audit_unavailable")),
        "{e}"
    );
    assert!(e.get("ciphertext").is_none());
    let (s, e) = gw
        .post(
            "/api/v1/kms/keys",
            json!({"projectId": p, "name": "during-outage"}),
        )
        .await;
    assert_eq!((s, e["code"].as_str()), (503, Some("audit_unavailable")));
    gw.sql("DROP TRIGGER refuse_audit");
    let (s, enc) = gw.encrypt(&key, b"recorded", None).await;
    assert_eq!(s, 200, "{enc}");
    let (s, _) = gw
        .decrypt(&key, enc["ciphertext"].as_str().unwrap(), None)
        .await;
    assert_eq!(s, 200);
    let records = all_records(&gw).await;
    assert!(
        records.iter().all(|r| r["outcome"] != "audit_unavailable"),
        "refused records were not written"
    );
}

/// A client that hangs up mid-request (here: a timeout of a few hundred microseconds, so
/// the request is dropped at varying points: an HTTP/1.1 connection closed, an HTTP/2
/// stream reset) never leaves a change without its record: every key and identity that
/// exists has its creation record, every key scheduled for deletion its record, and every
/// successful record names something that exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_are_recorded_when_clients_hang_up() {
    let gw = Gateway::start();
    let p = gw.project("hang-ups").await;
    let ca =
        reqwest::Certificate::from_pem(&std::fs::read(gw.dir.join("ca.pem")).unwrap()).unwrap();
    let h2 = reqwest::Client::builder()
        .add_root_certificate(ca)
        .use_rustls_tls()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    // HTTP/2 works here at all (the same client, without a deadline).
    let (status, version) = {
        let r = h2.get(gw.url("/healthz")).send().await.unwrap();
        (r.status().as_u16(), r.version())
    };
    assert_eq!((status, version), (200, reqwest::Version::HTTP_2));
    let mut cut = 0;
    for i in 0..120u64 {
        let client = if i % 2 == 0 { &gw.client } else { &h2 };
        let (path, body) = match i % 3 {
            0 | 1 => (
                "/api/v1/kms/keys".to_string(),
                json!({"projectId": p, "name": format!("cut-{i}")}),
            ),
            _ => (
                "/api/v1/identities".to_string(),
                json!({"name": format!("cut-{i}"), "projectId": p, "role": "read"}),
            ),
        };
        let sent = client
            .post(gw.url(&path))
            .bearer_auth(gw.bootstrap_token())
            .json(&body)
            .timeout(std::time::Duration::from_micros(300 + 200 * (i % 15)))
            .send()
            .await;
        cut += usize::from(sent.is_err());
    }
    // Schedule deletions the same way, of the keys that exist now.
    let (_, list) = gw
        .get(&format!("/api/v1/kms/keys?projectId={p}&limit=100"))
        .await;
    for (i, k) in list["keys"].as_array().unwrap().iter().enumerate() {
        let client = if i % 2 == 0 { &gw.client } else { &h2 };
        let sent = client
            .delete(gw.url(&format!("/api/v1/kms/keys/{}", k["id"].as_str().unwrap())))
            .bearer_auth(gw.bootstrap_token())
            .timeout(std::time::Duration::from_micros(
                300 + 200 * (i as u64 % 15),
            ))
            .send()
            .await;
        cut += usize::from(sent.is_err());
    }
    // Let operations whose clients left finish.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let (s, list) = gw
        .get(&format!("/api/v1/kms/keys?projectId={p}&limit=100"))
        .await;
    assert_eq!(s, 200, "{list}");
    let keys = list["keys"].as_array().unwrap();
    let ids = |pred: &dyn Fn(&Value) -> bool| -> Vec<String> {
        let mut v: Vec<String> = keys
            .iter()
            .filter(|k| pred(k))
            .map(|k| k["id"].as_str().unwrap().to_owned())
            .collect();
        v.sort();
        v
    };
    let records = all_records(&gw).await;
    let recorded = |op: &str, field: &str| -> Vec<String> {
        let mut v: Vec<String> = records
            .iter()
            .filter(|r| r["operation"] == op && r["outcome"] == "ok")
            .map(|r| {
                r[field]
                    .as_str()
                    .unwrap()
                    .trim_start_matches("identity ")
                    .to_owned()
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        ids(&|_| true),
        recorded("key.create", "keyId"),
        "{cut} requests were cut"
    );
    assert_eq!(
        ids(&|k| k["keyState"] == "PendingDeletion"),
        recorded("key.schedule_deletion", "keyId")
    );
    let (_, identities) = gw.get("/api/v1/identities").await;
    let mut made: Vec<String> = identities["identities"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["name"].as_str().unwrap().starts_with("cut-"))
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect();
    made.sort();
    assert_eq!(made, recorded("identity.create", "target"));
    assert!(cut > 0, "no request was cut short; the test proves nothing");
}

/// `audit archive` writes old records to a file and prunes them: the rest still verifies
/// from the sealed checkpoint, the archives verify up to it, the gateway appends on, and
/// removing records or forging the checkpoint is named by `audit verify`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archived_records_are_pruned_and_the_chain_still_verifies() {
    let mut gw = Gateway::start();
    let p = gw.project("archive").await;
    let key = gw
        .key(&p, "k", "encrypt-decrypt", "aes-256-gcm", None)
        .await;
    for i in 0..4 {
        let (s, _) = gw.encrypt(&key, format!("m{i}").as_bytes(), None).await;
        assert_eq!(s, 200);
    }
    gw.stop();
    let seqs = |gw: &Gateway| -> (u64, u64) {
        let conn = rusqlite::Connection::open(gw.dir.join("data/kms-gateway.db")).unwrap();
        conn.query_row("SELECT min(seq), max(seq) FROM audit", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap()
    };
    let file = gw.dir.join("audit-1.jsonl");
    let path = file.to_str().unwrap();

    // Nothing is a day old yet: no file, nothing pruned.
    let (ok, out) = cli(
        &gw,
        &["audit", "archive", "--older-than-days", "1", "--out", path],
    );
    assert!(ok && out.contains("nothing to archive"), "{out}");
    assert!(!file.exists());
    assert_eq!(seqs(&gw).0, 1);
    let (ok, out) = cli(&gw, &["audit", "archive", "--out", path]);
    assert!(!ok && out.contains("--older-than-days"), "{out}");

    let (ok, out) = cli(&gw, &["audit", "archive", "--through", "5", "--out", path]);
    assert!(ok && out.contains("records 1 to 5"), "{out}");
    let lines: Vec<Value> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines
            .iter()
            .map(|l| l["seq"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    let first: Value = serde_json::from_str(lines[0]["record"].as_str().unwrap()).unwrap();
    assert!(first["operation"].is_string(), "{first}");
    assert_eq!(seqs(&gw).0, 6);

    let (ok, out) = cli(&gw, &["audit", "verify"]);
    assert!(ok && out.contains("audit log intact"), "{out}");
    let (ok, out) = cli(&gw, &["audit", "verify", "--archive", path]);
    assert!(
        ok && out.contains("audit archives intact: 5 records"),
        "{out}"
    );
    // An archive is never overwritten, and a refused archive prunes nothing.
    let (ok, out) = cli(&gw, &["audit", "archive", "--through", "6", "--out", path]);
    assert!(!ok && out.contains("never overwritten"), "{out}");
    assert_eq!(seqs(&gw).0, 6);
    // A record that is already pruned, or not written yet.
    let other = gw.dir.join("audit-2.jsonl");
    let (ok, out) = cli(
        &gw,
        &[
            "audit",
            "archive",
            "--through",
            "999999",
            "--out",
            other.to_str().unwrap(),
        ],
    );
    assert!(!ok && out.contains("the log ends at record"), "{out}");
    assert!(!other.exists());

    // The gateway starts on the pruned log and appends; the API pages from the checkpoint.
    gw.launch();
    let (s, _) = gw.encrypt(&key, b"after", None).await;
    assert_eq!(s, 200);
    let (s, page) = gw.get("/api/v1/audit?after=0&limit=1").await;
    assert_eq!(s, 200, "{page}");
    assert_eq!(page["records"][0]["seq"], 6);
    gw.stop();
    let (ok, out) = cli(&gw, &["audit", "verify", "--archive", path]);
    assert!(ok, "{out}");

    // Tampering after a prune.
    let db = gw.dir.join("data/kms-gateway.db");
    let pristine = {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
        std::fs::read(&db).unwrap()
    };
    let cases = [
        (
            "checkpoint removed",
            "DELETE FROM audit_checkpoint".to_string(),
            "records 1 to 5 were removed",
        ),
        (
            "more pruned under a forged checkpoint",
            "UPDATE audit_checkpoint SET seq = 6, hash = (SELECT hash FROM audit WHERE seq = 6); \
             DELETE FROM audit WHERE seq = 6"
                .to_string(),
            "checkpoint's MAC is not valid",
        ),
    ];
    for (name, sql, expected) in cases {
        std::fs::write(&db, &pristine).unwrap();
        for suffix in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
        }
        rusqlite::Connection::open(&db)
            .unwrap()
            .execute_batch(&sql)
            .unwrap();
        let (ok, out) = cli(&gw, &["audit", "verify"]);
        assert!(!ok && out.contains(expected), "{name}: {out}");
    }
    // An edited archive is named.
    std::fs::write(&db, &pristine).unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replacen("encrypt", "decrypt", 1)).unwrap();
    let (ok, out) = cli(&gw, &["audit", "verify", "--archive", path]);
    assert!(!ok && out.contains("was altered"), "{out}");
}

/// Every record, a thousand at a time.
async fn records_in_pages_of_1000(gw: &Gateway) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let (s, page) = gw
            .get(&format!("/api/v1/audit?after={after}&limit=1000"))
            .await;
        assert_eq!(s, 200, "{page}");
        let records = page["records"].as_array().unwrap().clone();
        // Each page request is recorded too: a short page is the end.
        let short = records.len() < 1000;
        if let Some(last) = records.last() {
            after = last["seq"].as_u64().unwrap();
        }
        out.extend(records);
        if short {
            return out;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_token_flood_is_answered_429_and_recorded_in_summaries() {
    let gw = Gateway::start_with(&[
        ("KMSGW__AUTH__MAX_FAILURES_PER_ADDRESS", "10"),
        ("KMSGW__AUTH__FAILURE_WINDOW_SECONDS", "3"),
    ]);
    let started = std::time::Instant::now();
    let (mut unauthorized, mut throttled) = (0u64, 0u64);
    for i in 0..400 {
        // The native API and the Vault API share the bound.
        let req = if i % 4 == 3 {
            gw.client
                .get(gw.url("/v1/transit/keys/k"))
                .header("x-vault-token", format!("kmsgw_bad-{i}"))
        } else {
            gw.client
                .get(gw.url("/api/v1/projects"))
                .bearer_auth(format!("kmsgw_bad-{i}"))
        };
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let retry_after = r.headers().get("retry-after").cloned();
        let body: Value = r.json().await.unwrap();
        match status {
            401 | 403 => unauthorized += 1,
            429 => {
                throttled += 1;
                let wait: u64 = retry_after
                    .expect("Retry-After")
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!((1..=3).contains(&wait), "{wait}");
                if i % 4 != 3 {
                    assert_eq!(body["code"], "too_many_requests", "{body}");
                }
            }
            other => panic!("{other}: {body}"),
        }
        if i == 200 {
            // Meanwhile a valid token from the same address works...
            let (s, b) = gw.get("/api/v1/projects").await;
            assert_eq!(s, 200, "{b}");
            // ...and another address is refused as usual, not throttled.
            let cert =
                reqwest::Certificate::from_pem(&std::fs::read(gw.dir.join("ca.pem")).unwrap())
                    .unwrap();
            let other = reqwest::Client::builder()
                .add_root_certificate(cert)
                .use_rustls_tls()
                .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
                .build()
                .unwrap();
            let r = other
                .get(gw.url("/api/v1/projects"))
                .bearer_auth("kmsgw_bad-other")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 401);
        }
    }
    let windows = started.elapsed().as_secs() / 3 + 1;
    assert!(
        throttled > 0 && unauthorized >= 10,
        "{unauthorized} {throttled}"
    );
    assert!(
        unauthorized <= 10 * windows,
        "{unauthorized} refusals recorded in {windows} windows"
    );

    // Once the windows are over, summaries account for every 429.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let (records, summaries) = loop {
        let records = records_in_pages_of_1000(&gw).await;
        let summaries: Vec<Value> = records
            .iter()
            .filter(|r| r["operation"] == "auth.refusals_suppressed")
            .cloned()
            .collect();
        let counted: u64 = summaries
            .iter()
            .map(|s| s["suppressed"].as_u64().unwrap())
            .sum();
        if counted == throttled {
            break (records, summaries);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "summaries count {counted} of {throttled} refusals"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    };
    for s in &summaries {
        assert_eq!(s["client"], "127.0.0.1", "{s}");
        assert_eq!(s["outcome"], "too_many_requests", "{s}");
        assert!(s["identityId"].is_null(), "{s}");
    }
    assert!(summaries.len() as u64 <= windows, "{summaries:?}");
    let refused_here = records
        .iter()
        .filter(|r| {
            r["client"]
                .as_str()
                .is_some_and(|c| c.starts_with("127.0.0.1:"))
                && r["identityId"].is_null()
        })
        .count() as u64;
    assert_eq!(
        refused_here, unauthorized,
        "one record per refusal under the bound"
    );
    eprintln!(
        "bad-token flood: {unauthorized} refusals recorded, {throttled} answered 429 in {} summaries",
        summaries.len()
    );
    common::gateway::assert_audit_verifies(gw.env());
}
