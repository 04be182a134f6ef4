//! Policy applied to each accepted event of a batch: the source's tracking plan (drop or forward
//! by violation type, RudderStack's semantics) and PII detection with the configured actions.

use sonic_rs::{JsonContainerTrait, JsonValueTrait, Object, Value, ValueRef};
use std::collections::HashMap;
use std::sync::Arc;

use crate::json;
use crate::pii::{self, Finding, PiiAction, PiiClass, PiiPolicy, PiiScanner};
use crate::plan::{TrackingPlan, Violation, ViolationKind};

/// What a source's events are checked against, and which violation types drop an event.
#[derive(Clone)]
pub struct SourcePolicy {
    pub plan: Arc<TrackingPlan>,
    /// Indexed like `ViolationKind::ALL`; `true` = drop, `false` = forward.
    pub drop: [bool; 6],
}

pub struct Governance {
    pub sources: HashMap<String, SourcePolicy>,
    pub pii: Option<(PiiScanner, PiiPolicy)>,
    /// Lower-case `userId`/`anonymousId`/`previousId`/`groupId` values that are email addresses.
    pub lowercase_email_ids: bool,
}

impl Default for Governance {
    fn default() -> Self {
        Governance { sources: HashMap::new(), pii: None, lowercase_email_ids: true }
    }
}

/// A usable identifier: a non-blank string, or a number (some SDKs send numeric user ids).
/// (`ingest::has_identifier` over the collector's documents.)
pub fn has_identifier(v: Option<&Value>) -> bool {
    match v.map(Value::as_ref) {
        Some(ValueRef::String(s)) => !s.trim().is_empty(),
        Some(ValueRef::Number(_)) => true,
        _ => false,
    }
}

/// Identifier fields normalised before anything else looks at them.
pub const ID_FIELDS: [&str; 4] = ["userId", "anonymousId", "previousId", "groupId"];

/// Identifiers are trimmed, and lower-cased when they are email addresses and
/// `lowercase_emails`: `" Ana@Example.com "` and `"ana@example.com"` are one person to every
/// destination. `id` normalised, or `None` when that leaves it unchanged. (`batch.rs` applies it
/// to [`ID_FIELDS`] when it stamps events, before anything else looks at them.)
pub fn normalized_id(id: &str, lowercase_emails: bool) -> Option<String> {
    let trimmed = id.trim();
    let is_email = lowercase_emails && trimmed.contains('@') && trimmed.rsplit('@').next().is_some_and(|d| d.contains('.'));
    if is_email && trimmed.chars().any(char::is_uppercase) {
        Some(trimmed.to_lowercase())
    } else if trimmed.len() != id.len() {
        Some(trimmed.to_string())
    } else {
        None
    }
}

/// The outcome for one event.
pub enum Verdict<'g> {
    Pass { lineage: Lineage<'g> },
    Drop { reason: &'static str, detail: String },
}

#[derive(Default)]
pub struct Lineage<'g> {
    /// `class:action` of every PII action taken, e.g. `email:redact`.
    pub pii_actions: Vec<String>,
    pub violations: usize,
    /// The tracking plan's `context` fields, when they were not written into the event: they
    /// belong after the members of its `context` (see [`Governance::apply`]).
    pub plan_context: Option<PlanContext<'g>>,
}

/// `context.trackingPlanId`, `trackingPlanVersion` and (with violations) `violationErrors`.
#[derive(Clone, Debug)]
pub struct PlanContext<'g> {
    pub id: &'g str,
    pub version: i64,
    /// JSON text of the violations array.
    pub violation_errors: Option<String>,
}

fn kind_index(kind: ViolationKind) -> usize {
    ViolationKind::ALL.iter().position(|k| *k == kind).unwrap_or(ViolationKind::ALL.len() - 1)
}

/// The JSON text of violations, as `context.violationErrors` holds them.
fn violations_json<'v>(violations: impl Iterator<Item = &'v Violation>) -> String {
    let mut out = Vec::with_capacity(256);
    out.push(b'[');
    for (i, v) in violations.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"type\":");
        json::write_str(&mut out, v.kind.as_str());
        out.extend_from_slice(b",\"message\":");
        json::write_str(&mut out, &v.message);
        out.extend_from_slice(b",\"property\":");
        json::write_str(&mut out, &v.property);
        out.extend_from_slice(b",\"meta\":{\"instancePath\":");
        json::write_str(&mut out, &v.instance_path);
        out.extend_from_slice(b",\"schemaPath\":");
        json::write_str(&mut out, &v.schema_path);
        out.extend_from_slice(b"}}");
    }
    out.push(b']');
    String::from_utf8(out).expect("JSON text is UTF-8")
}

