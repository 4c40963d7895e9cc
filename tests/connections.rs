//! Connections of hostile or broken clients against a real gateway over real TLS: every
//! stalled connection is closed after its timeout (configured short here), the bound per
//! client address holds, `/healthz` answers while twice `server.max_connections` hostile
//! connections are attempted, unfinished bodies do not lock an identity out, and the
//! requests hyper's parser refuses get JSON errors.
//!
//! Loopback is 127.0.0.0/8: connections are opened from chosen source addresses
//! (127.0.0.x) to play several clients.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::gateway::Gateway;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;

/// Long enough for any stalled connection to be closed by the timeouts these tests set.
const CLOSE_DEADLINE: Duration = Duration::from_secs(30);

fn address(gw: &Gateway) -> SocketAddr {
    gw.base.strip_prefix("https://").unwrap().parse().unwrap()
}

/// A TCP connection from `from` (a loopback address).
async fn tcp_from(to: SocketAddr, from: Ipv4Addr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(IpAddr::V4(from), 0)).unwrap();
    socket.connect(to).await.unwrap()
}

/// A TLS client that trusts the gateway's CA and offers `alpn`.
fn connector(gw: &Gateway, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(gw.dir.join("ca.pem")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

async fn tls(
    gw: &Gateway,
    tcp: TcpStream,
    alpn: &[&[u8]],
) -> std::io::Result<TlsStream<TcpStream>> {
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    connector(gw, alpn).connect(name, tcp).await
}

const H1: &[&[u8]] = &[b"http/1.1"];
const H2: &[&[u8]] = &[b"h2"];

/// Reads until the server closes the connection (EOF or reset) or `deadline` passes;
/// returns whether it closed, and what it sent.
async fn read_until_closed<S: AsyncRead + Unpin>(s: &mut S, deadline: Duration) -> (bool, Vec<u8>) {
    let until = Instant::now() + deadline;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = until.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Err(_) => return (false, seen),
            Ok(Ok(0)) | Ok(Err(_)) => return (true, seen),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

/// Whether the server still holds the connection: nothing to read within a moment, and
/// no EOF.
async fn still_open<S: AsyncRead + Unpin>(s: &mut S) -> bool {
    let mut buf = [0u8; 1];
    tokio::time::timeout(Duration::from_millis(300), s.read(&mut buf))
        .await
        .is_err()
}

/// Sends `bytes` one at a time every `pause` until the server closes the connection (or
/// the deadline); returns whether it did.
async fn trickle<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    bytes: &[u8],
    pause: Duration,
) -> bool {
    let until = Instant::now() + CLOSE_DEADLINE;
    let mut buf = [0u8; 1024];
    for b in bytes.iter().cycle() {
        if Instant::now() > until {
            return false;
        }
        if s.write_all(&[*b]).await.is_err() || s.flush().await.is_err() {
            return true;
        }
        match tokio::time::timeout(pause, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            _ => {}
        }
    }
    unreachable!("the cycle is endless")
}

/// The HTTP/2 client preface and an empty SETTINGS frame.
fn h2_preface() -> Vec<u8> {
    let mut v = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    v.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    v
}

/// A HEADERS frame (END_STREAM, END_HEADERS) of `GET /healthz` on stream 1, HPACK
/// without Huffman: :method GET, :scheme https, :path /healthz, :authority localhost.
fn h2_get_healthz() -> Vec<u8> {
    let mut block = vec![0x82, 0x87, 0x44, 8];
    block.extend_from_slice(b"/healthz");
    block.extend_from_slice(&[0x41, 9]);
    block.extend_from_slice(b"localhost");
    let mut frame = vec![0, 0, block.len() as u8, 1, 0x05, 0, 0, 0, 1];
    frame.extend_from_slice(&block);
    frame
}

/// The types of the HTTP/2 frames in `bytes` (as the server sent them).
fn h2_frame_types(bytes: &[u8]) -> Vec<u8> {
    let mut types = Vec::new();
    let mut at = 0;
    while at + 9 <= bytes.len() {
        let len = u32::from_be_bytes([0, bytes[at], bytes[at + 1], bytes[at + 2]]) as usize;
        types.push(bytes[at + 3]);
        at += 9 + len;
    }
    types
}

const H2_PING: u8 = 6;
const H2_GOAWAY: u8 = 7;

fn timeouts(handshake: &str, header: &str, body: &str, idle: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "KMSGW__SERVER__TLS_HANDSHAKE_TIMEOUT_SECONDS",
            handshake.into(),
        ),
        ("KMSGW__SERVER__HEADER_READ_TIMEOUT_SECONDS", header.into()),
        ("KMSGW__SERVER__REQUEST_BODY_TIMEOUT_SECONDS", body.into()),
        ("KMSGW__SERVER__IDLE_TIMEOUT_SECONDS", idle.into()),
    ]
}

