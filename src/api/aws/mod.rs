//! The AWS front-ends. This one is the AWS KMS JSON 1.1 API: `POST /` with `X-Amz-Target:
//! TrentService.<Operation>` and `Content-Type: application/x-amz-json-1.1`, signed with
//! Signature Version 4 (service `kms`) by an identity's access key, so that boto3, the AWS
//! CLI, the AWS Encryption SDK and every other AWS SDK use the gateway's keys with only a
//! custom endpoint. A thin adapter over the one core: it authenticates, turns AWS's
//! fields into the core's typed requests and renders results in AWS's shapes; policy is
//! the core's. Keys live in the caller's project and are the same keys the native API
//! sees. docs/AWS.md lists what maps to what, and every difference.

mod crypto;
mod error;
mod fields;
mod keys;
pub mod sigv4;
pub mod xks;

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use serde_json::{Map, Value};

use super::http::{json_response, read_body, Failure, HttpFrontend, HttpResponse, RequestInfo};
use super::listener::BoxFuture;
use crate::core::{Caller, CoreError, Frontend, Gateway, KeyId, Operation, ProjectId};
pub use fields::B64;
use fields::{lower_first, Fields, Refusal};

/// The service name requests are signed for.
pub const SERVICE: &str = "kms";
const TARGET_PREFIX: &str = "TrentService.";

/// What key and alias ARNs say: `arn:aws:kms:<region>:<account_id>:key/<uuid>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arns {
    pub region: String,
    pub account_id: String,
}

impl Arns {
    fn prefix(&self) -> String {
        format!("arn:aws:kms:{}:{}:", self.region, self.account_id)
    }

    pub fn key(&self, id: uuid::Uuid) -> String {
        format!("{}key/{id}", self.prefix())
    }

    pub fn alias(&self, name: &str) -> String {
        format!("{}alias/{name}", self.prefix())
    }
}

/// A `KeyId` as AWS takes it: the key id, its ARN, `alias/<name>` or the alias's ARN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyRef {
    Id(KeyId),
    Alias(String),
}

impl KeyRef {
    pub fn parse(arns: &Arns, s: &str) -> Result<Self, CoreError> {
        let not_found = || CoreError::not_found("key_not_found", format!("Invalid keyId '{s}'"));
        let (is_arn, rest) = match s.strip_prefix("arn:") {
            Some(_) => (
                true,
                s.strip_prefix(&arns.prefix()).ok_or_else(|| {
                    CoreError::not_found(
                        "key_not_found",
                        format!(
                            "Invalid arn '{s}': this gateway's ARNs start with {}",
                            arns.prefix()
                        ),
                    )
                })?,
            ),
            None => (false, s),
        };
        if let Some(name) = rest.strip_prefix("alias/") {
            return Ok(KeyRef::Alias(name.to_owned()));
        }
        let id = match is_arn {
            true => rest.strip_prefix("key/").ok_or_else(not_found)?,
            false => rest,
        };
        uuid::Uuid::parse_str(id)
            .ok()
            .filter(|_| id.len() == 36)
            .map(|u| KeyRef::Id(KeyId(u)))
            .ok_or_else(not_found)
    }
}

/// What a handler gets: the caller and the request's fields.
pub(crate) struct Ctx<'a> {
    pub gateway: &'a Gateway,
    pub caller: &'a Caller,
    pub arns: &'a Arns,
    pub operation: &'a str,
    pub params: Map<String, Value>,
}

pub(crate) type Reply = Result<Value, Failure>;

fn input(e: CoreError) -> Failure {
    Failure::Input(e)
}

impl From<Refusal> for Failure {
    fn from(r: Refusal) -> Self {
        input(CoreError::invalid(r.code, r.message))
    }
}

