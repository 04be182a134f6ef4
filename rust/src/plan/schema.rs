//! Compiling one JSON Schema into a tree of checks, and running it.
//!
//! Validation walks the tree once. On the success path nothing is allocated: instance paths are a
//! linked list on the stack and are only rendered, like messages and schema paths, when a
//! violation is produced.

use std::fmt;

use regex::Regex;
use serde_json::{Map, Value as JsonValue};
use sonic_rs::{JsonNumberTrait, Number, Object, Value, ValueRef};

use super::format::Format;
use super::{
    json_equal, push_pointer_segment, Constant, PlanError, Violation, ViolationKind,
    SUPPORTED_KEYWORDS,
};
use crate::pointer::At;

/// One compiled JSON Schema.
pub struct Schema {
    root: Node,
}

impl fmt::Debug for Schema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Schema").finish_non_exhaustive()
    }
}

impl Schema {
    pub fn compile(schema: &JsonValue) -> Result<Schema, PlanError> {
        Schema::compile_at(schema, "#")
    }

    /// Compiles with errors reported relative to `base`, the schema's place in a larger document.
    pub(crate) fn compile_at(schema: &JsonValue, base: &str) -> Result<Schema, PlanError> {
        let mut compiler = Compiler {
            base,
            path: String::from("#"),
        };
        Ok(Schema {
            root: compiler.node(schema)?,
        })
    }

    pub fn is_valid(&self, instance: &Value) -> bool {
        self.root.eval(instance, &At::Root, None)
    }

    /// Appends every violation (not only the first, like Ajv's `allErrors`) to `out`.
    pub fn validate(&self, instance: &Value, out: &mut Vec<Violation>) {
        self.root.eval(instance, &At::Root, Some(out));
    }
}

const NULL: u8 = 1;
const BOOLEAN: u8 = 2;
const OBJECT: u8 = 4;
const ARRAY: u8 = 8;
const NUMBER: u8 = 16;
const STRING: u8 = 32;
const INTEGER: u8 = 64;

const TYPE_NAMES: [(&str, u8); 7] = [
    ("null", NULL),
    ("boolean", BOOLEAN),
    ("object", OBJECT),
    ("array", ARRAY),
    ("number", NUMBER),
    ("string", STRING),
    ("integer", INTEGER),
];

enum Node {
    True,
    /// The `false` schema; carries its schema path for the violation.
    False(Box<str>),
    Checks(Box<Checks>),
}

enum Items {
    Any,
    Each(Node),
    Tuple(Vec<Node>),
}

enum Dependency {
    /// The names, each with its slot in [`Checks::names`].
    Properties(Vec<(String, usize)>),
    Schema(Node),
}

/// A property name an object keyword looks up in instances.
struct LookupName {
    name: Box<str>,
    /// Index in [`Checks::properties`] when `properties` declares it.
    property: Option<usize>,
}

/// Instance objects are searched for at most this many names in one pass over their keys,
/// with the values found kept on the stack; schemas naming more look each name up in turn.
const MAX_SLOTS: usize = 64;

struct Pattern {
    source: String,
    regex: Regex,
}

/// `if`, `then`, `else`.
type Condition = (Node, Option<Node>, Option<Node>);

struct Checks {
    /// Pointer of this schema relative to the root schema; keyword paths are `{path}/{keyword}`.
    path: Box<str>,
    /// Bit set of allowed types; 0 when `type` is absent.
    types: u8,
    type_names: Box<str>,
    enumeration: Option<Vec<Constant>>,
    constant: Option<Constant>,

    minimum: Option<f64>,
    maximum: Option<f64>,
    exclusive_minimum: Option<f64>,
    exclusive_maximum: Option<f64>,
    multiple_of: Option<f64>,

    min_length: Option<usize>,
    max_length: Option<usize>,
    pattern: Option<Pattern>,
    format: Option<Format>,

    items: Items,
    additional_items: Option<Node>,
    min_items: Option<usize>,
    max_items: Option<usize>,
    unique_items: bool,
    contains: Option<Node>,

    properties: Vec<(String, Node)>,
    /// The slot in `names` of each of `properties`.
    property_slots: Vec<usize>,
    /// The names of `properties`, `required` and `dependencies` (keys and lists), sorted by
    /// (length, name), so an instance key is compared only with the names of its length. The
    /// position of a name is its slot.
    names: Vec<LookupName>,
    /// Bit `min(len, 63)` is set for the byte length of each of `names`: most keys are ruled
    /// out without comparing bytes.
    name_lengths: u64,
    /// `names_of_length[len]` is the range of `names` of that byte length.
    names_of_length: Vec<(usize, usize)>,
    /// Each name with its slot in `names`.
    required: Vec<(String, usize)>,
    additional_properties: Option<Node>,
    pattern_properties: Vec<(Pattern, Node)>,
    property_names: Option<Node>,
    min_properties: Option<usize>,
    max_properties: Option<usize>,
    /// Each property name with its slot in `names`, and its dependency.
    dependencies: Vec<(String, usize, Dependency)>,

    all_of: Vec<Node>,
    any_of: Vec<Node>,
    one_of: Vec<Node>,
    not: Option<Node>,
    condition: Option<Box<Condition>>,
}

struct Compiler<'a> {
    base: &'a str,
    /// Pointer of the schema being compiled, relative to the root.
    path: String,
}

