//! Tracking plans: JSON Schema (the draft-07 subset tracking plans use) compiled once, checked per
//! event, with violations typed the way RudderStack types them so plans and dashboards carry over.
//!
//! A plan's schemas validate the *whole* event object, as in RudderStack and Segment Protocols:
//! `{"properties": {"properties": {"properties": {"price": {"type": "number"}}}}}`.
//!
//! Keywords outside [`SUPPORTED_KEYWORDS`] are a [`PlanError`], never silently ignored: a plan that
//! looks enforced but is not would let bad data through unnoticed. `$ref` is the notable absence,
//! which makes `definitions` inert: it is accepted (so exported plans load) and never compiled.

mod format;
mod schema;

use std::fmt;

use serde_json::Value as JsonValue;
use sonic_rs::{JsonNumberTrait, JsonValueTrait, Number, Object, Value, ValueRef};

pub use schema::Schema;

/// Every keyword a schema may use. The annotation keywords at the end are accepted and ignored.
pub const SUPPORTED_KEYWORDS: &[&str] = &[
    "type",
    "properties",
    "required",
    "additionalProperties",
    "patternProperties",
    "propertyNames",
    "minProperties",
    "maxProperties",
    "dependencies",
    "enum",
    "const",
    "pattern",
    "minLength",
    "maxLength",
    "format",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "items",
    "additionalItems",
    "minItems",
    "maxItems",
    "uniqueItems",
    "contains",
    "allOf",
    "anyOf",
    "oneOf",
    "not",
    "if",
    "then",
    "else",
    // Annotations: no effect on validation.
    "$schema",
    "$id",
    "$comment",
    "title",
    "description",
    "default",
    "examples",
    "readOnly",
    "writeOnly",
    "definitions",
];

/// Values of `format` that are checked. Any other format is a [`PlanError`].
pub const SUPPORTED_FORMATS: &[&str] = &["date-time", "email", "uri", "uuid"];

/// The violation types of RudderStack's tracking-plan validator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ViolationKind {
    UnplannedEvent,
    AdditionalProperties,
    RequiredMissing,
    DatatypeMismatch,
    AdvanceRulesViolation,
    UnknownViolation,
}

impl ViolationKind {
    pub const ALL: [ViolationKind; 6] = [
        ViolationKind::UnplannedEvent,
        ViolationKind::AdditionalProperties,
        ViolationKind::RequiredMissing,
        ViolationKind::DatatypeMismatch,
        ViolationKind::AdvanceRulesViolation,
        ViolationKind::UnknownViolation,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            ViolationKind::UnplannedEvent => "Unplanned-Event",
            ViolationKind::AdditionalProperties => "Additional-Properties",
            ViolationKind::RequiredMissing => "Required-Missing",
            ViolationKind::DatatypeMismatch => "Datatype-Mismatch",
            ViolationKind::AdvanceRulesViolation => "Advance-Rules-Violation",
            ViolationKind::UnknownViolation => "Unknown-Violation",
        }
    }

    /// The RudderStack classification of a failed JSON Schema keyword.
    pub fn for_keyword(keyword: &str) -> ViolationKind {
        match keyword {
            "required" => ViolationKind::RequiredMissing,
            "type" => ViolationKind::DatatypeMismatch,
            "additionalProperties" => ViolationKind::AdditionalProperties,
            "enum" | "const" | "pattern" | "format" | "minimum" | "maximum"
            | "exclusiveMinimum" | "exclusiveMaximum" | "multipleOf" | "minLength"
            | "maxLength" | "minItems" | "maxItems" | "additionalItems" | "uniqueItems"
            | "contains" | "minProperties" | "maxProperties" => {
                ViolationKind::AdvanceRulesViolation
            }
            _ => ViolationKind::UnknownViolation,
        }
    }
}