impl Ctx<'_> {
    fn fields(&self) -> Fields<'_> {
        Fields(&self.params)
    }

    pub fn str(&self, name: &str) -> Result<Option<&str>, Failure> {
        Ok(self.fields().str(name)?)
    }

    pub fn required_str(&self, name: &str) -> Result<&str, Failure> {
        Ok(self.fields().required_str(name)?)
    }

    pub fn int(&self, name: &str) -> Result<Option<i64>, Failure> {
        Ok(self.fields().int(name)?)
    }

    /// A blob field (base64 in the JSON protocol).
    pub fn required_blob(&self, name: &str) -> Result<Vec<u8>, Failure> {
        Ok(self.fields().required_blob(name)?)
    }

    /// A map of strings (`EncryptionContext`); empty when absent.
    pub fn string_map(&self, name: &str) -> Result<crate::core::crypto::Context, Failure> {
        Ok(self.fields().string_map(name)?)
    }

    pub fn list(&self, name: &str) -> Result<Vec<Value>, Failure> {
        Ok(self.fields().list(name)?)
    }

    /// Refuses a field this gateway does not support when it is set.
    pub fn refuse_field(&self, name: &str, why: &str) -> Result<(), Failure> {
        Ok(self.fields().refuse_field(name, why)?)
    }

    /// The caller's project: AWS has no project parameter, so an identity bound to one
    /// is needed for creating, listing and aliases.
    pub fn project(&self) -> Result<ProjectId, Failure> {
        match self.caller.principal.as_ref().and_then(|p| p.project) {
            Some(p) => Ok(ProjectId(p)),
            None => Err(input(error::validation(
                "this operation needs an identity bound to a project (its access key names the project whose keys it works on)",
            ))),
        }
    }

    /// The key a `KeyId`-like field names (aliases looked up in the caller's project).
    pub async fn key_of(&self, value: &str) -> Result<KeyId, Failure> {
        match KeyRef::parse(self.arns, value).map_err(input)? {
            KeyRef::Id(id) => Ok(id),
            KeyRef::Alias(name) => {
                let project = self.project().map_err(|_| {
                    input(CoreError::not_found(
                        "alias_not_found",
                        format!("Alias {} is not found.", self.arns.alias(&name)),
                    ))
                })?;
                self.gateway
                    .resolve_alias(self.caller, project, &name)
                    .await
                    .map_err(|e| match e.code {
                        "alias_not_found" => input(CoreError::not_found(
                            "alias_not_found",
                            format!("Alias {} is not found.", self.arns.alias(&name)),
                        )),
                        _ => input(e),
                    })
            }
        }
    }

    /// The key of a required field.
    pub async fn key(&self, field: &str) -> Result<KeyId, Failure> {
        let value = self.required_str(field)?.to_owned();
        self.key_of(&value).await
    }

    pub fn arn(&self, id: KeyId) -> Value {
        Value::String(self.arns.key(id.0))
    }
}

/// The core operation an AWS operation is (for metrics and the audit of a refusal).
fn operation_of(name: &str) -> Operation {
    use Operation as O;
    match name {
        "CreateKey" => O::CreateKey,
        "DescribeKey" | "GetKeyRotationStatus" | "ListKeyRotations" => O::GetKey,
        "ListKeys" => O::ListKeys,
        "CreateAlias" => O::CreateAlias,
        "UpdateAlias" => O::UpdateAlias,
        "DeleteAlias" => O::DeleteAlias,
        "ListAliases" => O::ListAliases,
        "Encrypt" => O::Encrypt,
        "Decrypt" => O::Decrypt,
        "ReEncrypt" => O::ReEncrypt,
        "GenerateDataKey" => O::GenerateDataKey,
        "GenerateDataKeyWithoutPlaintext" => O::GenerateDataKeyWithoutPlaintext,
        "GenerateRandom" => O::GenerateRandom,
        "Sign" => O::Sign,
        "Verify" => O::Verify,
        "GetPublicKey" => O::PublicKey,
        "EnableKey"
        | "DisableKey"
        | "EnableKeyRotation"
        | "DisableKeyRotation"
        | "UpdateKeyDescription" => O::UpdateKey,
        "ScheduleKeyDeletion" => O::ScheduleKeyDeletion,
        "CancelKeyDeletion" => O::CancelKeyDeletion,
        "RotateKeyOnDemand" => O::RotateKey,
        "ListResourceTags" => O::GetKeyAttributes,
        "TagResource" | "UntagResource" => O::UpdateKeyAttributes,
        "GenerateMac" => O::GenerateMac,
        "VerifyMac" => O::VerifyMac,
        _ => O::Unrouted,
    }
}