impl Compiler<'_> {
    fn pointer(&self) -> String {
        format!("{}{}", self.base, &self.path[1..])
    }

    fn keyword_pointer(&self, keyword: &str) -> String {
        let mut p = self.pointer();
        push_pointer_segment(&mut p, keyword);
        p
    }

    fn invalid(&self, keyword: &'static str, expected: &'static str) -> PlanError {
        PlanError::InvalidKeywordValue {
            keyword,
            pointer: self.keyword_pointer(keyword),
            expected,
        }
    }

    /// Compiles the subschema at `self.path` + `segments`.
    fn child(&mut self, segments: &[&str], value: &JsonValue) -> Result<Node, PlanError> {
        let len = self.path.len();
        for s in segments {
            push_pointer_segment(&mut self.path, s);
        }
        let node = self.node(value);
        self.path.truncate(len);
        node
    }

    fn child_list(
        &mut self,
        keyword: &'static str,
        value: &JsonValue,
    ) -> Result<Vec<Node>, PlanError> {
        match value {
            JsonValue::Array(list) if !list.is_empty() => list
                .iter()
                .enumerate()
                .map(|(i, s)| self.child(&[keyword, &i.to_string()], s))
                .collect(),
            _ => Err(self.invalid(keyword, "a non-empty array of schemas")),
        }
    }

    fn node(&mut self, value: &JsonValue) -> Result<Node, PlanError> {
        let map = match value {
            JsonValue::Bool(true) => return Ok(Node::True),
            JsonValue::Bool(false) => return Ok(Node::False(self.path.clone().into())),
            JsonValue::Object(map) => map,
            _ => {
                return Err(PlanError::NotASchema {
                    pointer: self.pointer(),
                })
            }
        };
        if let Some(keyword) = map
            .keys()
            .find(|k| !SUPPORTED_KEYWORDS.contains(&k.as_str()))
        {
            return Err(PlanError::UnsupportedKeyword {
                keyword: keyword.clone(),
                pointer: self.pointer(),
            });
        }
        let mut c = Checks {
            path: self.path.clone().into(),
            types: 0,
            type_names: "".into(),
            enumeration: None,
            constant: None,
            minimum: self.number(map, "minimum")?,
            maximum: self.number(map, "maximum")?,
            exclusive_minimum: self.exclusive_bound(map, "exclusiveMinimum")?,
            exclusive_maximum: self.exclusive_bound(map, "exclusiveMaximum")?,
            multiple_of: None,
            min_length: self.count(map, "minLength")?,
            max_length: self.count(map, "maxLength")?,
            pattern: None,
            format: None,
            items: Items::Any,
            additional_items: None,
            min_items: self.count(map, "minItems")?,
            max_items: self.count(map, "maxItems")?,
            unique_items: false,
            contains: None,
            properties: Vec::new(),
            property_slots: Vec::new(),
            names: Vec::new(),
            name_lengths: 0,
            names_of_length: Vec::new(),
            required: Vec::new(),
            additional_properties: None,
            pattern_properties: Vec::new(),
            property_names: None,
            min_properties: self.count(map, "minProperties")?,
            max_properties: self.count(map, "maxProperties")?,
            dependencies: Vec::new(),
            all_of: Vec::new(),
            any_of: Vec::new(),
            one_of: Vec::new(),
            not: None,
            condition: None,
        };
        if let Some(t) = map.get("type") {
            (c.types, c.type_names) = self.types(t)?;
        }
        if let Some(e) = map.get("enum") {
            c.enumeration = Some(
                e.as_array()
                    .ok_or_else(|| self.invalid("enum", "an array"))?
                    .iter()
                    .map(Constant::new)
                    .collect(),
            );
        }
        c.constant = map.get("const").map(Constant::new);
        if let Some(m) = self.number(map, "multipleOf")? {
            if m <= 0.0 {
                return Err(self.invalid("multipleOf", "a number greater than 0"));
            }
            c.multiple_of = Some(m);
        }
        if let Some(p) = map.get("pattern") {
            let source = p
                .as_str()
                .ok_or_else(|| self.invalid("pattern", "a string"))?;
            c.pattern = Some(self.pattern(source, &self.keyword_pointer("pattern"))?);
        }
        if let Some(f) = map.get("format") {
            let name = f
                .as_str()
                .ok_or_else(|| self.invalid("format", "a string"))?;
            c.format =
                Some(
                    Format::from_name(name).ok_or_else(|| PlanError::UnsupportedFormat {
                        format: name.to_owned(),
                        pointer: self.pointer(),
                    })?,
                );
        }
        match map.get("items") {
            None => {}
            Some(JsonValue::Array(list)) => {
                c.items = Items::Tuple(
                    list.iter()
                        .enumerate()
                        .map(|(i, s)| self.child(&["items", &i.to_string()], s))
                        .collect::<Result<_, _>>()?,
                )
            }
            Some(s) => c.items = Items::Each(self.child(&["items"], s)?),
        }
        if let Some(s) = map.get("additionalItems") {
            c.additional_items = Some(self.child(&["additionalItems"], s)?);
        }
        if let Some(u) = map.get("uniqueItems") {
            c.unique_items = u
                .as_bool()
                .ok_or_else(|| self.invalid("uniqueItems", "true or false"))?;
        }
        if let Some(s) = map.get("contains") {
            c.contains = Some(self.child(&["contains"], s)?);
        }
        if let Some(p) = map.get("properties") {
            let p = p
                .as_object()
                .ok_or_else(|| self.invalid("properties", "an object of schemas"))?;
            for (name, s) in p {
                c.properties
                    .push((name.clone(), self.child(&["properties", name], s)?));
            }
        }
        if let Some(r) = map.get("required") {
            c.required = self
                .names(r, "required")?
                .into_iter()
                .map(|n| (n, 0))
                .collect();
        }
        if let Some(s) = map.get("additionalProperties") {
            c.additional_properties = Some(self.child(&["additionalProperties"], s)?);
        }
        if let Some(p) = map.get("patternProperties") {
            let p = p
                .as_object()
                .ok_or_else(|| self.invalid("patternProperties", "an object of schemas"))?;
            for (source, s) in p {
                let mut pointer = self.keyword_pointer("patternProperties");
                push_pointer_segment(&mut pointer, source);
                let pattern = self.pattern(source, &pointer)?;
                c.pattern_properties
                    .push((pattern, self.child(&["patternProperties", source], s)?));
            }
        }
        if let Some(s) = map.get("propertyNames") {
            c.property_names = Some(self.child(&["propertyNames"], s)?);
        }
        if let Some(d) = map.get("dependencies") {
            let d = d.as_object().ok_or_else(|| {
                self.invalid(
                    "dependencies",
                    "an object of property-name arrays or schemas",
                )
            })?;
            for (name, dep) in d {
                let dep = match dep {
                    JsonValue::Array(_) => Dependency::Properties(
                        self.names(dep, "dependencies")?
                            .into_iter()
                            .map(|n| (n, 0))
                            .collect(),
                    ),
                    s => Dependency::Schema(self.child(&["dependencies", name], s)?),
                };
                c.dependencies.push((name.clone(), 0, dep));
            }
        }
        if let Some(l) = map.get("allOf") {
            c.all_of = self.child_list("allOf", l)?;
        }
        if let Some(l) = map.get("anyOf") {
            c.any_of = self.child_list("anyOf", l)?;
        }
        if let Some(l) = map.get("oneOf") {
            c.one_of = self.child_list("oneOf", l)?;
        }
        if let Some(s) = map.get("not") {
            c.not = Some(self.child(&["not"], s)?);
        }
        // `then`/`else` without `if` have no effect (draft-07 §6.6) but must still be well-formed.
        let then = map
            .get("then")
            .map(|s| self.child(&["then"], s))
            .transpose()?;
        let otherwise = map
            .get("else")
            .map(|s| self.child(&["else"], s))
            .transpose()?;
        if let Some(s) = map.get("if") {
            c.condition = Some(Box::new((self.child(&["if"], s)?, then, otherwise)));
        }
        c.index_names();
        Ok(Node::Checks(Box::new(c)))
    }

    fn types(&self, value: &JsonValue) -> Result<(u8, Box<str>), PlanError> {
        const EXPECTED: &str =
            "a type name (null, boolean, object, array, number, string, integer) or an array of them";
        let bit = |name: &JsonValue| {
            name.as_str()
                .and_then(|n| TYPE_NAMES.iter().find(|(t, _)| *t == n))
                .map(|(_, b)| *b)
                .ok_or_else(|| self.invalid("type", EXPECTED))
        };
        match value {
            JsonValue::String(name) => Ok((bit(value)?, name.as_str().into())),
            JsonValue::Array(names) if !names.is_empty() => {
                let mut bits = 0;
                for n in names {
                    bits |= bit(n)?;
                }
                let joined: Vec<&str> = names.iter().filter_map(JsonValue::as_str).collect();
                Ok((bits, joined.join(",").into()))
            }
            _ => Err(self.invalid("type", EXPECTED)),
        }
    }

    fn number(
        &self,
        map: &Map<String, JsonValue>,
        keyword: &'static str,
    ) -> Result<Option<f64>, PlanError> {
        map.get(keyword)
            .map(|v| v.as_f64().ok_or_else(|| self.invalid(keyword, "a number")))
            .transpose()
    }

    fn exclusive_bound(
        &self,
        map: &Map<String, JsonValue>,
        keyword: &'static str,
    ) -> Result<Option<f64>, PlanError> {
        if let Some(JsonValue::Bool(_)) = map.get(keyword) {
            return Err(PlanError::Draft04ExclusiveBound {
                keyword,
                pointer: self.keyword_pointer(keyword),
            });
        }
        self.number(map, keyword)
    }

    fn count(
        &self,
        map: &Map<String, JsonValue>,
        keyword: &'static str,
    ) -> Result<Option<usize>, PlanError> {
        let Some(v) = map.get(keyword) else {
            return Ok(None);
        };
        // Draft-07 allows 2.0 where an integer is expected.
        let n = v.as_u64().or_else(|| {
            v.as_f64()
                .filter(|f| *f >= 0.0 && f.fract() == 0.0 && *f <= u64::MAX as f64)
                .map(|f| f as u64)
        });
        n.map(|n| Some(usize::try_from(n).unwrap_or(usize::MAX)))
            .ok_or_else(|| self.invalid(keyword, "a non-negative integer"))
    }

    fn names(&self, value: &JsonValue, keyword: &'static str) -> Result<Vec<String>, PlanError> {
        value
            .as_array()
            .and_then(|a| a.iter().map(|n| n.as_str().map(str::to_owned)).collect())
            .ok_or_else(|| self.invalid(keyword, "an array of property names"))
    }

    fn pattern(&self, source: &str, pointer: &str) -> Result<Pattern, PlanError> {
        let regex =
            Regex::new(&ecma_to_rust_regex(source)).map_err(|e| PlanError::InvalidPattern {
                pointer: pointer.to_owned(),
                reason: e
                    .to_string()
                    .lines()
                    .last()
                    .unwrap_or_default()
                    .trim()
                    .to_owned(),
            })?;
        Ok(Pattern {
            source: source.to_owned(),
            regex,
        })
    }
}

