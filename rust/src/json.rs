//! JSON documents of the pipeline: parsing into `sonic_rs::Value` with the guarantees the rest of
//! the crate relies on, and writing values back as text in document order.
//!
//! [`parse`] refuses what `serde_json` refuses (invalid UTF-8, NaN/Infinity, numbers out of range,
//! trailing characters, nesting of 128 levels or more: "recursion limit exceeded") and leaves one
//! pair per key in every object, the last value at the first key's position, as `serde_json` with
//! `preserve_order` does. The nesting check runs over the bytes first, without recursing: sonic's
//! own parser recurses once per level and would overflow the stack on millions of `[`.
//!
//! Key order. An object of a parsed document keeps the order of its text, but sonic-rs turns an
//! object into a hash map (iterated in a randomly seeded order) as soon as it is changed in
//! place. Order shows in what the pipeline writes (warehouse columns in first-seen order, JSON
//! text), so event documents are never changed in place: a change is made by writing the
//! document out with the change and parsing the text back (`batch.rs` stamps, `govern.rs` plan
//! context, `pii::apply`), which keeps every object in the order `serde_json` with
//! `preserve_order` would have.
//!
//! The collector (`ingest.rs`) keeps `serde_json::Value`; [`parse_serde`] / [`parse_serde_str`]
//! build those faster than `serde_json::from_slice::<Value>` (see the end of this file).

use std::fmt;

use sonic_rs::{JsonType, JsonValueTrait, Value, ValueRef};

/// Nesting at which a document is refused: `serde_json`'s limit (127 levels parse, 128 do not).
pub const MAX_DEPTH: usize = 128;

/// Why [`parse`] refused a document.
#[derive(Debug)]
pub enum Error {
    /// Nested [`MAX_DEPTH`] levels deep; the position is that of the opening bracket refused.
    RecursionLimit { line: usize, column: usize },
    Syntax(sonic_rs::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::RecursionLimit { line, column } => {
                write!(f, "recursion limit exceeded at line {line} column {column}")
            }
            // sonic-rs appends an excerpt of the input after a blank line; the reason and the
            // position are enough (and the excerpt could carry event content into logs).
            Error::Syntax(e) => {
                let text = e.to_string();
                f.write_str(text.lines().next().unwrap_or_default())
            }
        }
    }
}

impl std::error::Error for Error {}

/// Parse one JSON document (surrounding whitespace allowed, nothing else after it).
pub fn parse(bytes: &[u8]) -> Result<Value, Error> {
    check_depth(bytes)?;
    let value: Value = sonic_rs::from_slice(bytes).map_err(Error::Syntax)?;
    if has_duplicate_keys(&value) {
        return Ok(without_duplicate_keys(&value));
    }
    Ok(value)
}

// ---------------------------------------------------------------------------------------------
// Nesting depth, over the bytes.

/// Refuse a document nested [`MAX_DEPTH`] levels or more, without recursing.
///
/// 64 bytes at a time (simdjson's string scanning): bit masks of quotes, backslashes and
/// brackets; escaped quotes removed; a prefix XOR of the quotes marks the bytes inside strings;
/// the brackets outside strings change the depth. Exact on every prefix of the input that is
/// valid JSON, which is all that matters: a parser stops at the first error, so never nests
/// deeper than the valid prefix does.
pub fn check_depth(bytes: &[u8]) -> Result<(), Error> {
    check_depth_below(bytes, MAX_DEPTH)
}

/// [`check_depth`] with `limit` levels refused instead of [`MAX_DEPTH`]: for a document that
/// travels inside another (the collector's events inside an envelope).
pub fn check_depth_below(bytes: &[u8], limit: usize) -> Result<(), Error> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            return unsafe { depth_avx2(bytes, limit) }.map_err(|at| depth_error(bytes, at));
        }
    }
    depth_with(bytes, limit, classify_portable).map_err(|at| depth_error(bytes, at))
}