impl fmt::Display for ViolationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One failed rule. Messages follow Ajv's wording; they name keys and schema values but never
/// echo the offending instance value, which may be personal data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub kind: ViolationKind,
    pub message: String,
    /// The missing property for Required-Missing, the unexpected key for Additional-Properties,
    /// otherwise the last segment of `instance_path` ("" at the event root).
    pub property: String,
    /// JSON pointer into the event, e.g. `/properties/price`.
    pub instance_path: String,
    /// Pointer to the failed keyword, relative to the schema that failed, e.g.
    /// `#/properties/properties/properties/price/type`.
    pub schema_path: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(
        "keyword `{keyword}` at {pointer} is not supported; supported keywords are: {}",
        SUPPORTED_KEYWORDS.join(", ")
    )]
    UnsupportedKeyword { keyword: String, pointer: String },
    #[error(
        "format \"{format}\" at {pointer} is not supported; supported formats are: {}; use `pattern` for other shapes",
        SUPPORTED_FORMATS.join(", ")
    )]
    UnsupportedFormat { format: String, pointer: String },
    #[error("keyword `{keyword}` at {pointer} must be {expected}")]
    InvalidKeywordValue {
        keyword: &'static str,
        pointer: String,
        expected: &'static str,
    },
    #[error(
        "keyword `{keyword}` at {pointer} uses the draft-04 boolean form; write the bound itself, e.g. \"{keyword}\": 0 (draft-07)"
    )]
    Draft04ExclusiveBound {
        keyword: &'static str,
        pointer: String,
    },
    #[error(
        "pattern at {pointer} cannot be compiled ({reason}); look-around and back-references are not supported"
    )]
    InvalidPattern { pointer: String, reason: String },
    #[error("schema at {pointer} must be an object or a boolean")]
    NotASchema { pointer: String },
    #[error("tracking plan: {message} (at {pointer})")]
    InvalidPlan { pointer: String, message: String },
}

pub(crate) use crate::pointer::push_pointer_segment;

/// A versioned set of schemas, one per track event name plus one per other event type.
pub struct TrackingPlan {
    id: String,
    version: i64,
    events: Vec<(String, Schema)>,
    identify: Option<Schema>,
    page: Option<Schema>,
    screen: Option<Schema>,
    group: Option<Schema>,
    common: Option<Schema>,
    allow_unplanned_events: bool,
}

impl fmt::Debug for TrackingPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrackingPlan")
            .field("id", &self.id)
            .field("version", &self.version)
            .field(
                "events",
                &self.events.iter().map(|(name, _)| name).collect::<Vec<_>>(),
            )
            .field("allow_unplanned_events", &self.allow_unplanned_events)
            .finish_non_exhaustive()
    }
}

const PLAN_KEYS: &[&str] = &[
    "id",
    "version",
    "events",
    "identify",
    "page",
    "screen",
    "group",
    "common",
    "allow_unplanned_events",
];

