//! HTTP on a TLS connection (HTTP/1.1 and HTTP/2), with requests routed to the front-end
//! that claims them (the native API by its `/api/` prefix, later the AWS API by its
//! `X-Amz-Target` header, Vault's by `/v1/`, the console by `/ui/`), and the operational
//! endpoints `/healthz`, `/readyz` and `/metrics` that belong to none of them.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{
    HeaderValue, AUTHORIZATION, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER,
};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use serde_json::{json, Value};

use super::connection::{Activity, ErrorBodies};
use super::listener::{BoxFuture, Connection, Protocol};
use super::metrics::Metrics;
use crate::core::login::Credentials;
use crate::core::{CoreError, Gateway};

pub type HttpResponse = Response<Full<Bytes>>;

/// Why a front-end's handler did not answer with success.
pub(crate) enum Failure {
    /// From a core operation, which has audited it.
    Core(CoreError),
    /// Refused by the adapter before any operation ran (bad body, bad id): the adapter
    /// audits it through `Gateway::refuse`.
    Input(CoreError),
}

impl From<CoreError> for Failure {
    fn from(e: CoreError) -> Self {
        Failure::Core(e)
    }
}

/// How much of a request body is read, and until when.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    pub max_bytes: usize,
    /// The whole body must have arrived by then (`server.request_body_timeout_seconds`
    /// after its head).
    pub deadline: tokio::time::Instant,
    /// That timeout, for the message.
    pub timeout: Duration,
}

/// What a front-end knows of the request besides the request itself.
pub struct RequestInfo {
    pub peer: SocketAddr,
    pub tls_subject: Option<Arc<str>>,
    pub request_id: String,
    pub body: BodyLimits,
}

impl RequestInfo {
    /// The caller of this request through `frontend`, before it is authenticated.
    pub fn caller(&self, frontend: crate::core::Frontend) -> crate::core::Caller {
        crate::core::Caller::anonymous(
            frontend,
            self.request_id.clone(),
            Some(self.peer.to_string()),
        )
    }
}

/// The credentials of a request: a token in `token_header` (a front-end's own header,
/// such as Vault's `X-Vault-Token`), else a bearer token (the scheme is case-insensitive,
/// RFC 9110 §11.1), else the verified client certificate's subject.
pub fn credentials<'a>(
    req: &'a Request<Incoming>,
    info: &'a RequestInfo,
    token_header: Option<&str>,
) -> Credentials<'a> {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let own = token_header
        .and_then(header)
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let bearer = header(AUTHORIZATION.as_str())
        .filter(|h| h.len() > 7 && h.is_char_boundary(7) && h[..7].eq_ignore_ascii_case("bearer "))
        .map(|h| h[7..].trim())
        .filter(|t| !t.is_empty());
    match (own.or(bearer), info.tls_subject.as_deref()) {
        (Some(token), _) => Credentials::Bearer(token),
        (None, Some(subject)) => Credentials::TlsSubject(subject),
        (None, None) => Credentials::None,
    }
}

/// A protocol spoken over HTTP on the HTTPS port.
pub trait HttpFrontend: Send + Sync + 'static {
    /// Its name in metrics (`native`, `aws`, ...).
    fn name(&self) -> &'static str;
    /// Whether this request is for this front-end.
    fn claims(&self, req: &Request<Incoming>) -> bool;
    /// The response, and the name of the operation for metrics.
    fn handle(
        &self,
        req: Request<Incoming>,
        info: RequestInfo,
    ) -> BoxFuture<'_, (HttpResponse, &'static str)>;
}

/// The bounds of HTTP on one connection (`server.` settings).
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    pub max_body_bytes: usize,
    /// For a request's head: the first after the handshake and, in HTTP/1.1, each next
    /// one (hyper's timer starts when it waits for a head, idle keep-alive included).
    pub header_read_timeout: Duration,
    pub request_body_timeout: Duration,
    /// A connection with no request in flight for this long (after its first) is closed.
    pub idle_timeout: Duration,
    pub http2_keep_alive_interval: Duration,
    pub http2_keep_alive_timeout: Duration,
}