fn sig_error(e: sigv4::SigError) -> CoreError {
    use sigv4::SigError as S;
    let code = match &e {
        S::Missing => "missing_authentication",
        S::Incomplete(_) | S::WrongService(_) => "incomplete_signature",
        S::Expired(_) => "signature_expired",
        S::PayloadHash => "payload_hash_mismatch",
        S::Mismatch => "signature_mismatch",
    };
    CoreError::unauthenticated(code, e.message())
}

fn now_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

pub struct Aws {
    gateway: Arc<Gateway>,
    arns: Arns,
}

impl Aws {
    pub fn new(gateway: Arc<Gateway>, arns: Arns) -> Self {
        Self { gateway, arns }
    }

    async fn respond(
        &self,
        req: Request<Incoming>,
        info: RequestInfo,
    ) -> (HttpResponse, &'static str) {
        let mut caller = info.caller(Frontend::Aws);
        let target = req
            .headers()
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .and_then(|t| t.strip_prefix(TARGET_PREFIX))
            .unwrap_or_default()
            .to_owned();
        let operation = operation_of(&target);
        let label = operation.as_str();
        if req.method() != Method::POST || req.uri().path() != "/" {
            let e = error::unsupported("the AWS KMS API takes POST / only");
            return (self.refused(&caller, operation, e).await, label);
        }
        let (parts, body) = match read_parts(req, info.body).await {
            Ok(pb) => pb,
            Err(e) => return (self.refused(&caller, operation, e).await, label),
        };
        // The operation is in X-Amz-Target: it must be signed, as the content type.
        match authenticate(&self.gateway, &parts, &body, SERVICE, &["content-type"]).await {
            Ok(p) => caller.principal = Some(p),
            Err(e) => return (self.refused(&caller, operation, e).await, label),
        }
        if operation == Operation::Unrouted {
            let e = if target.is_empty() {
                error::unsupported("the X-Amz-Target header must be TrentService.<Operation>")
            } else {
                error::unsupported(format!("{target} is not supported by this gateway"))
            };
            return (self.refused(&caller, operation, e).await, label);
        }
        let params = match fields::parse_body(&body) {
            Ok(p) => p,
            Err(r) => {
                let e = CoreError::invalid(r.code, r.message);
                return (self.refused(&caller, operation, e).await, label);
            }
        };
        let ctx = Ctx {
            gateway: &self.gateway,
            caller: &caller,
            arns: &self.arns,
            operation: &target,
            params,
        };
        let response = match dispatch(&ctx).await {
            Ok(body) => ok(&body, &caller.request_id),
            Err(Failure::Core(e)) => error::response(&e, &caller.request_id),
            Err(Failure::Input(e)) => self.refused(&caller, operation, e).await,
        };
        (response, label)
    }

    async fn refused(&self, caller: &Caller, operation: Operation, e: CoreError) -> HttpResponse {
        let e = self.gateway.refuse(caller, operation, e).await;
        error::response(&e, &caller.request_id)
    }
}

/// The request's head and its body, read within `max` bytes.
pub(crate) async fn read_parts(
    req: Request<Incoming>,
    limits: crate::api::http::BodyLimits,
) -> Result<(hyper::http::request::Parts, hyper::body::Bytes), CoreError> {
    let (parts, body) = req.into_parts();
    let mut body_req = Request::new(body);
    if let Some(len) = parts.headers.get(CONTENT_LENGTH) {
        body_req.headers_mut().insert(CONTENT_LENGTH, len.clone());
    }
    let body = read_body(body_req, limits).await?;
    Ok((parts, body))
}

/// Who signed the request with Signature Version 4 for `service`: the header's form,
/// scope and age are checked first, then the access key's secret checks the signature.
pub(crate) async fn authenticate(
    gateway: &Gateway,
    parts: &hyper::http::request::Parts,
    body: &[u8],
    service: &str,
    must_sign: &[&str],
) -> Result<Arc<crate::core::Principal>, CoreError> {
    let host = parts
        .headers
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .or(parts.uri.authority().map(|a| a.as_str()));
    let signed = sigv4::SignedRequest {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query(),
        host,
        headers: &parts.headers,
        body,
    };
    let now = now_seconds();
    let auth = sigv4::parse_authorization(&parts.headers)
        .and_then(|a| sigv4::precheck(&signed, &a, service, must_sign, now).map(|()| a))
        .map_err(sig_error)?;
    gateway
        .authenticate_access_key(&auth.access_key_id, |secret| {
            sigv4::verify(&signed, &auth, service, secret, now).map_err(sig_error)
        })
        .await
}

