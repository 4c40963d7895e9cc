//! Transit's operations on a key: encrypt, decrypt, rewrap, datakey, hmac, sign and
//! verify, each alone or over `batch_input` (results in order, a failed item reported in
//! its own result, the status as Vault's `batchRequestResponse` picks it: 400 when an
//! item failed by the caller's fault, 500 by the server's, or
//! `partial_failure_response_code` when others succeeded).
//!
//! Vault's `context` (of derived keys) and `associated_data` become entries of the
//! core's encryption context (`vault.context`, `vault.associated_data`, base64), so a
//! ciphertext opens only with the same values. Ciphertexts are `vault:v<N>:` + base64
//! of the gateway's ciphertext (DESIGN.md §4), whose header names the same version. An
//! RSA key of usage encrypt-decrypt encrypts with RSA-OAEP, SHA-256 and MGF1-SHA-256 and
//! no label, as Vault's RSA keys do (`padding_scheme` `oaep`, Vault's default); its
//! ciphertexts are `vault:v1:` + base64 of the bare RSA-OAEP ciphertext.

use base64::Engine;
use hyper::StatusCode;
use serde_json::{json, Map, Value};
use zeroize::Zeroizing;

use super::bad;
use super::error::{is_user_error, message};
use super::keys::{is_true, DERIVED};
use super::params::{self, Params, B64};
use super::routes::Kind;
use super::{Answer, Ctx, Reply};
use crate::api::http::Failure;
use crate::core::attributes::ResolvedKey;
use crate::core::crypto::{
    is_rsa_encryption, Context, DataKey, Decrypt, Encrypt, Mac, MacAlgorithm, ReEncrypt, Sign,
};
use crate::core::CoreError;
use crate::keys::Algorithm;

const JWS: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

type Item = Result<Map<String, Value>, Failure>;

