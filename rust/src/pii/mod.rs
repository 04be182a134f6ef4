//! PII detection over whole events and the per-destination actions taken on what is found.
//!
//! [`PiiScanner::scan_event`] looks at every string at any depth (free text included), at JSON
//! numbers that are payment card numbers, and at the values of sensitively named keys;
//! [`apply`] then carries out a [`PiiPolicy`] on the event. Findings and errors carry classes,
//! JSON pointers and byte offsets only, never the values themselves, so they are safe to log.
//!
//! Decisions worth knowing:
//! - Key-name rule: a key matches when its normalised form (ASCII-lowercased, with `_ - . `
//!   and spaces removed) *equals or ends with* a normalised sensitive name. So `newPassword`,
//!   `x-api-key` and `csrf_token` match `password`, `api_key` and `token`, while `token_count`
//!   and `password_updated_at` (a count and a timestamp) do not. A number or a confirmation
//!   after the name is the same secret again: `password2`, `cvv2`, `passwordConfirm` and
//!   `password_confirmation` match `password` and `cvv`.
//!   `null`, `""`, booleans, `[]` and `{}` under such a key are not findings: they hold no secret.
//! - JSON numbers are checked for payment cards only. As numbers, ten-digit phones and
//!   nine-digit SSNs are indistinguishable from ids, amounts and timestamps; the key-name rule
//!   (`ssn`, `phone` when configured) covers them.
//! - Undashed nine-digit SSNs are found only after an SSN keyword in the same text.
//! - Dotted quads under a key with a `version` segment or ending in a `build` segment
//!   (`app_version`, `OSVersion`, `appBuild`, not `conversion_ip`), or after the words
//!   version/build/release/firmware, are versions, not IPv4 addresses. A bare `10.4.22.1` with no
//!   such context is reported as an IPv4 address: the text alone cannot tell them apart.
//! - 13- and 14-digit numbers with a valid GS1 check digit are product barcodes (EAN-13,
//!   GTIN-14), not cards; this misses about one 13/14-digit card (Visa-13, Diners-14) in ten.
//! - `hash` hashes a canonical form ([`canonical_form`]), so hashes of one email or phone agree
//!   however it was written.
//! - Object keys themselves are not scanned.

mod detect;

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use sonic_rs::{JsonNumberTrait, JsonValueTrait, Value, ValueRef};

use detect::TextContext;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PiiClass {
    Email,
    Phone,
    CreditCard,
    Ssn,
    Iban,
    Ipv4,
    Ipv6,
    KeyName,
}

impl PiiClass {
    pub const ALL: [PiiClass; 8] = [
        PiiClass::Email,
        PiiClass::Phone,
        PiiClass::CreditCard,
        PiiClass::Ssn,
        PiiClass::Iban,
        PiiClass::Ipv4,
        PiiClass::Ipv6,
        PiiClass::KeyName,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            PiiClass::Email => "email",
            PiiClass::Phone => "phone",
            PiiClass::CreditCard => "credit_card",
            PiiClass::Ssn => "ssn",
            PiiClass::Iban => "iban",
            PiiClass::Ipv4 => "ipv4",
            PiiClass::Ipv6 => "ipv6",
            PiiClass::KeyName => "key_name",
        }
    }
}

impl fmt::Display for PiiClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PiiClass {
    type Err = PiiError;

    fn from_str(s: &str) -> Result<PiiClass, PiiError> {
        PiiClass::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| PiiError::UnknownClass(s.to_owned()))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PiiAction {
    Allow,
    Redact,
    Hash,
    DropField,
    BlockEvent,
}

impl PiiAction {
    pub const ALL: [PiiAction; 5] = [
        PiiAction::Allow,
        PiiAction::Redact,
        PiiAction::Hash,
        PiiAction::DropField,
        PiiAction::BlockEvent,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            PiiAction::Allow => "allow",
            PiiAction::Redact => "redact",
            PiiAction::Hash => "hash",
            PiiAction::DropField => "drop_field",
            PiiAction::BlockEvent => "block_event",
        }
    }

    /// Which action wins when several apply to one value.
    fn strength(self) -> u8 {
        match self {
            PiiAction::Allow => 0,
            PiiAction::Hash => 1,
            PiiAction::Redact => 2,
            PiiAction::DropField => 3,
            PiiAction::BlockEvent => 4,
        }
    }
}

impl fmt::Display for PiiAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PiiAction {
    type Err = PiiError;

    fn from_str(s: &str) -> Result<PiiAction, PiiError> {
        PiiAction::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| PiiError::UnknownAction(s.to_owned()))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PiiError {
    #[error("unknown PII class \"{0}\"; known classes are: email, phone, credit_card, ssn, iban, ipv4, ipv6, key_name")]
    UnknownClass(String),
    #[error("unknown PII action \"{0}\"; known actions are: allow, redact, hash, drop_field, block_event")]
    UnknownAction(String),
    #[error("PII class \"{0}\" is given an action twice; give each class one action")]
    DuplicateClass(PiiClass),
    #[error(
        "the PII hash key is {len} bytes; `hash` needs a secret key of at least {MIN_HASH_KEY_BYTES} bytes \
         (an unkeyed or short-keyed hash of an email or phone number is reversible by brute force)"
    )]
    WeakHashKey { len: usize },
}

/// Shortest HMAC key accepted when any class is hashed.
pub const MIN_HASH_KEY_BYTES: usize = 16;

/// Key names whose values are treated as sensitive whatever they contain.
pub const DEFAULT_SENSITIVE_KEYS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "passphrase",
    "secret",
    "client_secret",
    "secret_key",
    "token",
    "api_key",
    "apikey",
    "access_key",
    "private_key",
    "authorization",
    "cookie",
    "session_id",
    "ssn",
    "social_security_number",
    "credit_card",
    "card_number",
    "cc_number",
    "cvv",
    "cvc",
    "security_code",
    "pin_code",
    "iban",
    "account_number",
    "routing_number",
    "tax_id",
    "passport_number",
];

/// A PII span in a string: byte offsets, `start..end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Match {
    pub class: PiiClass,
    pub start: usize,
    pub end: usize,
}

/// PII somewhere in an event. `Debug` shows where, never what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub class: PiiClass,
    /// JSON pointer of the value, e.g. `/properties/address/0/email`.
    pub path: String,
    /// Byte span within a string value; `None` means the whole value (key-name rule, numbers).
    pub span: Option<(usize, usize)>,
}

const KEY_BUF: usize = 64;

/// Lowercases `key` and drops separators, keeping the last `KEY_BUF` bytes (enough for suffix
/// matching) in `buf`; returns the normalised slice.
fn normalize_key<'b>(key: &str, buf: &'b mut [u8; KEY_BUF]) -> &'b [u8] {
    let mut n = 0;
    for &c in key.as_bytes().iter().rev() {
        if matches!(c, b'_' | b'-' | b'.' | b' ') {
            continue;
        }
        if n == KEY_BUF {
            break;
        }
        n += 1;
        buf[KEY_BUF - n] = c.to_ascii_lowercase();
    }
    &buf[KEY_BUF - n..]
}

