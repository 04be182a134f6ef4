//! The raw archive's rows: each message's events as received, with the two fields the archive
//! is laid out by (`messageId`, `receivedAt`), in one pass per batch.
//!
//! The events are split out of their message without being parsed into a document (sonic-rs
//! skips over each element), and only the top level of each event is walked for the two fields,
//! so an archive row costs a fraction of governing the event.

use sonic_rs::{JsonType, JsonValueTrait};

use crate::{json, timefmt};

/// Separator the archive frame is never built with inside a row: a raw `\x1e` in a message
/// that is not JSON is written as its escape, which keeps row text aligned with the counts.
const SEPARATOR: u8 = 0x1e;

/// A column of optional strings laid out as Arrow's `large_string`: `rows + 1` offsets into one
/// byte buffer, and which rows hold a value. Handed to Python as buffers, so a batch's rows never
/// become a Python object each.
#[derive(Debug, PartialEq)]
pub struct StrColumn {
    pub offsets: Vec<i64>,
    pub bytes: Vec<u8>,
    pub valid: Vec<bool>,
}

impl Default for StrColumn {
    fn default() -> Self {
        StrColumn { offsets: vec![0], bytes: Vec::new(), valid: Vec::new() }
    }
}

impl StrColumn {
    fn push(&mut self, value: Option<&str>) {
        if let Some(v) = value {
            self.bytes.extend_from_slice(v.as_bytes());
        }
        self.offsets.push(self.bytes.len() as i64);
        self.valid.push(value.is_some());
    }

    pub fn len(&self) -> usize {
        self.valid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.valid.is_empty()
    }

    /// Row `i`'s value.
    pub fn get(&self, i: usize) -> Option<&str> {
        let (a, b) = (self.offsets[i] as usize, self.offsets[i + 1] as usize);
        // Only whole `&str`s are pushed, so every span is valid UTF-8.
        self.valid[i].then(|| std::str::from_utf8(&self.bytes[a..b]).expect("pushed as str"))
    }
}

/// The archive rows of a batch of messages, in order.
#[derive(Debug, Default, PartialEq)]
pub struct ArchiveRows {
    /// Each event's text as received (invalid UTF-8 replaced, as the archive stores text).
    pub events: StrColumn,
    /// Events per message (0 for an empty array).
    pub counts: Vec<u32>,
    /// Each event's top-level `messageId`: a string as is, a number or boolean as its JSON text.
    pub message_ids: StrColumn,
    /// Each event's top-level `receivedAt` (µs since the epoch) when it is an RFC 3339 time.
    pub received_us: Vec<Option<i64>>,
}

/// The raw elements of a JSON array, or `None` when `bytes` is not one well-formed array.
fn elements(bytes: &[u8]) -> Option<Vec<&str>> {
    let trimmed = bytes.trim_ascii();
    if trimmed.first() != Some(&b'[') {
        return None;
    }
    // Skipping recurses in sonic-rs: a document nested too deep is one opaque event instead.
    json::check_depth(trimmed).ok()?;
    let base = trimmed.as_ptr() as usize;
    let mut spans = Vec::new();
    for element in sonic_rs::to_array_iter(trimmed) {
        let element = element.ok()?;
        let raw = element.as_raw_str().as_bytes();
        // The elements are slices of the input (checked, so a copy could never be misread).
        let start = (raw.as_ptr() as usize).checked_sub(base)?;
        (start + raw.len() <= trimmed.len()).then_some(())?;
        spans.push((start, start + raw.len()));
    }
    // Only the closing bracket may follow the last element (a trailing comma is not JSON).
    let end = spans.last().map_or(1, |&(_, end)| end);
    if trimmed[end..].trim_ascii_start() != b"]" {
        return None;
    }
    // Each element is valid JSON, hence valid UTF-8.
    spans.into_iter().map(|(a, b)| std::str::from_utf8(&trimmed[a..b]).ok()).collect()
}

/// `messageId` and `receivedAt` of one event's top level (the last of duplicate keys wins).
fn fields(event: &str) -> (Option<String>, Option<i64>) {
    let (mut id, mut received) = (None, None);
    if !event.starts_with('{') {
        return (id, received);
    }
    for pair in sonic_rs::to_object_iter(event) {
        let Ok((key, value)) = pair else { return (None, None) };
        match key.as_ref() {
            "messageId" => {
                id = match value.get_type() {
                    JsonType::String => sonic_rs::from_str::<String>(value.as_raw_str()).ok(),
                    JsonType::Number | JsonType::Boolean => Some(value.as_raw_str().to_owned()),
                    _ => None,
                }
            }
            "receivedAt" => {
                received = match value.get_type() {
                    JsonType::String => sonic_rs::from_str::<String>(value.as_raw_str())
                        .ok()
                        .and_then(|s| timefmt::parse_micros(&s)),
                    _ => None,
                }
            }
            _ => {}
        }
    }
    (id, received)
}

