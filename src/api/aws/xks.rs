//! The AWS External Key Store (XKS) proxy API, so that AWS KMS keeps the keys of an
//! external key store in the customer's HSM behind the gateway. As AWS's "External Key
//! Store (XKS) Proxy API Specification" defines it: `POST <prefix>/kms/xks/v1/health`
//! and `POST <prefix>/kms/xks/v1/keys/<externalKeyId>/metadata|encrypt|decrypt`, JSON
//! bodies with base64 blobs, errors `{"errorName", "errorMessage"}` with the statuses the
//! specification lists, and Signature Version 4 with the service `kms-xks-proxy`.
//!
//! The external key id is the id of an HSM-resident AES-256 key of the gateway
//! (`protection: "hsm"`): AES-GCM runs in the HSM with a 96-bit IV from its RNG. The
//! credentials are access keys of a gateway identity (two at once, for rotation), whose
//! project and permissions apply; with `xks.require_client_certificate` the request must
//! also come with a verified client certificate (mutual TLS).

use std::sync::Arc;

use base64::Engine;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, StatusCode};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::{authenticate, read_parts, B64};
use crate::api::http::{json_response, HttpFrontend, HttpResponse, RequestInfo};
use crate::api::listener::BoxFuture;
use crate::core::xks::{ExternalSealed, XksRequest};
use crate::core::{Caller, CoreError, ErrorKind, Frontend, Gateway, KeyId, Operation};
use crate::keys::{Algorithm, KeyUsage};

/// The service name XKS requests are signed for.
pub const SERVICE: &str = "kms-xks-proxy";
const API_PATH: &str = "/kms/xks/v1";
/// The longest AAD the specification allows.
const MAX_AAD_BYTES: usize = 8192;

/// The XKS front-end's settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct XksSettings {
    /// Off unless set.
    pub enabled: bool,
    /// The path before `/kms/xks/v1` (empty, or `/` and path segments).
    pub uri_path_prefix: String,
    pub require_client_certificate: bool,
    /// With it, the client certificate's subject must be exactly this (AWS KMS presents
    /// `CN=cks.kms.<region>.amazonaws.com`).
    pub client_certificate_subject: Option<String>,
}

/// The specification's error name and status for a core error.
fn exception(e: &CoreError) -> (&'static str, StatusCode) {
    use ErrorKind as K;
    match (e.kind, e.code) {
        (K::Unauthenticated, _) => ("AuthenticationFailedException", StatusCode::UNAUTHORIZED),
        (K::Forbidden, _) => ("AccessDeniedException", StatusCode::FORBIDDEN),
        (K::NotFound, "invalid_uri_path") => ("InvalidUriPathException", StatusCode::NOT_FOUND),
        (K::NotFound, _) => ("KeyNotFoundException", StatusCode::NOT_FOUND),
        (K::Conflict, _) => ("InvalidStateException", StatusCode::BAD_REQUEST),
        (K::Invalid, "decryption_failed" | "invalid_ciphertext") => {
            ("InvalidCiphertextException", StatusCode::BAD_REQUEST)
        }
        (K::Invalid, "wrong_key_usage" | "not_supported") => {
            ("InvalidKeyUsageException", StatusCode::BAD_REQUEST)
        }
        // The specification: a plaintext over the proxy's bound is unsupported (501).
        (K::TooLarge, "plaintext_too_large") => {
            ("UnsupportedOperationException", StatusCode::NOT_IMPLEMENTED)
        }
        (K::Invalid | K::TooLarge | K::Timeout | K::UnsupportedMediaType, _) => {
            ("ValidationException", StatusCode::BAD_REQUEST)
        }
        (K::NotAllowed, _) => ("UnsupportedOperationException", StatusCode::NOT_IMPLEMENTED),
        (K::TooMany, _) => ("ThrottlingException", StatusCode::TOO_MANY_REQUESTS),
        (K::Unavailable, _) => (
            "DependencyTimeoutException",
            StatusCode::SERVICE_UNAVAILABLE,
        ),
        _ => ("InternalException", StatusCode::INTERNAL_SERVER_ERROR),
    }
}

fn error_response(e: &CoreError) -> HttpResponse {
    let (name, status) = exception(e);
    json_response(
        status,
        &json!({ "errorName": name, "errorMessage": e.message }),
    )
}

fn validation(m: impl Into<String>) -> CoreError {
    CoreError::invalid("invalid_request", m)
}

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    Health,
    Metadata(String),
    Encrypt(String),
    Decrypt(String),
}

impl Route {
    fn operation(&self) -> Operation {
        match self {
            Route::Health => Operation::ShowStatus,
            Route::Metadata(_) => Operation::GetKey,
            Route::Encrypt(_) => Operation::Encrypt,
            Route::Decrypt(_) => Operation::Decrypt,
        }
    }
}

