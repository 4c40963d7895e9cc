//! AWS KMS's cryptographic operations on the core: Encrypt, Decrypt, ReEncrypt, data
//! keys, GenerateRandom, Sign, Verify, GetPublicKey, GenerateMac and VerifyMac (AWS KMS
//! API Reference, "Actions"). A CiphertextBlob is the DESIGN.md §4 ciphertext unchanged:
//! it names its key, so Decrypt needs no KeyId; the EncryptionContext is bound as the
//! core binds it (authenticated, needed again to decrypt).

use base64::Engine;
use serde_json::json;
use zeroize::Zeroizing;

use super::{error, input, Ctx, Reply, B64};
use crate::api::http::Failure;
use crate::core::crypto::{
    ciphertext_key, is_rsa_encryption, oaep_algorithms, DataKey, Decrypt, Encrypt,
    EncryptionAlgorithm, Mac, OaepAlgorithm, ReEncrypt, Sign,
};
use crate::core::{CoreError, KeyId};
use crate::keys::MacAlgorithm;

/// AWS's bound on Encrypt's plaintext and on Sign's and GenerateMac's message.
const MAX_MESSAGE_BYTES: usize = 4096;

/// `field` as the core's encryption algorithm. Absent is `SYMMETRIC_DEFAULT`, as AWS
/// defaults it ("Encrypt", Request Parameters: "This parameter is required only for
/// asymmetric KMS keys"), so an RSA key asked without it is InvalidKeyUsageException.
fn encryption_algorithm(ctx: &Ctx<'_>, field: &str) -> Result<EncryptionAlgorithm, Failure> {
    match ctx.str(field)? {
        None | Some("SYMMETRIC_DEFAULT") => Ok(EncryptionAlgorithm::Symmetric),
        Some(a) => match OaepAlgorithm::parse(a) {
            Some(oaep) => Ok(EncryptionAlgorithm::Oaep(oaep)),
            None if a == "SM2PKE" => Err(input(error::unsupported(format!(
                "{field} {a} is not supported: the gateway has no SM2 keys"
            )))),
            None => Err(input(error::validation(format!(
                "1 validation error detected: Value '{a}' at '{}' failed to satisfy constraint: Member must satisfy enum value set: [SYMMETRIC_DEFAULT, RSAES_OAEP_SHA_1, RSAES_OAEP_SHA_256, SM2PKE]",
                super::lower_first(field)
            )))),
        },
    }
}

/// AWS's name of an encryption algorithm.
fn algorithm_name(a: EncryptionAlgorithm) -> &'static str {
    match a {
        EncryptionAlgorithm::Symmetric => "SYMMETRIC_DEFAULT",
        EncryptionAlgorithm::Oaep(o) => o.as_str(),
    }
}

/// ReEncrypt and the data-key operations are for symmetric keys here: an RSA-OAEP
/// algorithm named in them is refused (AWS's ReEncrypt takes one; the gateway does not).
fn symmetric_only(ctx: &Ctx<'_>, field: &str) -> Result<(), Failure> {
    match encryption_algorithm(ctx, field)? {
        EncryptionAlgorithm::Symmetric => Ok(()),
        EncryptionAlgorithm::Oaep(a) => Err(input(error::unsupported(format!(
            "{field} {}: ReEncrypt with RSA keys is not supported; Decrypt and Encrypt instead",
            a.as_str()
        )))),
    }
}

fn bounded(name: &str, data: &[u8]) -> Result<(), Failure> {
    if data.is_empty() || data.len() > MAX_MESSAGE_BYTES {
        return Err(input(error::validation(format!(
            "1 validation error detected: Value at '{}' failed to satisfy constraint: Member must have length between 1 and {MAX_MESSAGE_BYTES}",
            super::lower_first(name)
        ))));
    }
    Ok(())
}

/// The key a ciphertext names, checked against the request's `KeyId` when it has one
/// (IncorrectKeyException when they differ).
async fn key_of_ciphertext(ctx: &Ctx<'_>, field: &str, blob: &[u8]) -> Result<KeyId, Failure> {
    let named = ciphertext_key(blob).ok_or_else(|| {
        input(CoreError::invalid(
            "invalid_ciphertext",
            "the ciphertext is not one of this gateway's",
        ))
    })?;
    if let Some(k) = ctx.str(field)? {
        let asked = ctx.key_of(k).await?;
        if asked != named {
            return Err(input(CoreError::invalid(
                "ciphertext_key_mismatch",
                "The key ID in the request does not identify a KMS key that can perform this operation.",
            )));
        }
    }
    Ok(named)
}

