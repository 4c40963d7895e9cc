//! Request and response messages (KMIP 1.4 §7, KMIP 2.1 §8): the header, the batch, the
//! protocol version a response repeats, and the result of each batch item.

use std::sync::Arc;

use super::operations::{self, Ctx, Fail};
use super::spec::{op, reason, status, tag, VERSIONS};
use super::ttlv::{self, Ttlv, Value};
use crate::core::login::Credentials;
use crate::core::{Caller, Frontend, Gateway, Operation};

/// Batch Error Continuation Option (KMIP 1.4 §9.1.3.2.30): Continue, Stop (the default),
/// Undo (which the gateway cannot do: its operations are each committed at once).
const CONTINUE: u32 = 0x01;
/// The most batch items one message may carry: each is an operation of the core.
pub const MAX_BATCH_ITEMS: usize = 64;
const UNDO: u32 = 0x03;

fn now_seconds() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn version_item(version: (i32, i32)) -> Ttlv {
    Ttlv::structure(
        tag::PROTOCOL_VERSION,
        vec![
            Ttlv::new(tag::PROTOCOL_VERSION_MAJOR, Value::Integer(version.0)),
            Ttlv::new(tag::PROTOCOL_VERSION_MINOR, Value::Integer(version.1)),
        ],
    )
}

pub(super) fn read_version(item: &Ttlv) -> Option<(i32, i32)> {
    Some((
        item.find(tag::PROTOCOL_VERSION_MAJOR)?.as_i32()?,
        item.find(tag::PROTOCOL_VERSION_MINOR)?.as_i32()?,
    ))
}

/// One batch item of a response.
struct Outcome {
    operation: Option<u32>,
    batch_id: Option<Vec<u8>>,
    result: Result<Vec<Ttlv>, Fail>,
}

fn response(version: (i32, i32), items: Vec<Outcome>) -> Vec<u8> {
    let mut message = vec![Ttlv::structure(
        tag::RESPONSE_HEADER,
        vec![
            version_item(version),
            Ttlv::new(tag::TIME_STAMP, Value::DateTime(now_seconds())),
            Ttlv::new(tag::BATCH_COUNT, Value::Integer(items.len() as i32)),
        ],
    )];
    for item in items {
        let mut fields = Vec::new();
        if let Some(o) = item.operation {
            fields.push(Ttlv::new(tag::OPERATION, Value::Enumeration(o)));
        }
        if let Some(id) = item.batch_id {
            fields.push(Ttlv::new(tag::UNIQUE_BATCH_ITEM_ID, Value::ByteString(id)));
        }
        match item.result {
            Ok(payload) => {
                fields.push(Ttlv::new(
                    tag::RESULT_STATUS,
                    Value::Enumeration(status::SUCCESS),
                ));
                fields.push(Ttlv::structure(tag::RESPONSE_PAYLOAD, payload));
            }
            Err(fail) => {
                fields.push(Ttlv::new(
                    tag::RESULT_STATUS,
                    Value::Enumeration(status::OPERATION_FAILED),
                ));
                fields.push(Ttlv::new(
                    tag::RESULT_REASON,
                    Value::Enumeration(fail.reason),
                ));
                fields.push(Ttlv::new(
                    tag::RESULT_MESSAGE,
                    Value::TextString(fail.message),
                ));
            }
        }
        message.push(Ttlv::structure(tag::BATCH_ITEM, fields));
    }
    ttlv::encode(&Ttlv::structure(tag::RESPONSE_MESSAGE, message))
}

/// The answer to bytes that are not a request message the gateway can read.
pub(super) fn invalid_message(detail: &str) -> Vec<u8> {
    response(
        (1, 0),
        vec![Outcome {
            operation: None,
            batch_id: None,
            result: Err(Fail::new(
                reason::INVALID_MESSAGE,
                format!("not a KMIP request message: {detail}"),
            )),
        }],
    )
}

fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Answers one request message (its bytes, as framed on the wire). `subject` is the
/// verified client certificate's subject; `client` the peer's address.
pub async fn handle_message(
    gateway: &Arc<Gateway>,
    bytes: &[u8],
    limits: &ttlv::Limits,
    subject: Option<&str>,
    client: Option<String>,
) -> Vec<u8> {
    let message = match ttlv::decode(bytes, limits) {
        Ok(m) => m,
        Err(e) => return invalid_message(&e.to_string()),
    };
    if message.tag != tag::REQUEST_MESSAGE {
        return invalid_message("the message is not a Request Message");
    }
    let Some(header) = message.find(tag::REQUEST_HEADER) else {
        return invalid_message("the Request Header is missing");
    };
    let Some(version) = header.find(tag::PROTOCOL_VERSION).and_then(read_version) else {
        return invalid_message("the Protocol Version is missing");
    };
    let batch: Vec<&Ttlv> = message.find_all(tag::BATCH_ITEM).collect();
    if !VERSIONS.contains(&version) {
        // Answered in the newest version of the same major one (or 1.0), so that the
        // client can read the refusal (KMIP 2.1 §8.2: Unsupported Protocol Version).
        let answer_in = VERSIONS
            .iter()
            .copied()
            .find(|v| v.0 == version.0)
            .unwrap_or((1, 0));
        let code = if answer_in.0 >= 2 {
            reason::UNSUPPORTED_PROTOCOL_VERSION
        } else {
            reason::INVALID_MESSAGE
        };
        let items = vec![Outcome {
            operation: None,
            batch_id: None,
            result: Err(Fail::new(
                code,
                format!(
                    "protocol version {}.{} is not supported; use Discover Versions",
                    version.0, version.1
                ),
            )),
        }];
        return response(answer_in, items);
    }
    let declared = header.find(tag::BATCH_COUNT).and_then(Ttlv::as_i32);
    if batch.len() > MAX_BATCH_ITEMS {
        return response(
            version,
            vec![Outcome {
                operation: None,
                batch_id: None,
                result: Err(Fail::new(
                    reason::INVALID_MESSAGE,
                    format!("a message carries at most {MAX_BATCH_ITEMS} batch items"),
                )),
            }],
        );
    }
    if batch.is_empty() || declared != Some(batch.len() as i32) {
        return response(
            version,
            vec![Outcome {
                operation: None,
                batch_id: None,
                result: Err(Fail::new(
                    reason::INVALID_MESSAGE,
                    "the Batch Count must equal the number of Batch Items (at least one)",
                )),
            }],
        );
    }
    let continuation = header
        .find(tag::BATCH_ERROR_CONTINUATION_OPTION)
        .and_then(Ttlv::as_enum);
    if continuation == Some(UNDO) && batch.len() > 1 {
        return response(
            version,
            vec![Outcome {
                operation: None,
                batch_id: None,
                result: Err(Fail::new(
                    reason::FEATURE_NOT_SUPPORTED,
                    "Batch Error Continuation Option Undo is not supported: each operation is committed when it succeeds; use Stop or Continue",
                )),
            }],
        );
    }
    let keep_going = continuation == Some(CONTINUE);

    // Who: the identity of the certificate's subject. Discover Versions needs none.
    let principal = match subject {
        Some(s) => gateway.authenticate(Credentials::TlsSubject(s)).await,
        None => gateway.authenticate(Credentials::None).await,
    };
    let mut refused = false;
    let mut outcomes = Vec::with_capacity(batch.len());
    for item in batch {
        let operation = item.find(tag::OPERATION).and_then(Ttlv::as_enum);
        let batch_id = item
            .find(tag::UNIQUE_BATCH_ITEM_ID)
            .and_then(Ttlv::as_bytes)
            .map(<[u8]>::to_vec);
        let empty = Ttlv::structure(tag::REQUEST_PAYLOAD, Vec::new());
        let payload = item.find(tag::REQUEST_PAYLOAD).unwrap_or(&empty);
        let result = match operation {
            None => Err(Fail::new(
                reason::INVALID_MESSAGE,
                "a Batch Item has no Operation",
            )),
            Some(op::DISCOVER_VERSIONS) => Ok(operations::discover_versions(payload)),
            Some(code) => match &principal {
                Ok(p) => {
                    let ctx = Ctx {
                        gateway,
                        caller: Caller {
                            principal: Some(p.clone()),
                            frontend: Frontend::Kmip,
                            request_id: request_id(),
                            client: client.clone(),
                        },
                        version,
                    };
                    operations::run(&ctx, code, payload).await
                }
                Err(e) => {
                    // Audited once per message, whatever its batch holds.
                    if !refused {
                        refused = true;
                        let caller =
                            Caller::anonymous(Frontend::Kmip, request_id(), client.clone());
                        let target = subject.map_or_else(
                            || "no client certificate".to_owned(),
                            |s| format!("client certificate {s}"),
                        );
                        tracing::info!(subject = %target, "KMIP request refused: no identity");
                        gateway
                            .refuse(&caller, Operation::ClientCertificate, e.clone())
                            .await;
                    }
                    Err(Fail::new(
                        reason::AUTHENTICATION_NOT_SUCCESSFUL,
                        "the client certificate names no active identity (tlsSubject)",
                    ))
                }
            },
        };
        let failed = result.is_err();
        outcomes.push(Outcome {
            operation,
            batch_id,
            result,
        });
        if failed && !keep_going {
            break;
        }
    }
    response(version, outcomes)
}