/// The route of a path below the API's root, or InvalidUriPathException.
fn route(rest: &str) -> Result<Route, CoreError> {
    let invalid = || CoreError::not_found("invalid_uri_path", format!("no XKS API at {rest:?}"));
    if rest == "/health" {
        return Ok(Route::Health);
    }
    let tail = rest.strip_prefix("/keys/").ok_or_else(invalid)?;
    let (id, action) = tail.rsplit_once('/').ok_or_else(invalid)?;
    // The specification's external key ids: 1 to 128 of [a-zA-Z0-9-_.].
    if id.is_empty()
        || id.len() > 128
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(invalid());
    }
    let id = id.to_owned();
    match action {
        "metadata" => Ok(Route::Metadata(id)),
        "encrypt" => Ok(Route::Encrypt(id)),
        "decrypt" => Ok(Route::Decrypt(id)),
        _ => Err(invalid()),
    }
}

/// A request body's fields.
struct Body(Map<String, Value>);

impl Body {
    fn parse(bytes: &[u8]) -> Result<Self, CoreError> {
        match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Object(m)) => Ok(Self(m)),
            _ => Err(validation("the request body must be a JSON object")),
        }
    }

    fn str(&self, name: &str) -> Result<Option<&str>, CoreError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(validation(format!("{name} must be a string"))),
        }
    }

    fn blob(&self, name: &str) -> Result<Option<Vec<u8>>, CoreError> {
        self.str(name)?
            .map(|s| {
                B64.decode(s)
                    .map_err(|_| validation(format!("{name} must be base64")))
            })
            .transpose()
    }

    fn required_blob(&self, name: &str) -> Result<Vec<u8>, CoreError> {
        self.blob(name)?
            .ok_or_else(|| validation(format!("{name} is required")))
    }

    /// `requestMetadata`, which every request must carry.
    fn metadata(&self) -> Result<XksRequest, CoreError> {
        let m = self
            .0
            .get("requestMetadata")
            .and_then(Value::as_object)
            .ok_or_else(|| validation("requestMetadata is required"))?;
        let text = |n: &str| m.get(n).and_then(Value::as_str).map(str::to_owned);
        Ok(XksRequest {
            kms_request_id: text("kmsRequestId")
                .ok_or_else(|| validation("requestMetadata.kmsRequestId is required"))?,
            kms_operation: text("kmsOperation")
                .ok_or_else(|| validation("requestMetadata.kmsOperation is required"))?,
            aws_principal_arn: text("awsPrincipalArn"),
        })
    }

    fn aad(&self) -> Result<Vec<u8>, CoreError> {
        let aad = self
            .blob("additionalAuthenticatedData")?
            .unwrap_or_default();
        if aad.len() > MAX_AAD_BYTES {
            return Err(validation(format!(
                "additionalAuthenticatedData is at most {MAX_AAD_BYTES} bytes"
            )));
        }
        Ok(aad)
    }

    fn check_algorithm(&self) -> Result<(), CoreError> {
        match self.str("encryptionAlgorithm")? {
            Some("AES_GCM") => Ok(()),
            Some(a) => Err(validation(format!(
                "encryptionAlgorithm {a:?} is not supported; use AES_GCM"
            ))),
            None => Err(validation("encryptionAlgorithm is required")),
        }
    }
}

fn key_id(external: &str) -> Result<KeyId, CoreError> {
    uuid::Uuid::parse_str(external)
        .ok()
        .filter(|_| external.len() == 36)
        .map(KeyId)
        .ok_or_else(|| {
            CoreError::not_found(
                "key_not_found",
                format!("external key {external:?} does not exist (external key ids are gateway key ids)"),
            )
        })
}

/// Whether the key can be an external key: HSM-resident AES-256.
fn check_external(key: &crate::store::KeyRecord) -> Result<(), CoreError> {
    if key.hsm_key_label.is_none()
        || key.algorithm != Algorithm::Aes256Gcm
        || key.key_usage != KeyUsage::EncryptDecrypt
    {
        return Err(CoreError::invalid(
            "not_supported",
            "an external key is an HSM-resident AES-256 key (created with protection \"hsm\")",
        ));
    }
    Ok(())
}

pub struct Xks {
    gateway: Arc<Gateway>,
    settings: XksSettings,
    root: String,
}

impl Xks {
    pub fn new(gateway: Arc<Gateway>, settings: XksSettings) -> Self {
        let root = format!(
            "{}{API_PATH}",
            settings.uri_path_prefix.trim_end_matches('/')
        );
        Self {
            gateway,
            settings,
            root,
        }
    }

