//! KMIP's Tag-Type-Length-Value encoding (KMIP 1.4 §9.1, KMIP 2.1 §9.1): a strict decoder
//! and an encoder. Depends on `std` only, so that the fuzz target can include it by path.
//!
//! An item is a 3-byte tag, a 1-byte type, a 4-byte big-endian length and the value,
//! padded with zero bytes to a multiple of eight. The decoder accepts exactly one
//! encoding of each item (the one [`encode`] writes), so `encode(decode(x)?) == x`.
//! It walks nested structures with an explicit stack, never allocates more than the
//! input's size justifies and bounds the message size, the nesting depth and the number
//! of items by [`Limits`].

use std::fmt;

/// The type byte of each TTLV item type.
pub mod item_type {
    pub const STRUCTURE: u8 = 0x01;
    pub const INTEGER: u8 = 0x02;
    pub const LONG_INTEGER: u8 = 0x03;
    pub const BIG_INTEGER: u8 = 0x04;
    pub const ENUMERATION: u8 = 0x05;
    pub const BOOLEAN: u8 = 0x06;
    pub const TEXT_STRING: u8 = 0x07;
    pub const BYTE_STRING: u8 = 0x08;
    pub const DATE_TIME: u8 = 0x09;
    pub const INTERVAL: u8 = 0x0A;
    /// KMIP 2.0 and later.
    pub const DATE_TIME_EXTENDED: u8 = 0x0B;
}

/// The length of an item's tag, type and length fields.
pub const HEADER_LEN: usize = 8;

/// The largest tag: tags are three bytes on the wire.
pub const MAX_TAG: u32 = 0x00FF_FFFF;

/// The deepest nesting [`decode`] accepts whatever `Limits::max_depth` says: dropping,
/// comparing or encoding a [`Ttlv`] recurses once per level, so depth stays small.
pub const DEPTH_CEILING: usize = 128;

/// One TTLV item.
#[derive(Debug, Clone, PartialEq)]
pub struct Ttlv {
    /// The tag, at most [`MAX_TAG`].
    pub tag: u32,
    pub value: Value,
}

/// The value of an item, one variant per TTLV type.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Structure(Vec<Ttlv>),
    Integer(i32),
    LongInteger(i64),
    /// Two's complement, big-endian, its length a multiple of eight bytes.
    BigInteger(Vec<u8>),
    Enumeration(u32),
    Boolean(bool),
    TextString(String),
    ByteString(Vec<u8>),
    /// Seconds since the Unix epoch.
    DateTime(i64),
    /// Seconds.
    Interval(u32),
    /// Microseconds since the Unix epoch (KMIP 2.0 and later).
    DateTimeExtended(i64),
}

impl Value {
    /// The type byte this value is encoded with.
    pub fn item_type(&self) -> u8 {
        match self {
            Value::Structure(_) => item_type::STRUCTURE,
            Value::Integer(_) => item_type::INTEGER,
            Value::LongInteger(_) => item_type::LONG_INTEGER,
            Value::BigInteger(_) => item_type::BIG_INTEGER,
            Value::Enumeration(_) => item_type::ENUMERATION,
            Value::Boolean(_) => item_type::BOOLEAN,
            Value::TextString(_) => item_type::TEXT_STRING,
            Value::ByteString(_) => item_type::BYTE_STRING,
            Value::DateTime(_) => item_type::DATE_TIME,
            Value::Interval(_) => item_type::INTERVAL,
            Value::DateTimeExtended(_) => item_type::DATE_TIME_EXTENDED,
        }
    }
}

/// Bounds on what [`decode`] and [`message_length`] accept.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The largest whole message, header included.
    pub max_message_bytes: usize,
    /// The deepest nesting: the outermost item is at depth 1, the items of a structure
    /// at depth `n` are at depth `n + 1`. Never more than [`DEPTH_CEILING`].
    pub max_depth: usize,
    /// The most items in one message, the outermost one included.
    pub max_items: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 1 << 20,
            max_depth: 16,
            max_items: 10_000,
        }
    }
}

