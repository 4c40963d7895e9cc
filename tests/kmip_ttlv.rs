//! The KMIP TTLV codec against the golden messages of the KMIP specification's use and
//! test cases (tests/data/kmip/golden.json), and its refusal of oversized and deeply
//! nested messages without growing memory.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kms_gateway::kmip::ttlv::{self, Limits, Ttlv, TtlvError, Value, HEADER_LEN};

/// The system allocator, counting the bytes each thread asks for, so that a test can
/// show a refusal allocated (next to) nothing.
struct Counting;

thread_local! {
    static ALLOCATED: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded unchanged to `System`; the counter is a
// const-initialised thread-local without a destructor, so touching it never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATED.try_with(|a| a.set(a.get().saturating_add(layout.size())));
        // SAFETY: the caller's contract for `alloc` is passed on as it is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout` (see `alloc`).
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The bytes this thread allocated while running `f`, and what `f` returned.
fn allocated_by<T>(f: impl FnOnce() -> T) -> (usize, T) {
    let before = ALLOCATED.with(Cell::get);
    let out = f();
    (ALLOCATED.with(Cell::get) - before, out)
}

const REQUEST_MESSAGE: u32 = 0x42_0078;
const RESPONSE_MESSAGE: u32 = 0x42_007B;
const REQUEST_HEADER: u32 = 0x42_0077;
const RESPONSE_HEADER: u32 = 0x42_007A;
const PROTOCOL_VERSION: u32 = 0x42_0069;
const PROTOCOL_VERSION_MAJOR: u32 = 0x42_006A;
const PROTOCOL_VERSION_MINOR: u32 = 0x42_006B;
const BATCH_ITEM: u32 = 0x42_000F;
const OPERATION: u32 = 0x42_005C;

struct Golden {
    case: String,
    source: String,
    version: String,
    kind: String,
    operation: String,
    bytes: Vec<u8>,
}

fn golden() -> Vec<Golden> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/kmip/golden.json");
    let text = std::fs::read_to_string(path).expect("golden.json");
    let list: Vec<serde_json::Value> = serde_json::from_str(&text).expect("golden.json is JSON");
    list.iter()
        .map(|m| {
            let field = |name: &str| {
                m[name]
                    .as_str()
                    .unwrap_or_else(|| panic!("{name} missing in {m}"))
                    .to_owned()
            };
            Golden {
                case: field("case"),
                source: field("source"),
                version: field("version"),
                kind: field("kind"),
                operation: field("operation"),
                bytes: hex::decode(field("hex")).expect("hex"),
            }
        })
        .collect()
}

/// KMIP's Operation enumeration, for the operations the golden messages use.
fn operation_code(name: &str) -> u32 {
    match name {
        "Create" => 0x01,
        "Create Key Pair" => 0x02,
        "Register" => 0x03,
        "Locate" => 0x08,
        "Get" => 0x0A,
        "Get Attributes" => 0x0B,
        "Activate" => 0x12,
        "Revoke" => 0x13,
        "Destroy" => 0x14,
        "Query" => 0x18,
        "Discover Versions" => 0x1E,
        other => panic!("operation {other} not in the table"),
    }
}

#[test]
fn golden_messages_decode_and_reencode_byte_exact() {
    let messages = golden();
    assert!(
        messages.len() >= 15,
        "only {} golden messages",
        messages.len()
    );
    let limits = Limits::default();
    for m in &messages {
        let what = &m.source;
        let item = ttlv::decode(&m.bytes, &limits).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(ttlv::encode(&item), m.bytes, "{what}: re-encoding differs");
        let header: &[u8; HEADER_LEN] = m.bytes.first_chunk().expect("a header");
        assert_eq!(
            ttlv::message_length(header, &limits),
            Ok(m.bytes.len()),
            "{what}"
        );

        // The labels agree with the message itself.
        let (message_tag, header_tag) = match m.kind.as_str() {
            "request" => (REQUEST_MESSAGE, REQUEST_HEADER),
            "response" => (RESPONSE_MESSAGE, RESPONSE_HEADER),
            other => panic!("{what}: kind {other}"),
        };
        assert_eq!(item.tag, message_tag, "{what}");
        let version = item
            .find(header_tag)
            .and_then(|h| h.find(PROTOCOL_VERSION))
            .expect("a protocol version");
        let major = version.find(PROTOCOL_VERSION_MAJOR).and_then(Ttlv::as_i32);
        let minor = version.find(PROTOCOL_VERSION_MINOR).and_then(Ttlv::as_i32);
        assert_eq!(
            format!("{}.{}", major.unwrap_or(-1), minor.unwrap_or(-1)),
            m.version,
            "{what}"
        );
        let batch_item = item.find(BATCH_ITEM).expect("a batch item");
        // A response that failed before the operation was known may leave it out.
        if let Some(op) = batch_item.find(OPERATION) {
            assert_eq!(op.as_enum(), Some(operation_code(&m.operation)), "{what}");
        } else {
            assert_eq!(m.kind, "response", "{what}: a request names its operation");
        }
    }
}

