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

/// The archive rows of a batch of messages, in order.
#[derive(Debug, Default, PartialEq)]
pub struct ArchiveRows {
    /// Each event's text as received (invalid UTF-8 replaced, as the archive stores text).
    pub events: Vec<String>,
    /// Events per message (0 for an empty array).
    pub counts: Vec<u32>,
    /// Each event's top-level `messageId`: a string as is, a number or boolean as its JSON text.
    pub message_ids: Vec<Option<String>>,
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
    for message in messages {
        let bytes = message.as_ref();
        match elements(bytes) {
            Some(events) => {
                rows.counts.push(events.len() as u32);
                for event in events {
                    let (id, received) = fields(event);
                    rows.events.push(event.to_owned());
                    rows.message_ids.push(id);
                    rows.received_us.push(received);
                }
            }
            None => {
                rows.counts.push(1);
                let text = String::from_utf8_lossy(bytes);
                let (id, received) = fields(text.trim_ascii());
                let text = if text.as_bytes().contains(&SEPARATOR) {
                    text.replace(SEPARATOR as char, "\\u001e")
                } else {
                    text.into_owned()
                };
                rows.events.push(text);
                rows.message_ids.push(id);
                rows.received_us.push(received);
            }
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_arrays_and_reads_the_two_fields() {
        let rows = archive_rows(&[
            br#" [{"messageId":"m1","receivedAt":"2026-11-26T05:30:44.000Z","n":[1,{"messageId":"x"}]}, {"receivedAt":"2026-11-26T05:30:44+01:00","messageId":7}] "#.as_slice(),
            b"[]",
        ]);
        assert_eq!(rows.counts, vec![2, 0]);
        assert_eq!(rows.events[0], r#"{"messageId":"m1","receivedAt":"2026-11-26T05:30:44.000Z","n":[1,{"messageId":"x"}]}"#);
        assert_eq!(rows.message_ids, vec![Some("m1".to_owned()), Some("7".to_owned())]);
        assert_eq!(rows.received_us, vec![Some(1_795_671_044_000_000), Some(1_795_667_444_000_000)]);
    }

    #[test]
    fn escaped_strings_and_duplicate_keys() {
        let rows = archive_rows(&[br#"[{"messageId":"a\"b","messageId":"c\u00e9"}]"#]);
        assert_eq!(rows.message_ids, vec![Some("cé".to_owned())]);
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
        assert_eq!(rows.events[0], r#"{"messageId":"single"}"#);
        assert_eq!(rows.message_ids[0].as_deref(), Some("single"));
        assert_eq!(rows.events[1], "[1, 2");
        assert_eq!(rows.events[2], "[1] trailing");
        assert_eq!(rows.events[3], "not json \\u001e \u{fffd}");
        assert_eq!(rows.events[4].len(), deep.len());
        assert_eq!(rows.message_ids[1..], [None, None, None, None]);
    }
}
