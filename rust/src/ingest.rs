//! Collector-side normalisation: one HTTP request body in, batched Kafka envelopes out.
//!
//! A request is accepted or refused whole, so that a client retry never half-duplicates a batch.
//! Each accepted event is stamped (`receivedAt`, `messageId` when absent, `timestamp` by the
//! clock-skew rule, `type` from the endpoint) and the events bound for one partition travel as
//! one envelope: `{"v":1,"source":S,"receivedAt":T,"events":[...]}`.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::fmt;
use xxhash_rust::xxh3::xxh3_64;

use crate::timefmt::{derive_timestamp, format_micros, parse_micros};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    Track,
    Identify,
    Page,
    Screen,
    Group,
    Alias,
}

impl EventType {
    pub const ALL: [EventType; 6] = [
        EventType::Track,
        EventType::Identify,
        EventType::Page,
        EventType::Screen,
        EventType::Group,
        EventType::Alias,
    ];

    pub fn parse(s: &str) -> Option<EventType> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Track => "track",
            EventType::Identify => "identify",
            EventType::Page => "page",
            EventType::Screen => "screen",
            EventType::Group => "group",
            EventType::Alias => "alias",
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_event_bytes: usize,
    pub max_request_bytes: usize,
    pub max_batch_events: usize,
}

impl Default for Limits {
    fn default() -> Self {
        // At least as generous as RudderStack's documented 32 KB per event and 4 MB per request.
        Limits { max_event_bytes: 32 * 1024, max_request_bytes: 4 * 1024 * 1024, max_batch_events: 10_000 }
    }
}

