//! The free-space guard (`store.min_free_mib`), driven through the gateway with its bound
//! set from the file system's real free space: between the bound and half of it,
//! changes of state are refused with 507 `insufficient_storage` and nothing changes,
//! while crypto operations and their audit records go on; below half, every operation
//! that needs an audit record is refused too. Stored keys stay intact throughout.

mod common;

use common::gateway::Gateway;
use serde_json::json;

const MIB: u64 = 1024 * 1024;

/// MiB free on the file system holding the gateway's database.
fn free_mib(gw: &Gateway) -> u64 {
    let st = rustix::fs::statvfs(gw.dir.join("data")).unwrap();
    st.f_bavail * st.f_frsize / MIB
}

fn set_min_free(gw: &mut Gateway, mib: u64) {
    gw.extra_env
        .retain(|(name, _)| name != "KMSGW__STORE__MIN_FREE_MIB");
    gw.extra_env
        .push(("KMSGW__STORE__MIN_FREE_MIB".into(), mib.to_string()));
    gw.restart();
}

#[tokio::test]
async fn a_nearly_full_disk_refuses_changes_first_then_everything_and_loses_nothing() {
    let mut gw = Gateway::start();
    let project = gw.project("space").await;
    let key = gw
        .key(&project, "k", "encrypt-decrypt", "aes-256-gcm", None)
        .await;
    let (s, b) = gw.encrypt(&key, b"kept", None).await;
    assert_eq!(s, 200, "{b}");
    let ciphertext = b["ciphertext"].as_str().unwrap().to_owned();
    let keys_before = gw
        .get(&format!("/api/v1/kms/keys?projectId={project}"))
        .await;
    assert_eq!(keys_before.0, 200, "{}", keys_before.1);

    // The bound at 1.6 x the free space: half of it (0.8 x) is still free, so audit
    // records go on while changes stop (a margin of 20 % of the disk for other writers).
    let free = free_mib(&gw);
    set_min_free(&mut gw, free + free * 6 / 10);

    let (s, b) = gw
        .post(
            "/api/v1/kms/keys",
            json!({"projectId": project, "name": "refused", "keyUsage": "encrypt-decrypt", "encryptionAlgorithm": "aes-256-gcm"}),
        )
        .await;
    assert_eq!(s, 507, "{b}");
    assert_eq!(b["code"], "insufficient_storage", "{b}");
    let (s, b) = gw
        .call(
            reqwest::Method::PATCH,
            &format!("/api/v1/kms/keys/{key}"),
            Some(json!({"description": "refused"})),
        )
        .await;
    assert_eq!(s, 507, "{b}");
    let (s, b) = gw
        .post("/api/v1/projects", json!({"name": "refused"}))
        .await;
    assert_eq!(s, 507, "{b}");

    // Crypto operations are served and audited.
    let (s, b) = gw.decrypt(&key, &ciphertext, None).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = gw.encrypt(&key, b"still served", None).await;
    assert_eq!(s, 200, "{b}");
    // Nothing changed: the same keys, the description untouched.
    let keys_now = gw
        .get(&format!("/api/v1/kms/keys?projectId={project}"))
        .await;
    assert_eq!(keys_now, keys_before);
    // The refusals are on the record.
    let (s, audit) = gw.get("/api/v1/audit?limit=1000").await;
    assert_eq!(s, 200, "{audit}");
    let refused = audit.to_string().matches("insufficient_storage").count();
    assert!(refused >= 3, "{audit}");

    // Past half the bound: operations that need an audit record are refused too, and
    // the health check says so.
    set_min_free(&mut gw, 4 * free + 1024);
    let (s, b) = gw.encrypt(&key, b"refused", None).await;
    assert_eq!(s, 507, "{b}");
    assert_eq!(b["code"], "insufficient_storage", "{b}");
    let (s, _) = gw.get("/readyz").await;
    assert_ne!(s, 200);

    // Room again: everything works, the key decrypts what it encrypted before.
    set_min_free(&mut gw, 0);
    let (s, b) = gw.decrypt(&key, &ciphertext, None).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = gw
        .post(
            "/api/v1/kms/keys",
            json!({"projectId": project, "name": "later", "keyUsage": "encrypt-decrypt", "encryptionAlgorithm": "aes-256-gcm"}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    common::gateway::assert_audit_verifies(gw.env());
}
