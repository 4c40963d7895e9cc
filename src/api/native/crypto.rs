//! Cryptographic routes: encrypt, decrypt, sign, verify, public key, signing algorithms,
//! MACs, data keys and re-encryption. Bodies may repeat the path's `keyId`, as Infisical's Node
//! SDK sends it; it must then name the same key.

use base64::Engine;
use serde_json::json;
use zeroize::Zeroizing;

use super::bodies::{
    self, DataKeyBody, DecryptBody, EncryptBody, MacBody, ReEncryptBody, SignBody,
};
use super::json::{self, bad, decode_b64, parse, B64};
use super::{Failure, Input, Reply};
use crate::core::crypto::{
    DataKey, Decrypt, Encrypt, EncryptionAlgorithm, Mac, MacAlgorithm, OaepAlgorithm, ReEncrypt,
    Sign,
};
use crate::core::KeyId;

/// The path's key id, checked against a `keyId` the body repeats.
fn key_id(input: &Input<'_>, in_body: Option<&str>) -> Result<KeyId, Failure> {
    Ok(KeyId(bodies::key_id(&input.params[0], in_body)?))
}

/// `encryptionAlgorithm` of an RSA key's encrypt or decrypt: AWS's names of RSA-OAEP.
fn encryption_algorithm(name: Option<&str>) -> Result<Option<EncryptionAlgorithm>, Failure> {
    match name {
        None => Ok(None),
        Some(n) => OaepAlgorithm::parse(n)
            .map(|a| Some(EncryptionAlgorithm::Oaep(a)))
            .ok_or_else(|| {
                bad(
                    "invalid_encryption_algorithm",
                    format!("encryptionAlgorithm {n:?} is not RSAES_OAEP_SHA_256 or RSAES_OAEP_SHA_1 (name none for an AES key)"),
                )
            }),
    }
}

/// The answer's `encryptionAlgorithm`: named for RSA-OAEP only (an AES key's answer is
/// Infisical's, without it).
fn with_algorithm(mut body: serde_json::Value, algorithm: EncryptionAlgorithm) -> Reply {
    if let EncryptionAlgorithm::Oaep(a) = algorithm {
        body["encryptionAlgorithm"] = a.as_str().into();
    }
    Ok(body)
}

pub async fn encrypt(input: Input<'_>) -> Reply {
    let req: EncryptBody = parse(&input.body)?;
    let key_id = key_id(&input, req.key_id.as_deref())?;
    let encoded = Zeroizing::new(req.plaintext);
    let max = input.gateway.limits().max_plaintext_bytes;
    // Refused before decoding a plaintext far over the limit.
    let plaintext = Zeroizing::new(bodies::bounded_b64(
        "plaintext",
        &encoded,
        max,
        "plaintext_too_large",
    )?);
    let request = Encrypt {
        key_id,
        plaintext,
        context: req.encryption_context.unwrap_or_default(),
        algorithm: encryption_algorithm(req.encryption_algorithm.as_deref())?,
    };
    let out = input.gateway.encrypt(input.caller, request).await?;
    with_algorithm(
        json!({"ciphertext": B64.encode(out.ciphertext)}),
        out.algorithm,
    )
}

pub async fn decrypt(input: Input<'_>) -> Reply {
    let req: DecryptBody = parse(&input.body)?;
    let key_id = key_id(&input, req.key_id.as_deref())?;
    let request = Decrypt {
        key_id,
        ciphertext: decode_b64("ciphertext", &req.ciphertext)?,
        context: req.encryption_context.unwrap_or_default(),
        algorithm: encryption_algorithm(req.encryption_algorithm.as_deref())?,
    };
    let out = input.gateway.decrypt(input.caller, request).await?;
    // The response body holds the plaintext's base64 until it is sent; it is not
    // zeroised (see docs/SECURITY.md).
    with_algorithm(
        json!({"plaintext": B64.encode(out.plaintext.as_slice())}),
        out.algorithm,
    )
}

fn sign_request(input: &Input<'_>, req: &SignBody) -> Result<Sign, Failure> {
    Ok(Sign {
        key_id: key_id(input, req.key_id.as_deref())?,
        data: decode_b64("data", &req.data)?,
        signing_algorithm: req.signing_algorithm.clone(),
        is_digest: req.is_digest,
        key_version: None,
    })
}

pub async fn sign(input: Input<'_>) -> Reply {
    let req: SignBody = parse(&input.body)?;
    let request = sign_request(&input, &req)?;
    let key_id = request.key_id;
    let signature = input.gateway.sign(input.caller, request).await?;
    Ok(
        json!({"signature": B64.encode(signature), "keyId": key_id.to_string(), "signingAlgorithm": req.signing_algorithm}),
    )
}

pub async fn verify(input: Input<'_>) -> Reply {
    let req: SignBody = parse(&input.body)?;
    let request = sign_request(&input, &req)?;
    let signature = decode_b64(
        "signature",
        req.signature.as_deref().ok_or_else(|| {
            bad(
                "invalid_request",
                "invalid request: missing field `signature`",
            )
        })?,
    )?;
    let key_id = request.key_id;
    let valid = input
        .gateway
        .verify(input.caller, request, signature)
        .await?;
    Ok(
        json!({"signatureValid": valid, "keyId": key_id.to_string(), "signingAlgorithm": req.signing_algorithm}),
    )
}

