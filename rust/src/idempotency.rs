//! Idempotency keys: the identity of an event for deduplication and idempotent writes.
//!
//! xxh3-128 rather than BLAKE3: the key guards against accidental repeats (client retries,
//! redelivery), not against an adversary choosing collisions, and xxh3 is several times faster
//! on short inputs; 128 bits keep the accidental-collision odds negligible at any volume
//! (≈1e-20 for 1e9 keys in one window).
//!
//! One canonical form, over either document type: the collector holds `serde_json::Value`, the
//! pipeline `sonic_rs::Value`, and the same JSON must give the same key in both ([`Json`]).

use sonic_rs::{JsonContainerTrait, JsonNumberTrait, JsonValueTrait};
use xxhash_rust::xxh3::Xxh3;

/// Transport fields that differ between retries of the same event and so are left out of the
/// content hash.
const TRANSPORT_FIELDS: &[&str] = &["sentAt", "receivedAt", "messageId", "requestIp", "writeKey"];

/// A JSON value as the canonical form sees it.
pub enum Node<'a, V> {
    Null,
    Bool(bool),
    Number(Num),
    String(&'a str),
    Array(&'a [V]),
    /// Members in any order (the canonical form sorts them).
    Object(Vec<(&'a str, &'a V)>),
}

/// A JSON number as parsed: non-negative integer, negative integer, or float.
#[derive(Clone, Copy, Debug)]
pub enum Num {
    Pos(u64),
    Neg(i64),
    Float(f64),
}

impl Num {
    /// A number as either value type reads it: unsigned first, then signed, else a float.
    fn of(u: Option<u64>, i: Option<i64>, f: Option<f64>) -> Num {
        match (u, i) {
            (Some(u), _) => Num::Pos(u),
            (None, Some(i)) => Num::Neg(i),
            _ => Num::Float(f.unwrap_or_default()),
        }
    }
}

/// A JSON document type the keys can be computed over.
pub trait Json: Sized {
    fn node(&self) -> Node<'_, Self>;
    /// The string member `key` of an object.
    fn str_member(&self, key: &str) -> Option<&str>;
}

impl Json for serde_json::Value {
    fn node(&self) -> Node<'_, Self> {
        use serde_json::Value;
        match self {
            Value::Null => Node::Null,
            Value::Bool(b) => Node::Bool(*b),
            Value::Number(n) => Node::Number(Num::of(n.as_u64(), n.as_i64(), n.as_f64())),
            Value::String(s) => Node::String(s),
            Value::Array(items) => Node::Array(items),
            Value::Object(map) => Node::Object(map.iter().map(|(k, v)| (k.as_str(), v)).collect()),
        }
    }

    fn str_member(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(serde_json::Value::as_str)
    }
}

impl Json for sonic_rs::Value {
    fn node(&self) -> Node<'_, Self> {
        use sonic_rs::ValueRef;
        match self.as_ref() {
            ValueRef::Null => Node::Null,
            ValueRef::Bool(b) => Node::Bool(b),
            ValueRef::Number(n) => Node::Number(Num::of(n.as_u64(), n.as_i64(), n.as_f64())),
            ValueRef::String(s) => Node::String(s),
            ValueRef::Array(items) => Node::Array(items),
            ValueRef::Object(map) => Node::Object(map.iter().collect()),
        }
    }

    fn str_member(&self, key: &str) -> Option<&str> {
        self.as_object().and_then(|m| m.get(&key)).and_then(|v| v.as_str())
    }
}

/// Key of an event that carries a `messageId`: the id scoped by its source.
pub fn message_key(source: &str, message_id: &str) -> u128 {
    let mut h = Xxh3::new();
    h.update(b"m\0");
    h.update(source.as_bytes());
    h.update(b"\0");
    h.update(message_id.as_bytes());
    h.digest128()
}

/// Key of an event without a `messageId`: a hash of its canonical form (object keys sorted at
/// every depth, transport fields excluded), scoped by its source.
pub fn content_key<V: Json>(source: &str, event: &V) -> u128 {
    let mut h = Xxh3::new();
    h.update(b"c\0");
    h.update(source.as_bytes());
    h.update(b"\0");
    match event.node() {
        Node::Object(mut members) => {
            members.retain(|(k, _)| !TRANSPORT_FIELDS.contains(k));
            hash_members(&mut h, members);
        }
        other => hash_node(&mut h, other),
    }
    h.digest128()
}

/// The key of an event as stored: `messageId` when present, the content hash otherwise.
pub fn event_key<V: Json>(source: &str, event: &V) -> u128 {
    event_key_with(source, event.str_member("messageId"), event)
}

/// [`event_key`] of an event whose `messageId` (when a string) the caller has at hand.
pub fn event_key_with<V: Json>(source: &str, message_id: Option<&str>, event: &V) -> u128 {
    match message_id {
        Some(id) if !id.is_empty() => message_key(source, id),
        _ => content_key(source, event),
    }
}

pub fn to_hex(key: u128) -> String {
    format!("{key:032x}")
}

