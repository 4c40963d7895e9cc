//! The native API's routes: one table of method, path template and core operation, used
//! to match requests, to label metrics, and (in a test) to check that the OpenAPI
//! document describes every route.

use hyper::Method;

use super::{admin, crypto, identities, keys, Input, Reply};
use crate::core::Operation;

/// One route. `{name}` in a template matches one path segment.
pub struct Route {
    pub method: Method,
    pub template: &'static str,
    pub operation: Operation,
    /// False for the routes that need no credentials (login, renew, the document).
    pub authenticated: bool,
}

const fn route(method: Method, template: &'static str, operation: Operation) -> Route {
    Route {
        method,
        template,
        operation,
        authenticated: true,
    }
}

const fn public(method: Method, template: &'static str, operation: Operation) -> Route {
    Route {
        method,
        template,
        operation,
        authenticated: false,
    }
}

use Operation as O;

/// Every route of the native API.
pub static ROUTES: &[Route] = &[
    public(Method::GET, "/api/v1/openapi.json", O::ShowOpenApi),
    public(Method::POST, "/api/v1/auth/universal-auth/login", O::Login),
    public(Method::POST, "/api/v1/auth/token/renew", O::RenewToken),
    route(Method::GET, "/api/v1/status", O::ShowStatus),
    route(Method::POST, "/api/v1/projects", O::CreateProject),
    route(Method::GET, "/api/v1/projects", O::ListProjects),
    route(
        Method::GET,
        "/api/v1/admin/encryption-strategy",
        O::ShowStrategy,
    ),
    route(
        Method::PATCH,
        "/api/v1/admin/encryption-strategy",
        O::SetStrategy,
    ),
    route(Method::GET, "/api/v1/admin/system", O::ShowSystem),
    route(Method::GET, "/api/v1/audit", O::ReadAudit),
    route(Method::GET, "/api/v1/audit/verify", O::VerifyAudit),
    route(Method::POST, "/api/v1/identities", O::CreateIdentity),
    route(Method::GET, "/api/v1/identities", O::ListIdentities),
    route(
        Method::DELETE,
        "/api/v1/identities/{identityId}",
        O::RevokeIdentity,
    ),
    route(
        Method::POST,
        "/api/v1/identities/{identityId}/rotate-token",
        O::RotateIdentityToken,
    ),
    route(
        Method::POST,
        "/api/v1/identities/{identityId}/access-keys",
        O::CreateAccessKey,
    ),
    route(
        Method::GET,
        "/api/v1/identities/{identityId}/access-keys",
        O::ListAccessKeys,
    ),
    route(
        Method::DELETE,
        "/api/v1/identities/{identityId}/access-keys/{accessKeyId}",
        O::DeleteAccessKey,
    ),
    route(Method::POST, "/api/v1/kms/keys", O::CreateKey),
    route(Method::GET, "/api/v1/kms/keys", O::ListKeys),
    route(
        Method::GET,
        "/api/v1/kms/keys/key-name/{keyName}",
        O::GetKeyByName,
    ),
    route(Method::GET, "/api/v1/kms/keys/{keyId}", O::GetKey),
    route(Method::PATCH, "/api/v1/kms/keys/{keyId}", O::UpdateKey),
    route(
        Method::DELETE,
        "/api/v1/kms/keys/{keyId}",
        O::ScheduleKeyDeletion,
    ),
    route(
        Method::POST,
        "/api/v1/kms/keys/{keyId}/cancel-deletion",
        O::CancelKeyDeletion,
    ),
    route(
        Method::POST,
        "/api/v1/kms/keys/{keyId}/rotate",
        O::RotateKey,
    ),
    route(Method::POST, "/api/v1/kms/keys/{keyId}/encrypt", O::Encrypt),
    route(Method::POST, "/api/v1/kms/keys/{keyId}/decrypt", O::Decrypt),
    route(Method::POST, "/api/v1/kms/keys/{keyId}/sign", O::Sign),
    route(Method::POST, "/api/v1/kms/keys/{keyId}/verify", O::Verify),
    route(
        Method::GET,
        "/api/v1/kms/keys/{keyId}/public-key",
        O::PublicKey,
    ),
    route(
        Method::GET,
        "/api/v1/kms/keys/{keyId}/signing-algorithms",
        O::SigningAlgorithms,
    ),
    route(
        Method::POST,
        "/api/v1/kms/keys/{keyId}/generate-mac",
        O::GenerateMac,
    ),
    route(
        Method::POST,
        "/api/v1/kms/keys/{keyId}/verify-mac",
        O::VerifyMac,
    ),
    route(
        Method::POST,
        "/api/v1/kms/keys/{keyId}/generate-data-key",
        O::GenerateDataKey,
    ),
    route(
        Method::POST,
        "/api/v1/kms/keys/{keyId}/generate-data-key-without-plaintext",
        O::GenerateDataKeyWithoutPlaintext,
    ),
    route(
        Method::POST,
        "/api/v1/kms/keys/{keyId}/re-encrypt",
        O::ReEncrypt,
    ),
];

