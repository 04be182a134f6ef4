//! Free-text PII detectors, written by hand over bytes: one cheap statistics pass decides which
//! detectors can possibly match, and most strings in an event (ids, names, URLs, timestamps) are
//! rejected without any detector running. Nothing here allocates except pushing a match, and
//! the decoded copy of a string holding `%40` or `%2B` (a URL's query), which is scanned with
//! those decoded.
//!
//! Boundaries are ASCII-only: a match may not touch a letter or digit, nor a `-`, `_` or `.`
//! that joins it to one (`ORD-415-555-0123`, `1.2.3.4.5`, `v10.4.22.1` are not PII). Emails are
//! the exception: their local parts and domains may hold letters of any script.

use std::net::Ipv6Addr;

use super::{Match, PiiClass};

/// What the surrounding event says about a string, beyond its own text.
#[derive(Clone, Copy, Default)]
pub(crate) struct TextContext {
    /// The string sits under a key such as `version` or `build`: dotted quads there are
    /// versions, not IPv4 addresses.
    pub(crate) version_key: bool,
}

#[derive(Default)]
struct Stats {
    digits: usize,
    letters: usize,
    colons: usize,
    dots: usize,
    at: bool,
    plus: bool,
    percent: bool,
}

/// Per byte, the counts it adds to `Stats` in 9-bit fields: digits, letters, colons, dots, `@`,
/// `+`, `%`. Each of `stats`' two sums covers at most 511 bytes, so no field carries into the
/// next.
static STAT_FIELDS: [u64; 256] = {
    let mut t = [0u64; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = if b.is_ascii_digit() {
            1
        } else if b.is_ascii_alphabetic() {
            1 << 9
        } else if b == b':' {
            1 << 18
        } else if b == b'.' {
            1 << 27
        } else if b == b'@' {
            1 << 36
        } else if b == b'+' {
            1 << 45
        } else if b == b'%' {
            1 << 54
        } else {
            0
        };
        c += 1;
    }
    t
};

/// One table load and one add per byte (two sums, to overlap the adds).
fn stats(b: &[u8]) -> Stats {
    let mut s = Stats::default();
    for chunk in b.chunks(1022) {
        let (mut x, mut y) = (0u64, 0u64);
        let mut pairs = chunk.chunks_exact(2);
        for p in &mut pairs {
            x += STAT_FIELDS[usize::from(p[0])];
            y += STAT_FIELDS[usize::from(p[1])];
        }
        if let [c] = pairs.remainder() {
            x += STAT_FIELDS[usize::from(*c)];
        }
        let field = |k: u32| ((x >> (9 * k)) & 0x1ff) as usize + ((y >> (9 * k)) & 0x1ff) as usize;
        s.digits += field(0);
        s.letters += field(1);
        s.colons += field(2);
        s.dots += field(3);
        s.at |= field(4) != 0;
        s.plus |= field(5) != 0;
        s.percent |= field(6) != 0;
    }
    s
}

#[inline]
pub(crate) fn scan(s: &str, ctx: TextContext, out: &mut Vec<Match>) {
    let b = s.as_bytes();
    // The shortest PII we detect is `::1`.
    if b.len() < 3 {
        return;
    }
    // Below six bytes only an IPv6 address can be found (an email takes six, `a@b.cd`; every
    // other class more), and it needs two colons.
    if b.len() < 6 {
        if b.iter().filter(|c| **c == b':').count() >= 2 {
            let first = out.len();
            ipv6(b, out);
            if out.len() - first > 1 {
                resolve_overlaps(out, first);
            }
        }
        return;
    }
    // Ids and times, a third of an event's strings, are whole tokens no detector can match.
    if is_uuid(b) || is_timestamp(b) {
        return;
    }
    let st = stats(b);
    if st.percent && has_encoded_at_or_plus(b) {
        scan_percent_decoded(s, ctx, out);
        return;
    }
    detect_all(s, &st, ctx, out);
}

/// Runs the detectors `st` says can match, then keeps the non-overlapping matches.
fn detect_all(s: &str, st: &Stats, ctx: TextContext, out: &mut Vec<Match>) {
    let b = s.as_bytes();
    let first = out.len();
    if st.at {
        emails(s, out);
    }
    if st.colons >= 2 {
        ipv6(b, out);
    }
    if st.plus && st.digits >= 8 {
        international_phones(b, out);
    }
    let ipv4 = st.dots >= 3 && !ctx.version_key;
    let iban = st.letters >= 2 && st.digits >= 8;
    if st.digits >= 9 || ipv4 || iban {
        digit_runs(b, st, ipv4, iban, out);
    }
    if out.len() - first > 1 {
        resolve_overlaps(out, first);
    }
}

// ---------------------------------------------------------------- percent-encoding

/// The one-byte characters percent-encoded in URLs (query strings, referrers) that email and
/// phone detection key on: `%40` is `@`, `%2B` is `+`.
fn encoded_at(b: &[u8], i: usize) -> Option<u8> {
    match b.get(i..i + 3)? {
        [b'%', b'4', b'0'] => Some(b'@'),
        [b'%', b'2', b'B' | b'b'] => Some(b'+'),
        _ => None,
    }
}

fn has_encoded_at_or_plus(b: &[u8]) -> bool {
    b.iter()
        .enumerate()
        .any(|(i, c)| *c == b'%' && encoded_at(b, i).is_some())
}

/// Scans `s` with `%40` and `%2B` decoded, so `?email=jane%40example.com&phone=%2B14155550123`
/// is found; spans are mapped back onto `s` and cover the encoded text. Other escapes are left
/// as they are: an address rarely needs them, and leaving them keeps the mapping simple.
fn scan_percent_decoded(s: &str, ctx: TextContext, out: &mut Vec<Match>) {
    let b = s.as_bytes();
    let mut decoded = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match encoded_at(b, i) {
            Some(c) => {
                decoded.push(c);
                i += 3;
            }
            None => {
                decoded.push(b[i]);
                i += 1;
            }
        }
    }
    // ASCII triples became ASCII bytes: still UTF-8.
    let decoded = std::str::from_utf8(&decoded).expect("decoding %40 and %2B keeps UTF-8");
    let first = out.len();
    detect_all(decoded, &stats(decoded.as_bytes()), ctx, out);
    // The matches are in text order, so one walk over `s` maps every offset.
    let (mut from, mut to) = (0, 0);
    let mut original = |d: usize| {
        while to < d {
            from += if encoded_at(b, from).is_some() { 3 } else { 1 };
            to += 1;
        }
        from
    };
    for m in &mut out[first..] {
        m.start = original(m.start);
        m.end = original(m.end);
    }
}

