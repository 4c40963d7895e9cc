//! Checking AWS Signature Version 4 (the `Authorization: AWS4-HMAC-SHA256 ...` header), as
//! AWS's "Signature Version 4 signing process" defines it: the canonical request, the
//! string to sign, the derived signing key, and the request's age. Shared by the AWS KMS
//! front-end (service `kms`) and the XKS proxy API (service `kms-xks-proxy`). The verifier
//! needs the secret itself (HMAC), so the caller hands it over only after it has found
//! the access key the header names.
//!
//! What is checked: the header's form; the credential scope (`date/region/service/
//! aws4_request`) with the expected service and the request's own date; `host` among
//! the signed headers; the request's time within [`MAX_SKEW_SECONDS`] of ours (a replay
//! later than that is refused); the payload hash (`x-amz-content-sha256`, when sent,
//! must be the body's, and `UNSIGNED-PAYLOAD` is refused); the signature, compared in
//! constant time.

use hmac::{Hmac, Mac};
use hyper::HeaderMap;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

type HmacSha256 = Hmac<Sha256>;

/// How far a request's `X-Amz-Date` may be from the gateway's clock (AWS: 5 minutes).
pub const MAX_SKEW_SECONDS: i64 = 300;

const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// Why a signature was refused; each front-end names these in its own protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SigError {
    /// No `Authorization` header (or another scheme).
    Missing,
    /// The header or the date is malformed, or a required part is missing.
    Incomplete(String),
    /// The credential scope names another service.
    WrongService(String),
    /// The request's time is outside the allowed skew.
    Expired(String),
    /// The body is not the one `x-amz-content-sha256` names.
    PayloadHash,
    /// The signature does not match.
    Mismatch,
}

impl SigError {
    /// The message AWS gives for this failure (or close to it).
    pub fn message(&self) -> String {
        match self {
            SigError::Missing => "Missing Authentication Token".into(),
            SigError::Incomplete(m) => m.clone(),
            SigError::WrongService(s) => {
                format!("Credential should be scoped to correct service: '{s}'.")
            }
            SigError::Expired(m) => m.clone(),
            SigError::PayloadHash => {
                "The provided 'x-amz-content-sha256' header does not match what was computed."
                    .into()
            }
            SigError::Mismatch => "The request signature we calculated does not match the \
                signature you provided. Check your AWS Secret Access Key and signing method. \
                Consult the service documentation for details."
                .into(),
        }
    }
}

/// The parts of an `Authorization: AWS4-HMAC-SHA256 Credential=..., SignedHeaders=...,
/// Signature=...` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub access_key_id: String,
    /// `YYYYMMDD` of the credential scope.
    pub date: String,
    pub region: String,
    pub service: String,
    /// Lower-case, in the order given (which must be sorted).
    pub signed_headers: Vec<String>,
    pub signature: [u8; 32],
}

fn incomplete(m: impl Into<String>) -> SigError {
    SigError::Incomplete(m.into())
}

/// Parses the `Authorization` header of `headers`.
pub fn parse_authorization(headers: &HeaderMap) -> Result<Authorization, SigError> {
    let Some(value) = headers.get(hyper::header::AUTHORIZATION) else {
        return Err(SigError::Missing);
    };
    let value = value
        .to_str()
        .map_err(|_| incomplete("the Authorization header is not ASCII"))?;
    let rest = value
        .strip_prefix(ALGORITHM)
        .filter(|r| r.starts_with(' '))
        .ok_or(SigError::Missing)?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim();
        let (name, v) = part
            .split_once('=')
            .ok_or_else(|| incomplete(format!("Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' parameters; {part:?} is none of them")))?;
        let slot = match name {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed,
            "Signature" => &mut signature,
            _ => {
                return Err(incomplete(format!(
                    "unknown Authorization parameter {name:?}"
                )))
            }
        };
        if slot.replace(v).is_some() {
            return Err(incomplete(format!(
                "Authorization parameter {name} is repeated"
            )));
        }
    }
    let missing = |n: &str| incomplete(format!("Authorization header requires '{n}' parameter"));
    let credential = credential.ok_or_else(|| missing("Credential"))?;
    let signed = signed.ok_or_else(|| missing("SignedHeaders"))?;
    let signature = signature.ok_or_else(|| missing("Signature"))?;

    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key_id, date, region, service, terminator] = scope[..] else {
        return Err(incomplete(format!(
            "Credential should be ACCESS_KEY/DATE/REGION/SERVICE/aws4_request, not {credential:?}"
        )));
    };
    if terminator != "aws4_request" {
        return Err(incomplete(
            "Credential should be scoped with a valid terminator: 'aws4_request'",
        ));
    }
    if access_key_id.is_empty()
        || region.is_empty()
        || date.len() != 8
        || !date.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(incomplete(format!(
            "malformed Credential scope {credential:?}"
        )));
    }
    let signed_headers: Vec<String> = signed.split(';').map(str::to_owned).collect();
    if signed_headers.iter().any(|h| {
        h.is_empty()
            || h.bytes()
                .any(|b| b.is_ascii_uppercase() || b.is_ascii_whitespace())
    }) || !signed_headers.windows(2).all(|w| w[0] < w[1])
    {
        return Err(incomplete(
            "SignedHeaders must be lower-case header names, sorted, separated by ';'",
        ));
    }
    if !signed_headers.iter().any(|h| h == "host") {
        return Err(incomplete("the host header must be signed"));
    }
    let mut sig = [0u8; 32];
    hex::decode_to_slice(signature, &mut sig)
        .map_err(|_| incomplete("Signature must be 64 hexadecimal digits"))?;
    Ok(Authorization {
        access_key_id: access_key_id.to_owned(),
        date: date.to_owned(),
        region: region.to_owned(),
        service: service.to_owned(),
        signed_headers,
        signature: sig,
    })
}

