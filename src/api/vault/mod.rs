//! The Vault front-end: Vault's Transit secrets engine API under `/v1/<mount>/` (and the
//! token and health paths its clients call), so that hvac, Vault's other clients and a
//! Vault or OpenBao `seal "transit"` use the gateway's keys unmodified. A thin adapter:
//! it matches the path, authenticates `X-Vault-Token`, turns Vault's parameters into the
//! core's typed requests and renders results in Vault's shapes (`vault:v<N>:` values,
//! `{"data": ...}` envelopes, `{"errors": [...]}`); policy is the core's. Keys are found
//! by name in the mount's project (or the caller's own); they are the same keys the
//! native API sees. docs/VAULT.md lists what maps to what.

mod crypto;
mod error;
mod keys;
mod params;
mod routes;
mod sys;

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Request, StatusCode};
use serde_json::{json, Value};

use super::http::{
    credentials, is_json, json_response, read_body, unsupported_media_type, Failure, HttpFrontend,
    HttpResponse, RequestInfo,
};
use super::listener::BoxFuture;
use crate::core::attributes::ResolvedKey;
use crate::core::{Caller, CoreError, Frontend, Gateway, Operation, ProjectId};
use params::Params;
pub use routes::Mount;
use routes::{Kind, Target};

pub use params::MAX_BATCH_ITEMS;

/// A refusal of the adapter itself: `invalid_request`, answered 400.
pub(crate) fn bad(message: impl Into<String>) -> Failure {
    Failure::Input(CoreError::invalid("invalid_request", message))
}

impl From<params::Refusal> for Failure {
    fn from(r: params::Refusal) -> Self {
        Failure::Input(CoreError::invalid(r.code, r.message))
    }
}

/// What a handler answers: a status and a body (`None`: 204 No Content).
pub(crate) struct Answer {
    status: StatusCode,
    body: Option<Value>,
}

impl Answer {
    fn new(status: StatusCode, body: Value) -> Self {
        Self {
            status,
            body: Some(body),
        }
    }

    fn no_content() -> Self {
        Self {
            status: StatusCode::NO_CONTENT,
            body: None,
        }
    }
}

pub(crate) type Reply = Result<Answer, Failure>;

/// What a handler gets.
pub(crate) struct Ctx<'a> {
    pub gateway: &'a Gateway,
    pub caller: &'a Caller,
    pub target: Target,
    pub params: Params,
    /// The token the request was sent with, kept only for `renew-self`, which hands it
    /// back as Vault does (clients replace their token with the answer's).
    pub token: Option<zeroize::Zeroizing<String>>,
}

impl Ctx<'_> {
    /// The project whose keys this request names: the mount's, else the caller's own.
    fn project(&self) -> Result<ProjectId, Failure> {
        if let Some(p) = self.target.project {
            return Ok(p);
        }
        match self.caller.principal.as_ref().and_then(|p| p.project) {
            Some(p) => Ok(ProjectId(p)),
            None => Err(Failure::Input(CoreError::invalid(
                "project_required",
                "this mount names no project and the token's identity is not bound to one; \
                 configure vault.mounts with a project for this mount",
            ))),
        }
    }

    /// The key of the path, by name in the request's project.
    async fn key(&self) -> Result<ResolvedKey, Failure> {
        let project = self.project()?;
        self.gateway
            .resolve_key(self.caller, project, self.target.name.clone())
            .await
            .map_err(Failure::Input)
    }

    /// A 200 answer in Vault's envelope with `data`.
    fn data(&self, data: Value) -> Answer {
        Answer::new(
            StatusCode::OK,
            self.envelope(data, Value::Null, Value::Null),
        )
    }

    fn envelope(&self, data: Value, auth: Value, warnings: Value) -> Value {
        json!({
            "request_id": self.caller.request_id,
            "lease_id": "",
            "renewable": false,
            "lease_duration": 0,
            "data": data,
            "wrap_info": null,
            "warnings": warnings,
            "auth": auth,
        })
    }
}

pub struct Vault {
    gateway: Arc<Gateway>,
    mounts: Vec<Mount>,
}

impl Vault {
    pub fn new(gateway: Arc<Gateway>, mounts: Vec<Mount>) -> Self {
        Self { gateway, mounts }
    }