/// One operation, or one per `batch_input` item.
pub async fn run(ctx: &Ctx<'_>) -> Reply {
    let key = ctx.key().await?;
    let Some(items) = ctx.params.batch()? else {
        let result = item(ctx, &key, &ctx.params).await?;
        return Ok(ctx.data(Value::Object(result)));
    };
    let operation = ctx.target.kind.operation();
    let mut results = Vec::with_capacity(items.len());
    let (mut succeeded, mut user_error, mut server_error) = (false, false, false);
    for one in items {
        // An item's fields, with the request's own (hash_algorithm, ...) beneath them.
        let mut merged = ctx.params.0.clone();
        merged.remove("batch_input");
        merged.extend(one.0);
        let merged = Params(merged);
        let reference = merged.0.get("reference").cloned().unwrap_or(json!(""));
        match item(ctx, &key, &merged).await {
            Ok(mut result) => {
                succeeded = true;
                result.insert("reference".into(), reference);
                results.push(Value::Object(result));
            }
            Err(failure) => {
                let e = match failure {
                    Failure::Core(e) => e,
                    Failure::Input(e) => ctx.gateway.refuse(ctx.caller, operation, e).await,
                };
                if is_user_error(&e) {
                    user_error = true;
                } else {
                    server_error = true;
                }
                results.push(json!({"error": message(&e), "reference": reference}));
            }
        }
    }
    let mut status = StatusCode::OK;
    if user_error || server_error {
        status = if user_error {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        if succeeded {
            if let Some(code) = ctx.params.uint("partial_failure_response_code")? {
                if let Some(s) = u16::try_from(code)
                    .ok()
                    .filter(|c| (1..=599).contains(c))
                    .and_then(|c| StatusCode::from_u16(c).ok())
                {
                    status = s;
                }
            }
        }
    }
    let data = json!({ "batch_results": results });
    Ok(Answer::new(
        status,
        ctx.envelope(data, Value::Null, Value::Null),
    ))
}

async fn item(ctx: &Ctx<'_>, key: &ResolvedKey, p: &Params) -> Item {
    match ctx.target.kind {
        Kind::Encrypt => encrypt(ctx, key, p).await,
        Kind::Decrypt => decrypt(ctx, key, p).await,
        Kind::Rewrap => rewrap(ctx, key, p).await,
        Kind::Hmac => hmac(ctx, key, p).await,
        Kind::Sign => sign(ctx, key, p).await,
        Kind::Verify => verify(ctx, key, p).await,
        _ => Err(Failure::Core(CoreError::internal())),
    }
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// The encryption context of a request on `key` (see the module documentation).
fn context(key: &ResolvedKey, p: &Params) -> Result<Context, Failure> {
    let mut c = Context::new();
    if p.str("nonce")?.is_some() {
        return Err(bad(
            "provided nonce not allowed for this key: convergent encryption is not supported",
        ));
    }
    if is_true(&key.attributes, DERIVED) {
        let given = p.b64("context")?.ok_or_else(|| {
            bad(
                "missing 'context' for key derivation; the key was created using a derived \
                 key, which means additional, per-request information must be included in \
                 order to perform operations with the key",
            )
        })?;
        c.insert("vault.context".into(), B64.encode(given));
    }
    if let Some(ad) = p.b64("associated_data")? {
        c.insert("vault.associated_data".into(), B64.encode(ad));
    }
    Ok(c)
}

/// `key_version` may only name the latest version: the core encrypts, signs and MACs
/// with the newest version of a key.
fn latest_only(key: &ResolvedKey, p: &Params) -> Result<(), Failure> {
    match p.u32("key_version")? {
        Some(v) if v != 0 && v != key.key.version => Err(bad(format!(
            "key_version {v}: only the latest version ({}) is used for new values",
            key.key.version
        ))),
        _ => Ok(()),
    }
}

/// A ciphertext of `vault:v<N>:`, checked to be the gateway ciphertext of version N.
fn ciphertext(p: &Params) -> Result<Vec<u8>, Failure> {
    let text = p
        .str("ciphertext")?
        .ok_or_else(|| bad("missing ciphertext to process"))?;
    Ok(params::gateway_ciphertext(text)?)
}

/// `padding_scheme` of an RSA key's encrypt or decrypt (Vault 1.16): `oaep` only.
fn oaep_padding(key: &ResolvedKey, p: &Params) -> Result<(), Failure> {
    match p.str("padding_scheme")? {
        None | Some("") | Some("oaep") => Ok(()),
        Some(_) if !is_rsa_encryption(&key.key) => Err(bad(
            "padding_scheme is only valid for RSA keys",
        )),
        Some("pkcs1v15") => Err(bad(
            "padding_scheme pkcs1v15 is not supported: RSA keys encrypt with OAEP (RSAES-PKCS1-v1_5 decryption is a padding oracle)",
        )),
        Some(other) => Err(bad(format!(
            "unsupported padding_scheme {other:?}; use oaep"
        ))),
    }
}

/// The bytes of an RSA key's `vault:v<N>:` ciphertext (it has no gateway header); N
/// must be the key's version (RSA keys are not rotated).
fn rsa_ciphertext(key: &ResolvedKey, p: &Params) -> Result<Vec<u8>, Failure> {
    let text = p
        .str("ciphertext")?
        .ok_or_else(|| bad("missing ciphertext to process"))?;
    let (version, bytes) = params::decode(text, "ciphertext")?;
    if version != key.key.version {
        return Err(bad(format!(
            "invalid ciphertext: key version {version} does not exist (the key's version is {})",
            key.key.version
        )));
    }
    Ok(bytes)
}

async fn encrypt(ctx: &Ctx<'_>, key: &ResolvedKey, p: &Params) -> Item {
    latest_only(key, p)?;
    oaep_padding(key, p)?;
    let plaintext = Zeroizing::new(
        p.b64("plaintext")?
            .ok_or_else(|| bad("missing plaintext to encrypt"))?,
    );
    let request = Encrypt {
        key_id: key.id,
        plaintext,
        context: context(key, p)?,
        // An RSA key's default is RSAES_OAEP_SHA_256, Vault's OAEP.
        algorithm: None,
    };
    let out = ctx.gateway.encrypt(ctx.caller, request).await?;
    Ok(object(json!({
        "ciphertext": params::encode(out.key_version, &out.ciphertext),
        "key_version": out.key_version,
    })))
}

async fn decrypt(ctx: &Ctx<'_>, key: &ResolvedKey, p: &Params) -> Item {
    oaep_padding(key, p)?;
    let ciphertext = if is_rsa_encryption(&key.key) {
        rsa_ciphertext(key, p)?
    } else {
        ciphertext(p)?
    };
    let request = Decrypt {
        key_id: key.id,
        ciphertext,
        context: context(key, p)?,
        algorithm: None,
    };
    let out = ctx.gateway.decrypt(ctx.caller, request).await?;
    Ok(object(
        json!({ "plaintext": B64.encode(out.plaintext.as_slice()) }),
    ))
}

async fn rewrap(ctx: &Ctx<'_>, key: &ResolvedKey, p: &Params) -> Item {
    latest_only(key, p)?;
    let request = ReEncrypt {
        key_id: key.id,
        ciphertext: ciphertext(p)?,
        context: context(key, p)?,
        destination_key_id: None,
        destination_context: None,
    };
    let out = ctx.gateway.re_encrypt(ctx.caller, request).await?;
    Ok(object(json!({
        "ciphertext": params::encode(out.key_version, &out.ciphertext),
        "key_version": out.key_version,
    })))
}

/// `datakey/plaintext|wrapped/:name` with `bits` 128, 256 (default) or 512.
pub async fn data_key(ctx: &Ctx<'_>) -> Reply {
    let key = ctx.key().await?;
    let p = &ctx.params;
    let bits = p.uint("bits")?.unwrap_or(256);
    if !matches!(bits, 128 | 256 | 512) {
        return Err(bad("invalid bit length; must be 128, 256 or 512"));
    }
    let request = DataKey {
        key_id: key.id,
        length: (bits / 8) as usize,
        context: context(&key, p)?,
        with_plaintext: ctx.target.arg.as_deref() == Some("plaintext"),
    };
    let out = ctx.gateway.generate_data_key(ctx.caller, request).await?;
    let mut data = json!({
        "ciphertext": params::encode(out.encrypted.key_version, &out.encrypted.ciphertext),
        "key_version": out.encrypted.key_version,
    });
    if let Some(plaintext) = &out.plaintext {
        data["plaintext"] = B64.encode(plaintext.as_slice()).into();
    }
    Ok(ctx.data(data))
}

/// The path's algorithm, else the named parameter, else Vault's default `sha2-256`.
fn hash_name<'a>(ctx: &'a Ctx<'_>, p: &'a Params, param: &str) -> Result<&'a str, Failure> {
    Ok(match &ctx.target.arg {
        Some(a) => a.as_str(),
        None => p.str(param)?.or(p.str("algorithm")?).unwrap_or("sha2-256"),
    })
}