impl TrackingPlan {
    /// Compiles a plan spec:
    /// `{"id": "tp_web", "version": 3, "events": {"Order Completed": <schema>, ...},
    ///   "identify"|"page"|"screen"|"group"|"common": <schema>?, "allow_unplanned_events": false}`.
    pub fn compile(spec: &JsonValue) -> Result<TrackingPlan, PlanError> {
        let invalid = |pointer: &str, message: String| PlanError::InvalidPlan {
            pointer: pointer.to_owned(),
            message,
        };
        let spec = spec
            .as_object()
            .ok_or_else(|| invalid("#", "the spec must be a JSON object".into()))?;
        if let Some(key) = spec.keys().find(|k| !PLAN_KEYS.contains(&k.as_str())) {
            return Err(invalid(
                "#",
                format!(
                    "unknown key \"{key}\"; allowed keys are: {}",
                    PLAN_KEYS.join(", ")
                ),
            ));
        }
        let id = match spec.get("id") {
            Some(JsonValue::String(id)) if !id.is_empty() => id.clone(),
            _ => return Err(invalid("#/id", "\"id\" must be a non-empty string".into())),
        };
        let version = spec
            .get("version")
            .and_then(JsonValue::as_i64)
            .ok_or_else(|| invalid("#/version", "\"version\" must be an integer".into()))?;
        let allow_unplanned_events = match spec.get("allow_unplanned_events") {
            None => false,
            Some(JsonValue::Bool(b)) => *b,
            Some(_) => {
                return Err(invalid(
                    "#/allow_unplanned_events",
                    "\"allow_unplanned_events\" must be true or false".into(),
                ))
            }
        };
        let mut events = Vec::new();
        match spec.get("events") {
            None => {}
            Some(JsonValue::Object(map)) => {
                for (name, schema) in map {
                    let mut base = String::from("#/events");
                    push_pointer_segment(&mut base, name);
                    events.push((name.clone(), Schema::compile_at(schema, &base)?));
                }
            }
            Some(_) => {
                return Err(invalid(
                    "#/events",
                    "\"events\" must be an object mapping track event names to schemas".into(),
                ))
            }
        }
        events.sort_by(|a, b| a.0.cmp(&b.0));
        let optional = |key: &str| -> Result<Option<Schema>, PlanError> {
            spec.get(key)
                .map(|s| Schema::compile_at(s, &format!("#/{key}")))
                .transpose()
        };
        Ok(TrackingPlan {
            id,
            version,
            events,
            identify: optional("identify")?,
            page: optional("page")?,
            screen: optional("screen")?,
            group: optional("group")?,
            common: optional("common")?,
            allow_unplanned_events,
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn version(&self) -> i64 {
        self.version
    }

    /// The schema for a track event name, if the plan has one.
    pub fn event_schema(&self, name: &str) -> Option<&Schema> {
        self.events
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .ok()
            .map(|i| &self.events[i].1)
    }

    /// Appends the event's violations to `out`: the common schema's first, then its type's.
    /// `alias` events and unknown types are checked against the common schema only, as
    /// RudderStack does not plan them.
    pub fn validate_event(&self, event: &Value, out: &mut Vec<Violation>) {
        if let Some(common) = &self.common {
            common.validate(event, out);
        }
        let schema = match event.get("type").and_then(|t| t.as_str()) {
            Some("track") => match event.get("event").and_then(|e| e.as_str()) {
                Some(name) => match self.event_schema(name) {
                    Some(schema) => Some(schema),
                    None => {
                        if !self.allow_unplanned_events {
                            out.push(unplanned(format!(
                                "event \"{name}\" is not in tracking plan \"{}\" version {}",
                                self.id, self.version
                            )));
                        }
                        None
                    }
                },
                None => {
                    if !self.allow_unplanned_events {
                        out.push(unplanned(
                            "track event has no string \"event\" name to look up in the tracking plan"
                                .to_owned(),
                        ));
                    }
                    None
                }
            },
            Some("identify") => self.identify.as_ref(),
            Some("page") => self.page.as_ref(),
            Some("screen") => self.screen.as_ref(),
            Some("group") => self.group.as_ref(),
            _ => None,
        };
        if let Some(schema) = schema {
            schema.validate(event, out);
        }
    }
}

fn unplanned(message: String) -> Violation {
    Violation {
        kind: ViolationKind::UnplannedEvent,
        message,
        property: "event".to_owned(),
        instance_path: "/event".to_owned(),
        schema_path: "#/events".to_owned(),
    }
}

/// Structural JSON equality with JSON Schema's number semantics (`1 == 1.0`), used by
/// `uniqueItems`; `enum` and `const` compare with a [`Constant`] the same way.
pub(crate) fn json_equal(a: &Value, b: &Value) -> bool {
    match (a.as_ref(), b.as_ref()) {
        (ValueRef::Null, ValueRef::Null) => true,
        (ValueRef::Bool(x), ValueRef::Bool(y)) => x == y,
        (ValueRef::Number(x), ValueRef::Number(y)) => numbers_equal(&x, &y),
        (ValueRef::String(x), ValueRef::String(y)) => x == y,
        (ValueRef::Array(x), ValueRef::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y.iter()).all(|(x, y)| json_equal(x, y))
        }
        (ValueRef::Object(x), ValueRef::Object(y)) => {
            if x.len() != y.len() {
                return false;
            }
            // Objects compared are mostly written alike, keys in the same order.
            let mut same_order = true;
            for ((k, v), (l, w)) in x.iter().zip(y.iter()) {
                if k != l {
                    same_order = false;
                    break;
                }
                if !json_equal(v, w) {
                    return false;
                }
            }
            same_order
                || x.iter()
                    .all(|(k, v)| y.get(&k).is_some_and(|w| json_equal(v, w)))
        }
        _ => false,
    }
}

pub(crate) fn numbers_equal(x: &Number, y: &Number) -> bool {
    if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
        x == y
    } else if let (Some(x), Some(y)) = (x.as_u64(), y.as_u64()) {
        x == y
    } else {
        x.as_f64() == y.as_f64()
    }
}

/// A schema value (`enum` member, `const`) compiled for comparison with event values.
#[derive(Debug)]
pub(crate) enum Constant {
    Null,
    Bool(bool),
    Number(Number),
    String(Box<str>),
    Array(Vec<Constant>),
    Object(Vec<(Box<str>, Constant)>),
}

impl Constant {
    pub(crate) fn new(value: &JsonValue) -> Constant {
        match value {
            JsonValue::Null => Constant::Null,
            JsonValue::Bool(b) => Constant::Bool(*b),
            JsonValue::Number(n) => Constant::Number(if let Some(u) = n.as_u64() {
                Number::from(u)
            } else if let Some(i) = n.as_i64() {
                Number::from(i)
            } else {
                // serde_json numbers are finite.
                Number::try_from(n.as_f64().unwrap_or(0.0)).unwrap_or_else(|_| Number::from(0u8))
            }),
            JsonValue::String(s) => Constant::String(s.as_str().into()),
            JsonValue::Array(items) => Constant::Array(items.iter().map(Constant::new).collect()),
            JsonValue::Object(map) => Constant::Object(
                map.iter()
                    .map(|(k, v)| (k.as_str().into(), Constant::new(v)))
                    .collect(),
            ),
        }
    }

    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Constant::String(s) => Some(s),
            _ => None,
        }
    }

    /// JSON Schema equality with an event value.
    pub(crate) fn equals(&self, value: &Value) -> bool {
        self.equals_ref(&value.as_ref())
    }

    pub(crate) fn equals_ref(&self, value: &ValueRef<'_>) -> bool {
        match (self, value) {
            (Constant::Null, ValueRef::Null) => true,
            (Constant::Bool(x), ValueRef::Bool(y)) => x == y,
            (Constant::Number(x), ValueRef::Number(y)) => numbers_equal(x, y),
            (Constant::String(x), ValueRef::String(y)) => **x == **y,
            (Constant::Array(x), ValueRef::Array(y)) => {
                x.len() == y.len() && x.iter().zip(y.iter()).all(|(x, y)| x.equals(y))
            }
            (Constant::Object(x), ValueRef::Object(y)) => objects_equal(x, y),
            _ => false,
        }
    }
}

