//! The `format` values tracking plans use, checked by hand-written parsers (no regex, no
//! allocation) to the grammar of the RFC each names.

use std::net::{Ipv4Addr, Ipv6Addr};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    DateTime,
    Email,
    Uri,
    Uuid,
}

impl Format {
    pub(crate) fn from_name(name: &str) -> Option<Format> {
        match name {
            "date-time" => Some(Format::DateTime),
            "email" => Some(Format::Email),
            "uri" => Some(Format::Uri),
            "uuid" => Some(Format::Uuid),
            _ => None,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Format::DateTime => "date-time",
            Format::Email => "email",
            Format::Uri => "uri",
            Format::Uuid => "uuid",
        }
    }

    pub(crate) fn is_valid(self, s: &str) -> bool {
        match self {
            Format::DateTime => is_date_time(s),
            Format::Email => is_email(s),
            Format::Uri => is_uri(s),
            Format::Uuid => is_uuid(s),
        }
    }
}

fn digits(b: &[u8]) -> Option<u32> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0')))
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// RFC 3339 `date-time`, including a leap second, which is only possible at 23:59:60 UTC.
fn is_date_time(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
        return false;
    }
    let (Some(year), Some(month), Some(day)) =
        (digits(&b[0..4]), digits(&b[5..7]), digits(&b[8..10]))
    else {
        return false;
    };
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return false;
    }
    if b[13] != b':' || b[16] != b':' {
        return false;
    }
    let (Some(hour), Some(minute), Some(second)) =
        (digits(&b[11..13]), digits(&b[14..16]), digits(&b[17..19]))
    else {
        return false;
    };
    if hour > 23 || minute > 59 || second > 60 {
        return false;
    }
    let mut rest = &b[19..];
    if rest.first() == Some(&b'.') {
        let n = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return false;
        }
        rest = &rest[1 + n..];
    }
    let offset_minutes: i64 = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let (Some(oh), Some(om)) = (digits(&[*h1, *h2]), digits(&[*m1, *m2])) else {
                return false;
            };
            if oh > 23 || om > 59 {
                return false;
            }
            let m = i64::from(oh * 60 + om);
            if *sign == b'+' {
                m
            } else {
                -m
            }
        }
        _ => return false,
    };
    if second == 60 {
        let utc = (i64::from(hour * 60 + minute) - offset_minutes).rem_euclid(24 * 60);
        return utc == 23 * 60 + 59;
    }
    true
}

