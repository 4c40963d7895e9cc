//! A TLS listener that serves whatever protocol it is handed: HTTP (with its front-ends
//! routed by path or header) on the HTTPS port, another protocol (KMIP) on its own port.
//! It owns what every port shares: the TLS handshake and its time limit, the bounds on
//! open connections (in all and per client address), the client certificate's subject,
//! and graceful shutdown.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// A boxed future, as trait objects return them.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One accepted, authenticated-at-TLS connection.
pub struct Connection {
    pub stream: TlsStream<TcpStream>,
    pub peer: SocketAddr,
    /// The RFC 4514 subject of the client certificate rustls verified, if any.
    pub tls_subject: Option<Arc<str>>,
    /// Becomes true when the listener shuts down: finish in-flight work and close.
    pub stop: watch::Receiver<bool>,
}

/// What a port speaks.
pub trait Protocol: Send + Sync + 'static {
    fn serve(self: Arc<Self>, connection: Connection) -> BoxFuture<'static, ()>;
}

/// Bounds of one listener.
#[derive(Debug, Clone, Copy)]
pub struct ListenerLimits {
    pub max_connections: usize,
    /// Connections one client IP address may have open at once; more are closed as soon
    /// as they are accepted, so that one client cannot take every connection.
    pub max_connections_per_address: usize,
    /// How long a client has to complete the TLS handshake.
    pub handshake_timeout: Duration,
    /// How long shutdown waits for in-flight connections.
    pub shutdown_grace_seconds: u64,
}

/// The open connections of each client address. An entry lives only while its address
/// has a connection open, so the table holds at most `max_connections` entries.
#[derive(Default)]
struct PerAddress {
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One open connection's place in its address's count, given back on drop.
struct AddressSlot {
    table: Arc<PerAddress>,
    address: IpAddr,
}

impl PerAddress {
    /// A place for one more connection of `address`, or `None` when it has `max` open.
    fn admit(self: &Arc<Self>, address: IpAddr, max: usize) -> Option<AddressSlot> {
        let address = address.to_canonical();
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(address).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(AddressSlot {
            table: self.clone(),
            address,
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self.table.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.address) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.address);
            }
        }
    }
}

/// Serves `protocol` over TLS on `listener` until `shutdown` completes, then stops
/// accepting and lets in-flight connections finish (bounded by the grace period).
pub async fn run(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    protocol: Arc<dyn Protocol>,
    limits: ListenerLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let acceptor = TlsAcceptor::from(tls);
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let per_address = Arc::new(PerAddress::default());
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
        let Some(address_slot) =
            per_address.admit(peer.ip(), limits.max_connections_per_address.max(1))
        else {
            // Closed at once (the permit goes back with it): this address has its share.
            tracing::debug!(%peer, "connection refused: the address has its maximum open");
            continue;
        };
        let acceptor = acceptor.clone();
        let protocol = protocol.clone();
        let stop = stop_rx.clone();
        let handshake_timeout = limits.handshake_timeout;
        tokio::spawn(async move {
            let _permit = permit;
            let _address_slot = address_slot;
            let _ = tcp.set_nodelay(true);
            let stream = match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            // Verified by rustls against the client CAs when mutual TLS is configured.
            let tls_subject: Option<Arc<str>> = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(super::tls::client_subject)
                .map(Arc::from);
            protocol
                .serve(Connection {
                    stream,
                    peer,
                    tls_subject,
                    stop,
                })
                .await;
        });
    }
    let _ = stop_tx.send(true);
    let all = limits.max_connections.max(1) as u32;
    let grace = Duration::from_secs(limits.shutdown_grace_seconds);
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