fn objects_equal(x: &[(Box<str>, Constant)], y: &Object) -> bool {
    x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| v.equals(w)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// An event as the pipeline holds it: parsed from JSON text, keys in document order.
    fn doc(v: JsonValue) -> Value {
        sonic_rs::from_str(&v.to_string()).unwrap()
    }

    fn plan() -> TrackingPlan {
        TrackingPlan::compile(&json!({
            "id": "tp_web",
            "version": 3,
            "events": {
                "Order Completed": {
                    "properties": {
                        "properties": {
                            "type": "object",
                            "properties": {
                                "price": {"type": "number", "minimum": 0},
                                "currency": {"enum": ["USD", "EUR"]}
                            },
                            "required": ["price"],
                            "additionalProperties": false
                        }
                    }
                }
            },
            "identify": {"properties": {"traits": {"required": ["email"]}}},
            "common": {"required": ["messageId"]}
        }))
        .unwrap()
    }

    fn kinds(plan: &TrackingPlan, event: JsonValue) -> Vec<ViolationKind> {
        let mut out = Vec::new();
        plan.validate_event(&doc(event), &mut out);
        out.iter().map(|v| v.kind).collect()
    }

    #[test]
    fn compiled_plans_can_be_shared_across_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<TrackingPlan>();
        send_sync::<Schema>();
    }

    #[test]
    fn plan_metadata() {
        let plan = plan();
        assert_eq!(plan.id(), "tp_web");
        assert_eq!(plan.version(), 3);
        assert!(plan.event_schema("Order Completed").is_some());
        assert!(plan.event_schema("order completed").is_none());
    }

    #[test]
    fn conforming_track_event_has_no_violations() {
        let event = json!({"type": "track", "messageId": "m1", "event": "Order Completed",
                           "properties": {"price": 10.5, "currency": "EUR"}});
        assert!(kinds(&plan(), event).is_empty());
    }

    #[test]
    fn track_event_violations_are_typed() {
        let event = json!({"type": "track", "messageId": "m1", "event": "Order Completed",
                           "properties": {"price": "10", "currency": "GBP", "coupon": "X"}});
        let mut out = Vec::new();
        plan().validate_event(&doc(event), &mut out);
        let summary: Vec<_> = out
            .iter()
            .map(|v| {
                (
                    v.kind,
                    v.property.as_str(),
                    v.instance_path.as_str(),
                    v.schema_path.as_str(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (
                    ViolationKind::DatatypeMismatch,
                    "price",
                    "/properties/price",
                    "#/properties/properties/properties/price/type"
                ),
                (
                    ViolationKind::AdvanceRulesViolation,
                    "currency",
                    "/properties/currency",
                    "#/properties/properties/properties/currency/enum"
                ),
                (
                    ViolationKind::AdditionalProperties,
                    "coupon",
                    "/properties",
                    "#/properties/properties/additionalProperties"
                ),
            ]
        );
        assert_eq!(out[0].message, "must be number");
        assert_eq!(out[2].message, "must NOT have additional properties");
    }

    #[test]
    fn missing_required_property_is_named() {
        let event = json!({"type": "track", "messageId": "m1", "event": "Order Completed",
                           "properties": {}});
        let mut out = Vec::new();
        plan().validate_event(&doc(event), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].kind, ViolationKind::RequiredMissing);
        assert_eq!(out[0].property, "price");
        assert_eq!(out[0].message, "must have required property 'price'");
        assert_eq!(out[0].instance_path, "/properties");
    }

    #[test]
    fn unplanned_track_event() {
        let event = json!({"type": "track", "messageId": "m1", "event": "Order Refunded"});
        assert_eq!(kinds(&plan(), event), vec![ViolationKind::UnplannedEvent]);
        let nameless = json!({"type": "track", "messageId": "m1"});
        assert_eq!(
            kinds(&plan(), nameless),
            vec![ViolationKind::UnplannedEvent]
        );
    }

    #[test]
    fn unplanned_events_can_be_allowed() {
        let plan = TrackingPlan::compile(
            &json!({"id": "p", "version": 1, "allow_unplanned_events": true}),
        )
        .unwrap();
        assert!(kinds(&plan, json!({"type": "track", "event": "Anything"})).is_empty());
    }

    #[test]
    fn common_schema_applies_to_every_type() {
        let plan = plan();
        for ty in ["track", "identify", "page", "screen", "group", "alias"] {
            let event = json!({"type": ty, "event": "Order Completed",
                               "properties": {"price": 1}, "traits": {"email": "x"}});
            assert_eq!(
                kinds(&plan, event),
                vec![ViolationKind::RequiredMissing],
                "{ty}"
            );
        }
    }

    #[test]
    fn identify_schema_and_unplanned_types() {
        let plan = plan();
        let identify = json!({"type": "identify", "messageId": "m", "traits": {}});
        assert_eq!(kinds(&plan, identify), vec![ViolationKind::RequiredMissing]);
        // No page schema in the plan: pages are not checked beyond the common schema.
        assert!(kinds(&plan, json!({"type": "page", "messageId": "m"})).is_empty());
    }

    #[test]
    fn plan_errors_point_into_the_spec() {
        let err = TrackingPlan::compile(&json!({"id": "p", "version": 1, "events": {
            "Foo/Bar": {"properties": {"x": {"$ref": "#/definitions/x"}}}}}))
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("keyword `$ref` at #/events/Foo~1Bar/properties/x is not supported; supported keywords are: type,"),
            "{err}"
        );
        for (spec, needle) in [
            (json!([]), "must be a JSON object"),
            (json!({"version": 1}), "\"id\" must be"),
            (json!({"id": "p"}), "\"version\" must be an integer"),
            (
                json!({"id": "p", "version": 1, "extra": 1}),
                "unknown key \"extra\"",
            ),
            (
                json!({"id": "p", "version": 1, "events": []}),
                "\"events\" must be an object",
            ),
            (
                json!({"id": "p", "version": 1, "allow_unplanned_events": "no"}),
                "true or false",
            ),
            (
                json!({"id": "p", "version": 1, "page": {"format": "ipv4"}}),
                "format \"ipv4\" at #/page is not supported",
            ),
        ] {
            let err = TrackingPlan::compile(&spec).unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
        }
    }

    #[test]
    fn violation_kind_names_match_rudderstack() {
        let names: Vec<_> = ViolationKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "Unplanned-Event",
                "Additional-Properties",
                "Required-Missing",
                "Datatype-Mismatch",
                "Advance-Rules-Violation",
                "Unknown-Violation"
            ]
        );
    }

    #[test]
    fn json_equality_uses_numeric_values() {
        let eq = |a: JsonValue, b: JsonValue| {
            let by_constant = Constant::new(&a).equals(&doc(b.clone()));
            let by_value = json_equal(&doc(a), &doc(b));
            assert_eq!(by_constant, by_value);
            by_value
        };
        assert!(eq(json!(1), json!(1.0)));
        assert!(eq(
            json!({"a": [1, {"b": 2.0}]}),
            json!({"a": [1.0, {"b": 2}]})
        ));
        assert!(eq(json!({"b": 1, "a": 2}), json!({"a": 2, "b": 1})));
        assert!(!eq(json!({"a": 1}), json!({"a": 1, "b": 1})));
        assert!(!eq(json!(1), json!(true)));
        assert!(!eq(json!(u64::MAX), json!(-1)));
        assert!(eq(json!(u64::MAX), json!(u64::MAX)));
        assert!(!eq(json!(u64::MAX), json!(u64::MAX - 1)));
        assert!(eq(json!(-5), json!(-5.0)));
        assert!(eq(json!(null), json!(null)));
        assert!(!eq(json!(null), json!(false)));
        assert!(!eq(json!([]), json!({})));
        assert!(eq(json!("é"), json!("é")));
    }
}