/// Adapts an ECMA-262 pattern to the `regex` crate: there `\d` and `\w` are Unicode-aware, while
/// JSON Schema patterns follow ECMA-262, where they are ASCII-only (`^\d{5}$` must not accept
/// Arabic-Indic digits). A `[` inside a class is literal in ECMA but nests in `regex`.
fn ecma_to_rust_regex(source: &str) -> String {
    let mut out = String::with_capacity(source.len() + 8);
    let mut in_class = false;
    let mut chars = source.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('d') => out.push_str(if in_class { "0-9" } else { "[0-9]" }),
                Some('w') => out.push_str(if in_class {
                    "0-9A-Za-z_"
                } else {
                    "[0-9A-Za-z_]"
                }),
                Some('D') if !in_class => out.push_str("[^0-9]"),
                Some('W') if !in_class => out.push_str("[^0-9A-Za-z_]"),
                Some(next) => {
                    out.push('\\');
                    out.push(next);
                }
                None => out.push('\\'),
            },
            '[' if in_class => out.push_str("\\["),
            '[' => {
                in_class = true;
                out.push('[');
            }
            ']' if in_class => {
                in_class = false;
                out.push(']');
            }
            c => out.push(c),
        }
    }
    out
}

fn violation(
    kind_keyword: &str,
    message: String,
    property: String,
    at: &At,
    schema_path: &str,
) -> Violation {
    let mut path = schema_path.to_owned();
    push_pointer_segment(&mut path, kind_keyword);
    Violation {
        kind: ViolationKind::for_keyword(kind_keyword),
        message,
        property,
        instance_path: at.pointer(),
        schema_path: path,
    }
}

/// Records a failure: stops at the first one when only validity is asked for.
macro_rules! fail {
    ($out:ident, $valid:ident, $violation:expr) => {
        match $out.as_deref_mut() {
            None => return false,
            Some(out) => {
                out.push($violation);
                $valid = false;
            }
        }
    };
}

fn type_bits(v: &ValueRef<'_>) -> u8 {
    match v {
        ValueRef::Null => NULL,
        ValueRef::Bool(_) => BOOLEAN,
        ValueRef::Object(_) => OBJECT,
        ValueRef::Array(_) => ARRAY,
        ValueRef::String(_) => STRING,
        ValueRef::Number(n) if is_integer(n) => NUMBER | INTEGER,
        ValueRef::Number(_) => NUMBER,
    }
}

/// JSON Schema counts any number with a zero fractional part as an integer (`1.0` included).
fn is_integer(n: &Number) -> bool {
    n.is_i64()
        || n.is_u64()
        || n.as_f64()
            .is_some_and(|f| f.is_finite() && f.fract() == 0.0)
}

fn is_multiple_of(n: &Number, m: f64) -> bool {
    if let Some(i) = n.as_i64() {
        if m.fract() == 0.0 && m < 9_007_199_254_740_992.0 {
            return i % (m as i64) == 0;
        }
    }
    let q = n.as_f64().unwrap_or(f64::NAN) / m;
    // Decimal multiples (0.0075 / 0.0001) are never exact in binary; allow a few ulps of error.
    q.is_finite() && (q - q.round()).abs() <= (q.abs() * f64::EPSILON * 4.0).max(1e-9)
}

fn format_number(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{}", f as i64)
    } else {
        format!("{f}")
    }
}