pub struct PiiScanner {
    /// Sorted by last byte; `by_last_byte[b]` is the range of names ending in `b`, so a key is
    /// compared only with the few names that end like it.
    sensitive_keys: Vec<SensitiveName>,
    by_last_byte: [(u16, u16); 256],
}

/// A normalised sensitive name with its last (up to) four bytes packed, so that checking a key
/// against the whole list is mostly integer compares.
struct SensitiveName {
    name: Vec<u8>,
    tail_len: usize,
    tail: u32,
}

fn pack_tail(bytes: &[u8], n: usize) -> u32 {
    bytes[bytes.len() - n..]
        .iter()
        .fold(0, |acc, b| (acc << 8) | u32::from(*b))
}

impl fmt::Debug for PiiScanner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<_> = self
            .sensitive_keys
            .iter()
            .map(|k| String::from_utf8_lossy(&k.name))
            .collect();
        f.debug_struct("PiiScanner")
            .field("sensitive_keys", &keys)
            .finish()
    }
}

impl Default for PiiScanner {
    fn default() -> PiiScanner {
        PiiScanner::new(DEFAULT_SENSITIVE_KEYS)
    }
}

use crate::pointer::At;

impl PiiScanner {
    /// A scanner whose key-name rule uses exactly `sensitive_key_names` (pass
    /// [`DEFAULT_SENSITIVE_KEYS`] for the defaults; an empty list disables the rule).
    pub fn new<S: AsRef<str>>(sensitive_key_names: &[S]) -> PiiScanner {
        let mut sensitive_keys = Vec::new();
        for name in sensitive_key_names {
            let mut buf = [0; KEY_BUF];
            let name = normalize_key(name.as_ref(), &mut buf).to_vec();
            if !name.is_empty() {
                let tail_len = name.len().min(4);
                let tail = pack_tail(&name, tail_len);
                sensitive_keys.push(SensitiveName {
                    name,
                    tail_len,
                    tail,
                });
            }
        }
        sensitive_keys.sort_by_key(|s| s.tail & 0xff);
        let mut by_last_byte = [(0u16, 0u16); 256];
        for (i, s) in sensitive_keys.iter().enumerate() {
            let i = u16::try_from(i).expect("fewer than 65536 sensitive key names");
            let slot = &mut by_last_byte[(s.tail & 0xff) as usize];
            if slot.1 == 0 {
                slot.0 = i;
            }
            slot.1 = i + 1;
        }
        PiiScanner {
            sensitive_keys,
            by_last_byte,
        }
    }

    /// Appends the PII spans found in free text to `out`, in text order, non-overlapping.
    pub fn scan_str(&self, s: &str, out: &mut Vec<Match>) {
        detect::scan(s, TextContext::default(), out);
    }

    /// Appends every finding in `event` to `out`, in document order.
    pub fn scan_event(&self, event: &Value, out: &mut Vec<Finding>) {
        let mut spans = Vec::new();
        self.walk(
            event.as_ref(),
            &At::Root,
            TextContext::default(),
            &mut spans,
            out,
        );
    }

    pub fn is_sensitive_key(&self, key: &str) -> bool {
        self.key_context(key).0
    }

    /// (sensitive name?, text context for values under this key)
    fn key_context(&self, key: &str) -> (bool, TextContext) {
        let sensitive = self.names_sensitive(key)
            || without_repeat_suffix(key).is_some_and(|base| self.names_sensitive(base));
        (
            sensitive,
            TextContext {
                version_key: is_version_key(key.as_bytes()),
            },
        )
    }

    /// `key`, normalised, equals or ends with a sensitive name.
    fn names_sensitive(&self, key: &str) -> bool {
        let raw = key.as_bytes();
        // Most keys differ from every sensitive name in their last four normalised bytes, which
        // are found without normalising the whole key.
        let mut tail = 0u32;
        let mut n = 0;
        for &c in raw.iter().rev() {
            if !matches!(c, b'_' | b'-' | b'.' | b' ') {
                tail |= u32::from(c.to_ascii_lowercase()) << (8 * n);
                n += 1;
                if n == 4 {
                    break;
                }
            }
        }
        const MASKS: [u32; 5] = [0, 0xff, 0xffff, 0xff_ffff, 0xffff_ffff];
        let (from, to) = self.by_last_byte[(tail & 0xff) as usize];
        let bucket = &self.sensitive_keys[usize::from(from)..usize::from(to)];
        let candidate = bucket
            .iter()
            .any(|s| s.tail_len <= n && tail & MASKS[s.tail_len] == s.tail);
        candidate && {
            let mut buf = [0; KEY_BUF];
            let k = normalize_key(key, &mut buf);
            bucket.iter().any(|s| k.ends_with(&s.name))
        }
    }

    fn walk(
        &self,
        value: ValueRef<'_>,
        at: &At,
        ctx: TextContext,
        spans: &mut Vec<Match>,
        out: &mut Vec<Finding>,
    ) {
        match value {
            ValueRef::String(s) => {
                spans.clear();
                detect::scan(s, ctx, spans);
                for m in spans.iter() {
                    out.push(Finding {
                        class: m.class,
                        path: at.pointer(),
                        span: Some((m.start, m.end)),
                    });
                }
            }
            ValueRef::Number(n) => {
                if let Some(u) = n.as_u64() {
                    if is_card_u64(u) {
                        out.push(Finding {
                            class: PiiClass::CreditCard,
                            path: at.pointer(),
                            span: None,
                        });
                    }
                }
            }
            ValueRef::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.walk(item.as_ref(), &At::Index(at, i), ctx, spans, out);
                }
            }
            ValueRef::Object(map) => {
                for (key, child) in map.iter() {
                    let here = At::Key(at, key);
                    let (sensitive, child_ctx) = self.key_context(key);
                    let child = child.as_ref();
                    if sensitive && holds_data(&child) {
                        out.push(Finding {
                            class: PiiClass::KeyName,
                            path: here.pointer(),
                            span: None,
                        });
                    }
                    self.walk(child, &here, child_ctx, spans, out);
                }
            }
            ValueRef::Null | ValueRef::Bool(_) => {}
        }
    }
}

