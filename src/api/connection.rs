//! What bounds one HTTP connection beyond hyper's own limits: the clock of requests in
//! flight (a connection with none for too long is closed), and the JSON body of the
//! answers hyper's HTTP/1.1 parser writes by itself (400, 414, 431), which it leaves
//! empty.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;

/// Requests of one connection: in flight now, and started since it opened.
#[derive(Debug, Clone, Copy, Default)]
struct Load {
    in_flight: usize,
    started: u64,
}

/// Counts the requests of one connection for [`Activity::quiet_too_long`].
#[derive(Clone)]
pub struct Activity {
    load: Arc<watch::Sender<Load>>,
}

/// One request in flight; it ends when this is dropped (answered or cancelled).
pub struct InFlight {
    load: Arc<watch::Sender<Load>>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.load
            .send_modify(|l| l.in_flight = l.in_flight.saturating_sub(1));
    }
}

impl Activity {
    pub fn new() -> Self {
        Self {
            load: Arc::new(watch::Sender::new(Load::default())),
        }
    }

    /// A request has started.
    pub fn begin(&self) -> InFlight {
        self.load.send_modify(|l| {
            l.in_flight += 1;
            l.started += 1;
        });
        InFlight {
            load: self.load.clone(),
        }
    }

    /// Resolves once the connection has had no request in flight for `first` before its
    /// first request (a client that connects and sends nothing, or too slowly), or for
    /// `idle` after one (an idle keep-alive connection, or a client that does not read
    /// its answer).
    pub fn quiet_too_long(&self, first: Duration, idle: Duration) -> impl Future<Output = ()> {
        let mut load = self.load.subscribe();
        async move {
            loop {
                let now = *load.borrow_and_update();
                if now.in_flight > 0 {
                    if load.changed().await.is_err() {
                        return std::future::pending().await;
                    }
                    continue;
                }
                let limit = if now.started == 0 { first } else { idle };
                tokio::select! {
                    _ = tokio::time::sleep(limit) => return,
                    changed = load.changed() => {
                        if changed.is_err() {
                            return std::future::pending().await;
                        }
                    }
                }
            }
        }
    }
}

impl Default for Activity {
    fn default() -> Self {
        Self::new()
    }
}

/// An IO that replaces the empty answer hyper's HTTP/1.1 parser writes for a request it
/// cannot parse (a NUL in the path, conflicting `Content-Length`s: 400; a head too large:
/// 431; a URI too long: 414) by the same status with a problem+json body, as every other
/// error of the gateway has. hyper writes that answer as a head alone, without a
/// content type, and closes the connection after it; the gateway's own answers always
/// carry a content type (or are 204s), so they are never touched.
pub struct ErrorBodies<T> {
    inner: T,
    request_id: String,
    /// The replacement still to be written, and how much of it is.
    pending: Vec<u8>,
    written: usize,
}

impl<T> ErrorBodies<T> {
    pub fn new(inner: T, request_id: String) -> Self {
        Self {
            inner,
            request_id,
            pending: Vec::new(),
            written: 0,
        }
    }
}

/// The code and message of an answer hyper's parser makes by itself.
fn parser_answer(status: &[u8]) -> Option<(u16, &'static str, &'static str)> {
    Some(match status {
        b"400" => (
            400,
            "malformed_request",
            "the request is not valid HTTP/1.1 (its request line, a header, or its framing)",
        ),
        b"414" => (414, "uri_too_long", "the request URI is too long"),
        b"431" => (
            431,
            "headers_too_large",
            "the request's headers are too large or too many",
        ),
        _ => return None,
    })
}

/// The replacement of `buf` when it is exactly hyper's automatic answer.
fn replacement(buf: &[u8], request_id: &str) -> Option<Vec<u8>> {
    let rest = buf.strip_prefix(b"HTTP/1.1 ")?;
    let (status, code, message) = parser_answer(rest.get(..3)?)?;
    // A head alone: the first blank line ends the buffer.
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    if end + 4 != buf.len() {
        return None;
    }
    let text = std::str::from_utf8(buf).ok()?;
    let head = text.to_ascii_lowercase();
    if head.contains("\r\ncontent-type:") || !head.contains("\r\ncontent-length: 0\r\n") {
        return None;
    }
    let date = text
        .split("\r\n")
        .find(|l| l.to_ascii_lowercase().starts_with("date:"));
    let code_status = hyper::StatusCode::from_u16(status).ok()?;
    let body = super::http::problem_body(code_status, code, message, request_id);
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\ncontent-type: application/problem+json\r\ncontent-length: {}\r\nconnection: close\r\n",
        code_status.canonical_reason().unwrap_or(""),
        body.len()
    );
    if let Some(d) = date {
        out.push_str(d);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&body);
    tracing::debug!(
        request_id,
        status,
        code,
        "answered a request the HTTP parser refused"
    );
    Some(bytes)
}

impl<T: AsyncWrite + Unpin> ErrorBodies<T> {
    /// Writes what is left of a replacement.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.pending.len() {
            let n =
                ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.pending.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ErrorBodies<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ErrorBodies<T> {
    // Not vectored (the default): hyper then hands each answer over as one buffer, whose
    // start is the head to look at.
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.drain(cx))?;
        if let Some(bytes) = replacement(buf, &this.request_id) {
            this.pending = bytes;
            // Written by the next calls if not now; flush and shutdown drain it first.
            if let Poll::Ready(Err(e)) = this.drain(cx) {
                return Poll::Ready(Err(e));
            }
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::replacement;

    #[test]
    fn only_hypers_empty_answers_are_replaced() {
        let hyper_400 =
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: Thu, 03 Dec 2026 09:00:00 GMT\r\n\r\n";
        let out = String::from_utf8(replacement(hyper_400, "req-1").unwrap()).unwrap();
        assert!(out.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{out}");
        assert!(
            out.contains("content-type: application/problem+json\r\n"),
            "{out}"
        );
        assert!(
            out.contains("date: Thu, 03 Dec 2026 09:00:00 GMT\r\n"),
            "{out}"
        );
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{out}"
        );
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["code"], "malformed_request");
        assert_eq!(v["requestId"], "req-1");
        let v: serde_json::Value = serde_json::from_slice(
            replacement(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n",
                "r",
            )
            .unwrap()
            .rsplit(|b| *b == b'\n')
            .next()
            .unwrap(),
        )
        .unwrap();
        assert_eq!(
            (v["status"].as_u64(), v["code"].as_str()),
            (Some(431), Some("headers_too_large"))
        );
        // The gateway's own answers: a content type, a body, or another status.
        for own in [
            &b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/problem+json\r\ncontent-length: 0\r\n\r\n"[..],
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\n{}",
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            b"{\"code\":\"HTTP/1.1 400 \"}",
        ] {
            assert!(replacement(own, "r").is_none(), "{}", String::from_utf8_lossy(own));
        }
    }
}
