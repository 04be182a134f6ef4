//! The Segment/RudderStack warehouse layout: which tables an event lands in, column names, and
//! typed rows per table for one batch.
//!
//! Tables: `tracks` (+ one snake_case table per track event name), `identifies`, `users`,
//! `pages`, `screens`, `groups`, `aliases`. Nested objects are flattened with `_`
//! (`context.library.name` → `context_library_name`); arrays are stored as JSON text.
//! A column's type in a batch is the type of its first value (integers widen to floats);
//! a later value that cannot be stored as that type becomes NULL in its row and a row in the
//! `discards` output with the reason, as RudderStack's `rudder_discards` does.

use serde_json::{Map, Value};
use std::collections::HashMap;

use crate::ingest::EventType;
use crate::timefmt::parse_micros;

/// Tables every event type maps to; a track event named like one of these gets a `_` prefix.
pub const RESERVED_TABLES: &[&str] = &[
    "tracks", "identifies", "users", "pages", "screens", "groups", "aliases", "accounts", "discards",
    "discarded_events",
];

/// Columns the layout sets itself; a property or trait with the same name is stored as `_<name>`
/// rather than being overwritten.
const COMMON_COLUMNS: &[&str] = &[
    "id", "anonymous_id", "user_id", "sent_at", "timestamp", "received_at", "original_timestamp", "channel",
    "event", "event_text", "name", "group_id", "previous_id", "uuid_ts", "context_source_id",
];

const TIMESTAMP_COLUMNS: &[&str] = &["sent_at", "timestamp", "received_at", "original_timestamp"];

/// Longest identifier every supported warehouse accepts (PostgreSQL: 63 bytes).
pub const MAX_IDENTIFIER: usize = 63;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnType {
    Boolean,
    Int,
    Float,
    String,
    Datetime,
}

