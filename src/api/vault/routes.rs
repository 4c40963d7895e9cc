//! Vault's paths under `/v1/`: `sys/health`, the token's own `lookup-self` and
//! `renew-self`, and the Transit engine's paths under each configured mount (Vault's
//! "Transit secrets engine (API)" documentation), with the methods Vault takes for them:
//! reads are GET, writes POST or PUT, lists the LIST method or `GET ?list=true`.

use hyper::Method;

use super::error::{method_not_allowed, unsupported_path};
use crate::core::{CoreError, Operation, ProjectId};

/// A Transit mount and the project whose keys it serves (`None`: the caller's own).
#[derive(Debug, Clone)]
pub struct Mount {
    pub name: String,
    pub project: Option<ProjectId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Health,
    LookupSelf,
    RenewSelf,
    ListKeys,
    CreateKey,
    ReadKey,
    DeleteKey,
    ConfigKey,
    RotateKey,
    TrimKey,
    Encrypt,
    Decrypt,
    Rewrap,
    DataKey,
    Hmac,
    Sign,
    Verify,
    Random,
    Hash,
}

impl Kind {
    /// The core operation a request of this kind is (named in its audit record if it is
    /// refused before the operation runs, and in metrics).
    pub fn operation(self) -> Operation {
        use Kind as K;
        match self {
            K::Health => Operation::ShowStatus,
            K::LookupSelf | K::RenewSelf => Operation::LookupToken,
            K::ListKeys => Operation::ListKeys,
            K::CreateKey => Operation::CreateKey,
            K::ReadKey => Operation::GetKey,
            K::DeleteKey => Operation::ScheduleKeyDeletion,
            K::ConfigKey | K::TrimKey => Operation::UpdateKey,
            K::RotateKey => Operation::RotateKey,
            K::Encrypt => Operation::Encrypt,
            K::Decrypt => Operation::Decrypt,
            K::Rewrap => Operation::ReEncrypt,
            K::DataKey => Operation::GenerateDataKey,
            K::Hmac => Operation::GenerateMac,
            K::Sign => Operation::Sign,
            K::Verify => Operation::Verify,
            K::Random => Operation::GenerateRandom,
            K::Hash => Operation::Hash,
        }
    }
}