const PLAN_CONTEXT_KEYS: [&str; 3] = ["trackingPlanId", "trackingPlanVersion", "violationErrors"];

/// `event` with `context.trackingPlanId` / `trackingPlanVersion` (/ `violationErrors`, JSON
/// text) set: a key already there keeps its place, a new one goes last; a `context` that is not
/// an object is replaced by one (at its place), an absent one is added last.
///
/// Written out and parsed back rather than changed in place: sonic-rs turns an object it
/// changes into a hash map, in a random order; a parsed document keeps the order of its text,
/// so what reads the event next (PII scan and actions, warehouse columns) sees its keys in the
/// order `serde_json` with `preserve_order` would have.
fn stamped_with_plan_context(event: &Value, id: &str, version: i64, errors: Option<&str>) -> Value {
    let event = event.as_object().expect("events are objects");
    let mut out = Vec::with_capacity(2048);
    out.push(b'{');
    let mut has_context = false;
    for (i, (k, v)) in event.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        json::write_str(&mut out, k);
        out.push(b':');
        if k == "context" {
            has_context = true;
            write_plan_context(&mut out, v.as_object(), id, version, errors);
        } else {
            json::write(&mut out, v);
        }
    }
    if !has_context {
        if !event.is_empty() {
            out.push(b',');
        }
        out.extend_from_slice(b"\"context\":");
        write_plan_context(&mut out, None, id, version, errors);
    }
    out.push(b'}');
    sonic_rs::from_slice(&out).expect("written as JSON above")
}

fn write_plan_context(out: &mut Vec<u8>, context: Option<&Object>, id: &str, version: i64, errors: Option<&str>) {
    let write_stamp = |out: &mut Vec<u8>, i: usize| match i {
        0 => json::write_str(out, id),
        1 => out.extend_from_slice(itoa::Buffer::new().format(version).as_bytes()),
        _ => out.extend_from_slice(errors.expect("only written when set").as_bytes()),
    };
    let stamping = |i: usize| i < 2 || errors.is_some();
    let mut done = [false; 3];
    let mut first = true;
    out.push(b'{');
    for (k, v) in context.iter().flat_map(|c| c.iter()) {
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
        json::write_str(out, k);
        out.push(b':');
        match PLAN_CONTEXT_KEYS.iter().position(|p| *p == k) {
            Some(i) if stamping(i) => {
                done[i] = true;
                write_stamp(out, i);
            }
            _ => json::write(out, v),
        }
    }
    for (i, key) in PLAN_CONTEXT_KEYS.iter().enumerate() {
        if stamping(i) && !done[i] {
            if !std::mem::take(&mut first) {
                out.push(b',');
            }
            json::write_str(out, key);
            out.push(b':');
            write_stamp(out, i);
        }
    }
    out.push(b'}');
}