    async fn respond(
        &self,
        req: Request<Incoming>,
        info: RequestInfo,
    ) -> (HttpResponse, &'static str) {
        let mut caller = info.caller(Frontend::Xks);
        let rest = req.uri().path()[self.root.len()..].to_owned();
        let route = match route(&rest) {
            Ok(r) => r,
            Err(e) => {
                let label = Operation::Unrouted.as_str();
                return (self.refused(&caller, Operation::Unrouted, e).await, label);
            }
        };
        let operation = route.operation();
        let label = operation.as_str();
        if req.method() != Method::POST {
            let e = CoreError::new(
                ErrorKind::NotAllowed,
                "method_not_allowed",
                "the XKS API takes POST only",
            );
            return (self.refused(&caller, operation, e).await, label);
        }
        let subject_ok = match (&self.settings.client_certificate_subject, &info.tls_subject) {
            (Some(want), Some(got)) => want.as_str() == &**got,
            (Some(_), None) => false,
            (None, got) => !self.settings.require_client_certificate || got.is_some(),
        };
        if !subject_ok {
            let e = CoreError::unauthenticated(
                "client_certificate_required",
                "this XKS proxy requires the client certificate it is configured for (mutual TLS)",
            );
            return (self.refused(&caller, operation, e).await, label);
        }
        let (parts, body) = match read_parts(req, info.body).await {
            Ok(pb) => pb,
            Err(e) => return (self.refused(&caller, operation, e).await, label),
        };
        // The operation is in the path, which is signed; AWS KMS signs no content type.
        match authenticate(&self.gateway, &parts, &body, SERVICE, &[]).await {
            Ok(p) => caller.principal = Some(p),
            Err(e) => return (self.refused(&caller, operation, e).await, label),
        }
        let response = match self.dispatch(&caller, route, &body).await {
            Ok(v) => {
                let mut r = json_response(StatusCode::OK, &v);
                r.headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                r
            }
            Err(Refusal::Core(e)) => error_response(&e),
            Err(Refusal::Input(e)) => self.refused(&caller, operation, e).await,
        };
        (response, label)
    }

    async fn dispatch(&self, caller: &Caller, route: Route, body: &[u8]) -> Result<Value, Refusal> {
        let body = Body::parse(body).map_err(Refusal::Input)?;
        let request = match (&route, body.metadata()) {
            (_, Ok(r)) => r,
            // The specification excludes health checks from the metadata requirement.
            (Route::Health, Err(_)) => XksRequest {
                kms_operation: "GetHealthStatus".into(),
                ..Default::default()
            },
            (_, Err(e)) => return Err(Refusal::Input(e)),
        };
        let gw = &self.gateway;
        match route {
            Route::Health => {
                let hsm = gw.hsm_health(caller, &request).await?;
                let fleet: Vec<Value> = hsm
                    .iter()
                    .map(|h| {
                        json!({
                            "id": format!("{} {}", h.label, h.serial),
                            "model": h.model,
                            "healthStatus": if h.healthy { "ACTIVE" } else { "UNAVAILABLE" },
                        })
                    })
                    .collect();
                Ok(json!({
                    "xksProxyFipsCompliant": false,
                    "xksProxyVendor": "KMS Gateway",
                    "xksProxyModel": format!("kms-gateway {}", env!("CARGO_PKG_VERSION")),
                    "ekmVendor": hsm.as_ref().map_or("none (no HSM configured)".to_owned(), |h| h.manufacturer.clone()),
                    "xksProxyFleetSize": 1,
                    "ekmFleetDetails": fleet,
                }))
            }
            Route::Metadata(external) => {
                let id = key_id(&external).map_err(Refusal::Input)?;
                let key = gw.external_key(caller, id, &request).await?;
                check_external(&key)?;
                let enabled = !key.is_disabled && key.deletion_date.is_none();
                Ok(json!({
                    "keySpec": "AES_256",
                    "keyUsage": ["ENCRYPT", "DECRYPT"],
                    "keyStatus": if enabled { "ENABLED" } else { "DISABLED" },
                }))
            }
            Route::Encrypt(external) => {
                let id = key_id(&external).map_err(Refusal::Input)?;
                body.check_algorithm().map_err(Refusal::Input)?;
                let plaintext =
                    Zeroizing::new(body.required_blob("plaintext").map_err(Refusal::Input)?);
                let aad = body.aad().map_err(Refusal::Input)?;
                let integrity = match body
                    .str("ciphertextDataIntegrityValueAlgorithm")
                    .map_err(Refusal::Input)?
                {
                    None => false,
                    Some("SHA_256") => true,
                    Some(a) => {
                        return Err(Refusal::Input(validation(format!(
                        "ciphertextDataIntegrityValueAlgorithm {a:?} is not supported; use SHA_256"
                    ))))
                    }
                };
                let sealed = gw
                    .external_encrypt(caller, id, plaintext, aad.clone(), integrity, &request)
                    .await?;
                let mut answer = json!({
                    "authenticationTag": B64.encode(sealed.tag),
                    "ciphertext": B64.encode(&sealed.ciphertext),
                    "initializationVector": B64.encode(sealed.iv),
                });
                if integrity {
                    // The specification's integrity value: SHA-256 over AAD ‖
                    // ciphertextMetadata (none here) ‖ IV ‖ ciphertext ‖ tag.
                    let mut h = Sha256::new();
                    h.update(&aad);
                    h.update(sealed.iv);
                    h.update(&sealed.ciphertext);
                    h.update(sealed.tag);
                    answer["ciphertextDataIntegrityValue"] = json!(B64.encode(h.finalize()));
                }
                Ok(answer)
            }
            Route::Decrypt(external) => {
                let id = key_id(&external).map_err(Refusal::Input)?;
                body.check_algorithm().map_err(Refusal::Input)?;
                let aad = body.aad().map_err(Refusal::Input)?;
                let not_ours = |m: &str| {
                    Refusal::Input(CoreError::invalid("invalid_ciphertext", m.to_owned()))
                };
                if body
                    .str("ciphertextMetadata")
                    .map_err(Refusal::Input)?
                    .is_some()
                {
                    return Err(not_ours("this proxy makes no ciphertextMetadata, so this ciphertext is not one of its"));
                }
                let iv: [u8; 12] = body
                    .required_blob("initializationVector")
                    .map_err(Refusal::Input)?
                    .try_into()
                    .map_err(|_| {
                        not_ours("initializationVector must be the 12 bytes this proxy made")
                    })?;
                let tag: [u8; 16] = body
                    .required_blob("authenticationTag")
                    .map_err(Refusal::Input)?
                    .try_into()
                    .map_err(|_| not_ours("authenticationTag must be 16 bytes"))?;
                let ciphertext = body.required_blob("ciphertext").map_err(Refusal::Input)?;
                let plaintext = gw
                    .external_decrypt(
                        caller,
                        id,
                        ExternalSealed {
                            iv,
                            ciphertext,
                            tag,
                        },
                        aad,
                        &request,
                    )
                    .await?;
                Ok(json!({ "plaintext": B64.encode(plaintext.as_slice()) }))
            }
        }
    }