/// How long a connection being closed for a timeout may take to say goodbye (an
/// HTTP/2 GOAWAY, a TLS close_notify) before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// HTTP with its front-ends.
pub struct HttpProtocol {
    gateway: Arc<Gateway>,
    frontends: Vec<Arc<dyn HttpFrontend>>,
    metrics: Metrics,
    limits: HttpLimits,
    request_ids: AtomicU64,
}

impl HttpProtocol {
    pub fn new(
        gateway: Arc<Gateway>,
        frontends: Vec<Arc<dyn HttpFrontend>>,
        limits: HttpLimits,
    ) -> Self {
        Self {
            gateway,
            frontends,
            metrics: Metrics::default(),
            limits,
            request_ids: AtomicU64::new(1),
        }
    }

    fn next_request_id(&self) -> String {
        format!(
            "req-{:08x}-{}",
            std::process::id(),
            self.request_ids.fetch_add(1, Ordering::Relaxed)
        )
    }

    async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
        tls_subject: Option<Arc<str>>,
    ) -> HttpResponse {
        let started = Instant::now();
        let body = BodyLimits {
            max_bytes: self.limits.max_body_bytes,
            deadline: tokio::time::Instant::now() + self.limits.request_body_timeout,
            timeout: self.limits.request_body_timeout,
        };
        let request_id = self.next_request_id();
        let version = req.version();
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let (response, frontend, operation) = match (&method, path.as_str()) {
            (&Method::GET, "/healthz") => (
                json_response(StatusCode::OK, &json!({"status": "ok"})),
                "ops",
                "healthz",
            ),
            (&Method::GET, "/readyz") => (readyz(&self.gateway).await, "ops", "readyz"),
            (&Method::GET, "/metrics") => (self.metrics_page(), "ops", "metrics"),
            _ => match self.frontends.iter().find(|f| f.claims(&req)) {
                Some(f) => {
                    let info = RequestInfo {
                        peer,
                        tls_subject,
                        request_id: request_id.clone(),
                        body,
                    };
                    // In a task of its own: a client that hangs up (a reset, an HTTP/2
                    // RST_STREAM) drops this future, not the operation, which finishes
                    // and writes its audit record.
                    let frontend = f.clone();
                    let name = f.name();
                    match tokio::spawn(async move { frontend.handle(req, info).await }).await {
                        Ok((r, op)) => (r, name, op),
                        Err(e) => {
                            tracing::error!(request_id, error = %e, "a request handler failed");
                            let r = plain_error(
                                StatusCode::INTERNAL_SERVER_ERROR,
                                "internal_error",
                                "internal error; see the gateway's log for the request id",
                                &request_id,
                            );
                            (r, name, "failed")
                        }
                    }
                }
                None => (
                    plain_error(
                        StatusCode::NOT_FOUND,
                        "not_found",
                        "no such endpoint",
                        &request_id,
                    ),
                    "none",
                    "unrouted",
                ),
            },
        };
        let mut response = response;
        if response.status() == StatusCode::REQUEST_TIMEOUT && version < hyper::Version::HTTP_2 {
            // The rest of a body that came too slowly is not waited for.
            response
                .headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
        let status = response.status().as_u16();
        self.metrics
            .record(frontend, operation, status, started.elapsed());
        tracing::info!(
            request_id,
            %peer,
            %method,
            path,
            status,
            micros = started.elapsed().as_micros() as u64,
            "request"
        );
        response
    }

    fn metrics_page(&self) -> HttpResponse {
        let out = self.metrics.render(
            self.gateway.keys(),
            self.gateway.hsm(),
            self.gateway.audit().counts(),
        );
        let mut r = Response::new(Full::new(Bytes::from(out)));
        r.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        );
        r
    }
}