pub async fn encrypt(ctx: &Ctx<'_>) -> Reply {
    ctx.refuse_field("DryRun", "there is no dry run")?;
    let algorithm = encryption_algorithm(ctx, "EncryptionAlgorithm")?;
    let key_id = ctx.key("KeyId").await?;
    let plaintext = Zeroizing::new(ctx.required_blob("Plaintext")?);
    bounded("Plaintext", &plaintext)?;
    let context = ctx.string_map("EncryptionContext")?;
    let out = ctx
        .gateway
        .encrypt(
            ctx.caller,
            Encrypt {
                key_id,
                plaintext,
                context,
                algorithm: Some(algorithm),
            },
        )
        .await?;
    Ok(json!({
        "CiphertextBlob": B64.encode(&out.ciphertext),
        "KeyId": ctx.arn(out.key_id),
        "EncryptionAlgorithm": algorithm_name(out.algorithm),
    }))
}

pub async fn decrypt(ctx: &Ctx<'_>) -> Reply {
    ctx.refuse_field("DryRun", "there is no dry run")?;
    ctx.refuse_field("Recipient", "Nitro Enclaves attestation is not supported")?;
    let algorithm = encryption_algorithm(ctx, "EncryptionAlgorithm")?;
    let ciphertext = ctx.required_blob("CiphertextBlob")?;
    let key_id = match algorithm {
        EncryptionAlgorithm::Symmetric => key_of_ciphertext(ctx, "KeyId", &ciphertext).await?,
        // An RSA-OAEP ciphertext names no key: "KeyId ... is required only when the
        // ciphertext was encrypted under an asymmetric KMS key" (Decrypt, Request Parameters).
        EncryptionAlgorithm::Oaep(_) => ctx.key("KeyId").await?,
    };
    let context = ctx.string_map("EncryptionContext")?;
    let out = ctx
        .gateway
        .decrypt(
            ctx.caller,
            Decrypt {
                key_id,
                ciphertext,
                context,
                algorithm: Some(algorithm),
            },
        )
        .await?;
    Ok(json!({
        "KeyId": ctx.arn(out.key_id),
        "Plaintext": B64.encode(out.plaintext.as_slice()),
        "EncryptionAlgorithm": algorithm_name(out.algorithm),
    }))
}

pub async fn re_encrypt(ctx: &Ctx<'_>) -> Reply {
    ctx.refuse_field("DryRun", "there is no dry run")?;
    symmetric_only(ctx, "SourceEncryptionAlgorithm")?;
    symmetric_only(ctx, "DestinationEncryptionAlgorithm")?;
    let ciphertext = ctx.required_blob("CiphertextBlob")?;
    let source = key_of_ciphertext(ctx, "SourceKeyId", &ciphertext).await?;
    let destination = ctx.key("DestinationKeyId").await?;
    let context = ctx.string_map("SourceEncryptionContext")?;
    // AWS: the destination context is its own field, empty when absent (not the source's).
    let destination_context = ctx.string_map("DestinationEncryptionContext")?;
    let out = ctx
        .gateway
        .re_encrypt(
            ctx.caller,
            ReEncrypt {
                key_id: source,
                ciphertext,
                context,
                destination_key_id: Some(destination),
                destination_context: Some(destination_context),
            },
        )
        .await?;
    Ok(json!({
        "CiphertextBlob": B64.encode(&out.ciphertext),
        "SourceKeyId": ctx.arn(source),
        "KeyId": ctx.arn(out.key_id),
        "SourceEncryptionAlgorithm": "SYMMETRIC_DEFAULT",
        "DestinationEncryptionAlgorithm": "SYMMETRIC_DEFAULT",
    }))
}

