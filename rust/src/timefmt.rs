//! RFC 3339 timestamps as Segment events carry them, and the clock-skew rule.

use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// Parse an RFC 3339 / ISO 8601 timestamp into microseconds since the epoch.
pub fn parse_micros(s: &str) -> Option<i64> {
    let dt = OffsetDateTime::parse(s, &Rfc3339).ok()?;
    i64::try_from(dt.unix_timestamp_nanos() / 1_000).ok()
}

/// Format microseconds since the epoch as `2026-01-02T03:04:05.678Z` (millisecond precision, UTC),
/// the form Segment and RudderStack stamp.
pub fn format_micros(micros: i64) -> String {
    let nanos = i128::from(micros) * 1_000;
    let dt = OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        .to_offset(UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        dt.year(),
        u8::from(dt.month()),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second(),
        dt.millisecond()
    )
}

/// The event time the warehouse should use, given what the client sent.
///
/// Follows RudderStack (`enhanceWithTimeFields`) and the Segment spec: a client-supplied
/// `timestamp` is kept; otherwise the device time is corrected for clock skew as
/// `receivedAt - (sentAt - originalTimestamp)`; with no `sentAt` the device time is trusted;
/// with neither, the receive time is used.
pub fn derive_timestamp(
    timestamp: Option<i64>,
    original: Option<i64>,
    sent_at: Option<i64>,
    received_at: i64,
) -> i64 {
    match (timestamp, original, sent_at) {
        (Some(ts), _, _) => ts,
        (None, Some(orig), Some(sent)) => received_at - (sent - orig),
        (None, Some(orig), None) => orig,
        (None, None, _) => received_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_millisecond_precision() {
        let us = parse_micros("2026-11-26T05:30:44.123Z").unwrap();
        assert_eq!(format_micros(us), "2026-11-26T05:30:44.123Z");
    }

    #[test]
    fn parses_offsets_into_utc() {
        let a = parse_micros("2026-11-26T06:30:44+01:00").unwrap();
        let b = parse_micros("2026-11-26T05:30:44Z").unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(parse_micros("yesterday"), None);
        assert_eq!(parse_micros("2026-13-01T00:00:00Z"), None);
    }

    #[test]
    fn clock_skew_correction() {
        // Device clock 10 s fast: sent 10 s "in the future", event happened 2 s before sending.
        let received = 1_000_000_000;
        let sent = received + 10_000_000;
        let original = sent - 2_000_000;
        assert_eq!(derive_timestamp(None, Some(original), Some(sent), received), received - 2_000_000);
        assert_eq!(derive_timestamp(Some(5), Some(original), Some(sent), received), 5);
        assert_eq!(derive_timestamp(None, Some(7), None, received), 7);
        assert_eq!(derive_timestamp(None, None, Some(sent), received), received);
    }
}