fn hash_str(h: &mut Xxh3, s: &str) {
    // Length-prefixed so that ("ab","c") and ("a","bc") differ.
    h.update(&(s.len() as u64).to_le_bytes());
    h.update(s.as_bytes());
}

fn hash_members<V: Json>(h: &mut Xxh3, mut members: Vec<(&str, &V)>) {
    members.sort_unstable_by(|a, b| a.0.cmp(b.0));
    h.update(b"{");
    for (k, v) in members {
        hash_str(h, k);
        hash_node(h, v.node());
    }
    h.update(b"}");
}

fn hash_node<V: Json>(h: &mut Xxh3, node: Node<'_, V>) {
    match node {
        Node::Null => h.update(b"n"),
        Node::Bool(b) => h.update(if b { b"t" } else { b"f" }),
        Node::Number(n) => {
            h.update(b"#");
            let f = match n {
                Num::Pos(u) => u as f64,
                Num::Neg(i) => i as f64,
                Num::Float(f) => f,
            };
            // 1 and 1.0 are the same JSON value to a producer re-serialising an event.
            if f.fract() == 0.0 && f.abs() < 9.0e15 {
                h.update(&(f as i64).to_le_bytes());
            } else {
                // The number's text as `serde_json::Number` displays it.
                match n {
                    Num::Pos(u) => h.update(itoa::Buffer::new().format(u).as_bytes()),
                    Num::Neg(i) => h.update(itoa::Buffer::new().format(i).as_bytes()),
                    Num::Float(f) => h.update(zmij::Buffer::new().format_finite(f).as_bytes()),
                }
            }
        }
        Node::String(s) => {
            h.update(b"s");
            hash_str(h, s);
        }
        Node::Array(items) => {
            h.update(b"[");
            for item in items {
                hash_node(h, item.node());
            }
            h.update(b"]");
        }
        Node::Object(members) => hash_members(h, members),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn message_id_is_scoped_by_source() {
        assert_eq!(message_key("web", "m1"), message_key("web", "m1"));
        assert_ne!(message_key("web", "m1"), message_key("ios", "m1"));
        assert_ne!(message_key("web", "m1"), message_key("web", "m2"));
    }

    #[test]
    fn content_key_ignores_key_order_and_transport_fields() {
        let a = json!({"type": "track", "event": "A", "userId": "u", "properties": {"x": 1, "y": [1, 2]}, "sentAt": "t1"});
        let b = json!({"properties": {"y": [1, 2], "x": 1.0}, "userId": "u", "event": "A", "type": "track", "sentAt": "t2"});
        assert_eq!(content_key("s", &a), content_key("s", &b));
        let c = json!({"type": "track", "event": "A", "userId": "u", "properties": {"x": 2, "y": [1, 2]}});
        assert_ne!(content_key("s", &a), content_key("s", &c));
    }

    #[test]
    fn length_prefix_prevents_concatenation_collisions() {
        let a = json!({"ab": "c"});
        let b = json!({"a": "bc"});
        assert_ne!(content_key("s", &a), content_key("s", &b));
    }

    #[test]
    fn event_key_prefers_message_id() {
        let e = json!({"messageId": "m1", "userId": "u"});
        assert_eq!(event_key("s", &e), message_key("s", "m1"));
        let e = json!({"messageId": "", "userId": "u"});
        assert_eq!(event_key("s", &e), content_key("s", &e));
        assert_eq!(to_hex(1).len(), 32);
    }

    /// The collector (serde_json) and the pipeline (sonic-rs) key the same JSON alike.
    #[test]
    fn serde_json_and_sonic_documents_give_the_same_keys() {
        let docs = [
            r#"{"type":"track","event":"A","userId":"u","properties":{"x":1,"y":[1,2,{"b":null,"a":true}]},"sentAt":"t1"}"#,
            r#"{"z":{"y":{"x":{"w":[[],{},[{}]]}}},"a":"é 😀 \u0000 \n \"q\" \\","b":"","c":false}"#,
            r#"{"n":[0,-0,0.0,-0.0,1,1.0,-1,1.5,-2.25,0.1,1e20,1e300,-1e-300,2.5e-7,9007199254740993,9.0e15,8999999999999999]}"#,
            r#"{"big":[18446744073709551615,18446744073709551616,9223372036854775807,9223372036854775808,-9223372036854775808,-9223372036854775809]}"#,
            r#"{"messageId":"","userId":"u","dup":1,"dup":2}"#,
            r#"{"messageId":"m-1","x":1}"#,
            r#"{"receivedAt":"r","requestIp":"1.2.3.4","writeKey":"k","sentAt":"s","type":"page"}"#,
            r#"[1,"two",{"three":3}]"#,
            r#""just a string""#,
            "12.5",
            "null",
        ];
        for text in docs {
            let serde: serde_json::Value = serde_json::from_str(text).unwrap();
            let sonic = crate::json::parse(text.as_bytes()).unwrap();
            assert_eq!(content_key("src", &serde), content_key("src", &sonic), "{text}");
            assert_eq!(event_key("src", &serde), event_key("src", &sonic), "{text}");
        }
    }
}