impl Node {
    /// Checks `value`; with `out`, keeps going after a failure and records every violation.
    fn eval(&self, value: &Value, at: &At, mut out: Option<&mut Vec<Violation>>) -> bool {
        let c = match self {
            Node::True => return true,
            Node::False(path) => {
                if let Some(out) = out {
                    out.push(violation(
                        "false schema",
                        "boolean schema is false".into(),
                        at.last(),
                        at,
                        path,
                    ));
                }
                return false;
            }
            Node::Checks(c) => c,
        };
        let mut valid = true;
        let path = &*c.path;
        let view = value.as_ref();

        if c.types != 0 && type_bits(&view) & c.types == 0 {
            fail!(
                out,
                valid,
                violation(
                    "type",
                    format!("must be {}", c.type_names),
                    at.last(),
                    at,
                    path
                )
            );
        }
        if let Some(allowed) = &c.enumeration {
            if !allowed.iter().any(|a| a.equals_ref(&view)) {
                fail!(
                    out,
                    valid,
                    violation(
                        "enum",
                        "must be equal to one of the allowed values".into(),
                        at.last(),
                        at,
                        path
                    )
                );
            }
        }
        if let Some(constant) = &c.constant {
            if !constant.equals_ref(&view) {
                fail!(
                    out,
                    valid,
                    violation(
                        "const",
                        "must be equal to constant".into(),
                        at.last(),
                        at,
                        path
                    )
                );
            }
        }

        match view {
            ValueRef::Number(n) => {
                let f = n.as_f64().unwrap_or(f64::NAN);
                let bounds = [
                    ("minimum", c.minimum, ">="),
                    ("maximum", c.maximum, "<="),
                    ("exclusiveMinimum", c.exclusive_minimum, ">"),
                    ("exclusiveMaximum", c.exclusive_maximum, "<"),
                ];
                for (keyword, bound, op) in bounds {
                    let Some(b) = bound else { continue };
                    let ok = match op {
                        ">=" => f >= b,
                        "<=" => f <= b,
                        ">" => f > b,
                        _ => f < b,
                    };
                    if !ok {
                        fail!(
                            out,
                            valid,
                            violation(
                                keyword,
                                format!("must be {op} {}", format_number(b)),
                                at.last(),
                                at,
                                path
                            )
                        );
                    }
                }
                if let Some(m) = c.multiple_of {
                    if !is_multiple_of(&n, m) {
                        fail!(
                            out,
                            valid,
                            violation(
                                "multipleOf",
                                format!("must be multiple of {}", format_number(m)),
                                at.last(),
                                at,
                                path
                            )
                        );
                    }
                }
            }
            ValueRef::String(s) => {
                // Lengths count code points; the byte length bounds them from above, which settles
                // most strings without counting.
                if let Some(min) = c.min_length {
                    if s.len() < min || s.chars().count() < min {
                        fail!(
                            out,
                            valid,
                            violation(
                                "minLength",
                                format!("must NOT have fewer than {min} characters"),
                                at.last(),
                                at,
                                path
                            )
                        );
                    }
                }
                if let Some(max) = c.max_length {
                    if s.len() > max && s.chars().count() > max {
                        fail!(
                            out,
                            valid,
                            violation(
                                "maxLength",
                                format!("must NOT have more than {max} characters"),
                                at.last(),
                                at,
                                path
                            )
                        );
                    }
                }
                if let Some(p) = &c.pattern {
                    if !p.regex.is_match(s) {
                        fail!(
                            out,
                            valid,
                            violation(
                                "pattern",
                                format!("must match pattern \"{}\"", p.source),
                                at.last(),
                                at,
                                path
                            )
                        );
                    }
                }
                if let Some(f) = c.format {
                    if !f.is_valid(s) {
                        fail!(
                            out,
                            valid,
                            violation(
                                "format",
                                format!("must match format \"{}\"", f.name()),
                                at.last(),
                                at,
                                path
                            )
                        );
                    }
                }
            }
            ValueRef::Array(list) => {
                if !c.eval_array(list.as_slice(), at, out.as_deref_mut()) {
                    if out.is_none() {
                        return false;
                    }
                    valid = false;
                }
            }
            ValueRef::Object(map) => {
                if !c.eval_object(value, map, at, out.as_deref_mut()) {
                    if out.is_none() {
                        return false;
                    }
                    valid = false;
                }
            }
            ValueRef::Null | ValueRef::Bool(_) => {}
        }

        let has_combinators = !c.all_of.is_empty()
            || !c.any_of.is_empty()
            || !c.one_of.is_empty()
            || c.not.is_some()
            || c.condition.is_some();
        if has_combinators && !c.eval_combinators(value, at, out) {
            valid = false;
        }
        valid
    }
}

impl Node {
    /// `eval` for an object key as the instance (`propertyNames`), without building a `Value`.
    fn name_is_valid(&self, key: &str) -> bool {
        let c = match self {
            Node::True => return true,
            Node::False(_) => return false,
            Node::Checks(c) => c,
        };
        (c.types == 0 || c.types & STRING != 0)
            && c.enumeration
                .as_ref()
                .is_none_or(|e| e.iter().any(|a| a.as_str() == Some(key)))
            && c.constant.as_ref().is_none_or(|k| k.as_str() == Some(key))
            && c.min_length.is_none_or(|min| key.chars().count() >= min)
            && c.max_length.is_none_or(|max| key.chars().count() <= max)
            && c.pattern.as_ref().is_none_or(|p| p.regex.is_match(key))
            && c.format.is_none_or(|f| f.is_valid(key))
            && c.all_of.iter().all(|s| s.name_is_valid(key))
            && (c.any_of.is_empty() || c.any_of.iter().any(|s| s.name_is_valid(key)))
            && (c.one_of.is_empty()
                || c.one_of
                    .iter()
                    .filter(|s| s.name_is_valid(key))
                    .take(2)
                    .count()
                    == 1)
            && c.not.as_ref().is_none_or(|s| !s.name_is_valid(key))
            && c.condition.as_ref().is_none_or(|cond| {
                let (test, then, otherwise) = &**cond;
                let branch = if test.name_is_valid(key) {
                    then
                } else {
                    otherwise
                };
                branch.as_ref().is_none_or(|s| s.name_is_valid(key))
            })
    }
}

