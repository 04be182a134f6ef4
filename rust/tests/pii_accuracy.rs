//! PII detector accuracy on a generated, labelled corpus (fixed seed, so every run is the same).
//!
//! Positives: a few thousand realistic values per class, placed as whole values, inside free
//! text and deep in nested objects and arrays. A positive counts as found only if a finding of
//! the right class has the exact path and byte span of the planted value.
//! Look-alikes: values that share a shape with PII but are not (Luhn-failing order numbers,
//! versions, UUIDs, SKUs, dates, prices, `name@host`, timestamps, tracking numbers, ...), placed
//! the same way; any finding at all is a false positive.
//!
//! Thresholds: recall >= 99.5% per structured class, false-positive rate <= 0.5% per look-alike
//! category. Run with `-- --nocapture` to see the table.

use serde_json::{json, Value};
use tidegate_core::pii::{Finding, PiiClass, PiiScanner};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // SplitMix64.
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn digits(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b'0' + self.below(10) as u8))
            .collect()
    }

    fn letters(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b'A' + self.below(26) as u8))
            .collect()
    }

    fn hex(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b"0123456789abcdef"[self.below(16) as usize]))
            .collect()
    }
}

// ------------------------------------------------------------------ positives

const FIRST: &[&str] = &[
    "jane", "john", "maria", "wei", "olu", "anna", "li", "pierre", "sofia", "ahmed", "kim",
    "o'brien", "zoë",
];
const LAST: &[&str] = &[
    "doe", "smith", "garcia", "zhang", "okafor", "muller", "nguyen", "dupont", "rossi", "khan",
    "lee",
];
const DOMAINS: &[&str] = &[
    "example.com",
    "gmail.com",
    "yahoo.co.uk",
    "mail.example.org",
    "company.io",
    "sub.domain.de",
    "uni-berlin.de",
    "outlook.fr",
    "startup.ai",
    "xn--80ak6aa92e.com",
    "shop.example.co.jp",
    "EXAMPLE.COM",
];

fn email(r: &mut Rng) -> String {
    let first = *r.pick(FIRST);
    let last = *r.pick(LAST);
    let local = match r.below(7) {
        0 => first.to_owned(),
        1 => format!("{first}.{last}"),
        2 => format!("{first}_{last}{}", r.range(1, 99)),
        3 => format!("{}{last}", &first[..1]),
        4 => format!("{first}+{}", r.pick(&["news", "shop", "test", "2024"])),
        5 => format!("{}.{}", first.to_uppercase(), last),
        _ => format!("{first}-{last}.{}", r.range(1970, 2005)),
    };
    // One in ten percent-encoded, as in a URL's query string.
    let at = if r.chance(10) { "%40" } else { "@" };
    format!("{local}{at}{}", r.pick(DOMAINS))
}

fn nanp_number(r: &mut Rng) -> (String, String, String) {
    (
        format!("{}{}", r.range(2, 9), r.digits(2)),
        format!("{}{}", r.range(2, 9), r.digits(2)),
        r.digits(4),
    )
}

fn phone(r: &mut Rng) -> String {
    let (a, e, l) = nanp_number(r);
    match r.below(16) {
        0 => format!("({a}) {e}-{l}"),
        1 => format!("{a}-{e}-{l}"),
        2 => format!("{a}.{e}.{l}"),
        3 => format!("{a} {e} {l}"),
        4 => format!("+1 {a} {e} {l}"),
        5 => format!("+1 ({a}) {e}-{l}"),
        6 => format!("+1-{a}-{e}-{l}"),
        7 => format!("1-{a}-{e}-{l}"),
        8 => format!("+44 20 {} {}", r.digits(4), r.digits(4)),
        9 => format!("+44 7{} {}", r.digits(3), r.digits(6)),
        10 => format!(
            "+33 {} {} {} {} {}",
            r.range(1, 9),
            r.digits(2),
            r.digits(2),
            r.digits(2),
            r.digits(2)
        ),
        11 => format!("+49 (0){} {}", r.range(30, 89), r.digits(7)),
        12 => format!("+91 {}{} {}", r.range(6, 9), r.digits(4), r.digits(5)),
        13 => format!("+61 {} {} {}", r.range(2, 8), r.digits(4), r.digits(4)),
        14 => format!("+81 {}-{}-{}", r.range(3, 9), r.digits(4), r.digits(4)),
        _ => format!(
            "+{}{}{}",
            r.pick(&["1", "44", "49", "55", "86", "234"]),
            r.range(1, 9),
            r.digits(9)
        ),
    }
}