pub enum Match {
    Found(&'static Route, Vec<String>),
    /// The path exists, not with this method.
    WrongMethod,
    None,
}

pub fn find(method: &Method, path: &str) -> Match {
    let path = if path.len() > 1 {
        path.trim_end_matches('/')
    } else {
        path
    };
    // The first route in the list wins: a literal one over a template one (`key-name/x`
    // over `{keyId}`). The method is compared first, as it is cheaper than the path.
    if let Some(r) = ROUTES
        .iter()
        .find(|r| r.method == *method && fits(r.template, path))
    {
        return Match::Found(r, params(r.template, path));
    }
    if ROUTES.iter().any(|r| fits(r.template, path)) {
        Match::WrongMethod
    } else {
        Match::None
    }
}

/// Whether `path` fits `template`: literal bytes equal, each `{…}` (always a whole
/// segment) standing for one non-empty segment. A byte walk that allocates nothing and
/// stops at the first difference: it runs for every route of every request.
fn fits(template: &str, path: &str) -> bool {
    let (t, p) = (template.as_bytes(), path.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < t.len() {
        if t[i] == b'{' {
            i += t[i..]
                .iter()
                .position(|&b| b == b'}')
                .map_or(t.len(), |n| n + 1);
            let start = j;
            while j < p.len() && p[j] != b'/' {
                j += 1;
            }
            if j == start {
                return false;
            }
        } else if j < p.len() && p[j] == t[i] {
            i += 1;
            j += 1;
        } else {
            return false;
        }
    }
    j == p.len()
}

/// The `{…}` segments of `path`, which `fits` `template`, percent-decoded.
fn params(template: &str, path: &str) -> Vec<String> {
    template
        .split('/')
        .zip(path.split('/'))
        .filter(|(w, _)| w.starts_with('{'))
        // Percent-decoding of a path segment: `+` and `&` are themselves here, not a
        // space and a separator as in a query.
        .map(|(_, h)| {
            percent_encoding::percent_decode_str(h)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect()
}

/// Runs the handler of `operation`.
pub async fn dispatch(operation: Operation, input: Input<'_>) -> Reply {
    match operation {
        O::ShowStatus => admin::status(input).await,
        O::CreateProject => admin::create_project(input).await,
        O::ListProjects => admin::list_projects(input).await,
        O::ShowStrategy => admin::encryption_strategy(input, false).await,
        O::SetStrategy => admin::encryption_strategy(input, true).await,
        O::ReadAudit => admin::audit_page(input).await,
        O::VerifyAudit => admin::verify_audit(input).await,
        O::ShowSystem => admin::system(input).await,
        O::Login => identities::login(input).await,
        O::RenewToken => identities::renew(input).await,
        O::CreateIdentity => identities::create(input).await,
        O::ListIdentities => identities::list(input).await,
        O::RevokeIdentity => identities::revoke(input).await,
        O::RotateIdentityToken => identities::rotate_token(input).await,
        O::CreateAccessKey => identities::create_access_key(input).await,
        O::ListAccessKeys => identities::list_access_keys(input).await,
        O::DeleteAccessKey => identities::delete_access_key(input).await,
        O::CreateKey => keys::create(input).await,
        O::ListKeys => keys::list(input).await,
        O::GetKeyByName => keys::by_name(input).await,
        O::GetKey => keys::get(input).await,
        O::UpdateKey => keys::update(input).await,
        O::ScheduleKeyDeletion => keys::delete(input).await,
        O::CancelKeyDeletion => keys::cancel_deletion(input).await,
        O::RotateKey => keys::rotate(input).await,
        O::Encrypt => crypto::encrypt(input).await,
        O::Decrypt => crypto::decrypt(input).await,
        O::Sign => crypto::sign(input).await,
        O::Verify => crypto::verify(input).await,
        O::PublicKey => crypto::public_key(input).await,
        O::SigningAlgorithms => crypto::signing_algorithms(input).await,
        O::GenerateMac => crypto::generate_mac(input).await,
        O::VerifyMac => crypto::verify_mac(input).await,
        O::GenerateDataKey | O::GenerateDataKeyWithoutPlaintext => {
            crypto::generate_data_key(input).await
        }
        O::ReEncrypt => crypto::re_encrypt(input).await,
        _ => Err(super::Failure::Input(crate::core::CoreError::not_found(
            "not_found",
            "no such endpoint",
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_routes_win_and_methods_are_told_apart() {
        match find(&Method::GET, "/api/v1/kms/keys/key-name/orders") {
            Match::Found(r, p) => {
                assert_eq!(r.operation, O::GetKeyByName);
                assert_eq!(p, vec!["orders".to_string()]);
            }
            _ => panic!("key-name route not found"),
        }
        assert!(
            matches!(find(&Method::GET, "/api/v1/kms/keys/abc/"), Match::Found(r, _) if r.operation == O::GetKey)
        );
        assert!(matches!(
            find(&Method::PUT, "/api/v1/kms/keys/abc"),
            Match::WrongMethod
        ));
        assert!(matches!(find(&Method::GET, "/api/v1/nothing"), Match::None));
        assert!(matches!(
            find(&Method::GET, "/api/v1/kms/keys//encrypt"),
            Match::None
        ));
    }

    /// The byte walk of `fits` decides as segment-by-segment matching does, for every
    /// template against paths made from every template and from near misses.
    #[test]
    fn fits_is_segment_matching() {
        fn by_segments(template: &str, path: &str) -> bool {
            let (want, have): (Vec<_>, Vec<_>) =
                (template.split('/').collect(), path.split('/').collect());
            want.len() == have.len()
                && want.iter().zip(&have).all(|(w, h)| {
                    if w.starts_with('{') {
                        !h.is_empty()
                    } else {
                        w == h
                    }
                })
        }
        let mut paths = vec![
            String::new(),
            "/".into(),
            "/api".into(),
            "/api/v1/kms/keys/".into(),
        ];
        for r in ROUTES {
            for fill in ["k", "0b4e-9c", "", "a%2Fb", "key-name", "x/y"] {
                let path = r
                    .template
                    .split('/')
                    .map(|seg| if seg.starts_with('{') { fill } else { seg });
                let path = path.collect::<Vec<_>>().join("/");
                paths.extend([
                    path.clone(),
                    format!("{path}/"),
                    format!("{path}x"),
                    format!("{path}/more"),
                ]);
                paths.push(path[..path.len().saturating_sub(1)].to_owned());
            }
        }
        for r in ROUTES {
            for path in &paths {
                assert_eq!(
                    fits(r.template, path),
                    by_segments(r.template, path),
                    "{} vs {path:?}",
                    r.template
                );
            }
        }
    }

    #[test]
    fn a_key_name_in_the_path_is_percent_decoded_whole() {
        // `&` cut the name short while segments were decoded as a form.
        for (segment, name) in [
            ("a&b", "a&b"),
            ("a%26b=c", "a&b=c"),
            ("a+b", "a+b"),
            ("a%20b", "a b"),
            ("%E2%82%AC", "\u{20ac}"),
        ] {
            let path = format!("/api/v1/kms/keys/key-name/{segment}");
            match find(&Method::GET, &path) {
                Match::Found(r, p) => {
                    assert_eq!(r.operation, O::GetKeyByName);
                    assert_eq!(p, vec![name.to_string()], "{segment}");
                }
                _ => panic!("key-name route not found for {segment}"),
            }
        }
    }

    /// Every route is in the OpenAPI document, with its method; and the document has no
    /// path the router does not serve.
    #[test]
    fn the_openapi_document_describes_every_route() {
        let doc: serde_json::Value =
            serde_json::from_str(super::super::OPENAPI).expect("openapi.json is JSON");
        assert!(doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")));
        let paths = doc["paths"].as_object().expect("paths");
        for r in ROUTES {
            let item = paths.get(r.template).unwrap_or_else(|| {
                panic!("{} {} has no entry in openapi.json", r.method, r.template)
            });
            let method = r.method.as_str().to_ascii_lowercase();
            assert!(
                item.get(&method).is_some(),
                "{} {} has no operation in openapi.json",
                r.method,
                r.template
            );
        }
        for (path, item) in paths {
            for method in item.as_object().expect("path item").keys() {
                if ["parameters", "summary", "description"].contains(&method.as_str()) {
                    continue;
                }
                let served = ROUTES
                    .iter()
                    .any(|r| r.template == path && r.method.as_str().eq_ignore_ascii_case(method));
                assert!(
                    served,
                    "openapi.json describes {method} {path}, which no route serves"
                );
            }
        }
    }
}