/// `8-4-4-4-12` hex digits (a UUID, any version).
fn is_uuid(b: &[u8]) -> bool {
    let Ok(b) = <&[u8; 36]>::try_from(b) else {
        return false;
    };
    if [b[8], b[13], b[18], b[23]] != [b'-'; 4] {
        return false;
    }
    // The rest hex digits: with the four dashes above, 36 bytes of hex digits and dashes holding
    // four dashes. Counted without a branch per byte (a third of an event's strings are ids).
    let (mut other, mut dashes) = (0u8, 0u8);
    for &c in b {
        other |= u8::from(!c.is_ascii_hexdigit() && c != b'-');
        dashes += u8::from(c == b'-');
    }
    other == 0 && dashes == 4
}

/// An RFC 3339 date-time as SDKs send them: `YYYY-MM-DDTHH:MM:SS`, an optional fraction, then
/// `Z` or a `±HH:MM` offset.
fn is_timestamp(b: &[u8]) -> bool {
    // `dddd-dd-ddTdd:dd:dd` (or a space for the `T`): the separators first, which most other
    // strings fail at once, then the digits without a branch per byte.
    let Some(head) = b.first_chunk::<19>().filter(|_| b.len() >= 20) else {
        return false;
    };
    if [head[4], head[7], head[13], head[16]] != [b'-', b'-', b':', b':']
        || !matches!(head[10], b'T' | b' ')
    {
        return false;
    }
    const DIGITS: [usize; 14] = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18];
    if DIGITS
        .iter()
        .fold(0u8, |bad, &i| bad | u8::from(!is_digit(head[i])))
        != 0
    {
        return false;
    }
    let mut rest = &b[19..];
    if let [b'.', tail @ ..] = rest {
        let digits = tail.iter().take_while(|c| is_digit(**c)).count();
        if digits == 0 {
            return false;
        }
        rest = &tail[digits..];
    }
    match rest {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => [h1, h2, m1, m2].iter().all(|c| is_digit(**c)),
        _ => false,
    }
}

/// Keeps non-overlapping matches: the longest wins, then the earliest, then the class listed
/// first in `PiiClass::ALL`; the survivors are left in text order.
fn resolve_overlaps(out: &mut Vec<Match>, first: usize) {
    let new = &mut out[first..];
    new.sort_unstable_by(|a, b| {
        (b.end - b.start)
            .cmp(&(a.end - a.start))
            .then(a.start.cmp(&b.start))
            .then((a.class as u8).cmp(&(b.class as u8)))
    });
    let mut kept = 0;
    for i in 0..new.len() {
        let m = new[i];
        if new[..kept]
            .iter()
            .all(|k| m.end <= k.start || m.start >= k.end)
        {
            new[kept] = m;
            kept += 1;
        }
    }
    out.truncate(first + kept);
    out[first..].sort_unstable_by_key(|m| m.start);
}

#[inline]
fn is_digit(c: u8) -> bool {
    c.is_ascii_digit()
}

#[inline]
fn is_alnum(c: u8) -> bool {
    c.is_ascii_alphanumeric()
}

#[inline]
fn is_joiner(c: u8) -> bool {
    matches!(c, b'-' | b'_' | b'.')
}

/// Nothing attaches the candidate starting at `i` to a preceding token.
fn left_ok(b: &[u8], i: usize) -> bool {
    i == 0 || !(is_alnum(b[i - 1]) || (is_joiner(b[i - 1]) && i >= 2 && is_alnum(b[i - 2])))
}

/// Nothing attaches the candidate ending before `end` to a following token.
fn right_ok(b: &[u8], end: usize) -> bool {
    end >= b.len()
        || !(is_alnum(b[end]) || (is_joiner(b[end]) && end + 1 < b.len() && is_alnum(b[end + 1])))
}

fn run_end(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && is_digit(b[i]) {
        i += 1;
    }
    i
}

/// Case-insensitive search for any of `needles` (lowercase) in `hay`.
fn contains_any_ci(hay: &[u8], needles: &[&[u8]]) -> bool {
    needles
        .iter()
        .any(|n| hay.len() >= n.len() && hay.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n)))
}

fn before(b: &[u8], i: usize, n: usize) -> &[u8] {
    &b[i.saturating_sub(n)..i]
}

fn push(out: &mut Vec<Match>, class: PiiClass, start: usize, end: usize) {
    out.push(Match { class, start, end });
}

/// Every detector keyed on a run of digits, tried at each run's first digit.
fn digit_runs(b: &[u8], st: &Stats, ipv4: bool, iban: bool, out: &mut Vec<Match>) {
    let cards = st.digits >= 13;
    let nine = st.digits >= 9;
    let mut i = 0;
    while i < b.len() {
        if !is_digit(b[i]) {
            i += 1;
            continue;
        }
        let end = run_end(b, i);
        if iban && i >= 2 && b[i - 2].is_ascii_alphabetic() && b[i - 1].is_ascii_alphabetic() {
            if let Some(e) = iban_at(b, i - 2) {
                push(out, PiiClass::Iban, i - 2, e);
                i = e;
                continue;
            }
        }
        // Every other detector starts its match at this run (or at a `(` just before it, which
        // leaves this side of the run free as well), so a run joined to what precedes it
        // (`v10`, `a-12`, the inner groups of a UUID or a timestamp) starts nothing.
        if !left_ok(b, i) {
            i = end;
            continue;
        }
        if nine {
            if cards {
                if let Some(e) = card_at(b, i, end) {
                    push(out, PiiClass::CreditCard, i, e);
                    i = e;
                    continue;
                }
            }
            if let Some(e) = ssn_at(b, i, end) {
                push(out, PiiClass::Ssn, i, e);
                i = e;
                continue;
            }
            if let Some((s, e)) = nanp_at(b, i, end) {
                push(out, PiiClass::Phone, s, e);
                i = e;
                continue;
            }
        }
        if ipv4 {
            if let Some(e) = ipv4_at(b, i) {
                push(out, PiiClass::Ipv4, i, e);
                i = e;
                continue;
            }
        }
        i = end;
    }
}

// ---------------------------------------------------------------- payment cards

fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (k, d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(*d);
        if k % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

/// Issuer prefixes and the lengths each network issues: cuts Luhn's one-in-ten acceptance of
/// arbitrary numbers to the ranges that are really cards.
fn issued(d: &[u8]) -> bool {
    let n = d.len();
    let prefix = |k: usize| d[..k].iter().fold(0u32, |acc, x| acc * 10 + u32::from(*x));
    match d[0] {
        4 => matches!(n, 13 | 16 | 19),
        2 => n == 16 && (2221..=2720).contains(&prefix(4)),
        5 => match d[1] {
            1..=5 => n == 16,
            0 | 6..=9 => n >= 13, // Maestro
            _ => false,
        },
        6 => n >= 13, // Discover, UnionPay, Maestro
        3 => match prefix(2) {
            34 | 37 => n == 15,
            36 | 38 | 39 => n >= 14,
            30 => n >= 14 && prefix(3) <= 305,
            35 => n >= 16 && (3528..=3589).contains(&prefix(4)),
            _ => false,
        },
        _ => false,
    }
}

/// GS1 check digit (EAN-13, GTIN-14): weights 3 and 1 alternating from the right.
fn gtin(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(k, d)| u32::from(*d) * if k % 2 == 1 { 3 } else { 1 })
        .sum();
    sum.is_multiple_of(10)
}

/// Thirteen- and fourteen-digit numbers that carry a valid GS1 check digit are product barcodes
/// (EAN-13 prefixes 40–69 overlap Visa and Maestro): calling them cards would flag every
/// `gtin` in an e-commerce feed, at the cost of one 13/14-digit card in ten.
pub(crate) fn is_card_number(digits: &[u8]) -> bool {
    (13..=19).contains(&digits.len())
        && issued(digits)
        && luhn(digits)
        && !(digits.len() <= 14 && gtin(digits))
}

/// A card written as one run of 13–19 digits, or as groups (first of four digits, then groups
/// of three to six) joined by one consistent space, dash or dot.
fn card_at(b: &[u8], i: usize, first_end: usize) -> Option<usize> {
    if !left_ok(b, i) {
        return None;
    }
    let mut digits = [0u8; 19];
    let take = |digits: &mut [u8; 19], from: usize, to: usize, n: usize| {
        for (k, &c) in b[from..to].iter().enumerate() {
            digits[n + k] = c - b'0';
        }
        n + (to - from)
    };
    let first_len = first_end - i;
    if (13..=19).contains(&first_len) {
        let n = take(&mut digits, i, first_end, 0);
        return (right_ok(b, first_end) && is_card_number(&digits[..n])).then_some(first_end);
    }
    if !(first_len == 4 && first_end + 1 < b.len() && matches!(b[first_end], b' ' | b'-' | b'.')) {
        return None;
    }
    let sep = b[first_end];
    if i >= 2 && b[i - 1] == sep && is_digit(b[i - 2]) {
        // The middle of a longer grouped number.
        return None;
    }
    // Group ends (position after the group, digits so far); a short last group (`6212 3456
    // 7890 1234 56`) is tried first, then the number without it (`4111 ... 1111 12/27`).
    let mut ends = [(0usize, 0usize); 6];
    let mut groups = 1;
    ends[0] = (first_end, take(&mut digits, i, first_end, 0));
    let mut pos = first_end;
    while pos + 1 < b.len() && b[pos] == sep && is_digit(b[pos + 1]) && groups < ends.len() {
        let group_end = run_end(b, pos + 1);
        let len = group_end - pos - 1;
        let n = ends[groups - 1].1;
        if n + len > 19 {
            // More digit groups than any card has: a tracking or account number.
            return None;
        }
        if len > 6 {
            break;
        }
        ends[groups] = (group_end, take(&mut digits, pos + 1, group_end, n));
        groups += 1;
        pos = group_end;
        if len < 3 {
            break;
        }
    }
    ends[..groups]
        .iter()
        .rev()
        .find(|(end, n)| right_ok(b, *end) && is_card_number(&digits[..*n]))
        .map(|(end, _)| *end)
}

// ---------------------------------------------------------------- US SSN

