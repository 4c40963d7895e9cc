//! The KMIP front-end: a KMIP server (TTLV over mutually authenticated TLS, KMIP 1.0–2.1)
//! on its own port. A connection carries request messages one after another; each batch
//! item is one operation of the operations core, run as the identity whose `tlsSubject`
//! is the client certificate's subject. See docs/KMIP.md.

mod attributes;
mod message;
mod operations;
pub mod spec;
pub mod ttlv;

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::api::listener::{BoxFuture, Connection, Protocol};
use crate::core::Gateway;

pub use message::handle_message;

/// The KMIP port's protocol.
pub struct Kmip {
    gateway: Arc<Gateway>,
    limits: ttlv::Limits,
    idle: Duration,
}

impl Kmip {
    pub fn new(gateway: Arc<Gateway>, max_message_bytes: usize, idle_timeout: Duration) -> Self {
        Self {
            gateway,
            limits: ttlv::Limits {
                max_message_bytes,
                ..ttlv::Limits::default()
            },
            idle: idle_timeout,
        }
    }

    async fn connection(&self, mut conn: Connection) {
        let peer = conn.peer.ip().to_string();
        loop {
            let mut header = [0u8; ttlv::HEADER_LEN];
            let read = tokio::select! {
                _ = conn.stop.changed() => return,
                r = tokio::time::timeout(self.idle, conn.stream.read_exact(&mut header)) => r,
            };
            if !matches!(read, Ok(Ok(_))) {
                return;
            }
            let total = match ttlv::message_length(&header, &self.limits) {
                Ok(n) => n,
                Err(e) => {
                    // Not a message the gateway reads: say so once, then close (the rest
                    // of the stream cannot be framed).
                    tracing::debug!(%peer, error = %e, "KMIP message refused");
                    let answer = message::invalid_message(&format!("{e}"));
                    let _ = conn.stream.write_all(&answer).await;
                    let _ = conn.stream.shutdown().await;
                    return;
                }
            };
            let mut bytes = vec![0u8; total];
            bytes[..ttlv::HEADER_LEN].copy_from_slice(&header);
            let body = tokio::time::timeout(
                self.idle,
                conn.stream.read_exact(&mut bytes[ttlv::HEADER_LEN..]),
            )
            .await;
            if !matches!(body, Ok(Ok(_))) {
                return;
            }
            let answer = handle_message(
                &self.gateway,
                &bytes,
                &self.limits,
                conn.tls_subject.as_deref(),
                Some(peer.clone()),
            )
            .await;
            let sent = tokio::time::timeout(self.idle, async {
                conn.stream.write_all(&answer).await?;
                conn.stream.flush().await
            })
            .await;
            if !matches!(sent, Ok(Ok(()))) {
                return;
            }
        }
    }
}

impl Protocol for Kmip {
    fn serve(self: Arc<Self>, connection: Connection) -> BoxFuture<'static, ()> {
        Box::pin(async move { self.connection(connection).await })
    }
}