impl Checks {
    fn eval_array(&self, list: &[Value], at: &At, mut out: Option<&mut Vec<Violation>>) -> bool {
        let mut valid = true;
        let path = &*self.path;
        if let Some(min) = self.min_items {
            if list.len() < min {
                fail!(
                    out,
                    valid,
                    violation(
                        "minItems",
                        format!("must NOT have fewer than {min} items"),
                        at.last(),
                        at,
                        path
                    )
                );
            }
        }
        if let Some(max) = self.max_items {
            if list.len() > max {
                fail!(
                    out,
                    valid,
                    violation(
                        "maxItems",
                        format!("must NOT have more than {max} items"),
                        at.last(),
                        at,
                        path
                    )
                );
            }
        }
        match &self.items {
            Items::Any => {}
            Items::Each(item) => {
                for (i, v) in list.iter().enumerate() {
                    if !item.eval(v, &At::Index(at, i), out.as_deref_mut()) {
                        if out.is_none() {
                            return false;
                        }
                        valid = false;
                    }
                }
            }
            Items::Tuple(items) => {
                for (i, (v, item)) in list.iter().zip(items).enumerate() {
                    if !item.eval(v, &At::Index(at, i), out.as_deref_mut()) {
                        if out.is_none() {
                            return false;
                        }
                        valid = false;
                    }
                }
                if let Some(additional) = &self.additional_items {
                    for (i, v) in list.iter().enumerate().skip(items.len()) {
                        if let Node::False(_) = additional {
                            let n = items.len();
                            fail!(
                                out,
                                valid,
                                violation(
                                    "additionalItems",
                                    format!("must NOT have more than {n} items"),
                                    at.last(),
                                    at,
                                    path
                                )
                            );
                            break;
                        }
                        if !additional.eval(v, &At::Index(at, i), out.as_deref_mut()) {
                            if out.is_none() {
                                return false;
                            }
                            valid = false;
                        }
                    }
                }
            }
        }
        if self.unique_items {
            if let Some((i, j)) = first_duplicate(list) {
                fail!(
                    out,
                    valid,
                    violation(
                        "uniqueItems",
                        format!(
                            "must NOT have duplicate items (items ## {j} and {i} are identical)"
                        ),
                        at.last(),
                        at,
                        path
                    )
                );
            }
        }
        if let Some(contains) = &self.contains {
            if !list.iter().any(|v| contains.eval(v, at, None)) {
                fail!(
                    out,
                    valid,
                    violation(
                        "contains",
                        "must contain at least 1 valid item(s)".into(),
                        at.last(),
                        at,
                        path
                    )
                );
            }
        }
        valid
    }

    /// The slot of an instance key in `names`.
    #[inline]
    fn slot(&self, key: &str) -> Option<usize> {
        if self.name_lengths & length_bit(key) == 0 {
            return None;
        }
        let (from, to) = *self.names_of_length.get(key.len())?;
        self.names[from..to]
            .iter()
            .position(|n| same_bytes(n.name.as_bytes(), key.as_bytes()))
            .map(|i| from + i)
    }

    /// Fills `names` and the slots that point into it, once all keywords are compiled.
    fn index_names(&mut self) {
        let mut names: Vec<&str> = self.properties.iter().map(|(n, _)| n.as_str()).collect();
        names.extend(self.required.iter().map(|(n, _)| n.as_str()));
        for (name, _, dep) in &self.dependencies {
            names.push(name);
            if let Dependency::Properties(needed) = dep {
                names.extend(needed.iter().map(|(n, _)| n.as_str()));
            }
        }
        names.sort_by(|a, b| by_length_then_bytes(a, b));
        names.dedup();
        let mut table: Vec<LookupName> = names
            .into_iter()
            .map(|name| LookupName {
                name: name.into(),
                property: None,
            })
            .collect();
        let slot = |table: &[LookupName], name: &str| {
            table
                .binary_search_by(|n| by_length_then_bytes(&n.name, name))
                .expect("every looked-up name is in the table")
        };
        self.property_slots = Vec::with_capacity(self.properties.len());
        for (i, (name, _)) in self.properties.iter().enumerate() {
            let s = slot(&table, name);
            table[s].property = Some(i);
            self.property_slots.push(s);
        }
        for (name, s) in &mut self.required {
            *s = slot(&table, name);
        }
        for (name, s, dep) in &mut self.dependencies {
            *s = slot(&table, name);
            if let Dependency::Properties(needed) = dep {
                for (n, s) in needed {
                    *s = slot(&table, n);
                }
            }
        }
        self.name_lengths = table.iter().fold(0, |bits, n| bits | length_bit(&n.name));
        let longest = table.last().map_or(0, |n| n.name.len());
        self.names_of_length = vec![(0, 0); longest + 1];
        for (i, n) in table.iter().enumerate() {
            let range = &mut self.names_of_length[n.name.len()];
            if range.1 == 0 {
                range.0 = i;
            }
            range.1 = i + 1;
        }
        self.names = table;
    }