fn ssn_parts_valid(area: u32, group: u32, serial: u32) -> bool {
    area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

fn number(b: &[u8]) -> u32 {
    b.iter().fold(0, |acc, c| acc * 10 + u32::from(c - b'0'))
}

const SSN_CONTEXT: &[&[u8]] = &[b"ssn", b"social security", b"ss#", b"ss #"];

/// `AAA-GG-SSSS` anywhere; `AAA GG SSSS` and bare nine digits only after an SSN keyword, as
/// both are common shapes for other numbers.
fn ssn_at(b: &[u8], i: usize, end: usize) -> Option<usize> {
    if !left_ok(b, i) {
        return None;
    }
    let in_context = || contains_any_ci(before(b, i, 32), SSN_CONTEXT);
    if end - i == 9 {
        let ok = right_ok(b, end)
            && ssn_parts_valid(
                number(&b[i..i + 3]),
                number(&b[i + 3..i + 5]),
                number(&b[i + 5..i + 9]),
            )
            && in_context();
        return ok.then_some(end);
    }
    if end - i != 3 || end + 8 > b.len() {
        return None;
    }
    let sep = b[end];
    if !(sep == b'-' || (sep == b' ' && in_context())) {
        return None;
    }
    let g = &b[end + 1..end + 3];
    let s = &b[end + 4..end + 8];
    let shape =
        g.iter().all(|c| is_digit(*c)) && b[end + 3] == sep && s.iter().all(|c| is_digit(*c));
    (shape && right_ok(b, end + 8) && ssn_parts_valid(number(&b[i..end]), number(g), number(s)))
        .then_some(end + 8)
}

// ---------------------------------------------------------------- phones

/// North American numbers in their written forms: `(415) 555-0123`, `415-555-0123`,
/// `415.555.0123`, `415 555 0123`, optionally after `1-`/`1 `/`1.`. A bare ten-digit run is
/// never taken: order numbers and Unix timestamps look exactly like it.
fn nanp_at(b: &[u8], i: usize, end: usize) -> Option<(usize, usize)> {
    // Country prefix "1" followed by a separator: the number proper starts after it.
    if end - i == 1
        && b[i] == b'1'
        && left_ok(b, i)
        && end + 1 < b.len()
        && matches!(b[end], b'-' | b' ' | b'.')
    {
        let sep = b[end];
        let rest = end + 1;
        let parenthesised = b[rest] == b'(' && sep == b' ';
        let area_start = if parenthesised { rest + 1 } else { rest };
        if area_start < b.len() && is_digit(b[area_start]) {
            let area_end = run_end(b, area_start);
            let forced = if parenthesised { None } else { Some(sep) };
            return nanp_rest(b, area_start, area_end, parenthesised, forced).map(|e| (i, e));
        }
        return None;
    }
    let parenthesised = i >= 1 && b[i - 1] == b'(';
    let start = if parenthesised { i - 1 } else { i };
    if !left_ok(b, start) {
        return None;
    }
    nanp_rest(b, i, end, parenthesised, None).map(|e| (start, e))
}

fn nanp_rest(
    b: &[u8],
    area: usize,
    area_end: usize,
    parenthesised: bool,
    forced_sep: Option<u8>,
) -> Option<usize> {
    if area_end - area != 3 || !(b'2'..=b'9').contains(&b[area]) {
        return None;
    }
    let mut pos = area_end;
    let sep1 = if parenthesised {
        if b.get(pos) != Some(&b')') {
            return None;
        }
        pos += 1;
        if b.get(pos) == Some(&b' ') {
            pos += 1;
        }
        None
    } else {
        let s = *b.get(pos)?;
        if !matches!(s, b'-' | b'.' | b' ') || forced_sep.is_some_and(|f| f != s) {
            return None;
        }
        pos += 1;
        Some(s)
    };
    let exchange_end = run_end(b, pos);
    if exchange_end - pos != 3 || !(b'2'..=b'9').contains(&b[pos]) {
        return None;
    }
    let s2 = *b.get(exchange_end)?;
    let sep_ok = match sep1 {
        Some(s) => s == s2,
        None => matches!(s2, b'-' | b'.' | b' '),
    };
    if !sep_ok {
        return None;
    }
    let line = exchange_end + 1;
    let line_end = run_end(b, line);
    (line_end - line == 4 && right_ok(b, line_end)).then_some(line_end)
}

/// `+<country code> ...`: E.164's 8–15 digits, in groups joined by single spaces, dashes or
/// dots, with an optional parenthesised group (`+1 (415) 555-0123`, `+49 (0)30 1234567`,
/// `+1(415)555-0123`). Two groups joined by a dot are a signed decimal (`+40.712776`), not a
/// phone.
fn international_phones(b: &[u8], out: &mut Vec<Match>) {
    let mut p = 0;
    while p + 1 < b.len() {
        if b[p] != b'+' || !(b'1'..=b'9').contains(&b[p + 1]) || !left_ok(b, p) {
            p += 1;
            continue;
        }
        let mut pos = p + 1;
        let mut digits = 0;
        let mut groups = 0;
        let mut dotted = false;
        let mut open = false;
        let mut last_digit_end = pos;
        while pos < b.len() {
            let c = b[pos];
            let prev = b[pos - 1];
            let next = b.get(pos + 1).copied().unwrap_or(0);
            if is_digit(c) {
                digits += 1;
                groups += usize::from(!is_digit(prev));
                pos += 1;
                last_digit_end = pos;
            } else if matches!(c, b' ' | b'-' | b'.')
                && (is_digit(next) || (next == b'(' && !open))
                && (is_digit(prev) || prev == b')')
            {
                dotted |= c == b'.';
                pos += 1;
            } else if c == b'('
                && !open
                && is_digit(next)
                // After a separator, or right after the country code.
                && (matches!(prev, b' ' | b'-' | b'.') || (pos - p - 1 == digits && digits <= 3))
            {
                open = true;
                pos += 1;
            } else if c == b')'
                && open
                && is_digit(prev)
                && (is_digit(next) || matches!(next, b' ' | b'-' | b'.'))
            {
                open = false;
                pos += 1;
            } else {
                break;
            }
            if digits > 15 {
                break;
            }
        }
        let end = last_digit_end;
        if (8..=15).contains(&digits) && !open && !(dotted && groups < 3) && right_ok(b, end) {
            push(out, PiiClass::Phone, p, end);
            p = end;
        } else {
            p += 1;
        }
    }
}

// ---------------------------------------------------------------- IPv4

const VERSION_CONTEXT: &[&[u8]] = &[b"version", b"build", b"release", b"firmware"];

fn ipv4_at(b: &[u8], i: usize) -> Option<usize> {
    if !left_ok(b, i) {
        return None;
    }
    let mut pos = i;
    for octet in 0..4 {
        if octet > 0 {
            if b.get(pos) != Some(&b'.') {
                return None;
            }
            pos += 1;
        }
        let end = run_end(b, pos);
        let len = end - pos;
        if len == 0 || len > 3 || (len > 1 && b[pos] == b'0') || number(&b[pos..end]) > 255 {
            return None;
        }
        pos = end;
    }
    (right_ok(b, pos) && !version_word_before(b, i)).then_some(pos)
}

/// One of `VERSION_CONTEXT` starts a word in the 16 bytes before `i` (`conversion from
/// 203.0.113.77` is an address; `appVersion 10.4.22.1` is a version).
fn version_word_before(b: &[u8], i: usize) -> bool {
    let from = i.saturating_sub(16);
    VERSION_CONTEXT.iter().any(|word| {
        i >= word.len()
            && (from..=i - word.len())
                .any(|p| b[p..p + word.len()].eq_ignore_ascii_case(word) && starts_segment(b, p))
    })
}

/// A word or an identifier segment starts at `p`: after a non-letter, at a camelCase hump
/// (`appVersion`), or at the last capital of an acronym before a lowercase letter (`OSVersion`).
pub(crate) fn starts_segment(b: &[u8], p: usize) -> bool {
    let Some(&prev) = p.checked_sub(1).map(|k| &b[k]) else {
        return true;
    };
    let cur = b[p];
    !prev.is_ascii_alphabetic()
        || (cur.is_ascii_uppercase() && prev.is_ascii_lowercase())
        || (cur.is_ascii_uppercase()
            && prev.is_ascii_uppercase()
            && b.get(p + 1).is_some_and(u8::is_ascii_lowercase))
}

/// A word or an identifier segment ends before `e`: at a non-letter, or where a lowercase letter
/// meets a capital (`versionName`).
pub(crate) fn ends_segment(b: &[u8], e: usize) -> bool {
    let Some(&next) = b.get(e) else {
        return true;
    };
    !next.is_ascii_alphabetic() || (next.is_ascii_uppercase() && b[e - 1].is_ascii_lowercase())
}

// ---------------------------------------------------------------- IPv6

fn is_ipv6_char(c: u8) -> bool {
    c.is_ascii_hexdigit() || c == b':' || c == b'.'
}

/// Candidates are maximal runs of hex digits, colons and dots standing alone as a token, with at
/// least two colons and one decimal digit (so `std::fs` or `dead::beef` are not addresses); the
/// standard library's parser then decides. A run that fails may be a label and its colon
/// before an address (`ip:2001:db8::1`, `decode:2001:db8::1`, where the label's tail is hex):
/// then the address is tried alone, after the run's first single colon.
fn ipv6(b: &[u8], out: &mut Vec<Match>) {
    let mut i = 0;
    // Only a run holding a colon can be an address: go from colon to colon, taking the whole
    // run around each (`i` is 0 or sits just after a run, on a byte that is not part of one).
    while let Some(colon) = b[i..].iter().position(|c| *c == b':') {
        let mut start = i + colon;
        while start > i && is_ipv6_char(b[start - 1]) {
            start -= 1;
        }
        let mut end = start;
        while end < b.len() && is_ipv6_char(b[end]) {
            end += 1;
        }
        i = end;
        if let Some(e) = ipv6_at(b, start, end) {
            push(out, PiiClass::Ipv6, start, e);
            continue;
        }
        let Some(label_colon) = b[start..end].iter().position(|c| *c == b':') else {
            continue;
        };
        let after = start + label_colon + 1;
        if b.get(after).is_some_and(|c| *c != b':') {
            if let Some(e) = ipv6_at(b, after, end) {
                push(out, PiiClass::Ipv6, after, e);
            }
        }
    }
}

/// The address in the run `b[start..end]`, standing alone as a token; returns its end.
fn ipv6_at(b: &[u8], start: usize, end: usize) -> Option<usize> {
    let run = &b[start..end];
    let colons = run.iter().filter(|c| **c == b':').count();
    let touches_word = |c: Option<&u8>| c.is_some_and(|c| is_alnum(*c) || *c == b'_');
    if colons < 2
        || !run.iter().any(|c| is_digit(*c))
        || touches_word(start.checked_sub(1).map(|k| &b[k]))
        || touches_word(b.get(end))
    {
        return None;
    }
    // A sentence or a label may end right after the address: `at 2001:db8::1.`,
    // `2001:db8::1: ok` (a lone trailing colon is never part of an address, `::` may be).
    let mut e = end;
    while e > start && b[e - 1] == b'.' {
        e -= 1;
    }
    if e - start >= 2 && b[e - 1] == b':' && b[e - 2] != b':' {
        e -= 1;
    }
    let text = std::str::from_utf8(&b[start..e]).ok()?;
    text.parse::<Ipv6Addr>().is_ok().then_some(e)
}

// ---------------------------------------------------------------- email

/// A letter or digit of any script (RFC 6531 addresses, IDN domains), or a combining mark,
/// which belongs to the letter before it (`u` + U+0308 is `ü`).
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric()
        || matches!(c, '\u{300}'..='\u{36f}' | '\u{1ab0}'..='\u{1aff}' | '\u{1dc0}'..='\u{1dff}' | '\u{20d0}'..='\u{20ff}' | '\u{fe20}'..='\u{fe2f}')
}

