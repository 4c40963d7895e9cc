//! The native front-end: Infisical's KMS API (and our additions) under `/api/v1`, so that
//! Infisical's SDKs, CLI and scripts work unmodified. A thin adapter: it matches the
//! route, authenticates, parses the body into the core's typed request, calls the core
//! and renders the result; every decision of policy is the core's.

mod admin;
mod bodies;
mod crypto;
mod error;
mod identities;
mod json;
mod keys;
mod routes;

use std::sync::Arc;

use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use hyper::{Method, Request, StatusCode};
use serde_json::Value;

pub(crate) use super::http::Failure;
use super::http::{
    credentials, is_json, json_response, read_body, unsupported_media_type, HttpFrontend,
    HttpResponse, RequestInfo,
};
use super::listener::BoxFuture;
use crate::core::{Caller, CoreError, Frontend, Gateway, Operation};
pub use routes::{Route, ROUTES};

/// The OpenAPI 3.1 document of this API, served at `/api/v1/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

pub(crate) type Reply = Result<Value, Failure>;

/// What a handler gets.
pub(crate) struct Input<'a> {
    pub gateway: &'a Gateway,
    pub caller: &'a Caller,
    /// The route's template.
    pub template: &'static str,
    /// The `{…}` segments of the route, in order.
    pub params: Vec<String>,
    pub query: std::collections::HashMap<String, String>,
    pub body: Bytes,
}

pub struct Native {
    gateway: Arc<Gateway>,
}

impl Native {
    pub fn new(gateway: Arc<Gateway>) -> Self {
        Self { gateway }
    }

    async fn respond(
        &self,
        req: Request<Incoming>,
        info: RequestInfo,
    ) -> (HttpResponse, &'static str) {
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let mut caller = info.caller(Frontend::Native);
        let matched = routes::find(&method, &path);
        let operation = match &matched {
            routes::Match::Found(route, _) => route.operation,
            _ => Operation::Unrouted,
        };
        let label = operation.as_str();
        if let routes::Match::Found(route, _) = &matched {
            if route.operation == Operation::ShowOpenApi {
                let mut r = HttpResponse::new(OPENAPI.into());
                r.headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                return (r, label);
            }
        }
        let public = matches!(&matched, routes::Match::Found(r, _) if !r.authenticated);
        if !public {
            match self.authenticate(&req, &info).await {
                Ok(p) => caller.principal = Some(p),
                Err(e) => return (self.refused(&caller, operation, e).await, label),
            }
        }
        let (route, params) = match matched {
            routes::Match::Found(route, params) => (route, params),
            routes::Match::WrongMethod => {
                let e = error::method_not_allowed(&method);
                return (self.refused(&caller, operation, e).await, label);
            }
            routes::Match::None => {
                let e = CoreError::not_found("not_found", "no such endpoint");
                return (self.refused(&caller, operation, e).await, label);
            }
        };
        let query = req
            .uri()
            .query()
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        let json_body = is_json(&req);
        let body = match read_body(req, info.body).await {
            Ok(b) => b,
            Err(e) => return (self.refused(&caller, operation, e).await, label),
        };
        // A body of another type is refused even if it parses: a browser may post
        // `text/plain` or a form to another site without asking first (no CORS
        // preflight), but not `application/json`; with mutual TLS, its certificate would
        // authenticate such a cross-site post.
        let has_body_method = matches!(method, Method::POST | Method::PUT | Method::PATCH);
        if has_body_method && !body.is_empty() && !json_body {
            let e = unsupported_media_type(
                "a request body must be sent with Content-Type: application/json",
            );
            return (self.refused(&caller, operation, e).await, label);
        }
        let input = Input {
            gateway: &self.gateway,
            caller: &caller,
            template: route.template,
            params,
            query,
            body,
        };
        match routes::dispatch(route.operation, input).await {
            Ok(value) => (json_response(StatusCode::OK, &value), label),
            Err(Failure::Core(e)) => (problem(&e, &caller.request_id), label),
            Err(Failure::Input(e)) => (self.refused(&caller, operation, e).await, label),
        }
    }

    /// The caller of a request: its bearer token, else its verified client certificate.
    async fn authenticate(
        &self,
        req: &Request<Incoming>,
        info: &RequestInfo,
    ) -> Result<Arc<crate::core::Principal>, CoreError> {
        self.gateway
            .authenticate(credentials(req, info, None))
            .await
    }

    async fn refused(&self, caller: &Caller, operation: Operation, e: CoreError) -> HttpResponse {
        let e = self.gateway.refuse(caller, operation, e).await;
        problem(&e, &caller.request_id)
    }
}

impl HttpFrontend for Native {
    fn name(&self) -> &'static str {
        Frontend::Native.as_str()
    }

    fn claims(&self, req: &Request<Incoming>) -> bool {
        req.uri().path().starts_with("/api/")
    }

    fn handle(
        &self,
        req: Request<Incoming>,
        info: RequestInfo,
    ) -> BoxFuture<'_, (HttpResponse, &'static str)> {
        Box::pin(self.respond(req, info))
    }
}

/// The problem+json response of a core error.
fn problem(e: &CoreError, request_id: &str) -> HttpResponse {
    let status = error::status(e);
    let mut r = HttpResponse::new(error::body(e, request_id).into());
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    if let Some(s) = e.retry_after {
        r.headers_mut().insert(RETRY_AFTER, HeaderValue::from(s));
    }
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    r
}