impl ColumnType {
    pub fn as_str(self) -> &'static str {
        match self {
            ColumnType::Boolean => "boolean",
            ColumnType::Int => "int",
            ColumnType::Float => "float",
            ColumnType::String => "string",
            ColumnType::Datetime => "datetime",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Cell {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Micros(i64),
}

/// snake_case as RudderStack's warehouse transformer writes names: words split at
/// non-alphanumerics and lower→upper case changes, lower-cased, joined by `_`; a leading digit
/// gets a `_` prefix; capped at [`MAX_IDENTIFIER`] bytes.
pub fn snake_case(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    let mut prev_lower_or_digit = false;
    let mut pending_sep = false;
    for ch in s.chars() {
        if ch.is_alphanumeric() {
            if (pending_sep || (ch.is_uppercase() && prev_lower_or_digit)) && !out.is_empty() {
                out.push('_');
            }
            pending_sep = false;
            for lower in ch.to_lowercase() {
                out.push(lower);
            }
            prev_lower_or_digit = ch.is_lowercase() || ch.is_numeric();
        } else {
            pending_sep = true;
            prev_lower_or_digit = false;
        }
    }
    if out.is_empty() {
        out.push('_');
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    truncate_identifier(out)
}

fn truncate_identifier(mut s: String) -> String {
    if s.len() > MAX_IDENTIFIER {
        let mut cut = MAX_IDENTIFIER;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

/// The per-event table of a track event.
pub fn event_table(event_name: &str) -> String {
    let t = snake_case(event_name);
    if RESERVED_TABLES.contains(&t.as_str()) {
        truncate_identifier(format!("_{t}"))
    } else {
        t
    }
}

/// Rows of one table in one batch, columns in first-seen order.
#[derive(Debug, Default)]
pub struct Table {
    pub name: String,
    columns: Vec<(String, ColumnType)>,
    index: HashMap<String, usize>,
    rows: Vec<Vec<(usize, Cell)>>,
}

/// A value that could not be stored, in RudderStack's `rudder_discards` shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Discard {
    pub table_name: String,
    pub row_id: String,
    pub column_name: String,
    pub column_value: String,
    pub reason: String,
    pub received_at_us: i64,
}

impl Table {
    fn new(name: String) -> Table {
        Table { name, ..Default::default() }
    }

    pub fn columns(&self) -> &[(String, ColumnType)] {
        &self.columns
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    fn push(&mut self, row: Vec<(String, Value)>, row_id: &str, received_at_us: i64, discards: &mut Vec<Discard>) {
        let mut cells = Vec::with_capacity(row.len());
        for (column, value) in row {
            let is_ts = TIMESTAMP_COLUMNS.contains(&column.as_str());
            let Some(kind) = infer(&value, is_ts) else { continue };
            // The layout's time columns are datetimes whatever the first value looks like.
            let kind = if is_ts { ColumnType::Datetime } else { kind };
            let idx = match self.index.get(&column) {
                Some(&i) => i,
                None => {
                    self.columns.push((column.clone(), kind));
                    self.index.insert(column.clone(), self.columns.len() - 1);
                    self.columns.len() - 1
                }
            };
            let declared = self.columns[idx].1;
            match coerce(&value, declared, is_ts) {
                Ok(cell) => cells.push((idx, cell)),
                Err(widen_to_float) if widen_to_float => {
                    self.columns[idx].1 = ColumnType::Float;
                    cells.push((idx, Cell::Float(value.as_f64().unwrap_or_default())));
                }
                Err(_) => {
                    discards.push(Discard {
                        table_name: self.name.clone(),
                        row_id: row_id.to_string(),
                        column_name: column,
                        column_value: scalar_text(&value),
                        reason: format!("incompatible schema conversion from {} to {}", json_kind(&value), declared.as_str()),
                        received_at_us,
                    });
                }
            }
        }
        self.rows.push(cells);
    }

    /// The rows as newline-delimited JSON with one type per column (datetimes as integer
    /// microseconds since the epoch), ready for a columnar reader.
    pub fn to_ndjson(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.rows.len() * 256);
        for row in &self.rows {
            out.push(b'{');
            for (n, (idx, cell)) in row.iter().enumerate() {
                if n > 0 {
                    out.push(b',');
                }
                let (name, kind) = &self.columns[*idx];
                write_json_str(&mut out, name);
                out.push(b':');
                write_cell(&mut out, cell, *kind);
            }
            out.extend_from_slice(b"}\n");
        }
        out
    }
}

fn write_json_str(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *out, s).expect("writing to a Vec cannot fail");
}

fn write_cell(out: &mut Vec<u8>, cell: &Cell, kind: ColumnType) {
    use std::io::Write;
    match cell {
        Cell::Null => out.extend_from_slice(b"null"),
        Cell::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Cell::Int(i) if kind == ColumnType::Float => write!(out, "{}.0", i).expect("vec write"),
        Cell::Int(i) | Cell::Micros(i) => write!(out, "{i}").expect("vec write"),
        Cell::Float(f) if f.is_finite() => {
            let v = serde_json::Number::from_f64(*f).map(Value::Number).unwrap_or(Value::Null);
            serde_json::to_writer(&mut *out, &v).expect("vec write");
        }
        Cell::Float(_) => out.extend_from_slice(b"null"),
        Cell::Str(s) => write_json_str(out, s),
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn infer(v: &Value, is_timestamp_column: bool) -> Option<ColumnType> {
    Some(match v {
        Value::Null => return None,
        Value::Bool(_) => ColumnType::Boolean,
        Value::Number(n) if n.is_i64() => ColumnType::Int,
        Value::Number(_) => ColumnType::Float,
        Value::String(_) if is_timestamp_column => ColumnType::Datetime,
        Value::String(_) | Value::Array(_) | Value::Object(_) => ColumnType::String,
    })
}

/// `Err(true)`: an integer column met a float and should widen; `Err(false)`: not storable.
fn coerce(v: &Value, declared: ColumnType, is_timestamp_column: bool) -> Result<Cell, bool> {
    match (declared, v) {
        (_, Value::Null) => Ok(Cell::Null),
        (ColumnType::Boolean, Value::Bool(b)) => Ok(Cell::Bool(*b)),
        (ColumnType::Int, Value::Number(n)) => n.as_i64().map(Cell::Int).ok_or(n.is_f64()),
        (ColumnType::Float, Value::Number(n)) => n.as_f64().map(Cell::Float).ok_or(false),
        (ColumnType::Datetime, Value::String(s)) if is_timestamp_column => parse_micros(s).map(Cell::Micros).ok_or(false),
        // A text column takes any scalar as its text, as RudderStack converts to string.
        (ColumnType::String, Value::String(s)) => Ok(Cell::Str(s.clone())),
        (ColumnType::String, other) => Ok(Cell::Str(scalar_text(other))),
        _ => Err(false),
    }
}

/// Collects the rows of a batch into tables.
#[derive(Debug, Default)]
pub struct Layout {
    tables: Vec<Table>,
    by_name: HashMap<String, usize>,
    pub discards: Vec<Discard>,
}

impl Layout {
    pub fn tables(&self) -> &[Table] {
        &self.tables
    }

    fn table(&mut self, name: &str) -> &mut Table {
        let idx = match self.by_name.get(name) {
            Some(&i) => i,
            None => {
                self.tables.push(Table::new(name.to_string()));
                self.by_name.insert(name.to_string(), self.tables.len() - 1);
                self.tables.len() - 1
            }
        };
        &mut self.tables[idx]
    }

    fn push_row(&mut self, table: &str, row: Vec<(String, Value)>, row_id: &str, received_at_us: i64) {
        let mut discards = std::mem::take(&mut self.discards);
        self.table(table).push(row, row_id, received_at_us, &mut discards);
        self.discards = discards;
    }

    /// Add one stamped event (it has `type`, `messageId`, `receivedAt`).
    /// `extra` are columns the pipeline adds (source, config version, lineage ...).
    pub fn add_event(&mut self, event: &Map<String, Value>, kind: EventType, extra: &[(&str, Value)]) {
        let id = id_text(event.get("messageId"));
        let received_at_us = event.get("receivedAt").and_then(Value::as_str).and_then(parse_micros).unwrap_or(0);
        let mut common: Vec<(String, Value)> = Vec::with_capacity(32);
        common.push(("id".into(), Value::String(id.clone())));
        for (field, column) in [("anonymousId", "anonymous_id"), ("userId", "user_id")] {
            if let Some(v) = event.get(field).filter(|v| !v.is_null()) {
                common.push((column.into(), Value::String(id_text(Some(v)))));
            }
        }
        for (field, column) in [
            ("sentAt", "sent_at"),
            ("timestamp", "timestamp"),
            ("receivedAt", "received_at"),
            ("originalTimestamp", "original_timestamp"),
            ("channel", "channel"),
        ] {
            if let Some(v) = event.get(field) {
                common.push((column.into(), v.clone()));
            }
        }
        if let Some(Value::Object(ctx)) = event.get("context") {
            flatten_into(&mut common, "context", ctx, &[]);
        }
        for (k, v) in extra {
            common.push(((*k).to_string(), v.clone()));
        }

        match kind {
            EventType::Track => {
                let name = event.get("event").map(scalar_text).unwrap_or_default();
                let mut row = common.clone();
                row.push(("event".into(), Value::String(event_table(&name))));
                row.push(("event_text".into(), Value::String(name.clone())));
                self.push_row("tracks", row.clone(), &id, received_at_us);
                if !name.is_empty() {
                    add_object(&mut row, event.get("properties"));
                    self.push_row(&event_table(&name), row, &id, received_at_us);
                }
            }
            EventType::Identify => {
                let traits = event.get("traits").or_else(|| event.get("context").and_then(|c| c.get("traits")));
                let mut row = common;
                add_object(&mut row, traits);
                self.push_row("identifies", row, &id, received_at_us);
                if let Some(user) = event.get("userId").filter(|v| crate::ingest::has_identifier(Some(v))) {
                    let mut user_row: Vec<(String, Value)> = vec![("id".into(), Value::String(id_text(Some(user))))];
                    add_object(&mut user_row, traits);
                    user_row.push(("received_at".into(), event.get("receivedAt").cloned().unwrap_or(Value::Null)));
                    for (k, v) in extra {
                        user_row.push(((*k).to_string(), v.clone()));
                    }
                    self.push_row("users", user_row, &id, received_at_us);
                }
            }
            EventType::Page | EventType::Screen => {
                let mut row = common;
                if let Some(name) = event.get("name") {
                    row.push(("name".into(), name.clone()));
                }
                add_object(&mut row, event.get("properties"));
                let table = if kind == EventType::Page { "pages" } else { "screens" };
                self.push_row(table, row, &id, received_at_us);
            }
            EventType::Group => {
                let mut row = common;
                if let Some(g) = event.get("groupId") {
                    row.push(("group_id".into(), Value::String(id_text(Some(g)))));
                }
                add_object(&mut row, event.get("traits"));
                self.push_row("groups", row, &id, received_at_us);
            }
            EventType::Alias => {
                let mut row = common;
                if let Some(p) = event.get("previousId") {
                    row.push(("previous_id".into(), Value::String(id_text(Some(p)))));
                }
                self.push_row("aliases", row, &id, received_at_us);
            }
        }
    }
}

fn id_text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.trim().to_string(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn add_object(row: &mut Vec<(String, Value)>, obj: Option<&Value>) {
    if let Some(Value::Object(map)) = obj {
        flatten_into(row, "", map, COMMON_COLUMNS);
    }
}

fn flatten_into(row: &mut Vec<(String, Value)>, prefix: &str, map: &Map<String, Value>, reserved: &[&str]) {
    for (key, value) in map {
        let part = snake_case(key);
        let column = if prefix.is_empty() { part } else { truncate_identifier(format!("{prefix}_{part}")) };
        match value {
            Value::Object(inner) => flatten_into(row, &column, inner, reserved),
            Value::Array(_) => row.push((guard(column, reserved), Value::String(value.to_string()))),
            Value::Null => {}
            scalar => row.push((guard(column, reserved), scalar.clone())),
        }
    }
}

fn guard(column: String, reserved: &[&str]) -> String {
    if reserved.contains(&column.as_str()) {
        truncate_identifier(format!("_{column}"))
    } else {
        column
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn snake_case_like_rudderstack() {
        assert_eq!(snake_case("Order Completed"), "order_completed");
        assert_eq!(snake_case("orderCompleted"), "order_completed");
        assert_eq!(snake_case("order-completed!!"), "order_completed");
        assert_eq!(snake_case("userID"), "user_id");
        assert_eq!(snake_case("3d secure"), "_3d_secure");
        assert_eq!(snake_case("$$$"), "_");
        assert_eq!(snake_case(&"a".repeat(100)).len(), MAX_IDENTIFIER);
        assert_eq!(event_table("Tracks"), "_tracks");
        assert_eq!(event_table("Product Viewed"), "product_viewed");
    }

    #[test]
    fn track_lands_in_tracks_and_event_table() {
        let mut layout = Layout::default();
        let ev = obj(json!({"type":"track","event":"Order Completed","messageId":"m1","userId":"u1",
            "receivedAt":"2026-01-01T00:00:00.000Z","timestamp":"2026-01-01T00:00:00.000Z",
            "context":{"library":{"name":"analytics-python"},"ip":"1.2.3.4"},
            "properties":{"total":12.5,"currency":"EUR","id":"p-1","items":[{"sku":"a"}],"shipping":{"method":"dhl"}}}));
        layout.add_event(&ev, EventType::Track, &[("context_source_id", json!("web"))]);
        let names: Vec<&str> = layout.tables().iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, vec!["tracks", "order_completed"]);
        let cols: Vec<&str> = layout.tables()[1].columns().iter().map(|(c, _)| c.as_str()).collect();
        for c in ["id", "user_id", "received_at", "timestamp", "context_library_name", "context_ip", "context_source_id",
                  "event", "event_text", "total", "currency", "_id", "items", "shipping_method"] {
            assert!(cols.contains(&c), "missing {c} in {cols:?}");
        }
        assert!(!layout.tables()[0].columns().iter().any(|(c, _)| c == "total"));
        let text = String::from_utf8(layout.tables()[1].to_ndjson()).unwrap();
        let row: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(row["received_at"], 1_767_225_600_000_000i64);
        assert_eq!(row["items"], "[{\"sku\":\"a\"}]");
        assert_eq!(row["event"], "order_completed");
    }

    #[test]
    fn identify_fills_identifies_and_users() {
        let mut layout = Layout::default();
        let ev = obj(json!({"type":"identify","messageId":"m2","userId":"u1","anonymousId":"a1",
            "receivedAt":"2026-01-01T00:00:00.000Z","traits":{"email":"x@example.com","plan":"pro"}}));
        layout.add_event(&ev, EventType::Identify, &[]);
        let users = layout.tables().iter().find(|t| t.name == "users").unwrap();
        let row: Value = serde_json::from_slice(&users.to_ndjson()).unwrap();
        assert_eq!(row["id"], "u1");
        assert_eq!(row["plan"], "pro");
    }

    #[test]
    fn type_conflicts_become_discards_and_ints_widen() {
        let mut layout = Layout::default();
        for (i, v) in [json!(1), json!(2.5), json!("lots"), json!(true)].into_iter().enumerate() {
            let ev = obj(json!({"type":"page","messageId":format!("m{i}"),"anonymousId":"a",
                "receivedAt":"2026-01-01T00:00:00.000Z","properties":{"qty":v}}));
            layout.add_event(&ev, EventType::Page, &[]);
        }
        let pages = &layout.tables()[0];
        let qty = pages.columns().iter().find(|(c, _)| c == "qty").unwrap();
        assert_eq!(qty.1, ColumnType::Float);
        assert_eq!(layout.discards.len(), 2);
        assert_eq!(layout.discards[0].row_id, "m2");
        assert_eq!(layout.discards[0].column_value, "lots");
        assert!(layout.discards[0].reason.contains("string to float"));
        let text = String::from_utf8(pages.to_ndjson()).unwrap();
        let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(first["qty"], 1.0);
    }

    #[test]
    fn bad_timestamp_is_discarded_not_fatal() {
        let mut layout = Layout::default();
        let ev = obj(json!({"type":"alias","messageId":"m","userId":"u","previousId":"p",
            "receivedAt":"2026-01-01T00:00:00.000Z","sentAt":"not a time"}));
        layout.add_event(&ev, EventType::Alias, &[]);
        assert_eq!(layout.discards.len(), 1);
        assert_eq!(layout.discards[0].column_name, "sent_at");
        assert_eq!(layout.tables()[0].len(), 1);
    }

    #[test]
    fn text_column_takes_any_scalar() {
        let mut layout = Layout::default();
        for (i, v) in [json!("a"), json!(7), json!(false)].into_iter().enumerate() {
            let ev = obj(json!({"type":"screen","messageId":format!("m{i}"),"userId":"u","properties":{"label":v}}));
            layout.add_event(&ev, EventType::Screen, &[]);
        }
        assert!(layout.discards.is_empty());
        let text = String::from_utf8(layout.tables()[0].to_ndjson()).unwrap();
        assert!(text.contains("\"label\":\"7\""), "{text}");
    }
}
