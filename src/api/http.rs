//! HTTP on a TLS connection (HTTP/1.1 and HTTP/2), with requests routed to the front-end
//! that claims them (the native API by its `/api/` prefix, later the AWS API by its
//! `X-Amz-Target` header, Vault's by `/v1/`, the console by `/ui/`), and the operational
//! endpoints `/healthz`, `/readyz` and `/metrics` that belong to none of them.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};

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

/// What a front-end knows of the request besides the request itself.
pub struct RequestInfo {
    pub peer: SocketAddr,
    pub tls_subject: Option<Arc<str>>,
    pub request_id: String,
    pub max_body_bytes: usize,
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

/// HTTP with its front-ends.
pub struct HttpProtocol {
    gateway: Arc<Gateway>,
    frontends: Vec<Arc<dyn HttpFrontend>>,
    metrics: Metrics,
    max_body_bytes: usize,
    request_ids: AtomicU64,
}

impl HttpProtocol {
    pub fn new(
        gateway: Arc<Gateway>,
        frontends: Vec<Arc<dyn HttpFrontend>>,
        max_body_bytes: usize,
    ) -> Self {
        Self {
            gateway,
            frontends,
            metrics: Metrics::default(),
            max_body_bytes,
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
        let request_id = self.next_request_id();
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
                        max_body_bytes: self.max_body_bytes,
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
        let out = self.metrics.render(self.gateway.keys(), self.gateway.hsm());
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
            let service = service_fn(move |req| {
                let this = this.clone();
                let subject = tls_subject.clone();
                async move { Ok::<_, std::convert::Infallible>(this.handle(req, peer, subject).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => { if let Err(e) = r { tracing::debug!(%peer, error = %e, "connection error"); } }
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        })
    }
}

pub fn json_response(status: StatusCode, body: &Value) -> HttpResponse {
    let mut r = Response::new(Full::new(Bytes::from(
        serde_json::to_vec(body).unwrap_or_default(),
    )));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// A problem+json answer of the listener itself (no front-end claimed the request).
fn plain_error(status: StatusCode, code: &str, message: &str, request_id: &str) -> HttpResponse {
    let mut r = json_response(
        status,
        &json!({"type": "about:blank", "title": status.canonical_reason(), "status": status.as_u16(),
                "code": code, "detail": message, "requestId": request_id}),
    );
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    r
}

/// Reads the body, refusing one larger than `max` before reading it all.
pub async fn read_body(req: Request<Incoming>, max: usize) -> Result<Bytes, CoreError> {
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
    match Limited::new(req.into_body(), max).collect().await {
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