/// The size suffix of the core's algorithm names for a Vault hash name.
fn hash_bits(name: &str) -> Result<&'static str, Failure> {
    match name {
        "sha2-256" => Ok("256"),
        "sha2-384" => Ok("384"),
        "sha2-512" => Ok("512"),
        other => Err(bad(format!(
            "unsupported hash algorithm {other}; use sha2-256, sha2-384 or sha2-512"
        ))),
    }
}

fn mac_algorithm(name: &str) -> Result<MacAlgorithm, Failure> {
    MacAlgorithm::parse(&format!("HMAC_SHA_{}", hash_bits(name)?))
        .ok_or_else(|| bad(format!("unsupported algorithm {name}")))
}

fn input(p: &Params) -> Result<Vec<u8>, Failure> {
    match p.str("input")? {
        None => Ok(Vec::new()),
        Some(_) => Ok(p.b64("input")?.unwrap_or_default()),
    }
}

async fn hmac(ctx: &Ctx<'_>, key: &ResolvedKey, p: &Params) -> Item {
    latest_only(key, p)?;
    let algorithm = mac_algorithm(hash_name(ctx, p, "algorithm")?)?;
    let request = Mac {
        key_id: key.id,
        data: input(p)?,
        algorithm: Some(algorithm),
        exact: false,
    };
    let out = ctx.gateway.generate_mac(ctx.caller, request).await?;
    Ok(object(json!({
        "hmac": params::encode(out.key_version, &out.mac),
        "key_version": out.key_version,
    })))
}

/// What a sign or verify request names: the core's signing algorithm and whether the
/// signature is JWS-marshalled.
fn signing(ctx: &Ctx<'_>, key: &ResolvedKey, p: &Params) -> Result<(String, bool), Failure> {
    let jws = match p.str("marshaling_algorithm")?.unwrap_or("asn1") {
        "asn1" => false,
        "jws" => true,
        other => return Err(bad(format!("unsupported marshaling algorithm {other}"))),
    };
    if key.key.algorithm == Algorithm::Ed25519 {
        // Vault ignores hash_algorithm for ed25519 keys: PureEdDSA hashes with SHA-512
        // inside the scheme; the signature is its 64 bytes.
        if jws {
            return Err(bad("marshaling_algorithm jws is only for ECDSA keys"));
        }
        return Ok((crate::crypto::signing::ED25519_SHA_512.to_owned(), false));
    }
    let bits = hash_bits(hash_name(ctx, p, "hash_algorithm")?)?;
    match p.str("salt_length")? {
        None | Some("auto") | Some("hash") => {}
        Some(n) if n.parse::<usize>().ok() == bits.parse::<usize>().ok().map(|b| b / 8) => {}
        Some(_) => {
            return Err(bad(
                "salt_length: PSS signatures use a salt as long as the hash (\"hash\")",
            ))
        }
    }
    let name = match key.key.algorithm {
        Algorithm::Rsa2048 | Algorithm::Rsa3072 | Algorithm::Rsa4096 => {
            if jws {
                return Err(bad("marshaling_algorithm jws is only for ECDSA keys"));
            }
            match p.str("signature_algorithm")?.unwrap_or("pss") {
                "pss" => format!("RSASSA_PSS_SHA_{bits}"),
                "pkcs1v15" => format!("RSASSA_PKCS1_V1_5_SHA_{bits}"),
                other => return Err(bad(format!("unsupported signature algorithm {other}"))),
            }
        }
        // ECDSA, and for any other key the core's own "wrong key usage".
        _ => format!("ECDSA_SHA_{bits}"),
    };
    Ok((name, jws))
}