fn start(env: &[(&'static str, String)]) -> Gateway {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Gateway::start_with(&env)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_stalled_connection_is_closed_after_its_timeout() {
    let mut env = timeouts("1", "1", "2", "2");
    env.push((
        "KMSGW__SERVER__HTTP2_KEEP_ALIVE_INTERVAL_SECONDS",
        "600".into(),
    ));
    let gw = start(&env);
    let to = address(&gw);
    let here = Ipv4Addr::LOCALHOST;

    // TCP only: no ClientHello.
    let mut raw = tcp_from(to, here).await;
    assert!(
        read_until_closed(&mut raw, CLOSE_DEADLINE).await.0,
        "no handshake"
    );

    // A finished handshake, then nothing (HTTP/1.1 and HTTP/2 offered by ALPN).
    for alpn in [H1, H2] {
        let mut s = tls(&gw, tcp_from(to, here).await, alpn).await.unwrap();
        let (closed, sent) = read_until_closed(&mut s, CLOSE_DEADLINE).await;
        assert!(closed && sent.is_empty(), "idle TLS ({alpn:?}): {sent:?}");
    }

    // Headers one byte at a time.
    let mut s = tls(&gw, tcp_from(to, here).await, H1).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n")
        .await
        .unwrap();
    assert!(
        trickle(&mut s, b"x-slow: yes\r\n", Duration::from_millis(200)).await,
        "slow headers"
    );

    // A whole head, then a body that stops short: 408 with a JSON error, then closed.
    let mut s = tls(&gw, tcp_from(to, here).await, H1).await.unwrap();
    let head = format!(
        "POST /api/v1/projects HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"name\":",
        gw.bootstrap_token()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let (closed, sent) = read_until_closed(&mut s, CLOSE_DEADLINE).await;
    let text = String::from_utf8_lossy(&sent);
    assert!(closed, "slow body: {text}");
    assert!(text.starts_with("HTTP/1.1 408 "), "{text}");
    let body: Value = serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["code"], "request_timeout", "{body}");

    // One request answered, then an idle keep-alive connection.
    let mut s = tls(&gw, tcp_from(to, here).await, H1).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    let (closed, sent) = read_until_closed(&mut s, CLOSE_DEADLINE).await;
    let text = String::from_utf8_lossy(&sent);
    assert!(
        closed && text.starts_with("HTTP/1.1 200 "),
        "keep-alive: {text}"
    );

    // HTTP/2: the preface and no request; then one request answered and nothing more.
    // Both are closed with a GOAWAY.
    let mut s = tls(&gw, tcp_from(to, here).await, H2).await.unwrap();
    s.write_all(&h2_preface()).await.unwrap();
    let (closed, sent) = read_until_closed(&mut s, CLOSE_DEADLINE).await;
    assert!(closed, "idle HTTP/2 without a request");
    assert!(h2_frame_types(&sent).contains(&H2_GOAWAY), "{sent:?}");
    let mut s = tls(&gw, tcp_from(to, here).await, H2).await.unwrap();
    s.write_all(&[h2_preface(), h2_get_healthz()].concat())
        .await
        .unwrap();
    let (closed, sent) = read_until_closed(&mut s, CLOSE_DEADLINE).await;
    let types = h2_frame_types(&sent);
    assert!(closed, "idle HTTP/2 after a request");
    assert!(
        types.contains(&1) && types.contains(&0),
        "HEADERS and DATA answered: {types:?}"
    );
    assert!(types.contains(&H2_GOAWAY), "{types:?}");

    // The gateway still serves.
    let (s, _) = gw.get("/healthz").await;
    assert_eq!(s, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_connections_that_do_not_answer_pings_are_closed() {
    let mut env = timeouts("5", "5", "30", "600");
    env.push((
        "KMSGW__SERVER__HTTP2_KEEP_ALIVE_INTERVAL_SECONDS",
        "1".into(),
    ));
    env.push((
        "KMSGW__SERVER__HTTP2_KEEP_ALIVE_TIMEOUT_SECONDS",
        "1".into(),
    ));
    let gw = start(&env);
    let mut s = tls(&gw, tcp_from(address(&gw), Ipv4Addr::LOCALHOST).await, H2)
        .await
        .unwrap();
    // A request, so that the idle timeout (600 s) and not the first-request one applies;
    // the pings that follow are never answered.
    s.write_all(&[h2_preface(), h2_get_healthz()].concat())
        .await
        .unwrap();
    let (closed, sent) = read_until_closed(&mut s, CLOSE_DEADLINE).await;
    let types = h2_frame_types(&sent);
    assert!(closed, "{types:?}");
    assert!(types.contains(&H2_PING), "the server pinged: {types:?}");
}

/// One hostile connection of the given kind from `from`, held until the server closes it;
/// `Err` when it was refused before TLS was up.
async fn hostile(gw: &Gateway, from: Ipv4Addr, kind: usize) -> Result<TlsOrTcp, ()> {
    let tcp = tcp_from(address(gw), from).await;
    if kind % 4 == 0 {
        return Ok(TlsOrTcp::Tcp(tcp));
    }
    let mut s = match tokio::time::timeout(CLOSE_DEADLINE, tls(gw, tcp, H1)).await {
        Ok(Ok(s)) => s,
        _ => return Err(()),
    };
    let sent = match kind % 4 {
        1 => Ok(()),
        2 => {
            s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-slow: ")
                .await
        }
        _ => {
            let head = format!(
                "POST /api/v1/projects HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-length: 1000\r\n\r\n{{",
                gw.bootstrap_token()
            );
            s.write_all(head.as_bytes()).await
        }
    };
    sent.map_err(|_| ())?;
    Ok(TlsOrTcp::Tls(Box::new(s)))
}

enum TlsOrTcp {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl TlsOrTcp {
    async fn still_open(&mut self) -> bool {
        match self {
            TlsOrTcp::Tcp(s) => still_open(s).await,
            TlsOrTcp::Tls(s) => still_open(s.as_mut()).await,
        }
    }

    async fn closed_by_server(&mut self) -> bool {
        match self {
            TlsOrTcp::Tcp(s) => read_until_closed(s, CLOSE_DEADLINE).await.0,
            TlsOrTcp::Tls(s) => read_until_closed(s.as_mut(), CLOSE_DEADLINE).await.0,
        }
    }
}

/// A reqwest client of the gateway whose connections come from `from`.
fn client_from(gw: &Gateway, from: Ipv4Addr) -> reqwest::Client {
    let cert =
        reqwest::Certificate::from_pem(&std::fs::read(gw.dir.join("ca.pem")).unwrap()).unwrap();
    reqwest::Client::builder()
        .add_root_certificate(cert)
        .use_rustls_tls()
        .local_address(IpAddr::V4(from))
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_answers_while_one_address_holds_twice_max_connections() {
    // Timeouts far longer than the test: only the per-address bound protects here.
    let mut env = timeouts("120", "120", "120", "120");
    env.push(("KMSGW__SERVER__MAX_CONNECTIONS", "8".into()));
    env.push(("KMSGW__SERVER__MAX_CONNECTIONS_PER_ADDRESS", "4".into()));
    let gw = start(&env);
    let attacker = Ipv4Addr::new(127, 0, 0, 1);
    let mut held = Vec::new();
    let mut refused = 0;
    for kind in 0..16 {
        match hostile(&gw, attacker, kind).await {
            Ok(mut c) => {
                if c.still_open().await {
                    held.push(c);
                } else {
                    refused += 1;
                }
            }
            Err(()) => refused += 1,
        }
    }
    assert_eq!((held.len(), refused), (4, 12), "the per-address bound");
    // Another client is served at once, while the four are still held.
    let normal = client_from(&gw, Ipv4Addr::new(127, 0, 0, 2));
    for _ in 0..5 {
        let r = normal.get(gw.url("/healthz")).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    for c in &mut held {
        assert!(
            c.still_open().await,
            "the attacker's connections are still open"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_answers_while_many_addresses_attempt_twice_max_connections() {
    // Sixteen hostile connections from eight addresses (two each, within the bound) fill
    // the eight connections the gateway serves, and keep trying to hold them: the
    // timeouts free them, and a normal client gets through.
    let mut env = timeouts("1", "1", "2", "2");
    env.push(("KMSGW__SERVER__MAX_CONNECTIONS", "8".into()));
    env.push(("KMSGW__SERVER__MAX_CONNECTIONS_PER_ADDRESS", "2".into()));
    let gw = Arc::new(start(&env));
    let mut attackers = Vec::new();
    for i in 0..16u8 {
        let gw = gw.clone();
        attackers.push(tokio::spawn(async move {
            let from = Ipv4Addr::new(127, 0, 1, 10 + i / 2);
            match hostile(&gw, from, usize::from(i)).await {
                // Holds on (slow headers keep trickling) until the server closes it.
                Ok(TlsOrTcp::Tls(mut s)) if i % 4 == 2 => {
                    trickle(s.as_mut(), b"y", Duration::from_millis(200)).await
                }
                Ok(mut c) => c.closed_by_server().await,
                // Refused or cut during the handshake: closed by the server too.
                Err(()) => true,
            }
        }));
    }
    // The attack is under way before the normal client asks.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let normal = client_from(&gw, Ipv4Addr::new(127, 0, 0, 2));
    let r = normal.get(gw.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    for a in attackers {
        assert!(
            a.await.unwrap(),
            "every hostile connection was closed by the gateway"
        );
    }
    let r = normal.get(gw.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_bodies_on_one_connection_do_not_lock_the_identity_out() {
    let gw = start(&timeouts("10", "10", "2", "60"));
    let p = gw.project("bodies").await;
    let key = gw
        .key(&p, "k", "encrypt-decrypt", "aes-256-gcm", None)
        .await;
    let (s, b) = gw
        .post(
            "/api/v1/identities",
            json!({"name": "svc", "projectId": p, "permissions": ["encrypt"]}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let token = b["token"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/kms/keys/{key}/encrypt");

    // 64 requests of that identity on one HTTP/2 connection, each body left unfinished.
    let stream = tls(&gw, tcp_from(address(&gw), Ipv4Addr::LOCALHOST).await, H2)
        .await
        .unwrap();
    let (mut h2, connection) = h2::client::handshake(stream).await.unwrap();
    tokio::spawn(connection);
    let mut pending = Vec::new();
    let mut bodies = Vec::new();
    for _ in 0..64 {
        h2 = h2.ready().await.unwrap();
        let req = hyper::Request::post(format!("https://127.0.0.1{path}"))
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .header("content-length", "1000")
            .body(())
            .unwrap();
        let (response, mut body) = h2.send_request(req, false).unwrap();
        body.send_data(hyper::body::Bytes::from_static(b"{\"plaintext\":"), false)
            .unwrap();
        pending.push(response);
        bodies.push(body);
    }
    // While they wait for their bodies, they hold no place under the identity's bound
    // (admission comes with the operation, after the body): another request is served.
    let encrypt = || {
        gw.call_as(
            Some(&token),
            reqwest::Method::POST,
            &path,
            Some(json!({"plaintext": "aGk="})),
        )
    };
    let (s, b) = encrypt().await;
    assert_eq!(s, 200, "{b}");
    // Each is answered 408 once its body is overdue, and the identity still works.
    for response in pending {
        let r = tokio::time::timeout(CLOSE_DEADLINE, response)
            .await
            .expect("an unfinished body is answered")
            .unwrap();
        assert_eq!(r.status(), 408);
    }
    let (s, b) = encrypt().await;
    assert_eq!(s, 200, "{b}");
    drop(bodies);
}

/// Sends `request` on a new HTTP/1.1 connection and returns the status, content type and
/// JSON body of the answer.
async fn raw_answer(gw: &Gateway, request: &[u8]) -> (u16, String, Value) {
    let mut s = tls(gw, tcp_from(address(gw), Ipv4Addr::LOCALHOST).await, H1)
        .await
        .unwrap();
    s.write_all(request).await.unwrap();
    let (_, sent) = read_until_closed(&mut s, CLOSE_DEADLINE).await;
    let text = String::from_utf8_lossy(&sent).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head[9..12].parse().unwrap();
    let content_type = head
        .lines()
        .find_map(|l| {
            let l = l.to_ascii_lowercase();
            l.strip_prefix("content-type: ").map(str::to_owned)
        })
        .unwrap_or_default();
    (
        status,
        content_type,
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_the_parser_refuses_get_json_errors() {
    let gw = Gateway::start();
    let many_headers: String = (0..200).map(|i| format!("x-h{i}: v\r\n")).collect();
    for (request, status, code) in [
        (b"GET /api/v1/a\0b HTTP/1.1\r\nhost: x\r\n\r\n".to_vec(), 400, "malformed_request"),
        (
            b"POST /api/v1/projects HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello!".to_vec(),
            400,
            "malformed_request",
        ),
        (
            format!("GET /healthz HTTP/1.1\r\nhost: x\r\n{many_headers}\r\n").into_bytes(),
            431,
            "headers_too_large",
        ),
    ] {
        let (s, content_type, body) = raw_answer(&gw, &request).await;
        let shown = String::from_utf8_lossy(&request[..40.min(request.len())]).into_owned();
        assert_eq!(s, status, "{shown}: {body}");
        assert_eq!(content_type, "application/problem+json", "{shown}");
        assert_eq!(body["code"], code, "{shown}: {body}");
        assert_eq!(body["status"], status, "{body}");
        assert_eq!(body["statusCode"], status, "{body}");
        assert!(body["requestId"].as_str().is_some_and(|r| r.starts_with("req-")), "{body}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    }
    // The gateway's own empty-bodied answers are left alone, and it still serves.
    let (s, _) = gw.get("/healthz").await;
    assert_eq!(s, 200);
}

/// HTTP/2: a header list over the connection's limit (hyper's 16 KiB) is answered inside the
/// h2 library before any request reaches the gateway: `:status 431` ending the stream, with
/// no body and no content type (docs/API-ERRORS.md says so); the connection keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_header_lists_too_large_get_a_bodiless_431_and_the_connection_stays() {
    let gw = Gateway::start();
    let stream = tls(&gw, tcp_from(address(&gw), Ipv4Addr::LOCALHOST).await, H2)
        .await
        .unwrap();
    let (h2, connection) = h2::client::handshake(stream).await.unwrap();
    tokio::spawn(connection);
    let mut h2 = h2.ready().await.unwrap();
    let req = hyper::Request::get("https://127.0.0.1/healthz")
        .header("x-big", "a".repeat(20_000))
        .body(())
        .unwrap();
    let (response, _) = h2.send_request(req, true).unwrap();
    let r = tokio::time::timeout(CLOSE_DEADLINE, response)
        .await
        .expect("answered")
        .unwrap();
    assert_eq!(r.status(), 431);
    assert!(r.headers().get("content-type").is_none(), "{r:?}");
    let mut body = r.into_body();
    assert!(body.is_end_stream(), "the 431 carries no body");
    assert!(body.data().await.is_none());
    // The same connection still serves.
    let mut h2 = h2.ready().await.unwrap();
    let req = hyper::Request::get("https://127.0.0.1/healthz")
        .body(())
        .unwrap();
    let (response, _) = h2.send_request(req, true).unwrap();
    let r = tokio::time::timeout(CLOSE_DEADLINE, response)
        .await
        .expect("answered")
        .unwrap();
    assert_eq!(r.status(), 200);
}
