//! The properties the fuzz targets of `rust/fuzz` hold the core to on arbitrary input. They live
//! here so that `tests/fuzz_corpus.rs` replays the kept corpus through the very same checks on
//! every `cargo test` (stable toolchain, no libFuzzer). A check that fails panics, which is what
//! a fuzzer reports.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use sonic_rs::Value;

use crate::archive::archive_rows;
use crate::batch::{self, Message};
use crate::govern::{Governance, SourcePolicy};
use crate::ingest::{ingest, EventType, Limits};
use crate::json;
use crate::pii::{PiiAction, PiiClass, PiiPolicy, PiiScanner, DEFAULT_SENSITIVE_KEYS};
use crate::plan::{TrackingPlan, ViolationKind};
use crate::warehouse::ColumnType;

/// A plan that uses every keyword family Tidegate supports, so fuzzed events reach each check.
const PLAN: &str = r#"{
  "id": "fuzz", "version": 3,
  "events": {"A": {"properties": {"properties": {
    "type": "object", "required": ["x"], "additionalProperties": false,
    "properties": {
      "x": {"type": ["string", "null"], "pattern": "^[a-z]+$", "minLength": 1, "maxLength": 8},
      "n": {"type": "integer", "minimum": 0, "maximum": 10},
      "f": {"type": "number", "exclusiveMinimum": 0},
      "e": {"enum": ["a", "b", 1, null]},
      "c": {"const": {"k": [1, 2]}},
      "t": {"type": "string", "format": "date-time"},
      "m": {"format": "email"}, "u": {"format": "uri"}, "id": {"format": "uuid"},
      "l": {"type": "array", "items": {"type": "object", "required": ["k"], "properties": {"k": {"type": "boolean"}}}}
    }}}}},
  "identify": {"properties": {"traits": {"type": "object", "properties": {"email": {"format": "email"}}}}},
  "page": {"properties": {"name": {"type": "string"}}},
  "common": {"required": ["messageId"], "properties": {"timestamp": {"format": "date-time"}}}
}"#;

fn governance() -> &'static Governance {
    static GOVERNANCE: OnceLock<Governance> = OnceLock::new();
    GOVERNANCE.get_or_init(|| {
        let spec: serde_json::Value = serde_json::from_str(PLAN).expect("the fuzz plan is JSON");
        let plan = Arc::new(TrackingPlan::compile(&spec).expect("the fuzz plan compiles"));
        let drop = ViolationKind::ALL.map(|k| k == ViolationKind::UnplannedEvent);
        let mut sources = HashMap::new();
        // `s` drops unplanned events, `f` forwards every violation.
        sources.insert("s".to_string(), SourcePolicy { plan: Arc::clone(&plan), drop });
        sources.insert("f".to_string(), SourcePolicy { plan, drop: [false; 6] });
        let actions = [
            (PiiClass::Email, PiiAction::Hash),
            (PiiClass::Phone, PiiAction::DropField),
            (PiiClass::Ssn, PiiAction::BlockEvent),
            (PiiClass::Ipv4, PiiAction::Allow),
        ];
        let policy = PiiPolicy::new(PiiAction::Redact, &actions, &[7u8; 32]).expect("a valid PII policy");
        Governance { sources, pii: Some((PiiScanner::new(DEFAULT_SENSITIVE_KEYS), policy)), lowercase_email_ids: true }
    })
}