fn is_local_char(c: char) -> bool {
    is_word_char(c) || matches!(c, '.' | '_' | '%' | '+' | '-' | '\'')
}

fn is_domain_char(c: char) -> bool {
    is_word_char(c) || c == '-' || c == '.'
}

/// An address needs a dotted domain ending in an alphabetic TLD: `name@host` and
/// `pkg@1.2.3` are not addresses, nor are retina asset names like `logo@2x.png`. The local part
/// runs back over every letter before the `@`, so a match never starts inside a word (in text
/// without spaces, such as Chinese, it takes the words before the address with it).
fn emails(s: &str, out: &mut Vec<Match>) {
    let b = s.as_bytes();
    for at in 0..b.len() {
        if b[at] != b'@' || at == 0 {
            continue;
        }
        // Byte by byte over ASCII, char by char only from the first non-ASCII byte on.
        let mut start = at;
        while start > 0 && b[start - 1].is_ascii() && is_local_char(char::from(b[start - 1])) {
            start -= 1;
        }
        if start > 0 && !b[start - 1].is_ascii() {
            start = s[..start]
                .char_indices()
                .rev()
                .take_while(|(_, c)| is_local_char(*c))
                .last()
                .map_or(start, |(k, _)| k);
        }
        start += s[start..at]
            .char_indices()
            .find(|(_, c)| is_word_char(*c) || *c == '_')
            .map_or(at - start, |(k, _)| k);
        if start == at || b[at - 1] == b'.' {
            continue;
        }
        let mut end = at + 1;
        while end < b.len() && b[end].is_ascii() && is_domain_char(char::from(b[end])) {
            end += 1;
        }
        if end < b.len() && !b[end].is_ascii() {
            let rest = &s[end..];
            end += rest
                .char_indices()
                .find(|(_, c)| !is_domain_char(*c))
                .map_or(rest.len(), |(k, _)| k);
        }
        while end > at + 1 && matches!(b[end - 1], b'.' | b'-') {
            end -= 1;
        }
        let domain = &s[at + 1..end];
        if valid_domain(domain) && b.get(end) != Some(&b'@') {
            push(out, PiiClass::Email, start, end);
        }
    }
}

fn valid_domain(domain: &str) -> bool {
    let mut labels = domain.split('.');
    let Some(first) = labels.next() else {
        return false;
    };
    let retina =
        first.len() >= 2 && first.ends_with('x') && first[..first.len() - 1].bytes().all(is_digit);
    if retina {
        return false;
    }
    let mut count = 0;
    let mut last = first;
    for label in std::iter::once(first).chain(labels) {
        if label.is_empty() || label.len() > 63 || label.starts_with('-') || label.ends_with('-') {
            return false;
        }
        last = label;
        count += 1;
    }
    let tld_ok = (last.chars().nth(1).is_some() && last.chars().all(char::is_alphabetic))
        || (last.len() > 4 && last.as_bytes()[..4].eq_ignore_ascii_case(b"xn--"));
    count >= 2 && tld_ok
}

// ---------------------------------------------------------------- IBAN

