//! The audit log's durability levels (`audit.durability`, docs/SECURITY.md "Durability").
//! At the default `group` level, a crypto call's record is committed before its answer
//! and synced within `audit.sync_interval_ms`; a change of state's record is synced before
//! its answer; with `sync`, every commit is. What a SIGKILL leaves is read back from the
//! restarted gateway; which commits were synced before their answers is read from the
//! writer's counters on `/metrics` (a test cannot cut the power).

mod common;

use std::time::{Duration, Instant};

use common::gateway::Gateway;
use serde_json::json;

const SYNCED: &str = "kmsgw_audit_synced_commits_total";
const DEFERRED: &str = "kmsgw_audit_deferred_commits_total";
const SYNCS: &str = "kmsgw_audit_deferred_syncs_total";

/// `(synced commits, deferred commits, deferred syncs)`.
async fn counts(gw: &Gateway) -> (u64, u64, u64) {
    (
        gw.metric(SYNCED).await,
        gw.metric(DEFERRED).await,
        gw.metric(SYNCS).await,
    )
}

#[tokio::test]
async fn group_level_defers_only_crypto_records_and_they_survive_sigkill() {
    // A long interval, so that the records below are certainly not yet synced when the
    // process is killed.
    let mut gw = Gateway::start_with(&[("KMSGW__AUDIT__SYNC_INTERVAL_MS", "1000")]);
    let project = gw.project("durability").await;
    let key = gw
        .key(&project, "k", "encrypt-decrypt", "aes-256-gcm", None)
        .await;

    // A change of state: synced before its answer, nothing deferred.
    let before = counts(&gw).await;
    let (s, b) = gw
        .call(
            reqwest::Method::PATCH,
            &format!("/api/v1/kms/keys/{key}"),
            Some(json!({"description": "synced"})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let after = counts(&gw).await;
    assert!(
        after.0 > before.0,
        "the change's record was not synced: {before:?} -> {after:?}"
    );
    assert_eq!(after.1, before.1, "a change's record was deferred");

    // Crypto calls: committed, not synced, before their answers ...
    let before = counts(&gw).await;
    for i in 0..20 {
        let (s, b) = gw
            .encrypt(&key, format!("record {i}").as_bytes(), None)
            .await;
        assert_eq!(s, 200, "{b}");
    }
    let after = counts(&gw).await;
    assert_eq!(
        after.0, before.0,
        "a crypto record was synced before its answer"
    );
    assert!(after.1 > before.1, "{before:?} -> {after:?}");
    // ... and killed before the interval is over, they are all still there.
    gw.signal("KILL");
    assert!(gw.wait_exit(10));
    gw.launch();
    let (s, audit) = gw.get("/api/v1/audit?limit=1000").await;
    assert_eq!(s, 200, "{audit}");
    let encrypts = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["operation"] == "key.encrypt" && r["outcome"] == "ok")
        .count();
    assert_eq!(encrypts, 20, "{audit}");

    // Without a kill, the deferred commits reach the disk within the interval.
    let before = counts(&gw).await;
    let (s, b) = gw.encrypt(&key, b"synced later", None).await;
    assert_eq!(s, 200, "{b}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = counts(&gw).await;
        if now.2 > before.2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no sync after the interval: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    common::gateway::assert_audit_verifies(gw.env());
}

#[tokio::test]
async fn sync_level_syncs_every_commit_before_its_answer() {
    let gw = Gateway::start_with(&[("KMSGW__AUDIT__DURABILITY", "sync")]);
    let project = gw.project("sync").await;
    let key = gw
        .key(&project, "k", "encrypt-decrypt", "aes-256-gcm", None)
        .await;
    let before = counts(&gw).await;
    for _ in 0..5 {
        let (s, b) = gw.encrypt(&key, b"synced", None).await;
        assert_eq!(s, 200, "{b}");
    }
    let after = counts(&gw).await;
    assert!(after.0 > before.0, "{before:?} -> {after:?}");
    assert_eq!(after.1, 0, "a commit was deferred at the sync level");
}