pub async fn data_key(ctx: &Ctx<'_>, with_plaintext: bool) -> Reply {
    ctx.refuse_field("DryRun", "there is no dry run")?;
    ctx.refuse_field("Recipient", "Nitro Enclaves attestation is not supported")?;
    let key_id = ctx.key("KeyId").await?;
    let length = match (ctx.str("KeySpec")?, ctx.int("NumberOfBytes")?) {
        (Some(_), Some(_)) | (None, None) => {
            return Err(input(error::validation(
                "Please specify either number of bytes or key spec.",
            )))
        }
        (Some("AES_256"), None) => 32,
        (Some("AES_128"), None) => 16,
        (Some(spec), None) => {
            return Err(input(error::validation(format!(
                "1 validation error detected: Value '{spec}' at 'keySpec' failed to satisfy constraint: Member must satisfy enum value set: [AES_256, AES_128]"
            ))))
        }
        (None, Some(n)) if (1..=1024).contains(&n) => n as usize,
        (None, Some(n)) => {
            return Err(input(error::validation(format!(
                "1 validation error detected: Value '{n}' at 'numberOfBytes' failed to satisfy constraint: Member must have value between 1 and 1024"
            ))))
        }
    };
    let context = ctx.string_map("EncryptionContext")?;
    let out = ctx
        .gateway
        .generate_data_key(
            ctx.caller,
            DataKey {
                key_id,
                length,
                context,
                with_plaintext,
            },
        )
        .await?;
    let mut body = json!({
        "CiphertextBlob": B64.encode(&out.encrypted.ciphertext),
        "KeyId": ctx.arn(out.encrypted.key_id),
    });
    if let Some(p) = &out.plaintext {
        body["Plaintext"] = json!(B64.encode(p.as_slice()));
    }
    Ok(body)
}

pub async fn random(ctx: &Ctx<'_>) -> Reply {
    ctx.refuse_field(
        "CustomKeyStoreId",
        "random bytes come from the gateway's RNG (the HSM's with HSM_USE_RAND)",
    )?;
    ctx.refuse_field("Recipient", "Nitro Enclaves attestation is not supported")?;
    let n = match ctx.int("NumberOfBytes")? {
        Some(n) if (1..=1024).contains(&n) => n as usize,
        other => {
            return Err(input(error::validation(format!(
                "1 validation error detected: Value '{}' at 'numberOfBytes' failed to satisfy constraint: Member must have value between 1 and 1024",
                other.map_or("null".to_owned(), |n| n.to_string())
            ))))
        }
    };
    let bytes = ctx.gateway.generate_random(ctx.caller, n).await?;
    Ok(json!({ "Plaintext": B64.encode(bytes.as_slice()) }))
}

/// Sign's and Verify's request: the message or its digest.
fn sign_request(ctx: &Ctx<'_>, key_id: KeyId) -> Result<Sign, Failure> {
    let message = ctx.required_blob("Message")?;
    bounded("Message", &message)?;
    let is_digest = match ctx.str("MessageType")? {
        None | Some("RAW") => false,
        Some("DIGEST") => true,
        Some("EXTERNAL_MU") => {
            return Err(input(error::unsupported("MessageType EXTERNAL_MU is not supported: ML-DSA keys sign the message itself (MessageType RAW)")))
        }
        Some(t) => {
            return Err(input(error::validation(format!(
                "1 validation error detected: Value '{t}' at 'messageType' failed to satisfy constraint: Member must satisfy enum value set: [RAW, DIGEST]"
            ))))
        }
    };
    let signing_algorithm = ctx.required_str("SigningAlgorithm")?;
    if !super::keys::is_aws_signing_algorithm(signing_algorithm) {
        return Err(input(error::validation(format!(
            "1 validation error detected: Value '{signing_algorithm}' at 'signingAlgorithm' failed to satisfy constraint: Member must satisfy enum value set (ML-DSA keys sign with ML_DSA_SHAKE_256)"
        ))));
    }
    Ok(Sign {
        key_id,
        data: message,
        signing_algorithm: signing_algorithm.to_owned(),
        is_digest,
        key_version: None,
    })
}

pub async fn sign(ctx: &Ctx<'_>) -> Reply {
    ctx.refuse_field("DryRun", "there is no dry run")?;
    let key_id = ctx.key("KeyId").await?;
    let request = sign_request(ctx, key_id)?;
    let algorithm = request.signing_algorithm.clone();
    let signature = ctx.gateway.sign(ctx.caller, request).await?;
    Ok(json!({
        "KeyId": ctx.arn(key_id),
        "Signature": B64.encode(&signature),
        "SigningAlgorithm": algorithm,
    }))
}