/// A matched request.
#[derive(Debug, Clone)]
pub struct Target {
    pub kind: Kind,
    /// The mount's project, if it names one.
    pub project: Option<ProjectId>,
    /// The key's name (empty where the path names none).
    pub name: String,
    /// The path's optional last parameter: a hash or HMAC algorithm, the data key type,
    /// or the random source.
    pub arg: Option<String>,
    /// The second optional parameter of `random/:source/:bytes`.
    pub arg2: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Verb {
    Read,
    Write,
    List,
    Delete,
}

fn verb(method: &Method, list_query: bool) -> Option<Verb> {
    match method.as_str() {
        "GET" | "HEAD" if list_query => Some(Verb::List),
        "GET" | "HEAD" => Some(Verb::Read),
        "POST" | "PUT" => Some(Verb::Write),
        "LIST" => Some(Verb::List),
        "DELETE" => Some(Verb::Delete),
        _ => None,
    }
}

/// Whether the query asks for a listing (`list=true`, as Vault's clients send it).
fn list_query(query: Option<&str>) -> bool {
    query.is_some_and(|q| {
        form_urlencoded::parse(q.as_bytes()).any(|(k, v)| k == "list" && (v == "true" || v == "1"))
    })
}

/// The target of `method` on `path` (which starts with `/v1/`).
pub fn find(
    mounts: &[Mount],
    method: &Method,
    path: &str,
    query: Option<&str>,
) -> Result<Target, CoreError> {
    let rest = path.strip_prefix("/v1/").ok_or_else(unsupported_path)?;
    let segments: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    if segments.iter().any(|s| s.is_empty()) {
        return Err(unsupported_path());
    }
    let verb = verb(method, list_query(query)).ok_or_else(method_not_allowed)?;
    let target = |kind, project, name: &str, arg: Option<&&str>, arg2: Option<&&str>| Target {
        kind,
        project,
        name: name.to_owned(),
        arg: arg.map(|s| (*s).to_owned()),
        arg2: arg2.map(|s| (*s).to_owned()),
    };
    let allow = |ok: bool, t: Target| if ok { Ok(t) } else { Err(method_not_allowed()) };
    match segments.as_slice() {
        ["sys", "health"] => allow(
            verb == Verb::Read,
            target(Kind::Health, None, "", None, None),
        ),
        ["auth", "token", "lookup-self"] => allow(
            matches!(verb, Verb::Read | Verb::Write),
            target(Kind::LookupSelf, None, "", None, None),
        ),
        ["auth", "token", "renew-self"] => allow(
            verb == Verb::Write,
            target(Kind::RenewSelf, None, "", None, None),
        ),
        [mount, tail @ ..] => {
            let mount = mounts
                .iter()
                .find(|m| m.name == *mount)
                .ok_or_else(unsupported_path)?;
            let p = mount.project;
            let w = verb == Verb::Write;
            use Kind as K;
            match (tail, verb) {
                (["keys"], Verb::List) => Ok(target(K::ListKeys, p, "", None, None)),
                (["keys", name], Verb::Write) => Ok(target(K::CreateKey, p, name, None, None)),
                (["keys", name], Verb::Read) => Ok(target(K::ReadKey, p, name, None, None)),
                (["keys", name], Verb::Delete) => Ok(target(K::DeleteKey, p, name, None, None)),
                (["keys", name, "config"], _) => {
                    allow(w, target(K::ConfigKey, p, name, None, None))
                }
                (["keys", name, "rotate"], _) => {
                    allow(w, target(K::RotateKey, p, name, None, None))
                }
                (["keys", name, "trim"], _) => allow(w, target(K::TrimKey, p, name, None, None)),
                (["encrypt", name], _) => allow(w, target(K::Encrypt, p, name, None, None)),
                (["decrypt", name], _) => allow(w, target(K::Decrypt, p, name, None, None)),
                (["rewrap", name], _) => allow(w, target(K::Rewrap, p, name, None, None)),
                (["datakey", kind, name], _) if matches!(*kind, "plaintext" | "wrapped") => {
                    allow(w, target(K::DataKey, p, name, Some(kind), None))
                }
                (["hmac", name, rest @ ..], _) if rest.len() <= 1 => {
                    allow(w, target(K::Hmac, p, name, rest.first(), None))
                }
                (["sign", name, rest @ ..], _) if rest.len() <= 1 => {
                    allow(w, target(K::Sign, p, name, rest.first(), None))
                }
                (["verify", name, rest @ ..], _) if rest.len() <= 1 => {
                    allow(w, target(K::Verify, p, name, rest.first(), None))
                }
                (["random", rest @ ..], _) if rest.len() <= 2 => {
                    allow(w, target(K::Random, p, "", rest.first(), rest.get(1)))
                }
                (["hash", rest @ ..], _) if rest.len() <= 1 => {
                    allow(w, target(K::Hash, p, "", rest.first(), None))
                }
                (["keys"], _) | (["keys", _], _) => Err(method_not_allowed()),
                _ => Err(unsupported_path()),
            }
        }
        [] => Err(unsupported_path()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mounts() -> Vec<Mount> {
        vec![Mount {
            name: "transit".into(),
            project: None,
        }]
    }

    fn kind(method: &str, path: &str, query: Option<&str>) -> Result<Kind, &'static str> {
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        find(&mounts(), &m, path, query)
            .map(|t| t.kind)
            .map_err(|e| e.code)
    }

    #[test]
    fn vault_paths_and_methods_match() {
        assert_eq!(kind("LIST", "/v1/transit/keys", None), Ok(Kind::ListKeys));
        assert_eq!(
            kind("GET", "/v1/transit/keys", Some("list=true")),
            Ok(Kind::ListKeys)
        );
        assert_eq!(
            kind("POST", "/v1/transit/keys/k", None),
            Ok(Kind::CreateKey)
        );
        assert_eq!(kind("PUT", "/v1/transit/keys/k", None), Ok(Kind::CreateKey));
        assert_eq!(kind("GET", "/v1/transit/keys/k", None), Ok(Kind::ReadKey));
        assert_eq!(
            kind("DELETE", "/v1/transit/keys/k", None),
            Ok(Kind::DeleteKey)
        );
        assert_eq!(
            kind("POST", "/v1/transit/keys/k/rotate", None),
            Ok(Kind::RotateKey)
        );
        assert_eq!(
            kind("POST", "/v1/transit/datakey/wrapped/k", None),
            Ok(Kind::DataKey)
        );
        assert_eq!(
            kind("POST", "/v1/transit/sign/k/sha2-384", None),
            Ok(Kind::Sign)
        );
        assert_eq!(
            kind("POST", "/v1/transit/random/platform/16", None),
            Ok(Kind::Random)
        );
        assert_eq!(kind("POST", "/v1/transit/hash", None), Ok(Kind::Hash));
        assert_eq!(kind("GET", "/v1/sys/health", None), Ok(Kind::Health));
        assert_eq!(
            kind("GET", "/v1/transit/encrypt/k", None),
            Err("method_not_allowed")
        );
        assert_eq!(
            kind("PATCH", "/v1/transit/keys/k", None),
            Err("method_not_allowed")
        );
        assert_eq!(kind("POST", "/v1/other/encrypt/k", None), Err("not_found"));
        assert_eq!(
            kind("POST", "/v1/transit/datakey/raw/k", None),
            Err("not_found")
        );
        assert_eq!(kind("POST", "/v1/transit//encrypt", None), Err("not_found"));
        assert_eq!(
            kind("POST", "/v1/transit/sign/k/a/b", None),
            Err("not_found")
        );
    }
}