/// Infisical's names of MAC algorithms.
const MAC_ALGORITHMS: &[(&str, MacAlgorithm)] = &[
    ("HMAC_SHA_256", MacAlgorithm::HmacSha256),
    ("HMAC_SHA_384", MacAlgorithm::HmacSha384),
    ("HMAC_SHA_512", MacAlgorithm::HmacSha512),
];

fn mac_algorithm_name(algorithm: MacAlgorithm) -> &'static str {
    MAC_ALGORITHMS
        .iter()
        .find(|(_, a)| *a == algorithm)
        .map_or("", |(n, _)| n)
}

fn mac_request(input: &Input<'_>, req: &MacBody) -> Result<Mac, Failure> {
    let key_id = key_id(input, req.key_id.as_deref())?;
    let algorithm = match req.mac_algorithm.as_deref() {
        None => None,
        Some(name) => Some(
            MAC_ALGORITHMS
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, a)| *a)
                .ok_or_else(|| {
                    bad(
                        "invalid_mac_algorithm",
                        format!("macAlgorithm {name:?} is not HMAC_SHA_256, HMAC_SHA_384 or HMAC_SHA_512"),
                    )
                })?,
        ),
    };
    let max = input.gateway.limits().max_plaintext_bytes;
    // Refused before decoding data far over the limit.
    Ok(Mac {
        key_id,
        data: bodies::bounded_b64("data", &req.data, max, "data_too_large")?,
        algorithm,
        exact: false,
    })
}

pub async fn generate_mac(input: Input<'_>) -> Reply {
    let req: MacBody = parse(&input.body)?;
    let request = mac_request(&input, &req)?;
    let key_id = request.key_id;
    let out = input.gateway.generate_mac(input.caller, request).await?;
    Ok(json!({
        "mac": B64.encode(out.mac),
        "keyId": key_id.to_string(),
        "macAlgorithm": mac_algorithm_name(out.algorithm),
    }))
}

pub async fn verify_mac(input: Input<'_>) -> Reply {
    let req: MacBody = parse(&input.body)?;
    let request = mac_request(&input, &req)?;
    let mac = decode_b64(
        "mac",
        req.mac
            .as_deref()
            .ok_or_else(|| bad("invalid_request", "invalid request: missing field `mac`"))?,
    )?;
    let key_id = request.key_id;
    let checked = input
        .gateway
        .check_mac(input.caller, request, mac, None)
        .await?;
    Ok(json!({
        "macValid": checked.valid,
        "keyId": key_id.to_string(),
        "macAlgorithm": mac_algorithm_name(checked.algorithm),
    }))
}

pub async fn public_key(input: Input<'_>) -> Reply {
    let id = key_id(&input, None)?;
    let der = input.gateway.public_key(input.caller, id).await?;
    Ok(json!({"publicKey": B64.encode(der)}))
}

pub async fn signing_algorithms(input: Input<'_>) -> Reply {
    let id = key_id(&input, None)?;
    let algorithms = input.gateway.signing_algorithms(input.caller, id).await?;
    Ok(json!({"signingAlgorithms": algorithms}))
}

/// `generate-data-key` and `generate-data-key-without-plaintext` (the route decides;
/// `withoutPlaintext` in the body does the same).
pub async fn generate_data_key(input: Input<'_>) -> Reply {
    let req: DataKeyBody = parse(&input.body)?;
    let key_id = key_id(&input, None)?;
    let length = bodies::data_key_length(&req.key_spec)?;
    let without = req.without_plaintext || input.template.ends_with("without-plaintext");
    let request = DataKey {
        key_id,
        length,
        context: req.encryption_context.unwrap_or_default(),
        with_plaintext: !without,
    };
    let out = input
        .gateway
        .generate_data_key(input.caller, request)
        .await?;
    let mut body = json!({"ciphertextBlob": B64.encode(&out.encrypted.ciphertext), "keyId": key_id.to_string(), "keySpec": req.key_spec});
    if let Some(plaintext) = &out.plaintext {
        body["plaintext"] = B64.encode(plaintext.as_slice()).into();
    }
    Ok(body)
}

pub async fn re_encrypt(input: Input<'_>) -> Reply {
    let req: ReEncryptBody = parse(&input.body)?;
    let key_id = key_id(&input, None)?;
    let destination_key_id = match &req.destination_key_id {
        Some(d) => Some(json::id(d, "destinationKeyId")?),
        None => None,
    };
    let request = ReEncrypt {
        key_id,
        ciphertext: decode_b64("ciphertext", &req.ciphertext)?,
        context: req.encryption_context.unwrap_or_default(),
        destination_key_id,
        destination_context: req.destination_encryption_context,
    };
    let out = input.gateway.re_encrypt(input.caller, request).await?;
    Ok(
        json!({"ciphertext": B64.encode(&out.ciphertext), "keyId": out.key_id.to_string(), "version": out.key_version}),
    )
}
