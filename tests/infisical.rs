//! The native API as Infisical's clients use it, over real TLS on a real token: the key
//! object's fields, defaults on create, `keyId` repeated in bodies, `{}` on DELETE,
//! Infisical's error members, and universal-auth machine login (login, use, renew up to
//! the maximum lifetime, wrong secrets slowed down, revoked identities' tokens refused).
//! `tests/clients/` drives the same API with Infisical's own Python SDK.

mod common;

use common::gateway::{Gateway, B64};
use reqwest::Method as M;
use serde_json::{json, Value};

use base64::Engine;

async fn universal_auth_identity(
    gw: &Gateway,
    project: &str,
    role: &str,
) -> (String, String, String) {
    let (s, b) = gw
        .post(
            "/api/v1/identities",
            json!({"name": "ci-runner", "projectId": project, "role": role, "authMethod": "universal-auth"}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["identity"]["authMethod"], "universal-auth");
    assert!(
        b.get("token").is_none(),
        "a universal-auth identity gets no token: {b}"
    );
    let client_id = b["clientId"].as_str().unwrap().to_owned();
    assert_eq!(b["identity"]["clientId"], client_id.as_str());
    (
        b["identity"]["id"].as_str().unwrap().to_owned(),
        client_id,
        b["clientSecret"].as_str().unwrap().to_owned(),
    )
}

async fn login(gw: &Gateway, client_id: &str, secret: &str) -> (u16, Value) {
    gw.call_as(
        None,
        M::POST,
        "/api/v1/auth/universal-auth/login",
        Some(json!({"clientId": client_id, "clientSecret": secret})),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_look_and_behave_as_infisicals() {
    let gw = Gateway::start();
    let p = gw.project("infisical").await;
    // Without keyUsage and encryptionAlgorithm: an AES-256-GCM encryption key.
    let (s, b) = gw
        .post(
            "/api/v1/kms/keys",
            json!({"projectId": p, "name": "defaults", "description": "d"}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let key = &b["key"];
    for field in [
        "id",
        "orgId",
        "name",
        "description",
        "isDisabled",
        "projectId",
        "keyUsage",
        "encryptionAlgorithm",
        "version",
        "createdAt",
        "updatedAt",
    ] {
        assert!(
            key.get(field).is_some_and(|v| !v.is_null()),
            "{field} missing: {key}"
        );
    }
    assert_eq!(
        (
            key["keyUsage"].as_str(),
            key["encryptionAlgorithm"].as_str(),
            key["version"].as_u64()
        ),
        (Some("encrypt-decrypt"), Some("aes-256-gcm"), Some(1))
    );
    let id = key["id"].as_str().unwrap().to_owned();
    // orgId is this installation's, the same for every key and on the status route.
    let (s, status) = gw.get("/api/v1/status").await;
    assert_eq!(s, 200);
    assert_eq!(status["orgId"], key["orgId"]);
    let (_, signer) = gw
        .post(
            "/api/v1/kms/keys",
            json!({"projectId": p, "name": "signer", "keyUsage": "sign-verify"}),
        )
        .await;
    assert_eq!(signer["key"]["encryptionAlgorithm"], "RSA_4096");
    assert_eq!(signer["key"]["orgId"], key["orgId"]);

    // keyId repeated in the body (Infisical's Node SDK) must name the path's key.
    let enc = format!("/api/v1/kms/keys/{id}/encrypt");
    let (s, e) = gw
        .call(
            M::POST,
            &enc,
            Some(json!({"keyId": id, "plaintext": B64.encode(b"hi")})),
        )
        .await;
    assert_eq!(s, 200, "{e}");
    let other = signer["key"]["id"].as_str().unwrap();
    let (s, e) = gw
        .call(
            M::POST,
            &enc,
            Some(json!({"keyId": other, "plaintext": B64.encode(b"hi")})),
        )
        .await;
    assert_eq!((s, e["code"].as_str()), (400, Some("key_id_mismatch")));
    // Infisical's error members beside problem+json's.
    assert_eq!(e["statusCode"], 400);
    assert_eq!(e["error"], "Bad Request");
    assert_eq!(e["reqId"], e["requestId"]);
    assert!(
        e["message"].as_str().is_some_and(|m| m.contains("keyId")),
        "{e}"
    );

    // A JSON array is not an object (serde alone would read it field by field).
    let (s, e) = gw
        .call(M::POST, "/api/v1/projects", Some(json!(["sneaky"])))
        .await;
    assert_eq!(
        (s, e["code"].as_str()),
        (400, Some("invalid_request")),
        "{e}"
    );
    // The bearer scheme is case-insensitive.
    let resp = gw
        .client
        .get(gw.url("/api/v1/status"))
        .header("authorization", format!("bearer {}", gw.bootstrap_token()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // A key name is a path segment, decoded as a path (a `+` is a plus, not a space).
    let (s, e) = gw
        .get(&format!("/api/v1/kms/keys/key-name/defaults?projectId={p}"))
        .await;
    assert_eq!((s, e["key"]["id"].as_str()), (200, Some(id.as_str())));
    let (s, e) = gw
        .get(&format!(
            "/api/v1/kms/keys/key-name/de+faults?projectId={p}"
        ))
        .await;
    assert_eq!((s, e["code"].as_str()), (404, Some("key_not_found")));

    // DELETE with the body `{}` the SDKs send schedules the deletion.
    let (s, d) = gw
        .call(
            M::DELETE,
            &format!("/api/v1/kms/keys/{id}"),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 200, "{d}");
    assert_eq!(d["key"]["keyState"], "PendingDeletion");
    let (s, e) = gw
        .call(M::POST, &enc, Some(json!({"plaintext": B64.encode(b"hi")})))
        .await;
    assert_eq!((s, e["code"].as_str()), (409, Some("key_pending_deletion")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn universal_auth_login_use_renew_and_revocation() {
    // Short lifetimes so that the test sees a token expire and renewals stop at the maximum.
    let gw = Gateway::start_with(&[
        ("KMSGW__AUTH__ACCESS_TOKEN_TTL_SECONDS", "3"),
        ("KMSGW__AUTH__ACCESS_TOKEN_MAX_TTL_SECONDS", "6"),
    ]);
    let p = gw.project("machines").await;
    let key = gw
        .key(&p, "k", "encrypt-decrypt", "aes-256-gcm", None)
        .await;
    let (identity, client_id, secret) = universal_auth_identity(&gw, &p, "encrypt").await;
    // The secret is not a bearer token.
    let enc = format!("/api/v1/kms/keys/{key}/encrypt");
    let body = || Some(json!({"plaintext": B64.encode(b"machine")}));
    let (s, _) = gw.call_as(Some(&secret), M::POST, &enc, body()).await;
    assert_eq!(s, 401);

    let (s, t) = login(&gw, &client_id, &secret).await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(
        (
            t["tokenType"].as_str(),
            t["expiresIn"].as_u64(),
            t["accessTokenMaxTTL"].as_u64()
        ),
        (Some("Bearer"), Some(3), Some(6))
    );
    let token = t["accessToken"].as_str().unwrap().to_owned();
    let (s, e) = gw.call_as(Some(&token), M::POST, &enc, body()).await;
    assert_eq!(s, 200, "{e}");
    // Its permissions are the identity's: encrypt, not decrypt.
    let (s, e) = gw
        .call_as(
            Some(&token),
            M::POST,
            &format!("/api/v1/kms/keys/{key}/decrypt"),
            Some(json!({"ciphertext": e["ciphertext"]})),
        )
        .await;
    assert_eq!((s, e["code"].as_str()), (403, Some("forbidden")));

    let gw_ref = &gw;
    let renew = |t: String| async move {
        gw_ref
            .call_as(
                None,
                M::POST,
                "/api/v1/auth/token/renew",
                Some(json!({"accessToken": t})),
            )
            .await
    };
    let sleep = |ms| tokio::time::sleep(std::time::Duration::from_millis(ms));
    // Lifetimes count in whole seconds: the sleeps leave more than a second of margin.
    sleep(1500).await;
    let (s, r) = renew(token.clone()).await;
    assert_eq!(s, 200, "{r}");
    let renewed = r["accessToken"].as_str().unwrap().to_owned();
    sleep(1700).await;
    let (s, e) = gw.call_as(Some(&token), M::POST, &enc, body()).await;
    assert_eq!(
        (s, e["code"].as_str()),
        (401, Some("token_expired")),
        "the first token expired"
    );
    let (s, _) = gw.call_as(Some(&renewed), M::POST, &enc, body()).await;
    assert_eq!(s, 200, "the renewed token still works");
    // A renewal never passes the first login's maximum lifetime.
    let (s, r) = renew(renewed.clone()).await;
    assert_eq!(s, 200, "{r}");
    assert!(r["expiresIn"].as_u64().is_some_and(|e| e <= 3), "{r}");
    let last = r["accessToken"].as_str().unwrap().to_owned();
    sleep(3100).await;
    let (s, e) = gw.call_as(Some(&last), M::POST, &enc, body()).await;
    assert_eq!((s, e["code"].as_str()), (401, Some("token_expired")));
    let (s, e) = renew(last.clone()).await;
    assert_eq!((s, e["code"].as_str()), (401, Some("token_expired")), "{e}");

    // A forged or altered token is refused.
    let mut forged = renewed.clone();
    forged.replace_range(12..13, if &forged[12..13] == "A" { "B" } else { "A" });
    let (s, _) = gw.call_as(Some(&forged), M::POST, &enc, body()).await;
    assert_eq!(s, 401);

    // Revoking the identity ends its tokens at once (on this gateway).
    let (s, t) = login(&gw, &client_id, &secret).await;
    assert_eq!(s, 200);
    let token = t["accessToken"].as_str().unwrap().to_owned();
    let (s, _) = gw
        .call(M::DELETE, &format!("/api/v1/identities/{identity}"), None)
        .await;
    assert_eq!(s, 200);
    let (s, e) = gw.call_as(Some(&token), M::POST, &enc, body()).await;
    assert_eq!((s, e["code"].as_str()), (401, Some("token_revoked")));
    let (s, e) = login(&gw, &client_id, &secret).await;
    assert_eq!((s, e["code"].as_str()), (401, Some("token_revoked")));

    // Nothing of the secrets reached the log or the audit records.
    let (_, page) = gw.get("/api/v1/audit?limit=1000").await;
    let audit = page.to_string();
    let log = gw.log();
    for secret in [&secret, &token, &renewed] {
        assert!(!audit.contains(secret.as_str()) && !log.contains(secret.as_str()));
    }
    let logins: Vec<&str> = page["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["operation"] == "auth.login")
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(logins, vec!["ok", "ok", "token_revoked"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secrets_are_401_then_slowed_down() {
    let gw = Gateway::start();
    let p = gw.project("guessing").await;
    let (_, client_id, secret) = universal_auth_identity(&gw, &p, "read").await;
    for _ in 0..5 {
        let (s, e) = login(&gw, &client_id, "kmsgw_guess").await;
        assert_eq!(
            (s, e["code"].as_str()),
            (401, Some("invalid_credentials")),
            "{e}"
        );
        assert!(e["message"]
            .as_str()
            .is_some_and(|m| m.contains("client secret")));
    }
    // Past five failures a minute, even the right secret waits.
    let resp = gw
        .client
        .post(gw.url("/api/v1/auth/universal-auth/login"))
        .json(&json!({"clientId": client_id, "clientSecret": secret}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    let wait: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    let e: Value = resp.json().await.unwrap();
    assert_eq!(e["code"], "too_many_login_attempts");
    // Unknown client ids are refused the same way, and malformed bodies are 400.
    let (s, e) = login(&gw, "no-such-client", "x").await;
    assert_eq!(
        (s, e["code"].as_str()),
        (429, Some("too_many_login_attempts")),
        "same address: {e}"
    );
    let (s, e) = gw
        .call_as(
            None,
            M::POST,
            "/api/v1/auth/universal-auth/login",
            Some(json!({"clientId": 5})),
        )
        .await;
    assert_eq!((s, e["code"].as_str()), (400, Some("invalid_request")));
}
