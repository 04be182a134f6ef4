//! The Segment/RudderStack warehouse layout: which tables an event lands in, column names, and
//! typed rows per table for one batch.
//!
//! Tables: `tracks` (+ one snake_case table per track event name), `identifies`, `users`,
//! `pages`, `screens`, `groups`, `aliases`. Nested objects are flattened with `_`
//! (`context.library.name` → `context_library_name`); arrays are stored as JSON text.
//! A column's type in a batch is the type of its first value (integers widen to floats);
//! a later value that cannot be stored as that type becomes NULL in its row and a row in the
//! `discards` output with the reason, as RudderStack's `rudder_discards` does.

use rustc_hash::FxHashMap;
use sonic_rs::{JsonContainerTrait, JsonNumberTrait, JsonValueTrait, Object, Value, ValueRef};
use std::borrow::Cow;

use crate::fields::Fields;
use crate::govern::PlanContext;
use crate::ingest::EventType;
use crate::json;
use crate::timefmt::{derive_timestamp, parse_micros};

/// Tables the pipeline writes itself: the layout's (every event type's table, `users`,
/// `accounts`), the identity stage's `identity_map`, the sinks' `event_counts_hourly`,
/// `discards` and `discarded_events`. A track event named like one of these gets a `_` prefix,
/// so no client can write into them (`tests/unit/test_reserved_tables.py` checks the sinks'
/// tables are all here).
pub const RESERVED_TABLES: &[&str] = &[
    "tracks", "identifies", "users", "pages", "screens", "groups", "aliases", "accounts", "identity_map",
    "event_counts_hourly", "discards", "discarded_events",
];

/// Columns of every row: those the layout sets for every event type, and those the pipeline and
/// the sinks add (lateness, PII lineage, the governing config's version, the identity stage's
/// `canonical_id`, the table an outbound event came from, the load time). A property or trait
/// with the same name is stored as `_<name>` rather than overwritten or overwriting; so is one
/// named like a column the layout sets for its event type only ([`Guard`]).
const COMMON_COLUMNS: &[&str] = &[
    "id", "anonymous_id", "user_id", "sent_at", "timestamp", "received_at", "original_timestamp", "channel",
    "uuid_ts", "context_source_id", "late", "late_by_ms", "tidegate_pii_actions", "tidegate_config_version",
    "canonical_id", "tidegate_table",
];

/// Which columns a property or trait must not take: the [`COMMON_COLUMNS`] and those the layout
/// sets in the tables it lands in. `name` is a page's or screen's own column, but a trait in
/// `users` or a property of an event table, as in Segment's and RudderStack's warehouses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Guard {
    /// `context`: flattened under its own prefix, so it cannot meet a layout column.
    None,
    /// Identify traits (`identifies`, `users`).
    Common,
    /// Track properties (the event's table): `event`, `event_text`.
    Track,
    /// Page and screen properties: `name`.
    Named,
    /// Group traits: `group_id`.
    Group,
}

impl Guard {
    fn reserves(self, column: &str) -> bool {
        let own: &[&str] = match self {
            Guard::None => return false,
            Guard::Common => &[],
            Guard::Track => &["event", "event_text"],
            Guard::Named => &["name"],
            Guard::Group => &["group_id"],
        };
        COMMON_COLUMNS.contains(&column) || own.contains(&column)
    }
}

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
enum Cell<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Cow<'a, str>),
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

/// The columns the layout writes itself, interned first so that their ids are constants.
const FIXED_COLUMNS: [&str; 13] = [
    "id", "anonymous_id", "user_id", "sent_at", "timestamp", "received_at", "original_timestamp", "channel",
    "event", "event_text", "name", "group_id", "previous_id",
];
const ID: u32 = 0;
const ANONYMOUS_ID: u32 = 1;
const USER_ID: u32 = 2;
const SENT_AT: u32 = 3;
const TIMESTAMP: u32 = 4;
const RECEIVED_AT: u32 = 5;
const ORIGINAL_TIMESTAMP: u32 = 6;
const CHANNEL: u32 = 7;
const EVENT: u32 = 8;
const EVENT_TEXT: u32 = 9;
const NAME: u32 = 10;
const GROUP_ID: u32 = 11;
const PREVIOUS_ID: u32 = 12;

/// Roots of the flattening trie: `context`, and `properties`/`traits` of each [`Guard`].
const CONTEXT_ROOT: u32 = 0;
const IDENTIFY_ROOT: u32 = 1;
const TRACK_ROOT: u32 = 2;
const NAMED_ROOT: u32 = 3;
const GROUP_ROOT: u32 = 4;
const ROOTS: [Guard; 5] = [Guard::None, Guard::Common, Guard::Track, Guard::Named, Guard::Group];

/// Column names of one batch, interned: a key path is snake-cased and flattened once per batch,
/// not once per event, and a row names its columns by id.
#[derive(Debug, Default)]
struct Names {
    names: Vec<Box<str>>,
    is_timestamp: Vec<bool>,
    ids: FxHashMap<Box<str>, u32>,
    paths: Vec<PathNode>,
    event_tables: FxHashMap<Box<str>, Box<str>>,
}

#[derive(Debug)]
struct PathNode {
    /// The key this node is for (under its parent).
    key: Box<str>,
    /// The flattened name before guarding: the prefix of nested keys.
    prefix: Box<str>,
    /// The column a value at this path lands in.
    column: u32,
    guard: Guard,
    children: FxHashMap<Box<str>, u32>,
    /// The child last found at each member position: events of one shape list their keys in
    /// the same order, so most lookups are one key comparison rather than a hash lookup.
    by_position: Vec<u32>,
}

impl Names {
    fn init(&mut self) {
        if !self.names.is_empty() {
            return;
        }
        for name in FIXED_COLUMNS {
            self.intern(name);
        }
        for guard in ROOTS {
            let prefix = if guard == Guard::None { "context" } else { "" };
            self.paths.push(PathNode {
                key: prefix.into(),
                prefix: prefix.into(),
                column: u32::MAX,
                guard,
                children: FxHashMap::default(),
                by_position: Vec::new(),
            });
        }
    }

    fn intern(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = u32::try_from(self.names.len()).expect("fewer than 2^32 columns");
        self.names.push(name.into());
        self.is_timestamp.push(TIMESTAMP_COLUMNS.contains(&name));
        self.ids.insert(name.into(), id);
        id
    }

    /// [`Names::child`] of the member at `position` of the object at `node`.
    #[inline]
    fn child_at(&mut self, node: u32, position: usize, key: &str) -> u32 {
        if let Some(&guess) = self.paths[node as usize].by_position.get(position) {
            if guess != u32::MAX && *self.paths[guess as usize].key == *key {
                return guess;
            }
        }
        let child = self.child(node, key);
        let seen = &mut self.paths[node as usize].by_position;
        if seen.len() <= position {
            seen.resize(position + 1, u32::MAX);
        }
        seen[position] = child;
        child
    }

