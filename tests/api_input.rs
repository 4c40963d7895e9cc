//! What the native API accepts as input, beyond the fields of each route: bodies are JSON
//! objects sent as `application/json`, base64 is exact, query numbers fit, path segments
//! are percent-decoded only, and client-certificate subjects are bounded and unique
//! (issue 12, item 6).

mod common;

use common::gateway::Gateway;
use reqwest::Method as M;
use serde_json::{json, Value};

/// Sends `body` as it is, with `content_type` (`None`: no Content-Type header).
async fn send_raw(
    gw: &Gateway,
    method: M,
    path: &str,
    content_type: Option<&str>,
    body: &'static str,
) -> (u16, Value) {
    let mut req = gw
        .client
        .request(method, gw.url(path))
        .bearer_auth(gw.bootstrap_token())
        .body(body);
    if let Some(t) = content_type {
        req = req.header("content-type", t);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn project_names(gw: &Gateway) -> Vec<String> {
    let (s, b) = gw.get("/api/v1/projects").await;
    assert_eq!(s, 200, "{b}");
    b["projects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_that_are_not_json_objects_are_refused_and_change_nothing() {
    let gw = Gateway::start();
    let before = project_names(&gw).await;
    for (body, code) in [
        (r#"["x"]"#, "invalid_request"),
        (r#" [{"name": "x"}]"#, "invalid_request"),
        (r#""x""#, "invalid_request"),
        ("1", "invalid_request"),
        ("null", "invalid_request"),
        ("true", "invalid_request"),
        ("[", "malformed_json"),
        ("x", "malformed_json"),
        ("  ", "malformed_json"),
    ] {
        let (s, e) = send_raw(
            &gw,
            M::POST,
            "/api/v1/projects",
            Some("application/json"),
            body,
        )
        .await;
        assert_eq!((s, e["code"].as_str()), (400, Some(code)), "{body}: {e}");
    }
    assert_eq!(project_names(&gw).await, before);
    // An object still makes one.
    let (s, e) = send_raw(
        &gw,
        M::POST,
        "/api/v1/projects",
        Some("application/json"),
        r#"{"name": "x"}"#,
    )
    .await;
    assert_eq!(s, 200, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_must_be_sent_as_application_json() {
    let gw = Gateway::start();
    let project = gw.project("media").await;
    let key = gw
        .key(&project, "k", "encrypt-decrypt", "aes-256-gcm", None)
        .await;
    let before = project_names(&gw).await;
    // What a browser may send to another site without a preflight, and other types.
    for content_type in [
        None,
        Some("text/plain"),
        Some("text/plain; charset=utf-8"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("application/jsonx"),
        Some("application/x-amz-json-1.1"),
        Some(""),
    ] {
        let (s, e) = send_raw(
            &gw,
            M::POST,
            "/api/v1/projects",
            content_type,
            r#"{"name": "cross-site"}"#,
        )
        .await;
        assert_eq!(
            (s, e["code"].as_str()),
            (415, Some("unsupported_media_type")),
            "{content_type:?}: {e}"
        );
        assert_eq!(e["status"], 415, "{e}");
        let (s, e) = send_raw(
            &gw,
            M::PATCH,
            &format!("/api/v1/kms/keys/{key}"),
            content_type,
            r#"{"isDisabled": true}"#,
        )
        .await;
        assert_eq!(
            (s, e["code"].as_str()),
            (415, Some("unsupported_media_type")),
            "{content_type:?}: {e}"
        );
    }
    assert_eq!(project_names(&gw).await, before);
    let (s, k) = gw.get(&format!("/api/v1/kms/keys/{key}")).await;
    assert_eq!((s, k["key"]["isDisabled"].as_bool()), (200, Some(false)));
    // The refusals are audited like any other.
    let (s, page) = gw.get("/api/v1/audit?limit=1000").await;
    assert_eq!(s, 200, "{page}");
    let refused = page["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r.to_string().contains("unsupported_media_type"))
        .count();
    assert_eq!(refused, 16, "{page}");

    // application/json, with parameters and in any case, is taken.
    for (i, content_type) in [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON;charset=UTF-8",
    ]
    .into_iter()
    .enumerate()
    {
        let body: &'static str = [
            r#"{"name": "json-0"}"#,
            r#"{"name": "json-1"}"#,
            r#"{"name": "json-2"}"#,
        ][i];
        let (s, e) = send_raw(&gw, M::POST, "/api/v1/projects", Some(content_type), body).await;
        assert_eq!(s, 200, "{content_type}: {e}");
    }
    // A POST without a body needs no type.
    let (s, e) = send_raw(
        &gw,
        M::POST,
        &format!("/api/v1/kms/keys/{key}/rotate"),
        None,
        "",
    )
    .await;
    assert_eq!(s, 200, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn base64_with_anything_around_it_is_refused() {
    let gw = Gateway::start();
    let project = gw.project("b64").await;
    let key = gw
        .key(&project, "k", "encrypt-decrypt", "aes-256-gcm", None)
        .await;
    let (s, ok) = gw.encrypt(&key, b"hi", None).await;
    assert_eq!(s, 200, "{ok}");
    let ciphertext = ok["ciphertext"].as_str().unwrap().to_owned();
    let encrypt = format!("/api/v1/kms/keys/{key}/encrypt");
    let decrypt = format!("/api/v1/kms/keys/{key}/decrypt");
    for plaintext in [" aGk=", "aGk= ", "aGk=\n", "\taGk=", "aG k=", "aGk=\r\n"] {
        let (s, e) = gw
            .call(M::POST, &encrypt, Some(json!({ "plaintext": plaintext })))
            .await;
        assert_eq!(
            (s, e["code"].as_str()),
            (400, Some("invalid_base64")),
            "{plaintext:?}: {e}"
        );
    }
    for wrapped in [format!("{ciphertext}\n"), format!(" {ciphertext}")] {
        let (s, e) = gw
            .call(M::POST, &decrypt, Some(json!({ "ciphertext": wrapped })))
            .await;
        assert_eq!(
            (s, e["code"].as_str()),
            (400, Some("invalid_base64")),
            "{wrapped:?}: {e}"
        );
    }
    let (s, e) = gw.decrypt(&key, &ciphertext, None).await;
    assert_eq!((s, e["plaintext"].as_str()), (200, Some("aGk=")), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_offsets_beyond_the_store_are_bad_requests() {
    let gw = Gateway::start();
    for after in ["9223372036854775808", "18446744073709551615"] {
        let (s, e) = gw.get(&format!("/api/v1/audit?after={after}")).await;
        assert_eq!(
            (s, e["code"].as_str()),
            (400, Some("invalid_request")),
            "{after}: {e}"
        );
        assert!(e["message"].as_str().unwrap().contains("after"), "{e}");
    }
    for after in ["18446744073709551616", "-1", "x"] {
        let (s, e) = gw.get(&format!("/api/v1/audit?after={after}")).await;
        assert_eq!(
            (s, e["code"].as_str()),
            (400, Some("invalid_request")),
            "{after}: {e}"
        );
    }
    let (s, page) = gw.get("/api/v1/audit?after=9223372036854775807").await;
    assert_eq!(s, 200, "{page}");
    assert_eq!(page["records"], json!([]), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_names_in_paths_are_percent_decoded_and_a_plus_is_a_plus() {
    let gw = Gateway::start();
    let project = gw.project("names").await;
    let key = gw
        .key(&project, "a-b", "encrypt-decrypt", "aes-256-gcm", None)
        .await;
    // A name the API would not take (a store written by another tool, say): a space.
    assert_eq!(
        gw.sql(&format!("UPDATE keys SET name = 'a b' WHERE id = '{key}'")),
        1
    );
    let gw = &gw;
    let by_name = |segment: &'static str| {
        let path = format!("/api/v1/kms/keys/key-name/{segment}?projectId={project}");
        async move { gw.get(&path).await }
    };
    let (s, e) = by_name("a+b").await;
    assert_eq!((s, e["code"].as_str()), (404, Some("key_not_found")), "{e}");
    let (s, e) = by_name("a%20b").await;
    assert_eq!(
        (s, e["key"]["id"].as_str()),
        (200, Some(key.as_str())),
        "{e}"
    );
    // And a `+` spelt as `%2B` is a plus too.
    let (s, e) = by_name("a%2Bb").await;
    assert_eq!((s, e["code"].as_str()), (404, Some("key_not_found")), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_subjects_are_bounded_and_each_belongs_to_one_identity() {
    let gw = Gateway::start();
    let project = gw.project("mtls").await;
    let create = |name: &str, subject: &str| {
        gw.post(
            "/api/v1/identities",
            json!({"name": name, "projectId": project, "permissions": ["encrypt"], "tlsSubject": subject}),
        )
    };
    let (s, b) = create("first", "CN=billing, O=Acme").await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["identity"]["tlsSubject"], "CN=billing, O=Acme");
    for (name, subject) in [
        ("second", "CN=billing, O=Acme"),
        ("third", "  CN=billing, O=Acme "),
    ] {
        let (s, e) = create(name, subject).await;
        assert_eq!(
            (s, e["code"].as_str()),
            (409, Some("tls_subject_taken")),
            "{e}"
        );
    }
    let longest = format!("CN={}", "x".repeat(1021));
    let too_long = format!("CN={}", "x".repeat(1022));
    let (s, e) = create("longest", &longest).await;
    assert_eq!(s, 200, "{e}");
    for (name, subject) in [
        ("too-long", too_long.as_str()),
        ("newline", "CN=a\nO=b"),
        ("nul", "CN=a\u{0}"),
        ("escape", "CN=\u{1b}[31mred"),
        ("delete", "CN=a\u{7f}"),
        ("c1", "CN=a\u{85}b"),
    ] {
        let (s, e) = create(name, subject).await;
        assert_eq!(
            (s, e["code"].as_str()),
            (400, Some("invalid_tls_subject")),
            "{name}: {e}"
        );
    }
    let (s, list) = gw.get("/api/v1/identities").await;
    assert_eq!(s, 200);
    let names: Vec<&str> = list["identities"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["name"].as_str())
        .collect();
    assert!(
        names.contains(&"first") && names.contains(&"longest"),
        "{names:?}"
    );
    for refused in [
        "second", "third", "too-long", "newline", "nul", "escape", "delete", "c1",
    ] {
        assert!(!names.contains(&refused), "{refused} was made: {names:?}");
    }
}
