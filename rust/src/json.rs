//! Parsing JSON into `serde_json::Value`, faster than `serde_json::from_slice::<Value>`.
//!
//! Same parser, same `Value`, same errors (the recursion limit of 128 levels, invalid UTF-8,
//! NaN/Infinity, trailing characters are all refused by `serde_json::Deserializer` itself, not
//! by the visitor). What differs is how containers are built: `serde_json`'s own visitor grows
//! every object's `IndexMap` (entries and hash table) one insert at a time; here the entries of
//! the objects and arrays being parsed are collected on a stack shared by the whole parse, and
//! each container is built once at its exact size.
//!
//! One deliberate difference: `serde_json` reads an object whose first key is its private
//! `$serde_json::private::RawValue` token as the JSON text held in the value (a second parse,
//! with a fresh recursion budget); here that key is an ordinary key.

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::fmt;

/// Parse one JSON document (surrounding whitespace allowed, nothing else after it).
pub fn parse(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    let mut stack = Stack::default();
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = ValueSeed(&mut stack).deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// [`parse`] of text already known to be UTF-8.
pub fn parse_str(text: &str) -> Result<Value, serde_json::Error> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn same(text: &str) {
        let ours = parse(text.as_bytes()).map_err(|e| e.to_string());
        let theirs = serde_json::from_str::<Value>(text).map_err(|e| e.to_string());
        assert_eq!(ours, theirs, "{text}");
        if let (Ok(a), Ok(b)) = (&ours, &theirs) {
            assert_eq!(a.to_string(), b.to_string(), "key order of {text}");
        }
    }

    #[test]
    fn agrees_with_serde_json() {
        for text in [
            r#"{"b":1,"a":[1,2.5,-3,{"z":null,"y":true}],"c":{"d":{"e":"x\u00e9\n"}},"b":false}"#,
            r#"[]"#, r#"{}"#, r#"[{}, [], [[]], {"a":{}}]"#, "  5 ", r#""s""#, "null", "1e400", "NaN", "[1,]",
            r#"{"a":1,}"#, r#"{"a" 1}"#, r#"[1] x"#, "18446744073709551615", "-9223372036854775808", "1.7976931348623157e308",
            r#"{"a":[1,2,{"b":[3,{"c":"#, r#"{"k":"\ud800"}"#, r#"{"x":1,"y":2,"x":3,"z":4}"#,
            r#"{"$serde_json::private::Number":"1"}"#,
        ] {
            same(text);
        }
        same(&format!("{}{}", "[".repeat(127), "]".repeat(127)));
        same(&format!("{}{}", "[".repeat(128), "]".repeat(128)));
        same(&format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)));
        same(&format!("{}1{}", r#"{"a":"#.repeat(10_000), "}".repeat(10_000)));
        assert!(parse(b"{\"a\":\"\xff\"}").is_err());
    }
}