    async fn refused(&self, caller: &Caller, operation: Operation, e: CoreError) -> HttpResponse {
        error_response(&self.gateway.refuse(caller, operation, e).await)
    }
}

/// Why a handler did not answer: from a core operation (audited), or the adapter's own
/// refusal (audited through `refuse`).
enum Refusal {
    Core(CoreError),
    Input(CoreError),
}

impl From<CoreError> for Refusal {
    fn from(e: CoreError) -> Self {
        Refusal::Core(e)
    }
}

impl HttpFrontend for Xks {
    fn name(&self) -> &'static str {
        Frontend::Xks.as_str()
    }

    fn claims(&self, req: &Request<Incoming>) -> bool {
        let path = req.uri().path();
        self.settings.enabled
            && path.starts_with(&self.root)
            && path[self.root.len()..].starts_with('/')
    }

    fn handle(
        &self,
        req: Request<Incoming>,
        info: RequestInfo,
    ) -> BoxFuture<'_, (HttpResponse, &'static str)> {
        Box::pin(self.respond(req, info))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_the_specifications() {
        let id = "0b9c6f1e-6c1d-4b7e-9d0a-1f2e3d4c5b6a";
        assert_eq!(route("/health").unwrap(), Route::Health);
        assert_eq!(
            route(&format!("/keys/{id}/metadata")).unwrap(),
            Route::Metadata(id.into())
        );
        assert_eq!(
            route(&format!("/keys/{id}/encrypt")).unwrap(),
            Route::Encrypt(id.into())
        );
        assert_eq!(
            route(&format!("/keys/{id}/decrypt")).unwrap(),
            Route::Decrypt(id.into())
        );
        for bad in [
            "/",
            "/healthz",
            "/keys//encrypt",
            "/keys/a b/encrypt",
            "/keys/x/sign",
            "/keys/x",
        ] {
            assert_eq!(route(bad).unwrap_err().code, "invalid_uri_path", "{bad}");
        }
        assert_eq!(
            exception(&route("/nope").unwrap_err()),
            ("InvalidUriPathException", StatusCode::NOT_FOUND)
        );
        assert_eq!(
            exception(&key_id("not-a-uuid").unwrap_err()),
            ("KeyNotFoundException", StatusCode::NOT_FOUND)
        );
    }
}
