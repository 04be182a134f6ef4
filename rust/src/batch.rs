//! Pipeline-side processing of one batch: envelopes in, warehouse tables, discards and
//! rejected events out. One call per batch; nothing here touches Python.

use sonic_rs::{JsonContainerTrait, JsonValueTrait, Object, Value, ValueRef};

use crate::fields::Fields;
use crate::govern::{has_identifier, normalized_id, Governance, Scratch, Verdict, ID_FIELDS};
use crate::idempotency::{content_key, event_key, event_key_with, to_hex};
use crate::ingest::EventType;
use crate::json;
use crate::timefmt::{derive_timestamp, format_micros, parse_micros};
use crate::warehouse::{Discard, Layout};

/// One Kafka message: either a collector envelope's `events` array, or a single event object
/// produced straight to the raw topic by another producer.
pub struct Message<'a> {
    pub source: &'a str,
    /// Fallback receive time (the Kafka timestamp) for events that carry no `receivedAt`.
    pub received_at_us: i64,
    pub events: &'a [u8],
    /// One byte per event of the message; non-zero marks a duplicate already delivered (found by
    /// the dedupe stage), which is counted and skipped. Empty: no event is a duplicate.
    pub duplicates: &'a [u8],
    /// Per event, how many milliseconds it arrived beyond the allowed lateness (0: in time), from
    /// the reconcile stage. Empty: every event in time.
    pub late_by_ms: &'a [i64],
}

/// A whole event refused by the pipeline, with the reason it was refused.
#[derive(Debug, Clone)]
pub struct Rejected {
    pub id: String,
    pub source: String,
    pub reason: &'static str,
    pub detail: String,
    pub event: String,
    pub received_at_us: i64,
}

#[derive(Debug, Default)]
pub struct BatchOutput {
    pub layout: Layout,
    pub rejected: Vec<Rejected>,
    pub events_in: usize,
    pub accepted: usize,
    /// Events skipped as duplicates of already delivered ones.
    pub duplicates: usize,
    /// Events that arrived beyond the allowed lateness (delivered, flagged `late`).
    pub late: usize,
    /// Idempotency key of every accepted event, in order.
    pub keys: Vec<u128>,
    /// Policy counts: (source, violation type, action) and (PII class, action).
    pub violation_counts: Vec<(String, &'static str, &'static str, usize)>,
    pub pii_counts: Vec<(&'static str, &'static str, usize)>,
}