fn ok(body: &Value, request_id: &str) -> HttpResponse {
    let mut r = json_response(StatusCode::OK, body);
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(error::CONTENT_TYPE_JSON),
    );
    if let Ok(v) = HeaderValue::from_str(request_id) {
        r.headers_mut().insert("x-amzn-requestid", v);
    }
    r
}

async fn dispatch(ctx: &Ctx<'_>) -> Reply {
    match ctx.operation {
        "CreateKey" => keys::create(ctx).await,
        "DescribeKey" => keys::describe(ctx).await,
        "ListKeys" => keys::list(ctx).await,
        "UpdateKeyDescription" => keys::update_description(ctx).await,
        "EnableKey" => keys::set_enabled(ctx, true).await,
        "DisableKey" => keys::set_enabled(ctx, false).await,
        "ScheduleKeyDeletion" => keys::schedule_deletion(ctx).await,
        "CancelKeyDeletion" => keys::cancel_deletion(ctx).await,
        "EnableKeyRotation" => keys::set_rotation(ctx, true).await,
        "DisableKeyRotation" => keys::set_rotation(ctx, false).await,
        "GetKeyRotationStatus" => keys::rotation_status(ctx).await,
        "RotateKeyOnDemand" => keys::rotate(ctx).await,
        "ListKeyRotations" => keys::list_rotations(ctx).await,
        "CreateAlias" => keys::create_alias(ctx).await,
        "UpdateAlias" => keys::update_alias(ctx).await,
        "DeleteAlias" => keys::delete_alias(ctx).await,
        "ListAliases" => keys::list_aliases(ctx).await,
        "ListResourceTags" => keys::list_tags(ctx).await,
        "TagResource" => keys::tag(ctx).await,
        "UntagResource" => keys::untag(ctx).await,
        "GetPublicKey" => crypto::public_key(ctx).await,
        "Encrypt" => crypto::encrypt(ctx).await,
        "Decrypt" => crypto::decrypt(ctx).await,
        "ReEncrypt" => crypto::re_encrypt(ctx).await,
        "GenerateDataKey" => crypto::data_key(ctx, true).await,
        "GenerateDataKeyWithoutPlaintext" => crypto::data_key(ctx, false).await,
        "GenerateRandom" => crypto::random(ctx).await,
        "Sign" => crypto::sign(ctx).await,
        "Verify" => crypto::verify(ctx).await,
        "GenerateMac" => crypto::generate_mac(ctx).await,
        "VerifyMac" => crypto::verify_mac(ctx).await,
        other => Err(input(error::unsupported(format!(
            "{other} is not supported by this gateway"
        )))),
    }
}

impl HttpFrontend for Aws {
    fn name(&self) -> &'static str {
        Frontend::Aws.as_str()
    }

    fn claims(&self, req: &Request<Incoming>) -> bool {
        req.headers()
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with(TARGET_PREFIX))
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
    fn key_ids_come_in_four_forms() {
        let arns = Arns {
            region: "eu-west-3".into(),
            account_id: "123456789012".into(),
        };
        let id = uuid::Uuid::new_v4();
        let key = KeyRef::Id(KeyId(id));
        assert_eq!(KeyRef::parse(&arns, &id.to_string()).unwrap(), key);
        assert_eq!(KeyRef::parse(&arns, &arns.key(id)).unwrap(), key);
        assert_eq!(
            KeyRef::parse(&arns, "alias/app/prod").unwrap(),
            KeyRef::Alias("app/prod".into())
        );
        assert_eq!(
            KeyRef::parse(&arns, &arns.alias("app")).unwrap(),
            KeyRef::Alias("app".into())
        );
        for bad in [
            "nonsense".to_owned(),
            format!("key/{id}"),
            format!("arn:aws:kms:us-east-1:123456789012:key/{id}"),
            format!("arn:aws:kms:eu-west-3:000000000000:key/{id}"),
            format!("arn:aws:kms:eu-west-3:123456789012:{id}"),
            id.simple().to_string(),
        ] {
            assert_eq!(
                KeyRef::parse(&arns, &bad).unwrap_err().code,
                "key_not_found",
                "{bad}"
            );
        }
    }
}