    /// The trie node of `key` under `node`: its flattened name is `<prefix>_<snake_case(key)>`.
    fn child(&mut self, node: u32, key: &str) -> u32 {
        if let Some(&child) = self.paths[node as usize].children.get(key) {
            return child;
        }
        let parent = &self.paths[node as usize];
        let part = snake_case(key);
        let prefix = if parent.prefix.is_empty() { part } else { truncate_identifier(format!("{}_{part}", parent.prefix)) };
        let guard = parent.guard;
        let column = if guard.reserves(&prefix) {
            self.intern(&truncate_identifier(format!("_{prefix}")))
        } else {
            self.intern(&prefix)
        };
        let child = u32::try_from(self.paths.len()).expect("fewer than 2^32 key paths");
        self.paths.push(PathNode {
            key: key.into(),
            prefix: prefix.into(),
            column,
            guard,
            children: FxHashMap::default(),
            by_position: Vec::new(),
        });
        self.paths[node as usize].children.insert(key.into(), child);
        child
    }

    /// Nested objects flattened with `_`; arrays stored as their JSON text; nulls left out.
    fn flatten<'a>(&mut self, row: &mut Row<'a>, node: u32, map: &'a Object) {
        for (position, (key, value)) in map.iter().enumerate() {
            match value.as_ref() {
                ValueRef::Null => {}
                ValueRef::Object(inner) => {
                    let child = self.child_at(node, position, key);
                    self.flatten(row, child, inner);
                }
                ValueRef::Array(_) => {
                    let child = self.child_at(node, position, key);
                    let column = self.paths[child as usize].column;
                    row.push((column, Item::Text(Cow::Owned(json::to_string(value)))));
                }
                scalar => {
                    let child = self.child_at(node, position, key);
                    let column = self.paths[child as usize].column;
                    row.push((column, Item::V(Val::scalar(scalar))));
                }
            }
        }
    }

    fn event_table(&mut self, event_name: &str) -> &str {
        if !self.event_tables.contains_key(event_name) {
            self.event_tables.insert(event_name.into(), event_table(event_name).into());
        }
        &self.event_tables[event_name]
    }
}