/// The JWS form (r ‖ s, each as long as the curve order) of a DER ECDSA signature.
fn jws_of_der(algorithm: Algorithm, der: &[u8]) -> Option<Vec<u8>> {
    match algorithm {
        Algorithm::EccNistP256 => p256::ecdsa::Signature::from_der(der)
            .ok()
            .map(|s| s.to_bytes().to_vec()),
        Algorithm::EccNistP384 => p384::ecdsa::Signature::from_der(der)
            .ok()
            .map(|s| s.to_bytes().to_vec()),
        Algorithm::EccNistP521 => p521::ecdsa::Signature::from_der(der)
            .ok()
            .map(|s| s.to_bytes().to_vec()),
        _ => None,
    }
}

/// The DER form of a JWS ECDSA signature; `None` if it is not one of the key's curve.
fn der_of_jws(algorithm: Algorithm, raw: &[u8]) -> Option<Vec<u8>> {
    match algorithm {
        Algorithm::EccNistP256 => p256::ecdsa::Signature::from_slice(raw)
            .ok()
            .map(|s| s.to_der().as_bytes().to_vec()),
        Algorithm::EccNistP384 => p384::ecdsa::Signature::from_slice(raw)
            .ok()
            .map(|s| s.to_der().as_bytes().to_vec()),
        Algorithm::EccNistP521 => p521::ecdsa::Signature::from_slice(raw)
            .ok()
            .map(|s| s.to_der().as_bytes().to_vec()),
        _ => None,
    }
}

async fn sign(ctx: &Ctx<'_>, key: &ResolvedKey, p: &Params) -> Item {
    latest_only(key, p)?;
    let (signing_algorithm, jws) = signing(ctx, key, p)?;
    let request = Sign {
        key_id: key.id,
        data: input(p)?,
        signing_algorithm,
        is_digest: p.bool("prehashed")?.unwrap_or(false),
        key_version: None,
    };
    let der = ctx.gateway.sign(ctx.caller, request).await?;
    let version = key.key.version;
    let signature = if jws {
        // JWS (RFC 7518 §3.4): the fixed-size r ‖ s, base64url without padding.
        let raw = jws_of_der(key.key.algorithm, &der)
            .ok_or_else(|| Failure::Core(CoreError::internal()))?;
        format!("vault:v{version}:{}", JWS.encode(raw))
    } else {
        params::encode(version, &der)
    };
    Ok(object(
        json!({ "signature": signature, "key_version": version }),
    ))
}

async fn verify(ctx: &Ctx<'_>, key: &ResolvedKey, p: &Params) -> Item {
    let data = input(p)?;
    match (p.str("signature")?, p.str("hmac")?) {
        (Some(_), Some(_)) => Err(bad("provide one of 'signature' or 'hmac', not both")),
        (None, None) => Err(bad("missing signature or hmac to verify")),
        (None, Some(text)) => {
            let (version, mac) = params::decode(text, "hmac")?;
            // Vault's verify names the HMAC's hash `hash_algorithm`, as for signatures.
            let algorithm = mac_algorithm(hash_name(ctx, p, "hash_algorithm")?)?;
            let request = Mac {
                key_id: key.id,
                data,
                algorithm: Some(algorithm),
                exact: false,
            };
            let valid = ctx
                .gateway
                .verify_mac(ctx.caller, request, mac, Some(version))
                .await?;
            Ok(object(json!({ "valid": valid })))
        }
        (Some(text), None) => {
            let (signing_algorithm, jws) = signing(ctx, key, p)?;
            let (version, signature) = if jws {
                let (v, raw) = params::decode_with(text, "signature", &JWS)?;
                // A raw signature of the wrong form is simply not valid.
                let der = der_of_jws(key.key.algorithm, &raw).unwrap_or_default();
                (v, der)
            } else {
                params::decode(text, "signature")?
            };
            let request = Sign {
                key_id: key.id,
                data,
                signing_algorithm,
                is_digest: p.bool("prehashed")?.unwrap_or(false),
                key_version: Some(version),
            };
            let valid = ctx.gateway.verify(ctx.caller, request, signature).await?;
            Ok(object(json!({ "valid": valid })))
        }
    }
}