pub async fn verify(ctx: &Ctx<'_>) -> Reply {
    ctx.refuse_field("DryRun", "there is no dry run")?;
    let key_id = ctx.key("KeyId").await?;
    let request = sign_request(ctx, key_id)?;
    let signature = ctx.required_blob("Signature")?;
    let algorithm = request.signing_algorithm.clone();
    if !ctx.gateway.verify(ctx.caller, request, signature).await? {
        // AWS answers an invalid signature with an error, not `SignatureValid: false`.
        return Err(Failure::Core(CoreError::invalid(
            "invalid_signature",
            "the signature is not valid for this message, key and signing algorithm",
        )));
    }
    Ok(json!({
        "KeyId": ctx.arn(key_id),
        "SignatureValid": true,
        "SigningAlgorithm": algorithm,
    }))
}

pub async fn public_key(ctx: &Ctx<'_>) -> Reply {
    let key_id = ctx.key("KeyId").await?;
    let der = ctx
        .gateway
        .public_key(ctx.caller, key_id)
        .await
        .map_err(|e| match e.code {
            // AWS: GetPublicKey of a symmetric key is UnsupportedOperationException.
            "wrong_key_usage" => CoreError::invalid(
                "unsupported_operation",
                format!("{} is not an asymmetric key", ctx.arns.key(key_id.0)),
            ),
            _ => e,
        })?;
    let view = ctx.gateway.key(ctx.caller, key_id).await?;
    let spec = super::keys::key_spec(view.key.algorithm);
    let mut body = json!({
        "KeyId": ctx.arn(key_id),
        "PublicKey": B64.encode(&der),
        "CustomerMasterKeySpec": spec,
        "KeySpec": spec,
        "KeyUsage": super::keys::key_usage_name(view.key.key_usage),
    });
    // "GetPublicKey", Response Elements: EncryptionAlgorithms for ENCRYPT_DECRYPT keys,
    // SigningAlgorithms for SIGN_VERIFY keys.
    if is_rsa_encryption(&view.key) {
        body["EncryptionAlgorithms"] = json!(oaep_algorithms(&view.key));
    } else {
        body["SigningAlgorithms"] = json!(super::keys::signing_algorithms(view.key.algorithm));
    }
    Ok(body)
}

fn mac_request(ctx: &Ctx<'_>, key_id: KeyId) -> Result<Mac, Failure> {
    let message = ctx.required_blob("Message")?;
    bounded("Message", &message)?;
    let name = ctx.required_str("MacAlgorithm")?;
    let algorithm = MacAlgorithm::parse(name).ok_or_else(|| {
        input(error::validation(format!(
            "1 validation error detected: Value '{name}' at 'macAlgorithm' failed to satisfy constraint: Member must satisfy enum value set: [HMAC_SHA_256, HMAC_SHA_384, HMAC_SHA_512]"
        )))
    })?;
    Ok(Mac {
        key_id,
        data: message,
        algorithm: Some(algorithm),
        exact: true,
    })
}

pub async fn generate_mac(ctx: &Ctx<'_>) -> Reply {
    ctx.refuse_field("DryRun", "there is no dry run")?;
    let key_id = ctx.key("KeyId").await?;
    let request = mac_request(ctx, key_id)?;
    let out = ctx.gateway.generate_mac(ctx.caller, request).await?;
    Ok(json!({
        "KeyId": ctx.arn(key_id),
        "Mac": B64.encode(&out.mac),
        "MacAlgorithm": out.algorithm.as_str(),
    }))
}

pub async fn verify_mac(ctx: &Ctx<'_>) -> Reply {
    ctx.refuse_field("DryRun", "there is no dry run")?;
    let key_id = ctx.key("KeyId").await?;
    let request = mac_request(ctx, key_id)?;
    let mac = ctx.required_blob("Mac")?;
    let checked = ctx
        .gateway
        .check_mac(ctx.caller, request, mac, None)
        .await?;
    if !checked.valid {
        return Err(Failure::Core(CoreError::invalid(
            "invalid_mac",
            "the MAC is not valid for this message, key and MAC algorithm",
        )));
    }
    Ok(json!({
        "KeyId": ctx.arn(key_id),
        "MacValid": true,
        "MacAlgorithm": checked.algorithm.as_str(),
    }))
}