fn luhn_check_digit(body: &str) -> u8 {
    let mut sum = 0;
    for (k, c) in body.bytes().rev().enumerate() {
        let mut v = u32::from(c - b'0');
        if k % 2 == 0 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    ((10 - sum % 10) % 10) as u8
}

/// A card number from a network mix roughly as cards circulate today (percent): Visa 16 (35),
/// Visa 19 (3), Mastercard 51–55 (20) and 2-series (8), Amex (12), Discover (8), JCB (5),
/// UnionPay (6), and the near-extinct lengths: Visa 13 (1), Diners 14 (2).
fn card_digits(r: &mut Rng) -> String {
    card_of_length(r, None)
}

fn card_of_length(r: &mut Rng, only_short: Option<()>) -> String {
    let roll = if only_short.is_some() {
        97 + r.below(3)
    } else {
        r.below(100)
    };
    let (prefix, len) = match roll {
        0..=34 => ("4".to_owned(), 16),
        35..=37 => ("4".to_owned(), 19),
        38..=57 => (format!("5{}", r.range(1, 5)), 16),
        58..=65 => (format!("{}", r.range(2221, 2720)), 16),
        66..=77 => (r.pick(&["34", "37"]).to_string(), 15),
        78..=85 => (r.pick(&["6011", "65"]).to_string(), 16),
        86..=90 => (format!("{}", r.range(3528, 3589)), 16),
        91..=96 => ("62".to_owned(), *r.pick(&[16, 17, 18, 19])),
        97 => ("4".to_owned(), 13),
        _ => ("36".to_owned(), 14),
    };
    let body = format!("{prefix}{}", r.digits(len - prefix.len() - 1));
    let check = luhn_check_digit(&body);
    format!("{body}{check}")
}

fn group(digits: &str, sizes: &[usize], sep: char) -> String {
    let mut out = String::new();
    let mut pos = 0;
    for (k, size) in sizes.iter().enumerate() {
        if pos >= digits.len() {
            break;
        }
        if k > 0 {
            out.push(sep);
        }
        let end = (pos + size).min(digits.len());
        out.push_str(&digits[pos..end]);
        pos = end;
    }
    out
}

fn card(r: &mut Rng) -> String {
    let d = card_digits(r);
    let sizes: &[usize] = match d.len() {
        15 => &[4, 6, 5],
        14 => &[4, 6, 4],
        13 => &[4, 3, 3, 3],
        _ => &[4, 4, 4, 4, 4],
    };
    match r.below(3) {
        0 => d,
        1 => group(&d, sizes, ' '),
        _ => group(&d, sizes, '-'),
    }
}

fn ssn_parts(r: &mut Rng) -> String {
    let area = loop {
        let a = r.range(1, 899);
        if a != 666 {
            break a;
        }
    };
    format!("{area:03}{:02}{:04}", r.range(1, 99), r.range(1, 9999))
}

/// (the planted text, the SSN's own span within it)
fn ssn(r: &mut Rng) -> (String, usize) {
    let d = ssn_parts(r);
    match r.below(4) {
        0 | 1 => (format!("{}-{}-{}", &d[..3], &d[3..5], &d[5..]), 0),
        2 => {
            let prefix = *r.pick(&["SSN: ", "ssn ", "SSN#", "Social Security Number: "]);
            (format!("{prefix}{d}"), prefix.len())
        }
        _ => {
            let prefix = *r.pick(&["social security no. ", "SSN "]);
            (
                format!("{prefix}{} {} {}", &d[..3], &d[3..5], &d[5..]),
                prefix.len(),
            )
        }
    }
}

fn iban(r: &mut Rng) -> String {
    // (country, BBAN shape: 'n' digit, 'a' letter, 'c' either)
    let (country, shape) = *r.pick(&[
        ("DE", "nnnnnnnnnnnnnnnnnn"),
        ("GB", "aaaannnnnnnnnnnnnn"),
        ("FR", "nnnnnnnnnnccccccccccrnn"),
        ("ES", "nnnnnnnnnnnnnnnnnnnn"),
        ("NL", "aaaannnnnnnnnn"),
        ("IT", "annnnnnnnnncccccccccccc"),
        ("BE", "nnnnnnnnnnnn"),
        ("CH", "nnnnncccccccccccc"),
        ("NO", "nnnnnnnnnnn"),
        ("PL", "nnnnnnnnnnnnnnnnnnnnnnnn"),
        ("MT", "aaaannnnncccccccccccccccccc"),
        ("SA", "nncccccccccccccccccc"),
    ]);
    let bban: String = shape
        .chars()
        .map(|c| match c {
            'n' | 'r' => char::from(b'0' + r.below(10) as u8),
            'a' => char::from(b'A' + r.below(26) as u8),
            _ => {
                if r.chance(50) {
                    char::from(b'0' + r.below(10) as u8)
                } else {
                    char::from(b'A' + r.below(26) as u8)
                }
            }
        })
        .collect();
    let rearranged = format!("{bban}{country}00");
    let mut rem = 0u32;
    for c in rearranged.bytes() {
        rem = if c.is_ascii_digit() {
            (rem * 10 + u32::from(c - b'0')) % 97
        } else {
            (rem * 100 + u32::from(c - b'A') + 10) % 97
        };
    }
    let compact = format!("{country}{:02}{bban}", 98 - rem);
    match r.below(3) {
        0 => compact,
        1 => compact
            .as_bytes()
            .chunks(4)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join(" "),
        _ => compact.to_lowercase(),
    }
}

fn ipv4(r: &mut Rng) -> String {
    let first = *r.pick(&[10, 172, 192, 8, 23, 51, 100, 203, 81, 1]);
    format!(
        "{first}.{}.{}.{}",
        r.below(256),
        r.below(256),
        r.range(1, 254)
    )
}

fn ipv6(r: &mut Rng) -> String {
    let groups: Vec<u16> = (0..8)
        .map(|k| {
            if k < 2 {
                0x2001 + r.below(0x3ff) as u16
            } else {
                r.below(65536) as u16
            }
        })
        .collect();
    let mut addr = std::net::Ipv6Addr::from([
        groups[0], groups[1], groups[2], groups[3], groups[4], groups[5], groups[6], groups[7],
    ]);
    match r.below(5) {
        0 => {
            // Fully written out.
            let s = addr
                .segments()
                .iter()
                .map(|g| format!("{g:04x}"))
                .collect::<Vec<_>>()
                .join(":");
            return s;
        }
        1 => {
            addr =
                std::net::Ipv6Addr::new(0xfe80, 0, 0, 0, groups[4], groups[5], groups[6], groups[7])
        }
        2 => addr = std::net::Ipv6Addr::new(groups[0], 0xdb8, 0, 0, 0, 0, 0, groups[7] | 1),
        3 => {
            let v4 = std::net::Ipv4Addr::new(
                r.range(1, 223) as u8,
                r.below(256) as u8,
                r.below(256) as u8,
                r.range(1, 254) as u8,
            );
            return format!("::ffff:{v4}");
        }
        _ => {}
    }
    let s = addr.to_string();
    if r.chance(30) {
        s.to_uppercase()
    } else {
        s
    }
}

// ------------------------------------------------------------------ placements

/// Free-text templates; `{}` is where the value goes. None of them holds PII of its own.
const TEXTS: &[&str] = &[
    "{}",
    "Please contact me at {} tomorrow.",
    "Contact: {}",
    "{} (primary)",
    "my details - {}; thanks!",
    "Order #48213 for {} shipped on 2024-11-26",
    "ref=AB12 value={} status=ok",
    "Customer wrote: \"reach me on {}, after 5pm\"",
    "[{}]",
    "note: {}.",
    "Änderung für {} übernommen",
    "客户信息：{}，请核实",
    "{}: verified",
    "(see {})",
    "a,b,{},c",
    "<p>{}</p>",
];

const NEUTRAL_KEYS: &[&str] = &[
    "value", "note", "contact", "field_3", "detail", "comment", "info", "data",
];

/// Puts `text` somewhere in a realistic event; returns the event and the JSON pointer of the
/// string that holds it.
fn place(r: &mut Rng, value: Value) -> (Value, String) {
    let key = *r.pick(NEUTRAL_KEYS);
    match r.below(4) {
        0 => (
            json!({"type": "track", "event": "Form Submitted", "properties": {key: value, "step": 2}}),
            format!("/properties/{key}"),
        ),
        1 => (
            json!({"type": "identify", "traits": {"name": "Test User", "profile": {"entries": [{"kind": "x"}, {key: value}]}}}),
            format!("/traits/profile/entries/1/{key}"),
        ),
        2 => (
            json!({"type": "track", "properties": {"items": ["a", value]}}),
            "/properties/items/1".to_owned(),
        ),
        _ => (
            json!({"type": "page", "context": {"campaign": {"source": "email", "content": {key: value}}}}),
            format!("/context/campaign/content/{key}"),
        ),
    }
}

fn in_text(r: &mut Rng, planted: &str) -> (String, usize) {
    let template = *r.pick(TEXTS);
    let at = template.find("{}").unwrap();
    (template.replacen("{}", planted, 1), at)
}

fn scan(scanner: &PiiScanner, event: &Value) -> Vec<Finding> {
    // Scanned as the pipeline holds events: parsed by sonic-rs, keys in document order.
    let event: sonic_rs::Value = sonic_rs::from_str(&event.to_string()).unwrap();
    let mut out = Vec::new();
    scanner.scan_event(&event, &mut out);
    out
}

struct Recall {
    class: PiiClass,
    n: usize,
    found: usize,
}

fn recall_for(
    scanner: &PiiScanner,
    r: &mut Rng,
    class: PiiClass,
    n: usize,
    misses: &mut Vec<String>,
) -> Recall {
    let mut found = 0;
    for _ in 0..n {
        // (planted text, offset of the PII within it)
        let (planted, inner) = match class {
            PiiClass::Email => (email(r), 0),
            PiiClass::Phone => (phone(r), 0),
            PiiClass::CreditCard => (card(r), 0),
            PiiClass::Ssn => ssn(r),
            PiiClass::Iban => (iban(r), 0),
            PiiClass::Ipv4 => (ipv4(r), 0),
            PiiClass::Ipv6 => (ipv6(r), 0),
            PiiClass::KeyName => unreachable!("key names are measured separately"),
        };
        let pii_len = planted.len() - inner;
        let (value, expected_span) = if class == PiiClass::CreditCard
            && r.chance(10)
            && planted.bytes().all(|c| c.is_ascii_digit())
        {
            (json!(planted.parse::<u64>().unwrap()), None)
        } else {
            let (text, at) = in_text(r, &planted);
            (
                Value::String(text),
                Some((at + inner, at + inner + pii_len)),
            )
        };
        let (event, path) = place(r, value);
        let findings = scan(scanner, &event);
        if findings
            .iter()
            .any(|f| f.class == class && f.path == path && f.span == expected_span)
        {
            found += 1;
        } else if misses.len() < 40 {
            misses.push(format!(
                "{}: {}",
                class.as_str(),
                event.pointer(&path).unwrap()
            ));
        }
    }
    Recall { class, n, found }
}

// ------------------------------------------------------------------ look-alikes

fn luhn_failing_16(r: &mut Rng) -> String {
    let body = format!("{}{}", r.range(1, 9), r.digits(14));
    let bad = (luhn_check_digit(&body) + 1 + r.below(9) as u8) % 10;
    format!("{body}{bad}")
}

fn lookalike(r: &mut Rng, category: &str) -> (Value, String) {
    let s = |v: String| Value::String(v);
    match category {
        "order number (16 digits, Luhn fails)" => {
            let d = luhn_failing_16(r);
            let v = match r.below(4) {
                0 => json!(d.parse::<u64>().unwrap()),
                1 => s(group(&d, &[4, 4, 4, 4], ' ')),
                2 => s(group(&d, &[4, 4, 4, 4], '-')),
                _ => s(d),
            };
            place(r, v)
        }
        "semantic version" => {
            let (a, b, c) = (r.below(30), r.below(30), r.below(300));
            match r.below(6) {
                0 => place(r, s(format!("{a}.{b}.{c}"))),
                1 => {
                    let v = format!("v{a}.{b}.{c}-beta.{}", r.below(9));
                    place(r, s(v))
                }
                2 => {
                    let v = format!("upgraded to version {a}.{b}.{c}.{}", r.below(200));
                    place(r, s(v))
                }
                3 => {
                    let v = format!("v{a}.{b}.{c}.{}", r.below(200));
                    place(r, s(v))
                }
                4 => {
                    let key = *r.pick(&["version", "app_version", "osVersion", "build"]);
                    (
                        json!({"context": {"app": {key: format!("{a}.{b}.{c}.{}", r.below(200))}}}),
                        String::new(),
                    )
                }
                _ => (
                    json!({"context": {"library": {"name": "analytics.js", "version": format!("{a}.{b}.{c}")}}}),
                    String::new(),
                ),
            }
        }
        "UUID" => {
            let u = format!(
                "{}-{}-4{}-{}{}-{}",
                r.hex(8),
                r.hex(4),
                r.hex(3),
                r.pick(&["8", "9", "a", "b"]),
                r.hex(3),
                r.hex(12)
            );
            let v = if r.chance(50) { u.to_uppercase() } else { u };
            let text = in_text(r, &v).0;
            place(r, s(text))
        }
        "SKU / product code" => {
            let v = match r.below(5) {
                0 => format!(
                    "SKU-{}-{}-{}",
                    r.digits(4),
                    r.letters(3),
                    r.pick(&["S", "M", "L", "XL"])
                ),
                1 => format!("{}-{}-{}", r.letters(2), r.digits(5), r.digits(3)),
                2 => format!("ITEM-{}-{}", r.digits(6), r.letters(3)),
                3 => format!("P/N {}-{}-{}", r.digits(3), r.digits(4), r.digits(2)),
                _ => format!("{}{}", r.letters(3), r.digits(9)),
            };
            let text = in_text(r, &v).0;
            place(r, s(text))
        }
        "ISO date / timestamp" => {
            let (y, m, d) = (r.range(1990, 2030), r.range(1, 12), r.range(1, 28));
            let (hh, mm, ss) = (r.below(24), r.below(60), r.below(60));
            let v = match r.below(6) {
                0 => format!("{y}-{m:02}-{d:02}"),
                1 => format!("{y}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z"),
                2 => format!(
                    "{y}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{}+05:30",
                    r.digits(3)
                ),
                3 => format!("{d:02}.{m:02}.{y} {hh:02}:{mm:02}"),
                4 => format!("{m:02}/{d:02}/{y}"),
                _ => format!("{y}{m:02}{d:02}T{hh:02}{mm:02}{ss:02}"),
            };
            let text = in_text(r, &v).0;
            place(r, s(text))
        }
        "price / amount" => {
            let v = match r.below(6) {
                0 => format!("${},{}.{}", r.range(1, 999), r.digits(3), r.digits(2)),
                1 => format!("{}.{} EUR", r.range(1, 99999), r.digits(2)),
                2 => format!("€ {}.{},{}", r.range(1, 999), r.digits(3), r.digits(2)),
                3 => format!(
                    "USD {},{},{}.{}",
                    r.range(1, 99),
                    r.digits(3),
                    r.digits(3),
                    r.digits(2)
                ),
                4 => format!("+{}.{}%", r.range(1, 99), r.digits(1)),
                _ => format!("{}.{}", r.range(1, 9_999_999), r.digits(2)),
            };
            let text = in_text(r, &v).0;
            place(r, s(text))
        }
        "name@host without TLD" => {
            let v = format!(
                "{}@{}",
                r.pick(FIRST),
                r.pick(&[
                    "localhost",
                    "server01",
                    "github",
                    "internal",
                    "db-primary",
                    "1.2.3",
                    "2x.png"
                ])
            );
            let text = in_text(r, &v).0;
            place(r, s(text))
        }
        "Unix timestamp" => {
            let secs = r.range(1_000_000_000, 1_999_999_999);
            match r.below(4) {
                0 => place(r, json!(secs)),
                1 => {
                    let ms = secs * 1000 + r.below(1000);
                    place(r, json!(ms))
                }
                2 => place(r, s(format!("{secs}"))),
                _ => {
                    let v = format!("{}{}", secs, r.digits(3));
                    place(r, s(v))
                }
            }
        }
        "tracking number" => {
            let v = match r.below(5) {
                0 => format!("1Z{}{}{}", r.letters(3), r.digits(3), r.digits(10)),
                1 => r.digits(12),
                2 => format!("{}{}", r.pick(&["96", "61"]), r.digits(20)),
                3 => group(&format!("9400{}", r.digits(18)), &[4, 4, 4, 4, 4, 2], ' '),
                _ => format!("JJD{}", r.digits(18)),
            };
            let text = in_text(r, &v).0;
            place(r, s(text))
        }
        "EAN-13 / GTIN-14 barcode" => {
            let len = if r.chance(70) { 12 } else { 13 };
            let body = format!("{}{}", r.range(40, 69), r.digits(len - 2));
            let sum: u32 = body
                .bytes()
                .rev()
                .enumerate()
                .map(|(k, c)| u32::from(c - b'0') * if k % 2 == 0 { 3 } else { 1 })
                .sum();
            let v = format!("{body}{}", (10 - sum % 10) % 10);
            if r.chance(30) {
                place(r, json!(v.parse::<u64>().unwrap()))
            } else {
                let text = in_text(r, &v).0;
                place(r, s(text))
            }
        }
        "numeric text (decimals, coordinates, ranges, ISBN)" => {
            let v = match r.below(8) {
                0 => format!("{}.{}", r.range(0, 9), r.digits(15)),
                1 => format!(
                    "{}.{}, -{}.{}",
                    r.range(10, 89),
                    r.digits(6),
                    r.range(10, 179),
                    r.digits(6)
                ),
                2 => format!("{}x{}", r.range(320, 3840), r.range(200, 2160)),
                3 => format!("{:02}:00-{:02}:30", r.below(12), r.range(12, 23)),
                4 => format!(
                    "978-{}-{}-{}-{}",
                    r.range(0, 9),
                    r.digits(2),
                    r.digits(6),
                    r.range(0, 9)
                ),
                5 => format!("10.0.{}.{}", r.range(10000, 22631), r.range(256, 4000)),
                6 => format!("1{}-{}-{}", r.digits(2), r.digits(3), r.digits(4)),
                _ => format!(
                    "{}.{}.{}.{}.{}",
                    r.below(10),
                    r.below(10),
                    r.below(10),
                    r.below(10),
                    r.below(10)
                ),
            };
            let text = in_text(r, &v).0;
            place(r, s(text))
        }
        "other ids (hash, MAC, time, ZIP, invoice)" => {
            let v = match r.below(6) {
                0 => r.hex(40),
                1 => (0..6)
                    .map(|_| r.hex(2).to_uppercase())
                    .collect::<Vec<_>>()
                    .join(":"),
                2 => format!("{:02}:{:02}:{:02}", r.below(24), r.below(60), r.below(60)),
                3 => format!("{}-{}", r.digits(5), r.digits(4)),
                4 => format!("INV-{}-{}", r.range(2000, 2030), r.digits(6)),
                _ => format!(
                    "std::{}::{}",
                    r.pick(&["fs", "io", "net"]),
                    r.pick(&["read", "copy", "bind"])
                ),
            };
            let text = in_text(r, &v).0;
            place(r, s(text))
        }
        other => unreachable!("{other}"),
    }
}

const LOOKALIKES: &[&str] = &[
    "order number (16 digits, Luhn fails)",
    "semantic version",
    "UUID",
    "SKU / product code",
    "ISO date / timestamp",
    "price / amount",
    "name@host without TLD",
    "Unix timestamp",
    "tracking number",
    "EAN-13 / GTIN-14 barcode",
    "numeric text (decimals, coordinates, ranges, ISBN)",
    "other ids (hash, MAC, time, ZIP, invoice)",
];

#[test]
fn detector_accuracy() {
    let scanner = PiiScanner::default();
    let mut r = Rng(0x71DE_6A7E);
    let mut misses = Vec::new();
    let n = 3000;
    let recalls: Vec<Recall> = PiiClass::ALL
        .into_iter()
        .filter(|c| *c != PiiClass::KeyName)
        .map(|class| recall_for(&scanner, &mut r, class, n, &mut misses))
        .collect();

    // Key-name rule: any non-empty value under a sensitive key, at any depth.
    let keys = [
        "password",
        "newPassword",
        "api_key",
        "X-Auth-Token",
        "client_secret",
        "cvv",
        "user.ssn",
        "card_number",
    ];
    let mut key_found = 0;
    for _ in 0..n {
        let key = *r.pick(&keys);
        let value = match r.below(3) {
            0 => json!(r.hex(12)),
            1 => json!(r.range(100, 9999)),
            _ => json!({"value": r.hex(8)}),
        };
        let (event, _) = place(&mut r, json!({key: value}));
        if scan(&scanner, &event).iter().any(|f| {
            f.class == PiiClass::KeyName
                && f.path.ends_with(&format!("/{}", key.replace('/', "~1")))
        }) {
            key_found += 1;
        }
    }

    let mut false_positives = Vec::new();
    let mut fp_rows = Vec::new();
    for category in LOOKALIKES {
        let mut fp = 0;
        for _ in 0..n {
            let (event, _) = lookalike(&mut r, category);
            let findings = scan(&scanner, &event);
            if !findings.is_empty() {
                fp += 1;
                if false_positives.len() < 40 {
                    false_positives.push(format!("{category}: {} -> {:?}", event, findings));
                }
            }
        }
        fp_rows.push((*category, n, fp));
    }

    // Known limits, measured and printed but not asserted: text alone cannot settle these.
    let mut limits = Vec::new();
    for (label, expect_pii) in [
        ("random 16-digit ids (some pass Luhn)", false),
        ("13/14-digit cards (Visa-13, Diners-14)", true),
        ("bare 4-part version, no context", false),
        ("UK national phone 020 7946 0958 (no +44)", true),
    ] {
        let mut flagged = 0;
        for _ in 0..n {
            let v = match label.as_bytes()[0] {
                b'r' => format!("{}{}", r.range(1, 9), r.digits(15)),
                b'1' => card_of_length(&mut r, Some(())),
                b'b' => format!(
                    "{}.{}.{}.{}",
                    r.range(1, 20),
                    r.below(30),
                    r.below(100),
                    r.below(200)
                ),
                _ => format!("0{} {} {}", r.range(20, 29), r.digits(4), r.digits(4)),
            };
            let (event, _) = place(&mut r, Value::String(v));
            flagged += usize::from(!scan(&scanner, &event).is_empty());
        }
        limits.push((label, expect_pii, flagged));
    }

    println!("{:<52} {:>6} {:>7} {:>8}", "class", "n", "found", "recall");
    for row in &recalls {
        println!(
            "{:<52} {:>6} {:>7} {:>7.2}%",
            row.class.as_str(),
            row.n,
            row.found,
            100.0 * row.found as f64 / row.n as f64
        );
    }
    println!(
        "{:<52} {:>6} {:>7} {:>7.2}%",
        "key_name",
        n,
        key_found,
        100.0 * key_found as f64 / n as f64
    );
    println!();
    println!(
        "{:<52} {:>6} {:>7} {:>8}",
        "look-alike", "n", "flagged", "FP rate"
    );
    for (category, n, fp) in &fp_rows {
        println!(
            "{:<52} {:>6} {:>7} {:>7.2}%",
            category,
            n,
            fp,
            100.0 * *fp as f64 / *n as f64
        );
    }
    let (total_n, total_fp) = fp_rows
        .iter()
        .fold((0, 0), |(a, b), (_, n, fp)| (a + n, b + fp));
    println!(
        "{:<52} {:>6} {:>7} {:>7.2}%",
        "all look-alikes",
        total_n,
        total_fp,
        100.0 * total_fp as f64 / total_n as f64
    );
    println!();
    println!(
        "{:<52} {:>6} {:>7} {:>8}",
        "known limit (not asserted)", "n", "flagged", "rate"
    );
    for (label, expect_pii, flagged) in &limits {
        let kind = if *expect_pii { "recall" } else { "FP" };
        println!(
            "{:<52} {:>6} {:>7} {:>7.2}% {kind}",
            label,
            n,
            flagged,
            100.0 * *flagged as f64 / n as f64
        );
    }
    if !misses.is_empty() {
        println!("\nsample misses:\n{}", misses.join("\n"));
    }
    if !false_positives.is_empty() {
        println!("\nsample false positives:\n{}", false_positives.join("\n"));
    }

    for row in &recalls {
        let recall = row.found as f64 / row.n as f64;
        assert!(
            recall >= 0.995,
            "{} recall {:.4} < 0.995; misses:\n{}",
            row.class.as_str(),
            recall,
            misses.join("\n")
        );
    }
    assert_eq!(key_found, n, "key-name rule missed values");
    for (category, n, fp) in &fp_rows {
        let rate = *fp as f64 / *n as f64;
        assert!(
            rate <= 0.005,
            "{category}: FP rate {rate:.4} > 0.005:\n{}",
            false_positives.join("\n")
        );
    }
}
