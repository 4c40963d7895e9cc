//! The KMIP port of a real gateway, over mutual TLS with a client certificate made by
//! `openssl`: the golden messages of the OASIS KMIP use and test cases answered as those
//! documents answer them (where the answer does not depend on the server: time stamps,
//! identifiers and key material differ), and malformed, oversized and unsupported
//! messages answered without losing the connection or the keys.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::gateway::{openssl, Gateway};
use common::Token;
use kms_gateway::kmip::spec::{reason, tag};
use kms_gateway::kmip::ttlv::{self, Ttlv, Value};
use serde_json::{json, Value as Json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::client::TlsStream;

/// A client certificate of the gateway's dev CA with `subject`, as one PEM (certificate,
/// then PKCS#8 key).
fn client_cert(gw: &Gateway, name: &str, subject: &str) -> std::path::PathBuf {
    let d = &gw.dir;
    let p = |f: &str| d.join(f).to_str().unwrap().to_owned();
    std::fs::write(
        d.join("client.ext"),
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n",
    )
    .unwrap();
    openssl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-subj",
        subject,
        "-keyout",
        &p(&format!("{name}.key")),
        "-out",
        &p(&format!("{name}.csr")),
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        &p(&format!("{name}.csr")),
        "-CA",
        &p("ca.pem"),
        "-CAkey",
        &p("ca.key"),
        "-CAcreateserial",
        "-days",
        "30",
        "-extfile",
        &p("client.ext"),
        "-out",
        &p(&format!("{name}.crt")),
    ]);
    let mut pem = std::fs::read(d.join(format!("{name}.crt"))).unwrap();
    pem.extend(std::fs::read(d.join(format!("{name}.key"))).unwrap());
    std::fs::write(d.join(format!("{name}.pem")), pem).unwrap();
    d.join(format!("{name}.pem"))
}

