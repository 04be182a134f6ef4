//! RFC 3339 timestamps as Segment events carry them, and the clock-skew rule.

use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// Parse an RFC 3339 / ISO 8601 timestamp into microseconds since the epoch.
pub fn parse_micros(s: &str) -> Option<i64> {
    // Nearly every timestamp is `YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z` as SDKs and the collector write
    // it: parsed by hand; anything else (offsets, leap seconds, other forms) goes to `time`.
    if let Some(us) = parse_utc_fast(s.as_bytes()) {
        return Some(us);
    }
    parse_micros_slow(s)
}

fn parse_micros_slow(s: &str) -> Option<i64> {
    let dt = OffsetDateTime::parse(s, &Rfc3339).ok()?;
    i64::try_from(dt.unix_timestamp_nanos() / 1_000).ok()
}

#[inline]
fn digits2(b: &[u8], i: usize) -> Option<u32> {
    let (h, l) = (b[i].wrapping_sub(b'0'), b[i + 1].wrapping_sub(b'0'));
    (h < 10 && l < 10).then_some(u32::from(h) * 10 + u32::from(l))
}

/// The common UTC form only, years 1970..=9999 (non-negative micros, so truncating the
/// nanoseconds agrees with `time`); `None` means "not this form", never "invalid".
fn parse_utc_fast(b: &[u8]) -> Option<i64> {
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' || b[b.len() - 1] != b'Z' {
        return None;
    }
    let year = digits2(b, 0)? * 100 + digits2(b, 2)?;
    let (month, day) = (digits2(b, 5)?, digits2(b, 8)?);
    let (hour, minute, second) = (digits2(b, 11)?, digits2(b, 14)?, digits2(b, 17)?);
    if year < 1970 || !(1..=12).contains(&month) || day == 0 || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days_in_month = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if day > days_in_month {
        return None;
    }
    let mut nanos: u32 = 0;
    let rest = &b[19..b.len() - 1];
    if !rest.is_empty() {
        let frac = rest.strip_prefix(b".")?;
        if frac.is_empty() || frac.len() > 9 {
            return None;
        }
        for &c in frac {
            let d = c.wrapping_sub(b'0');
            if d >= 10 {
                return None;
            }
            nanos = nanos * 10 + u32::from(d);
        }
        nanos *= 10u32.pow(9 - frac.len() as u32);
    }
    // Days since the epoch of a proleptic Gregorian date (H. Hinnant's days_from_civil).
    let (y, m, d) = (i64::from(year) - i64::from(month <= 2), i64::from(month), i64::from(day));
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second);
    Some(secs * 1_000_000 + i64::from(nanos / 1000))
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

    /// The hand-written fast path agrees with `time` wherever it answers.
    #[test]
    fn fast_path_agrees_with_time() {
        let mut cases: Vec<String> = vec![
            "2026-11-26T05:30:44.123Z".into(), "1970-01-01T00:00:00Z".into(), "1970-01-01T00:00:00.000001Z".into(),
            "2000-02-29T23:59:59.999999999Z".into(), "2100-02-29T00:00:00Z".into(), "2024-02-29T12:00:00.5Z".into(),
            "9999-12-31T23:59:59.9999999Z".into(), "2026-04-31T00:00:00Z".into(), "2026-00-10T00:00:00Z".into(),
            "2026-01-01T24:00:00Z".into(), "2026-01-01T00:60:00Z".into(), "2026-06-30T23:59:60Z".into(),
            "2026-01-01T00:00:00.Z".into(), "2026-01-01T00:00:00.1234567890Z".into(), "2026-01-01t00:00:00z".into(),
            "1969-12-31T23:59:59.5Z".into(), "2026-01-01T00:00:00+00:00".into(), "2026-01-01 00:00:00Z".into(),
            "2026-1-01T00:00:00Z".into(), "+2026-01-01T00:00:00Z".into(), "2026-01-01T00:00:00.12a4Z".into(),
        ];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let f = |shift: u32, m: u64| (x >> shift) % m;
            let frac = match f(0, 4) {
                0 => String::new(),
                1 => format!(".{:03}", f(8, 1000)),
                2 => format!(".{:06}", f(8, 1_000_000)),
                _ => format!(".{:09}", f(8, 1_000_000_000)),
            };
            cases.push(format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{frac}Z",
                1900 + f(40, 8200), f(50, 13), f(20, 32), f(30, 25), f(36, 61), f(44, 61)
            ));
        }
        for c in &cases {
            if let Some(fast) = parse_utc_fast(c.as_bytes()) {
                assert_eq!(Some(fast), parse_micros_slow(c), "{c}");
            }
            assert_eq!(parse_micros(c), parse_micros_slow(c).or(parse_utc_fast(c.as_bytes())), "{c}");
        }
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