/// Why bytes are not an acceptable TTLV message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TtlvError {
    /// The input ends before the item it starts does.
    Truncated,
    /// The message is longer than `Limits::max_message_bytes`.
    TooLarge,
    /// Structures are nested deeper than `Limits::max_depth`.
    TooDeep,
    /// The message holds more than `Limits::max_items` items.
    TooManyItems,
    /// A type byte that KMIP does not define.
    BadType(u8),
    /// A length that the item's type does not allow: not the fixed size of Integer,
    /// Long Integer, Enumeration, Boolean, Date-Time, Interval or Date-Time Extended,
    /// not a multiple of eight for a Big Integer or a Structure.
    BadLength {
        tag: u32,
        item_type: u8,
        length: u32,
    },
    /// The items of the structure with this tag do not fill its length exactly.
    BadStructureLength { tag: u32 },
    /// A padding byte that is not zero.
    BadPadding { tag: u32 },
    /// A Boolean whose value is neither 0 nor 1.
    BadBoolean { tag: u32 },
    /// A Text String that is not UTF-8.
    BadUtf8 { tag: u32 },
    /// Bytes after the one item the input must hold.
    TrailingBytes,
    /// A message header whose item is not a Structure.
    NotAStructure,
}

impl fmt::Display for TtlvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TtlvError::Truncated => f.write_str("TTLV input ends inside an item"),
            TtlvError::TooLarge => f.write_str("TTLV message exceeds the size limit"),
            TtlvError::TooDeep => f.write_str("TTLV structures nested beyond the depth limit"),
            TtlvError::TooManyItems => f.write_str("TTLV message exceeds the item limit"),
            TtlvError::BadType(t) => write!(f, "unknown TTLV item type 0x{t:02x}"),
            TtlvError::BadLength {
                tag,
                item_type,
                length,
            } => write!(
                f,
                "TTLV item 0x{tag:06x} of type 0x{item_type:02x} has invalid length {length}"
            ),
            TtlvError::BadStructureLength { tag } => write!(
                f,
                "TTLV structure 0x{tag:06x}: its items do not fill its length exactly"
            ),
            TtlvError::BadPadding { tag } => {
                write!(f, "TTLV item 0x{tag:06x} has non-zero padding")
            }
            TtlvError::BadBoolean { tag } => {
                write!(f, "TTLV boolean 0x{tag:06x} is neither 0 nor 1")
            }
            TtlvError::BadUtf8 { tag } => {
                write!(f, "TTLV text string 0x{tag:06x} is not UTF-8")
            }
            TtlvError::TrailingBytes => f.write_str("bytes after the end of the TTLV item"),
            TtlvError::NotAStructure => f.write_str("TTLV message is not a structure"),
        }
    }
}

impl std::error::Error for TtlvError {}

/// From the first 8 bytes of a message: its total length (8 + value length), after
/// checking the type is Structure (0x01) and the length is within
/// `limits.max_message_bytes`. For framing a stream.
pub fn message_length(header: &[u8; HEADER_LEN], limits: &Limits) -> Result<usize, TtlvError> {
    let (tag, ty, length) = split_header(header);
    if ty != item_type::STRUCTURE {
        return Err(TtlvError::NotAStructure);
    }
    let total = usize::try_from(length)
        .ok()
        .and_then(|l| l.checked_add(HEADER_LEN))
        .filter(|&t| t <= limits.max_message_bytes)
        .ok_or(TtlvError::TooLarge)?;
    if length % 8 != 0 {
        return Err(TtlvError::BadLength {
            tag,
            item_type: ty,
            length,
        });
    }
    Ok(total)
}