impl Protocol for HttpProtocol {
    fn serve(self: Arc<Self>, connection: Connection) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let Connection {
                stream,
                peer,
                tls_subject,
                mut stop,
            } = connection;
            let this = self.clone();
            let limits = self.limits;
            let activity = Activity::new();
            let requests = activity.clone();
            let service = service_fn(move |req| {
                let this = this.clone();
                let subject = tls_subject.clone();
                let in_flight = requests.begin();
                async move {
                    let _in_flight = in_flight;
                    Ok::<_, std::convert::Infallible>(this.handle(req, peer, subject).await)
                }
            });
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout);
            builder
                .http2()
                .timer(TokioTimer::new())
                .keep_alive_interval(Some(limits.http2_keep_alive_interval))
                .keep_alive_timeout(limits.http2_keep_alive_timeout);
            let io = ErrorBodies::new(stream, self.next_request_id());
            let conn = builder.serve_connection(TokioIo::new(io), service);
            tokio::pin!(conn);
            // Before its first request a connection has the header timeout (that also
            // covers the HTTP/2 preface and the choice between HTTP/1.1 and HTTP/2),
            // after it the idle timeout.
            let quiet = activity.quiet_too_long(limits.header_read_timeout, limits.idle_timeout);
            tokio::select! {
                r = conn.as_mut() => { if let Err(e) = r { tracing::debug!(%peer, error = %e, "connection error"); } }
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
                _ = quiet => {
                    tracing::debug!(%peer, "closing a connection that had no request in flight for too long");
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(CLOSE_GRACE, conn).await;
                }
            }
        })
    }
}