pub fn process(messages: &[Message<'_>], extra: &[(&str, Value)], gov: &Governance) -> BatchOutput {
    let mut out = BatchOutput::default();
    let mut scratch = Scratch::default();
    // Built once per batch; only the source changes between messages (and lateness per event).
    let mut columns: Vec<(&str, Value)> = Vec::with_capacity(extra.len() + 3);
    columns.push(("context_source_id", Value::new_null()));
    columns.extend(extra.iter().cloned());
    columns.push(("late", Value::from(false)));
    columns.push(("late_by_ms", Value::new_null()));
    for msg in messages {
        if columns[0].1.as_str() != Some(msg.source) {
            columns[0].1 = Value::from(msg.source);
        }
        match json::parse(msg.events) {
            Ok(doc) => match doc.as_ref() {
                ValueRef::Array(events) => {
                    out.keys.reserve(events.len());
                    for (i, event) in events.iter().enumerate() {
                        if msg.duplicates.get(i).is_some_and(|d| *d != 0) {
                            out.events_in += 1;
                            out.duplicates += 1;
                            continue;
                        }
                        let late = msg.late_by_ms.get(i).copied().unwrap_or(0);
                        with_lateness(&mut columns, late, &mut out.late);
                        accept(&mut out, msg, event, &columns, gov, &mut scratch);
                    }
                }
                _ if msg.duplicates.first().is_some_and(|d| *d != 0) => {
                    out.events_in += 1;
                    out.duplicates += 1;
                }
                _ => {
                    let late = msg.late_by_ms.first().copied().unwrap_or(0);
                    with_lateness(&mut columns, late, &mut out.late);
                    accept(&mut out, msg, &doc, &columns, gov, &mut scratch)
                }
            },
            Err(e) => {
                out.events_in += 1;
                let text = String::from_utf8_lossy(&msg.events[..msg.events.len().min(64 * 1024)]);
                // Unparsed, so redacted as text: what the scanner finds, and sensitive keys' values.
                let event = gov.redact_text_for_inspection(&text).unwrap_or_else(|| text.into_owned());
                out.rejected.push(Rejected {
                    id: to_hex(content_key(msg.source, &Value::from(String::from_utf8_lossy(msg.events).as_ref()))),
                    source: msg.source.to_string(),
                    reason: "invalid_json",
                    detail: format!("message is not valid JSON: {e}"),
                    event,
                    received_at_us: msg.received_at_us,
                });
            }
        }
    }
    out.violation_counts = scratch.violation_counts.into_iter().map(|((s, t, a), n)| (s, t, a, n)).collect();
    out.pii_counts = scratch.pii_counts.into_iter().map(|((c, a), n)| (c, a, n)).collect();
    out
}

/// Set the `late` / `late_by_ms` columns (the last two of `columns`) for the next event.
fn with_lateness(columns: &mut [(&str, Value)], late_by_ms: i64, count: &mut usize) {
    let n = columns.len();
    let is_late = late_by_ms > 0;
    if columns[n - 2].1.as_bool() != Some(is_late) {
        columns[n - 2].1 = Value::from(is_late);
    }
    if is_late {
        columns[n - 1].1 = Value::from(late_by_ms);
    } else if !columns[n - 1].1.is_null() {
        columns[n - 1].1 = Value::new_null();
    }
    *count += usize::from(is_late);
}

/// `received`: the event as parsed. Nothing here changes a document in place (see `json.rs` on
/// key order): changes give new documents.
fn accept(
    out: &mut BatchOutput,
    msg: &Message<'_>,
    received: &Value,
    extra: &[(&str, Value)],
    gov: &Governance,
    scratch: &mut Scratch,
) {
    out.events_in += 1;
    let Some(map) = received.as_object() else {
        let key = event_key(msg.source, received);
        reject(out, msg, gov, key, "not_an_object", "event is not a JSON object".into(), received);
        return;
    };
    let fields = Fields::of(map);
    let key = event_key_with(msg.source, Fields::str(fields.message_id), received);
    let kind = Fields::str(fields.type_).and_then(EventType::parse);
    let Some(kind) = kind else {
        let got = fields.type_.map(json::to_string).unwrap_or_else(|| "nothing".into());
        reject(out, msg, gov, key, "unknown_type", format!("type is {got}; expected track, identify, page, screen, group or alias"), received);
        return;
    };
    if !has_identifier(fields.anonymous_id) && !has_identifier(fields.user_id) {
        reject(out, msg, gov, key, "missing_identity", "event has neither anonymousId nor userId".into(), received);
        return;
    }
    // Stamps and identifier normalisation, when the event needs any, give a new document (read
    // back from its text, so that its key order is its own).
    let stamped = restamped(map, &fields, key, msg.received_at_us, gov.lowercase_email_ids);
    let (received, fields) = match &stamped {
        Some(doc) => (doc, Fields::of(doc.as_object().expect("written as an object"))),
        None => (received, fields),
    };
    if gov.sources.is_empty() && gov.pii.is_none() {
        out.layout.add_fields(&fields, kind, extra, None);
    } else {
        let mut event = received.clone();
        // A `Drop` leaves `event` as received (stamped), which is what the discard record keeps.
        match gov.apply(msg.source, &mut event, scratch) {
            Verdict::Drop { reason, detail } => {
                reject(out, msg, gov, key, reason, detail, received);
                return;
            }
            Verdict::Pass { lineage } => {
                let map = event.as_object().expect("still an object");
                let plan_context = lineage.plan_context.as_ref();
                if lineage.pii_actions.is_empty() {
                    out.layout.add_event_with_plan_context(map, kind, extra, plan_context);
                } else {
                    let mut columns: Vec<(&str, Value)> = Vec::with_capacity(extra.len() + 1);
                    columns.extend(extra.iter().cloned());
                    columns.push(("tidegate_pii_actions", Value::from(lineage.pii_actions.join(",").as_str())));
                    out.layout.add_event_with_plan_context(map, kind, &columns, plan_context);
                }
            }
        }
    }
    out.keys.push(key);
    out.accepted += 1;
}

/// Record a refused event: `event` as received (stamped), with PII redacted.
fn reject(out: &mut BatchOutput, msg: &Message<'_>, gov: &Governance, key: u128, reason: &'static str, detail: String, event: &Value) {
    let mut kept = event.clone();
    gov.redact_for_inspection(&mut kept);
    out.rejected.push(Rejected {
        id: event.get("messageId").and_then(|v| v.as_str()).map(str::to_owned).unwrap_or_else(|| to_hex(key)),
        source: msg.source.to_string(),
        reason,
        detail,
        event: json::to_string(&kept),
        received_at_us: msg.received_at_us,
    });
}

/// Events produced straight to Kafka skipped the collector: give them what it would have
/// stamped (the id of an event without `messageId` is its content hash, so a re-sent copy lands
/// on the same row); and normalise identifiers (`govern::normalized_id`). `None` when the event
/// needs neither; otherwise the event rewritten, keys in the order they would have after
/// inserting into it (a replaced key keeps its place, a new one goes last).
fn restamped(map: &Object, fields: &Fields<'_>, key: u128, kafka_time_us: i64, lowercase_email_ids: bool) -> Option<Value> {
    let mut changes: Vec<(&'static str, String)> = Vec::new();
    if Fields::str(fields.message_id).is_none_or(str::is_empty) {
        changes.push(("messageId", to_hex(key)));
    }
    let micros = |field: Option<&Value>| Fields::str(field).and_then(parse_micros);
    let received = match micros(fields.received_at) {
        Some(us) => us,
        None => {
            let text = format_micros(kafka_time_us);
            let us = parse_micros(&text).unwrap_or(kafka_time_us);
            changes.push(("receivedAt", text));
            us
        }
    };
    // Only a missing one: an unreadable `timestamp` stays for the layout to replace and record
    // in `discards` (`warehouse::Item::Replaced`), as an unreadable `sentAt` is recorded.
    if fields.timestamp.is_none_or(|v| v.is_null()) {
        let ts = derive_timestamp(None, micros(fields.original_timestamp), micros(fields.sent_at), received);
        changes.push(("timestamp", format_micros(ts)));
    }
    for field in ID_FIELDS {
        if let Some(new) = Fields::str(fields.id_field(field)).and_then(|id| normalized_id(id, lowercase_email_ids)) {
            changes.push((field, new));
        }
    }
    if changes.is_empty() {
        return None;
    }
    let mut text = Vec::with_capacity(1024);
    text.push(b'{');
    let mut first = true;
    let mut sep = |text: &mut Vec<u8>| {
        if !std::mem::take(&mut first) {
            text.push(b',');
        }
    };
    for (k, v) in map.iter() {
        sep(&mut text);
        json::write_str(&mut text, k);
        text.push(b':');
        match changes.iter().find(|(c, _)| *c == k) {
            Some((_, new)) => json::write_str(&mut text, new),
            None => json::write(&mut text, v),
        }
    }
    let present = |k: &str| match k {
        "messageId" => fields.message_id.is_some(),
        "receivedAt" => fields.received_at.is_some(),
        "timestamp" => fields.timestamp.is_some(),
        _ => true, // identifiers are only ever replaced
    };
    for (k, new) in &changes {
        if !present(k) {
            sep(&mut text);
            json::write_str(&mut text, k);
            text.push(b':');
            json::write_str(&mut text, new);
        }
    }
    text.push(b'}');
    Some(sonic_rs::from_slice(&text).expect("written as JSON above"))
}

/// Event time of an event as the warehouse will store it (`timestamp`, else derived by the
/// clock-skew rule from what the event carries, else `received_fallback_us`).
pub fn event_time_us(map: &Object, received_fallback_us: i64) -> i64 {
    let micros = |k: &str| map.get(&k).and_then(|v| v.as_str()).and_then(parse_micros);
    if let Some(ts) = micros("timestamp") {
        return ts;
    }
    let received = micros("receivedAt").unwrap_or(received_fallback_us);
    derive_timestamp(None, micros("originalTimestamp"), micros("sentAt"), received)
}

/// Idempotency key and event time of every event in a raw-topic message, for the stateful
/// stages (dedupe, late-arrival watermark). Unparseable input yields nothing.
pub fn message_index(source: &str, events_json: &[u8], kafka_time_us: i64) -> (Vec<u128>, Vec<i64>) {
    let index = |e: &Value| {
        let t = e.as_object().map(|m| event_time_us(m, kafka_time_us)).unwrap_or(kafka_time_us);
        (event_key(source, e), t)
    };
    match json::parse(events_json) {
        Ok(doc) => match doc.as_ref() {
            ValueRef::Array(events) => events.iter().map(index).unzip(),
            _ => {
                let (k, t) = index(&doc);
                (vec![k], vec![t])
            }
        },
        Err(_) => (Vec::new(), Vec::new()),
    }
}

/// Newline-delimited JSON of the `discards` rows.
pub fn discards_ndjson(discards: &[Discard]) -> Vec<u8> {
    let mut out = Vec::new();
    for d in discards {
        let row = serde_json::json!({
            "table_name": d.table_name, "row_id": d.row_id, "column_name": d.column_name,
            "column_value": d.column_value, "reason": d.reason, "received_at": d.received_at_us,
        });
        crate::write_json(&mut out, &row);
        out.push(b'\n');
    }
    out
}

/// Newline-delimited JSON of the `discarded_events` rows.
pub fn rejected_ndjson(rejected: &[Rejected]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in rejected {
        let row = serde_json::json!({
            "id": r.id, "source_id": r.source, "reason": r.reason, "detail": r.detail,
            "event": r.event, "received_at": r.received_at_us,
        });
        crate::write_json(&mut out, &row);
        out.push(b'\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value as JsonValue;

    #[test]
    fn envelope_and_single_messages_and_rejects() {
        let env = br#"[{"type":"track","event":"Signed Up","userId":"u","messageId":"m1","receivedAt":"2026-01-01T00:00:00.000Z"},
                      {"type":"track","event":"x","messageId":"m2"},
                      {"type":"bogus","userId":"u"}, 5]"#;
        let single = br#"{"type":"page","anonymousId":"a","name":"Home"}"#;
        let msgs = [
            Message { source: "web", received_at_us: 0, events: env, duplicates: b"\x00\x01", late_by_ms: &[0, 0, 0, 0] },
            Message { source: "kafka", received_at_us: 1_767_225_600_000_000, events: single, duplicates: b"", late_by_ms: &[] },
            Message { source: "kafka", received_at_us: 0, events: b"{oops", duplicates: b"", late_by_ms: &[] },
        ];
        let out = process(&msgs, &[], &Governance::default());
        assert_eq!(out.events_in, 6);
        assert_eq!(out.accepted, 2);
        assert_eq!(out.duplicates, 1, "the second event is flagged as a duplicate");
        let reasons: Vec<&str> = out.rejected.iter().map(|r| r.reason).collect();
        assert_eq!(reasons, vec!["unknown_type", "not_an_object", "invalid_json"]);
        let pages = out.layout.tables().iter().find(|t| t.name == "pages").unwrap();
        let row: JsonValue = serde_json::from_slice(&pages.to_ndjson()).unwrap();
        assert_eq!(row["id"].as_str().unwrap().len(), 32, "content-hash id for a producer without messageId");
        assert_eq!(row["received_at"], 1_767_225_600_000_000i64);
        assert_eq!(row["timestamp"], 1_767_225_600_000_000i64);
        assert_eq!(row["context_source_id"], "kafka");
    }

    /// Hostile messages are each refused with a reason (or, when they are valid JSON, laid out)
    /// without a crash, and the good message of the same batch goes through untouched.
    #[test]
    fn hostile_messages_are_classified_and_the_rest_of_the_batch_is_unaffected() {
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let deep_object = format!(
            r#"{{"type":"page","anonymousId":"a","properties":{}1{}}}"#,
            r#"{"a":"#.repeat(10_000),
            "}".repeat(10_000)
        );
        let big = "x".repeat(10 * 1024 * 1024);
        let big_event = format!(r#"{{"type":"page","anonymousId":"a","messageId":"big","name":"{big}"}}"#);
        let big_invalid = format!(r#"{{"type":"page","name":"{big}""#);
        let cases: Vec<(&str, Vec<u8>, Option<&str>)> = vec![
            ("deep array", deep.into_bytes(), Some("invalid_json")),
            ("deep object", deep_object.into_bytes(), Some("invalid_json")),
            ("invalid utf-8", b"{\"type\":\"page\",\"anonymousId\":\"a\",\"name\":\"\xff\xfe\"}".to_vec(), Some("invalid_json")),
            ("NaN", br#"{"type":"page","anonymousId":"a","properties":{"x":NaN}}"#.to_vec(), Some("invalid_json")),
            ("Infinity", br#"[{"type":"page","anonymousId":"a","properties":{"x":Infinity}}]"#.to_vec(), Some("invalid_json")),
            ("overflowing number", br#"{"type":"page","anonymousId":"a","properties":{"x":1e400}}"#.to_vec(), Some("invalid_json")),
            ("number at top level", b"5".to_vec(), Some("not_an_object")),
            ("string at top level", br#""page""#.to_vec(), Some("not_an_object")),
            ("null at top level", b"null".to_vec(), Some("not_an_object")),
            ("truncated 10 MB string", big_invalid.into_bytes(), Some("invalid_json")),
            ("10 MB string", big_event.into_bytes(), None),
            // Duplicate keys are valid JSON: the last value wins, as in every mainstream parser.
            ("duplicate keys", br#"{"type":"track","type":"page","anonymousId":"a","messageId":"dup","name":"A","name":"B"}"#.to_vec(), None),
        ];
        let good = br#"{"type":"track","event":"Signed Up","userId":"u","messageId":"good","receivedAt":"2026-01-01T00:00:00.000Z"}"#;
        let mut msgs: Vec<Message<'_>> = cases
            .iter()
            .map(|(_, bytes, _)| Message { source: "web", received_at_us: 0, events: bytes, duplicates: b"", late_by_ms: &[] })
            .collect();
        msgs.push(Message { source: "web", received_at_us: 0, events: good, duplicates: b"", late_by_ms: &[] });
        let out = process(&msgs, &[], &Governance::default());

        let expected: Vec<&str> = cases.iter().filter_map(|(_, _, reason)| *reason).collect();
        let reasons: Vec<&str> = out.rejected.iter().map(|r| r.reason).collect();
        assert_eq!(reasons, expected, "{:?}", out.rejected.iter().map(|r| &r.detail).collect::<Vec<_>>());
        assert!(out.rejected.iter().all(|r| r.event.len() <= 64 * 1024 + 3), "a refused message is kept truncated");
        assert!(out.rejected[0].detail.contains("recursion limit"), "{}", out.rejected[0].detail);
        assert_eq!(out.events_in, cases.len() + 1);
        assert_eq!(out.accepted, 3);

        let tracks = out.layout.tables().iter().find(|t| t.name == "tracks").unwrap();
        let row: JsonValue = serde_json::from_slice(&tracks.to_ndjson()).unwrap();
        assert_eq!(row["id"], "good");
        assert_eq!(row["event_text"], "Signed Up");
        let pages = out.layout.tables().iter().find(|t| t.name == "pages").unwrap();
        let rows: Vec<JsonValue> = pages.to_ndjson().split(|b| *b == b'\n').filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap()).collect();
        assert_eq!(rows[0]["name"].as_str().unwrap().len(), 10 * 1024 * 1024);
        assert_eq!((rows[1]["id"].as_str(), rows[1]["name"].as_str()), (Some("dup"), Some("B")));
    }

    #[test]
    fn same_content_same_id() {
        let a = br#"{"type":"page","anonymousId":"a","name":"Home","sentAt":"2026-01-01T00:00:00Z"}"#;
        let b = br#"{"name":"Home","anonymousId":"a","type":"page","sentAt":"2026-01-01T00:00:09Z"}"#;
        let out = process(&[Message { source: "k", received_at_us: 0, events: a, duplicates: b"", late_by_ms: &[] }, Message { source: "k", received_at_us: 5, events: b, duplicates: b"", late_by_ms: &[] }], &[], &Governance::default());
        assert_eq!(out.keys[0], out.keys[1]);
    }

    /// Every change the pipeline makes to an event (stamps, identifier normalisation, the
    /// plan's `context` fields, PII actions, duplicate keys) leaves its keys in document order:
    /// warehouse columns come in first-seen order and JSON text keeps the order it came in
    /// (sonic-rs would lose it on a change made in place).
    #[test]
    fn key_order_is_the_documents_through_every_change() {
        use crate::govern::SourcePolicy;
        use crate::pii::{PiiAction, PiiClass, PiiPolicy, PiiScanner};
        use crate::plan::TrackingPlan;
        use std::sync::Arc;
        let plan = TrackingPlan::compile(&serde_json::json!({
            "id": "tp", "version": 2,
            "events": {"Order Completed": {"properties": {"properties": {
                "type": "object", "properties": {"total": {"type": "number"}}}}}}
        }))
        .unwrap();
        let mut gov = Governance::default();
        gov.sources.insert("web".into(), SourcePolicy { plan: Arc::new(plan), drop: [false; 6] });
        let policy = PiiPolicy::new(PiiAction::Redact, &[(PiiClass::Ssn, PiiAction::BlockEvent)], &[]).unwrap();
        gov.pii = Some((PiiScanner::default(), policy));
        let t = r#""receivedAt":"2026-01-01T00:00:00.000Z","timestamp":"2026-01-01T00:00:00.000Z""#;
        let tracked = format!(
            r#"[{{"type":"track","event":"Order Completed","userId":"u","messageId":"m1",{t},
                 "context":{{"zeta":1,"alpha":{{"z":1,"a":2}},"mail":"jo@example.com"}},
                 "properties":{{"zz":1,"total":"12","aa":[{{"y":1,"x":"jo@example.com"}}],"mm":2}}}},
                {{"type":"track","event":"Order Completed","anonymousId":"a","messageId":"m3",{t},
                 "context":{{"z":1,"a":2}},"properties":{{"note":"ssn 123-45-6789","total":1}}}},
                {{"type":"track","event":"Order Completed","userId":"u","messageId":"m4",{t},
                 "properties":{{"total":1,"b":1,"total":2}}}}]"#
        );
        let direct = br#"{"userId":"  U-1 ","type":"page","properties":{"b":1,"a":2},"name":"Home"}"#;
        let msgs = [
            Message { source: "web", received_at_us: 0, events: tracked.as_bytes(), duplicates: b"", late_by_ms: &[] },
            Message { source: "web", received_at_us: 1_767_225_600_000_000, events: direct, duplicates: b"", late_by_ms: &[] },
        ];
        let out = process(&msgs, &[], &gov);
        assert_eq!((out.accepted, out.rejected.len()), (3, 1), "{:?}", out.rejected);
        let table = |name: &str| out.layout.tables().iter().find(|t| t.name == name).unwrap();
        let columns = |name: &str| table(name).columns().iter().map(|(c, _)| c.clone()).collect::<Vec<_>>().join(",");
        assert_eq!(
            columns("order_completed"),
            "id,user_id,timestamp,received_at,context_zeta,context_alpha_z,context_alpha_a,context_mail,\
             context_tracking_plan_id,context_tracking_plan_version,context_violation_errors,context_source_id,late,\
             tidegate_pii_actions,event,event_text,zz,total,aa,mm,b"
        );
        let rows: Vec<JsonValue> = table("order_completed")
            .to_ndjson()
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        assert_eq!(rows[0]["aa"], r#"[{"y":1,"x":"[REDACTED:email]"}]"#);
        assert_eq!(rows[0]["context_mail"], "[REDACTED:email]");
        assert_eq!(
            rows[0]["context_violation_errors"],
            r##"[{"type":"Datatype-Mismatch","message":"must be number","property":"total","meta":{"instancePath":"/properties/total","schemaPath":"#/properties/properties/properties/total/type"}}]"##
        );
        assert_eq!((rows[1]["id"].as_str(), &rows[1]["total"]), (Some("m4"), &serde_json::json!("2")), "the last value of a repeated key");
        assert_eq!(columns("pages"), "id,user_id,timestamp,received_at,context_tracking_plan_id,context_tracking_plan_version,context_source_id,late,name,b,a");
        let page: JsonValue = serde_json::from_slice(&table("pages").to_ndjson()).unwrap();
        assert_eq!(page["user_id"], "U-1");
        assert_eq!(
            out.rejected[0].event,
            format!(
                r#"{{"type":"track","event":"Order Completed","anonymousId":"a","messageId":"m3",{t},"context":{{"z":1,"a":2}},"properties":{{"note":"ssn [REDACTED:ssn]","total":1}}}}"#
            )
        );
    }

    /// A message that is no JSON is kept as text: with a PII policy, redacted as text.
    #[test]
    fn invalid_json_is_kept_with_its_pii_redacted() {
        use crate::pii::{PiiAction, PiiPolicy, PiiScanner};
        let raw = br#"{"type":"track","userId":"u","properties":{"score":NaN,"mail":"ana@example.com","card":"4111 1111 1111 1111",
            "password" : "p\"w", "api_key":12345, "token":null, "secret":{"pin":"1234"}, "note":"\u00e9 ok"}}"#;
        let msg = [Message { source: "k", received_at_us: 0, events: raw, duplicates: b"", late_by_ms: &[] }];
        let plain = process(&msg, &[], &Governance::default());
        assert_eq!(plain.rejected[0].event.as_bytes(), raw, "no PII policy: kept as it came");
        let mut gov = Governance::default();
        gov.pii = Some((PiiScanner::default(), PiiPolicy::new(PiiAction::Allow, &[], &[]).unwrap()));
        let out = process(&msg, &[], &gov);
        assert_eq!(out.rejected[0].reason, "invalid_json");
        assert_eq!(
            out.rejected[0].event,
            r#"{"type":"track","userId":"u","properties":{"score":NaN,"mail":"[REDACTED:email]","card":"[REDACTED:credit_card]",
            "password" : "[REDACTED:key_name]", "api_key":"[REDACTED:key_name]", "token":null, "secret":"[REDACTED:key_name]", "note":"\u00e9 ok"}}"#,
            "whatever the policy's actions: kept for inspection, so redacted"
        );
    }

}