/// A gateway with its KMIP port on, and an identity `CN=kmip-golden` of a new project.
async fn kmip_gateway() -> (Gateway, std::path::PathBuf) {
    let token = Token::new();
    let ca = token.dir.path().join("gw/ca.pem");
    let gw = Gateway::start_on(
        token,
        &[
            ("KMSGW__KMIP__LISTEN", "127.0.0.1:0"),
            ("KMSGW__TLS__CLIENT_CA_FILE", ca.to_str().unwrap()),
            ("KMSGW__KMIP__MAX_MESSAGE_BYTES", "65536"),
        ],
    );
    assert!(
        gw.kmip.is_some(),
        "the gateway did not announce its KMIP port"
    );
    let project = gw.project("kmip").await;
    let (s, b) = gw
        .post(
            "/api/v1/identities",
            json!({"name": "kmip-golden", "projectId": project, "tlsSubject": "CN=kmip-golden",
                   "permissions": ["keys:manage", "encrypt", "decrypt", "sign", "verify", "export"]}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let pem = client_cert(&gw, "golden", "/CN=kmip-golden");
    (gw, pem)
}

async fn connect(
    gw: &Gateway,
    identity: Option<&Path>,
) -> std::io::Result<TlsStream<tokio::net::TcpStream>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(gw.dir.join("ca.pem")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let config = match identity {
        Some(pem) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(pem)
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let key = PrivateKeyDer::from_pem_file(pem).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    let tcp = tokio::net::TcpStream::connect(gw.kmip.as_deref().unwrap()).await?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let mut stream = connector
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await?;
    // TLS 1.3 reports a refused client certificate only on the first read.
    stream.flush().await?;
    Ok(stream)
}

/// Sends one message and reads one response message.
async fn exchange(stream: &mut TlsStream<tokio::net::TcpStream>, message: &[u8]) -> Vec<u8> {
    stream.write_all(message).await.unwrap();
    read_message(stream).await.expect("a response message")
}

async fn read_message(stream: &mut TlsStream<tokio::net::TcpStream>) -> std::io::Result<Vec<u8>> {
    let mut header = [0u8; 8];
    stream.read_exact(&mut header).await?;
    let len = u32::from_be_bytes(header[4..8].try_into().unwrap()) as usize;
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await?;
    Ok([header.to_vec(), body].concat())
}

fn decode(bytes: &[u8]) -> Ttlv {
    ttlv::decode(bytes, &ttlv::Limits::default()).expect("a well-formed message")
}

fn golden() -> Vec<Json> {
    let text = std::fs::read_to_string(common::project_root().join("tests/data/kmip/golden.json"))
        .unwrap();
    serde_json::from_str(&text).unwrap()
}

fn golden_message(case: &str, kind: &str) -> Vec<u8> {
    let m = golden()
        .into_iter()
        .find(|m| m["case"] == case && m["kind"] == kind)
        .unwrap_or_else(|| panic!("no golden {kind} of {case}"));
    hex::decode(m["hex"].as_str().unwrap()).unwrap()
}

/// `item` with what a server chooses for itself replaced by fixed values: time stamps,
/// unique identifiers (by `ids`, the server's own, in order of appearance), key material.
fn masked(item: &Ttlv, ids: &mut Vec<String>) -> Ttlv {
    let value = match &item.value {
        Value::Structure(items) => Value::Structure(items.iter().map(|i| masked(i, ids)).collect()),
        Value::DateTime(_) if item.tag == tag::TIME_STAMP => Value::DateTime(0),
        Value::TextString(s) if item.tag == tag::UNIQUE_IDENTIFIER => {
            let n = match ids.iter().position(|i| i == s) {
                Some(n) => n,
                None => {
                    ids.push(s.clone());
                    ids.len() - 1
                }
            };
            Value::TextString(format!("uid-{n}"))
        }
        Value::ByteString(b) if item.tag == tag::KEY_MATERIAL => {
            Value::ByteString(vec![0; b.len()])
        }
        other => other.clone(),
    };
    Ttlv::new(item.tag, value)
}

/// `request` with every Unique Identifier set to `uid`.
fn with_uid(request: &Ttlv, uid: &str) -> Ttlv {
    let value = match &request.value {
        Value::Structure(items) => {
            Value::Structure(items.iter().map(|i| with_uid(i, uid)).collect())
        }
        Value::TextString(_) if request.tag == tag::UNIQUE_IDENTIFIER => {
            Value::TextString(uid.into())
        }
        other => other.clone(),
    };
    Ttlv::new(request.tag, value)
}

fn first_uid(message: &Ttlv) -> Option<String> {
    fn walk(t: &Ttlv) -> Option<String> {
        if t.tag == tag::UNIQUE_IDENTIFIER {
            return t.as_text().map(str::to_owned);
        }
        t.items().iter().find_map(walk)
    }
    walk(message)
}

fn result_reason(response: &Ttlv) -> Option<u32> {
    response
        .find(tag::BATCH_ITEM)?
        .find(tag::RESULT_REASON)
        .and_then(Ttlv::as_enum)
}

/// Sends the golden request of `case` (with `uid` put in) and checks the answer equals
/// the golden response, byte for byte once masked.
async fn answered_as_golden(
    stream: &mut TlsStream<tokio::net::TcpStream>,
    case: &str,
    uid: Option<&str>,
) -> Ttlv {
    let mut request = decode(&golden_message(case, "request"));
    if let Some(uid) = uid {
        request = with_uid(&request, uid);
    }
    let answer = decode(&exchange(stream, &ttlv::encode(&request)).await);
    let expected = decode(&golden_message(case, "response"));
    let (mut a, mut e) = (Vec::new(), Vec::new());
    assert_eq!(
        hex::encode(ttlv::encode(&masked(&answer, &mut a))),
        hex::encode(ttlv::encode(&masked(&expected, &mut e))),
        "{case}: the answer differs from the KMIP document's\n  got {answer:?}\n want {expected:?}"
    );
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_use_and_test_cases_are_answered_as_the_documents_answer_them() {
    let (gw, pem) = kmip_gateway().await;
    let mut s = connect(&gw, Some(&pem)).await.unwrap();

    // KMIP 1.1 Test Cases §16.1: Discover Versions.
    for case in [
        "tc-1.1-16.1-time1-discover-versions",
        "tc-1.1-16.1-time3-discover-versions",
    ] {
        answered_as_golden(&mut s, case, None).await;
    }

    // KMIP Use Cases 1.0 §4.1: create, read the state, activate, locate, get, revoke.
    let created = answered_as_golden(&mut s, "uc-1.0-4.1-step1-create", None).await;
    let uid = first_uid(&created).unwrap();
    answered_as_golden(&mut s, "uc-1.0-4.1-step2-get-attributes", Some(&uid)).await;
    answered_as_golden(&mut s, "uc-1.0-4.1-step3-activate", Some(&uid)).await;
    answered_as_golden(&mut s, "uc-1.0-4.1-step5-locate", None).await;
    let got = answered_as_golden(&mut s, "uc-1.0-4.1-step6-get", Some(&uid)).await;
    answered_as_golden(&mut s, "uc-1.0-4.1-step7-revoke", Some(&uid)).await;

    // The key Get returned is the key: AES-GCM of the gateway's native encrypt is not
    // comparable, so check the material's size and that a second Get returns the same.
    fn material(t: &Ttlv) -> Option<Vec<u8>> {
        if t.tag == tag::KEY_MATERIAL {
            return t.as_bytes().map(<[u8]>::to_vec);
        }
        t.items().iter().find_map(material)
    }
    let first = material(&got).unwrap();
    assert_eq!(first.len(), 16, "the use case's key is AES-128");
    let again = decode(
        &exchange(
            &mut s,
            &ttlv::encode(&with_uid(
                &decode(&golden_message("uc-1.0-4.1-step6-get", "request")),
                &uid,
            )),
        )
        .await,
    );
    assert_eq!(material(&again).unwrap(), first);

    // KMIP 1.1 Test Cases §3.1.1: create then destroy. (§3.1.2 registers a Template,
    // an object KMIP 1.3 deprecated and the gateway does not keep.)
    let created = answered_as_golden(&mut s, "tc-1.1-3.1.1-create", None).await;
    let uid = first_uid(&created).unwrap();
    answered_as_golden(&mut s, "tc-1.1-3.1.1-destroy", Some(&uid)).await;

    // Each was audited through the KMIP front-end.
    let (status, audit) = gw.get("/api/v1/audit?limit=100").await;
    assert_eq!(status, 200, "{audit}");
    let records = audit["records"].as_array().unwrap();
    for op in [
        "key.create",
        "key.update",
        "key.export",
        "key.schedule_deletion",
        "key.list",
        "key.get",
    ] {
        assert!(
            records
                .iter()
                .any(|r| r["frontend"] == "kmip" && r["operation"] == op && r["outcome"] == "ok"),
            "no {op} record of the KMIP front-end in {audit}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_are_answered_and_the_connection_survives_what_it_can() {
    let (gw, pem) = kmip_gateway().await;
    let mut s = connect(&gw, Some(&pem)).await.unwrap();
    let discover = golden_message("tc-1.1-16.1-time1-discover-versions", "request");

    // An operation the gateway does not have: a proper failure, same connection.
    let mut request = decode(&golden_message("tc-1.1-3.1.1-destroy", "request"));
    fn set_operation(t: &mut Ttlv, code: u32) {
        if t.tag == tag::OPERATION {
            t.value = Value::Enumeration(code);
        }
        if let Value::Structure(items) = &mut t.value {
            items.iter_mut().for_each(|i| set_operation(i, code));
        }
    }
    set_operation(&mut request, 0x05); // Derive Key
    let answer = decode(&exchange(&mut s, &ttlv::encode(&request)).await);
    assert_eq!(
        result_reason(&answer),
        Some(reason::OPERATION_NOT_SUPPORTED),
        "{answer:?}"
    );
    // A well-framed message that is not canonical TTLV (a Boolean of 2): Invalid Message.
    let mut bad = ttlv::encode(&Ttlv::structure(
        tag::REQUEST_MESSAGE,
        vec![Ttlv::new(0x420008, Value::Boolean(true))],
    ));
    let at = bad.len() - 1;
    bad[at] = 2;
    let answer = decode(&exchange(&mut s, &bad).await);
    assert_eq!(
        result_reason(&answer),
        Some(reason::INVALID_MESSAGE),
        "{answer:?}"
    );
    // An unknown protocol version is refused in a version the client can read.
    let mut v9 = decode(&discover);
    fn set_major(t: &mut Ttlv) {
        if t.tag == tag::PROTOCOL_VERSION_MAJOR {
            t.value = Value::Integer(9);
        }
        if let Value::Structure(items) = &mut t.value {
            items.iter_mut().for_each(set_major);
        }
    }
    if let Value::Structure(items) = &mut v9.value {
        set_major(&mut items[0]);
    }
    let answer = decode(&exchange(&mut s, &ttlv::encode(&v9)).await);
    assert_eq!(
        result_reason(&answer),
        Some(reason::INVALID_MESSAGE),
        "{answer:?}"
    );
    // Still the same connection.
    let answer = decode(&exchange(&mut s, &discover).await);
    assert_eq!(result_reason(&answer), None, "{answer:?}");

    // A header claiming more than kmip.max_message_bytes: refused at once, closed.
    let mut huge = vec![0x42, 0x00, 0x78, 0x01];
    huge.extend_from_slice(&(1u32 << 20).to_be_bytes());
    s.write_all(&huge).await.unwrap();
    let answer = decode(&read_message(&mut s).await.unwrap());
    assert_eq!(
        result_reason(&answer),
        Some(reason::INVALID_MESSAGE),
        "{answer:?}"
    );
    let mut rest = Vec::new();
    let n = s.read_to_end(&mut rest).await.unwrap_or(0);
    assert_eq!(
        n, 0,
        "the connection is closed after an unframeable message"
    );

    // Without a client certificate there is no KMIP connection at all.
    let refused = async {
        let mut s = connect(&gw, None).await?;
        s.write_all(&discover).await?;
        read_message(&mut s).await
    }
    .await;
    assert!(
        refused.is_err(),
        "a client without a certificate was served"
    );

    // A certificate of the right CA that names no identity: Authentication Not Successful.
    let stranger = client_cert(&gw, "stranger", "/CN=kmip-stranger");
    let mut s = connect(&gw, Some(&stranger)).await.unwrap();
    let create = golden_message("tc-1.1-3.1.1-create", "request");
    let answer = decode(&exchange(&mut s, &create).await);
    assert_eq!(
        result_reason(&answer),
        Some(reason::AUTHENTICATION_NOT_SUCCESSFUL),
        "{answer:?}"
    );
    // Discover Versions needs no identity.
    let answer = decode(&exchange(&mut s, &discover).await);
    assert_eq!(result_reason(&answer), None, "{answer:?}");
}

/// A request message of one batch item.
fn request(version: (i32, i32), operation: u32, payload: Vec<Ttlv>) -> Vec<u8> {
    let int = |t, v| Ttlv::new(t, Value::Integer(v));
    ttlv::encode(&Ttlv::structure(
        tag::REQUEST_MESSAGE,
        vec![
            Ttlv::structure(
                tag::REQUEST_HEADER,
                vec![
                    Ttlv::structure(
                        tag::PROTOCOL_VERSION,
                        vec![
                            int(tag::PROTOCOL_VERSION_MAJOR, version.0),
                            int(tag::PROTOCOL_VERSION_MINOR, version.1),
                        ],
                    ),
                    int(tag::BATCH_COUNT, 1),
                ],
            ),
            Ttlv::structure(
                tag::BATCH_ITEM,
                vec![
                    Ttlv::new(tag::OPERATION, Value::Enumeration(operation)),
                    Ttlv::structure(tag::REQUEST_PAYLOAD, payload),
                ],
            ),
        ],
    ))
}

fn text(t: u32, s: &str) -> Ttlv {
    Ttlv::new(t, Value::TextString(s.into()))
}

/// A 1.x `Attribute` structure.
fn attribute(name: &str, value: Value) -> Ttlv {
    Ttlv::structure(
        tag::ATTRIBUTE,
        vec![
            text(tag::ATTRIBUTE_NAME, name),
            Ttlv::new(tag::ATTRIBUTE_VALUE, value),
        ],
    )
}

fn payload_of(response: &Ttlv) -> &Ttlv {
    let item = response.find(tag::BATCH_ITEM).unwrap();
    assert_eq!(
        item.find(tag::RESULT_STATUS).and_then(Ttlv::as_enum),
        Some(0),
        "the operation failed: {response:?}"
    );
    item.find(tag::RESPONSE_PAYLOAD).unwrap()
}

/// The 1.x attributes of a Get Attributes answer, by name.
fn attributes(response: &Ttlv) -> Vec<(String, Value)> {
    payload_of(response)
        .find_all(tag::ATTRIBUTE)
        .map(|a| {
            (
                a.find(tag::ATTRIBUTE_NAME)
                    .unwrap()
                    .as_text()
                    .unwrap()
                    .to_owned(),
                a.find(tag::ATTRIBUTE_VALUE).unwrap().value.clone(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attributes_are_added_modified_and_deleted_and_names_need_not_be_slugs() {
    use kms_gateway::kmip::spec::op;
    let (gw, pem) = kmip_gateway().await;
    let mut s = connect(&gw, Some(&pem)).await.unwrap();
    let v = (1, 4);
    // A Name with spaces and capitals, as devices name keys.
    let name = Ttlv::structure(
        tag::NAME,
        vec![
            text(tag::NAME_VALUE, "Volume 7 / Array A"),
            Ttlv::new(tag::NAME_TYPE, Value::Enumeration(1)),
        ],
    );
    let create = request(
        v,
        op::CREATE,
        vec![
            Ttlv::new(tag::OBJECT_TYPE, Value::Enumeration(2)),
            Ttlv::structure(
                tag::TEMPLATE_ATTRIBUTE,
                vec![
                    attribute("Cryptographic Algorithm", Value::Enumeration(3)),
                    attribute("Cryptographic Length", Value::Integer(256)),
                    attribute("Name", name.value.clone()),
                    attribute("Object Group", Value::TextString("backups".into())),
                ],
            ),
        ],
    );
    let created = decode(&exchange(&mut s, &create).await);
    let uid = payload_of(&created)
        .find(tag::UNIQUE_IDENTIFIER)
        .and_then(Ttlv::as_text)
        .unwrap()
        .to_owned();
    let get_attributes = |names: &[&str]| {
        let mut p = vec![text(tag::UNIQUE_IDENTIFIER, &uid)];
        p.extend(names.iter().map(|n| text(tag::ATTRIBUTE_NAME, n)));
        request(v, op::GET_ATTRIBUTES, p)
    };
    let got = attributes(&decode(
        &exchange(&mut s, &get_attributes(&["Name", "Object Group"])).await,
    ));
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].1, name.value, "the Name comes back as it was given");
    assert_eq!(got[1].1, Value::TextString("backups".into()));
    // Locate by that name finds it.
    let locate = request(v, op::LOCATE, vec![attribute("Name", name.value.clone())]);
    let found = decode(&exchange(&mut s, &locate).await);
    let ids: Vec<&str> = payload_of(&found)
        .find_all(tag::UNIQUE_IDENTIFIER)
        .filter_map(Ttlv::as_text)
        .collect();
    assert_eq!(ids, [uid.as_str()]);

    // A client attribute of any type: added once, read, modified, deleted.
    let custom = |value: Value| attribute("x-volume-serial", value);
    let change = |operation, value| {
        request(
            v,
            operation,
            vec![text(tag::UNIQUE_IDENTIFIER, &uid), custom(value)],
        )
    };
    let added = decode(&exchange(&mut s, &change(op::ADD_ATTRIBUTE, Value::Integer(42))).await);
    payload_of(&added);
    let again = decode(&exchange(&mut s, &change(op::ADD_ATTRIBUTE, Value::Integer(43))).await);
    assert_eq!(
        result_reason(&again),
        Some(reason::PERMISSION_DENIED),
        "added twice: {again:?}"
    );
    let got = attributes(&decode(
        &exchange(&mut s, &get_attributes(&["x-volume-serial"])).await,
    ));
    assert_eq!(got, [("x-volume-serial".to_owned(), Value::Integer(42))]);
    let modified = decode(
        &exchange(
            &mut s,
            &change(op::MODIFY_ATTRIBUTE, Value::TextString("SN-7".into())),
        )
        .await,
    );
    payload_of(&modified);
    let got = attributes(&decode(
        &exchange(&mut s, &get_attributes(&["x-volume-serial"])).await,
    ));
    assert_eq!(
        got,
        [(
            "x-volume-serial".to_owned(),
            Value::TextString("SN-7".into())
        )]
    );
    let delete = request(
        v,
        op::DELETE_ATTRIBUTE,
        vec![
            text(tag::UNIQUE_IDENTIFIER, &uid),
            text(tag::ATTRIBUTE_NAME, "x-volume-serial"),
        ],
    );
    let deleted = decode(&exchange(&mut s, &delete).await);
    assert_eq!(
        attributes(&deleted),
        [(
            "x-volume-serial".to_owned(),
            Value::TextString("SN-7".into())
        )],
        "Delete Attribute answers with the deleted value"
    );
    let got = attributes(&decode(
        &exchange(&mut s, &get_attributes(&["x-volume-serial"])).await,
    ));
    assert!(got.is_empty(), "{got:?}");
    // Server attributes are the server's.
    let state = request(
        v,
        op::MODIFY_ATTRIBUTE,
        vec![
            text(tag::UNIQUE_IDENTIFIER, &uid),
            attribute("State", Value::Enumeration(2)),
        ],
    );
    let refused = decode(&exchange(&mut s, &state).await);
    assert_eq!(
        result_reason(&refused),
        Some(reason::PERMISSION_DENIED),
        "{refused:?}"
    );
    // Renaming: Modify Attribute of the Name.
    let renamed = Ttlv::structure(
        tag::NAME,
        vec![
            text(tag::NAME_VALUE, "volume-8"),
            Ttlv::new(tag::NAME_TYPE, Value::Enumeration(1)),
        ],
    );
    let rename = request(
        v,
        op::MODIFY_ATTRIBUTE,
        vec![
            text(tag::UNIQUE_IDENTIFIER, &uid),
            attribute("Name", renamed.value.clone()),
        ],
    );
    payload_of(&decode(&exchange(&mut s, &rename).await));
    let got = attributes(&decode(&exchange(&mut s, &get_attributes(&["Name"])).await));
    assert_eq!(got[0].1, renamed.value);
    let (status, key) = gw.get(&format!("/api/v1/kms/keys/{uid}")).await;
    assert_eq!(status, 200, "{key}");
    assert_eq!(
        key["key"]["name"], "volume-8",
        "a slug name is the key's own name"
    );
}

/// A request message of several batch items, with a Batch Error Continuation Option.
fn batch(version: (i32, i32), continuation: Option<u32>, items: Vec<(u32, Vec<Ttlv>)>) -> Vec<u8> {
    let mut message = decode(&request(version, 0x1E, Vec::new()));
    let Value::Structure(parts) = &mut message.value else {
        unreachable!()
    };
    let header = &mut parts[0];
    let Value::Structure(fields) = &mut header.value else {
        unreachable!()
    };
    fields.retain(|f| f.tag != tag::BATCH_COUNT);
    if let Some(c) = continuation {
        fields.push(Ttlv::new(
            tag::BATCH_ERROR_CONTINUATION_OPTION,
            Value::Enumeration(c),
        ));
    }
    fields.push(Ttlv::new(
        tag::BATCH_COUNT,
        Value::Integer(items.len() as i32),
    ));
    parts.truncate(1);
    for (n, (operation, payload)) in items.into_iter().enumerate() {
        parts.push(Ttlv::structure(
            tag::BATCH_ITEM,
            vec![
                Ttlv::new(tag::OPERATION, Value::Enumeration(operation)),
                Ttlv::new(tag::UNIQUE_BATCH_ITEM_ID, Value::ByteString(vec![n as u8])),
                Ttlv::structure(tag::REQUEST_PAYLOAD, payload),
            ],
        ));
    }
    ttlv::encode(&message)
}

fn statuses(response: &Ttlv) -> Vec<u32> {
    response
        .find_all(tag::BATCH_ITEM)
        .map(|i| i.find(tag::RESULT_STATUS).and_then(Ttlv::as_enum).unwrap())
        .collect()
}

fn aes_create(extra: Vec<Ttlv>) -> Vec<Ttlv> {
    let mut attributes = vec![
        attribute("Cryptographic Algorithm", Value::Enumeration(3)),
        attribute("Cryptographic Length", Value::Integer(256)),
    ];
    attributes.extend(extra);
    vec![
        Ttlv::new(tag::OBJECT_TYPE, Value::Enumeration(2)),
        Ttlv::structure(tag::TEMPLATE_ATTRIBUTE, attributes),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_keys_decrypt_batches_continue_or_stop_and_other_keys_keep_their_format() {
    use kms_gateway::kmip::spec::op;
    let (gw, pem) = kmip_gateway().await;
    let mut s = connect(&gw, Some(&pem)).await.unwrap();
    let v = (1, 4);
    let uid_of = |r: &Ttlv| {
        payload_of(r)
            .find(tag::UNIQUE_IDENTIFIER)
            .and_then(Ttlv::as_text)
            .unwrap()
            .to_owned()
    };
    let created = decode(&exchange(&mut s, &request(v, op::CREATE, aes_create(vec![]))).await);
    let uid = uid_of(&created);
    let id = |u: &str| vec![text(tag::UNIQUE_IDENTIFIER, u)];
    payload_of(&decode(
        &exchange(&mut s, &request(v, op::ACTIVATE, id(&uid))).await,
    ));
    let mut enc = id(&uid);
    enc.push(Ttlv::new(
        tag::DATA,
        Value::ByteString(b"old data".to_vec()),
    ));
    let sealed = decode(&exchange(&mut s, &request(v, op::ENCRYPT, enc.clone())).await);
    let field = |t| payload_of(&sealed).find(t).unwrap().clone();
    let mut dec = id(&uid);
    dec.extend([
        field(tag::DATA),
        field(tag::IV_COUNTER_NONCE),
        field(tag::AUTHENTICATED_ENCRYPTION_TAG),
    ]);

    // Revoked: new data refused, old data still decrypts (KMIP 1.4 §3.22).
    let reason_code = Ttlv::structure(
        tag::REVOCATION_REASON,
        vec![Ttlv::new(
            tag::REVOCATION_REASON_CODE,
            Value::Enumeration(6),
        )],
    );
    let mut revoke = id(&uid);
    revoke.push(reason_code);
    payload_of(&decode(
        &exchange(&mut s, &request(v, op::REVOKE, revoke)).await,
    ));
    let refused = decode(&exchange(&mut s, &request(v, op::ENCRYPT, enc.clone())).await);
    assert!(
        result_reason(&refused).is_some(),
        "a revoked key encrypted: {refused:?}"
    );
    let opened = decode(&exchange(&mut s, &request(v, op::DECRYPT, dec.clone())).await);
    assert_eq!(
        payload_of(&opened).find(tag::DATA).and_then(Ttlv::as_bytes),
        Some(&b"old data"[..])
    );
    // Enabling it through the native API does not undo the revocation.
    let (status, body) = gw
        .call(
            reqwest::Method::PATCH,
            &format!("/api/v1/kms/keys/{uid}"),
            Some(json!({"isDisabled": false})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let refused = decode(&exchange(&mut s, &request(v, op::ENCRYPT, enc.clone())).await);
    assert!(
        result_reason(&refused).is_some(),
        "re-enabled by the native API: {refused:?}"
    );

    // Batches: Stop (the default) ends at the first failure; Continue runs the rest;
    // Undo is refused as a whole.
    let bad = (op::ACTIVATE, id("00000000-0000-0000-0000-000000000000"));
    let good = (
        op::QUERY,
        vec![Ttlv::new(tag::QUERY_FUNCTION, Value::Enumeration(3))],
    );
    let stop = decode(&exchange(&mut s, &batch(v, None, vec![bad.clone(), good.clone()])).await);
    assert_eq!(statuses(&stop), [1], "{stop:?}");
    let go_on =
        decode(&exchange(&mut s, &batch(v, Some(1), vec![bad.clone(), good.clone()])).await);
    assert_eq!(statuses(&go_on), [1, 0], "{go_on:?}");
    let undo = decode(&exchange(&mut s, &batch(v, Some(3), vec![bad, good])).await);
    assert_eq!(
        result_reason(&undo),
        Some(reason::FEATURE_NOT_SUPPORTED),
        "{undo:?}"
    );

    // Identifiers: only the gateway's own spelling; `_pub` of a symmetric key is nothing.
    for other in [
        uid.to_uppercase(),
        format!("{{{uid}}}"),
        format!("{uid}_pub"),
    ] {
        let answer = decode(
            &exchange(
                &mut s,
                &request(v, op::DECRYPT, {
                    let mut d = dec.clone();
                    d[0] = text(tag::UNIQUE_IDENTIFIER, &other);
                    d
                }),
            )
            .await,
        );
        assert_eq!(
            result_reason(&answer),
            Some(reason::ITEM_NOT_FOUND),
            "{other}: {answer:?}"
        );
    }

    // A key that must never leave is not made over KMIP.
    let sealed_key = aes_create(vec![attribute("Extractable", Value::Boolean(false))]);
    let answer = decode(&exchange(&mut s, &request(v, op::CREATE, sealed_key)).await);
    assert_eq!(
        result_reason(&answer),
        Some(reason::FEATURE_NOT_SUPPORTED),
        "{answer:?}"
    );

    // A KMIP key is not rotated by the other APIs, and their keys keep their own format:
    // no raw KMIP encryption with them, no export, no KMIP attributes through them.
    let (status, body) = gw
        .post(&format!("/api/v1/kms/keys/{uid}/rotate"), json!({}))
        .await;
    assert_eq!(status, 400, "{body}");
    let project = gw.project("native").await;
    let native = gw
        .key(&project, "n", "encrypt-decrypt", "aes-256-gcm", None)
        .await;
    let (status, body) = gw
        .post(
            "/api/v1/identities",
            json!({"name": "kmip-native", "projectId": project, "tlsSubject": "CN=kmip-native",
                   "permissions": ["admin"]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let other = client_cert(&gw, "native", "/CN=kmip-native");
    let mut n = connect(&gw, Some(&other)).await.unwrap();
    let mut enc = id(&native);
    enc.push(Ttlv::new(tag::DATA, Value::ByteString(b"x".to_vec())));
    let answer = decode(&exchange(&mut n, &request(v, op::ENCRYPT, enc)).await);
    assert_eq!(
        result_reason(&answer),
        Some(reason::INVALID_FIELD),
        "{answer:?}"
    );
    let answer = decode(&exchange(&mut n, &request(v, op::GET, id(&native))).await);
    assert_eq!(
        result_reason(&answer),
        Some(reason::NOT_EXTRACTABLE),
        "{answer:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kmip_port_bounds_connections_per_address_and_the_handshake_time() {
    let token = Token::new();
    let ca = token.dir.path().join("gw/ca.pem");
    let gw = Gateway::start_on(
        token,
        &[
            ("KMSGW__KMIP__LISTEN", "127.0.0.1:0"),
            ("KMSGW__TLS__CLIENT_CA_FILE", ca.to_str().unwrap()),
            ("KMSGW__SERVER__MAX_CONNECTIONS_PER_ADDRESS", "2"),
            ("KMSGW__SERVER__TLS_HANDSHAKE_TIMEOUT_SECONDS", "4"),
        ],
    );
    let port = gw.kmip.clone().unwrap();
    let mut buf = [0u8; 16];
    let open = |s: &tokio::net::TcpStream| {
        let mut b = [0u8; 1];
        // Nothing to read and no EOF: the gateway holds it.
        matches!(s.try_read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    };
    // Two connections that never start TLS are held; a third from the same address is
    // closed at once, while the two are still open.
    let mut held = vec![
        tokio::net::TcpStream::connect(&port).await.unwrap(),
        tokio::net::TcpStream::connect(&port).await.unwrap(),
    ];
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let mut third = tokio::net::TcpStream::connect(&port).await.unwrap();
    let n = tokio::time::timeout(std::time::Duration::from_secs(10), third.read(&mut buf))
        .await
        .expect("the third connection is closed")
        .unwrap_or(0);
    assert_eq!(n, 0);
    for s in &mut held {
        assert!(open(s), "the first two are held");
    }
    // Then the handshake timeout closes them.
    for s in &mut held {
        let n = tokio::time::timeout(std::time::Duration::from_secs(30), s.read(&mut buf))
            .await
            .expect("closed after the handshake timeout")
            .unwrap_or(0);
        assert_eq!(n, 0);
    }
    // And the address may connect again.
    let pem = client_cert(&gw, "later", "/CN=later");
    assert!(connect(&gw, Some(&pem)).await.is_ok());
}