fn is_atext(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+/=?^_`{|}~-".contains(&c)
}

/// RFC 1034 host name: dot-separated labels of letters, digits and inner hyphens.
pub(crate) fn is_hostname(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            let l = label.as_bytes();
            !l.is_empty()
                && l.len() <= 63
                && l.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
                && l[0] != b'-'
                && l[l.len() - 1] != b'-'
        })
}

/// RFC 5321 mailbox with a dot-atom local part and a host name or address-literal domain.
fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.rsplit_once('@') else {
        return false;
    };
    let dot_atom = !local.is_empty()
        && local.len() <= 64
        && local
            .split('.')
            .all(|atom| !atom.is_empty() && atom.bytes().all(is_atext));
    if !dot_atom {
        return false;
    }
    if let Some(literal) = domain.strip_prefix('[').and_then(|d| d.strip_suffix(']')) {
        return match literal.strip_prefix("IPv6:") {
            Some(v6) => v6.parse::<Ipv6Addr>().is_ok(),
            None => literal.parse::<Ipv4Addr>().is_ok(),
        };
    }
    is_hostname(domain)
}

fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')
}

fn is_sub_delim(c: u8) -> bool {
    matches!(
        c,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
    )
}

/// Every byte is `allowed` or part of a well-formed `%XX` escape.
fn all_uri_chars(s: &[u8], allowed: impl Fn(u8) -> bool) -> bool {
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            if i + 2 >= s.len() || !s[i + 1].is_ascii_hexdigit() || !s[i + 2].is_ascii_hexdigit() {
                return false;
            }
            i += 3;
        } else if allowed(s[i]) {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

fn is_pchar(c: u8) -> bool {
    is_unreserved(c) || is_sub_delim(c) || c == b':' || c == b'@'
}

/// RFC 3986 absolute `URI`: a scheme is required, so relative references are rejected.
fn is_uri(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once(':') else {
        return false;
    };
    let sb = scheme.as_bytes();
    if sb.is_empty()
        || !sb[0].is_ascii_alphabetic()
        || !sb
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
    {
        return false;
    }
    let (rest, fragment) = match rest.split_once('#') {
        Some((r, f)) => (r, Some(f)),
        None => (rest, None),
    };
    let (hier, query) = match rest.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (rest, None),
    };
    let query_ok = |part: Option<&str>| {
        part.is_none_or(|p| all_uri_chars(p.as_bytes(), |c| is_pchar(c) || c == b'/' || c == b'?'))
    };
    if !query_ok(query) || !query_ok(fragment) {
        return false;
    }
    let path = match hier.strip_prefix("//") {
        Some(after) => {
            let end = after.find('/').unwrap_or(after.len());
            if !is_authority(&after[..end]) {
                return false;
            }
            &after[end..]
        }
        None => hier,
    };
    all_uri_chars(path.as_bytes(), |c| is_pchar(c) || c == b'/')
}

fn is_authority(authority: &str) -> bool {
    let host_port = match authority.split_once('@') {
        Some((userinfo, host_port)) => {
            if !all_uri_chars(userinfo.as_bytes(), |c| {
                is_unreserved(c) || is_sub_delim(c) || c == b':'
            }) {
                return false;
            }
            host_port
        }
        None => authority,
    };
    let (host, port) = if let Some(literal) = host_port.strip_prefix('[') {
        let Some((inside, after)) = literal.split_once(']') else {
            return false;
        };
        let ok = inside.parse::<Ipv6Addr>().is_ok()
            || (inside.starts_with(['v', 'V'])
                && inside.contains('.')
                && inside
                    .bytes()
                    .all(|c| is_unreserved(c) || is_sub_delim(c) || c == b':'));
        if !ok {
            return false;
        }
        match after {
            "" => ("", None),
            p => match p.strip_prefix(':') {
                Some(port) => ("", Some(port)),
                None => return false,
            },
        }
    } else {
        match host_port.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host_port, None),
        }
    };
    port.is_none_or(|p| p.bytes().all(|c| c.is_ascii_digit()))
        && all_uri_chars(host.as_bytes(), |c| is_unreserved(c) || is_sub_delim(c))
}

/// RFC 4122 textual form: 8-4-4-4-12 hex digits.
fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_time() {
        for ok in [
            "2026-11-26T05:32:00Z",
            "2026-11-26t05:32:00.123456z",
            "2024-02-29T00:00:00+05:30",
            "1998-12-31T15:59:60.123-08:00",
        ] {
            assert!(is_date_time(ok), "{ok}");
        }
        for bad in [
            "2026-11-26",
            "2026-11-26 05:32:00Z",
            "2023-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-11-26T24:00:00Z",
            "2026-11-26T05:32:00",
            "2026-11-26T05:32:00.Z",
            "2026-11-26T05:32:00+0530",
            "1998-12-31T23:58:60Z",
        ] {
            assert!(!is_date_time(bad), "{bad}");
        }
    }

    #[test]
    fn email() {
        for ok in [
            "a@example.com",
            "first.last+tag@sub.example.co.uk",
            "x@localhost",
            "a@[127.0.0.1]",
            "a@[IPv6:::1]",
        ] {
            assert!(is_email(ok), "{ok}");
        }
        for bad in [
            "",
            "a",
            "@example.com",
            "a@",
            "a..b@example.com",
            "a.@example.com",
            "a@-x.com",
            "a b@example.com",
            "a@exa_mple.com",
        ] {
            assert!(!is_email(bad), "{bad}");
        }
    }

    #[test]
    fn uri() {
        for ok in [
            "https://example.com/a?b=c#d",
            "mailto:a@example.com",
            "urn:isbn:0451450523",
            "http://[::1]:8080/",
            "http://u:p@h:80",
        ] {
            assert!(is_uri(ok), "{ok}");
        }
        for bad in [
            "/relative",
            "example.com",
            "http://a b",
            "http://h:8x/",
            "1http://x",
            "http://x/%zz",
            "http://x/%4",
        ] {
            assert!(!is_uri(bad), "{bad}");
        }
    }

    #[test]
    fn uuid() {
        assert!(is_uuid("123E4567-e89b-12d3-a456-426614174000"));
        assert!(!is_uuid("123e4567e89b12d3a456426614174000"));
        assert!(!is_uuid("123e4567-e89b-12d3-a456-42661417400g"));
    }
}