/// Decodes exactly one item, which must consume all of `bytes` (its padding included).
///
/// Strict: fixed-size types must have their exact length, a Big Integer's length is a
/// multiple of eight, a Boolean is 0 or 1, a Text String is UTF-8, padding bytes are
/// zero, a structure's length is exactly the sum of its items; the size, depth and item
/// count are bounded by `limits`.
pub fn decode(bytes: &[u8], limits: &Limits) -> Result<Ttlv, TtlvError> {
    if bytes.len() > limits.max_message_bytes {
        return Err(TtlvError::TooLarge);
    }
    let header = read_header(bytes, 0, bytes.len()).ok_or(TtlvError::Truncated)?;
    // The outermost item decides the whole input's length: checked before anything is
    // allocated, so every later length is bounded by bytes actually present.
    let total = usize::try_from(header.length)
        .ok()
        .and_then(|l| l.checked_add(HEADER_LEN + padding(l)))
        .ok_or(TtlvError::TooLarge)?;
    if total > limits.max_message_bytes {
        return Err(TtlvError::TooLarge);
    }
    if total > bytes.len() {
        return Err(TtlvError::Truncated);
    }
    if total < bytes.len() {
        return Err(TtlvError::TrailingBytes);
    }

    // The structures being filled, outermost first.
    let mut open: Vec<Open> = Vec::new();
    let mut items = 0usize;
    let mut pos = 0usize;
    loop {
        // Close every structure that ends here.
        while open.last().is_some_and(|o| o.end == pos) {
            let Some(done) = open.pop() else { break };
            let item = done.finish();
            match open.last_mut() {
                Some(parent) => parent.items.push(item),
                None => return Ok(item),
            }
        }
        let region_end = open.last().map_or(bytes.len(), |o| o.end);
        let overrun = || match open.last() {
            Some(o) => TtlvError::BadStructureLength { tag: o.tag },
            None => TtlvError::Truncated,
        };
        let header = read_header(bytes, pos, region_end).ok_or_else(overrun)?;
        if open.len() >= limits.max_depth.min(DEPTH_CEILING) {
            return Err(TtlvError::TooDeep);
        }
        items += 1;
        if items > limits.max_items {
            return Err(TtlvError::TooManyItems);
        }
        let bad_length = TtlvError::BadLength {
            tag: header.tag,
            item_type: header.ty,
            length: header.length,
        };
        check_length(header.ty, header.length).map_err(|e| e.unwrap_or(bad_length))?;
        // `read_header` returned, so `pos + 8 <= region_end <= bytes.len()`; lengths
        // beyond the region are refused before any slice is taken.
        let start = pos + HEADER_LEN;
        let length = usize::try_from(header.length).map_err(|_| overrun())?;
        let padded = length.checked_add(padding(length)).ok_or_else(overrun)?;
        if padded > region_end - start {
            return Err(overrun());
        }
        let next = start + padded;
        if header.ty == item_type::STRUCTURE {
            open.push(Open {
                tag: header.tag,
                end: next,
                items: Vec::new(),
            });
            pos = start;
            continue;
        }
        let raw = &bytes[start..start + length];
        if bytes[start + length..next].iter().any(|&b| b != 0) {
            return Err(TtlvError::BadPadding { tag: header.tag });
        }
        let item = Ttlv {
            tag: header.tag,
            value: scalar(header.tag, header.ty, raw)?,
        };
        pos = next;
        match open.last_mut() {
            Some(parent) => parent.items.push(item),
            None => return Ok(item),
        }
    }
}

/// Encodes one item, padding included.
///
/// Tags are taken modulo 2^24 (only three bytes are on the wire). A value longer than
/// `u32::MAX` bytes cannot be represented; its length field saturates, which no decoder
/// accepts. Recurses once per nesting level of `item`.
pub fn encode(item: &Ttlv) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(item, &mut out);
    out
}

/// Appends the encoding of `item` to `out` (see [`encode`]).
pub fn encode_into(item: &Ttlv, out: &mut Vec<u8>) {
    debug_assert!(
        item.tag <= MAX_TAG,
        "TTLV tag 0x{:x} exceeds 24 bits",
        item.tag
    );
    out.extend_from_slice(&item.tag.to_be_bytes()[1..]);
    out.push(item.value.item_type());
    let length_at = out.len();
    out.extend_from_slice(&[0; 4]);
    let start = out.len();
    match &item.value {
        Value::Structure(items) => {
            for child in items {
                encode_into(child, out);
            }
        }
        Value::Integer(v) => out.extend_from_slice(&v.to_be_bytes()),
        Value::LongInteger(v) | Value::DateTime(v) | Value::DateTimeExtended(v) => {
            out.extend_from_slice(&v.to_be_bytes())
        }
        Value::Enumeration(v) | Value::Interval(v) => out.extend_from_slice(&v.to_be_bytes()),
        Value::Boolean(v) => out.extend_from_slice(&u64::from(*v).to_be_bytes()),
        Value::TextString(s) => out.extend_from_slice(s.as_bytes()),
        Value::BigInteger(b) | Value::ByteString(b) => out.extend_from_slice(b),
    }
    let length = out.len() - start;
    let field = u32::try_from(length).unwrap_or(u32::MAX);
    out[length_at..start].copy_from_slice(&field.to_be_bytes());
    out.resize(out.len() + padding(length), 0);
}

impl Ttlv {
    pub fn new(tag: u32, value: Value) -> Self {
        Ttlv { tag, value }
    }