fn depth_error(bytes: &[u8], at: usize) -> Error {
    let before = &bytes[..at];
    let line = 1 + before.iter().filter(|b| **b == b'\n').count();
    let column = at - before.iter().rposition(|b| *b == b'\n').map_or(0, |nl| nl + 1) + 1;
    Error::RecursionLimit { line, column }
}

#[derive(Default, Clone, Copy)]
struct Masks {
    quote: u64,
    backslash: u64,
    open: u64,
    close: u64,
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn depth_avx2(bytes: &[u8], limit: usize) -> Result<(), usize> {
    // A closure, not the function item: this way the AVX2 intrinsics are inlined here.
    #[allow(clippy::redundant_closure)]
    depth_with(bytes, limit, |block| classify_avx2(block))
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn classify_avx2(block: &[u8; 64]) -> Masks {
    use std::arch::x86_64::*;
    // SAFETY: only called from `depth_avx2`, compiled for (and run on) AVX2; the loads read the
    // 64 bytes of `block` (unaligned loads).
    unsafe {
        let lo = _mm256_loadu_si256(block.as_ptr().cast());
        let hi = _mm256_loadu_si256(block.as_ptr().add(32).cast());
        let mask = |v: __m256i, c: u8| _mm256_movemask_epi8(_mm256_cmpeq_epi8(v, _mm256_set1_epi8(c as i8))) as u32 as u64;
        // `[` and `{` differ only in 0x20, as do `]` and `}`.
        let folded = |v: __m256i| _mm256_or_si256(v, _mm256_set1_epi8(0x20));
        let (flo, fhi) = (folded(lo), folded(hi));
        Masks {
            quote: mask(lo, b'"') | mask(hi, b'"') << 32,
            backslash: mask(lo, b'\\') | mask(hi, b'\\') << 32,
            open: mask(flo, b'{') | mask(fhi, b'{') << 32,
            close: mask(flo, b'}') | mask(fhi, b'}') << 32,
        }
    }
}

#[inline(always)]
fn classify_portable(block: &[u8; 64]) -> Masks {
    let mut m = Masks::default();
    for (i, &b) in block.iter().enumerate() {
        let bit = 1u64 << i;
        match b {
            b'"' => m.quote |= bit,
            b'\\' => m.backslash |= bit,
            b'[' | b'{' => m.open |= bit,
            b']' | b'}' => m.close |= bit,
            _ => {}
        }
    }
    m
}

/// Bit i set when byte i is escaped by an odd run of backslashes (simdjson's
/// `find_escaped_branchless`); `prev` carries an escape into the next block.
#[inline(always)]
fn escaped_bits(backslash: u64, prev: &mut u64) -> u64 {
    const EVEN: u64 = 0x5555_5555_5555_5555;
    let backslash = backslash & !*prev;
    let follows_escape = (backslash << 1) | *prev;
    let odd_starts = backslash & !EVEN & !follows_escape;
    let (even_starts, overflow) = odd_starts.overflowing_add(backslash);
    *prev = u64::from(overflow);
    let invert = even_starts << 1;
    (EVEN ^ invert) & follows_escape
}

#[inline(always)]
fn prefix_xor(mut x: u64) -> u64 {
    x ^= x << 1;
    x ^= x << 2;
    x ^= x << 4;
    x ^= x << 8;
    x ^= x << 16;
    x ^= x << 32;
    x
}

/// `Err(offset)` of the opening bracket that reaches `limit`.
#[inline(always)]
fn depth_with(bytes: &[u8], limit: usize, classify: impl Fn(&[u8; 64]) -> Masks) -> Result<(), usize> {
    let limit = limit as i64;
    let mut prev_escaped = 0u64;
    let mut prev_in_string = 0u64;
    let mut depth: i64 = 0;
    let mut block = |m: Masks, base: usize| -> Result<(), usize> {
        let escaped = if m.backslash | prev_escaped == 0 { 0 } else { escaped_bits(m.backslash, &mut prev_escaped) };
        let quote = m.quote & !escaped;
        let in_string = prefix_xor(quote) ^ prev_in_string;
        prev_in_string = ((in_string as i64) >> 63) as u64;
        let open = m.open & !in_string;
        let close = m.close & !in_string;
        let opens = i64::from(open.count_ones());
        if depth + opens < limit {
            depth += opens - i64::from(close.count_ones());
            return Ok(());
        }
        let mut brackets = open | close;
        while brackets != 0 {
            let i = brackets.trailing_zeros();
            if open >> i & 1 == 1 {
                depth += 1;
                if depth >= limit {
                    return Err(base + i as usize);
                }
            } else {
                depth -= 1;
            }
            brackets &= brackets - 1;
        }
        Ok(())
    };
    let mut chunks = bytes.chunks_exact(64);
    let mut base = 0;
    for chunk in &mut chunks {
        block(classify(chunk.try_into().expect("64 bytes")), base)?;
        base += 64;
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut padded = [b' '; 64];
        padded[..rest.len()].copy_from_slice(rest);
        block(classify(&padded), base)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Duplicate keys.

/// Whether any object of `v` names a key twice.
fn has_duplicate_keys(v: &Value) -> bool {
    match v.as_ref() {
        ValueRef::Object(obj) if obj.len() > 32 => {
            let mut keys: Vec<&str> = obj.iter().map(|(k, _)| k).collect();
            keys.sort_unstable();
            keys.windows(2).any(|w| w[0] == w[1]) || obj.iter().any(|(_, child)| is_container(child) && has_duplicate_keys(child))
        }
        ValueRef::Object(obj) => {
            // A signature (length, first and last bytes) compared pairwise; whole keys only on a
            // match. One pass over the members, which also descends into their values.
            let mut sigs = [0u64; 32];
            let mut keys: [&str; 32] = [""; 32];
            for (i, (k, child)) in obj.iter().enumerate() {
                let b = k.as_bytes();
                let (first, last) = (b.first().copied().unwrap_or(0), b.last().copied().unwrap_or(0));
                let sig = (b.len() as u64) | u64::from(first) << 40 | u64::from(last) << 48;
                if (0..i).any(|j| sigs[j] == sig && keys[j] == k) {
                    return true;
                }
                sigs[i] = sig;
                keys[i] = k;
                if is_container(child) && has_duplicate_keys(child) {
                    return true;
                }
            }
            false
        }
        ValueRef::Array(items) => items.iter().any(|child| is_container(child) && has_duplicate_keys(child)),
        _ => false,
    }
}

/// (One look at the value: `as_ref` looks twice at an array or object.)
#[inline]
fn is_container(v: &Value) -> bool {
    matches!(v.get_type(), JsonType::Object | JsonType::Array)
}

/// `v` with one pair per key in every object: the last value, at the first key's position.
fn without_duplicate_keys(v: &Value) -> Value {
    let mut text = Vec::new();
    write_deduplicated(&mut text, v);
    sonic_rs::from_slice(&text).expect("a value written out parses back")
}

fn write_deduplicated(out: &mut Vec<u8>, v: &Value) {
    match v.as_ref() {
        ValueRef::Object(obj) => {
            let pairs: Vec<(&str, &Value)> = obj.iter().collect();
            out.push(b'{');
            let mut first = true;
            for (i, (k, _)) in pairs.iter().enumerate() {
                if pairs[..i].iter().any(|(earlier, _)| earlier == k) {
                    continue;
                }
                let last = pairs.iter().rev().find(|(later, _)| later == k).expect("k itself").1;
                if !first {
                    out.push(b',');
                }
                first = false;
                write_str(out, k);
                out.push(b':');
                write_deduplicated(out, last);
            }
            out.push(b'}');
        }
        ValueRef::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_deduplicated(out, item);
            }
            out.push(b']');
        }
        _ => write(out, v),
    }
}

// ---------------------------------------------------------------------------------------------
// Writing.

/// The JSON text of `v`: the text `serde_json` writes for the same value (same escapes, `zmij`
/// floats, `itoa` integers), objects in document order.
pub fn to_string(v: &Value) -> String {
    sonic_rs::to_string(v).expect("writing a parsed value cannot fail")
}

/// [`to_string`], appended to `out`.
pub fn write(out: &mut Vec<u8>, v: &Value) {
    sonic_rs::to_writer(&mut *out, v).expect("writing a parsed value to a Vec cannot fail");
}

/// A float as `serde_json` writes it (`null` when not finite).
pub fn write_f64(out: &mut Vec<u8>, f: f64) {
    if f.is_finite() {
        out.extend_from_slice(zmij::Buffer::new().format_finite(f).as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

/// A JSON string, escaped as `serde_json` escapes it.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => &[b'\\', b'u', b'0', b'0', HEX[(b >> 4) as usize], HEX[(b & 0xf) as usize]],
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(escape);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

// ---------------------------------------------------------------------------------------------
// serde_json documents, for the collector.

pub use serde_parse::{parse_serde, parse_serde_str};

mod serde_parse {
    //! Parsing JSON into `serde_json::Value`, faster than `serde_json::from_slice::<Value>`.
    //!
    //! Same parser, same `Value`, same errors (the recursion limit of 128 levels, invalid UTF-8,
    //! NaN/Infinity, trailing characters are all refused by `serde_json::Deserializer` itself,
    //! not by the visitor). What differs is how containers are built: `serde_json`'s own visitor
    //! grows every object's `IndexMap` (entries and hash table) one insert at a time; here the
    //! entries of the objects and arrays being parsed are collected on a stack shared by the
    //! whole parse, and each container is built once at its exact size.
    //!
    //! One deliberate difference: `serde_json` reads an object whose first key is its private
    //! `$serde_json::private::RawValue` token as the JSON text held in the value (a second parse,
    //! with a fresh recursion budget); here that key is an ordinary key.

    use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
    use serde_json::{Map, Number, Value};
    use std::fmt;

    /// Parse one JSON document (surrounding whitespace allowed, nothing else after it).
    pub fn parse_serde(bytes: &[u8]) -> Result<Value, serde_json::Error> {
        let mut stack = Stack::default();
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let value = ValueSeed(&mut stack).deserialize(&mut de)?;
        de.end()?;
        Ok(value)
    }

    /// [`parse_serde`] of text already known to be UTF-8.
    pub fn parse_serde_str(text: &str) -> Result<Value, serde_json::Error> {
        let mut stack = Stack::default();
        let mut de = serde_json::Deserializer::from_str(text);
        let value = ValueSeed(&mut stack).deserialize(&mut de)?;
        de.end()?;
        Ok(value)
    }

    /// Entries of the containers still open, innermost last.
    #[derive(Default)]
    struct Stack {
        entries: Vec<(String, Value)>,
        items: Vec<Value>,
    }

    struct ValueSeed<'s>(&'s mut Stack);

    impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
        type Value = Value;

        #[inline]
        fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
            deserializer.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for ValueSeed<'_> {
        type Value = Value;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("any valid JSON value")
        }

        #[inline]
        fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
            Ok(Value::Bool(v))
        }

        #[inline]
        fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
            Ok(Value::Number(v.into()))
        }

        #[inline]
        fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
            Ok(Value::Number(v.into()))
        }