impl Governance {
    /// Check and transform one event (an object). A `Drop` leaves `event` exactly as it came
    /// in (the caller keeps it for the refused-event record without cloning it first): the plan
    /// and the PII block decision are taken on what validation and the scan read, and the only
    /// change made before the PII decision (the plan's `context` fields) is undone on a block.
    ///
    /// What this changes, it changes by rewriting the document (see
    /// [`stamped_with_plan_context`]; `pii::apply` does the same): the event stays a parsed
    /// document, its keys in the order `serde_json` with `preserve_order` would have.
    ///
    /// The plan's `context` fields are not written into the event when nothing can tell them
    /// apart from fields added after its `context` members ([`Lineage::plan_context`]): when the
    /// event has no such fields already, `context` is an object (or absent), and the PII scan
    /// finds nothing in them nor treats `context` as a sensitive name. Writing them in means
    /// writing the event out and parsing it back (about as costly as the first parse).
    pub fn apply<'g>(&'g self, source: &str, event: &mut Value, scratch: &mut Scratch) -> Verdict<'g> {
        let mut lineage = Lineage::default();
        // The event as it came in, while the plan's `context` fields are set on it.
        let mut unstamped: Option<Value> = None;
        if let Some(policy) = self.sources.get(source) {
            scratch.violations.clear();
            policy.plan.validate_event(event, &mut scratch.violations);
            scratch.count_violations(source, &policy.drop);
            if scratch.violations.iter().any(|v| policy.drop[kind_index(v.kind)]) {
                let detail = violations_json(scratch.violations.iter().filter(|v| policy.drop[kind_index(v.kind)]));
                return Verdict::Drop { reason: "tracking_plan", detail };
            }
            let errors = (!scratch.violations.is_empty()).then(|| violations_json(scratch.violations.iter()));
            let fields = PlanContext { id: policy.plan.id(), version: policy.plan.version(), violation_errors: errors };
            if self.plan_context_stays_apart(event, &policy.plan, &fields, scratch) {
                lineage.plan_context = Some(fields);
            } else {
                let stamped = stamped_with_plan_context(event, fields.id, fields.version, fields.violation_errors.as_deref());
                unstamped = Some(std::mem::replace(event, stamped));
            }
            lineage.violations = scratch.violations.len();
        }
        if let Some((scanner, policy)) = &self.pii {
            scratch.findings.clear();
            scanner.scan_event(event, &mut scratch.findings);
            // `pii::apply` blocks exactly when a finding's class is set to `block_event`; decide
            // that before anything is rewritten.
            let blocked = scratch.findings.iter().any(|f| policy.action(f.class) == PiiAction::BlockEvent);
            if blocked {
                if let Some(received) = unstamped {
                    *event = received;
                }
                for f in scratch.findings.iter().filter(|f| policy.action(f.class) == PiiAction::BlockEvent) {
                    *scratch.pii_counts.entry((f.class.as_str(), "block_event")).or_insert(0) += 1;
                }
                let mut classes: Vec<&str> = scratch
                    .findings
                    .iter()
                    .filter(|f| policy.action(f.class) == PiiAction::BlockEvent)
                    .map(|f| f.class.as_str())
                    .collect();
                classes.sort_unstable();
                classes.dedup();
                return Verdict::Drop { reason: "pii_blocked", detail: format!("event carries {}", classes.join(", ")) };
            }
            let applied = pii::apply(event, &scratch.findings, policy);
            debug_assert!(!applied.blocked);
            for (class, action, _) in &applied.actions {
                *scratch.pii_counts.entry((class.as_str(), action.as_str())).or_insert(0) += 1;
            }
            let mut actions: Vec<String> =
                applied.actions.iter().map(|(c, a, _)| format!("{}:{}", c.as_str(), a.as_str())).collect();
            actions.sort_unstable();
            actions.dedup();
            lineage.pii_actions = actions;
        }
        Verdict::Pass { lineage }
    }

    /// Whether the plan's `context` fields can stay out of `event` (see [`Governance::apply`]).
    fn plan_context_stays_apart(&self, event: &Value, plan: &Arc<TrackingPlan>, fields: &PlanContext<'_>, scratch: &mut Scratch) -> bool {
        let free = match event.get("context") {
            None => true,
            Some(ctx) => ctx.as_object().is_some_and(|c| !c.iter().any(|(k, _)| PLAN_CONTEXT_KEYS.contains(&k))),
        };
        if !free {
            return false;
        }
        let Some((scanner, _)) = &self.pii else { return true };
        // The scan of a member depends on its value and its key only: the fields scanned on
        // their own give what they would give in the event.
        let clean = |scratch: &mut Scratch| {
            let mut text = b"{\"context\":".to_vec();
            write_plan_context(&mut text, None, fields.id, fields.version, fields.violation_errors.as_deref());
            text.push(b'}');
            let doc: Value = sonic_rs::from_slice(&text).expect("written as JSON above");
            let mut findings = std::mem::take(&mut scratch.findings);
            findings.clear();
            scanner.scan_event(&doc, &mut findings);
            let clean = findings.is_empty();
            scratch.findings = findings;
            clean && !scanner.is_sensitive_key("context")
        };
        if fields.violation_errors.is_some() {
            return clean(scratch);
        }
        // Without violations, the fields are the same for every event of the plan.
        let plan_key = Arc::as_ptr(plan) as usize;
        if let Some(&(_, known)) = scratch.plain_plan_context.iter().find(|(k, _)| *k == plan_key) {
            return known;
        }
        let known = clean(scratch);
        scratch.plain_plan_context.push((plan_key, known));
        known
    }

    /// The text of an event kept for inspection (a refused event), with every PII finding
    /// redacted: discards must not become a way around the PII policy.
    pub fn redact_for_inspection(&self, event: &mut Value) {
        if let Some((scanner, _)) = &self.pii {
            let mut findings: Vec<Finding> = Vec::new();
            scanner.scan_event(event, &mut findings);
            let redact_all = PiiPolicy::new(PiiAction::Redact, &[], &[]).expect("redact needs no key");
            pii::apply(event, &findings, &redact_all);
        }
    }

    /// [`Governance::redact_for_inspection`] of a message that is no JSON document (refused as
    /// invalid JSON): every PII span the scanner finds in its text, and the value of every
    /// `"key": value` pair whose key is a sensitive name, replaced by its redaction marker.
    /// `None` when there is nothing to change.
    pub fn redact_text_for_inspection(&self, text: &str) -> Option<String> {
        let (scanner, _) = self.pii.as_ref()?;
        let mut spans: Vec<pii::Match> = Vec::new();
        scanner.scan_str(text, &mut spans);
        let mut quoted = vec![false; spans.len()];
        for (start, end, is_string) in sensitive_values(scanner, text) {
            spans.push(pii::Match { class: PiiClass::KeyName, start, end });
            quoted.push(!is_string);
        }
        if spans.is_empty() {
            return None;
        }
        let mut order: Vec<usize> = (0..spans.len()).collect();
        order.sort_by_key(|&i| (spans[i].start, std::cmp::Reverse(spans[i].end)));
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for i in order {
            let m = spans[i];
            if m.start < at {
                continue; // inside a span already redacted
            }
            out.push_str(&text[at..m.start]);
            let marker = pii::redaction_marker(m.class);
            if quoted[i] {
                out.push('"');
                out.push_str(&marker);
                out.push('"');
            } else {
                out.push_str(&marker);
            }
            at = m.end;
        }
        out.push_str(&text[at..]);
        Some(out)
    }
}

