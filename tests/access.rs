//! Identities and permissions over real TLS: every route for every role (allowed works,
//! not allowed is 403), projects are walls (another project's keys answer 404), and
//! missing, unknown, expired and revoked tokens are 401.

mod common;

use base64::Engine;
use common::gateway::{Gateway, B64};
use reqwest::Method as M;
use serde_json::{json, Value};

const ROLES: [&str; 7] = [
    "admin",
    "keys:manage",
    "encrypt",
    "decrypt",
    "sign",
    "verify",
    "read",
];

/// Creates an identity with the bootstrap token; returns (id, token).
async fn identity(gw: &Gateway, name: &str, project: Option<&str>, role: &str) -> (String, String) {
    let mut body = json!({"name": name, "role": role});
    if let Some(p) = project {
        body["projectId"] = p.into();
    }
    let (s, b) = gw.post("/api/v1/identities", body).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["identity"]["name"], name);
    assert!(b["identity"].get("tokenSha256").is_none());
    (
        b["identity"]["id"].as_str().unwrap().to_owned(),
        b["token"].as_str().unwrap().to_owned(),
    )
}

struct Route {
    method: M,
    path: String,
    body: Option<Value>,
    /// The permission it needs; `None`: only an administrator of every project.
    needs: Option<&'static str>,
}

fn route(method: M, path: String, body: Option<Value>, needs: Option<&'static str>) -> Route {
    Route {
        method,
        path,
        body,
        needs,
    }
}