/// Why a request was refused. Every variant maps to one HTTP status and a message that says
/// which event, what was wrong and what to do.
#[derive(Debug, Clone, PartialEq)]
pub enum IngestError {
    MalformedJson { detail: String },
    NotAnObject { index: Option<usize> },
    EmptyBatch,
    /// `batch` is there but is not an array; `got` names what it is (`an object`).
    BatchNotAnArray { got: &'static str },
    UnknownType { index: Option<usize>, got: SentType, message_id: Option<String> },
    MissingIdentity { index: Option<usize>, message_id: Option<String> },
    EventTooLarge { index: Option<usize>, size: usize, limit: usize },
    RequestTooLarge { size: usize, limit: usize },
    TooManyEvents { count: usize, limit: usize },
    /// An event nested [`MAX_EVENT_DEPTH`] levels or more: its envelope could not be parsed.
    TooDeep { detail: String },
}

/// The `type` a batch event was sent with, when it is not one of [`EventType`].
#[derive(Debug, Clone, PartialEq)]
pub enum SentType {
    Missing,
    /// Not a string: the value as sent (JSON, cut to a readable length).
    NotAString(String),
    Unknown(String),
}

/// Levels an event may not reach: the pipeline parses it inside its envelope (an object and its
/// `events` array), within `serde_json`'s limit ([`crate::json::MAX_DEPTH`]) — as the batch
/// endpoint's body (`{"batch": [...]}`) holds it.
pub const MAX_EVENT_DEPTH: usize = crate::json::MAX_DEPTH - 2;

impl IngestError {
    pub fn status(&self) -> u16 {
        match self {
            IngestError::EventTooLarge { .. } | IngestError::RequestTooLarge { .. } | IngestError::TooManyEvents { .. } => 413,
            _ => 400,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            IngestError::MalformedJson { .. } => "malformed_json",
            IngestError::NotAnObject { .. } => "not_an_object",
            IngestError::EmptyBatch => "empty_batch",
            IngestError::BatchNotAnArray { .. } => "batch_not_an_array",
            IngestError::UnknownType { .. } => "unknown_type",
            IngestError::MissingIdentity { .. } => "missing_identity",
            IngestError::EventTooLarge { .. } => "event_too_large",
            IngestError::RequestTooLarge { .. } => "request_too_large",
            IngestError::TooManyEvents { .. } => "too_many_events",
            IngestError::TooDeep { .. } => "too_deeply_nested",
        }
    }
}

fn which(index: &Option<usize>) -> String {
    match index {
        Some(i) => format!("event {i} of the batch"),
        None => "the event".to_string(),
    }
}

/// [`which`] event, with the messageId it was sent with if any.
fn which_sent(index: &Option<usize>, message_id: &Option<String>) -> String {
    match message_id {
        Some(id) => format!("{} (messageId {id:?})", which(index)),
        None => which(index),
    }
}

/// The messageId an event was sent with, as the collector would keep it (a string, or a number).
fn sent_message_id(event: &Map<String, Value>) -> Option<String> {
    match event.get("messageId") {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

/// What a JSON value is, for a message: `an object`, `a string`, ...
fn kind_of(raw: &str) -> &'static str {
    match raw.trim_start().as_bytes().first() {
        Some(b'{') => "an object",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

impl fmt::Display for IngestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IngestError::MalformedJson { detail } => write!(f, "request body is not valid JSON ({detail}); send a JSON object"),
            IngestError::NotAnObject { index } => write!(f, "{} is not a JSON object; send each event as an object", which(index)),
            IngestError::EmptyBatch => write!(f, "the batch is empty or has no `batch` array; send {{\"batch\": [event, ...]}}"),
            IngestError::BatchNotAnArray { got } => {
                write!(f, "`batch` is {got}, not an array; send {{\"batch\": [event, ...]}}, even for one event")
            }
            IngestError::UnknownType { index, got, message_id } => {
                let event = which_sent(index, message_id);
                let expected = "track, identify, page, screen, group or alias";
                match got {
                    SentType::Missing => write!(f, "{event} has no `type`; set it to one of {expected}"),
                    SentType::NotAString(v) => write!(f, "{event} has type {v}, not a string; set it to one of {expected}"),
                    SentType::Unknown(t) => write!(f, "{event} has type {t:?}; expected one of {expected}"),
                }
            }
            IngestError::MissingIdentity { index, message_id } => {
                write!(f, "{} has neither anonymousId nor userId; set at least one of them", which_sent(index, message_id))
            }
            IngestError::EventTooLarge { index, size, limit } => write!(
                f,
                "{} is {size} bytes, over the per-event limit of {limit} bytes; trim its properties or raise collector.max_event_bytes",
                which(index)
            ),
            IngestError::RequestTooLarge { size, limit } => write!(
                f,
                "request body is {size} bytes, over the limit of {limit} bytes; send smaller batches or raise collector.max_request_bytes"
            ),
            IngestError::TooManyEvents { count, limit } => write!(
                f,
                "batch has {count} events, over the limit of {limit}; split it or raise collector.max_batch_events"
            ),
            IngestError::TooDeep { detail } => write!(
                f,
                "an event is nested too deeply ({detail}); an event may nest objects and arrays at most {} levels deep, itself included",
                MAX_EVENT_DEPTH - 1
            ),
        }
    }
}

/// One Kafka message worth of events, all for the same partition.
#[derive(Debug)]
pub struct Envelope {
    pub partition: u32,
    pub events: usize,
    pub payload: Vec<u8>,
}

#[derive(Deserialize)]
struct BatchBody<'a> {
    // Raw, so that a `batch` that is not an array is told apart from a body that is not an object.
    #[serde(borrow, default)]
    batch: Option<&'a RawValue>,
    #[serde(rename = "sentAt", default)]
    sent_at: Option<Value>,
}