    async fn respond(
        &self,
        req: Request<Incoming>,
        info: RequestInfo,
    ) -> (HttpResponse, &'static str) {
        let mut caller = info.caller(Frontend::Vault);
        let target = match routes::find(
            &self.mounts,
            req.method(),
            req.uri().path(),
            req.uri().query(),
        ) {
            Ok(t) => t,
            Err(e) => {
                let label = Operation::Unrouted.as_str();
                return (self.refused(&caller, Operation::Unrouted, e).await, label);
            }
        };
        let operation = target.kind.operation();
        let label = operation.as_str();
        if target.kind == Kind::Health {
            return (sys::health(&self.gateway), label);
        }
        let presented = credentials(&req, &info, Some("x-vault-token"));
        let token = match (&presented, target.kind) {
            (crate::core::login::Credentials::Bearer(t), Kind::RenewSelf) => {
                Some(zeroize::Zeroizing::new((*t).to_owned()))
            }
            _ => None,
        };
        // A request with neither X-Vault-Token nor Authorization, whose client certificate
        // alone authenticates it, could come from a page of another site in a browser
        // holding that certificate; such a page cannot send JSON without asking first.
        let by_certificate = matches!(presented, crate::core::login::Credentials::TlsSubject(_));
        let json_body = is_json(&req);
        match self.gateway.authenticate(presented).await {
            Ok(p) => caller.principal = Some(p),
            Err(e) => return (self.refused(&caller, operation, e).await, label),
        }
        let body = match read_body(req, info.body).await {
            Ok(b) => b,
            Err(e) => return (self.refused(&caller, operation, e).await, label),
        };
        if by_certificate && !body.is_empty() && !json_body {
            let e = unsupported_media_type(
                "a request authenticated by its client certificate alone must send its body with Content-Type: application/json",
            );
            return (self.refused(&caller, operation, e).await, label);
        }
        let params = match Params::parse(&body) {
            Ok(p) => p,
            Err(r) => {
                let e = CoreError::invalid(r.code, r.message);
                return (self.refused(&caller, operation, e).await, label);
            }
        };
        let ctx = Ctx {
            gateway: &self.gateway,
            caller: &caller,
            target,
            params,
            token,
        };
        let response = match dispatch(&ctx).await {
            Ok(answer) => render(answer),
            Err(Failure::Core(e)) => error::response(&e),
            Err(Failure::Input(e)) => self.refused(&caller, operation, e).await,
        };
        (response, label)
    }

    async fn refused(&self, caller: &Caller, operation: Operation, e: CoreError) -> HttpResponse {
        error::response(&self.gateway.refuse(caller, operation, e).await)
    }
}

async fn dispatch(ctx: &Ctx<'_>) -> Reply {
    use Kind as K;
    match ctx.target.kind {
        K::Health => Ok(Answer::no_content()),
        K::LookupSelf => sys::lookup_self(ctx).await,
        K::RenewSelf => sys::renew_self(ctx).await,
        K::Random => sys::random(ctx).await,
        K::Hash => sys::hash(ctx).await,
        K::ListKeys => keys::list(ctx).await,
        K::CreateKey => keys::create(ctx).await,
        K::ReadKey => keys::read(ctx).await,
        K::DeleteKey => keys::delete(ctx).await,
        K::ConfigKey => keys::config(ctx).await,
        K::RotateKey => keys::rotate(ctx).await,
        K::TrimKey => keys::trim(ctx).await,
        K::DataKey => crypto::data_key(ctx).await,
        K::Encrypt | K::Decrypt | K::Rewrap | K::Hmac | K::Sign | K::Verify => {
            crypto::run(ctx).await
        }
    }
}

fn render(answer: Answer) -> HttpResponse {
    match answer.body {
        Some(body) => json_response(answer.status, &body),
        None => {
            let mut r = HttpResponse::new(Default::default());
            *r.status_mut() = answer.status;
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            r
        }
    }
}

impl HttpFrontend for Vault {
    fn name(&self) -> &'static str {
        Frontend::Vault.as_str()
    }

    fn claims(&self, req: &Request<Incoming>) -> bool {
        req.uri().path().starts_with("/v1/")
    }

    fn handle(
        &self,
        req: Request<Incoming>,
        info: RequestInfo,
    ) -> BoxFuture<'_, (HttpResponse, &'static str)> {
        Box::pin(self.respond(req, info))
    }
}