    fn eval_object(
        &self,
        value: &Value,
        map: &Object,
        at: &At,
        mut out: Option<&mut Vec<Violation>>,
    ) -> bool {
        let mut valid = true;
        let path = &*self.path;
        let key_walk = !self.pattern_properties.is_empty()
            || self.additional_properties.is_some()
            || self.property_names.is_some();
        // The first value of each looked-up name, found in one pass over the keys. Each key
        // read costs a little with sonic-rs values, so searching the object once per name
        // would read most keys several times.
        let use_slots = !self.names.is_empty() && self.names.len() <= MAX_SLOTS;
        let mut slots: [Option<&Value>; MAX_SLOTS] = [None; MAX_SLOTS];
        let walk_start = out.as_deref().map_or(0, Vec::len);

        if key_walk {
            // The same pass serves `properties` and the key keywords.
            for (key, v) in map.iter() {
                let child = At::Key(at, key);
                let slot = self.slot(key);
                let declared = match slot {
                    Some(i) => {
                        if use_slots && slots[i].is_none() {
                            slots[i] = Some(v);
                        }
                        self.names[i].property.map(|p| &self.properties[p].1)
                    }
                    None => None,
                };
                let mut matched = declared.is_some();
                if let Some(schema) = declared {
                    if !schema.eval(v, &child, out.as_deref_mut()) {
                        if out.is_none() {
                            return false;
                        }
                        valid = false;
                    }
                }
                for (pattern, schema) in &self.pattern_properties {
                    if pattern.regex.is_match(key) {
                        matched = true;
                        if !schema.eval(v, &child, out.as_deref_mut()) {
                            if out.is_none() {
                                return false;
                            }
                            valid = false;
                        }
                    }
                }
                if let Some(names) = &self.property_names {
                    if !names.name_is_valid(key) {
                        fail!(
                            out,
                            valid,
                            violation(
                                "propertyNames",
                                "property name must be valid".into(),
                                key.to_owned(),
                                at,
                                path
                            )
                        );
                    }
                }
                if matched {
                    continue;
                }
                match &self.additional_properties {
                    None | Some(Node::True) => {}
                    Some(Node::False(_)) => {
                        fail!(
                            out,
                            valid,
                            violation(
                                "additionalProperties",
                                "must NOT have additional properties".into(),
                                key.to_owned(),
                                at,
                                path
                            )
                        );
                    }
                    Some(schema) => {
                        if !schema.eval(v, &child, out.as_deref_mut()) {
                            if out.is_none() {
                                return false;
                            }
                            valid = false;
                        }
                    }
                }
            }
        } else if use_slots {
            for (key, v) in map.iter() {
                if let Some(i) = self.slot(key) {
                    if slots[i].is_none() {
                        slots[i] = Some(v);
                    }
                }
            }
        }
        let get = |slot: usize| {
            if use_slots {
                slots[slot]
            } else {
                find(map, &self.names[slot].name)
            }
        };

        // Checked after the key walk, reported before its violations.
        let walk_end = out.as_deref().map_or(0, Vec::len);
        for (name, slot) in &self.required {
            if get(*slot).is_none() {
                fail!(
                    out,
                    valid,
                    violation(
                        "required",
                        format!("must have required property '{name}'"),
                        name.clone(),
                        at,
                        path
                    )
                );
            }
        }
        if let Some(min) = self.min_properties {
            if map.len() < min {
                fail!(
                    out,
                    valid,
                    violation(
                        "minProperties",
                        format!("must NOT have fewer than {min} properties"),
                        at.last(),
                        at,
                        path
                    )
                );
            }
        }
        if let Some(max) = self.max_properties {
            if map.len() > max {
                fail!(
                    out,
                    valid,
                    violation(
                        "maxProperties",
                        format!("must NOT have more than {max} properties"),
                        at.last(),
                        at,
                        path
                    )
                );
            }
        }
        if let Some(out) = out.as_deref_mut() {
            if walk_end > walk_start && out.len() > walk_end {
                out[walk_start..].rotate_left(walk_end - walk_start);
            }
        }

        if !key_walk {
            for ((name, schema), slot) in self.properties.iter().zip(&self.property_slots) {
                if let Some(v) = get(*slot) {
                    if !schema.eval(v, &At::Key(at, name), out.as_deref_mut()) {
                        if out.is_none() {
                            return false;
                        }
                        valid = false;
                    }
                }
            }
        }
        for (name, slot, dep) in &self.dependencies {
            if get(*slot).is_none() {
                continue;
            }
            match dep {
                Dependency::Properties(needed) => {
                    for (n, slot) in needed {
                        if get(*slot).is_none() {
                            fail!(
                                out,
                                valid,
                                violation(
                                    "dependencies",
                                    format!(
                                        "must have property {n} when property {name} is present"
                                    ),
                                    n.clone(),
                                    at,
                                    path
                                )
                            );
                        }
                    }
                }
                Dependency::Schema(schema) => {
                    if !schema.eval(value, at, None) {
                        fail!(
                            out,
                            valid,
                            violation(
                                "dependencies",
                                format!("must match the dependent schema of property {name}"),
                                name.clone(),
                                at,
                                path
                            )
                        );
                    }
                }
            }
        }
        valid
    }

    /// Branch errors of `anyOf`/`oneOf`/`not` are not reported: a failed branch of an
    /// alternative is expected, so only the combinator's own failure is a violation.
    fn eval_combinators(
        &self,
        value: &Value,
        at: &At,
        mut out: Option<&mut Vec<Violation>>,
    ) -> bool {
        let mut valid = true;
        let path = &*self.path;
        for schema in &self.all_of {
            if !schema.eval(value, at, out.as_deref_mut()) {
                if out.is_none() {
                    return false;
                }
                valid = false;
            }
        }
        if !self.any_of.is_empty() && !self.any_of.iter().any(|s| s.eval(value, at, None)) {
            fail!(
                out,
                valid,
                violation(
                    "anyOf",
                    "must match a schema in anyOf".into(),
                    at.last(),
                    at,
                    path
                )
            );
        }
        if !self.one_of.is_empty() {
            let passing = self
                .one_of
                .iter()
                .filter(|s| s.eval(value, at, None))
                .take(2)
                .count();
            if passing != 1 {
                fail!(
                    out,
                    valid,
                    violation(
                        "oneOf",
                        "must match exactly one schema in oneOf".into(),
                        at.last(),
                        at,
                        path
                    )
                );
            }
        }
        if let Some(not) = &self.not {
            if not.eval(value, at, None) {
                fail!(
                    out,
                    valid,
                    violation("not", "must NOT be valid".into(), at.last(), at, path)
                );
            }
        }
        if let Some(condition) = &self.condition {
            let (test, then, otherwise) = &**condition;
            let (branch, name) = if test.eval(value, at, None) {
                (then, "then")
            } else {
                (otherwise, "else")
            };
            if let Some(branch) = branch {
                if !branch.eval(value, at, out.as_deref_mut()) {
                    fail!(
                        out,
                        valid,
                        violation(
                            "if",
                            format!("must match \"{name}\" schema"),
                            at.last(),
                            at,
                            path
                        )
                    );
                }
            }
        }
        valid
    }
}

/// `a == b` for slices of equal length, without a library call for short names.
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let load8 = |s: &[u8], i: usize| u64::from_le_bytes(s[i..i + 8].try_into().unwrap());
    let load4 = |s: &[u8], i: usize| u32::from_le_bytes(s[i..i + 4].try_into().unwrap());
    match n {
        0 => true,
        1..=3 => a.iter().zip(b).all(|(x, y)| x == y),
        4..=7 => load4(a, 0) == load4(b, 0) && load4(a, n - 4) == load4(b, n - 4),
        8..=16 => load8(a, 0) == load8(b, 0) && load8(a, n - 8) == load8(b, n - 8),
        _ => a == b,
    }
}

fn length_bit(name: &str) -> u64 {
    1 << name.len().min(63)
}

fn by_length_then_bytes(a: &str, b: &str) -> std::cmp::Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// Looks `name` up in an event object. Event objects are small, and there a scan comparing
/// lengths first beats hashing the name with SipHash.
fn find<'v>(map: &'v Object, name: &str) -> Option<&'v Value> {
    map.iter()
        .find(|(k, _)| same_bytes(k.as_bytes(), name.as_bytes()))
        .map(|(_, v)| v)
}