fn ends_with_ci(hay: &[u8], suffix: &[u8]) -> bool {
    hay.len() >= suffix.len() && hay[hay.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
}

/// `key` without a suffix that repeats the secret named before it: a number (`password2`,
/// `cvv2`) or a confirmation (`password_confirmation`, `passwordConfirm`). `None` when there is
/// no such suffix, or nothing before it.
fn without_repeat_suffix(key: &str) -> Option<&str> {
    let raw = key.as_bytes();
    // Most keys end in neither a digit nor `confirm(ation)`: one byte tells.
    if !matches!(raw.last(), Some(b'0'..=b'9' | b'm' | b'M' | b'n' | b'N')) {
        return None;
    }
    let digits = raw.iter().rev().take_while(|c| c.is_ascii_digit()).count();
    let len = if digits > 0 {
        raw.len() - digits
    } else if ends_with_ci(raw, b"confirmation") {
        raw.len() - "confirmation".len()
    } else if ends_with_ci(raw, b"confirm") {
        raw.len() - "confirm".len()
    } else {
        return None;
    };
    // The suffix is ASCII, so `len` is a char boundary.
    (len > 0).then(|| &key[..len])
}

/// Dotted quads under this key are versions: it has a `version` (or `versions`) segment, or
/// ends in a `build` segment, by snake, kebab, dot or camelCase boundaries (`app_version`,
/// `OSVersion`, `appBuild`; not `conversion_ip`).
fn is_version_key(raw: &[u8]) -> bool {
    let build = raw.len() - raw.len().min(5);
    if ends_with_ci(raw, b"build") && detect::starts_segment(raw, build) {
        return true;
    }
    raw.windows(7).enumerate().any(|(p, w)| {
        (w[0] | 0x20) == b'v'
            && w.eq_ignore_ascii_case(b"version")
            && detect::starts_segment(raw, p)
            && (detect::ends_segment(raw, p + 7)
                || ((raw[p + 7] | 0x20) == b's' && detect::ends_segment(raw, p + 8)))
    })
}

fn holds_data(v: &ValueRef<'_>) -> bool {
    match v {
        ValueRef::Null | ValueRef::Bool(_) => false,
        ValueRef::String(s) => !s.is_empty(),
        ValueRef::Array(a) => !a.is_empty(),
        ValueRef::Object(o) => !o.is_empty(),
        ValueRef::Number(_) => true,
    }
}

fn is_card_u64(mut u: u64) -> bool {
    if u < 1_000_000_000_000 {
        return false;
    }
    let mut digits = [0u8; 20];
    let mut n = 0;
    while u > 0 {
        digits[n] = (u % 10) as u8;
        u /= 10;
        n += 1;
    }
    digits[..n].reverse();
    detect::is_card_number(&digits[..n])
}

/// What a destination does with each class, and the secret key for `hash`.
#[derive(Clone)]
pub struct PiiPolicy {
    actions: [PiiAction; PiiClass::ALL.len()],
    hasher: Hmac<Sha256>,
    /// `redact` and `drop_field` leave the identifiers alone (see [`IDENTIFIER_PATHS`]).
    pub keep_identifiers: bool,
}

impl fmt::Debug for PiiPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let actions: Vec<_> = PiiClass::ALL
            .iter()
            .map(|c| (c.as_str(), self.action(*c).as_str()))
            .collect();
        f.debug_struct("PiiPolicy")
            .field("actions", &actions)
            .finish_non_exhaustive()
    }
}

impl PiiPolicy {
    /// `default` applies to every class not listed in `actions`. A class listed twice is an
    /// error, and so is a `hash` action with a key shorter than [`MIN_HASH_KEY_BYTES`].
    pub fn new(
        default: PiiAction,
        actions: &[(PiiClass, PiiAction)],
        hmac_key: &[u8],
    ) -> Result<PiiPolicy, PiiError> {
        let mut table = [default; PiiClass::ALL.len()];
        let mut seen = [false; PiiClass::ALL.len()];
        for (class, action) in actions {
            let i = *class as usize;
            if seen[i] {
                return Err(PiiError::DuplicateClass(*class));
            }
            seen[i] = true;
            table[i] = *action;
        }
        if table.contains(&PiiAction::Hash) && hmac_key.len() < MIN_HASH_KEY_BYTES {
            return Err(PiiError::WeakHashKey {
                len: hmac_key.len(),
            });
        }
        let hasher =
            Hmac::<Sha256>::new_from_slice(hmac_key).expect("HMAC accepts keys of any length");
        Ok(PiiPolicy {
            actions: table,
            hasher,
            keep_identifiers: false,
        })
    }

    pub fn action(&self, class: PiiClass) -> PiiAction {
        self.actions[class as usize]
    }

    /// `hmac-sha256:<hex>` of the canonical form of a `class` value (see [`canonical_form`]),
    /// so one person's email or phone hashes alike however it was written.
    pub fn hash_pii(&self, class: PiiClass, text: &str) -> String {
        self.hash(&canonical_form(class, text))
    }

    /// `hmac-sha256:<hex>` of `text` under the policy's key.
    pub fn hash(&self, text: &str) -> String {
        let mut mac = self.hasher.clone();
        mac.update(text.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut out = String::with_capacity(12 + 64);
        out.push_str("hmac-sha256:");
        for byte in digest {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 15)]));
        }
        out
    }
}

/// The form of a detected value that is hashed, so that hashes work as join keys:
/// emails lowercased, with `%40` and `%2B` decoded (as found in URLs); phones as `+` and digits
/// (a bracketed trunk `(0)` after the country code dropped; North American numbers written
/// without a country code get `+1`); card numbers and SSNs as digits; IBANs uppercased without spaces;
/// IPv6 in its RFC 5952 text; everything else (IPv4, key-name values) unchanged.
pub fn canonical_form(class: PiiClass, text: &str) -> Cow<'_, str> {
    let digits = || text.chars().filter(char::is_ascii_digit);
    match class {
        PiiClass::Email => Cow::Owned(
            text.replace("%40", "@")
                .replace("%2B", "+")
                .replace("%2b", "+")
                .to_lowercase(),
        ),
        PiiClass::Phone => {
            let international = text.strip_prefix('+').or_else(|| {
                let plus = text.get(..3)?;
                plus.eq_ignore_ascii_case("%2B").then(|| &text[3..])
            });
            let d: String = match international {
                // A trunk prefix written after the country code (`+44 (0)20 ...`) is not
                // dialled from abroad: the number is the same without it.
                Some(number) => number
                    .replacen("(0)", "", 1)
                    .chars()
                    .filter(char::is_ascii_digit)
                    .collect(),
                None => digits().collect(),
            };
            let has_country_code = international.is_some() || (d.len() == 11 && d.starts_with('1'));
            Cow::Owned(if has_country_code {
                format!("+{d}")
            } else {
                format!("+1{d}")
            })
        }
        PiiClass::CreditCard | PiiClass::Ssn => Cow::Owned(digits().collect()),
        PiiClass::Iban => Cow::Owned(
            text.chars()
                .filter(char::is_ascii_alphanumeric)
                .map(|c| c.to_ascii_uppercase())
                .collect(),
        ),
        PiiClass::Ipv6 => match text.parse::<std::net::Ipv6Addr>() {
            Ok(addr) => Cow::Owned(addr.to_string()),
            Err(_) => Cow::Borrowed(text),
        },
        PiiClass::Ipv4 | PiiClass::KeyName => Cow::Borrowed(text),
    }
}

