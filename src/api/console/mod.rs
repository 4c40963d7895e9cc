//! The web console under `/ui/`: static HTML, CSS and JavaScript embedded in the binary.
//! It holds no data and no privilege of its own: the browser calls the native API under
//! `/api/` with the bearer token the person signed in with, like any other client.
//! Every answer carries the same strict security headers (docs/CONSOLE.md).

use hyper::body::{Bytes, Incoming};
use hyper::header::{
    HeaderName, HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION,
    REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use hyper::{Method, Request, StatusCode};

use super::http::{HttpFrontend, HttpResponse, RequestInfo};
use super::listener::BoxFuture;

/// No inline script or style, nothing from another origin, no framing, no form posts.
pub const CONTENT_SECURITY_POLICY_VALUE: &str = "default-src 'none'; script-src 'self'; \
style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'none'; \
base-uri 'none'; frame-ancestors 'none'";

/// One embedded file: its name under `/ui/`, its content type and bytes.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

static ASSETS: &[Asset] = &[
    Asset {
        name: "",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("assets/index.html"),
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("assets/app.js"),
    },
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("assets/app.css"),
    },
    Asset {
        name: "favicon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("assets/favicon.svg"),
    },
];

/// The console front-end.
#[derive(Default)]
pub struct Console;

impl Console {
    pub fn new() -> Self {
        Self
    }
}

impl HttpFrontend for Console {
    fn name(&self) -> &'static str {
        "console"
    }

    fn claims(&self, req: &Request<Incoming>) -> bool {
        let path = req.uri().path();
        path == "/ui" || path.starts_with("/ui/")
    }

    fn handle(
        &self,
        req: Request<Incoming>,
        _info: RequestInfo,
    ) -> BoxFuture<'_, (HttpResponse, &'static str)> {
        let answer = respond(req.method(), req.uri().path());
        Box::pin(async move { answer })
    }
}

/// The answer to `method path` (a path the console claims).
fn respond(method: &Method, path: &str) -> (HttpResponse, &'static str) {
    if method != Method::GET && method != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return (r, "method_not_allowed");
    }
    if path == "/ui" {
        let mut r = text(StatusCode::MOVED_PERMANENTLY, "see /ui/\n");
        r.headers_mut()
            .insert(LOCATION, HeaderValue::from_static("/ui/"));
        return (r, "redirect");
    }
    let name = path.strip_prefix("/ui/").unwrap_or_default();
    let Some(asset) = ASSETS.iter().find(|a| a.name == name) else {
        return (text(StatusCode::NOT_FOUND, "no such page\n"), "not_found");
    };
    let body = if method == Method::HEAD {
        Bytes::new()
    } else {
        Bytes::from_static(asset.body)
    };
    let mut r = HttpResponse::new(body.into());
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    if method == Method::HEAD {
        h.insert(
            hyper::header::CONTENT_LENGTH,
            HeaderValue::from(asset.body.len()),
        );
    }
    secure(&mut r);
    (r, "asset")
}

fn text(status: StatusCode, body: &'static str) -> HttpResponse {
    let mut r = HttpResponse::new(Bytes::from_static(body.as_bytes()).into());
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    secure(&mut r);
    r
}

/// The security headers of every console answer.
fn secure(r: &mut HttpResponse) {
    let h = r.headers_mut();
    h.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY_VALUE),
    );
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The HTML has no inline script, handler or style, which the policy would block.
    #[test]
    fn the_page_has_nothing_inline() {
        let html = std::str::from_utf8(ASSETS[0].body).expect("utf-8");
        assert!(!html.contains(" style="), "a style attribute");
        assert!(!html.contains("<style"), "an inline style sheet");
        let handler = html.split(' ').any(|w| {
            w.starts_with("on")
                && w.split('=')
                    .next()
                    .is_some_and(|n| n.len() > 2 && n[2..].bytes().all(|b| b.is_ascii_lowercase()))
                && w.contains('=')
        });
        assert!(!handler, "an inline event handler");
        for script in html.split("<script").skip(1) {
            assert!(script.starts_with(" src=\""), "an inline script: {script}");
        }
        let js = std::str::from_utf8(ASSETS[1].body).expect("utf-8");
        assert!(!js.contains("innerHTML"), "innerHTML in app.js");
        assert!(!js.contains("eval("), "eval in app.js");
    }
}