/// The pipeline's batch call on `data` as the events of two messages (one per source), with
/// duplicate flags and lateness taken from `data` too: every event is accepted, a duplicate or
/// refused with a reason; every table hands over Arrow buffers of the right sizes whose string
/// views point at valid UTF-8; the discard and refusal records are JSON lines; the admission
/// index and the archive split the same bytes without failing.
pub fn check_batch(data: &[u8]) {
    let duplicates = &data[..data.len().min(4)];
    let late: Vec<i64> = data.iter().take(8).map(|b| i64::from(*b) * 1000 - 2000).collect();
    let reversed: Vec<u8> = data.iter().rev().copied().collect();
    let messages = [
        Message { source: "s", received_at_us: 1_767_607_200_000_000, events: data, duplicates, late_by_ms: &late },
        Message { source: "f", received_at_us: 0, events: &reversed, duplicates: b"", late_by_ms: &[] },
    ];
    let extra = [("tidegate_config_version", Value::from("fuzz"))];
    let mut out = batch::process(&messages, &extra, governance());
    assert_eq!(out.accepted + out.duplicates + out.rejected.len(), out.events_in, "every event is accounted for");
    for r in &out.rejected {
        assert!(!r.reason.is_empty() && !r.detail.is_empty(), "a refusal says why: {r:?}");
    }
    for table in out.layout.tables_mut() {
        let rows = table.len();
        let order = table.order_by("timestamp");
        if let Some(order) = &order {
            let mut seen = order.clone();
            seen.sort_unstable();
            assert!(seen.iter().enumerate().all(|(i, r)| *r as usize == i), "an order is a permutation of the rows");
        }
        let kinds: Vec<ColumnType> = table.columns().iter().map(|(_, k)| *k).collect();
        let columns = table.take_arrow_view_columns(order.as_deref());
        assert_eq!(columns.len(), kinds.len());
        for (column, kind) in columns.iter().zip(kinds) {
            if let Some(validity) = &column.validity {
                assert_eq!(validity.len(), rows.div_ceil(8));
            }
            match kind {
                ColumnType::Boolean => assert_eq!(column.values.len(), rows.div_ceil(8)),
                ColumnType::Int | ColumnType::Float | ColumnType::Datetime => assert_eq!(column.values.len(), rows * 8),
                ColumnType::String => {
                    let bytes = column.bytes.as_deref().expect("a string column has its bytes");
                    assert!(column.view, "a batch this small is handed over as string views");
                    assert_eq!(column.values.len(), rows * 16);
                    for view in column.values.chunks_exact(16) {
                        let len = u32::from_le_bytes(view[..4].try_into().unwrap()) as usize;
                        let text = if len <= 12 {
                            &view[4..4 + len]
                        } else {
                            let start = u32::from_le_bytes(view[12..16].try_into().unwrap()) as usize;
                            let text = &bytes[start..start + len];
                            assert_eq!(&view[4..8], &text[..4], "a view's prefix is its string's");
                            text
                        };
                        assert!(std::str::from_utf8(text).is_ok(), "a string view points at UTF-8");
                    }
                }
            }
        }
    }
    for records in [batch::discards_ndjson(&out.layout.discards), batch::rejected_ndjson(&out.rejected)] {
        for line in records.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            assert!(serde_json::from_slice::<serde_json::Value>(line).is_ok(), "a record is one JSON line");
        }
    }
    let (keys, times) = batch::message_index("s", data, 0);
    assert_eq!(keys.len(), times.len());
    let archived = archive_rows(&[data, &reversed]);
    assert_eq!(archived.counts.iter().map(|c| *c as usize).sum::<usize>(), archived.events.len());
}

/// The collector's request normalisation on `data[1..]` at the endpoint `data[0]` picks: either
/// envelopes of at least one event each on a partition in range, whose payload is a JSON array
/// of that many events, or a refusal with a 400/413 status and a message.
pub fn check_ingest(data: &[u8]) {
    let Some((&pick, body)) = data.split_first() else { return };
    let endpoint = [None, Some(EventType::Track), Some(EventType::Identify), Some(EventType::Page)][usize::from(pick % 4)];
    let limits = Limits { max_event_bytes: 2048, max_request_bytes: 16_384, max_batch_events: 50 };
    match ingest(body, endpoint, "s", 1_767_607_200_000_000, 4, &limits) {
        Ok(envelopes) => {
            assert!(!envelopes.is_empty());
            for e in &envelopes {
                assert!(e.partition < 4 && e.events > 0);
                let payload: serde_json::Value = serde_json::from_slice(&e.payload).expect("an envelope is JSON");
                assert_eq!(payload["events"].as_array().map(Vec::len), Some(e.events), "{payload}");
            }
        }
        Err(e) => {
            assert!(matches!(e.status(), 400 | 413), "{e:?}");
            assert!(!e.to_string().is_empty());
        }
    }
}

/// A tracking plan from the JSON before the first NUL byte of `data`, and an event from the
/// rest: compiling either succeeds or says why, and validating gives typed violations, each
/// with a message and a JSON pointer.
pub fn check_plan(data: &[u8]) {
    let split = data.iter().position(|b| *b == 0).unwrap_or(data.len());
    let (spec, event) = (&data[..split], data.get(split + 1..).unwrap_or_default());
    let Ok(spec) = serde_json::from_slice::<serde_json::Value>(spec) else { return };
    let plan = match TrackingPlan::compile(&spec) {
        Ok(plan) => plan,
        Err(e) => return assert!(!e.to_string().is_empty()),
    };
    let Ok(event) = json::parse(event) else { return };
    let mut violations = Vec::new();
    plan.validate_event(&event, &mut violations);
    for v in &violations {
        assert!(ViolationKind::ALL.contains(&v.kind));
        assert!(!v.message.is_empty(), "{v:?}");
        assert!(v.instance_path.is_empty() || v.instance_path.starts_with('/'), "{v:?}");
    }
}