/// Normalise one request. `endpoint` is the event type of `/v1/<type>`, or `None` for `/v1/batch`.
pub fn ingest(
    body: &[u8],
    endpoint: Option<EventType>,
    source: &str,
    received_at_us: i64,
    partitions: u32,
    limits: &Limits,
) -> Result<Vec<Envelope>, IngestError> {
    if body.len() > limits.max_request_bytes {
        return Err(IngestError::RequestTooLarge { size: body.len(), limit: limits.max_request_bytes });
    }
    let received_at = format_micros(received_at_us);
    let partitions = partitions.max(1);
    let mut events: Vec<(u32, Value)> = Vec::new();

    match endpoint {
        Some(kind) => {
            if body.len() > limits.max_event_bytes {
                return Err(IngestError::EventTooLarge { index: None, size: body.len(), limit: limits.max_event_bytes });
            }
            crate::json::check_depth_below(body, MAX_EVENT_DEPTH).map_err(too_deep)?;
            let value: Value = parse(body)?;
            let event = normalise(value, Some(kind), None, None, received_at_us, &received_at)?;
            events.push((partition_of(&event, partitions), event));
        }
        None => {
            // The body holds its events as deep as an envelope will (`MAX_EVENT_DEPTH`), but each
            // event is parsed on its own below, within a fresh limit.
            crate::json::check_depth(body).map_err(too_deep)?;
            let parsed: BatchBody = serde_json::from_slice(body).map_err(|e| {
                if e.is_data() {
                    IngestError::EmptyBatch
                } else {
                    IngestError::MalformedJson { detail: e.to_string() }
                }
            })?;
            // serde takes a struct from an array too (`[[...]]` would pass for a batch).
            if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
                return Err(IngestError::EmptyBatch);
            }
            let batch = match parsed.batch {
                Some(raw) if raw.get() != "null" => serde_json::from_str::<Vec<&RawValue>>(raw.get())
                    .map_err(|_| IngestError::BatchNotAnArray { got: kind_of(raw.get()) })?,
                _ => Vec::new(),
            };
            if batch.is_empty() {
                return Err(IngestError::EmptyBatch);
            }
            if batch.len() > limits.max_batch_events {
                return Err(IngestError::TooManyEvents { count: batch.len(), limit: limits.max_batch_events });
            }
            let batch_sent_at = parsed.sent_at.as_ref().and_then(Value::as_str).map(str::to_owned);
            events.reserve(batch.len());
            for (i, raw) in batch.into_iter().enumerate() {
                let text = raw.get();
                if text.len() > limits.max_event_bytes {
                    return Err(IngestError::EventTooLarge { index: Some(i), size: text.len(), limit: limits.max_event_bytes });
                }
                let value: Value = crate::json::parse_serde_str(text).map_err(|e| IngestError::MalformedJson { detail: e.to_string() })?;
                let event = normalise(value, None, Some(i), batch_sent_at.as_deref(), received_at_us, &received_at)?;
                events.push((partition_of(&event, partitions), event));
            }
        }
    }
    Ok(envelopes(events, source, &received_at))
}

fn too_deep(e: crate::json::Error) -> IngestError {
    IngestError::TooDeep { detail: e.to_string() }
}

fn parse(body: &[u8]) -> Result<Value, IngestError> {
    crate::json::parse_serde(body).map_err(|e| IngestError::MalformedJson { detail: e.to_string() })
}

/// A usable identifier: a non-blank string, or a number (some SDKs send numeric user ids).
pub fn has_identifier(v: Option<&Value>) -> bool {
    match v {
        Some(Value::String(s)) => !s.trim().is_empty(),
        Some(Value::Number(_)) => true,
        _ => false,
    }
}