pub fn json_response(status: StatusCode, body: &Value) -> HttpResponse {
    let mut out = Vec::with_capacity(256);
    write_json(&mut out, body);
    let mut r = Response::new(Full::new(Bytes::from(out)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// `value` as compact JSON, byte for byte what `serde_json::to_vec` writes. A string with
/// nothing to escape (base64, ids, names: nearly all of them) is copied whole after one
/// branch-free scan, where serde_json looks every byte up in its escape table; that was a
/// visible share of an encryption's instructions (a 1 KiB plaintext's ciphertext is a
/// 1.4 KB string; docs/BENCHMARKS.md).
pub fn write_json(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::String(s) => write_json_str(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json(out, item);
            }
            out.push(b']');
        }
        Value::Object(members) => {
            out.push(b'{');
            for (i, (name, item)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json_str(out, name);
                out.push(b':');
                write_json(out, item);
            }
            out.push(b'}');
        }
        // Numbers, booleans and null: serde_json's own text (writing to a Vec cannot fail).
        other => {
            let _ = serde_json::to_writer(&mut *out, other);
        }
    }
}

fn write_json_str(out: &mut Vec<u8>, s: &str) {
    // JSON escapes '"', '\\' and the control characters below 0x20 (RFC 8259, section 7);
    // serde_json escapes exactly these. The fold has no early exit, so it vectorises.
    let plain = !s.bytes().fold(false, |any, b| {
        any | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if plain {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

/// The problem+json body of an answer of the HTTP layer itself, with the same members
/// as the native API's (docs/API-ERRORS.md).
pub(super) fn problem_body(
    status: StatusCode,
    code: &str,
    message: &str,
    request_id: &str,
) -> Vec<u8> {
    let title = status.canonical_reason().unwrap_or("Error");
    serde_json::to_vec(&json!({
        "type": "about:blank", "title": title, "status": status.as_u16(), "code": code,
        "detail": message, "requestId": request_id,
        "reqId": request_id, "statusCode": status.as_u16(), "message": message, "error": title,
    }))
    .unwrap_or_default()
}

/// A problem+json answer of the listener itself (no front-end claimed the request).
fn plain_error(status: StatusCode, code: &str, message: &str, request_id: &str) -> HttpResponse {
    let mut r = Response::new(Full::new(Bytes::from(problem_body(
        status, code, message, request_id,
    ))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    r
}

/// Whether the request says its body is JSON: `Content-Type: application/json`, with
/// parameters (such as `charset=utf-8`) or without.
pub fn is_json(req: &Request<Incoming>) -> bool {
    req.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
}

/// A body refused for its media type (HTTP's 415, code `unsupported_media_type`).
pub fn unsupported_media_type(message: &str) -> CoreError {
    CoreError::new(
        crate::core::ErrorKind::UnsupportedMediaType,
        "unsupported_media_type",
        message,
    )
}

/// Reads the body, refusing one larger than `limits.max_bytes` before reading it all, and
/// one that has not arrived by `limits.deadline` (408).
pub async fn read_body(req: Request<Incoming>, limits: BodyLimits) -> Result<Bytes, CoreError> {
    let max = limits.max_bytes;
    let too_large = || {
        CoreError::too_large(
            "payload_too_large",
            format!("the request body exceeds {max} bytes"),
        )
    };
    if let Some(len) = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > max as u64 {
            return Err(too_large());
        }
    }
    let collect = Limited::new(req.into_body(), max).collect();
    let Ok(collected) = tokio::time::timeout_at(limits.deadline, collect).await else {
        return Err(CoreError::request_timeout(limits.timeout.as_secs()));
    };
    match collected {
        Ok(c) => Ok(c.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(too_large())
        }
        Err(_) => Err(CoreError::invalid(
            "invalid_body",
            "the request body could not be read",
        )),
    }
}

/// Ready when the HSM answers, the store takes a write and every fragment loaded.
async fn readyz(gateway: &Arc<Gateway>) -> HttpResponse {
    let gw = gateway.clone();
    let checks = tokio::task::spawn_blocking(move || {
        // The RNG answers, and the root HMAC key (when configured) can be found.
        let hsm_ok = gw.hsm().map(|h| {
            h.generate_random(&mut [0u8; 1]).is_ok()
                && h.config()
                    .key_label
                    .as_ref()
                    .is_none_or(|l| h.key_attributes(&crate::hsm::labels::root_hmac(l)).is_ok())
        });
        let keys = gw.keys();
        let store_ok = keys.store().check_writable().is_ok();
        let fragments_ok = keys
            .fragments()
            .statuses()
            .iter()
            .all(|s| s.problem.is_none())
            && keys.fragments().anonymous_failures().is_empty();
        (hsm_ok, store_ok, fragments_ok)
    })
    .await
    .unwrap_or((Some(false), false, false));
    let (hsm_ok, store_ok, fragments_ok) = checks;
    let ready = hsm_ok.unwrap_or(true) && store_ok && fragments_ok;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let word = |b: bool| if b { "ok" } else { "failing" };
    let mut r = json_response(
        status,
        &json!({
            "status": if ready { "ready" } else { "not_ready" },
            "checks": {
                "hsm": hsm_ok.map(word).unwrap_or("not_configured"),
                "store": word(store_ok),
                "fragments": word(fragments_ok),
            }
        }),
    );
    if !ready {
        r.headers_mut().insert(RETRY_AFTER, HeaderValue::from(5u32));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `write_json` writes what serde_json writes, whatever the strings hold.
    #[test]
    fn write_json_is_serde_jsons_compact_text() {
        let samples = [
            json!({}),
            json!([]),
            json!(null),
            json!({"ciphertext": "a2V5+/==", "keyId": "0b4e", "n": 3, "ok": true, "none": null}),
            json!({"quote\"d": "back\\slash", "ctl": "tab\tnl\ncr\r\u{1}\u{1f}", "del": "\u{7f}"}),
            json!({"unicode": "é€😀 \u{2028}\u{2029}", "html": "</script><&>'"}),
            json!([
                1,
                -2,
                3.5,
                1e300,
                u64::MAX,
                i64::MIN,
                0.1,
                [],
                [{}],
                [[null, false]]
            ]),
            json!({"nested": {"list": ["x", {"y": "z\u{0}"}], "empty": ""}}),
        ];
        for value in samples {
            let mut out = Vec::new();
            write_json(&mut out, &value);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(&value).unwrap(),
                "{value:?}"
            );
        }
    }
}