/// Byte spans of the values of sensitive keys in JSON-like `text` (which need not parse): a
/// string's contents (`true`), or a whole other value, a number, `NaN` or a container (`false`).
/// Strings are found by their quotes, a key by the `:` after it.
fn sensitive_values(scanner: &PiiScanner, text: &str) -> Vec<(usize, usize, bool)> {
    let b = text.as_bytes();
    let skip_space = |mut i: usize| {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    // The index of the closing quote of the string opening at `i` (the text's end if none).
    let closing_quote = |mut i: usize| {
        i += 1;
        while i < b.len() && b[i] != b'"' {
            i += if b[i] == b'\\' { 2 } else { 1 };
        }
        i.min(b.len())
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'"' {
            i += 1;
            continue;
        }
        let close = closing_quote(i);
        let key = &text[i + 1..close];
        let end = (close + 1).min(b.len());
        i = end;
        let colon = skip_space(end);
        if b.get(colon) != Some(&b':') || !scanner.is_sensitive_key(key) {
            continue;
        }
        let start = skip_space(colon + 1);
        match b.get(start) {
            Some(b'"') => {
                let close = closing_quote(start);
                if close > start + 1 {
                    out.push((start + 1, close, true));
                }
                i = (close + 1).min(b.len());
            }
            // A container, whole (to its matching bracket, or the text's end).
            Some(b'{' | b'[') => {
                let (mut depth, mut end) = (0usize, start);
                while end < b.len() {
                    match b[end] {
                        b'"' => end = closing_quote(end),
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => depth -= 1,
                        _ => {}
                    }
                    end += 1;
                    if depth == 0 {
                        break;
                    }
                }
                let end = end.min(b.len());
                out.push((start, end, false));
                i = end;
            }
            None => i = start,
            Some(_) => {
                let end = start + b[start..].iter().position(|c| matches!(c, b',' | b'}' | b']') || c.is_ascii_whitespace()).unwrap_or(b.len() - start);
                if !matches!(&text[start..end], "null" | "true" | "false") {
                    out.push((start, end, false));
                }
                i = end;
            }
        }
    }
    out
}

/// Buffers reused across the events of a batch, and the batch's policy counts.
#[derive(Default)]
pub struct Scratch {
    violations: Vec<Violation>,
    findings: Vec<Finding>,
    /// (source, violation type, "forward" | "drop") -> count
    pub violation_counts: HashMap<(String, &'static str, &'static str), usize>,
    /// (class, action) -> count of values acted on
    pub pii_counts: HashMap<(&'static str, &'static str), usize>,
    /// Per tracking plan (by address), whether its `context` fields without violations can stay
    /// out of the event (see [`Governance::apply`]).
    plain_plan_context: Vec<(usize, bool)>,
}

impl Scratch {
    fn count_violations(&mut self, source: &str, drop: &[bool; 6]) {
        for v in &self.violations {
            let action = if drop[kind_index(v.kind)] { "drop" } else { "forward" };
            *self.violation_counts.entry((source.to_string(), v.kind.as_str(), action)).or_insert(0) += 1;
        }
    }
}

pub fn parse_class(s: &str) -> Option<PiiClass> {
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn plan() -> Arc<TrackingPlan> {
        Arc::new(
            TrackingPlan::compile(&json!({
                "id": "tp_web", "version": 3,
                "events": {"Order Completed": {"properties": {"properties": {
                    "type": "object", "required": ["total"],
                    "properties": {"total": {"type": "number"}}, "additionalProperties": false}}}}
            }))
            .unwrap(),
        )
    }

    /// The event as the pipeline holds it: parsed from its text.
    fn obj(v: serde_json::Value) -> Value {
        json::parse(v.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn forwards_with_violation_errors_or_drops_by_type() {
        let mut gov = Governance::default();
        let mut drop = [false; 6];
        drop[kind_index(ViolationKind::UnplannedEvent)] = true;
        gov.sources.insert("web".into(), SourcePolicy { plan: plan(), drop });
        let mut s = Scratch::default();

        let mut ok = obj(json!({"type":"track","event":"Order Completed","properties":{"total":"12"}}));
        let stamped = in_context(&gov, &mut ok, &mut s);
        assert_eq!(stamped["context"]["trackingPlanId"], "tp_web");
        assert_eq!(stamped["context"]["trackingPlanVersion"], 3);
        assert_eq!(stamped["context"]["violationErrors"][0]["type"], "Datatype-Mismatch");

        let mut unplanned = obj(json!({"type":"track","event":"Mystery","properties":{}}));
        match gov.apply("web", &mut unplanned, &mut s) {
            Verdict::Drop { reason, detail } => {
                assert_eq!(reason, "tracking_plan");
                assert!(detail.contains("Unplanned-Event"), "{detail}");
            }
            Verdict::Pass { .. } => panic!("unplanned events are dropped by this policy"),
        }
        let mut other_source = obj(json!({"type":"track","event":"Mystery"}));
        assert!(matches!(gov.apply("ios", &mut other_source, &mut s), Verdict::Pass { .. }));
    }

    #[test]
    fn identifiers_are_trimmed_and_emails_lowercased() {
        assert_eq!(normalized_id("  Ana@Example.COM ", true).as_deref(), Some("ana@example.com"));
        assert_eq!(normalized_id(" a-1 ", true).as_deref(), Some("a-1"));
        assert_eq!(normalized_id("Team-A", true), None, "only email addresses change case");
        assert_eq!(normalized_id("Ana@Example.com", false), None);
        assert_eq!(normalized_id("ana@example.com", true), None);
    }

    #[test]
    fn pii_actions_and_blocking() {
        let scanner = PiiScanner::new(pii::DEFAULT_SENSITIVE_KEYS);
        let policy = PiiPolicy::new(
            PiiAction::Allow,
            &[(PiiClass::Email, PiiAction::Redact), (PiiClass::Ssn, PiiAction::BlockEvent)],
            &[],
        )
        .unwrap();
        let gov = Governance { pii: Some((scanner, policy)), ..Governance::default() };
        let mut s = Scratch::default();
        let mut ev = obj(json!({"type":"track","properties":{"note":"mail me at jo@example.com please"}}));
        match gov.apply("web", &mut ev, &mut s) {
            Verdict::Pass { lineage } => assert_eq!(lineage.pii_actions, vec!["email:redact"]),
            Verdict::Drop { .. } => panic!(),
        }
        assert_eq!(ev["properties"]["note"], "mail me at [REDACTED:email] please");
        let mut blocked = obj(json!({"type":"track","properties":{"ssn":"my ssn is 123-45-6789"}}));
        assert!(matches!(gov.apply("web", &mut blocked, &mut s), Verdict::Drop { reason: "pii_blocked", .. }));
        let mut kept = blocked;
        gov.redact_for_inspection(&mut kept);
        assert!(!json::to_string(&kept).contains("123-45-6789"));
    }

    /// A refused event is left exactly as it came in, whichever step refuses it: the caller
    /// keeps it for the discard record without a copy taken beforehand.
    #[test]
    fn a_drop_leaves_the_event_as_received() {
        let scanner = PiiScanner::new(pii::DEFAULT_SENSITIVE_KEYS);
        let policy = PiiPolicy::new(PiiAction::Redact, &[(PiiClass::Ssn, PiiAction::BlockEvent)], &[]).unwrap();
        let mut drop = [false; 6];
        drop[kind_index(ViolationKind::UnplannedEvent)] = true;
        let mut gov = Governance { pii: Some((scanner, policy)), ..Governance::default() };
        gov.sources.insert("web".into(), SourcePolicy { plan: plan(), drop });
        let mut s = Scratch::default();
        let ssn = "ssn 123-45-6789, mail jo@example.com";
        for event in [
            // Blocked by PII after the plan stamped `context` (absent, an object, not an object).
            json!({"type":"track","event":"Order Completed","properties":{"total":"12","note":ssn}}),
            json!({"type":"track","event":"Order Completed","context":{"trackingPlanId":"old","z":1},"properties":{"total":12,"note":ssn}}),
            json!({"type":"track","event":"Order Completed","context":{},"properties":{"total":12,"note":ssn}}),
            json!({"type":"track","event":"Order Completed","context":"text","properties":{"total":"x","note":ssn}}),
            // Dropped by the plan.
            json!({"type":"track","event":"Mystery","properties":{"note":ssn}}),
        ] {
            let original = obj(event);
            let mut ev = original.clone();
            assert!(matches!(gov.apply("web", &mut ev, &mut s), Verdict::Drop { .. }));
            assert_eq!(json::to_string(&ev), json::to_string(&original), "unchanged, same key order");
            assert_eq!(ev, original);
        }
        let mut fine = obj(json!({"type":"track","event":"Order Completed","context":{"a":1},"properties":{"total":12,"note":"jo@example.com"}}));
        let fine = in_context(&gov, &mut fine, &mut s);
        assert_eq!(fine["context"]["trackingPlanId"], "tp_web");
        assert_eq!(fine["properties"]["note"], "[REDACTED:email]");
    }

    /// `apply` on an event that passes, and the event with the plan's `context` fields written
    /// in (whether `apply` wrote them in or kept them apart).
    fn in_context(gov: &Governance, event: &mut Value, s: &mut Scratch) -> Value {
        match gov.apply("web", event, s) {
            Verdict::Pass { lineage } => match lineage.plan_context {
                Some(pc) => stamped_with_plan_context(event, pc.id, pc.version, pc.violation_errors.as_deref()),
                None => event.clone(),
            },
            Verdict::Drop { reason, detail } => panic!("{reason}: {detail}"),
        }
    }

    fn governance(plan_id: &str, sensitive: &[&str]) -> Governance {
        let plan = TrackingPlan::compile(&json!({
            "id": plan_id, "version": 3,
            "events": {"Order Completed": {"properties": {"properties": {
                "type": "object", "properties": {"total": {"type": "number"}}}}}}
        }))
        .unwrap();
        let mut keys: Vec<&str> = pii::DEFAULT_SENSITIVE_KEYS.to_vec();
        keys.extend(sensitive);
        let policy = PiiPolicy::new(PiiAction::Redact, &[], &[]).unwrap();
        let mut gov = Governance { pii: Some((PiiScanner::new(&keys), policy)), ..Governance::default() };
        gov.sources.insert("web".into(), SourcePolicy { plan: Arc::new(plan), drop: [false; 6] });
        gov
    }

    /// The plan's `context` fields stay out of the event unless something could tell: fields
    /// of that name already there, a `context` that is not an object, PII in the fields, a
    /// sensitive `context`. Either way, the layout is the one of the event with them written in.
    #[test]
    fn plan_context_is_written_in_only_when_it_has_to_be() {
        use crate::ingest::EventType;
        use crate::warehouse::Layout;
        let plain = governance("tp_web", &[]);
        let pii_in_id = governance("owner jo@example.com", &[]);
        let sensitive_context = governance("tp_web", &["context"]);
        let cases: Vec<(&Governance, serde_json::Value, bool)> = vec![
            (&plain, json!({"type":"track","event":"Order Completed","properties":{"total":1}}), false),
            (&plain, json!({"type":"track","event":"Order Completed","context":{"ip":"1.2.3.4","page":{"path":"/"}},"properties":{"total":"x"}}), false),
            (&plain, json!({"type":"track","event":"Order Completed","context":{},"properties":{"total":1}}), false),
            (&plain, json!({"type":"track","event":"Order Completed","context":{"tracking_plan_id":"mine","z":1},"properties":{"total":1}}), false),
            (&plain, json!({"type":"track","event":"Order Completed","context":{"trackingPlanId":"old","z":1},"properties":{"total":"x"}}), true),
            (&plain, json!({"type":"track","event":"Order Completed","context":{"violationErrors":[1],"z":1},"properties":{"total":1}}), true),
            (&plain, json!({"type":"track","event":"Order Completed","context":"text","properties":{"total":1}}), true),
            (&pii_in_id, json!({"type":"track","event":"Order Completed","context":{"a":1},"properties":{"total":1}}), true),
            (&sensitive_context, json!({"type":"track","event":"Order Completed","context":{"a":1},"properties":{"total":1}}), true),
            (&plain, json!({"type":"identify","userId":"u","context":{"traits":{"plan":"pro"}}}), false),
        ];
        for (gov, event, written_in) in cases {
            let mut s = Scratch::default();
            let received = obj(event.clone());
            let mut ev = received.clone();
            let lineage = match gov.apply("web", &mut ev, &mut s) {
                Verdict::Pass { lineage } => lineage,
                Verdict::Drop { reason, detail } => panic!("{event}: {reason} {detail}"),
            };
            assert_eq!(lineage.plan_context.is_none(), written_in, "{event}");
            let kind = EventType::parse(ev["type"].as_str().unwrap()).unwrap();
            let mut apart = Layout::default();
            apart.add_event_with_plan_context(ev.as_object().unwrap(), kind, &[], lineage.plan_context.as_ref());
            let together = match &lineage.plan_context {
                Some(pc) => stamped_with_plan_context(&ev, pc.id, pc.version, pc.violation_errors.as_deref()),
                None => ev.clone(),
            };
            let mut reference = Layout::default();
            reference.add_event(together.as_object().unwrap(), kind, &[]);
            type Tables = Vec<(String, Vec<(String, &'static str)>, String)>;
            let tables = |l: &Layout| -> Tables {
                l.tables()
                    .iter()
                    .map(|t| {
                        let cols = t.columns().iter().map(|(c, k)| (c.clone(), k.as_str())).collect();
                        (t.name.clone(), cols, String::from_utf8(t.to_ndjson()).unwrap())
                    })
                    .collect()
            };
            assert_eq!(tables(&apart), tables(&reference), "{event}");
            // (A sensitive `context` is redacted whole.)
            let redacted_whole = std::ptr::eq(gov, &sensitive_context);
            assert_eq!(tables(&apart)[0].2.contains("context_tracking_plan_version"), !redacted_whole, "{event}");
            if written_in {
                let text = json::to_string(&ev);
                assert!(!text.contains("jo@example.com"), "the PII in the plan's id is acted on: {text}");
            }
        }
        // A field already there keeps its place; a new one goes last.
        let mut s = Scratch::default();
        let mut ev = obj(json!({"type":"track","event":"Order Completed","context":{"trackingPlanVersion":1,"z":1},"properties":{"total":1}}));
        assert!(matches!(plain.apply("web", &mut ev, &mut s), Verdict::Pass { lineage } if lineage.plan_context.is_none()));
        assert_eq!(
            json::to_string(&ev["context"]),
            r#"{"trackingPlanVersion":3,"z":1,"trackingPlanId":"tp_web"}"#
        );
        let mut ev = obj(json!({"type":"track","event":"Order Completed","context":"text","properties":{"total":1},"z":1}));
        assert!(matches!(plain.apply("web", &mut ev, &mut s), Verdict::Pass { .. }));
        assert_eq!(
            json::to_string(&ev),
            r#"{"type":"track","event":"Order Completed","context":{"trackingPlanId":"tp_web","trackingPlanVersion":3},"properties":{"total":1},"z":1}"#
        );
    }
}