fn normalise(
    value: Value,
    endpoint: Option<EventType>,
    index: Option<usize>,
    batch_sent_at: Option<&str>,
    received_at_us: i64,
    received_at: &str,
) -> Result<Value, IngestError> {
    let Value::Object(mut event) = value else {
        return Err(IngestError::NotAnObject { index });
    };
    match endpoint {
        // The endpoint decides the type, as RudderStack's gateway does.
        Some(kind) => {
            event.insert("type".into(), Value::String(kind.as_str().into()));
        }
        None => {
            let got = match event.get("type") {
                Some(Value::String(t)) if EventType::parse(t).is_some() => None,
                Some(Value::String(t)) => Some(SentType::Unknown(t.clone())),
                None => Some(SentType::Missing),
                Some(other) => Some(SentType::NotAString(shortened(&other.to_string()))),
            };
            if let Some(got) = got {
                return Err(IngestError::UnknownType { index, got, message_id: sent_message_id(&event) });
            }
        }
    }
    if !has_identifier(event.get("anonymousId")) && !has_identifier(event.get("userId")) {
        return Err(IngestError::MissingIdentity { index, message_id: sent_message_id(&event) });
    }
    stamp(&mut event, batch_sent_at, received_at_us, received_at);
    Ok(Value::Object(event))
}

/// `json` cut to 60 characters, for a message.
fn shortened(json: &str) -> String {
    match json.char_indices().nth(60) {
        Some((cut, _)) => format!("{}…", &json[..cut]),
        None => json.to_owned(),
    }
}

fn stamp(event: &mut Map<String, Value>, batch_sent_at: Option<&str>, received_at_us: i64, received_at: &str) {
    match event.get("messageId") {
        Some(Value::String(s)) if !s.is_empty() => {}
        Some(Value::Number(n)) => {
            let id = n.to_string();
            event.insert("messageId".into(), Value::String(id));
        }
        _ => {
            event.insert("messageId".into(), Value::String(uuid::Uuid::new_v4().to_string()));
        }
    }
    if !event.contains_key("sentAt") {
        if let Some(sent) = batch_sent_at {
            event.insert("sentAt".into(), Value::String(sent.to_owned()));
        }
    }
    let micros = |key: &str| event.get(key).and_then(Value::as_str).and_then(parse_micros);
    // Only a missing `timestamp` is stamped: an unreadable one goes on as sent, for the pipeline
    // to replace by the same rule and keep in `discards`.
    if event.get("timestamp").is_none_or(Value::is_null) {
        let original = micros("originalTimestamp");
        let sent = micros("sentAt");
        let ts = derive_timestamp(None, original, sent, received_at_us);
        event.insert("timestamp".into(), Value::String(format_micros(ts)));
    }
    event.insert("receivedAt".into(), Value::String(received_at.to_owned()));
}

/// The partition of an event: from `anonymousId` when present (it is stable across `identify`,
/// so a visitor's events before and after logging in stay in order), else `userId`.
pub fn partition_of(event: &Value, partitions: u32) -> u32 {
    let key = match event.get("anonymousId") {
        Some(v) if has_identifier(Some(v)) => v,
        _ => event.get("userId").unwrap_or(&Value::Null),
    };
    let hash = match key {
        Value::String(s) => xxh3_64(s.trim().as_bytes()),
        other => xxh3_64(other.to_string().as_bytes()),
    };
    (hash % u64::from(partitions)) as u32
}