/// What [`apply`] did: whether the event must be blocked, and each action taken
/// (`allow` is not listed), as (class, action, JSON pointer).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub blocked: bool,
    pub actions: Vec<(PiiClass, PiiAction, String)>,
}

pub fn redaction_marker(class: PiiClass) -> String {
    format!("[REDACTED:{}]", class.as_str())
}

/// The identifiers of an event (`govern::ID_FIELDS`): the keys people are told apart and
/// joined by. Under a policy that [`PiiPolicy::keep_identifiers`] (the workspace's, whose
/// output feeds the identity graph, `users` and the regulations), `redact` and `drop_field`
/// leave them as they are: every redacted email would be the same text, so everyone with an
/// email for a user id would become one person, and suppression and deletion could no longer
/// find anyone. `hash` applies (a keyed hash still tells people apart and joins), and so does
/// `block_event`. A destination's own policy redacts them: who is who there comes from the
/// workspace pass.
pub const IDENTIFIER_PATHS: [&str; 4] = ["/userId", "/anonymousId", "/previousId", "/groupId"];

/// Carries out `policy` on `event` for `findings` (from [`PiiScanner::scan_event`] on this
/// event). See [`IDENTIFIER_PATHS`] for identifiers.
///
/// Per value, the strongest action wins: `block_event` > `drop_field` > `redact` > `hash`.
/// `block_event` only sets [`Applied::blocked`]; the other findings are still acted on, so a
/// blocked event that is kept for inspection holds no more PII than a delivered one.
/// `drop_field` removes an object key; an array element becomes `null` instead, so the indices
/// in the other findings stay valid. `redact`/`hash` replace only the matched spans of a string
/// (applied right to left so earlier offsets stay valid), or the whole value for whole-value
/// findings. Findings whose path or span no longer fits the event are skipped.
///
/// The changes are collected first and the event is rewritten once at the end, keeping every
/// object's key order: a `sonic_rs` object mutated in place becomes a hash map and loses its
/// order. An event nothing is done to is left untouched.
pub fn apply(event: &mut Value, findings: &[Finding], policy: &PiiPolicy) -> Applied {
    let mut applied = Applied::default();
    let mut order: Vec<&Finding> = findings
        .iter()
        .filter(|f| match policy.action(f.class) {
            PiiAction::Allow => false,
            PiiAction::Redact | PiiAction::DropField => {
                !(policy.keep_identifiers && IDENTIFIER_PATHS.contains(&f.path.as_str()))
            }
            PiiAction::Hash | PiiAction::BlockEvent => true,
        })
        .collect();
    if order.is_empty() {
        return applied;
    }
    // Deepest paths first, so acting on a parent cannot hide a child's finding.
    order.sort_by(|a, b| {
        let depth = |f: &Finding| f.path.bytes().filter(|c| *c == b'/').count();
        depth(b).cmp(&depth(a)).then_with(|| a.path.cmp(&b.path))
    });
    let mut edits = Edit::Nested(Vec::new());
    let mut changed = false;
    let mut rest = &order[..];
    while let Some(first) = rest.first() {
        let n = rest.iter().take_while(|f| f.path == first.path).count();
        let (group, tail) = rest.split_at(n);
        rest = tail;
        changed |= apply_to_value(event, &mut edits, group, policy, &mut applied);
    }
    if changed {
        let mut text = Vec::with_capacity(1024);
        write_json(event, Some(&edits), Format::Fast, &mut text);
        *event = sonic_rs::from_slice(&text).expect("a rewritten event is valid JSON");
    }
    applied
}

/// A step from a container to one of its values.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

/// The changes made so far at one place of the event, over its original value.
#[derive(Debug)]
enum Edit {
    /// The value itself is kept; the listed values under it changed.
    Nested(Vec<(Step, Edit)>),
    /// Replaced by this string.
    Text(String),
    /// An array element dropped: it is now `null`.
    Null,
    /// An object member dropped.
    Removed,
}

/// A place of the event as it stands after the changes so far.
enum Current<'a> {
    /// The original value, with the changes under it.
    Value(&'a Value, Option<&'a Edit>),
    Text(&'a str),
    Null,
}

fn current<'a>(value: &'a Value, edit: Option<&'a Edit>) -> Option<Current<'a>> {
    match edit {
        None | Some(Edit::Nested(_)) => Some(Current::Value(value, edit)),
        Some(Edit::Text(s)) => Some(Current::Text(s)),
        Some(Edit::Null) => Some(Current::Null),
        Some(Edit::Removed) => None,
    }
}

fn child_edit<'a>(edit: Option<&'a Edit>, step: &Step) -> Option<&'a Edit> {
    match edit {
        Some(Edit::Nested(children)) => children.iter().find(|(s, _)| s == step).map(|(_, e)| e),
        _ => None,
    }
}

/// Resolves a JSON pointer in the event as changed so far: the steps to it and its value.
fn resolve<'a>(event: &'a Value, edits: &'a Edit, path: &str) -> Option<(Vec<Step>, Current<'a>)> {
    let mut steps = Vec::new();
    let mut cur = current(event, Some(edits))?;
    if path.is_empty() {
        return Some((steps, cur));
    }
    for token in path.strip_prefix('/')?.split('/') {
        let Current::Value(value, edit) = cur else {
            return None;
        };
        let (step, child) = match value.as_ref() {
            ValueRef::Object(map) => {
                let key = if token.contains('~') {
                    token.replace("~1", "/").replace("~0", "~")
                } else {
                    token.to_owned()
                };
                let child = map.get(&key.as_str())?;
                (Step::Key(key), child)
            }
            ValueRef::Array(items) => {
                let i = token.parse::<usize>().ok()?;
                (Step::Index(i), items.get(i)?)
            }
            _ => return None,
        };
        cur = current(child, child_edit(edit, &step))?;
        steps.push(step);
    }
    Some((steps, cur))
}

/// Records `new` as the value at `steps`, replacing any earlier changes there.
fn set(mut edit: &mut Edit, steps: &[Step], new: Edit) {
    for step in steps {
        if !matches!(edit, Edit::Nested(_)) {
            *edit = Edit::Nested(Vec::new());
        }
        let Edit::Nested(children) = edit else {
            unreachable!("made nested above")
        };
        let i = match children.iter().position(|(s, _)| s == step) {
            Some(i) => i,
            None => {
                children.push((step.clone(), Edit::Nested(Vec::new())));
                children.len() - 1
            }
        };
        edit = &mut children[i].1;
    }
    *edit = new;
}