#[test]
fn golden_cases_pair_one_request_with_one_response() {
    let mut cases: BTreeMap<&str, Vec<&Golden>> = BTreeMap::new();
    let messages = golden();
    for m in &messages {
        cases.entry(&m.case).or_default().push(m);
    }
    let mut pairs = 0;
    for (case, members) in &cases {
        let kinds: Vec<&str> = members.iter().map(|m| m.kind.as_str()).collect();
        assert!(
            kinds == ["request"] || kinds == ["request", "response"],
            "{case}: {kinds:?}"
        );
        assert!(members
            .iter()
            .all(|m| m.version == members[0].version && m.operation == members[0].operation));
        pairs += usize::from(kinds.len() == 2);
    }
    assert!(pairs >= 10, "only {pairs} request/response pairs");
}

#[test]
fn every_type_round_trips_inside_structures() {
    let item = Ttlv::structure(
        0x42_0078,
        vec![
            Ttlv::structure(0x42_0077, vec![]),
            Ttlv::new(0x42_0001, Value::Integer(-1)),
            Ttlv::new(0x42_0002, Value::LongInteger(i64::MIN)),
            Ttlv::new(0x42_0003, Value::BigInteger(vec![])),
            Ttlv::new(0x42_0004, Value::Boolean(false)),
            Ttlv::new(0x42_0005, Value::TextString(String::new())),
            Ttlv::new(0x42_0006, Value::TextString("12345678".into())),
            Ttlv::new(0x42_0007, Value::ByteString(vec![0xFF; 9])),
            Ttlv::new(0x42_0008, Value::DateTime(-1)),
            Ttlv::new(0x42_0009, Value::Interval(u32::MAX)),
            Ttlv::structure(
                0x54_0000,
                vec![Ttlv::new(0x54_0001, Value::DateTimeExtended(7))],
            ),
        ],
    );
    let bytes = ttlv::encode(&item);
    assert_eq!(bytes.len() % 8, 0);
    assert_eq!(ttlv::decode(&bytes, &Limits::default()), Ok(item.clone()));
    let header: [u8; 8] = bytes[..8].try_into().unwrap();
    assert_eq!(
        ttlv::message_length(&header, &Limits::default()),
        Ok(bytes.len())
    );
    let mut appended = vec![0xAA];
    ttlv::encode_into(&item, &mut appended);
    assert_eq!(appended[1..], bytes[..]);
}

#[test]
fn accessors() {
    let item = Ttlv::structure(
        1,
        vec![
            Ttlv::new(2, Value::Integer(5)),
            Ttlv::new(3, Value::TextString("a".into())),
            Ttlv::new(2, Value::Integer(6)),
        ],
    );
    assert_eq!(item.items().len(), 3);
    assert_eq!(item.find(2).and_then(Ttlv::as_i32), Some(5));
    assert_eq!(item.find(3).and_then(Ttlv::as_text), Some("a"));
    assert_eq!(item.find(4), None);
    let all: Vec<i32> = item.find_all(2).filter_map(Ttlv::as_i32).collect();
    assert_eq!(all, [5, 6]);
    let leaf = Ttlv::new(9, Value::Enumeration(3));
    assert!(leaf.items().is_empty());
    assert_eq!(leaf.find(9), None);
    assert_eq!(leaf.as_enum(), Some(3));
    assert_eq!(leaf.as_i32(), None);
    assert_eq!(Ttlv::new(9, Value::LongInteger(4)).as_i64(), Some(4));
    assert_eq!(Ttlv::new(9, Value::Boolean(true)).as_bool(), Some(true));
    assert_eq!(
        Ttlv::new(9, Value::ByteString(vec![1])).as_bytes(),
        Some(&[1][..])
    );
    assert_eq!(
        Ttlv::new(9, Value::BigInteger(vec![0; 8])).as_big(),
        Some(&[0; 8][..])
    );
    assert_eq!(Ttlv::new(9, Value::DateTime(8)).as_datetime(), Some(8));
    assert_eq!(
        Ttlv::new(9, Value::DateTimeExtended(8)).as_datetime_extended(),
        Some(8)
    );
    assert_eq!(Ttlv::new(9, Value::Interval(8)).as_interval(), Some(8));
    assert_eq!(Ttlv::new(9, Value::Interval(8)).as_datetime(), None);
}

