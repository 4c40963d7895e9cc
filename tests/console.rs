//! The web console under `/ui/` on a real gateway over TLS: its assets, content types,
//! security headers on every answer (assets, 404, 405, the redirect), and the read-only
//! routes added for it (`/api/v1/projects`, `/api/v1/admin/system`, `/api/v1/audit/verify`).

mod common;

use common::gateway::Gateway;
use reqwest::{redirect, Method, StatusCode};
use serde_json::Value;

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'";

/// A client that trusts the gateway's CA and does not follow redirects.
fn client(gw: &Gateway) -> reqwest::Client {
    let ca = std::fs::read(gw.dir.join("ca.pem")).expect("ca.pem");
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("CA"))
        .use_rustls_tls()
        .redirect(redirect::Policy::none())
        .build()
        .expect("client")
}

fn assert_secure(resp: &reqwest::Response, what: &str) {
    let h = resp.headers();
    let header = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
    assert_eq!(header("content-security-policy"), CSP, "{what}");
    assert_eq!(header("x-content-type-options"), "nosniff", "{what}");
    assert_eq!(header("referrer-policy"), "no-referrer", "{what}");
    assert_eq!(header("x-frame-options"), "DENY", "{what}");
    assert_eq!(header("cache-control"), "no-store", "{what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_is_served_with_strict_headers() {
    let gw = Gateway::start();
    let c = client(&gw);
    for (path, content_type, needle) in [
        (
            "/ui/",
            "text/html; charset=utf-8",
            "<script src=\"/ui/app.js\" defer></script>",
        ),
        (
            "/ui/app.js",
            "text/javascript; charset=utf-8",
            "sessionStorage",
        ),
        ("/ui/app.css", "text/css; charset=utf-8", "font"),
        ("/ui/favicon.svg", "image/svg+xml", "<svg"),
    ] {
        let resp = c.get(gw.url(path)).send().await.expect("GET");
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        assert_secure(&resp, path);
        assert_eq!(resp.headers()["content-type"], content_type, "{path}");
        let body = resp.text().await.expect("body");
        assert!(body.contains(needle), "{path} lacks {needle:?}");
        // HEAD: the same headers, no body.
        let head = c.head(gw.url(path)).send().await.expect("HEAD");
        assert_eq!(head.status(), StatusCode::OK, "HEAD {path}");
        assert_secure(&head, path);
        assert_eq!(
            head.headers()["content-length"],
            body.len().to_string().as_str()
        );
        assert!(head.bytes().await.expect("body").is_empty());
    }

    let resp = c.get(gw.url("/ui")).send().await.expect("GET /ui");
    assert_eq!(resp.status(), StatusCode::MOVED_PERMANENTLY);
    assert_eq!(resp.headers()["location"], "/ui/");
    assert_secure(&resp, "redirect");

    for path in ["/ui/nothing.js", "/ui/app.js/x", "/ui//app.js"] {
        let resp = c.get(gw.url(path)).send().await.expect("GET");
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{path}");
        assert_secure(&resp, path);
        assert!(resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"));
    }

    for method in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
        let resp = c
            .request(method.clone(), gw.url("/ui/"))
            .body("x")
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(resp.headers()["allow"], "GET, HEAD");
        assert_secure(&resp, method.as_str());
    }

    // The console is not the API: /api/ keeps its own answers, and /uix is not the console.
    let resp = c.get(gw.url("/uix")).send().await.expect("GET /uix");
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert!(resp.headers().get("content-security-policy").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_routes_of_the_console_show_the_system_and_verify_the_audit_chain() {
    let mut gw = Gateway::start();
    let fragment = gw.gen_fragment("console", "hsm_wrapped", Some("cf-console"));
    gw.restart();
    let (s, sys) = gw.get("/api/v1/admin/system").await;
    assert_eq!(s, 200, "{sys}");
    let hsm = &sys["hsm"];
    assert!(
        hsm["tokenLabel"].as_str().is_some_and(|l| !l.is_empty()),
        "{sys}"
    );
    assert_eq!(hsm["healthy"], Value::Bool(true), "{sys}");
    assert_eq!(sys["store"]["kind"], "sqlite");
    assert_eq!(sys["store"]["healthy"], Value::Bool(true));
    let fragments = sys["fragments"].as_array().expect("fragments");
    assert_eq!(fragments.len(), 1, "{sys}");
    assert_eq!(fragments[0]["id"], fragment.as_str());
    assert_eq!(fragments[0]["mode"], "hsm_wrapped");
    for f in fragments {
        assert!(
            f["id"].as_str().is_some_and(|i| i.starts_with("cf-")),
            "{f}"
        );
        assert_eq!(f["loaded"], Value::Bool(true), "{f}");
        // Never a seed or a value.
        let keys: Vec<&str> = f.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 4, "{f}");
        assert!(!keys.contains(&"value"));
    }

    let (s, v) = gw.get("/api/v1/audit/verify").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["valid"], Value::Bool(true), "{v}");
    assert!(v["records"].as_u64().unwrap() >= 1, "{v}");
    assert!(v["message"].as_str().unwrap().contains("intact"), "{v}");

    // A project identity may not see either.
    let project = gw.project("console").await;
    let (s, ident) = gw
        .post(
            "/api/v1/identities",
            serde_json::json!({"name": "reader", "projectId": project, "permissions": ["read"]}),
        )
        .await;
    assert_eq!(s, 200, "{ident}");
    let token = ident["token"].as_str().unwrap();
    // Projects: every one for the administrator, its own for a project identity.
    let other = gw.project("other").await;
    let (s, all) = gw.get("/api/v1/projects").await;
    assert_eq!(s, 200, "{all}");
    let names: Vec<&str> = all["projects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["console", "other"], "{all}");
    let (s, own) = gw
        .call_as(Some(token), Method::GET, "/api/v1/projects", None)
        .await;
    assert_eq!(s, 200, "{own}");
    assert_eq!(own["projects"].as_array().unwrap().len(), 1, "{own}");
    assert_eq!(own["projects"][0]["id"], project.as_str());
    assert_ne!(own["projects"][0]["id"], other.as_str());
    for path in ["/api/v1/admin/system", "/api/v1/audit/verify"] {
        let (s, body) = gw.call_as(Some(token), Method::GET, path, None).await;
        assert_eq!(s, 403, "{path}: {body}");
    }

    // Tampering with a record is found.
    assert_eq!(
        gw.sql("UPDATE audit SET record = replace(record, 'project.create', 'project.crate') WHERE seq = (SELECT min(seq) FROM audit WHERE record LIKE '%project.create%')"),
        1
    );
    let (s, v) = gw.get("/api/v1/audit/verify").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["valid"], Value::Bool(false), "{v}");
    assert!(
        v["findings"][0].as_str().unwrap().contains("altered"),
        "{v}"
    );
}