/// A value of the event (or an extra column) as the layout reads it: read from the document
/// once per event, however many rows it lands in.
#[derive(Clone, Copy)]
enum Val<'a> {
    Null,
    Bool(bool),
    /// An integer that fits i64 (`serde_json::Number::is_i64`).
    Int(i64),
    /// An integer above i64::MAX.
    UInt(u64),
    Float(f64),
    Str(&'a str),
    /// A string of a time field, and its time (read once, however many rows it lands in).
    Time(&'a str, Option<i64>),
    /// An array or object (stored as its JSON text).
    Json(&'a Value),
}

impl<'a> Val<'a> {
    fn of(v: &'a Value) -> Val<'a> {
        match v.as_ref() {
            ValueRef::Array(_) | ValueRef::Object(_) => Val::Json(v),
            scalar => Val::scalar(scalar),
        }
    }

    /// A scalar (an array or object is read as null: callers handle those first).
    fn scalar(r: ValueRef<'a>) -> Val<'a> {
        match r {
            ValueRef::Bool(b) => Val::Bool(b),
            ValueRef::Number(n) => match (n.as_u64(), n.as_i64()) {
                (Some(u), _) if u > i64::MAX as u64 => Val::UInt(u),
                (_, Some(i)) => Val::Int(i),
                _ => Val::Float(n.as_f64().unwrap_or_default()),
            },
            ValueRef::String(s) => Val::Str(s),
            ValueRef::Null | ValueRef::Array(_) | ValueRef::Object(_) => Val::Null,
        }
    }

    fn as_f64(self) -> f64 {
        match self {
            Val::Int(i) => i as f64,
            Val::UInt(u) => u as f64,
            Val::Float(f) => f,
            _ => 0.0,
        }
    }

    /// The text of a value stored in a text column (or recorded in a discard): a string as
    /// itself, anything else as its JSON text.
    fn text(self) -> String {
        match self {
            Val::Null => "null".to_owned(),
            Val::Bool(b) => if b { "true" } else { "false" }.to_owned(),
            Val::Int(i) => itoa::Buffer::new().format(i).to_owned(),
            Val::UInt(u) => itoa::Buffer::new().format(u).to_owned(),
            Val::Float(f) => {
                let mut out = Vec::new();
                json::write_f64(&mut out, f);
                String::from_utf8(out).expect("ASCII")
            }
            Val::Str(s) | Val::Time(s, _) => s.to_owned(),
            Val::Json(v) => json::to_string(v),
        }
    }
}

/// One value of a row being laid out.
enum Item<'a> {
    V(Val<'a>),
    Text(Cow<'a, str>),
    /// A client `timestamp` that is no time: stored as the time derived in its place
    /// (microseconds), the value sent recorded in `discards` ([`REPLACED_TIMESTAMP`]).
    Replaced(Val<'a>, i64),
}

/// Why a client `timestamp` is in `discards`.
const REPLACED_TIMESTAMP: &str =
    "not an RFC 3339 time (e.g. 2026-01-01T00:00:00.000Z); the stored timestamp is derived from receivedAt, sentAt and originalTimestamp";

impl<'a> Item<'a> {
    fn json(v: &'a Value) -> Item<'a> {
        Item::V(Val::of(v))
    }

    fn val(&self) -> Val<'_> {
        match self {
            Item::V(v) => *v,
            Item::Text(s) => Val::Str(s),
            Item::Replaced(_, micros) => Val::Time("", Some(*micros)),
        }
    }
}

/// One row being laid out: (interned column, value).
type Row<'a> = Vec<(u32, Item<'a>)>;

/// Rows of one table in one batch, stored by column, columns in first-seen order.
#[derive(Debug, Default)]
pub struct Table {
    pub name: String,
    columns: Vec<(String, ColumnType)>,
    data: Vec<Column>,
    /// Interned column name -> index in `columns` (`u32::MAX`: not in this table).
    index: Vec<u32>,
    rows: usize,
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

impl Discard {
    fn of(table: &str, row_id: &str, column: &str, value: Val<'_>, reason: String, received_at_us: i64) -> Discard {
        Discard {
            table_name: table.to_string(),
            row_id: row_id.to_string(),
            column_name: column.to_string(),
            column_value: value.text(),
            reason,
            received_at_us,
        }
    }
}

/// The values of one column; rows past its length are null.
#[derive(Debug)]
struct Column {
    valid: Vec<bool>,
    values: Values,
}

#[derive(Debug)]
enum Values {
    Bool(Vec<bool>),
    /// Integers, and datetimes as microseconds since the epoch.
    Int(Vec<i64>),
    Float(Vec<f64>),
    Str { offsets: Vec<i64>, bytes: Vec<u8> },
}

impl Column {
    fn new(kind: ColumnType) -> Column {
        let values = match kind {
            ColumnType::Boolean => Values::Bool(Vec::new()),
            ColumnType::Int | ColumnType::Datetime => Values::Int(Vec::new()),
            ColumnType::Float => Values::Float(Vec::new()),
            ColumnType::String => Values::Str { offsets: vec![0], bytes: Vec::new() },
        };
        Column { valid: Vec::new(), values }
    }

    fn len(&self) -> usize {
        self.valid.len()
    }

    fn push_null(&mut self) {
        self.valid.push(false);
        match &mut self.values {
            Values::Bool(v) => v.push(false),
            Values::Int(v) => v.push(0),
            Values::Float(v) => v.push(0.0),
            Values::Str { offsets, bytes } => offsets.push(bytes.len() as i64),
        }
    }

    /// Null rows up to `row` (exclusive).
    fn pad_to(&mut self, row: usize) {
        if self.len() >= row {
            return;
        }
        self.valid.resize(row, false);
        match &mut self.values {
            Values::Bool(v) => v.resize(row, false),
            Values::Int(v) => v.resize(row, 0),
            Values::Float(v) => v.resize(row, 0.0),
            Values::Str { offsets, bytes } => {
                let end = bytes.len() as i64;
                offsets.resize(row + 1, end);
            }
        }
    }

    /// Store `cell` as row `row`; the rows in between are null.
    fn set(&mut self, row: usize, cell: Cell<'_>) {
        self.pad_to(row);
        match (&mut self.values, cell) {
            (Values::Bool(v), Cell::Bool(b)) => v.push(b),
            (Values::Int(v), Cell::Int(i) | Cell::Micros(i)) => v.push(i),
            (Values::Float(v), Cell::Float(f)) if f.is_finite() => v.push(f),
            (Values::Str { offsets, bytes }, Cell::Str(s)) => {
                bytes.extend_from_slice(s.as_bytes());
                offsets.push(bytes.len() as i64);
            }
            // Null, a non-finite float, or (never: `coerce` follows the column type) a mismatch.
            _ => return self.push_null(),
        }
        self.valid.push(true);
    }

    fn widen_to_float(&mut self) {
        if let Values::Int(v) = &self.values {
            self.values = Values::Float(v.iter().map(|&i| i as f64).collect());
        }
    }

    fn is_valid(&self, row: usize) -> bool {
        self.valid.get(row).copied().unwrap_or(false)
    }

    fn text(&self, row: usize) -> &str {
        match &self.values {
            Values::Str { offsets, bytes } => {
                let (start, end) = (offsets[row] as usize, offsets[row + 1] as usize);
                std::str::from_utf8(&bytes[start..end]).expect("stored from a str")
            }
            _ => "",
        }
    }
}

/// One column as Arrow buffers, for a zero-parse hand-over to a columnar reader.
#[derive(Debug)]
pub struct ArrowColumn {
    /// LSB-first validity bitmap; `None` when no value is null.
    pub validity: Option<Vec<u8>>,
    /// Bit-packed booleans; little-endian i64 (datetimes: microseconds since the epoch) or f64;
    /// or, for strings, the `rows + 1` little-endian i64 offsets into `bytes` (Arrow
    /// `large_string`), or with `view` one 16-byte view per row (Arrow `string_view`).
    pub values: Vec<u8>,
    /// The UTF-8 bytes of a string column.
    pub bytes: Option<Vec<u8>>,
    /// `values` are string views.
    pub view: bool,
}

/// Arrow `string_view` views of the strings `offsets` delimit in `data`, in row order `row(k)`:
/// a string of up to 12 bytes is inlined in its view, a longer one is referenced by its first 4
/// bytes, buffer 0 and its offset. Rows past `offsets` are empty (their validity says null).
/// `None` if `data` is too large for 32-bit view offsets.
fn string_views(offsets: &[i64], data: &[u8], rows: usize, row: impl Fn(usize) -> usize) -> Option<Vec<u8>> {
    if u32::try_from(data.len()).is_err() {
        return None;
    }
    let mut views = vec![0u8; rows * 16];
    for (k, view) in views.chunks_exact_mut(16).enumerate() {
        let r = row(k);
        let (Some(&start), Some(&end)) = (offsets.get(r), offsets.get(r + 1)) else {
            continue;
        };
        let s = &data[start as usize..end as usize];
        view[..4].copy_from_slice(&(s.len() as u32).to_le_bytes());
        if s.len() <= 12 {
            view[4..4 + s.len()].copy_from_slice(s);
        } else {
            view[4..8].copy_from_slice(&s[..4]);
            // buffer index 0 (already zero), then the offset
            view[12..16].copy_from_slice(&(start as u32).to_le_bytes());
        }
    }
    Some(views)
}

pub(crate) fn bitmap(bits: impl Iterator<Item = bool>, rows: usize) -> Vec<u8> {
    let mut out = vec![0u8; rows.div_ceil(8)];
    for (i, bit) in bits.enumerate() {
        if bit {
            out[i / 8] |= 1 << (i % 8);
        }
    }
    out
}

fn le_bytes<const N: usize>(values: impl Iterator<Item = [u8; N]>, rows: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows * N);
    for v in values {
        out.extend_from_slice(&v);
    }
    out.resize(rows * N, 0);
    out
}

impl Table {
    fn new(name: String) -> Table {
        Table { name, ..Default::default() }
    }

    pub fn columns(&self) -> &[(String, ColumnType)] {
        &self.columns
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    fn column_index(&mut self, id: u32, kind: ColumnType, names: &Names) -> usize {
        let id = id as usize;
        if id >= self.index.len() {
            self.index.resize(names.names.len().max(id + 1), u32::MAX);
        }
        if self.index[id] == u32::MAX {
            self.index[id] = self.columns.len() as u32;
            self.columns.push((names.names[id].to_string(), kind));
            self.data.push(Column::new(kind));
        }
        self.index[id] as usize
    }

    fn push(&mut self, row: &[(u32, Item<'_>)], names: &Names, row_id: &str, received_at_us: i64, discards: &mut Vec<Discard>) {
        let r = self.rows;
        self.rows += 1;
        for (id, item) in row {
            let value = item.val();
            let is_ts = names.is_timestamp[*id as usize];
            let Some(kind) = infer(value, is_ts) else { continue };
            // The layout's time columns are datetimes whatever the first value looks like.
            let kind = if is_ts { ColumnType::Datetime } else { kind };
            let idx = self.column_index(*id, kind, names);
            let declared = self.columns[idx].1;
            if let Item::Replaced(sent, _) = item {
                discards.push(self.discard(row_id, names, *id, *sent, REPLACED_TIMESTAMP.to_string(), received_at_us));
            }
            // A row naming a column twice (two keys with one column name, e.g. `userAgent` and
            // `user_agent`, or `context.ip` and a property `context_ip`) keeps the first value;
            // the other is recorded in `discards`, not dropped silently.
            if self.data[idx].len() > r {
                let reason = "another key of the event maps to this column and was stored".to_string();
                discards.push(self.discard(row_id, names, *id, value, reason, received_at_us));
                continue;
            }
            match coerce(value, declared, is_ts) {
                Ok(cell) => self.data[idx].set(r, cell),
                Err(widen_to_float) if widen_to_float => {
                    self.columns[idx].1 = ColumnType::Float;
                    self.data[idx].widen_to_float();
                    self.data[idx].set(r, Cell::Float(value.as_f64()));
                }
                Err(_) => {
                    let reason = format!("incompatible schema conversion from {} to {}", json_kind(value), declared.as_str());
                    discards.push(self.discard(row_id, names, *id, value, reason, received_at_us));
                }
            }
        }
    }

    fn discard(&self, row_id: &str, names: &Names, id: u32, value: Val<'_>, reason: String, received_at_us: i64) -> Discard {
        Discard::of(&self.name, row_id, &names.names[id as usize], value, reason, received_at_us)
    }

    /// Every column as Arrow buffers, moving the string bytes out rather than copying them:
    /// the table's string columns are empty afterwards.
    /// The rows in order of the datetime or integer column `name`, ascending, nulls last, ties
    /// in row order; `None` when the table has no such column or its rows are in that order.
    pub fn order_by(&self, name: &str) -> Option<Vec<u32>> {
        let i = self.columns.iter().position(|(c, _)| c == name)?;
        let col = &self.data[i];
        let Values::Int(v) = &col.values else { return None };
        let key = |r: usize| if col.is_valid(r) { (false, v[r]) } else { (true, 0) };
        if (1..self.rows).all(|r| key(r - 1) <= key(r)) {
            return None;
        }
        let mut order: Vec<u32> = (0..u32::try_from(self.rows).expect("fewer than 2^32 rows")).collect();
        order.sort_by_key(|&r| key(r as usize)); // stable
        Some(order)
    }

    /// Every column as Arrow buffers, rows in `order` (all of them, see [`Table::order_by`]) or
    /// as added, strings as `string_view`s into the column's bytes (taken from the table): the
    /// order costs one gather of fixed-width values and views, never a copy of string bytes.
    pub fn take_arrow_view_columns(&mut self, order: Option<&[u32]>) -> Vec<ArrowColumn> {
        let rows = self.rows;
        let row = |k: usize| order.map_or(k, |o| o[k] as usize);
        let fixed = |get: &dyn Fn(usize) -> Option<[u8; 8]>| le_bytes((0..rows).map(|k| get(row(k)).unwrap_or([0; 8])), rows);
        (0..self.data.len())
            .map(|i| {
                let col = &mut self.data[i];
                let all_valid = col.len() == rows && col.valid.iter().all(|v| *v);
                let validity = (!all_valid).then(|| bitmap((0..rows).map(|k| col.is_valid(row(k))), rows));
                match &mut col.values {
                    Values::Bool(v) => ArrowColumn {
                        validity,
                        values: bitmap((0..rows).map(|k| v.get(row(k)).copied().unwrap_or(false)), rows),
                        bytes: None,
                        view: false,
                    },
                    Values::Int(v) => ArrowColumn {
                        validity,
                        values: fixed(&|r| v.get(r).map(|x| x.to_le_bytes())),
                        bytes: None,
                        view: false,
                    },
                    Values::Float(v) => ArrowColumn {
                        validity,
                        values: fixed(&|r| v.get(r).map(|x| x.to_le_bytes())),
                        bytes: None,
                        view: false,
                    },
                    Values::Str { offsets, bytes } => match string_views(offsets, bytes, rows, row) {
                        Some(views) => ArrowColumn { validity, values: views, bytes: Some(std::mem::take(bytes)), view: true },
                        None => {
                            // Over 4 GiB of text in one column: 64-bit offsets, in `order`.
                            let mut data = Vec::with_capacity(bytes.len());
                            let mut offs = Vec::with_capacity((rows + 1) * 8);
                            offs.extend_from_slice(&0i64.to_le_bytes());
                            for k in 0..rows {
                                if let Some(w) = offsets.get(row(k)..row(k) + 2) {
                                    data.extend_from_slice(&bytes[w[0] as usize..w[1] as usize]);
                                }
                                offs.extend_from_slice(&(data.len() as i64).to_le_bytes());
                            }
                            *bytes = Vec::new();
                            ArrowColumn { validity, values: offs, bytes: Some(data), view: false }
                        }
                    },
                }
            })
            .collect()
    }

    /// The rows as newline-delimited JSON with one type per column (datetimes as integer
    /// microseconds since the epoch); null values are left out.
    pub fn to_ndjson(&self) -> Vec<u8> {
        use std::io::Write;
        let mut out = Vec::with_capacity(self.rows * 256);
        for r in 0..self.rows {
            out.push(b'{');
            let mut first = true;
            for ((name, _), col) in self.columns.iter().zip(&self.data) {
                if !col.is_valid(r) {
                    continue;
                }
                if !first {
                    out.push(b',');
                }
                first = false;
                write_json_str(&mut out, name);
                out.push(b':');
                match &col.values {
                    Values::Bool(v) => out.extend_from_slice(if v[r] { b"true" } else { b"false" }),
                    Values::Int(v) => write!(out, "{}", v[r]).expect("vec write"),
                    Values::Float(v) => json::write_f64(&mut out, v[r]),
                    Values::Str { .. } => write_json_str(&mut out, col.text(r)),
                }
            }
            out.extend_from_slice(b"}\n");
        }
        out
    }
}

fn write_json_str(out: &mut Vec<u8>, s: &str) {
    json::write_str(out, s);
}

fn json_kind(v: Val<'_>) -> &'static str {
    match v {
        Val::Null => "null",
        Val::Bool(_) => "boolean",
        Val::Float(_) => "float",
        Val::Int(_) | Val::UInt(_) => "int",
        Val::Str(_) | Val::Time(..) => "string",
        Val::Json(v) if v.is_array() => "array",
        Val::Json(_) => "object",
    }
}

fn infer(v: Val<'_>, is_timestamp_column: bool) -> Option<ColumnType> {
    Some(match v {
        Val::Null => return None,
        Val::Bool(_) => ColumnType::Boolean,
        Val::Int(_) => ColumnType::Int,
        Val::UInt(_) | Val::Float(_) => ColumnType::Float,
        Val::Str(_) | Val::Time(..) if is_timestamp_column => ColumnType::Datetime,
        Val::Str(_) | Val::Time(..) | Val::Json(_) => ColumnType::String,
    })
}

/// `Err(true)`: an integer column met a float (or an integer above i64::MAX) and should widen; `Err(false)`: not storable.
fn coerce(v: Val<'_>, declared: ColumnType, is_timestamp_column: bool) -> Result<Cell<'_>, bool> {
    match (declared, v) {
        (_, Val::Null) => Ok(Cell::Null),
        (ColumnType::Boolean, Val::Bool(b)) => Ok(Cell::Bool(b)),
        (ColumnType::Int, Val::Int(i)) => Ok(Cell::Int(i)),
        // Above i64::MAX is a float's range, whichever came first.
        (ColumnType::Int, Val::UInt(_) | Val::Float(_)) => Err(true),
        (ColumnType::Float, Val::Int(_) | Val::UInt(_) | Val::Float(_)) => Ok(Cell::Float(v.as_f64())),
        (ColumnType::Datetime, Val::Str(s)) if is_timestamp_column => parse_micros(s).map(Cell::Micros).ok_or(false),
        (ColumnType::Datetime, Val::Time(_, micros)) if is_timestamp_column => micros.map(Cell::Micros).ok_or(false),
        // A text column takes any scalar as its text, as RudderStack converts to string.
        (ColumnType::String, Val::Str(s) | Val::Time(s, _)) => Ok(Cell::Str(Cow::Borrowed(s))),
        (ColumnType::String, other) => Ok(Cell::Str(Cow::Owned(other.text()))),
        _ => Err(false),
    }
}

/// Collects the rows of a batch into tables.
#[derive(Debug, Default)]
pub struct Layout {
    tables: Vec<Table>,
    by_name: FxHashMap<String, usize>,
    names: Names,
    pub discards: Vec<Discard>,
}

impl Layout {
    pub fn tables(&self) -> &[Table] {
        &self.tables
    }

    pub fn tables_mut(&mut self) -> &mut [Table] {
        &mut self.tables
    }

    fn push_row(&mut self, table: &str, row: &[(u32, Item<'_>)], row_id: &str, received_at_us: i64) {
        let idx = match self.by_name.get(table) {
            Some(&i) => i,
            None => {
                self.tables.push(Table::new(table.to_string()));
                self.by_name.insert(table.to_string(), self.tables.len() - 1);
                self.tables.len() - 1
            }
        };
        self.tables[idx].push(row, &self.names, row_id, received_at_us, &mut self.discards);
    }

    /// Add one stamped event (it has `type`, `messageId`, `receivedAt`).
    /// `extra` are columns the pipeline adds (source, config version, lineage ...).
    pub fn add_event(&mut self, event: &Object, kind: EventType, extra: &[(&str, Value)]) {
        self.add_fields(&Fields::of(event), kind, extra, None);
    }

    /// [`Layout::add_event`] of an event whose tracking-plan `context` fields were kept apart
    /// (`govern::Lineage::plan_context`): laid out as if they were the last members of its
    /// `context`.
    pub fn add_event_with_plan_context(&mut self, event: &Object, kind: EventType, extra: &[(&str, Value)], plan_context: Option<&PlanContext<'_>>) {
        self.add_fields(&Fields::of(event), kind, extra, plan_context);
    }

    /// [`Layout::add_event_with_plan_context`] of an event whose fields are `f`.
    pub fn add_fields<'a>(&mut self, f: &Fields<'a>, kind: EventType, extra: &'a [(&str, Value)], plan_context: Option<&'a PlanContext<'_>>) {
        self.names.init();
        let id = id_text(f.message_id.map(Val::of));
        // Time fields: read once for every row they land in.
        let time = |v: &'a Value| match Val::of(v) {
            Val::Str(s) => Val::Time(s, parse_micros(s)),
            other => other,
        };
        let received_at = f.received_at.map(time);
        let received_at_us = match received_at {
            Some(Val::Time(_, Some(us))) => us,
            _ => 0,
        };
        let mut row: Row<'_> = Vec::with_capacity(48);
        row.push((ID, Item::Text(Cow::Owned(id.clone()))));
        if let Some(v) = f.anonymous_id.filter(|v| !v.is_null()) {
            row.push((ANONYMOUS_ID, id_value(v)));
        }
        if let Some(v) = f.user_id.filter(|v| !v.is_null()) {
            row.push((USER_ID, id_value(v)));
        }
        let sent_at = f.sent_at.map(time);
        let original_timestamp = f.original_timestamp.map(time);
        if let Some(v) = sent_at {
            row.push((SENT_AT, Item::V(v)));
        }
        if let Some(v) = f.timestamp.filter(|v| !v.is_null()) {
            let item = match time(v) {
                t @ Val::Time(_, Some(_)) => Item::V(t),
                // Unreadable: the event time the clock-skew rule gives in its place (as if the
                // event had none; `batch::event_time_us` agrees), the value sent in `discards`.
                unreadable => {
                    let micros = |t: Option<Val<'_>>| match t {
                        Some(Val::Time(_, us)) => us,
                        _ => None,
                    };
                    let derived = derive_timestamp(None, micros(original_timestamp), micros(sent_at), received_at_us);
                    Item::Replaced(unreadable, derived)
                }
            };
            row.push((TIMESTAMP, item));
        }
        if let Some(v) = received_at {
            row.push((RECEIVED_AT, Item::V(v)));
        }
        if let Some(v) = original_timestamp {
            row.push((ORIGINAL_TIMESTAMP, Item::V(v)));
        }
        if let Some(v) = f.channel {
            row.push((CHANNEL, Item::json(v)));
        }
        if let Some(ctx) = f.context.and_then(|c| c.as_object()) {
            self.names.flatten(&mut row, CONTEXT_ROOT, ctx);
        }
        // The table every event of this type lands in (a named track also fills its own table).
        let main_table = match kind {
            EventType::Track => "tracks",
            EventType::Identify => "identifies",
            EventType::Page => "pages",
            EventType::Screen => "screens",
            EventType::Group => "groups",
            EventType::Alias => "aliases",
        };
        self.not_an_object(main_table, "context", f.context, &id, received_at_us);
        if let Some(pc) = plan_context {
            let fields = [
                ("trackingPlanId", Some(Item::V(Val::Str(pc.id)))),
                ("trackingPlanVersion", Some(Item::V(Val::Int(pc.version)))),
                ("violationErrors", pc.violation_errors.as_deref().map(|text| Item::Text(Cow::Borrowed(text)))),
            ];
            for (key, item) in fields {
                if let Some(item) = item {
                    let child = self.names.child(CONTEXT_ROOT, key);
                    row.push((self.names.paths[child as usize].column, item));
                }
            }
        }
        for (k, v) in extra {
            row.push((self.names.intern(k), Item::json(v)));
        }

        match kind {
            EventType::Track => {
                let name = match f.event.map(Val::of) {
                    Some(v @ Val::Str(_)) => Item::V(v),
                    Some(other) => Item::Text(Cow::Owned(other.text())),
                    None => Item::Text(Cow::Borrowed("")),
                };
                let text = match name.val() {
                    Val::Str(s) => s.to_owned(),
                    _ => String::new(),
                };
                let table = self.names.event_table(&text).to_string();
                let has_name = !text.is_empty();
                row.push((EVENT, Item::Text(Cow::Owned(table.clone()))));
                row.push((EVENT_TEXT, name));
                self.push_row(main_table, &row, &id, received_at_us);
                if has_name {
                    self.not_an_object(&table, "properties", f.properties, &id, received_at_us);
                    self.add_object(&mut row, TRACK_ROOT, f.properties);
                    self.push_row(&table, &row, &id, received_at_us);
                } else if let Some(props) = f.properties.filter(|p| !p.is_null() && p.as_object().is_none_or(|o| !o.is_empty())) {
                    // Properties live in the event's own table, and a nameless event has none.
                    let reason = "a track event without a name has no event table for its properties".to_string();
                    self.discard_field("tracks", "properties", props, reason, &id, received_at_us);
                }
            }
            EventType::Identify => {
                let traits = f.traits.or_else(|| f.context.and_then(|c| c.get("traits")));
                self.not_an_object(main_table, "traits", traits, &id, received_at_us);
                self.add_object(&mut row, IDENTIFY_ROOT, traits);
                self.push_row(main_table, &row, &id, received_at_us);
                if let Some(user) = f.user_id.filter(|v| crate::govern::has_identifier(Some(v))) {
                    let mut user_row: Row<'_> = vec![(ID, id_value(user))];
                    self.add_object(&mut user_row, IDENTIFY_ROOT, traits);
                    user_row.push((RECEIVED_AT, Item::V(received_at.unwrap_or(Val::Null))));
                    for (k, v) in extra {
                        user_row.push((self.names.intern(k), Item::json(v)));
                    }
                    self.push_row("users", &user_row, &id, received_at_us);
                }
            }
            EventType::Page | EventType::Screen => {
                if let Some(name) = f.name {
                    row.push((NAME, Item::json(name)));
                }
                self.not_an_object(main_table, "properties", f.properties, &id, received_at_us);
                self.add_object(&mut row, NAMED_ROOT, f.properties);
                self.push_row(main_table, &row, &id, received_at_us);
            }
            EventType::Group => {
                if let Some(g) = f.group_id {
                    row.push((GROUP_ID, id_value(g)));
                }
                self.not_an_object(main_table, "traits", f.traits, &id, received_at_us);
                self.add_object(&mut row, GROUP_ROOT, f.traits);
                self.push_row(main_table, &row, &id, received_at_us);
            }
            EventType::Alias => {
                if let Some(p) = f.previous_id {
                    row.push((PREVIOUS_ID, id_value(p)));
                }
                self.push_row(main_table, &row, &id, received_at_us);
            }
        }
    }

    /// A `context`, `properties` or `traits` that is there but is no object (a string, an
    /// array, ...) has no members to lay out: it goes to `discards` rather than vanishing.
    fn not_an_object(&mut self, table: &str, field: &str, v: Option<&Value>, row_id: &str, received_at_us: i64) {
        let Some(v) = v.filter(|v| !v.is_null() && !v.is_object()) else { return };
        let kind = json_kind(Val::of(v));
        let article = if kind.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" };
        let reason = format!("{field} is {article} {kind}, not an object: none of it could be stored");
        self.discard_field(table, field, v, reason, row_id, received_at_us);
    }

    /// A whole `field` of an event (`context`, `properties`, `traits`) in `discards`.
    fn discard_field(&mut self, table: &str, field: &str, v: &Value, reason: String, row_id: &str, received_at_us: i64) {
        self.discards.push(Discard::of(table, row_id, field, Val::of(v), reason, received_at_us));
    }

    /// The members of `obj` flattened into `row`, guarded as the trie's `root` says.
    fn add_object<'a>(&mut self, row: &mut Row<'a>, root: u32, obj: Option<&'a Value>) {
        if let Some(map) = obj.and_then(|o| o.as_object()) {
            self.names.flatten(row, root, map);
        }
    }
}

/// An identifier as stored: [`id_text`], borrowed when it needs no change.
fn id_value(v: &Value) -> Item<'_> {
    match Val::of(v) {
        Val::Str(s) if s.trim().len() == s.len() => Item::V(Val::Str(s)),
        other => Item::Text(Cow::Owned(id_text(Some(other)))),
    }
}

fn id_text(v: Option<Val<'_>>) -> String {
    match v {
        Some(Val::Str(s)) => s.trim().to_string(),
        Some(Val::Null) | None => String::new(),
        Some(other) => other.text(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value as JsonValue};

    /// The event as the pipeline holds it: parsed from its text.
    fn obj(v: JsonValue) -> Object {
        json::parse(v.to_string().as_bytes()).unwrap().into_object().unwrap()
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

    /// The strings of an Arrow `string_view` column (views into `data`), `None` for nulls.
    fn view_strings(a: &ArrowColumn, rows: usize) -> Vec<Option<String>> {
        let data = a.bytes.as_deref().unwrap();
        (0..rows)
            .map(|r| {
                let valid = a.validity.as_ref().is_none_or(|v| v[r / 8] & (1 << (r % 8)) != 0);
                let view = &a.values[r * 16..r * 16 + 16];
                let len = u32::from_le_bytes(view[..4].try_into().unwrap()) as usize;
                let text = if len <= 12 {
                    &view[4..4 + len]
                } else {
                    assert_eq!(&view[8..12], &[0, 0, 0, 0], "buffer 0");
                    let start = u32::from_le_bytes(view[12..16].try_into().unwrap()) as usize;
                    assert_eq!(&view[4..8], &data[start..start + 4], "prefix");
                    &data[start..start + len]
                };
                valid.then(|| String::from_utf8(text.to_vec()).unwrap())
            })
            .collect()
    }

    #[test]
    fn tables_go_out_as_string_views_in_timestamp_order() {
        let mut layout = Layout::default();
        let times = [Some("2026-01-01T00:00:03Z"), None, Some("2026-01-01T00:00:01Z"), Some("2026-01-01T00:00:03Z"), Some("2026-01-01T00:00:02Z")];
        for (i, t) in times.iter().enumerate() {
            let mut ev = json!({"type":"page","messageId":format!("m{i}"),"receivedAt":"2026-01-01T00:00:09Z",
                "name": if i == 2 { JsonValue::Null } else { json!(format!("a page name longer than twelve bytes #{i}")) },
                "properties":{"short":format!("s{i}")}});
            if let Some(t) = t {
                ev["timestamp"] = json!(t);
            }
            layout.add_event(&obj(ev), EventType::Page, &[]);
        }
        let table = &mut layout.tables_mut()[0];
        let order = table.order_by("timestamp").expect("out of order");
        // Ascending, ties as received (m0 before m3), no timestamp last.
        assert_eq!(order, vec![2, 4, 0, 3, 1]);
        let names: Vec<String> = table.columns().iter().map(|(c, _)| c.clone()).collect();
        let rows = table.len();
        let columns = table.take_arrow_view_columns(Some(&order));
        let col = |name: &str| &columns[names.iter().position(|c| c == name).unwrap()];
        assert!(col("id").view && col("name").view && !col("timestamp").view);
        assert_eq!(view_strings(col("id"), rows), ["m2", "m4", "m0", "m3", "m1"].map(|s| Some(s.to_string())));
        assert_eq!(view_strings(col("short"), rows), ["s2", "s4", "s0", "s3", "s1"].map(|s| Some(s.to_string())));
        let long = view_strings(col("name"), rows);
        assert_eq!(long[0], None, "m2 has no name");
        assert_eq!(long[2].as_deref(), Some("a page name longer than twelve bytes #0"));
        let ts = &col("timestamp").values;
        let micros: Vec<i64> = ts.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect();
        assert_eq!(&micros[..4], &[1_767_225_601_000_000, 1_767_225_602_000_000, 1_767_225_603_000_000, 1_767_225_603_000_000]);
        assert_eq!(col("timestamp").validity.as_deref(), Some(&[0b0_1111u8][..]), "the last row has no timestamp");
    }

    #[test]
    fn rows_in_order_keep_their_order_and_need_no_permutation() {
        let mut layout = Layout::default();
        for i in 0..3 {
            layout.add_event(&obj(json!({"type":"page","messageId":format!("m{i}"),"receivedAt":"2026-01-01T00:00:09Z",
                "timestamp":format!("2026-01-01T00:00:0{i}Z")})), EventType::Page, &[]);
        }
        let table = &mut layout.tables_mut()[0];
        assert_eq!(table.order_by("timestamp"), None);
        assert_eq!(table.order_by("no such column"), None);
        let names: Vec<String> = table.columns().iter().map(|(c, _)| c.clone()).collect();
        let columns = table.take_arrow_view_columns(None);
        let id = &columns[names.iter().position(|c| c == "id").unwrap()];
        assert_eq!(view_strings(id, 3), ["m0", "m1", "m2"].map(|s| Some(s.to_string())));
    }

    #[test]
    fn track_lands_in_tracks_and_event_table() {
        let mut layout = Layout::default();
        let ev = obj(json!({"type":"track","event":"Order Completed","messageId":"m1","userId":"u1",
            "receivedAt":"2026-01-01T00:00:00.000Z","timestamp":"2026-01-01T00:00:00.000Z",
            "context":{"library":{"name":"analytics-python"},"ip":"1.2.3.4"},
            "properties":{"total":12.5,"currency":"EUR","id":"p-1","items":[{"sku":"a"}],"shipping":{"method":"dhl"}}}));
        layout.add_event(&ev, EventType::Track, &[("context_source_id", Value::from("web"))]);
        let names: Vec<&str> = layout.tables().iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, vec!["tracks", "order_completed"]);
        let cols: Vec<&str> = layout.tables()[1].columns().iter().map(|(c, _)| c.as_str()).collect();
        for c in ["id", "user_id", "received_at", "timestamp", "context_library_name", "context_ip", "context_source_id",
                  "event", "event_text", "total", "currency", "_id", "items", "shipping_method"] {
            assert!(cols.contains(&c), "missing {c} in {cols:?}");
        }
        assert!(!layout.tables()[0].columns().iter().any(|(c, _)| c == "total"));
        let text = String::from_utf8(layout.tables()[1].to_ndjson()).unwrap();
        let row: JsonValue = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(row["received_at"], 1_767_225_600_000_000i64);
        assert_eq!(row["items"], "[{\"sku\":\"a\"}]");
        assert_eq!(row["event"], "order_completed");
    }

    #[test]
    fn properties_named_like_pipeline_columns_keep_their_values() {
        let mut layout = Layout::default();
        let ev = obj(json!({"type":"track","event":"Payment Due","messageId":"m1","receivedAt":"2026-01-01T00:00:00.000Z",
            "properties":{"late":"yes","late_by_ms":5,"tidegate_pii_actions":"x","tidegate_config_version":"v9",
                          "canonical_id":"mine","tidegate_table":"t","late_fee":2}}));
        let extra = [("tidegate_config_version", Value::from("cfg")), ("late", Value::from(false)), ("late_by_ms", Value::new_null())];
        layout.add_event(&ev, EventType::Track, &extra);
        let row: JsonValue = serde_json::from_slice(&layout.tables()[1].to_ndjson()).unwrap();
        assert_eq!((&row["late"], &row["tidegate_config_version"]), (&json!(false), &json!("cfg")), "the pipeline's values");
        assert_eq!(row.get("late_by_ms"), None, "in time: no lateness, whatever a property says");
        for (column, value) in [("_late", json!("yes")), ("_late_by_ms", json!(5)), ("_tidegate_pii_actions", json!("x")),
                                ("_tidegate_config_version", json!("v9")), ("_canonical_id", json!("mine")),
                                ("_tidegate_table", json!("t")), ("late_fee", json!(2))] {
            assert_eq!(row[column], value, "{column} in {row}");
        }
    }

    #[test]
    fn two_keys_of_one_column_keep_the_first_and_discard_the_other() {
        let mut layout = Layout::default();
        let ev = obj(json!({"type":"track","event":"Bought","messageId":"m1","receivedAt":"2026-01-01T00:00:00.000Z",
            "context":{"userAgent":"first","user_agent":"second"},"properties":{"Total":1,"total":"2","context_user_agent":"third"}}));
        layout.add_event(&ev, EventType::Track, &[]);
        let row: JsonValue = serde_json::from_slice(&layout.tables()[1].to_ndjson()).unwrap();
        assert_eq!((&row["context_user_agent"], &row["total"]), (&json!("first"), &json!(1)));
        let found: Vec<(&str, &str, &str)> = layout.discards.iter()
            .map(|d| (d.table_name.as_str(), d.column_name.as_str(), d.column_value.as_str())).collect();
        assert_eq!(found, [("tracks", "context_user_agent", "second"), ("bought", "context_user_agent", "second"),
                           ("bought", "total", "2"), ("bought", "context_user_agent", "third")]);
        assert!(layout.discards.iter().all(|d| d.reason.starts_with("another key of the event maps to this column")));
    }

    #[test]
    fn context_properties_or_traits_that_are_no_object_go_to_discards() {
        let mut layout = Layout::default();
        let at = r#""receivedAt":"2026-01-01T00:00:00.000Z""#;
        for (ev, kind) in [
            (format!(r#"{{"type":"track","event":"Bought","messageId":"m1",{at},"properties":"a string","context":[1,2]}}"#), EventType::Track),
            (format!(r#"{{"type":"identify","userId":"u","messageId":"m2",{at},"traits":7}}"#), EventType::Identify),
            (format!(r#"{{"type":"page","messageId":"m3",{at},"properties":null,"context":{{"ip":"1.2.3.4"}}}}"#), EventType::Page),
        ] {
            let v: Value = sonic_rs::from_str(&ev).unwrap();
            layout.add_event(v.as_object().unwrap(), kind, &[]);
        }
        let found: Vec<(&str, &str, &str, &str)> = layout.discards.iter()
            .map(|d| (d.table_name.as_str(), d.row_id.as_str(), d.column_name.as_str(), d.column_value.as_str())).collect();
        assert_eq!(found, [("tracks", "m1", "context", "[1,2]"), ("bought", "m1", "properties", "a string"),
                           ("identifies", "m2", "traits", "7")], "null is no value; an object is laid out");
        assert_eq!(layout.discards[0].reason, "context is an array, not an object: none of it could be stored");
        assert_eq!(layout.discards[2].reason, "traits is an int, not an object: none of it could be stored");
        let bought = layout.tables().iter().find(|t| t.name == "bought").unwrap();
        assert_eq!(bought.len(), 1, "the event itself is stored");
    }

    #[test]
    fn a_nameless_track_keeps_its_properties_in_discards() {
        let mut layout = Layout::default();
        for (mid, extra) in [("m1", r#","properties":{"total":5}"#), ("m2", r#","event":"","properties":{"a":[1]}"#),
                             ("m3", r#","properties":{}"#), ("m4", "")] {
            let ev = format!(r#"{{"type":"track","messageId":"{mid}","receivedAt":"2026-01-01T00:00:00.000Z"{extra}}}"#);
            let v: Value = sonic_rs::from_str(&ev).unwrap();
            layout.add_event(v.as_object().unwrap(), EventType::Track, &[]);
        }
        let found: Vec<(&str, &str, &str)> = layout.discards.iter()
            .map(|d| (d.row_id.as_str(), d.column_name.as_str(), d.column_value.as_str())).collect();
        assert_eq!(found, [("m1", "properties", r#"{"total":5}"#), ("m2", "properties", r#"{"a":[1]}"#)], "nothing to keep for m3, m4");
        assert_eq!(layout.tables().len(), 1, "tracks only");
        assert_eq!(layout.tables()[0].len(), 4);
    }

    #[test]
    fn identify_fills_identifies_and_users() {
        let mut layout = Layout::default();
        let ev = obj(json!({"type":"identify","messageId":"m2","userId":"u1","anonymousId":"a1",
            "receivedAt":"2026-01-01T00:00:00.000Z","traits":{"email":"x@example.com","plan":"pro"}}));
        layout.add_event(&ev, EventType::Identify, &[]);
        let users = layout.tables().iter().find(|t| t.name == "users").unwrap();
        let row: JsonValue = serde_json::from_slice(&users.to_ndjson()).unwrap();
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
        let first: JsonValue = serde_json::from_str(text.lines().next().unwrap()).unwrap();
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
    fn internal_tables_are_reserved() {
        for (name, table) in [("Identity Map", "_identity_map"), ("Event Counts Hourly", "_event_counts_hourly"),
                              ("Discarded Events", "_discarded_events"), ("Accounts", "_accounts")] {
            assert_eq!(event_table(name), table);
        }
    }

    /// `name` is a column of pages and screens only, `event`/`event_text` of track tables,
    /// `group_id` of groups; the columns of every row are reserved everywhere.
    #[test]
    fn properties_and_traits_are_guarded_by_the_columns_of_their_table() {
        let mut layout = Layout::default();
        let at = r#""receivedAt":"2026-01-01T00:00:00.000Z""#;
        for (ev, kind) in [
            (format!(r#"{{"type":"identify","userId":"u","messageId":"m1",{at},"traits":{{"name":"Ana","user_id":"x"}}}}"#), EventType::Identify),
            (format!(r#"{{"type":"track","event":"Bought","userId":"u","messageId":"m2",{at},"properties":{{"name":"shoe","event":"e","group_id":"g"}}}}"#), EventType::Track),
            (format!(r#"{{"type":"page","name":"Home","userId":"u","messageId":"m3",{at},"properties":{{"name":"p","event":"e"}}}}"#), EventType::Page),
            (format!(r#"{{"type":"group","groupId":"g1","userId":"u","messageId":"m4",{at},"traits":{{"name":"Club","group_id":"x"}}}}"#), EventType::Group),
        ] {
            let v: Value = sonic_rs::from_str(&ev).unwrap();
            layout.add_event(v.as_object().unwrap(), kind, &[]);
        }
        let row = |table: &str| -> JsonValue {
            let t = layout.tables().iter().find(|t| t.name == table).unwrap();
            serde_json::from_slice(&t.to_ndjson()).unwrap()
        };
        let (users, identifies, bought, pages, groups) = (row("users"), row("identifies"), row("bought"), row("pages"), row("groups"));
        assert_eq!((&users["name"], &identifies["name"], &identifies["_user_id"]), (&json!("Ana"), &json!("Ana"), &json!("x")));
        assert_eq!((&bought["name"], &bought["_event"], &bought["event"], &bought["group_id"]), (&json!("shoe"), &json!("e"), &json!("bought"), &json!("g")));
        assert_eq!((&pages["name"], &pages["_name"], &pages["event"]), (&json!("Home"), &json!("p"), &json!("e")));
        assert_eq!((&groups["name"], &groups["group_id"], &groups["_group_id"]), (&json!("Club"), &json!("g1"), &json!("x")));
        assert!(layout.discards.is_empty());
    }

    #[test]
    fn an_integer_above_i64_widens_like_a_float_in_either_order() {
        for values in [[json!(5), json!(u64::MAX)], [json!(u64::MAX), json!(5)]] {
            let mut layout = Layout::default();
            for (i, v) in values.iter().enumerate() {
                layout.add_event(&obj(json!({"type":"page","messageId":format!("m{i}"),"userId":"u","properties":{"n":v}})), EventType::Page, &[]);
            }
            assert!(layout.discards.is_empty(), "{:?}", layout.discards);
            assert_eq!(layout.tables()[0].columns().iter().find(|(c, _)| c == "n").unwrap().1, ColumnType::Float);
        }
    }

    #[test]
    fn an_unreadable_timestamp_is_derived_and_kept_in_discards() {
        let mut layout = Layout::default();
        let ev = obj(json!({"type":"track","event":"Bought","messageId":"m","userId":"u","receivedAt":"2026-01-01T00:00:10.000Z",
            "sentAt":"2026-01-01T00:00:05.000Z","originalTimestamp":"2026-01-01T00:00:01.000Z","timestamp":"2026-01-01T00:00:00+0100"}));
        layout.add_event(&ev, EventType::Track, &[]);
        for table in layout.tables() {
            let row: JsonValue = serde_json::from_slice(&table.to_ndjson()).unwrap();
            assert_eq!(row["timestamp"], 1_767_225_606_000_000i64, "receivedAt - (sentAt - originalTimestamp)");
        }
        let found: Vec<(&str, &str, &str)> = layout.discards.iter()
            .map(|d| (d.table_name.as_str(), d.column_name.as_str(), d.column_value.as_str())).collect();
        assert_eq!(found, [("tracks", "timestamp", "2026-01-01T00:00:00+0100"), ("bought", "timestamp", "2026-01-01T00:00:00+0100")]);
        assert_eq!(layout.discards[0].reason, REPLACED_TIMESTAMP);
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