        #[inline]
        fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
            Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
        }

        #[inline]
        fn visit_str<E>(self, v: &str) -> Result<Value, E> {
            Ok(Value::String(v.to_owned()))
        }

        #[inline]
        fn visit_string<E>(self, v: String) -> Result<Value, E> {
            Ok(Value::String(v))
        }

        #[inline]
        fn visit_unit<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }

        #[inline]
        fn visit_none<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
            let stack = self.0;
            let base = stack.items.len();
            loop {
                match seq.next_element_seed(ValueSeed(stack)) {
                    Ok(Some(v)) => stack.items.push(v),
                    Ok(None) => break,
                    Err(e) => {
                        stack.items.truncate(base);
                        return Err(e);
                    }
                }
            }
            Ok(Value::Array(stack.items.drain(base..).collect()))
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
            let stack = self.0;
            let base = stack.entries.len();
            loop {
                let key = match map.next_key::<String>() {
                    Ok(Some(k)) => k,
                    Ok(None) => break,
                    Err(e) => {
                        stack.entries.truncate(base);
                        return Err(e);
                    }
                };
                match map.next_value_seed(ValueSeed(stack)) {
                    Ok(v) => stack.entries.push((key, v)),
                    Err(e) => {
                        stack.entries.truncate(base);
                        return Err(e);
                    }
                }
            }
            let mut out = Map::with_capacity(stack.entries.len() - base);
            // `insert` in document order: a repeated key keeps its first position and its last
            // value, as with `serde_json`'s own visitor.
            for (k, v) in stack.entries.drain(base..) {
                out.insert(k, v);
            }
            Ok(Value::Object(out))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sonic_rs::{JsonContainerTrait, JsonValueTrait};

    /// `parse` accepts and refuses what `serde_json` does, and (for what it accepts) yields the
    /// same document, written out as the same text.
    fn same(text: &str) {
        let ours = parse(text.as_bytes()).map(|v| to_string(&v));
        let theirs = serde_json::from_str::<serde_json::Value>(text).map(|v| v.to_string());
        match (&ours, &theirs) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{text}"),
            (Err(a), Err(b)) => {
                let (a, b) = (a.to_string(), b.to_string());
                assert_eq!(a.contains("recursion limit"), b.contains("recursion limit"), "{text}: {a} / {b}");
                if b.contains("recursion limit") {
                    assert_eq!(a, b, "same position");
                }
            }
            _ => panic!("{text}: ours {ours:?}, serde_json {theirs:?}"),
        }
        let theirs_fast = parse_serde_str(text).map(|v| v.to_string()).map_err(|e| e.to_string());
        assert_eq!(theirs_fast, theirs.map_err(|e| e.to_string()), "parse_serde_str of {text}");
    }

    #[test]
    fn agrees_with_serde_json() {
        for text in [
            r#"{"b":1,"a":[1,2.5,-3,{"z":null,"y":true}],"c":{"d":{"e":"x\u00e9\n"}},"b":false}"#,
            r#"[]"#, r#"{}"#, r#"[{}, [], [[]], {"a":{}}]"#, "  5 ", r#""s""#, "null", "1e400", "NaN", "[1,]",
            r#"{"a":1,}"#, r#"{"a" 1}"#, r#"[1] x"#, "18446744073709551615", "-9223372036854775808", "1.7976931348623157e308",
            r#"{"a":[1,2,{"b":[3,{"c":"#, r#"{"k":"\ud800"}"#, r#"{"x":1,"y":2,"x":3,"z":4}"#,
            r#"{"$serde_json::private::Number":"1"}"#, "1e20", "0.1", "1E2", "2.5e-7", "1e-400", "-1e-320",
            r#"{"a":{"k":1,"k":{"x":1,"x":2},"j":[{"q":1,"q":2}]},"a":{"k":3}}"#,
            r#"{"s":"\"\\\/\b\f\n\r\t\u0001\u001f\u007f\u2028 é 😀"}"#, "\"a\u{1}b\"", "01", "-", "tru", "\u{feff}{}",
            r#"{"dup":1,"dup":2,"dup":3,"other":[1,{"a":1,"b":2,"a":3}]}"#,
        ] {
            same(text);
        }
        for depth in [126, 127, 128, 129, 10_000] {
            same(&format!("{}{}", "[".repeat(depth), "]".repeat(depth)));
            same(&format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth)));
            same(&format!(" \n [{}{}", "[".repeat(depth), "]".repeat(depth + 1)));
        }
        // Brackets and escaped quotes inside strings do not count.
        let tricky = format!(r#"[{}"[[[{{\"\\\\\"[{{", 1{}]"#, "[".repeat(123), "]".repeat(123));
        same(&tricky);
        let deep_in_text = format!(r#"{{"a":"{}","b":"x\\\"{}"}}"#, "[".repeat(500), "{".repeat(300));
        same(&deep_in_text);
        assert!(parse(b"{\"a\":\"\xff\"}").is_err());
        assert!(parse(&[b'['; 5_000_000]).unwrap_err().to_string().contains("recursion limit"));
    }

    #[test]
    fn depth_scan_agrees_across_block_boundaries() {
        // Strings, escapes and brackets straddling the 64-byte blocks, at every offset.
        for pad in 0..70 {
            for depth in [127usize, 128] {
                let text = format!(
                    r#"{}[{}"a\\\"[[[","\\\\",{{"k\"":1}}{}]"#,
                    " ".repeat(pad),
                    "[".repeat(depth - 2),
                    "]".repeat(depth - 2)
                );
                same(&text);
            }
        }
        let portable = |bytes: &[u8]| depth_with(bytes, MAX_DEPTH, classify_portable).is_ok();
        for text in [format!("{}{}", "[".repeat(127), "]".repeat(127)), format!("{}{}", "[".repeat(128), "]".repeat(128))] {
            assert_eq!(portable(text.as_bytes()), check_depth(text.as_bytes()).is_ok());
        }
    }

    /// `write` (sonic-rs's serializer) and `write_str` write what `serde_json` writes.
    #[test]
    fn writers_agree_with_serde_json() {
        let mut all_chars = String::new();
        for c in (0u32..0x800).chain([0x2028, 0x2029, 0xfeff, 0xffff, 0x1f600, 0x10ffff]).filter_map(char::from_u32) {
            all_chars.push(c);
        }
        // (Not -0.0: sonic-rs parses `-0` and `-0.0` as 0.0.)
        let docs = [
            serde_json::json!({"s": all_chars, "k\u{0}\"\\/\n": [1, -1, 0, 0.5, 1e300, 1e-300, 2.5e-7, 1e21, 1e20, 123456789.125,
                u64::MAX, i64::MIN, 9007199254740993u64, 0.1, 100.0, 1.7976931348623157e308, 5e-324, f64::MIN_POSITIVE]}),
            serde_json::json!([null, true, false, {}, [], {"a": {"b": [{}, {"c": null}]}}, "", "\u{7f}\u{80}"]),
        ];
        for doc in docs {
            let text = doc.to_string();
            let v = parse(text.as_bytes()).unwrap();
            assert_eq!(to_string(&v), text);
        }
        let mut out = Vec::new();
        write_str(&mut out, &all_chars);
        assert_eq!(String::from_utf8(out).unwrap(), serde_json::to_string(&all_chars).unwrap());
        for f in [0.1, 1e21, 2.5e-7, 100.0, -0.0, f64::NAN] {
            let mut out = Vec::new();
            write_f64(&mut out, f);
            assert_eq!(String::from_utf8(out).unwrap(), serde_json::to_string(&f).unwrap());
        }
    }

    #[test]
    fn duplicate_keys_keep_the_first_position_and_the_last_value() {
        let v = parse(br#"{"x":1,"y":2,"x":{"a":1,"a":2},"z":4}"#).unwrap();
        assert_eq!(to_string(&v), r#"{"x":{"a":2},"y":2,"z":4}"#);
        assert_eq!(v.get("x").and_then(|x| x.get("a")).and_then(|a| a.as_i64()), Some(2));
        let many: String = (0..40).map(|i| format!(r#""k{}":{i},"#, i % 37)).collect();
        let v = parse(format!("{{{}\"end\":0}}", many).as_bytes()).unwrap();
        assert_eq!(v.as_object().unwrap().len(), 38);
        assert_eq!(v.get("k0").and_then(|x| x.as_i64()), Some(37));
    }
}