/// IBAN lengths by country (SWIFT IBAN registry).
const IBAN_LENGTHS: &[(&[u8; 2], usize)] = &[
    (b"AD", 24),
    (b"AE", 23),
    (b"AL", 28),
    (b"AT", 20),
    (b"AZ", 28),
    (b"BA", 20),
    (b"BE", 16),
    (b"BG", 22),
    (b"BH", 22),
    (b"BI", 27),
    (b"BR", 29),
    (b"BY", 28),
    (b"CH", 21),
    (b"CR", 22),
    (b"CY", 28),
    (b"CZ", 24),
    (b"DE", 22),
    (b"DJ", 27),
    (b"DK", 18),
    (b"DO", 28),
    (b"EE", 20),
    (b"EG", 29),
    (b"ES", 24),
    (b"FI", 18),
    (b"FK", 18),
    (b"FO", 18),
    (b"FR", 27),
    (b"GB", 22),
    (b"GE", 22),
    (b"GI", 23),
    (b"GL", 18),
    (b"GR", 27),
    (b"GT", 28),
    (b"HR", 21),
    (b"HU", 28),
    (b"IE", 22),
    (b"IL", 23),
    (b"IQ", 23),
    (b"IS", 26),
    (b"IT", 27),
    (b"JO", 30),
    (b"KW", 30),
    (b"KZ", 20),
    (b"LB", 28),
    (b"LC", 32),
    (b"LI", 21),
    (b"LT", 20),
    (b"LU", 20),
    (b"LV", 21),
    (b"LY", 25),
    (b"MC", 27),
    (b"MD", 24),
    (b"ME", 22),
    (b"MK", 19),
    (b"MN", 20),
    (b"MR", 27),
    (b"MT", 31),
    (b"MU", 30),
    (b"NI", 28),
    (b"NL", 18),
    (b"NO", 15),
    (b"OM", 23),
    (b"PK", 24),
    (b"PL", 28),
    (b"PS", 29),
    (b"PT", 25),
    (b"QA", 29),
    (b"RO", 24),
    (b"RS", 22),
    (b"RU", 33),
    (b"SA", 24),
    (b"SC", 31),
    (b"SD", 18),
    (b"SE", 24),
    (b"SI", 19),
    (b"SK", 24),
    (b"SM", 27),
    (b"SO", 23),
    (b"ST", 25),
    (b"SV", 28),
    (b"TL", 23),
    (b"TN", 24),
    (b"TR", 26),
    (b"UA", 29),
    (b"VA", 22),
    (b"VG", 24),
    (b"XK", 20),
    (b"YE", 30),
];

fn iban_length(country: [u8; 2]) -> Option<usize> {
    IBAN_LENGTHS
        .iter()
        .find(|(c, _)| **c == country)
        .map(|(_, n)| *n)
}

/// Country code, two check digits and the BBAN, compact or printed in groups of four joined by
/// one consistent space or dash; the ISO 7064 mod-97 check must give 1.
fn iban_at(b: &[u8], i: usize) -> Option<usize> {
    let (c0, c1) = (b[i], b[i + 1]);
    if c0.is_ascii_uppercase() != c1.is_ascii_uppercase() || !left_ok(b, i) {
        return None;
    }
    let len = iban_length([c0.to_ascii_uppercase(), c1.to_ascii_uppercase()])?;
    if i + 4 > b.len() || !is_digit(b[i + 2]) || !is_digit(b[i + 3]) {
        return None;
    }
    let mut compact = [0u8; 34];
    let mut n = 0;
    let mut pos = i;
    let sep = match b.get(i + 4) {
        Some(b'-') => b'-',
        _ => b' ',
    };
    while n < len {
        let c = *b.get(pos)?;
        if is_alnum(c) {
            compact[n] = c.to_ascii_uppercase();
            n += 1;
        } else if !(c == sep && n.is_multiple_of(4) && b.get(pos + 1).is_some_and(|c| is_alnum(*c)))
        {
            return None;
        }
        pos += 1;
    }
    if !right_ok(b, pos) {
        return None;
    }
    let rotated = compact[4..len].iter().chain(&compact[..4]);
    let mut rem = 0u32;
    for &c in rotated {
        rem = if c.is_ascii_digit() {
            (rem * 10 + u32::from(c - b'0')) % 97
        } else {
            (rem * 100 + u32::from(c - b'A') + 10) % 97
        };
    }
    (rem == 1).then_some(pos)
}

#[cfg(test)]
mod tests {

    #[test]
    fn uuid_shape_is_exact() {
        let reference = |b: &[u8]| {
            b.len() == 36
                && b.iter().enumerate().all(|(i, &c)| {
                    if matches!(i, 8 | 13 | 18 | 23) {
                        c == b'-'
                    } else {
                        c.is_ascii_hexdigit()
                    }
                })
        };
        let id = *b"7F1C2A9E-0a1b-4b6e-9c1d-5e8f3a2b1c0d";
        assert!(is_uuid(&id));
        // Every byte replaced by every value: only hex digits (at a digit's place) keep it an id.
        for i in 0..id.len() {
            for c in 0..=255u8 {
                let mut b = id;
                b[i] = c;
                assert_eq!(is_uuid(&b), reference(&b), "{i} {c}");
            }
        }
        assert!(!is_uuid(&id[..35]) && !is_uuid(b""));
    }

    #[test]
    fn timestamp_shape_is_exact() {
        // The date-time part as a plain zip over its shape; the fraction and offset as is_timestamp.
        let head = |b: &[u8]| {
            const SHAPE: &[u8; 19] = b"dddd-dd-ddTdd:dd:dd";
            b.len() >= 20
                && b.iter().zip(SHAPE).all(|(&c, &s)| {
                    if s == b'd' {
                        c.is_ascii_digit()
                    } else {
                        c == s || (s == b'T' && c == b' ')
                    }
                })
        };
        for t in [
            &b"2026-11-26T05:32:00.123Z"[..],
            b"2026-11-26 05:32:00+01:00",
        ] {
            assert!(is_timestamp(t));
            for i in 0..19 {
                for c in 0..=255u8 {
                    let mut b = t.to_vec();
                    b[i] = c;
                    assert_eq!(is_timestamp(&b), head(&b), "{i} {c}");
                }
            }
        }
        assert!(!is_timestamp(b"2026-11-26T05:32:00"));
    }

    #[test]
    fn ids_and_times_are_skipped_whole_and_only_whole() {
        for s in [
            "7f1c2a9e-0a1b-4b6e-9c1d-5e8f3a2b1c0d",
            "2026-11-26T05:32:00.123Z",
            "2026-11-26T05:32:00Z",
            "2026-11-26 05:32:00.123456+01:00",
            "2026-11-26T05:32:00-05:30",
        ] {
            assert!(is_uuid(s.as_bytes()) || is_timestamp(s.as_bytes()), "{s}");
        }
        for s in [
            "7f1c2a9e-0a1b-4b6e-9c1d-5e8f3a2b1c0dx",
            "2026-11-26T05:32:00.Z",
            "2026-11-26T05:32:00",
            "2026-11-26T05:32:00+0100",
            "call 2026-11-26T05:32:00Z",
            "4111-1111-1111-1111-111111111111x",
        ] {
            assert!(!is_uuid(s.as_bytes()) && !is_timestamp(s.as_bytes()), "{s}");
        }
        // Text around a time or an id is still scanned.
        let mut out = Vec::new();
        scan(
            "2026-11-26T05:32:00Z mail bob@example.com",
            TextContext::default(),
            &mut out,
        );
        assert_eq!(out.len(), 1);
    }

    use super::*;

