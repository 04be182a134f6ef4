//! Idempotency keys: the identity of an event for deduplication and idempotent writes.
//!
//! xxh3-128 rather than BLAKE3: the key guards against accidental repeats (client retries,
//! redelivery), not against an adversary choosing collisions, and xxh3 is several times faster
//! on short inputs; 128 bits keep the accidental-collision odds negligible at any volume
//! (≈1e-20 for 1e9 keys in one window).

use serde_json::Value;
use xxhash_rust::xxh3::Xxh3;

/// Transport fields that differ between retries of the same event and so are left out of the
/// content hash.
const TRANSPORT_FIELDS: &[&str] = &["sentAt", "receivedAt", "messageId", "requestIp", "writeKey"];

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
pub fn content_key(source: &str, event: &Value) -> u128 {
    let mut h = Xxh3::new();
    h.update(b"c\0");
    h.update(source.as_bytes());
    h.update(b"\0");
    match event {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map
                .keys()
                .filter(|k| !TRANSPORT_FIELDS.contains(&k.as_str()))
                .collect();
            keys.sort_unstable();
            h.update(b"{");
            for k in keys {
                hash_str(&mut h, k);
                hash_canonical(&mut h, &map[k.as_str()]);
            }
            h.update(b"}");
        }
        other => hash_canonical(&mut h, other),
    }
    h.digest128()
}

/// The key of an event as stored: `messageId` when present, the content hash otherwise.
pub fn event_key(source: &str, event: &Value) -> u128 {
    match event.get("messageId").and_then(Value::as_str) {
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

fn hash_canonical(h: &mut Xxh3, v: &Value) {
    match v {
        Value::Null => h.update(b"n"),
        Value::Bool(b) => h.update(if *b { b"t" } else { b"f" }),
        Value::Number(n) => {
            h.update(b"#");
            // 1 and 1.0 are the same JSON value to a producer re-serialising an event.
            match n.as_f64() {
                Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => h.update(&(f as i64).to_le_bytes()),
                _ => h.update(n.to_string().as_bytes()),
            }
        }
        Value::String(s) => {
            h.update(b"s");
            hash_str(h, s);
        }
        Value::Array(items) => {
            h.update(b"[");
            for item in items {
                hash_canonical(h, item);
            }
            h.update(b"]");
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_unstable();
            h.update(b"{");
            for k in keys {
                hash_str(h, k);
                hash_canonical(h, &map[k.as_str()]);
            }
            h.update(b"}");
        }
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
}