    pub fn structure(tag: u32, items: Vec<Ttlv>) -> Self {
        Ttlv {
            tag,
            value: Value::Structure(items),
        }
    }

    /// The items of a structure; an empty slice for any other type.
    pub fn items(&self) -> &[Ttlv] {
        match &self.value {
            Value::Structure(items) => items,
            _ => &[],
        }
    }

    /// The first item of this structure with `tag`.
    pub fn find(&self, tag: u32) -> Option<&Ttlv> {
        self.items().iter().find(|i| i.tag == tag)
    }

    /// Every item of this structure with `tag`, in order.
    pub fn find_all(&self, tag: u32) -> impl Iterator<Item = &Ttlv> {
        self.items().iter().filter(move |i| i.tag == tag)
    }

    pub fn as_i32(&self) -> Option<i32> {
        match self.value {
            Value::Integer(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self.value {
            Value::LongInteger(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_enum(&self) -> Option<u32> {
        match self.value {
            Value::Enumeration(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self.value {
            Value::Boolean(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_text(&self) -> Option<&str> {
        match &self.value {
            Value::TextString(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_bytes(&self) -> Option<&[u8]> {
        match &self.value {
            Value::ByteString(v) => Some(v),
            _ => None,
        }
    }

    /// A Date-Time, in seconds since the Unix epoch.
    pub fn as_datetime(&self) -> Option<i64> {
        match self.value {
            Value::DateTime(v) => Some(v),
            _ => None,
        }
    }

    /// A Date-Time Extended, in microseconds since the Unix epoch.
    pub fn as_datetime_extended(&self) -> Option<i64> {
        match self.value {
            Value::DateTimeExtended(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_interval(&self) -> Option<u32> {
        match self.value {
            Value::Interval(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_big(&self) -> Option<&[u8]> {
        match &self.value {
            Value::BigInteger(v) => Some(v),
            _ => None,
        }
    }
}

/// A structure whose items are being decoded.
struct Open {
    tag: u32,
    /// Where its value (and so its last item) ends in the input.
    end: usize,
    items: Vec<Ttlv>,
}

impl Open {
    fn finish(self) -> Ttlv {
        Ttlv::structure(self.tag, self.items)
    }
}

struct Header {
    tag: u32,
    ty: u8,
    length: u32,
}

fn split_header(h: &[u8; HEADER_LEN]) -> (u32, u8, u32) {
    let tag = u32::from_be_bytes([0, h[0], h[1], h[2]]);
    let length = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
    (tag, h[3], length)
}

/// The header at `pos`, if all eight bytes lie before `end` (itself within `bytes`).
fn read_header(bytes: &[u8], pos: usize, end: usize) -> Option<Header> {
    let field = bytes.get(pos..pos.checked_add(HEADER_LEN)?.min(end))?;
    let field: &[u8; HEADER_LEN] = field.try_into().ok()?;
    let (tag, ty, length) = split_header(field);
    Some(Header { tag, ty, length })
}

/// The zero bytes that follow a value of `length` bytes.
fn padding(length: usize) -> usize {
    (8 - length % 8) % 8
}

/// `Ok` when a value of this type may have this length; `Err(None)` for a bad length,
/// `Err(Some(_))` for an unknown type.
fn check_length(ty: u8, length: u32) -> Result<(), Option<TtlvError>> {
    let ok = match ty {
        item_type::INTEGER | item_type::ENUMERATION | item_type::INTERVAL => length == 4,
        item_type::LONG_INTEGER
        | item_type::BOOLEAN
        | item_type::DATE_TIME
        | item_type::DATE_TIME_EXTENDED => length == 8,
        item_type::STRUCTURE | item_type::BIG_INTEGER => length % 8 == 0,
        item_type::TEXT_STRING | item_type::BYTE_STRING => true,
        other => return Err(Some(TtlvError::BadType(other))),
    };
    if ok {
        Ok(())
    } else {
        Err(None)
    }
}

/// The value of a non-structure item whose length `check_length` accepted.
fn scalar(tag: u32, ty: u8, raw: &[u8]) -> Result<Value, TtlvError> {
    // `check_length` admitted only the exact sizes, so the defaults are never used.
    let four = || -> [u8; 4] { raw.try_into().unwrap_or_default() };
    let eight = || -> [u8; 8] { raw.try_into().unwrap_or_default() };
    Ok(match ty {
        item_type::INTEGER => Value::Integer(i32::from_be_bytes(four())),
        item_type::LONG_INTEGER => Value::LongInteger(i64::from_be_bytes(eight())),
        item_type::BIG_INTEGER => Value::BigInteger(raw.to_vec()),
        item_type::ENUMERATION => Value::Enumeration(u32::from_be_bytes(four())),
        item_type::BOOLEAN => match u64::from_be_bytes(eight()) {
            0 => Value::Boolean(false),
            1 => Value::Boolean(true),
            _ => return Err(TtlvError::BadBoolean { tag }),
        },
        item_type::TEXT_STRING => match std::str::from_utf8(raw) {
            Ok(s) => Value::TextString(s.to_owned()),
            Err(_) => return Err(TtlvError::BadUtf8 { tag }),
        },
        item_type::BYTE_STRING => Value::ByteString(raw.to_vec()),
        item_type::DATE_TIME => Value::DateTime(i64::from_be_bytes(eight())),
        item_type::INTERVAL => Value::Interval(u32::from_be_bytes(four())),
        item_type::DATE_TIME_EXTENDED => Value::DateTimeExtended(i64::from_be_bytes(eight())),
        other => return Err(TtlvError::BadType(other)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hex with spaces and `|` separators, as the specification prints it.
    fn h(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
        assert_eq!(digits.len() % 2, 0, "odd hex: {s}");
        digits
            .chunks(2)
            .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
            .collect()
    }

    fn strict(bytes: &[u8]) -> Result<Ttlv, TtlvError> {
        decode(bytes, &Limits::default())
    }

    /// Nested empty structures, `depth` levels in all.
    fn nested(depth: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for level in 0..depth {
            let inner = u32::try_from(8 * (depth - level - 1)).unwrap();
            out.extend_from_slice(&[0x42, 0x00, 0x01, 0x01]);
            out.extend_from_slice(&inner.to_be_bytes());
        }
        out
    }

    const T: u32 = 0x42_0020;

    /// KMIP 1.4 §9.1.2, every example, both ways.
    #[test]
    fn specification_examples_byte_exact() {
        let cases = [
            (
                "42 00 20 | 02 | 00 00 00 04 | 00 00 00 08 00 00 00 00",
                Value::Integer(8),
            ),
            (
                "42 00 20 | 03 | 00 00 00 08 | 01 B6 9B 4B A5 74 92 00",
                Value::LongInteger(123_456_789_000_000_000),
            ),
            (
                "42 00 20 | 04 | 00 00 00 10 | 00 00 00 00 03 FD 35 EB 6B C2 DF 46 18 08 00 00",
                Value::BigInteger(h("00000000 03FD35EB 6BC2DF46 18080000")),
            ),
            (
                "42 00 20 | 05 | 00 00 00 04 | 00 00 00 FF 00 00 00 00",
                Value::Enumeration(255),
            ),
            (
                "42 00 20 | 06 | 00 00 00 08 | 00 00 00 00 00 00 00 01",
                Value::Boolean(true),
            ),
            (
                "42 00 20 | 07 | 00 00 00 0B | 48 65 6C 6C 6F 20 57 6F 72 6C 64 00 00 00 00 00",
                Value::TextString("Hello World".into()),
            ),
            (
                "42 00 20 | 08 | 00 00 00 03 | 01 02 03 00 00 00 00 00",
                Value::ByteString(vec![1, 2, 3]),
            ),
            (
                // Friday, March 14, 2008, 11:56:40 GMT.
                "42 00 20 | 09 | 00 00 00 08 | 00 00 00 00 47 DA 67 F8",
                Value::DateTime(1_205_495_800),
            ),
            (
                // Ten days.
                "42 00 20 | 0A | 00 00 00 04 | 00 0D 2F 00 00 00 00 00",
                Value::Interval(864_000),
            ),
            (
                "42 00 20 | 01 | 00 00 00 20 | 42 00 04 | 05 | 00 00 00 04 | 00 00 00 FE 00 00 00 00 \
                 | 42 00 05 | 02 | 00 00 00 04 | 00 00 00 FF 00 00 00 00",
                Value::Structure(vec![
                    Ttlv::new(0x42_0004, Value::Enumeration(254)),
                    Ttlv::new(0x42_0005, Value::Integer(255)),
                ]),
            ),
            (
                // KMIP 2.0 Date-Time Extended: microseconds.
                "42 00 20 | 0B | 00 00 00 08 | 00 04 48 64 5C EF EE 00",
                Value::DateTimeExtended(1_205_495_800_000_000),
            ),
        ];
        for (hex, value) in cases {
            let bytes = h(hex);
            let item = Ttlv::new(T, value);
            assert_eq!(strict(&bytes).as_ref(), Ok(&item), "{hex}");
            assert_eq!(encode(&item), bytes, "{hex}");
        }
    }

    #[test]
    fn fixed_sizes_are_exact() {
        // (type, a length the type does not allow)
        let wrong = [
            (0x02, 8),
            (0x03, 4),
            (0x04, 12),
            (0x05, 8),
            (0x06, 4),
            (0x09, 4),
            (0x0A, 8),
            (0x0B, 16),
            (0x01, 12),
        ];
        for (ty, length) in wrong {
            let mut bytes = vec![0x42, 0x00, 0x20, ty];
            bytes.extend_from_slice(&u32::to_be_bytes(length));
            bytes.resize(8 + (length as usize).div_ceil(8) * 8, 0);
            assert_eq!(
                strict(&bytes),
                Err(TtlvError::BadLength {
                    tag: T,
                    item_type: ty,
                    length
                }),
                "type {ty:#x}"
            );
        }
    }

    #[test]
    fn each_rule_has_its_own_error() {
        let refused = [
            ("", TtlvError::Truncated),
            ("42 00 20 02 00 00 00", TtlvError::Truncated),
            ("42 00 20 02 00 00 00 04 00 00 00 08", TtlvError::Truncated),
            ("42 00 20 00 00 00 00 00", TtlvError::BadType(0x00)),
            ("42 00 20 0C 00 00 00 00", TtlvError::BadType(0x0C)),
            (
                "42 00 20 02 00 00 00 04 00 00 00 08 00 00 00 01",
                TtlvError::BadPadding { tag: T },
            ),
            (
                "42 00 20 08 00 00 00 01 01 00 00 00 00 00 80 00",
                TtlvError::BadPadding { tag: T },
            ),
            (
                "42 00 20 06 00 00 00 08 00 00 00 00 00 00 00 02",
                TtlvError::BadBoolean { tag: T },
            ),
            (
                "42 00 20 06 00 00 00 08 01 00 00 00 00 00 00 01",
                TtlvError::BadBoolean { tag: T },
            ),
            (
                "42 00 20 07 00 00 00 02 C3 28 00 00 00 00 00 00",
                TtlvError::BadUtf8 { tag: T },
            ),
            (
                "42 00 20 02 00 00 00 04 00 00 00 08 00 00 00 00 00 00 00 00 00 00 00 00",
                TtlvError::TrailingBytes,
            ),
            // A structure of 16 bytes whose only item claims 16 bytes of value.
            (
                "42 00 20 01 00 00 00 10 42 00 04 08 00 00 00 10 00 00 00 00 00 00 00 00",
                TtlvError::BadStructureLength { tag: T },
            ),
            // The structure's item lies past the structure's own length.
            (
                "42 00 20 01 00 00 00 08 42 00 04 02 00 00 00 04",
                TtlvError::BadStructureLength { tag: T },
            ),
            // ... which is the input's length too.
            (
                "42 00 20 01 00 00 00 08 42 00 04 02 00 00 00 04 00 00 00 08 00 00 00 00",
                TtlvError::TrailingBytes,
            ),
            // A second item inside a structure, cut off by the structure's end.
            (
                "42 00 20 01 00 00 00 18 42 00 04 02 00 00 00 04 00 00 00 08 00 00 00 00 \
                 42 00 05 02 00 00 00 04",
                TtlvError::BadStructureLength { tag: T },
            ),
        ];
        for (hex, error) in refused {
            assert_eq!(strict(&h(hex)), Err(error), "{hex}");
        }
        let messages: Vec<String> = [
            TtlvError::Truncated,
            TtlvError::TooLarge,
            TtlvError::TooDeep,
            TtlvError::TooManyItems,
            TtlvError::NotAStructure,
            TtlvError::BadStructureLength { tag: T },
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        assert!(messages.iter().all(|m| !m.is_empty()));
    }

    #[test]
    fn message_length_frames_structures_only() {
        let limits = Limits::default();
        let header = |ty: u8, length: u32| {
            let mut h = [0x42, 0x00, 0x78, ty, 0, 0, 0, 0];
            h[4..].copy_from_slice(&length.to_be_bytes());
            h
        };
        assert_eq!(message_length(&header(0x01, 0x20), &limits), Ok(0x28));
        assert_eq!(message_length(&header(0x01, 0), &limits), Ok(8));
        assert_eq!(
            message_length(&header(0x01, (1 << 20) - 8), &limits),
            Ok(1 << 20)
        );
        assert_eq!(
            message_length(&header(0x01, 1 << 20), &limits),
            Err(TtlvError::TooLarge)
        );
        assert_eq!(
            message_length(&header(0x01, u32::MAX), &limits),
            Err(TtlvError::TooLarge)
        );
        assert_eq!(
            message_length(&header(0x02, 4), &limits),
            Err(TtlvError::NotAStructure)
        );
        assert_eq!(
            message_length(&header(0x01, 12), &limits),
            Err(TtlvError::BadLength {
                tag: 0x42_0078,
                item_type: 1,
                length: 12
            })
        );
    }

    #[test]
    fn depth_is_bounded() {
        assert!(strict(&nested(16)).is_ok());
        assert_eq!(strict(&nested(17)), Err(TtlvError::TooDeep));
        // Whatever the limits say, the ceiling holds, so no tree is too deep to drop.
        let limits = Limits {
            max_message_bytes: usize::MAX,
            max_depth: usize::MAX,
            max_items: usize::MAX,
        };
        assert!(decode(&nested(DEPTH_CEILING), &limits).is_ok_and(|t| t.items().len() == 1));
        assert_eq!(
            decode(&nested(DEPTH_CEILING + 1), &limits),
            Err(TtlvError::TooDeep)
        );
        assert_eq!(decode(&nested(100_000), &limits), Err(TtlvError::TooDeep));
    }

    #[test]
    fn item_count_is_bounded() {
        // One structure holding 10^6 Integers: 16 MB on the wire.
        let count = 1_000_000u32;
        let mut bytes = vec![0x42, 0x00, 0x78, 0x01];
        bytes.extend_from_slice(&(count * 16).to_be_bytes());
        for _ in 0..count {
            bytes.extend_from_slice(&h("42 00 20 02 00 00 00 04 00 00 00 08 00 00 00 00"));
        }
        assert_eq!(strict(&bytes), Err(TtlvError::TooLarge));
        let roomy = Limits {
            max_message_bytes: bytes.len(),
            ..Limits::default()
        };
        assert_eq!(decode(&bytes, &roomy), Err(TtlvError::TooManyItems));
        // The limit counts the outermost item too.
        let small = Limits {
            max_items: 3,
            ..Limits::default()
        };
        let three = Ttlv::structure(
            1,
            vec![
                Ttlv::new(2, Value::Integer(1)),
                Ttlv::new(3, Value::Integer(2)),
            ],
        );
        assert!(decode(&encode(&three), &small).is_ok());
        let mut four = three;
        if let Value::Structure(items) = &mut four.value {
            items.push(Ttlv::new(4, Value::Integer(3)));
        }
        assert_eq!(decode(&encode(&four), &small), Err(TtlvError::TooManyItems));
    }

    #[test]
    fn huge_claimed_lengths_over_tiny_buffers() {
        let unbounded = Limits {
            max_message_bytes: usize::MAX,
            ..Limits::default()
        };
        for ty in [0x01, 0x04, 0x07, 0x08] {
            // 4 GiB - 8 claimed, 8 bytes present.
            let bytes = [
                0x42, 0x00, 0x20, ty, 0xFF, 0xFF, 0xFF, 0xF8, 0, 0, 0, 0, 0, 0, 0, 0,
            ];
            assert_eq!(strict(&bytes), Err(TtlvError::TooLarge), "type {ty:#x}");
            assert_eq!(
                decode(&bytes, &unbounded),
                Err(TtlvError::Truncated),
                "type {ty:#x}"
            );
        }
        // Inside a structure, an item may not claim more than the structure holds.
        let inner = h("42 00 20 01 00 00 00 08 42 00 04 08 FF FF FF FF");
        assert_eq!(
            decode(&inner, &unbounded),
            Err(TtlvError::BadStructureLength { tag: T })
        );
    }
}