fn envelopes(events: Vec<(u32, Value)>, source: &str, received_at: &str) -> Vec<Envelope> {
    let mut partitions: Vec<u32> = events.iter().map(|(p, _)| *p).collect();
    partitions.sort_unstable();
    partitions.dedup();
    let header = {
        let mut h = Vec::with_capacity(64 + source.len());
        h.extend_from_slice(b"{\"v\":1,\"source\":");
        crate::write_json(&mut h, source);
        h.extend_from_slice(b",\"receivedAt\":");
        crate::write_json(&mut h, received_at);
        h.extend_from_slice(b",\"events\":[");
        h
    };
    partitions
        .into_iter()
        .map(|partition| {
            let mut payload = header.clone();
            let mut count = 0;
            // Request order is kept within a partition: that is the order users see.
            for (_, event) in events.iter().filter(|(p, _)| *p == partition) {
                if count > 0 {
                    payload.push(b',');
                }
                crate::write_json(&mut payload, event);
                count += 1;
            }
            payload.extend_from_slice(b"]}");
            Envelope { partition, events: count, payload }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_764_135_044_000_000; // 2025-11-26T05:30:44Z

    fn envelope_events(env: &Envelope) -> Vec<Value> {
        let v: Value = serde_json::from_slice(&env.payload).unwrap();
        assert_eq!(v["v"], 1);
        v["events"].as_array().unwrap().clone()
    }

    #[test]
    fn single_track_is_stamped() {
        let body = br#"{"userId":"u1","event":"Order Completed","properties":{"total":3}}"#;
        let envs = ingest(body, Some(EventType::Track), "web", NOW, 4, &Limits::default()).unwrap();
        assert_eq!(envs.len(), 1);
        let ev = &envelope_events(&envs[0])[0];
        assert_eq!(ev["type"], "track");
        assert_eq!(ev["receivedAt"], "2025-11-26T05:30:44.000Z");
        assert_eq!(ev["timestamp"], "2025-11-26T05:30:44.000Z");
        assert_eq!(ev["messageId"].as_str().unwrap().len(), 36);
        let header: Value = serde_json::from_slice(&envs[0].payload).unwrap();
        assert_eq!(header["source"], "web");
    }

    #[test]
    fn batch_groups_by_partition_and_keeps_order() {
        let body = br#"{"sentAt":"2025-11-26T05:30:44.000Z","batch":[
            {"type":"track","event":"a","anonymousId":"x","messageId":"1"},
            {"type":"page","anonymousId":"y","messageId":"2"},
            {"type":"track","event":"b","anonymousId":"x","messageId":"3"}]}"#;
        let envs = ingest(body, None, "web", NOW, 8, &Limits::default()).unwrap();
        let total: usize = envs.iter().map(|e| e.events).sum();
        assert_eq!(total, 3);
        let with_x = envs.iter().find(|e| e.partition == partition_of(&serde_json::json!({"anonymousId":"x"}), 8)).unwrap();
        let ids: Vec<String> = envelope_events(with_x)
            .iter()
            .filter(|e| e["anonymousId"] == "x")
            .map(|e| e["messageId"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(ids, vec!["1", "3"]);
        for env in &envs {
            for ev in envelope_events(env) {
                assert_eq!(ev["sentAt"], "2025-11-26T05:30:44.000Z");
            }
        }
    }

    #[test]
    fn identity_required_and_error_names_the_event() {
        let body = br#"{"batch":[{"type":"track","userId":"u"},{"type":"track","event":"x","messageId":"m-9"}]}"#;
        let err = ingest(body, None, "web", NOW, 1, &Limits::default()).unwrap_err();
        assert_eq!(err.status(), 400);
        let msg = err.to_string();
        assert!(msg.contains("event 1"), "{msg}");
        assert!(msg.contains("m-9"), "{msg}");
        assert!(msg.contains("anonymousId"), "{msg}");
        let blank = br#"{"userId":"   "}"#;
        assert_eq!(ingest(blank, Some(EventType::Identify), "s", NOW, 1, &Limits::default()).unwrap_err().code(), "missing_identity");
    }

    #[test]
    fn malformed_and_wrong_shapes() {
        let l = Limits::default();
        assert_eq!(ingest(b"{nope", Some(EventType::Track), "s", NOW, 1, &l).unwrap_err().code(), "malformed_json");
        assert_eq!(ingest(b"[1,2]", Some(EventType::Track), "s", NOW, 1, &l).unwrap_err().code(), "not_an_object");
        assert_eq!(ingest(b"{\"batch\":[]}", None, "s", NOW, 1, &l).unwrap_err().code(), "empty_batch");
        assert_eq!(ingest(b"{\"batch\":[{\"type\":\"nope\",\"userId\":\"u\"}]}", None, "s", NOW, 1, &l).unwrap_err().code(), "unknown_type");
        assert_eq!(ingest(b"{\"batch\":[1]}", None, "s", NOW, 1, &l).unwrap_err().code(), "not_an_object");
        assert_eq!(ingest(b"{\"batch\":[{\"type\":\"track\",", None, "s", NOW, 1, &l).unwrap_err().code(), "malformed_json");
    }

    #[test]
    fn a_bad_type_is_named_as_sent_with_the_message_id() {
        let l = Limits::default();
        let refused = |batch: &str| {
            let err = ingest(format!(r#"{{"batch":[{batch}]}}"#).as_bytes(), None, "s", NOW, 1, &l).unwrap_err();
            assert_eq!((err.status(), err.code()), (400, "unknown_type"), "{err}");
            err.to_string()
        };
        assert_eq!(
            refused(r#"{"userId":"u","messageId":"m-1"}"#),
            r#"event 0 of the batch (messageId "m-1") has no `type`; set it to one of track, identify, page, screen, group or alias"#
        );
        assert_eq!(
            refused(r#"{"type":"track","userId":"u"},{"type":123,"userId":"u","messageId":7}"#),
            r#"event 1 of the batch (messageId "7") has type 123, not a string; set it to one of track, identify, page, screen, group or alias"#
        );
        assert!(refused(r#"{"type":null,"userId":"u"}"#).starts_with("event 0 of the batch has type null, not a string;"));
        let long = refused(&format!(r#"{{"type":{{"k":"{}"}},"userId":"u"}}"#, "x".repeat(200)));
        assert!(long.contains(r#"has type {"k":"xxx"#) && long.contains("…, not a string") && long.len() < 200, "{long}");
        assert_eq!(
            refused(r#"{"type":"Track","userId":"u","messageId":"m-2"}"#),
            r#"event 0 of the batch (messageId "m-2") has type "Track"; expected one of track, identify, page, screen, group or alias"#
        );
    }

    #[test]
    fn a_batch_that_is_not_an_array_says_so() {
        let l = Limits::default();
        for (batch, got) in [(r#"{"type":"track","userId":"u"}"#, "an object"), (r#""x""#, "a string"), ("3", "a number"), ("true", "a boolean")] {
            let err = ingest(format!(r#"{{"batch":{batch}}}"#).as_bytes(), None, "s", NOW, 1, &l).unwrap_err();
            assert_eq!((err.status(), err.code()), (400, "batch_not_an_array"), "{err}");
            assert_eq!(err.to_string(), format!(r#"`batch` is {got}, not an array; send {{"batch": [event, ...]}}, even for one event"#));
        }
        for body in [r#"{"batch":null}"#, r#"{"sentAt":"x"}"#, r#"{"batch":[]}"#, "[1]", r#"[[{"type":"track","userId":"u"}]]"#, "3"] {
            assert_eq!(ingest(body.as_bytes(), None, "s", NOW, 1, &l).unwrap_err().code(), "empty_batch", "{body}");
        }
    }

    #[test]
    fn size_limits() {
        let l = Limits { max_event_bytes: 64, max_request_bytes: 200, max_batch_events: 2 };
        let big = format!("{{\"userId\":\"u\",\"properties\":{{\"p\":\"{}\"}}}}", "x".repeat(80));
        let err = ingest(big.as_bytes(), Some(EventType::Track), "s", NOW, 1, &l).unwrap_err();
        assert_eq!(err.status(), 413);
        let batch = format!("{{\"batch\":[{{\"type\":\"track\",\"userId\":\"u\"}},{}]}}", big.replace("{\"userId\"", "{\"type\":\"track\",\"userId\""));
        match ingest(batch.as_bytes(), None, "s", NOW, 1, &l).unwrap_err() {
            IngestError::EventTooLarge { index, .. } => assert_eq!(index, Some(1)),
            other => panic!("{other:?}"),
        }
        let huge = "x".repeat(300);
        assert_eq!(ingest(huge.as_bytes(), None, "s", NOW, 1, &l).unwrap_err().code(), "request_too_large");
        let three = br#"{"batch":[{"type":"track","userId":"u"},{"type":"track","userId":"u"},{"type":"track","userId":"u"}]}"#;
        assert_eq!(ingest(three, None, "s", NOW, 1, &l).unwrap_err().code(), "too_many_events");
    }

    #[test]
    fn keeps_client_message_id_and_timestamp() {
        let body = br#"{"userId":"u","messageId":"abc","timestamp":"2020-01-01T00:00:00Z","originalTimestamp":"2020-01-01T00:00:00Z"}"#;
        let envs = ingest(body, Some(EventType::Page), "s", NOW, 1, &Limits::default()).unwrap();
        let ev = &envelope_events(&envs[0])[0];
        assert_eq!(ev["messageId"], "abc");
        assert_eq!(ev["timestamp"], "2020-01-01T00:00:00Z");
        assert_eq!(ev["type"], "page");
    }

    #[test]
    fn skew_corrected_timestamp() {
        let body = br#"{"anonymousId":"a","originalTimestamp":"2025-11-26T05:31:40.000Z","sentAt":"2025-11-26T05:31:44.000Z"}"#;
        let envs = ingest(body, Some(EventType::Track), "s", NOW, 1, &Limits::default()).unwrap();
        let ev = &envelope_events(&envs[0])[0];
        assert_eq!(ev["timestamp"], "2025-11-26T05:30:40.000Z");
    }

    #[test]
    fn an_unreadable_timestamp_is_forwarded_as_sent() {
        let body = br#"{"anonymousId":"a","timestamp":"2025-11-26T05:30:40.123"}"#;
        let envs = ingest(body, Some(EventType::Track), "s", NOW, 1, &Limits::default()).unwrap();
        assert_eq!(envelope_events(&envs[0])[0]["timestamp"], "2025-11-26T05:30:40.123");
        let body = br#"{"anonymousId":"a","timestamp":null}"#;
        let envs = ingest(body, Some(EventType::Track), "s", NOW, 1, &Limits::default()).unwrap();
        assert_eq!(envelope_events(&envs[0])[0]["timestamp"], "2025-11-26T05:30:44.000Z");
    }

    /// An event reaches the pipeline inside an envelope two levels deep, as a batch body holds
    /// it: both endpoints take what the pipeline can parse, and refuse the level above.
    #[test]
    fn events_nest_as_deep_on_every_endpoint_as_the_pipeline_parses() {
        // Parsing and dropping 127 levels overflows a test thread's stack in a debug build.
        std::thread::Builder::new().stack_size(64 << 20).spawn(nest_as_deep_as_the_pipeline_parses).unwrap().join().unwrap();
    }

    fn nest_as_deep_as_the_pipeline_parses() {
        let event = |levels: usize| format!(r#"{{"type":"track","anonymousId":"a","p":{}1{}}}"#, "[".repeat(levels - 1), "]".repeat(levels - 1));
        let l = Limits { max_event_bytes: 1 << 20, ..Limits::default() };
        let deepest = MAX_EVENT_DEPTH - 1;
        for levels in [deepest, deepest + 1] {
            let single = ingest(event(levels).as_bytes(), Some(EventType::Track), "s", NOW, 1, &l);
            let batch = ingest(format!(r#"{{"batch":[{}]}}"#, event(levels)).as_bytes(), None, "s", NOW, 1, &l);
            if levels == deepest {
                for envs in [single.unwrap(), batch.unwrap()] {
                    assert!(crate::json::parse(&envs[0].payload).is_ok(), "the pipeline parses the envelope");
                }
            } else {
                for err in [single.unwrap_err(), batch.unwrap_err()] {
                    assert_eq!((err.status(), err.code()), (400, "too_deeply_nested"), "{err}");
                    assert!(err.to_string().contains("at most 125 levels"), "{err}");
                }
            }
        }
    }

}