/// Acts on the findings of one path; returns whether the event changed.
fn apply_to_value(
    event: &Value,
    edits: &mut Edit,
    group: &[&Finding],
    policy: &PiiPolicy,
    applied: &mut Applied,
) -> bool {
    let path = group[0].path.as_str();
    let record = |applied: &mut Applied, f: &Finding, action: PiiAction| {
        applied.actions.push((f.class, action, f.path.clone()));
    };
    for f in group
        .iter()
        .filter(|f| policy.action(f.class) == PiiAction::BlockEvent)
    {
        applied.blocked = true;
        record(applied, f, PiiAction::BlockEvent);
    }
    let Some((steps, target)) = resolve(event, edits, path) else {
        return false;
    };

    let acting = || {
        group.iter().copied().filter(|f| {
            matches!(
                policy.action(f.class),
                PiiAction::DropField | PiiAction::Redact | PiiAction::Hash
            )
        })
    };
    let strongest_whole = acting()
        .filter(|f| f.span.is_none() || policy.action(f.class) == PiiAction::DropField)
        .max_by_key(|f| policy.action(f.class).strength());

    if let Some(whole) = strongest_whole {
        let action = policy.action(whole.class);
        let new = match action {
            // The key leaves its object; an array element becomes null. The root stays.
            PiiAction::DropField => match steps.last() {
                None => return false,
                Some(Step::Key(_)) => Edit::Removed,
                Some(Step::Index(_)) => Edit::Null,
            },
            PiiAction::Redact => Edit::Text(redaction_marker(whole.class)),
            _ => Edit::Text(match target {
                Current::Text(s) => policy.hash_pii(whole.class, s),
                Current::Value(value, edit) => match value.as_str() {
                    Some(s) => policy.hash_pii(whole.class, s),
                    // A whole non-string value hashes its JSON text.
                    None => {
                        let mut text = Vec::new();
                        write_json(value, edit, Format::SerdeJson, &mut text);
                        let text = String::from_utf8(text).expect("JSON text is UTF-8");
                        policy.hash_pii(whole.class, &text)
                    }
                },
                Current::Null => policy.hash_pii(whole.class, "null"),
            }),
        };
        set(edits, &steps, new);
        for f in acting() {
            record(applied, f, action);
        }
        return true;
    }

    let text = match target {
        Current::Text(s) => s,
        Current::Value(value, _) => match value.as_str() {
            Some(s) => s,
            None => return false,
        },
        Current::Null => return false,
    };
    let mut spans: Vec<(usize, usize, &Finding)> = acting()
        .filter_map(|f| f.span.map(|(s, e)| (s, e, f)))
        .filter(|(s, e, _)| {
            s < e && *e <= text.len() && text.is_char_boundary(*s) && text.is_char_boundary(*e)
        })
        .collect();
    if spans.is_empty() {
        return false;
    }
    spans.sort_by(|a, b| a.0.cmp(&b.0).then((b.1 - b.0).cmp(&(a.1 - a.0))));
    let mut last_end = 0;
    spans.retain(|(s, e, _)| {
        let keep = *s >= last_end;
        if keep {
            last_end = *e;
        }
        keep
    });
    let mut text = text.to_owned();
    for (s, e, f) in spans.iter().rev() {
        let action = policy.action(f.class);
        let replacement = match action {
            PiiAction::Redact => redaction_marker(f.class),
            _ => policy.hash_pii(f.class, &text[*s..*e]),
        };
        text.replace_range(*s..*e, &replacement);
        record(applied, f, action);
    }
    set(edits, &steps, Edit::Text(text));
    true
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    /// Byte for byte what `serde_json::to_string` writes: the text hashed for a whole
    /// non-string value.
    SerdeJson,
    /// Any valid JSON of the same value: unchanged parts are written by `sonic_rs`.
    Fast,
}