/// What of the request the signature covers.
pub struct SignedRequest<'a> {
    pub method: &'a str,
    /// The path as received (percent-encoded).
    pub path: &'a str,
    pub query: Option<&'a str>,
    /// The `Host` header, else the request URI's authority (HTTP/2's `:authority`).
    pub host: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

/// AWS's URI encoding: every byte but `A-Z a-z 0-9 - . _ ~` as `%XY` (upper-case hex),
/// with `/` kept when `keep_slash`.
fn uri_encode(input: &[u8], keep_slash: bool, out: &mut String) {
    for &b in input {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'_' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// `%XY` sequences decoded (a `+` stays a `+`: SigV4 clients send a space as `%20`).
fn percent_decode(input: &str) -> Vec<u8> {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hi = (bytes[i + 1] as char).to_digit(16);
            let lo = (bytes[i + 2] as char).to_digit(16);
            if let (Some(hi), Some(lo)) = (hi, lo) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// The canonical URI: the path as sent, URI-encoded once more (AWS: "each path segment
/// must be URI-encoded twice", for every service but S3).
fn canonical_uri(path: &str) -> String {
    if path.is_empty() {
        return "/".into();
    }
    let mut out = String::with_capacity(path.len());
    uri_encode(path.as_bytes(), true, &mut out);
    out
}

/// The canonical query string: names and values decoded, re-encoded strictly, sorted.
fn canonical_query(query: Option<&str>) -> String {
    let Some(q) = query.filter(|q| !q.is_empty()) else {
        return String::new();
    };
    let mut pairs: Vec<(String, String)> = q
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let (mut ek, mut ev) = (String::new(), String::new());
            uri_encode(&percent_decode(k), false, &mut ek);
            uri_encode(&percent_decode(v), false, &mut ev);
            (ek, ev)
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// A header's values as SigV4 signs them: each trimmed, inner runs of spaces made one,
/// joined by `,`.
fn canonical_header_value(req: &SignedRequest<'_>, name: &str) -> Result<String, SigError> {
    let mut values: Vec<String> = Vec::new();
    if name == "host" {
        let host = req
            .host
            .ok_or_else(|| incomplete("the request has no Host header"))?;
        values.push(host.trim().to_owned());
    } else {
        for v in req.headers.get_all(name) {
            let v = v
                .to_str()
                .map_err(|_| incomplete(format!("header {name} is not ASCII")))?;
            values.push(v.split_whitespace().collect::<Vec<_>>().join(" "));
        }
        if values.is_empty() {
            return Err(incomplete(format!(
                "signed header {name} is not in the request"
            )));
        }
    }
    Ok(values.join(","))
}

/// The hex SHA-256 of the body, checked against `x-amz-content-sha256` when sent.
fn payload_hash(req: &SignedRequest<'_>) -> Result<String, SigError> {
    let computed = hex::encode(Sha256::digest(req.body));
    if let Some(sent) = req.headers.get("x-amz-content-sha256") {
        let sent = sent.to_str().map_err(|_| SigError::PayloadHash)?;
        if !sent.eq_ignore_ascii_case(&computed) {
            return Err(SigError::PayloadHash);
        }
    }
    Ok(computed)
}

/// The canonical request of AWS's step 1.
pub fn canonical_request(
    req: &SignedRequest<'_>,
    auth: &Authorization,
) -> Result<String, SigError> {
    let mut out = String::new();
    out.push_str(req.method);
    out.push('\n');
    out.push_str(&canonical_uri(req.path));
    out.push('\n');
    out.push_str(&canonical_query(req.query));
    out.push('\n');
    for name in &auth.signed_headers {
        out.push_str(name);
        out.push(':');
        out.push_str(&canonical_header_value(req, name)?);
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&auth.signed_headers.join(";"));
    out.push('\n');
    out.push_str(&payload_hash(req)?);
    Ok(out)
}

/// `YYYYMMDDTHHMMSSZ` as seconds since the epoch.
fn parse_amz_date(s: &str) -> Option<i64> {
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    time::PrimitiveDateTime::parse(s, format)
        .ok()
        .map(|t| t.assume_utc().unix_timestamp())
}

fn format_amz_date(t: i64) -> String {
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|t| t.format(format).ok())
        .unwrap_or_default()
}

/// The request's `X-Amz-Date`, checked against the scope's date and `now`.
fn request_time(
    req: &SignedRequest<'_>,
    auth: &Authorization,
    now: i64,
) -> Result<String, SigError> {
    let amz_date = req
        .headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| incomplete("the X-Amz-Date header is required"))?;
    let at = parse_amz_date(amz_date)
        .ok_or_else(|| incomplete(format!("X-Amz-Date {amz_date:?} is not YYYYMMDDTHHMMSSZ")))?;
    if !amz_date.starts_with(&auth.date) {
        return Err(incomplete(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != '{}'",
            auth.date,
            &amz_date[..8]
        )));
    }
    if !auth.signed_headers.iter().any(|h| h == "x-amz-date") {
        return Err(incomplete("the x-amz-date header must be signed"));
    }
    if at < now - MAX_SKEW_SECONDS {
        return Err(SigError::Expired(format!(
            "Signature expired: {amz_date} is now earlier than {} ({} - 5 min.)",
            format_amz_date(now - MAX_SKEW_SECONDS),
            format_amz_date(now)
        )));
    }
    if at > now + MAX_SKEW_SECONDS {
        return Err(SigError::Expired(format!(
            "Signature not yet current: {amz_date} is still later than {} ({} + 5 min.)",
            format_amz_date(now + MAX_SKEW_SECONDS),
            format_amz_date(now)
        )));
    }
    Ok(amz_date.to_owned())
}

fn hmac(key: &[u8], data: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    Zeroizing::new(mac.finalize().into_bytes().into())
}

/// The signing key of AWS's step 3: HMAC chain over date, region, service.
pub fn signing_key(secret: &[u8], auth: &Authorization) -> Zeroizing<[u8; 32]> {
    let mut k = Zeroizing::new(Vec::with_capacity(4 + secret.len()));
    k.extend_from_slice(b"AWS4");
    k.extend_from_slice(secret);
    let k_date = hmac(&k, auth.date.as_bytes());
    let k_region = hmac(&k_date[..], auth.region.as_bytes());
    let k_service = hmac(&k_region[..], auth.service.as_bytes());
    hmac(&k_service[..], b"aws4_request")
}

/// The string to sign of AWS's step 2.
pub fn string_to_sign(
    req: &SignedRequest<'_>,
    auth: &Authorization,
    amz_date: &str,
) -> Result<String, SigError> {
    let canonical = canonical_request(req, auth)?;
    Ok(format!(
        "{ALGORITHM}\n{amz_date}\n{}/{}/{}/aws4_request\n{}",
        auth.date,
        auth.region,
        auth.service,
        hex::encode(Sha256::digest(canonical.as_bytes()))
    ))
}

/// The scope's service and the request's time, checked before any secret is looked up
/// (so that a stale or misdirected request costs no store read).
pub fn precheck(
    req: &SignedRequest<'_>,
    auth: &Authorization,
    service: &str,
    must_sign: &[&str],
    now: i64,
) -> Result<(), SigError> {
    if auth.service != service {
        return Err(SigError::WrongService(service.to_owned()));
    }
    check_signed_headers(req, auth, must_sign)?;
    request_time(req, auth, now).map(|_| ())
}

/// Every `x-amz-*` header of the request must be signed (AWS: "any x-amz-* headers that
/// you plan to include in your request must also be added"), and so must each header in
/// `must_sign` that the request has: an unsigned `X-Amz-Target` would let a captured
/// request be replayed as another operation.
fn check_signed_headers(
    req: &SignedRequest<'_>,
    auth: &Authorization,
    must_sign: &[&str],
) -> Result<(), SigError> {
    for name in req.headers.keys() {
        let name = name.as_str();
        let required = name.starts_with("x-amz-") || must_sign.contains(&name);
        if required && !auth.signed_headers.iter().any(|h| h == name) {
            return Err(incomplete(format!("the {name} header must be signed")));
        }
    }
    Ok(())
}

/// Whether the request is signed by `secret` as `auth` says, at a time within the skew
/// of `now` (seconds since the epoch).
pub fn verify(
    req: &SignedRequest<'_>,
    auth: &Authorization,
    service: &str,
    secret: &[u8],
    now: i64,
) -> Result<(), SigError> {
    if auth.service != service {
        return Err(SigError::WrongService(service.to_owned()));
    }
    let amz_date = request_time(req, auth, now)?;
    let to_sign = string_to_sign(req, auth, &amz_date)?;
    let key = signing_key(secret, auth);
    let mut mac = HmacSha256::new_from_slice(&key[..]).expect("HMAC takes any key length");
    mac.update(to_sign.as_bytes());
    mac.verify_slice(&auth.signature)
        .map_err(|_| SigError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    // AWS's worked example of the signing process ("Examples of how to derive a signing
    // key" and "Create a canonical request"): IAM ListUsers, 2015-08-30T12:36:00Z.
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    const EXAMPLE_SIGNATURE: &str =
        "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7";

    fn example_headers(signature: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            "content-type",
            HeaderValue::from_static("application/x-www-form-urlencoded; charset=utf-8"),
        );
        h.insert("x-amz-date", HeaderValue::from_static("20150830T123600Z"));
        h.insert(
            hyper::header::AUTHORIZATION,
            HeaderValue::from_str(&format!(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, \
                 SignedHeaders=content-type;host;x-amz-date, Signature={signature}"
            ))
            .unwrap(),
        );
        h
    }

    fn example<'a>(headers: &'a HeaderMap, body: &'a [u8]) -> SignedRequest<'a> {
        SignedRequest {
            method: "GET",
            path: "/",
            query: Some("Action=ListUsers&Version=2010-05-08"),
            host: Some("iam.amazonaws.com"),
            headers,
            body,
        }
    }

    fn at(s: &str) -> i64 {
        parse_amz_date(s).unwrap()
    }

    #[test]
    fn aws_worked_example_verifies() {
        let headers = example_headers(EXAMPLE_SIGNATURE);
        let auth = parse_authorization(&headers).unwrap();
        assert_eq!(auth.access_key_id, "AKIDEXAMPLE");
        let req = example(&headers, b"");
        let canonical = canonical_request(&req, &auth).unwrap();
        // The hash of the canonical request that AWS's example gives.
        assert_eq!(
            hex::encode(Sha256::digest(canonical.as_bytes())),
            "f536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59"
        );
        // The example's derived signing key.
        assert_eq!(
            hex::encode(&signing_key(SECRET.as_bytes(), &auth)[..]),
            "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9"
        );
        verify(
            &req,
            &auth,
            "iam",
            SECRET.as_bytes(),
            at("20150830T123600Z"),
        )
        .unwrap();
    }

    #[test]
    fn every_change_is_refused() {
        let now = at("20150830T123600Z");
        let headers = example_headers(EXAMPLE_SIGNATURE);
        let auth = parse_authorization(&headers).unwrap();
        let ok = example(&headers, b"");
        // Wrong secret.
        assert_eq!(
            verify(&ok, &auth, "iam", b"another secret", now),
            Err(SigError::Mismatch)
        );
        // Another body (the payload hash is part of the canonical request).
        assert_eq!(
            verify(
                &example(&headers, b"x"),
                &auth,
                "iam",
                SECRET.as_bytes(),
                now
            ),
            Err(SigError::Mismatch)
        );
        // Another query, host or signed header value.
        let mut other = example(&headers, b"");
        other.query = Some("Action=ListUsers&Version=2010-05-09");
        assert_eq!(
            verify(&other, &auth, "iam", SECRET.as_bytes(), now),
            Err(SigError::Mismatch)
        );
        let mut other = example(&headers, b"");
        other.host = Some("evil.example");
        assert_eq!(
            verify(&other, &auth, "iam", SECRET.as_bytes(), now),
            Err(SigError::Mismatch)
        );
        let mut changed = example_headers(EXAMPLE_SIGNATURE);
        changed.insert("content-type", HeaderValue::from_static("text/plain"));
        assert_eq!(
            verify(
                &example(&changed, b""),
                &auth,
                "iam",
                SECRET.as_bytes(),
                now
            ),
            Err(SigError::Mismatch)
        );
        // Another service in the scope than the front-end's.
        assert!(matches!(
            verify(&ok, &auth, "kms", SECRET.as_bytes(), now),
            Err(SigError::WrongService(_))
        ));
        // Outside the skew, either way; inside it is fine.
        assert!(matches!(
            verify(&ok, &auth, "iam", SECRET.as_bytes(), now + MAX_SKEW_SECONDS + 1),
            Err(SigError::Expired(m)) if m.starts_with("Signature expired: 20150830T123600Z")
        ));
        assert!(matches!(
            verify(&ok, &auth, "iam", SECRET.as_bytes(), now - MAX_SKEW_SECONDS - 1),
            Err(SigError::Expired(m)) if m.starts_with("Signature not yet current")
        ));
        verify(&ok, &auth, "iam", SECRET.as_bytes(), now + MAX_SKEW_SECONDS).unwrap();
        // A payload hash header that is not the body's.
        let mut hashed = example_headers(EXAMPLE_SIGNATURE);
        hashed.insert(
            "x-amz-content-sha256",
            HeaderValue::from_static("UNSIGNED-PAYLOAD"),
        );
        assert_eq!(
            verify(&example(&hashed, b""), &auth, "iam", SECRET.as_bytes(), now),
            Err(SigError::PayloadHash)
        );
    }

    #[test]
    fn amz_headers_and_named_ones_must_be_signed() {
        let now = at("20150830T123600Z");
        let headers = example_headers(EXAMPLE_SIGNATURE);
        let auth = parse_authorization(&headers).unwrap();
        precheck(
            &example(&headers, b""),
            &auth,
            "iam",
            &["content-type"],
            now,
        )
        .unwrap();
        let mut more = example_headers(EXAMPLE_SIGNATURE);
        more.insert(
            "x-amz-target",
            HeaderValue::from_static("TrentService.ScheduleKeyDeletion"),
        );
        assert!(matches!(
            precheck(&example(&more, b""), &auth, "iam", &[], now),
            Err(SigError::Incomplete(m)) if m.contains("x-amz-target")
        ));
        let mut other = example_headers(EXAMPLE_SIGNATURE);
        other.insert("x-target", HeaderValue::from_static("anything"));
        assert!(matches!(
            precheck(&example(&other, b""), &auth, "iam", &["x-target"], now),
            Err(SigError::Incomplete(m)) if m.contains("x-target")
        ));
        precheck(&example(&other, b""), &auth, "iam", &[], now).unwrap();
    }

    #[test]
    fn malformed_headers_are_named() {
        let bad = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(
                hyper::header::AUTHORIZATION,
                HeaderValue::from_str(v).unwrap(),
            );
            parse_authorization(&h)
        };
        assert_eq!(
            parse_authorization(&HeaderMap::new()),
            Err(SigError::Missing)
        );
        assert_eq!(bad("Bearer abc"), Err(SigError::Missing));
        let sig = "0".repeat(64);
        for v in [
            format!("AWS4-HMAC-SHA256 Credential=AK/20150830/us-east-1/kms/aws4_request, Signature={sig}"),
            format!("AWS4-HMAC-SHA256 Credential=AK/20150830/us-east-1/kms, SignedHeaders=host, Signature={sig}"),
            format!("AWS4-HMAC-SHA256 Credential=AK/2015083/us-east-1/kms/aws4_request, SignedHeaders=host, Signature={sig}"),
            format!("AWS4-HMAC-SHA256 Credential=AK/20150830/us-east-1/kms/aws4_request, SignedHeaders=x-amz-date, Signature={sig}"),
            format!("AWS4-HMAC-SHA256 Credential=AK/20150830/us-east-1/kms/aws4_request, SignedHeaders=x-amz-date;host, Signature={sig}"),
            "AWS4-HMAC-SHA256 Credential=AK/20150830/us-east-1/kms/aws4_request, SignedHeaders=host, Signature=abc".to_owned(),
        ] {
            assert!(matches!(bad(&v), Err(SigError::Incomplete(_))), "{v}");
        }
    }

    #[test]
    fn paths_and_queries_are_canonical() {
        assert_eq!(canonical_uri(""), "/");
        assert_eq!(
            canonical_uri("/kms/xks/v1/keys/a%20b/encrypt"),
            "/kms/xks/v1/keys/a%2520b/encrypt"
        );
        assert_eq!(canonical_query(Some("b=2&a=1&a=0&c")), "a=0&a=1&b=2&c=");
        assert_eq!(canonical_query(Some("k=a%20b+c")), "k=a%20b%2Bc");
        assert_eq!(percent_decode("%4"), b"%4");
    }
}
