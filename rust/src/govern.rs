//! Policy applied to each accepted event of a batch: the source's tracking plan (drop or forward
//! by violation type, RudderStack's semantics) and PII detection with the configured actions.

use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::Arc;

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

/// Identifier fields normalised before anything else looks at them.
const ID_FIELDS: [&str; 4] = ["userId", "anonymousId", "previousId", "groupId"];

/// Trim identifiers, and lower-case those that are email addresses when `lowercase_emails`:
/// `" Ana@Example.com "` and `"ana@example.com"` are one person to every destination.
pub fn normalize_ids(event: &mut Map<String, Value>, lowercase_emails: bool) {
    for field in ID_FIELDS {
        if let Some(Value::String(id)) = event.get_mut(field) {
            let trimmed = id.trim();
            let is_email = lowercase_emails && trimmed.contains('@') && trimmed.rsplit('@').next().is_some_and(|d| d.contains('.'));
            if is_email && trimmed.chars().any(char::is_uppercase) {
                *id = trimmed.to_lowercase();
            } else if trimmed.len() != id.len() {
                *id = trimmed.to_string();
            }
        }
    }
}

/// The outcome for one event.
pub enum Verdict {
    Pass { lineage: Lineage },
    Drop { reason: &'static str, detail: String },
}

#[derive(Default)]
pub struct Lineage {
    /// `class:action` of every PII action taken, e.g. `email:redact`.
    pub pii_actions: Vec<String>,
    pub violations: usize,
}

fn kind_index(kind: ViolationKind) -> usize {
    ViolationKind::ALL.iter().position(|k| *k == kind).unwrap_or(ViolationKind::ALL.len() - 1)
}

fn violation_json(v: &Violation) -> Value {
    json!({
        "type": v.kind.as_str(),
        "message": v.message,
        "property": v.property,
        "meta": {"instancePath": v.instance_path, "schemaPath": v.schema_path},
    })
}

const PLAN_CONTEXT_KEYS: [&str; 3] = ["trackingPlanId", "trackingPlanVersion", "violationErrors"];

/// How to put `context` back as it was before [`stamp_plan_context`].
enum ContextUndo {
    Nothing,
    /// The event had no `context`.
    Absent,
    /// `context` was not an object.
    Replaced(Value),
    /// The previous values of [`PLAN_CONTEXT_KEYS`] in the context object.
    Keys([Option<Value>; 3]),
}

impl ContextUndo {
    fn revert(self, event: &mut Map<String, Value>) {
        match self {
            ContextUndo::Nothing => {}
            ContextUndo::Absent => {
                event.shift_remove("context");
            }
            ContextUndo::Replaced(old) => {
                event.insert("context".into(), old);
            }
            ContextUndo::Keys(prev) => {
                if let Some(Value::Object(ctx)) = event.get_mut("context") {
                    for (key, old) in PLAN_CONTEXT_KEYS.into_iter().zip(prev) {
                        match old {
                            // Inserting over an existing key keeps its position.
                            Some(old) => {
                                ctx.insert(key.into(), old);
                            }
                            None => {
                                ctx.shift_remove(key);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Set `context.trackingPlanId` / `trackingPlanVersion` (/ `violationErrors`), recording what
/// they replaced when `keep_undo` (a later PII block has to refuse the event as received).
fn stamp_plan_context(
    event: &mut Map<String, Value>,
    id: &str,
    version: impl Into<Value>,
    errors: Option<Value>,
    keep_undo: bool,
) -> ContextUndo {
    let absent = !event.contains_key("context");
    let mut undo = if absent { ContextUndo::Absent } else { ContextUndo::Keys([None, None, None]) };
    let ctx = event.entry("context").or_insert_with(|| Value::Object(Map::new()));
    if !ctx.is_object() {
        undo = ContextUndo::Replaced(std::mem::replace(ctx, Value::Object(Map::new())));
    }
    let ctx = ctx.as_object_mut().expect("made an object above");
    let values = [Some(Value::String(id.to_string())), Some(version.into()), errors];
    let mut prev: [Option<Value>; 3] = [None, None, None];
    for ((key, value), prev) in PLAN_CONTEXT_KEYS.into_iter().zip(values).zip(&mut prev) {
        if let Some(value) = value {
            *prev = ctx.insert(key.into(), value);
        }
    }
    if !keep_undo {
        return ContextUndo::Nothing;
    }
    match undo {
        ContextUndo::Keys(_) => ContextUndo::Keys(prev),
        other => other,
    }
}

impl Governance {
    /// Check and transform one event in place. A `Drop` leaves `event` exactly as it came in
    /// (the caller keeps it for the refused-event record without cloning it first): the plan
    /// and the PII block decision are taken on what validation and the scan read, and the only
    /// change made before the PII decision (the plan's `context` fields) is undone on a block.
    pub fn apply(&self, source: &str, event: &mut Map<String, Value>, scratch: &mut Scratch) -> Verdict {
        let mut lineage = Lineage::default();
        let mut undo = ContextUndo::Nothing;
        if let Some(policy) = self.sources.get(source) {
            scratch.violations.clear();
            let as_value = std::mem::take(event);
            let value = Value::Object(as_value);
            policy.plan.validate_event(&value, &mut scratch.violations);
            let Value::Object(back) = value else { unreachable!("validated an object") };
            *event = back;
            scratch.count_violations(source, &policy.drop);
            let dropping: Vec<&Violation> =
                scratch.violations.iter().filter(|v| policy.drop[kind_index(v.kind)]).collect();
            if !dropping.is_empty() {
                let detail = Value::Array(dropping.iter().map(|v| violation_json(v)).collect()).to_string();
                return Verdict::Drop { reason: "tracking_plan", detail };
            }
            let errors = (!scratch.violations.is_empty())
                .then(|| Value::Array(scratch.violations.iter().map(violation_json).collect()));
            undo = stamp_plan_context(event, policy.plan.id(), policy.plan.version(), errors, self.pii.is_some());
            lineage.violations = scratch.violations.len();
        }
        if let Some((scanner, policy)) = &self.pii {
            scratch.findings.clear();
            let mut value = Value::Object(std::mem::take(event));
            scanner.scan_event(&value, &mut scratch.findings);
            // `pii::apply` blocks exactly when a finding's class is set to `block_event`; decide
            // that before anything is rewritten.
            let blocked = scratch.findings.iter().any(|f| policy.action(f.class) == PiiAction::BlockEvent);
            if blocked {
                let Value::Object(back) = value else { unreachable!("scanned an object") };
                *event = back;
                undo.revert(event);
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
            let applied = pii::apply(&mut value, &scratch.findings, policy);
            let Value::Object(back) = value else { unreachable!("scanned an object") };
            *event = back;
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

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn forwards_with_violation_errors_or_drops_by_type() {
        let mut gov = Governance::default();
        let mut drop = [false; 6];
        drop[kind_index(ViolationKind::UnplannedEvent)] = true;
        gov.sources.insert("web".into(), SourcePolicy { plan: plan(), drop });
        let mut s = Scratch::default();

        let mut ok = obj(json!({"type":"track","event":"Order Completed","properties":{"total":"12"}}));
        match gov.apply("web", &mut ok, &mut s) {
            Verdict::Pass { lineage } => assert_eq!(lineage.violations, 1),
            Verdict::Drop { .. } => panic!("a datatype mismatch is forwarded by default"),
        }
        assert_eq!(ok["context"]["trackingPlanId"], "tp_web");
        assert_eq!(ok["context"]["trackingPlanVersion"], 3);
        assert_eq!(ok["context"]["violationErrors"][0]["type"], "Datatype-Mismatch");

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
        let mut ev = obj(json!({"userId": "  Ana@Example.COM ", "anonymousId": " a-1 ", "groupId": "Team-A"}));
        normalize_ids(&mut ev, true);
        assert_eq!(ev["userId"], "ana@example.com");
        assert_eq!(ev["anonymousId"], "a-1");
        assert_eq!(ev["groupId"], "Team-A", "only email addresses change case");
        let mut keep = obj(json!({"userId": "Ana@Example.com"}));
        normalize_ids(&mut keep, false);
        assert_eq!(keep["userId"], "Ana@Example.com");
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
        let mut kept = Value::Object(blocked);
        gov.redact_for_inspection(&mut kept);
        assert!(!kept.to_string().contains("123-45-6789"));
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
            assert_eq!(Value::Object(ev.clone()).to_string(), Value::Object(original).to_string(), "unchanged, same key order");
        }
        let mut fine = obj(json!({"type":"track","event":"Order Completed","context":{"a":1},"properties":{"total":12,"note":"jo@example.com"}}));
        assert!(matches!(gov.apply("web", &mut fine, &mut s), Verdict::Pass { .. }));
        assert_eq!(fine["context"]["trackingPlanId"], "tp_web");
        assert_eq!(fine["properties"]["note"], "[REDACTED:email]");
    }
}