/// Split each message into its events (an array's elements, else the whole message as one
/// event, JSON or not) and read their archive fields.
pub fn archive_rows<M: AsRef<[u8]>>(messages: &[M]) -> ArchiveRows {
    let mut rows = ArchiveRows::default();
    let total: usize = messages.iter().map(|m| m.as_ref().len()).sum();
    rows.events.bytes.reserve(total);
    for message in messages {
        let bytes = message.as_ref();
        match elements(bytes) {
            Some(events) => {
                rows.counts.push(events.len() as u32);
                for event in events {
                    let (id, received) = fields(event);
                    rows.events.push(Some(event));
                    rows.message_ids.push(id.as_deref());
                    rows.received_us.push(received);
                }
            }
            None => {
                rows.counts.push(1);
                let text = String::from_utf8_lossy(bytes);
                let (id, received) = fields(text.trim_ascii());
                if text.as_bytes().contains(&SEPARATOR) {
                    rows.events.push(Some(&text.replace(SEPARATOR as char, "\\u001e")));
                } else {
                    rows.events.push(Some(&text));
                }
                rows.message_ids.push(id.as_deref());
                rows.received_us.push(received);
            }
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(rows: &ArchiveRows) -> Vec<Option<&str>> {
        (0..rows.message_ids.len()).map(|i| rows.message_ids.get(i)).collect()
    }

    #[test]
    fn string_columns_hold_nulls_and_empty_strings_apart() {
        let mut col = StrColumn::default();
        col.push(Some("ab"));
        col.push(None);
        col.push(Some(""));
        assert_eq!(col.offsets, vec![0, 2, 2, 2]);
        assert_eq!((col.get(0), col.get(1), col.get(2)), (Some("ab"), None, Some("")));
    }

    #[test]
    fn splits_arrays_and_reads_the_two_fields() {
        let rows = archive_rows(&[
            br#" [{"messageId":"m1","receivedAt":"2026-11-26T05:30:44.000Z","n":[1,{"messageId":"x"}]}, {"receivedAt":"2026-11-26T05:30:44+01:00","messageId":7}] "#.as_slice(),
            b"[]",
        ]);
        assert_eq!(rows.counts, vec![2, 0]);
        assert_eq!(rows.events.get(0), Some(r#"{"messageId":"m1","receivedAt":"2026-11-26T05:30:44.000Z","n":[1,{"messageId":"x"}]}"#));
        assert_eq!(rows.events.get(1), Some(r#"{"receivedAt":"2026-11-26T05:30:44+01:00","messageId":7}"#));
        assert_eq!(ids(&rows), vec![Some("m1"), Some("7")]);
        assert_eq!(rows.received_us, vec![Some(1_795_671_044_000_000), Some(1_795_667_444_000_000)]);
    }

    #[test]
    fn escaped_strings_and_duplicate_keys() {
        let rows = archive_rows(&[br#"[{"messageId":"a\"b","messageId":"c\u00e9"}]"#]);
        assert_eq!(ids(&rows), vec![Some("cé")]);
        assert_eq!(rows.received_us, vec![None]);
    }

    #[test]
    fn anything_else_is_one_event_as_received() {
        let deep = format!("[{}{}]", "[".repeat(10_000), "]".repeat(10_000));
        let rows = archive_rows(&[
            br#"{"messageId":"single"}"#.as_slice(),
            b"[1, 2",
            b"[1] trailing",
            b"not json \x1e \xff",
            deep.as_bytes(),
        ]);
        assert_eq!(rows.counts, vec![1, 1, 1, 1, 1]);
        assert_eq!(rows.events.get(0), Some(r#"{"messageId":"single"}"#));
        assert_eq!(rows.events.get(1), Some("[1, 2"));
        assert_eq!(rows.events.get(2), Some("[1] trailing"));
        assert_eq!(rows.events.get(3), Some("not json \\u001e \u{fffd}"));
        assert_eq!(rows.events.get(4).map(str::len), Some(deep.len()));
        assert_eq!(rows.events.len(), 5);
        assert_eq!(ids(&rows), vec![Some("single"), None, None, None, None]);
    }
}