/// A structure holding one Byte String, `total` bytes in all.
fn message_of(total: usize) -> Vec<u8> {
    let inner = u32::try_from(total - 2 * HEADER_LEN).unwrap();
    let mut bytes = Vec::with_capacity(total);
    bytes.extend_from_slice(&[0x42, 0x00, 0x78, 0x01]);
    bytes.extend_from_slice(&(inner + 8).to_be_bytes());
    bytes.extend_from_slice(&[0x42, 0x00, 0x43, 0x08]);
    bytes.extend_from_slice(&inner.to_be_bytes());
    bytes.resize(total, 0);
    bytes
}

#[test]
fn oversized_message_refused_by_framing_and_decoder() {
    let limits = Limits::default();
    // Just within the limit, then 2 MiB.
    let fits = message_of(limits.max_message_bytes);
    assert!(ttlv::decode(&fits, &limits).is_ok());
    let big = message_of(2 << 20);
    let header: &[u8; HEADER_LEN] = big.first_chunk().unwrap();
    assert_eq!(
        ttlv::message_length(header, &limits),
        Err(TtlvError::TooLarge)
    );
    let (allocated, result) = allocated_by(|| ttlv::decode(&big, &limits));
    assert_eq!(result, Err(TtlvError::TooLarge));
    assert_eq!(
        allocated, 0,
        "refusing a 2 MiB message allocated {allocated} bytes"
    );
}

#[test]
fn deep_nesting_refused_with_bounded_memory() {
    // 100 structures, each holding the next; the innermost holds an Integer.
    let depth = 100;
    let mut bytes = Vec::new();
    for level in 0..depth {
        let inner = u32::try_from(8 * (depth - level - 1) + 16).unwrap();
        bytes.extend_from_slice(&[0x42, 0x00, 0x01, 0x01]);
        bytes.extend_from_slice(&inner.to_be_bytes());
    }
    bytes.extend_from_slice(&hex::decode("42000202000000040000000700000000").unwrap());
    let unlimited = Limits {
        max_depth: usize::MAX,
        ..Limits::default()
    };
    assert!(
        ttlv::decode(&bytes, &unlimited).is_ok(),
        "the message itself is well formed"
    );
    let (allocated, result) = allocated_by(|| ttlv::decode(&bytes, &Limits::default()));
    assert_eq!(result, Err(TtlvError::TooDeep));
    assert!(
        allocated < 4096,
        "refusing 100 levels allocated {allocated} bytes"
    );
}

#[test]
fn huge_claimed_length_over_tiny_buffer_fails_fast_without_allocating() {
    // A structure claiming 1 GiB, then an item claiming 1 GiB, in 16 bytes.
    let mut bytes = vec![0x42, 0x00, 0x78, 0x01, 0x40, 0x00, 0x00, 0x00];
    bytes.extend_from_slice(&[0x42, 0x00, 0x43, 0x08, 0x40, 0x00, 0x00, 0x00]);
    let unbounded = Limits {
        max_message_bytes: usize::MAX,
        ..Limits::default()
    };
    let header: &[u8; HEADER_LEN] = bytes.first_chunk().unwrap();
    assert_eq!(
        ttlv::message_length(header, &Limits::default()),
        Err(TtlvError::TooLarge)
    );
    assert_eq!(ttlv::message_length(header, &unbounded), Ok((1 << 30) + 8));
    for (limits, expected) in [
        (Limits::default(), TtlvError::TooLarge),
        (unbounded, TtlvError::Truncated),
    ] {
        let start = Instant::now();
        let (allocated, result) = allocated_by(|| ttlv::decode(&bytes, &limits));
        assert_eq!(result, Err(expected));
        assert_eq!(allocated, 0, "allocated {allocated} bytes");
        assert!(start.elapsed() < Duration::from_secs(1));
    }
    // The same claim inside a structure whose length is honest.
    let inner = [
        0x42, 0x00, 0x78, 0x01, 0x00, 0x00, 0x00, 0x08, 0x42, 0x00, 0x43, 0x08, 0x40, 0x00, 0x00,
        0x00,
    ];
    let (allocated, result) = allocated_by(|| ttlv::decode(&inner, &unbounded));
    assert_eq!(
        result,
        Err(TtlvError::BadStructureLength {
            tag: REQUEST_MESSAGE
        })
    );
    assert!(allocated < 1024, "allocated {allocated} bytes");
}

#[test]
fn counting_allocator_counts() {
    // The allocation checks above mean something only if this one can fail.
    let (allocated, v) = allocated_by(|| Value::ByteString(vec![0; 1000]));
    assert!(allocated >= 1000);
    drop(v);
}