fn first_duplicate(list: &[Value]) -> Option<(usize, usize)> {
    for j in 1..list.len() {
        for i in 0..j {
            if json_equal(&list[i], &list[j]) {
                return Some((i, j));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// An event value as the pipeline holds it: parsed from JSON text, keys in document order.
    fn doc(v: JsonValue) -> Value {
        sonic_rs::from_str(&v.to_string()).unwrap()
    }

    fn errors(
        schema: JsonValue,
        instance: JsonValue,
    ) -> Vec<(ViolationKind, String, String, String, String)> {
        let schema = Schema::compile(&schema).unwrap();
        let instance = doc(instance);
        let mut out = Vec::new();
        schema.validate(&instance, &mut out);
        assert_eq!(
            schema.is_valid(&instance),
            out.is_empty(),
            "is_valid disagrees with validate"
        );
        out.into_iter()
            .map(|v| {
                (
                    v.kind,
                    v.message,
                    v.property,
                    v.instance_path,
                    v.schema_path,
                )
            })
            .collect()
    }

    fn messages(schema: JsonValue, instance: JsonValue) -> Vec<String> {
        errors(schema, instance).into_iter().map(|e| e.1).collect()
    }

    fn compile_error(schema: JsonValue) -> String {
        Schema::compile(&schema).unwrap_err().to_string()
    }

    #[test]
    fn type_keyword() {
        assert_eq!(
            messages(json!({"type": "number"}), json!("1")),
            ["must be number"]
        );
        assert!(messages(json!({"type": "integer"}), json!(1.0)).is_empty());
        assert_eq!(
            messages(json!({"type": "integer"}), json!(1.5)),
            ["must be integer"]
        );
        assert!(messages(json!({"type": "number"}), json!(7)).is_empty());
        assert_eq!(
            messages(json!({"type": ["string", "null"]}), json!(0)),
            ["must be string,null"]
        );
        assert!(messages(json!({"type": ["string", "null"]}), json!(null)).is_empty());
        let e = errors(json!({"type": "boolean"}), json!(1));
        assert_eq!(e[0].0, ViolationKind::DatatypeMismatch);
        assert_eq!(e[0].4, "#/type");
        assert!(compile_error(json!({"type": "float"}))
            .contains("keyword `type` at #/type must be a type name"));
    }

    #[test]
    fn properties_required_additional() {
        let schema = json!({
            "properties": {"a": {"type": "string"}, "b": {"properties": {"c": {"type": "integer"}}}},
            "required": ["a", "z"],
            "additionalProperties": false
        });
        let e = errors(schema, json!({"a": 1, "b": {"c": "x"}, "extra/key": true}));
        assert_eq!(e.len(), 4);
        assert_eq!(
            e[0],
            (
                ViolationKind::RequiredMissing,
                "must have required property 'z'".into(),
                "z".into(),
                "".into(),
                "#/required".into()
            )
        );
        assert_eq!(e[1].0, ViolationKind::DatatypeMismatch);
        assert_eq!(e[1].3, "/a");
        assert_eq!(
            (e[2].2.as_str(), e[2].3.as_str(), e[2].4.as_str()),
            ("c", "/b/c", "#/properties/b/properties/c/type")
        );
        assert_eq!(
            (e[3].0, e[3].2.as_str()),
            (ViolationKind::AdditionalProperties, "extra/key")
        );
        // Keywords of the wrong instance type do not apply.
        assert!(messages(json!({"required": ["a"]}), json!([1])).is_empty());
    }

    #[test]
    fn additional_properties_schema_and_pattern_properties() {
        let schema = json!({"properties": {"id": true}, "patternProperties": {"^x_": {"type": "string"}},
                            "additionalProperties": {"type": "number"}});
        assert!(messages(schema.clone(), json!({"id": [], "x_a": "s", "n": 1})).is_empty());
        let e = errors(schema, json!({"x_a": 1, "n": "s"}));
        assert_eq!(
            e.iter().map(|e| e.3.as_str()).collect::<Vec<_>>(),
            ["/x_a", "/n"]
        );
    }

    #[test]
    fn enum_and_const() {
        assert!(messages(json!({"enum": [1, "a", {"k": [1]}]}), json!({"k": [1.0]})).is_empty());
        let e = errors(json!({"enum": ["a", "b"]}), json!("c"));
        assert_eq!(
            (e[0].0, e[0].1.as_str()),
            (
                ViolationKind::AdvanceRulesViolation,
                "must be equal to one of the allowed values"
            )
        );
        assert_eq!(
            messages(json!({"const": 2}), json!(2.5)),
            ["must be equal to constant"]
        );
        assert!(messages(json!({"const": null}), json!(null)).is_empty());
        assert!(compile_error(json!({"enum": "a"})).contains("`enum` at #/enum must be an array"));
    }

    #[test]
    fn numeric_bounds() {
        let schema =
            json!({"minimum": 1, "maximum": 10, "exclusiveMinimum": 0, "exclusiveMaximum": 10});
        assert!(messages(schema.clone(), json!(5)).is_empty());
        assert_eq!(messages(schema.clone(), json!(10)), ["must be < 10"]);
        assert_eq!(
            messages(schema.clone(), json!(0)),
            ["must be >= 1", "must be > 0"]
        );
        assert_eq!(
            messages(schema, json!(10.5)),
            ["must be <= 10", "must be < 10"]
        );
        assert!(messages(json!({"minimum": 1}), json!("0")).is_empty());
        let err = compile_error(json!({"exclusiveMinimum": true, "minimum": 0}));
        assert!(err.contains("draft-04 boolean form"), "{err}");
    }

    #[test]
    fn multiple_of() {
        assert!(messages(json!({"multipleOf": 0.01}), json!(19.99)).is_empty());
        assert!(messages(json!({"multipleOf": 3}), json!(-9)).is_empty());
        assert_eq!(
            messages(json!({"multipleOf": 3}), json!(10)),
            ["must be multiple of 3"]
        );
        assert_eq!(
            messages(json!({"multipleOf": 0.5}), json!(0.7)),
            ["must be multiple of 0.5"]
        );
        assert!(compile_error(json!({"multipleOf": 0})).contains("greater than 0"));
    }

    #[test]
    fn string_lengths_count_code_points() {
        assert!(messages(json!({"maxLength": 2}), json!("💩💩")).is_empty());
        assert_eq!(
            messages(json!({"maxLength": 1}), json!("💩💩")),
            ["must NOT have more than 1 characters"]
        );
        assert!(messages(json!({"minLength": 2}), json!("é😀")).is_empty());
        assert_eq!(
            messages(json!({"minLength": 3}), json!("é😀")),
            ["must NOT have fewer than 3 characters"]
        );
        assert!(messages(json!({"minLength": 2.0}), json!("ab")).is_empty());
        assert!(compile_error(json!({"minLength": -1})).contains("non-negative integer"));
    }

    #[test]
    fn pattern_is_unanchored_ecma() {
        assert!(messages(json!({"pattern": "b+"}), json!("abbc")).is_empty());
        assert_eq!(
            messages(json!({"pattern": "^\\d{3}$"}), json!("١٢٣")),
            ["must match pattern \"^\\d{3}$\""]
        );
        assert!(messages(json!({"pattern": "^[\\w-]+$"}), json!("a_b-1")).is_empty());
        assert!(messages(json!({"pattern": "^[\\w-]+$"}), json!("é")).len() == 1);
        assert!(messages(json!({"pattern": "^[a[]+$"}), json!("a[a")).is_empty());
        let err = compile_error(json!({"pattern": "(?=a)"}));
        assert!(
            err.starts_with("pattern at #/pattern cannot be compiled"),
            "{err}"
        );
    }

    #[test]
    fn format_keyword() {
        let e = errors(json!({"format": "email"}), json!("nope"));
        assert_eq!(
            (e[0].0, e[0].1.as_str()),
            (
                ViolationKind::AdvanceRulesViolation,
                "must match format \"email\""
            )
        );
        assert!(messages(
            json!({"format": "uuid"}),
            json!("123e4567-e89b-12d3-a456-426614174000")
        )
        .is_empty());
        assert!(messages(json!({"format": "date-time"}), json!(5)).is_empty());
        assert!(compile_error(json!({"format": "hostname"}))
            .contains("format \"hostname\" at # is not supported"));
    }

    #[test]
    fn arrays() {
        let schema = json!({"items": {"type": "integer"}, "minItems": 1, "maxItems": 3, "uniqueItems": true});
        assert!(messages(schema.clone(), json!([1, 2, 3])).is_empty());
        assert_eq!(
            messages(schema.clone(), json!([])),
            ["must NOT have fewer than 1 items"]
        );
        let e = errors(schema.clone(), json!([1, "x", 1.0, 4]));
        assert_eq!(e[0].1, "must NOT have more than 3 items");
        assert_eq!(
            (e[1].3.as_str(), e[1].4.as_str(), e[1].2.as_str()),
            ("/1", "#/items/type", "1")
        );
        assert_eq!(
            e[2].1,
            "must NOT have duplicate items (items ## 2 and 0 are identical)"
        );
        let tuple = json!({"items": [{"type": "string"}], "additionalItems": false});
        assert!(messages(tuple.clone(), json!(["a"])).is_empty());
        assert_eq!(
            messages(tuple, json!(["a", 1])),
            ["must NOT have more than 1 items"]
        );
        assert_eq!(
            messages(json!({"contains": {"const": 5}}), json!([1])),
            ["must contain at least 1 valid item(s)"]
        );
    }

    #[test]
    fn object_counts_names_dependencies() {
        assert_eq!(
            messages(json!({"minProperties": 1}), json!({})),
            ["must NOT have fewer than 1 properties"]
        );
        assert_eq!(
            messages(json!({"maxProperties": 0}), json!({"a": 1})),
            ["must NOT have more than 0 properties"]
        );
        let e = errors(
            json!({"propertyNames": {"maxLength": 3}}),
            json!({"abcd": 1}),
        );
        assert_eq!(
            (e[0].0, e[0].2.as_str()),
            (ViolationKind::UnknownViolation, "abcd")
        );
        let deps = json!({"dependencies": {"card": ["billing"], "coupon": {"required": ["code"]}}});
        assert!(messages(deps.clone(), json!({"billing": 1})).is_empty());
        assert_eq!(
            messages(deps.clone(), json!({"card": 1})),
            ["must have property billing when property card is present"]
        );
        assert_eq!(
            messages(deps, json!({"coupon": 1})),
            ["must match the dependent schema of property coupon"]
        );
    }

    #[test]
    fn combinators() {
        let any = json!({"anyOf": [{"type": "string"}, {"type": "number"}]});
        assert!(messages(any.clone(), json!(1)).is_empty());
        let e = errors(any, json!(null));
        assert_eq!(
            (e.len(), e[0].0, e[0].4.as_str()),
            (1, ViolationKind::UnknownViolation, "#/anyOf")
        );
        let one = json!({"oneOf": [{"minimum": 0}, {"maximum": 10}]});
        assert!(messages(one.clone(), json!(-1)).is_empty());
        assert_eq!(
            messages(one, json!(5)),
            ["must match exactly one schema in oneOf"]
        );
        assert_eq!(
            messages(
                json!({"allOf": [{"type": "string"}, {"minLength": 2}]}),
                json!(1)
            ),
            ["must be string"]
        );
        assert_eq!(
            messages(json!({"not": {"type": "null"}}), json!(null)),
            ["must NOT be valid"]
        );
        let cond = json!({"if": {"properties": {"country": {"const": "US"}}},
                          "then": {"required": ["zip"]}, "else": {"required": ["postcode"]}});
        assert!(messages(cond.clone(), json!({"country": "US", "zip": "1"})).is_empty());
        assert_eq!(
            messages(cond, json!({"country": "FR"})),
            [
                "must have required property 'postcode'",
                "must match \"else\" schema"
            ]
        );
    }

    #[test]
    fn boolean_schemas() {
        assert!(messages(json!(true), json!({"anything": 1})).is_empty());
        let e = errors(json!({"properties": {"x": false}}), json!({"x": 1}));
        assert_eq!(
            (e[0].0, e[0].3.as_str(), e[0].4.as_str()),
            (
                ViolationKind::UnknownViolation,
                "/x",
                "#/properties/x/false schema"
            )
        );
    }

    #[test]
    fn annotations_are_accepted_unsupported_keywords_are_not() {
        let schema = json!({"$schema": "http://json-schema.org/draft-07/schema#", "$id": "x", "title": "t",
                            "description": "d", "$comment": "c", "default": 1, "examples": [1],
                            "definitions": {"unused": {"$ref": "#"}}, "readOnly": true, "writeOnly": false});
        assert!(messages(schema, json!(1)).is_empty());
        for keyword in [
            "$ref",
            "contentMediaType",
            "unevaluatedProperties",
            "x-custom",
        ] {
            let err = compile_error(json!({"properties": {"a": {keyword: "x"}}}));
            assert!(
                err.starts_with(&format!(
                    "keyword `{keyword}` at #/properties/a is not supported"
                )),
                "{err}"
            );
        }
        assert!(compile_error(json!(1)).contains("must be an object or a boolean"));
    }

    #[test]
    fn pointers_are_escaped() {
        let e = errors(
            json!({"properties": {"a/b": {"properties": {"c~d": {"type": "string"}}}}}),
            json!({"a/b": {"c~d": 1}}),
        );
        assert_eq!(
            (e[0].3.as_str(), e[0].4.as_str()),
            ("/a~1b/c~0d", "#/properties/a~1b/properties/c~0d/type")
        );
    }
}