    fn found(s: &str) -> Vec<(PiiClass, &str)> {
        let mut out = Vec::new();
        scan(s, TextContext::default(), &mut out);
        out.iter().map(|m| (m.class, &s[m.start..m.end])).collect()
    }

    fn one(s: &str, class: PiiClass, text: &str) {
        assert_eq!(found(s), vec![(class, text)], "in {s:?}");
    }

    fn none(s: &str) {
        assert_eq!(found(s), vec![], "in {s:?}");
    }

    #[test]
    fn stats_count_every_byte() {
        // Every byte value, in runs long enough to cross the table sums' chunk boundary.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for len in [0, 1, 2, 3, 17, 255, 1021, 1022, 1023, 2045, 5000] {
            let b: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    (seed >> 24) as u8
                })
                .collect();
            for b in [
                &b[..],
                &vec![b'7'; len][..],
                &vec![b'@'; len][..],
                &vec![b'%'; len][..],
            ] {
                let st = stats(b);
                let count = |f: fn(&u8) -> bool| b.iter().filter(|c| f(c)).count();
                assert_eq!(st.digits, count(u8::is_ascii_digit), "{len}");
                assert_eq!(st.letters, count(u8::is_ascii_alphabetic), "{len}");
                assert_eq!(st.colons, count(|c| *c == b':'), "{len}");
                assert_eq!(st.dots, count(|c| *c == b'.'), "{len}");
                assert_eq!(st.at, b.contains(&b'@'), "{len}");
                assert_eq!(st.plus, b.contains(&b'+'), "{len}");
                assert_eq!(st.percent, b.contains(&b'%'), "{len}");
            }
        }
    }

    #[test]
    fn short_strings() {
        one("::1", PiiClass::Ipv6, "::1");
        one("(::1)", PiiClass::Ipv6, "::1");
        one("a@b.cd", PiiClass::Email, "a@b.cd");
        none("a@b.c");
        none("1:2:3");
    }

    #[test]
    fn email() {
        one(
            "jane.doe+tag@example.co.uk",
            PiiClass::Email,
            "jane.doe+tag@example.co.uk",
        );
        one(
            "write to <O'Brien@Mail.Example.com>.",
            PiiClass::Email,
            "O'Brien@Mail.Example.com",
        );
        one(
            "mailto:ops@xn--80ak6aa92e.xn--p1ai",
            PiiClass::Email,
            "ops@xn--80ak6aa92e.xn--p1ai",
        );
        for s in [
            "root@localhost",
            "pkg@1.2.3",
            "logo@2x.png",
            "@handle",
            "a@b",
            "see https://medium.com/@user",
            "x@y.c0m",
        ] {
            none(s);
        }
    }

    #[test]
    fn cards() {
        one("4111111111111111", PiiClass::CreditCard, "4111111111111111");
        one(
            "card 4111 1111 1111 1111 exp 12/27",
            PiiClass::CreditCard,
            "4111 1111 1111 1111",
        );
        one(
            "amex 3782-822463-10005.",
            PiiClass::CreditCard,
            "3782-822463-10005",
        );
        one("5555555555554444", PiiClass::CreditCard, "5555555555554444");
        none("9400 4111 1111 1111 1111 12");
        one(
            "6212 3456 7890 1234 57",
            PiiClass::CreditCard,
            "6212 3456 7890 1234 57",
        );
        // An EAN-13 barcode whose digits also pass Luhn with a Visa prefix.
        none("4006381333924");
        one("2223003122003222", PiiClass::CreditCard, "2223003122003222");
        // Luhn fails / no issuer / joined to an identifier / mixed separators.
        for s in [
            "4111111111111112",
            "1234567812345670",
            "ORD-4111111111111111",
            "4111 1111-1111 1111",
            "9111111111111111",
        ] {
            none(s);
        }
    }

    #[test]
    fn ssn() {
        one("ssn 123-45-6789", PiiClass::Ssn, "123-45-6789");
        one("SSN: 123456789", PiiClass::Ssn, "123456789");
        one("social security 123 45 6789", PiiClass::Ssn, "123 45 6789");
        for s in [
            "000-12-3456",
            "666-12-3456",
            "912-34-5678",
            "123-00-4567",
            "123-45-0000",
            "123456789",
            "123 45 6789",
            "2024-11-26",
        ] {
            none(s);
        }
    }

    #[test]
    fn phones() {
        for (s, p) in [
            ("call me at +44 20 7946 0958 tomorrow", "+44 20 7946 0958"),
            ("+1 (415) 555-0123", "+1 (415) 555-0123"),
            ("+49 (0)30 1234567", "+49 (0)30 1234567"),
            ("+33.1.23.45.67.89", "+33.1.23.45.67.89"),
            ("(415) 555-0123", "(415) 555-0123"),
            ("415-555-0123", "415-555-0123"),
            ("415.555.0123", "415.555.0123"),
            ("1-800-555-0199", "1-800-555-0199"),
            ("1 (800) 555-0199", "1 (800) 555-0199"),
        ] {
            one(s, PiiClass::Phone, p);
        }
        for s in [
            "4155550123",
            "1732600000",
            "v1.2.3",
            "ORD-415-555-0123",
            "115-555-0123",
            "415-555-01234",
            "+15%",
            "2024-11-26 10:30",
            "$1,299.99",
            "415-555.0123",
        ] {
            none(s);
        }
    }

    #[test]
    fn iban() {
        one(
            "GB82WEST12345698765432",
            PiiClass::Iban,
            "GB82WEST12345698765432",
        );
        one(
            "pay DE89 3704 0044 0532 0130 00 now",
            PiiClass::Iban,
            "DE89 3704 0044 0532 0130 00",
        );
        one("no9386011117947", PiiClass::Iban, "no9386011117947");
        for s in [
            "GB82WEST12345698765433",
            "DE89 3704 0044 0532 0130 0",
            "XX89370400440532013000",
            "DE8937040044053201300012",
        ] {
            none(s);
        }
    }

    #[test]
    fn ipv4() {
        one("client 192.168.1.20:8080", PiiClass::Ipv4, "192.168.1.20");
        one("10.0.0.1.", PiiClass::Ipv4, "10.0.0.1");
        for s in [
            "1.2.3",
            "1.2.3.4.5",
            "256.1.1.1",
            "01.2.3.4",
            "v10.4.22.1",
            "version 10.4.22.1",
            "build: 10.4.22.1",
            "a1.2.3.4",
        ] {
            none(s);
        }
        let mut out = Vec::new();
        scan("10.4.22.1", TextContext { version_key: true }, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn ipv6() {
        one(
            "from 2001:db8::8a2e:370:7334 at",
            PiiClass::Ipv6,
            "2001:db8::8a2e:370:7334",
        );
        one("[fe80::1]:443", PiiClass::Ipv6, "fe80::1");
        one("2001:db8::1: blocked", PiiClass::Ipv6, "2001:db8::1");
        one("fe80::", PiiClass::Ipv6, "fe80::");
        one("::ffff:192.0.2.128.", PiiClass::Ipv6, "::ffff:192.0.2.128");
        one(
            "2001:0db8:0000:0000:0000:ff00:0042:8329",
            PiiClass::Ipv6,
            "2001:0db8:0000:0000:0000:ff00:0042:8329",
        );
        for s in [
            "12:30:45",
            "std::fs::read",
            "dead::beef",
            "00:1A:2B:3C:4D:5E",
            "2024-11-26T10:30:00Z",
        ] {
            none(s);
        }
    }

    #[test]
    fn several_in_one_text_in_order() {
        let s = "jane@example.com, +44 20 7946 0958, 4111-1111-1111-1111 and 10.1.2.3";
        let classes: Vec<_> = found(s).into_iter().map(|f| f.0).collect();
        assert_eq!(
            classes,
            [
                PiiClass::Email,
                PiiClass::Phone,
                PiiClass::CreditCard,
                PiiClass::Ipv4
            ]
        );
    }

    #[test]
    fn email_with_non_ascii_letters() {
        for (s, e) in [
            ("contact müller@example.de", "müller@example.de"),
            (
                "contact françois.dupont@example.fr",
                "françois.dupont@example.fr",
            ),
            ("josé@example.com", "josé@example.com"),
            ("user@münchen.de", "user@münchen.de"),
            ("info@bücher.example.", "info@bücher.example"),
            ("«zoë@example.com»", "zoë@example.com"),
            ("почта@пример.рф", "почта@пример.рф"),
            // A combining mark is part of the letter before it.
            ("mu\u{308}ller@example.de", "mu\u{308}ller@example.de"),
        ] {
            one(s, PiiClass::Email, e);
        }
        // Punctuation of any script ends an address.
        one("「jane@example.com」", PiiClass::Email, "jane@example.com");
        one(
            "mail: jane@example.com\u{a0}",
            PiiClass::Email,
            "jane@example.com",
        );
        none("x@y.c");
    }

    #[test]
    fn percent_encoded_email_and_phone() {
        let url =
            "https://shop.example.com/reset?email=jane.doe%40example.com&phone=%2B14155550123";
        assert_eq!(
            found(url),
            vec![
                (PiiClass::Email, "jane.doe%40example.com"),
                (PiiClass::Phone, "%2B14155550123")
            ]
        );
        one(
            "?e=jane%2Btag%40example.com",
            PiiClass::Email,
            "jane%2Btag%40example.com",
        );
        one(
            "?e=jane%2btag%40example.com&x=1",
            PiiClass::Email,
            "jane%2btag%40example.com",
        );
        // Decoded and literal PII side by side keep their own offsets.
        assert_eq!(
            found("a%40example.com b@example.com 10.0.0.1"),
            vec![
                (PiiClass::Email, "a%40example.com"),
                (PiiClass::Email, "b@example.com"),
                (PiiClass::Ipv4, "10.0.0.1")
            ]
        );
        for s in ["100%40 done", "%2B", "50%2Bmore", "a%40b", "%40handle"] {
            none(s);
        }
    }

    #[test]
    fn ipv6_after_a_label_and_colon() {
        for (s, ip) in [
            ("ip:2001:db8::1", "2001:db8::1"),
            (
                "client:2001:db8:85a3::8a2e:370:7334",
                "2001:db8:85a3::8a2e:370:7334",
            ),
            (
                "remote_addr:fe80::1ff:fe23:4567:890a",
                "fe80::1ff:fe23:4567:890a",
            ),
            ("decode:2001:db8::1", "2001:db8::1"),
        ] {
            one(s, PiiClass::Ipv6, ip);
        }
        for s in ["at 12:30:45", "mac:00:1A:2B:3C:4D:5E", "std::fs::read"] {
            none(s);
        }
    }

    #[test]
    fn version_words_only_as_words() {
        one(
            "conversion from 203.0.113.77",
            PiiClass::Ipv4,
            "203.0.113.77",
        );
        one("aversion 203.0.113.77", PiiClass::Ipv4, "203.0.113.77");
        for s in [
            "appVersion 10.4.22.1",
            "os-version: 10.4.22.1",
            "release 10.4.22.1",
        ] {
            none(s);
        }
    }

    #[test]
    fn international_phone_with_bracketed_area_code() {
        for (s, p) in [
            ("call +1(415)555-0123", "+1(415)555-0123"),
            ("+1(415) 555-0123", "+1(415) 555-0123"),
            ("+44(20)7946 0958", "+44(20)7946 0958"),
            ("+44(0)20 7946 0958", "+44(0)20 7946 0958"),
        ] {
            one(s, PiiClass::Phone, p);
        }
        none("+1 415(555)0123(");
    }

    #[test]
    fn signed_decimals_are_not_phones() {
        for s in [
            "+40.712776,-74.005974",
            "+48.858370 +2.294481",
            "delta +12.345678",
        ] {
            none(s);
        }
        one("+33.1.23.45.67.89", PiiClass::Phone, "+33.1.23.45.67.89");
    }

    #[test]
    fn iban_with_dashes_and_card_with_dots() {
        one(
            "iban GB82-WEST-1234-5698-7654-32.",
            PiiClass::Iban,
            "GB82-WEST-1234-5698-7654-32",
        );
        one(
            "4111.1111.1111.1111",
            PiiClass::CreditCard,
            "4111.1111.1111.1111",
        );
        for s in [
            "GB82-WEST 1234-5698-7654-32",
            "GB82-WEST-1234-5698-7654-33",
            "4111.1111-1111.1111",
        ] {
            none(s);
        }
    }

    #[test]
    fn overlaps_keep_the_longest() {
        let mut out = vec![
            Match {
                class: PiiClass::Ipv4,
                start: 2,
                end: 6,
            },
            Match {
                class: PiiClass::Phone,
                start: 0,
                end: 10,
            },
            Match {
                class: PiiClass::Email,
                start: 12,
                end: 14,
            },
            Match {
                class: PiiClass::Ssn,
                start: 9,
                end: 13,
            },
        ];
        resolve_overlaps(&mut out, 0);
        let kept: Vec<_> = out.iter().map(|m| m.class).collect();
        assert_eq!(kept, [PiiClass::Phone, PiiClass::Email]);
    }
}
