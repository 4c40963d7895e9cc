//! The HTTPS API of DESIGN.md section 5: TLS, routing, JSON in and out, bearer-token
//! auth and problem+json errors. It calls `keys` for every operation and never touches
//! PKCS#11 or SQL itself.

mod auth;
mod error;
mod metrics;
mod routes;
mod tls;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;

pub use auth::{
    default_token_path, new_token, parse_permissions, permissions_string, token_sha256, Auth,
    Permission, IDENTITIES_TOPIC,
};
pub use error::ApiError;
pub use metrics::Metrics;
pub use tls::{server_config, ReloadableCert};

use crate::hsm::Hsm;
use crate::keys::KeyService;

/// Limits applied to every request.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_plaintext_bytes: usize,
    pub max_connections: usize,
    pub max_concurrent_per_identity: usize,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_grace_seconds: u64,
}

/// What the admin API needs to re-wrap the instance root key.
pub struct RootAdmin {
    pub root_encryption_key: Option<zeroize::Zeroizing<[u8; 32]>>,
    pub mechanism: crate::keys::root::HsmRootMechanism,
}

/// Everything a request handler may use.
pub struct AppState {
    pub keys: Arc<KeyService>,
    pub auth: Auth,
    pub hsm: Option<Hsm>,
    pub limits: Limits,
    pub metrics: Metrics,
    pub root: RootAdmin,
    pub audit: crate::audit::AuditLog,
    request_ids: AtomicU64,
    in_flight: std::sync::Mutex<std::collections::HashMap<String, Arc<Semaphore>>>,
}

impl AppState {
    pub fn new(
        keys: Arc<KeyService>,
        auth: Auth,
        hsm: Option<Hsm>,
        limits: Limits,
        root: RootAdmin,
        audit: crate::audit::AuditLog,
    ) -> Self {
        Self {
            keys,
            auth,
            hsm,
            limits,
            metrics: Metrics::default(),
            root,
            audit,
            request_ids: AtomicU64::new(1),
            in_flight: Default::default(),
        }
    }

    /// A slot for one more request of `identity`, or `None` when it has its maximum in flight.
    fn admit(&self, identity: &str) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let sem = self
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(identity.to_owned())
            .or_insert_with(|| {
                Arc::new(Semaphore::new(
                    self.limits.max_concurrent_per_identity.max(1),
                ))
            })
            .clone();
        sem.try_acquire_owned().ok()
    }

    fn next_request_id(&self) -> String {
        format!(
            "req-{:08x}-{}",
            std::process::id(),
            self.request_ids.fetch_add(1, Ordering::Relaxed)
        )
    }
}

/// Serves HTTPS on `listener` until `shutdown` completes, then stops accepting and
/// lets in-flight connections finish.
pub async fn run(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let acceptor = TlsAcceptor::from(tls);
    let permits = Arc::new(Semaphore::new(state.limits.max_connections.max(1)));
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let state = state.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ = tcp.set_nodelay(true);
            let tls = match tokio::time::timeout(
                std::time::Duration::from_secs(10),
                acceptor.accept(tcp),
            )
            .await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            // Verified by rustls against the client CAs when mutual TLS is configured.
            let subject: Option<Arc<str>> = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(tls::client_subject)
                .map(Arc::from);
            let service = service_fn(move |req| {
                let state = state.clone();
                let subject = subject.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(
                        routes::handle(state, req, peer, subject).await,
                    )
                }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection(TokioIo::new(tls), service);
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => { if let Err(e) = r { tracing::debug!(%peer, error = %e, "connection error"); } }
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    let _ = stop_tx.send(true);
    // Wait (bounded) for in-flight connections to finish.
    let all = state.limits.max_connections.max(1) as u32;
    let grace = std::time::Duration::from_secs(state.limits.shutdown_grace_seconds);
    if tokio::time::timeout(grace, permits.acquire_many(all))
        .await
        .is_err()
    {
        let open = all as usize - permits.available_permits();
        tracing::warn!(
            open,
            "shutdown deadline passed; dropping the connections still open"
        );
    }
    Ok(())
}