fn allowed(role: &str, needs: Option<&str>) -> bool {
    match needs {
        None => false,
        Some(n) => role == "admin" || n == "read" || n == role,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_for_every_role() {
    let gw = Gateway::start_with(&[("KMSGW__SERVER__MAX_CONCURRENT_PER_IDENTITY", "64")]);
    let a = gw.project("team-a").await;
    let aes = gw
        .key(&a, "aes", "encrypt-decrypt", "aes-256-gcm", None)
        .await;
    let ec = gw.key(&a, "ec", "sign-verify", "ECC_NIST_P256", None).await;
    let (_, enc) = gw.encrypt(&aes, b"matrix", None).await;
    let ct = enc["ciphertext"].as_str().unwrap().to_owned();
    let data = B64.encode(b"signed message");
    let (_, sig) = gw
        .post(
            &format!("/api/v1/kms/keys/{ec}/sign"),
            json!({"data": data, "signingAlgorithm": "ECDSA_SHA_256"}),
        )
        .await;
    let sig = sig["signature"].as_str().unwrap().to_owned();
    let hmac = gw
        .key(&a, "hmac", "generate-verify-mac", "HMAC_SHA_256", None)
        .await;
    let (_, mac) = gw
        .post(
            &format!("/api/v1/kms/keys/{hmac}/generate-mac"),
            json!({"data": data}),
        )
        .await;
    let mac = mac["mac"].as_str().unwrap().to_owned();

    let mut wrong = Vec::new();
    let mut tokens = Vec::new();
    for (i, role) in ROLES.iter().enumerate() {
        let (_, token) = identity(&gw, &format!("id-{i}"), Some(&a), role).await;
        tokens.push(token.clone());
        // A key of its own for the deletion routes, so that one role's success does not
        // change what the next one sees.
        let doomed = gw
            .key(
                &a,
                &format!("doomed-{i}"),
                "encrypt-decrypt",
                "aes-256-gcm",
                None,
            )
            .await;
        // And an identity of its own for the identity routes.
        let (victim, _) = identity(&gw, &format!("victim-{i}"), Some(&a), "read").await;
        let k = |suffix: &str| format!("/api/v1/kms/keys/{aes}{suffix}");
        let e = |suffix: &str| format!("/api/v1/kms/keys/{ec}{suffix}");
        let h = |suffix: &str| format!("/api/v1/kms/keys/{hmac}{suffix}");
        let routes = [
            route(
                M::GET,
                format!("/api/v1/kms/keys?projectId={a}"),
                None,
                Some("read"),
            ),
            route(M::GET, k(""), None, Some("read")),
            route(
                M::GET,
                format!("/api/v1/kms/keys/key-name/aes?projectId={a}"),
                None,
                Some("read"),
            ),
            route(M::GET, e("/public-key"), None, Some("read")),
            route(M::GET, e("/signing-algorithms"), None, Some("read")),
            route(
                M::POST,
                "/api/v1/kms/keys".into(),
                Some(json!({"projectId": a, "name": format!("made-by-{i}")})),
                Some("keys:manage"),
            ),
            route(
                M::PATCH,
                k(""),
                Some(json!({"description": format!("by {role}")})),
                Some("keys:manage"),
            ),
            route(M::POST, k("/rotate"), Some(json!({})), Some("keys:manage")),
            route(
                M::DELETE,
                format!("/api/v1/kms/keys/{doomed}"),
                None,
                Some("keys:manage"),
            ),
            route(
                M::POST,
                format!("/api/v1/kms/keys/{doomed}/cancel-deletion"),
                Some(json!({})),
                Some("keys:manage"),
            ),
            route(
                M::POST,
                k("/encrypt"),
                Some(json!({"plaintext": B64.encode(b"x")})),
                Some("encrypt"),
            ),
            route(
                M::POST,
                k("/decrypt"),
                Some(json!({"ciphertext": ct})),
                Some("decrypt"),
            ),
            route(
                M::POST,
                k("/generate-data-key"),
                Some(json!({"keySpec": "AES_256"})),
                Some("encrypt"),
            ),
            route(
                M::POST,
                k("/generate-data-key-without-plaintext"),
                Some(json!({"keySpec": "AES_128"})),
                Some("encrypt"),
            ),
            route(
                M::POST,
                e("/sign"),
                Some(json!({"data": data, "signingAlgorithm": "ECDSA_SHA_256"})),
                Some("sign"),
            ),
            route(
                M::POST,
                e("/verify"),
                Some(json!({"data": data, "signature": sig, "signingAlgorithm": "ECDSA_SHA_256"})),
                Some("verify"),
            ),
            route(
                M::POST,
                h("/generate-mac"),
                Some(json!({"data": data})),
                Some("sign"),
            ),
            route(
                M::POST,
                h("/verify-mac"),
                Some(json!({"data": data, "mac": mac})),
                Some("verify"),
            ),
            route(M::GET, "/api/v1/identities".into(), None, Some("admin")),
            route(
                M::POST,
                "/api/v1/identities".into(),
                Some(json!({"name": format!("child-of-{i}"), "projectId": a, "role": "read"})),
                Some("admin"),
            ),
            route(
                M::POST,
                format!("/api/v1/identities/{victim}/rotate-token"),
                None,
                Some("admin"),
            ),
            route(
                M::DELETE,
                format!("/api/v1/identities/{victim}"),
                None,
                Some("admin"),
            ),
            route(
                M::POST,
                "/api/v1/projects".into(),
                Some(json!({"name": format!("p-{i}")})),
                None,
            ),
            route(
                M::GET,
                "/api/v1/admin/encryption-strategy".into(),
                None,
                None,
            ),
            route(M::GET, "/api/v1/audit".into(), None, None),
        ];
        for r in routes {
            let (s, b) = gw
                .call_as(Some(&token), r.method.clone(), &r.path, r.body.clone())
                .await;
            let expect_ok = allowed(role, r.needs);
            let ok = if expect_ok {
                s == 200
            } else {
                s == 403 && b["code"] == "forbidden"
            };
            if !ok {
                wrong.push(format!(
                    "{role:12} {} {} -> {s} {b} (expected {})",
                    r.method,
                    r.path,
                    if expect_ok { "200" } else { "403 forbidden" }
                ));
            }
        }
        // re-encrypt needs decrypt on the source and encrypt on the destination.
        let (s, _) = gw
            .call_as(
                Some(&token),
                M::POST,
                &k("/re-encrypt"),
                Some(json!({"ciphertext": ct})),
            )
            .await;
        let expected = if *role == "admin" { 200 } else { 403 };
        if s != expected {
            wrong.push(format!("{role:12} re-encrypt -> {s} (expected {expected})"));
        }
    }
    assert!(
        wrong.is_empty(),
        "permission matrix mismatches:\n{}",
        wrong.join("\n")
    );

    // The global administrator (the bootstrap token) may do the admin-only routes.
    for path in [
        "/api/v1/admin/encryption-strategy",
        "/api/v1/audit",
        "/api/v1/identities",
    ] {
        let (s, b) = gw.get(path).await;
        assert_eq!(s, 200, "{path}: {b}");
    }
    // No identity token reaches the log or the audit records; every record names its
    // route.
    let log = gw.log();
    let mut records = Vec::new();
    loop {
        let (_, page) = gw
            .get(&format!("/api/v1/audit?limit=1000&after={}", records.len()))
            .await;
        let got = page["records"].as_array().unwrap().clone();
        let done = got.len() < 1000;
        records.extend(got);
        if done {
            break;
        }
    }
    let audit = json!({ "records": records });
    let unnamed: Vec<&serde_json::Value> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["operation"] == "request.unrouted")
        .collect();
    assert!(unnamed.is_empty(), "records without a route: {unnamed:?}");
    let ops: std::collections::HashSet<&str> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["operation"].as_str().unwrap())
        .collect();
    for op in [
        "key.generate_data_key",
        "key.re_encrypt",
        "key.rotate",
        "key.generate_mac",
        "key.verify_mac",
        "key.cancel_deletion",
        "identity.create",
        "identity.revoke",
        "identity.rotate_token",
        "project.create",
    ] {
        assert!(ops.contains(op), "no record of {op}: {ops:?}");
    }
    let audit = audit.to_string();
    for t in tokens
        .iter()
        .map(String::as_str)
        .chain([gw.bootstrap_token()])
    {
        assert!(!log.contains(t), "a token is in the gateway's log");
        assert!(!audit.contains(t), "a token is in the audit log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_projects_keys_do_not_exist_for_a_token() {
    let gw = Gateway::start();
    let a = gw.project("a").await;
    let b = gw.project("b").await;
    let key_b = gw
        .key(&b, "secret-b", "encrypt-decrypt", "aes-256-gcm", None)
        .await;
    let sign_b = gw.key(&b, "sign-b", "sign-verify", "RSA_4096", None).await;
    let (_, enc) = gw.encrypt(&key_b, b"project b data", None).await;
    let ct = enc["ciphertext"].as_str().unwrap().to_owned();
    let (_, admin_a) = identity(&gw, "admin-a", Some(&a), "admin").await;
    let unknown = uuid::Uuid::new_v4();
    for (method, path, body) in [
        (M::GET, format!("/api/v1/kms/keys/{key_b}"), None),
        (
            M::PATCH,
            format!("/api/v1/kms/keys/{key_b}"),
            Some(json!({"isDisabled": true})),
        ),
        (M::DELETE, format!("/api/v1/kms/keys/{key_b}"), None),
        (
            M::POST,
            format!("/api/v1/kms/keys/{key_b}/rotate"),
            Some(json!({})),
        ),
        (
            M::POST,
            format!("/api/v1/kms/keys/{key_b}/encrypt"),
            Some(json!({"plaintext": B64.encode(b"x")})),
        ),
        (
            M::POST,
            format!("/api/v1/kms/keys/{key_b}/decrypt"),
            Some(json!({"ciphertext": ct})),
        ),
        (
            M::GET,
            format!("/api/v1/kms/keys/{sign_b}/public-key"),
            None,
        ),
        (
            M::POST,
            format!("/api/v1/kms/keys/{sign_b}/sign"),
            Some(json!({"data": B64.encode(b"x"), "signingAlgorithm": "RSASSA_PSS_SHA_256"})),
        ),
        // The same answer as for a key that does not exist anywhere.
        (M::GET, format!("/api/v1/kms/keys/{unknown}"), None),
    ] {
        let (s, e) = gw
            .call_as(Some(&admin_a), method.clone(), &path, body)
            .await;
        assert_eq!(
            (s, e["code"].as_str()),
            (404, Some("key_not_found")),
            "{method} {path}: {e}"
        );
        assert!(!e.to_string().contains("secret-b"), "{e}");
    }
    for path in [
        format!("/api/v1/kms/keys?projectId={b}"),
        format!("/api/v1/kms/keys/key-name/secret-b?projectId={b}"),
    ] {
        let (s, e) = gw.call_as(Some(&admin_a), M::GET, &path, None).await;
        assert_eq!(
            (s, e["code"].as_str()),
            (404, Some("project_not_found")),
            "{path}: {e}"
        );
    }
    let (s, e) = gw
        .call_as(
            Some(&admin_a),
            M::POST,
            "/api/v1/kms/keys",
            Some(json!({"projectId": b, "name": "intruder"})),
        )
        .await;
    assert_eq!((s, e["code"].as_str()), (404, Some("project_not_found")));
    // Re-encrypting into another project's key is refused the same way.
    let key_a = gw
        .key(&a, "mine", "encrypt-decrypt", "aes-256-gcm", None)
        .await;
    let (_, enc_a) = gw.encrypt(&key_a, b"a data", None).await;
    let (s, e) = gw
        .call_as(
            Some(&admin_a),
            M::POST,
            &format!("/api/v1/kms/keys/{key_a}/re-encrypt"),
            Some(json!({"ciphertext": enc_a["ciphertext"], "destinationKeyId": key_b})),
        )
        .await;
    assert_eq!((s, e["code"].as_str()), (404, Some("key_not_found")));
    // A project admin sees only its project's identities, and cannot make a global one.
    let (_, _) = identity(&gw, "reader-b", Some(&b), "read").await;
    let (s, list) = gw
        .call_as(Some(&admin_a), M::GET, "/api/v1/identities", None)
        .await;
    assert_eq!(s, 200);
    let names: Vec<&str> = list["identities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["admin-a"]);
    let (s, e) = gw
        .call_as(
            Some(&admin_a),
            M::POST,
            "/api/v1/identities",
            Some(json!({"name": "root2", "role": "admin"})),
        )
        .await;
    assert_eq!((s, e["code"].as_str()), (403, Some("forbidden")));
    // Project b's key is untouched by all of this.
    let (s, k) = gw.get(&format!("/api/v1/kms/keys/{key_b}")).await;
    assert_eq!(
        (
            s,
            k["key"]["keyState"].as_str(),
            k["key"]["version"].as_u64()
        ),
        (200, Some("Enabled"), Some(1))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_unknown_expired_and_revoked_tokens_are_401() {
    let gw = Gateway::start();
    let p = gw.project("p").await;
    let key = gw
        .key(&p, "k", "encrypt-decrypt", "aes-256-gcm", None)
        .await;
    let path = format!("/api/v1/kms/keys/{key}");
    let check = |token: Option<String>, code: &'static str| {
        let gw = &gw;
        let path = path.clone();
        async move {
            let (s, e) = gw.call_as(token.as_deref(), M::GET, &path, None).await;
            assert_eq!((s, e["code"].as_str()), (401, Some(code)), "{e}");
        }
    };
    check(None, "unauthorized").await;
    check(Some("kmsgw_not-a-real-token".into()), "unauthorized").await;

    // Expiry: a token valid for two seconds.
    let soon = time::OffsetDateTime::now_utc() + time::Duration::seconds(2);
    let soon = soon
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let (s, b) = gw
        .post(
            "/api/v1/identities",
            json!({"name": "short", "projectId": p, "role": "read", "expiresAt": soon}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let short = b["token"].as_str().unwrap().to_owned();
    let (s, _) = gw.call_as(Some(&short), M::GET, &path, None).await;
    assert_eq!(s, 200);
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    check(Some(short), "token_expired").await;
    let (s, e) = gw
        .post("/api/v1/identities", json!({"name": "past", "projectId": p, "role": "read", "expiresAt": "2020-01-01T00:00:00Z"}))
        .await;
    assert_eq!((s, e["code"].as_str()), (400, Some("invalid_request")));

    // Revocation takes effect at once on this gateway.
    let (id, token) = identity(&gw, "app", Some(&p), "encrypt").await;
    let (s, _) = gw.call_as(Some(&token), M::GET, &path, None).await;
    assert_eq!(s, 200);
    let (s, r) = gw
        .call(M::DELETE, &format!("/api/v1/identities/{id}"), None)
        .await;
    assert_eq!(s, 200, "{r}");
    assert!(r["identity"]["revokedAt"].is_string());
    check(Some(token), "token_revoked").await;

    // Bad role names are refused; unknown fields are ignored, as Infisical does.
    let (s, e) = gw
        .post(
            "/api/v1/identities",
            json!({"name": "x", "projectId": p, "role": "superuser"}),
        )
        .await;
    assert_eq!((s, e["code"].as_str()), (400, Some("invalid_role")));
    let (s, e) = gw
        .post(
            "/api/v1/identities",
            json!({"name": "x", "projectId": p, "role": "read", "extra": 1}),
        )
        .await;
    assert_eq!((s, e["identity"]["name"].as_str()), (200, Some("x")), "{e}");
    let (s, e) = gw
        .post(
            "/api/v1/identities",
            json!({"name": "y", "projectId": p, "role": 7}),
        )
        .await;
    assert_eq!((s, e["code"].as_str()), (400, Some("invalid_request")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_token_is_rotated_then_revoked() {
    let mut gw = Gateway::start();
    let old = gw.bootstrap_token().to_owned();
    // A second global administrator first, so that revoking the bootstrap loses nothing.
    let (ops_id, ops) = identity(&gw, "ops", None, "admin").await;
    let (s, list) = gw.get("/api/v1/identities").await;
    assert_eq!(s, 200);
    let boot = list["identities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "bootstrap-admin")
        .expect("the bootstrap token is an identity")
        .clone();
    assert_eq!(boot["projectId"], Value::Null);
    let boot_id = boot["id"].as_str().unwrap().to_owned();

    let (s, r) = gw
        .call_as(
            Some(&old),
            M::POST,
            &format!("/api/v1/identities/{boot_id}/rotate-token"),
            None,
        )
        .await;
    assert_eq!(s, 200, "{r}");
    let new = r["token"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    let (s, _) = gw
        .call_as(Some(&old), M::GET, "/api/v1/identities", None)
        .await;
    assert_eq!(s, 401, "the old bootstrap token stopped working");
    let (s, _) = gw
        .call_as(Some(&new), M::GET, "/api/v1/identities", None)
        .await;
    assert_eq!(s, 200);

    // The rotation survives a restart (the token file still holds the old token).
    gw.restart();
    let (s, _) = gw
        .call_as(Some(&old), M::GET, "/api/v1/identities", None)
        .await;
    assert_eq!(s, 401);
    let (s, _) = gw
        .call_as(Some(&new), M::GET, "/api/v1/identities", None)
        .await;
    assert_eq!(s, 200);

    let (s, _) = gw
        .call_as(
            Some(&ops),
            M::DELETE,
            &format!("/api/v1/identities/{boot_id}"),
            None,
        )
        .await;
    assert_eq!(s, 200);
    let (s, e) = gw
        .call_as(Some(&new), M::GET, "/api/v1/identities", None)
        .await;
    assert_eq!((s, e["code"].as_str()), (401, Some("token_revoked")));
    // Not resurrected by a restart.
    gw.restart();
    let (s, _) = gw
        .call_as(Some(&new), M::GET, "/api/v1/identities", None)
        .await;
    assert_eq!(s, 401);
    let (s, _) = gw
        .call_as(Some(&ops), M::GET, "/api/v1/identities", None)
        .await;
    assert_eq!(s, 200);
    // The last administrator of every project cannot be revoked.
    let (s, e) = gw
        .call_as(
            Some(&ops),
            M::DELETE,
            &format!("/api/v1/identities/{ops_id}"),
            None,
        )
        .await;
    assert_eq!((s, e["code"].as_str()), (409, Some("last_administrator")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_creates_lists_and_revokes_identities() {
    let gw = Gateway::start();
    let p = gw.project("cli").await;
    let key = gw
        .key(&p, "k", "encrypt-decrypt", "aes-256-gcm", None)
        .await;
    let run = |args: &[&str]| {
        let r = gw.cli(args, &[]);
        (r.ok, r.stdout, r.stderr)
    };
    let (ok, token, err) = run(&[
        "identity",
        "create",
        "--name",
        "batch",
        "--project-id",
        &p,
        "--role",
        "encrypt,decrypt",
    ]);
    assert!(ok, "{err}");
    assert!(token.starts_with("kmsgw_"), "{token}");
    let (s, _) = gw
        .call_as(
            Some(&token),
            M::POST,
            &format!("/api/v1/kms/keys/{key}/encrypt"),
            Some(json!({"plaintext": B64.encode(b"x")})),
        )
        .await;
    assert_eq!(s, 200);
    let (ok, list, _) = run(&["identity", "list"]);
    assert!(ok);
    let line = list
        .lines()
        .find(|l| l.contains("\tbatch\t"))
        .expect("listed");
    assert!(
        line.contains("encrypt,decrypt") && line.contains("active"),
        "{line}"
    );
    assert!(!list.contains(&token), "tokens are never listed");
    let id = line.split('\t').next().unwrap();
    let (ok, _, err) = run(&["identity", "create", "--name", "bad", "--role", "encrypt"]);
    assert!(!ok && err.contains("must be admin"), "{err}");
    let (ok, _, err) = run(&["identity", "revoke", id]);
    assert!(ok, "{err}");
    // The gateway's identity cache trusts a lookup for at most 5 s.
    tokio::time::sleep(std::time::Duration::from_millis(5200)).await;
    let (s, e) = gw
        .call_as(
            Some(&token),
            M::POST,
            &format!("/api/v1/kms/keys/{key}/encrypt"),
            Some(json!({"plaintext": B64.encode(b"x")})),
        )
        .await;
    assert_eq!((s, e["code"].as_str()), (401, Some("token_revoked")));
}

/// The CLI administers identities through the same core as the API: it refuses to
/// revoke the last administrator of every project (as the API does), and its records
/// name the operation and the front-end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_and_api_share_identity_administration() {
    let gw = Gateway::start();
    let (s, list) = gw.call(M::GET, "/api/v1/identities", None).await;
    assert_eq!(s, 200);
    let bootstrap = list["identities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "bootstrap-admin")
        .expect("the bootstrap identity")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = gw.cli(&["identity", "revoke", &bootstrap], &[]);
    assert!(!r.ok, "the CLI revoked the last global administrator");
    assert!(r.stderr.contains("last_administrator"), "{}", r.stderr);
    // Still the administrator: the API answers its token.
    let (s, _) = gw.call(M::GET, "/api/v1/identities", None).await;
    assert_eq!(s, 200);
    // With a second administrator (made by the CLI), the API may revoke the first.
    let r = gw.cli(
        &["identity", "create", "--name", "ops", "--role", "admin"],
        &[],
    );
    assert!(r.ok, "{}", r.stderr);
    let ops_token = r.stdout.clone();
    let r = gw.cli(&["identity", "revoke", &bootstrap], &[]);
    assert!(r.ok, "{}", r.stderr);
    // Both refusal and revocation are in the audit log, as the core's operation.
    let ops = gw.cli(
        &["identity", "create", "--name", "x", "--role", "bogus"],
        &[],
    );
    assert!(
        !ops.ok && ops.stderr.contains("unknown role"),
        "{}",
        ops.stderr
    );
    let (s, page) = gw
        .call_as(Some(&ops_token), M::GET, "/api/v1/audit?limit=1000", None)
        .await;
    assert_eq!(s, 200, "{page}");
    let cli: Vec<(&str, &str)> = page["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["frontend"] == "cli")
        .map(|r| {
            (
                r["operation"].as_str().unwrap(),
                r["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        cli,
        vec![
            ("identity.revoke", "last_administrator"),
            ("identity.create", "ok"),
            ("identity.revoke", "ok"),
        ]
    );
}

/// A CA (`{name}-ca.pem`) and a client certificate with `subject` signed by it
/// (`{name}.pem` with its key appended, as reqwest's `Identity::from_pem` takes it).
fn client_cert(dir: &std::path::Path, name: &str, subject: &str) -> std::path::PathBuf {
    let p = |f: &str| dir.join(f).to_str().unwrap().to_owned();
    let ok = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    ok(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "30",
        "-subj",
        &format!("/CN={name} client CA"),
        "-keyout",
        &p(&format!("{name}-ca.key")),
        "-out",
        &p(&format!("{name}-ca.pem")),
    ]);
    ok(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-subj",
        subject,
        "-keyout",
        &p(&format!("{name}.key")),
        "-out",
        &p(&format!("{name}.csr")),
    ]);
    std::fs::write(dir.join(format!("{name}.ext")), "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n").unwrap();
    ok(&[
        "x509",
        "-req",
        "-in",
        &p(&format!("{name}.csr")),
        "-CA",
        &p(&format!("{name}-ca.pem")),
        "-CAkey",
        &p(&format!("{name}-ca.key")),
        "-CAcreateserial",
        "-days",
        "30",
        "-extfile",
        &p(&format!("{name}.ext")),
        "-out",
        &p(&format!("{name}.crt")),
    ]);
    // PKCS#8 key, as rustls reads it.
    ok(&[
        "pkcs8",
        "-topk8",
        "-nocrypt",
        "-in",
        &p(&format!("{name}.key")),
        "-out",
        &p(&format!("{name}.p8")),
    ]);
    let mut pem = std::fs::read(dir.join(format!("{name}.crt"))).unwrap();
    pem.extend(std::fs::read(dir.join(format!("{name}.p8"))).unwrap());
    let out = dir.join(format!("{name}.pem"));
    std::fs::write(&out, pem).unwrap();
    out
}

fn mtls_client(gw: &Gateway, identity_pem: &std::path::Path) -> reqwest::Client {
    let ca =
        reqwest::Certificate::from_pem(&std::fs::read(gw.dir.join("ca.pem")).unwrap()).unwrap();
    reqwest::Client::builder()
        .add_root_certificate(ca)
        .identity(reqwest::Identity::from_pem(&std::fs::read(identity_pem).unwrap()).unwrap())
        .use_rustls_tls()
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_map_to_identities() {
    let certs = tempfile::tempdir().unwrap();
    let good = client_cert(certs.path(), "billing", "/CN=billing-svc/O=Acme");
    let other_ca = client_cert(certs.path(), "rogue", "/CN=billing-svc/O=Acme");
    // More certificates of the `billing` CA, with other subjects.
    let issue = |name: &str, subject: &str| {
        let d = certs.path();
        let p = |f: &str| d.join(f).to_str().unwrap().to_owned();
        let run = |args: &[&str]| {
            assert!(std::process::Command::new("openssl")
                .args(args)
                .status()
                .unwrap()
                .success())
        };
        run(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            subject,
            "-keyout",
            &p(&format!("{name}.key")),
            "-out",
            &p(&format!("{name}.csr")),
        ]);
        run(&[
            "x509",
            "-req",
            "-in",
            &p(&format!("{name}.csr")),
            "-CA",
            &p("billing-ca.pem"),
            "-CAkey",
            &p("billing-ca.key"),
            "-CAcreateserial",
            "-days",
            "30",
            "-extfile",
            &p("billing.ext"),
            "-out",
            &p(&format!("{name}.crt")),
        ]);
        run(&[
            "pkcs8",
            "-topk8",
            "-nocrypt",
            "-in",
            &p(&format!("{name}.key")),
            "-out",
            &p(&format!("{name}.p8")),
        ]);
        let mut pem = std::fs::read(d.join(format!("{name}.crt"))).unwrap();
        pem.extend(std::fs::read(d.join(format!("{name}.p8"))).unwrap());
        std::fs::write(d.join(format!("{name}.pem")), pem).unwrap();
        d.join(format!("{name}.pem"))
    };
    let unmapped = issue("stranger", "/CN=stranger/O=Acme");
    // One CN whose text imitates the two attributes of the identity's subject.
    let imitation = issue("imitation", "/CN=billing-svc, O=Acme");
    let ca_file = certs.path().join("billing-ca.pem");
    let gw = Gateway::start_with(&[("KMSGW__TLS__CLIENT_CA_FILE", ca_file.to_str().unwrap())]);
    let p = gw.project("mtls").await;
    let key = gw
        .key(&p, "k", "encrypt-decrypt", "aes-256-gcm", None)
        .await;
    let (s, b) = gw
        .post("/api/v1/identities", json!({"name": "billing", "projectId": p, "role": "encrypt", "tlsSubject": "CN=billing-svc, O=Acme"}))
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["identity"]["tlsSubject"], "CN=billing-svc, O=Acme");
    let encrypt = |client: reqwest::Client| {
        let url = gw.url(&format!("/api/v1/kms/keys/{key}/encrypt"));
        async move {
            let r = client
                .post(url)
                .json(&json!({"plaintext": B64.encode(b"over mTLS")}))
                .send()
                .await?;
            let s = r.status().as_u16();
            let b: Value = r.json().await.unwrap_or_default();
            Ok::<_, reqwest::Error>((s, b))
        }
    };
    // The certificate alone authenticates, with the identity's permissions.
    let (s, b) = encrypt(mtls_client(&gw, &good)).await.unwrap();
    assert_eq!(s, 200, "{b}");
    let r = mtls_client(&gw, &good)
        .get(gw.url(&format!("/api/v1/kms/keys/{key}/public-key")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        400,
        "read is allowed; an AES key has no public key"
    );
    let r = mtls_client(&gw, &good)
        .post(gw.url(&format!("/api/v1/kms/keys/{key}/decrypt")))
        .json(&json!({"ciphertext": b["ciphertext"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403, "decrypt is not this identity's");
    // A subject no identity has: 401; a certificate of another CA: no TLS session at all.
    let (s, b) = encrypt(mtls_client(&gw, &unmapped)).await.unwrap();
    assert_eq!((s, b["code"].as_str()), (401, Some("unauthorized")));
    let (s, b) = encrypt(mtls_client(&gw, &imitation)).await.unwrap();
    assert_eq!(
        (s, b["code"].as_str()),
        (401, Some("unauthorized")),
        "a CN that looks like two attributes is not them"
    );
    assert!(
        encrypt(mtls_client(&gw, &other_ca)).await.is_err(),
        "a certificate of another CA is refused in the handshake"
    );
    // Without a certificate, bearer tokens still work.
    let (s, _) = gw.encrypt(&key, b"bearer", None).await;
    assert_eq!(s, 200);
    // The audit record names the identity the certificate mapped to.
    let (_, page) = gw.get("/api/v1/audit?limit=1000").await;
    assert!(page["records"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["identityName"] == "billing" && r["outcome"] == "ok"));
}

/// `kms-gateway identity access-key create|list|delete`: the secret printed once, never
/// listed, never stored in clear; the API sees the same keys; at most two at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_manages_access_keys_and_stores_secrets_only_wrapped() {
    let gw = Gateway::start();
    let p = gw.project("ak").await;
    let run = |args: &[&str]| {
        let r = gw.cli(args, &[]);
        (r.ok, r.stdout, r.stderr)
    };
    let (ok, _, err) = run(&[
        "identity",
        "create",
        "--name",
        "aws-app",
        "--project-id",
        &p,
        "--role",
        "encrypt",
    ]);
    assert!(ok, "{err}");
    let (_, list, _) = run(&["identity", "list"]);
    let id = list
        .lines()
        .find(|l| l.contains("\taws-app\t"))
        .and_then(|l| l.split('\t').next())
        .expect("listed")
        .to_owned();
    let (ok, out, err) = run(&["identity", "access-key", "create", &id]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    let [key_id, secret] = lines[..] else {
        panic!("expected the id and the secret: {out}")
    };
    assert!(key_id.starts_with("AKGW") && key_id.len() == 20, "{key_id}");
    assert_eq!(secret.len(), 44);
    let (ok, listed, _) = run(&["identity", "access-key", "list", &id]);
    assert!(
        ok && listed.starts_with(key_id) && !listed.contains(secret),
        "{listed}"
    );
    let (s, body) = gw
        .call(
            M::GET,
            &format!("/api/v1/identities/{id}/access-keys"),
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(body["accessKeys"][0]["accessKeyId"], key_id);

    // The store holds the secret only wrapped.
    let db = std::fs::read(gw.dir.join("data/kms-gateway.db")).unwrap_or_default();
    let wal = std::fs::read(gw.dir.join("data/kms-gateway.db-wal")).unwrap_or_default();
    for bytes in [&db, &wal] {
        assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()));
    }
    assert!(
        db.windows(key_id.len()).any(|w| w == key_id.as_bytes())
            || wal.windows(key_id.len()).any(|w| w == key_id.as_bytes()),
        "the id is stored"
    );

    let (ok, _, err) = run(&["identity", "access-key", "create", &id]);
    assert!(ok, "{err}");
    let (ok, _, err) = run(&["identity", "access-key", "create", &id]);
    assert!(!ok && err.contains("at most 2"), "{err}");
    let (ok, _, err) = run(&["identity", "access-key", "delete", &id, key_id]);
    assert!(ok, "{err}");
    let (ok, _, err) = run(&["identity", "access-key", "delete", &id, key_id]);
    assert!(!ok && err.contains("no such access key"), "{err}");
    let (_, listed, _) = run(&["identity", "access-key", "list", &id]);
    assert_eq!(listed.lines().count(), 1, "{listed}");
}

/// A page of another site, in a browser holding a client certificate for the gateway, may
/// post `text/plain` or a form without asking first: requests authenticated by the
/// certificate need a JSON body, on the native API (every body) and on Vault's (when
/// no token is presented); token-authenticated Vault clients that send no type still work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_site_bodies_cannot_ride_on_a_client_certificate() {
    let certs = tempfile::tempdir().unwrap();
    let cert = client_cert(certs.path(), "browser", "/CN=browser-user/O=Acme");
    let ca_file = certs.path().join("browser-ca.pem");
    let gw = Gateway::start_with(&[("KMSGW__TLS__CLIENT_CA_FILE", ca_file.to_str().unwrap())]);
    let p = gw.project("csrf").await;
    let key = gw
        .key(&p, "k", "encrypt-decrypt", "aes-256-gcm", None)
        .await;
    let (s, b) = gw
        .post("/api/v1/identities", json!({"name": "browser", "projectId": p, "role": "encrypt", "tlsSubject": "CN=browser-user, O=Acme"}))
        .await;
    assert_eq!(s, 200, "{b}");
    let token = b["token"].as_str().unwrap().to_owned();
    let client = mtls_client(&gw, &cert);
    let body = json!({"plaintext": B64.encode(b"cross-site")}).to_string();
    let send = |path: String, content_type: Option<&'static str>, token: Option<String>| {
        let mut req = client.post(gw.url(&path)).body(body.clone());
        if let Some(t) = content_type {
            req = req.header("content-type", t);
        }
        if let Some(t) = token {
            req = req.header("x-vault-token", t);
        }
        async move {
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let native = format!("/api/v1/kms/keys/{key}/encrypt");
    let vault = "/v1/transit/encrypt/k".to_owned();
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
    ] {
        for path in [&native, &vault] {
            let (s, b) = send(path.clone(), content_type, None).await;
            assert_eq!(s, 415, "{path} {content_type:?}: {b}");
            assert!(
                b.contains("unsupported_media_type") || b.contains("application/json"),
                "{b}"
            );
        }
    }
    for path in [&native, &vault] {
        let (s, b) = send(path.clone(), Some("application/json"), None).await;
        assert_eq!(s, 200, "{path}: {b}");
    }
    // Vault's Go client sends no Content-Type; with its token that is fine.
    let (s, b) = send(vault.clone(), None, Some(token)).await;
    assert_eq!(s, 200, "{b}");
}