/// Writes `value` with `edit` applied as compact JSON text.
fn write_json(value: &Value, edit: Option<&Edit>, format: Format, out: &mut Vec<u8>) {
    match edit {
        Some(Edit::Text(s)) => return crate::json::write_str(out, s),
        Some(Edit::Null | Edit::Removed) => return out.extend_from_slice(b"null"),
        Some(Edit::Nested(_)) => {}
        None if format == Format::Fast => {
            return sonic_rs::to_writer(&mut *out, value)
                .expect("writing a Value to a Vec cannot fail");
        }
        None => {}
    }
    match value.as_ref() {
        ValueRef::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                let e = child_edit(edit, &Step::Index(i));
                write_json(item, e, format, out);
            }
            out.push(b']');
        }
        ValueRef::Object(map) => {
            out.push(b'{');
            let mut first = true;
            for (key, item) in map.iter() {
                let e = match edit {
                    Some(Edit::Nested(children)) => children
                        .iter()
                        .find(|(s, _)| matches!(s, Step::Key(k) if k == key))
                        .map(|(_, e)| e),
                    _ => None,
                };
                if matches!(e, Some(Edit::Removed)) {
                    continue;
                }
                if !first {
                    out.push(b',');
                }
                first = false;
                crate::json::write_str(out, key);
                out.push(b':');
                write_json(item, e, format, out);
            }
            out.push(b'}');
        }
        // Scalars: the text `serde_json` writes (numbers, escapes), as everywhere else.
        _ => crate::json::write(out, value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use sonic_rs::JsonContainerTrait;

    /// An event as the pipeline holds it: parsed from JSON text, keys in document order.
    fn doc(v: serde_json::Value) -> Value {
        sonic_rs::from_str(&v.to_string()).unwrap()
    }

    /// The JSON text of an event; comparing texts also checks key order.
    fn text(v: &Value) -> String {
        sonic_rs::to_string(v).unwrap()
    }

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    type Summary = (PiiClass, String, Option<(usize, usize)>);

    fn findings(event: &Value) -> Vec<Summary> {
        let mut out = Vec::new();
        PiiScanner::default().scan_event(event, &mut out);
        out.into_iter().map(|f| (f.class, f.path, f.span)).collect()
    }

    fn policy(default: PiiAction, actions: &[(PiiClass, PiiAction)]) -> PiiPolicy {
        PiiPolicy::new(default, actions, KEY).unwrap()
    }

    fn scan_and_apply(event: &mut Value, policy: &PiiPolicy) -> Applied {
        let mut found = Vec::new();
        PiiScanner::default().scan_event(event, &mut found);
        apply(event, &found, policy)
    }

    #[test]
    fn scanner_and_policy_can_be_shared_across_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<PiiScanner>();
        send_sync::<PiiPolicy>();
    }

    #[test]
    fn names_round_trip() {
        for c in PiiClass::ALL {
            assert_eq!(c.as_str().parse::<PiiClass>().unwrap(), c);
        }
        for a in PiiAction::ALL {
            assert_eq!(a.as_str().parse::<PiiAction>().unwrap(), a);
        }
        assert!(matches!(
            "phone_number".parse::<PiiClass>(),
            Err(PiiError::UnknownClass(_))
        ));
        assert!("Redact"
            .parse::<PiiAction>()
            .unwrap_err()
            .to_string()
            .contains("known actions are"));
    }

    #[test]
    fn key_names_match_by_normalised_suffix() {
        let s = PiiScanner::default();
        for k in [
            "password",
            "newPassword",
            "X-API-Key",
            "csrf_token",
            "user.ssn",
            "CARD NUMBER",
            "authToken",
        ] {
            assert!(s.is_sensitive_key(k), "{k}");
        }
        for k in [
            "token_count",
            "password_updated_at",
            "email",
            "shipping",
            "username",
            "",
        ] {
            assert!(!s.is_sensitive_key(k), "{k}");
        }
        // A name followed by a number or a confirmation suffix is the same secret.
        for k in [
            "secretKey",
            "secret_key",
            "stripe_secret_key",
            "password_confirmation",
            "passwordConfirm",
            "password2",
            "cvv2",
            "cvc2",
            "security_code",
            "new_password_confirm",
        ] {
            assert!(s.is_sensitive_key(k), "{k}");
        }
        for k in [
            "secretary",
            "tokenizer_version",
            "password_confirmed_at",
            "token_count2",
            "confirm",
            "2",
        ] {
            assert!(!s.is_sensitive_key(k), "{k}");
        }
        let custom = PiiScanner::new(&["Mother's Maiden-Name".to_owned()]);
        assert!(custom.is_sensitive_key("Mother's maiden name"));
        assert!(!PiiScanner::new::<&str>(&[]).is_sensitive_key("password"));
        let long = format!("{}password", "x".repeat(200));
        assert!(s.is_sensitive_key(&long));
    }

    #[test]
    fn version_keys_are_whole_segments() {
        let s = PiiScanner::default();
        for k in [
            "version",
            "app_version",
            "appVersion",
            "OSVersion",
            "os-version",
            "context.version",
            "versionName",
            "VERSION_CODE",
            "versions",
            "build",
            "appBuild",
            "app_build",
        ] {
            assert!(s.key_context(k).1.version_key, "{k}");
        }
        for k in [
            "conversion_ip",
            "last_conversion_source",
            "CONVERSION_IP",
            "inversion",
            "aversion",
            "rebuild",
            "ip",
        ] {
            assert!(!s.key_context(k).1.version_key, "{k}");
        }
        let event = doc(json!({"conversion_ip": "203.0.113.77", "app_version": "10.4.22.1"}));
        assert_eq!(
            findings(&event),
            vec![(PiiClass::Ipv4, "/conversion_ip".into(), Some((0, 12)))]
        );
    }

    #[test]
    fn scan_event_walks_everything() {
        let event = doc(json!({
            "type": "identify",
            "userId": "u_123",
            "traits": {
                "email": "jane@example.com",
                "password": "hunter2",
                "token_count": 12,
                "addresses": [{"note": "call +44 20 7946 0958"}, {"ip": "10.1.2.3"}],
                "cards": [4111111111111111u64, 1234],
                "api_key": null,
                "a/b": "x@y.io"
            },
            "context": {"app": {"version": "10.4.22.1"}, "ip": "2001:db8::1"}
        }));
        assert_eq!(
            findings(&event),
            vec![
                (PiiClass::Email, "/traits/email".into(), Some((0, 16))),
                (PiiClass::KeyName, "/traits/password".into(), None),
                (
                    PiiClass::Phone,
                    "/traits/addresses/0/note".into(),
                    Some((5, 21))
                ),
                (
                    PiiClass::Ipv4,
                    "/traits/addresses/1/ip".into(),
                    Some((0, 8))
                ),
                (PiiClass::CreditCard, "/traits/cards/0".into(), None),
                (PiiClass::Email, "/traits/a~1b".into(), Some((0, 6))),
                (PiiClass::Ipv6, "/context/ip".into(), Some((0, 11))),
            ]
        );
    }

    #[test]
    fn nothing_found_in_ordinary_events() {
        let event = doc(json!({
            "type": "track", "event": "Order Completed", "messageId": "123e4567-e89b-12d3-a456-426614174000",
            "timestamp": "2026-11-26T05:32:00.123Z", "anonymousId": "a9f0c6b2-1c1e-4f7e-9d1a-0b7c2f3e4d5a",
            "properties": {"order_id": "ORD-2026-000123", "total": 1299.99, "sku": "SKU-4821-BLK-XL",
                           "quantity": 3, "coupon": null, "created": 1764135120, "created_ms": 1764135120123u64},
            "context": {"library": {"name": "analytics.js", "version": "1.2.3"},
                        "userAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36",
                        "page": {"url": "https://shop.example.com/p/4821?ref=home"}}
        }));
        assert_eq!(findings(&event), vec![]);
    }

    #[test]
    fn redact_replaces_only_spans_right_to_left() {
        let mut event =
            doc(json!({"note": "mail jane@example.com or +44 20 7946 0958, ip 10.0.0.1"}));
        let applied = scan_and_apply(&mut event, &policy(PiiAction::Redact, &[]));
        assert_eq!(
            event["note"],
            "mail [REDACTED:email] or [REDACTED:phone], ip [REDACTED:ipv4]"
        );
        assert!(!applied.blocked);
        let classes: Vec<_> = applied.actions.iter().map(|a| a.0).collect();
        assert_eq!(classes, [PiiClass::Ipv4, PiiClass::Phone, PiiClass::Email]);
    }

    #[test]
    fn escaped_paths_resolve() {
        let mut event =
            doc(json!({"a/b~c": {"list": ["x", "jane@example.com"]}, "k~1": "10.0.0.1"}));
        let p = policy(PiiAction::Redact, &[(PiiClass::Ipv4, PiiAction::DropField)]);
        let applied = scan_and_apply(&mut event, &p);
        assert_eq!(
            text(&event),
            json!({"a/b~c": {"list": ["x", "[REDACTED:email]"]}}).to_string()
        );
        assert_eq!(applied.actions[0].2, "/a~1b~0c/list/1");
    }

    #[test]
    fn hash_is_keyed_and_deterministic() {
        let p = policy(PiiAction::Allow, &[(PiiClass::Email, PiiAction::Hash)]);
        let mut a = doc(json!({"email": "Contact: jane@example.com"}));
        scan_and_apply(&mut a, &p);
        let hashed = a["email"].as_str().unwrap();
        assert!(hashed.starts_with("Contact: hmac-sha256:"), "{hashed}");
        assert_eq!(hashed.len(), "Contact: hmac-sha256:".len() + 64);
        // RFC 4231 test case 2 pins the construction (HMAC-SHA256, not a bare or salted hash).
        let rfc = PiiPolicy::new(PiiAction::Allow, &[], b"Jefe").unwrap();
        assert_eq!(
            rfc.hash("what do ya want for nothing?"),
            "hmac-sha256:5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Equal values written differently hash alike.
        for (class, a, b) in [
            (PiiClass::Email, "Jane@Example.COM", "jane@example.com"),
            (PiiClass::Phone, "+1 (415) 555-0123", "415.555.0123"),
            (PiiClass::Phone, "1-415-555-0123", "+14155550123"),
            (
                PiiClass::CreditCard,
                "4111 1111 1111 1111",
                "4111-1111-1111-1111",
            ),
            (
                PiiClass::Iban,
                "de89 3704 0044 0532 0130 00",
                "DE89370400440532013000",
            ),
            (PiiClass::Ipv6, "2001:DB8:0:0:0:0:0:1", "2001:db8::1"),
        ] {
            assert_eq!(p.hash_pii(class, a), p.hash_pii(class, b), "{a} / {b}");
        }
        // The trunk prefix written after the country code, and percent-encoded `@` and `+`.
        for (class, a, b) in [
            (PiiClass::Phone, "+44 20 7946 0958", "+44 (0)20 7946 0958"),
            (PiiClass::Phone, "+49 30 1234567", "+49(0)30 1234567"),
            (PiiClass::Phone, "%2B14155550123", "+1 415 555 0123"),
            (
                PiiClass::Email,
                "jane%2Btag%40Example.com",
                "jane+tag@example.com",
            ),
            (PiiClass::Email, "Müller@Example.de", "müller@example.de"),
        ] {
            assert_eq!(p.hash_pii(class, a), p.hash_pii(class, b), "{a} / {b}");
        }
        assert_ne!(
            p.hash_pii(PiiClass::Phone, "+44 20 7946 0958"),
            p.hash_pii(PiiClass::Phone, "020 7946 0958")
        );
        assert_eq!(p.hash_pii(PiiClass::Ipv4, "10.0.0.1"), p.hash("10.0.0.1"));
        let other = PiiPolicy::new(
            PiiAction::Allow,
            &[(PiiClass::Email, PiiAction::Hash)],
            &[7u8; 32],
        )
        .unwrap();
        assert_ne!(other.hash("jane@example.com"), p.hash("jane@example.com"));
        assert_eq!(p.hash("jane@example.com"), p.hash("jane@example.com"));
    }

    #[test]
    fn whole_value_actions_and_drop_field() {
        let mut event = doc(
            json!({"traits": {"password": "hunter2", "pin_code": 1234, "phones": ["+1 415 555 0123", "n/a"],
                                          "email": "jane@example.com"}}),
        );
        let p = policy(
            PiiAction::Allow,
            &[
                (PiiClass::KeyName, PiiAction::Redact),
                (PiiClass::Phone, PiiAction::DropField),
                (PiiClass::Email, PiiAction::DropField),
            ],
        );
        let applied = scan_and_apply(&mut event, &p);
        assert_eq!(
            text(&event),
            json!({"traits": {"password": "[REDACTED:key_name]", "pin_code": "[REDACTED:key_name]", "phones": [null, "n/a"]}}).to_string()
        );
        assert_eq!(applied.actions.len(), 4);
        // Hashing a whole non-string value hashes its JSON text.
        let mut event = doc(json!({"cvv": 123}));
        scan_and_apply(
            &mut event,
            &policy(PiiAction::Allow, &[(PiiClass::KeyName, PiiAction::Hash)]),
        );
        assert_eq!(event["cvv"], p.hash("123"));
    }

    #[test]
    fn strongest_action_wins_per_value() {
        // The key-name rule and the SSN detector both fire on one value.
        let mut event = doc(json!({"ssn": "ssn 123-45-6789"}));
        let p = policy(
            PiiAction::Allow,
            &[
                (PiiClass::KeyName, PiiAction::Hash),
                (PiiClass::Ssn, PiiAction::Redact),
            ],
        );
        let applied = scan_and_apply(&mut event, &p);
        assert!(event["ssn"].as_str().unwrap().starts_with("hmac-sha256:"));
        assert_eq!(applied.actions.len(), 2);
        let mut event = doc(json!({"ssn": "ssn 123-45-6789"}));
        let p = policy(
            PiiAction::Allow,
            &[
                (PiiClass::KeyName, PiiAction::Allow),
                (PiiClass::Ssn, PiiAction::Redact),
            ],
        );
        scan_and_apply(&mut event, &p);
        assert_eq!(event["ssn"], "ssn [REDACTED:ssn]");
    }

    #[test]
    fn block_event_marks_and_still_redacts() {
        let mut event = doc(json!({"card": "4111 1111 1111 1111", "email": "jane@example.com"}));
        let p = policy(
            PiiAction::Redact,
            &[(PiiClass::CreditCard, PiiAction::BlockEvent)],
        );
        let applied = scan_and_apply(&mut event, &p);
        assert!(applied.blocked);
        assert_eq!(event["email"], "[REDACTED:email]");
        assert!(applied.actions.contains(&(
            PiiClass::CreditCard,
            PiiAction::BlockEvent,
            "/card".into()
        )));
    }

    #[test]
    fn allow_and_stale_findings_change_nothing() {
        let original = doc(json!({"email": "jane@example.com", "list": [1]}));
        let mut event = original.clone();
        let applied = scan_and_apply(&mut event, &policy(PiiAction::Allow, &[]));
        assert_eq!((event.clone(), applied), (original, Applied::default()));
        let stale = [
            Finding {
                class: PiiClass::Email,
                path: "/missing".into(),
                span: None,
            },
            Finding {
                class: PiiClass::Email,
                path: "/email".into(),
                span: Some((10, 99)),
            },
            Finding {
                class: PiiClass::Email,
                path: "/list/5".into(),
                span: None,
            },
        ];
        for default in [PiiAction::Redact, PiiAction::Hash] {
            assert_eq!(
                apply(&mut event, &stale, &policy(default, &[])).actions,
                vec![]
            );
        }
        // drop_field acts on the field, so only the unresolvable paths are skipped.
        let applied = apply(&mut event, &stale, &policy(PiiAction::DropField, &[]));
        assert_eq!(
            applied.actions,
            vec![(PiiClass::Email, PiiAction::DropField, "/email".to_owned())]
        );
        assert_eq!(text(&event), json!({"list": [1]}).to_string());
    }

    #[test]
    fn policy_errors() {
        let err = PiiPolicy::new(
            PiiAction::Allow,
            &[(PiiClass::Email, PiiAction::Hash)],
            b"short",
        )
        .unwrap_err();
        assert!(err.to_string().contains("at least 16 bytes"), "{err}");
        assert!(PiiPolicy::new(PiiAction::Redact, &[], b"").is_ok());
        let dup = PiiPolicy::new(
            PiiAction::Allow,
            &[
                (PiiClass::Ssn, PiiAction::Redact),
                (PiiClass::Ssn, PiiAction::Hash),
            ],
            KEY,
        );
        assert!(matches!(dup, Err(PiiError::DuplicateClass(PiiClass::Ssn))));
        let p = policy(PiiAction::Redact, &[(PiiClass::Ipv4, PiiAction::Allow)]);
        assert_eq!(
            (p.action(PiiClass::Ipv4), p.action(PiiClass::Iban)),
            (PiiAction::Allow, PiiAction::Redact)
        );
        assert!(!format!("{p:?}").contains("0123456789abcdef"));
    }

    #[test]
    fn debug_output_holds_no_values() {
        let event = doc(json!({"email": "jane@example.com", "password": "hunter2"}));
        let mut out = Vec::new();
        PiiScanner::default().scan_event(&event, &mut out);
        let debug = format!("{out:?}");
        assert!(
            !debug.contains("jane") && !debug.contains("hunter2"),
            "{debug}"
        );
    }

    #[test]
    fn apply_keeps_key_order() {
        let original = json!({"z": 1, "type": "identify", "traits": {"b": 2, "email": "jane@example.com",
            "a": [3, {"y": "call +44 20 7946 0958", "x": 1.5}], "password": "hunter2"}, "m": {"q": true, "p": null}});
        let mut event = doc(original.clone());
        let p = policy(
            PiiAction::Redact,
            &[(PiiClass::KeyName, PiiAction::DropField)],
        );
        let applied = scan_and_apply(&mut event, &p);
        assert_eq!(applied.actions.len(), 3);
        let mut expected = original;
        expected["traits"]["email"] = json!("[REDACTED:email]");
        expected["traits"]["a"][1]["y"] = json!("call [REDACTED:phone]");
        expected["traits"]
            .as_object_mut()
            .unwrap()
            .shift_remove("password");
        assert_eq!(text(&event), expected.to_string());
        // The rewritten event is an ordinary parsed document: later reads see document order.
        let keys: Vec<&str> = event.as_object().unwrap().iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["z", "type", "traits", "m"]);
    }

    #[test]
    fn whole_container_hash_sees_earlier_changes() {
        // Deeper paths are acted on first, so a hashed object is hashed as already redacted,
        // and its JSON text is written as serde_json writes it.
        let mut event = doc(
            json!({"secret": {"email": "jane@example.com", "n": 1.5, "big": 1e300,
            "neg": -7, "s": "tab\t quote\" nl\n \u{1} é 😀 </", "list": [null, true, 4111111111111111u64]}}),
        );
        let p = policy(PiiAction::Redact, &[(PiiClass::KeyName, PiiAction::Hash)]);
        let applied = scan_and_apply(&mut event, &p);
        let after_redaction = json!({"email": "[REDACTED:email]", "n": 1.5, "big": 1e300, "neg": -7,
            "s": "tab\t quote\" nl\n \u{1} é 😀 </", "list": [null, true, "[REDACTED:credit_card]"]});
        assert_eq!(event["secret"], p.hash(&after_redaction.to_string()));
        assert_eq!(
            applied.actions,
            vec![
                (
                    PiiClass::CreditCard,
                    PiiAction::Redact,
                    "/secret/list/2".to_owned()
                ),
                (
                    PiiClass::Email,
                    PiiAction::Redact,
                    "/secret/email".to_owned()
                ),
                (PiiClass::KeyName, PiiAction::Hash, "/secret".to_owned()),
            ]
        );
    }

    #[test]
    fn json_text_is_written_as_serde_json_writes_it() {
        let value = json!({"a": [1, -1, 0, 1.5, -0.25, 1e21, 1e-7, 123456789.125, u64::MAX, i64::MIN,
            0.1, 2.5e-300, true, false, null], "s": "\u{0}\u{1f}\u{7f}\"\\/\u{8}\u{c}\n\r\t é 😀",
            "k\"ey\n": {}, "e": [], "n": {"x": [[]]}});
        let mut out = Vec::new();
        write_json(&doc(value.clone()), None, Format::SerdeJson, &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), value.to_string());
        let mut fast = Vec::new();
        write_json(&doc(value.clone()), None, Format::Fast, &mut fast);
        let reparsed: Value = sonic_rs::from_slice(&fast).unwrap();
        assert_eq!(text(&reparsed), text(&doc(value)));
    }

    #[test]
    fn drops_in_arrays_and_under_changed_parents() {
        let mut event = doc(
            json!({"list": ["jane@example.com", "ok", {"ip": "10.0.0.1", "keep": 1}],
                                   "k": "v"}),
        );
        let p = policy(PiiAction::DropField, &[(PiiClass::Ipv4, PiiAction::Redact)]);
        scan_and_apply(&mut event, &p);
        assert_eq!(
            text(&event),
            json!({"list": [null, "ok", {"ip": "[REDACTED:ipv4]", "keep": 1}], "k": "v"})
                .to_string()
        );
        // A parent dropped after its child was changed goes, child and all.
        let mut event = doc(json!({"a": {"password": {"email": "jane@example.com"}}, "b": 1}));
        let p = policy(
            PiiAction::Redact,
            &[(PiiClass::KeyName, PiiAction::DropField)],
        );
        let applied = scan_and_apply(&mut event, &p);
        assert_eq!(text(&event), json!({"a": {}, "b": 1}).to_string());
        assert_eq!(applied.actions.len(), 2);
    }

    #[test]
    fn a_scalar_event_root() {
        let mut event = doc(json!("mail jane@example.com"));
        let applied = scan_and_apply(&mut event, &policy(PiiAction::Redact, &[]));
        assert_eq!(event, "mail [REDACTED:email]");
        assert_eq!(applied.actions[0].2, "");
        // The root cannot be dropped: nothing is done and nothing recorded.
        let mut event = doc(json!(4111111111111111u64));
        let applied = scan_and_apply(&mut event, &policy(PiiAction::DropField, &[]));
        assert_eq!(
            (text(&event), applied),
            ("4111111111111111".to_owned(), Applied::default())
        );
        let mut event = doc(json!(4111111111111111u64));
        let p = policy(PiiAction::Hash, &[]);
        scan_and_apply(&mut event, &p);
        assert_eq!(event, p.hash_pii(PiiClass::CreditCard, "4111111111111111"));
    }

    #[test]
    fn card_numbers_as_json_numbers() {
        assert!(is_card_u64(4111111111111111));
        assert!(is_card_u64(378282246310005));
        assert!(!is_card_u64(4111111111111112));
        assert!(!is_card_u64(1764135120123));
        assert!(!is_card_u64(u64::MAX));
    }
}
