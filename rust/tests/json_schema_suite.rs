//! Conformance with the official JSON Schema Test Suite, draft-07.
//!
//! Every top-level draft7 file runs, plus the optional format files for the formats we check.
//! A group whose schema uses a keyword or format we do not support is "not applicable", and for
//! those the test asserts that `Schema::compile` refuses the schema: a plan must never look
//! enforced while a rule is silently ignored. Every other case must pass.
//!
//! Fetch the suite with `scripts/fetch-json-schema-suite` (it prints the folder to export as
//! `JSON_SCHEMA_TEST_SUITE`); see the table with `cargo test --test json_schema_suite -- --nocapture`.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;
use tidegate_core::plan::{Schema, SUPPORTED_FORMATS, SUPPORTED_KEYWORDS};

fn suite_dir() -> PathBuf {
    let dir = match std::env::var_os("JSON_SCHEMA_TEST_SUITE") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../.cache/json-schema-test-suite/tests/draft7"),
    };
    assert!(
        dir.join("type.json").is_file(),
        "JSON Schema Test Suite not found at {}: run `scripts/fetch-json-schema-suite` and set \
         JSON_SCHEMA_TEST_SUITE to the draft7 folder it prints",
        dir.display()
    );
    dir
}

/// The first keyword or format in `schema` that the compiler does not support, walking only the
/// places where draft-07 holds subschemas.
fn unsupported(schema: &Value) -> Option<String> {
    let Value::Object(map) = schema else {
        return None;
    };
    for (keyword, value) in map {
        if !SUPPORTED_KEYWORDS.contains(&keyword.as_str()) {
            return Some(keyword.clone());
        }
        let found = match keyword.as_str() {
            "properties" | "patternProperties" | "dependencies" => value
                .as_object()
                .and_then(|m| m.values().find_map(unsupported)),
            "items" | "allOf" | "anyOf" | "oneOf" => match value {
                Value::Array(list) => list.iter().find_map(unsupported),
                schema => unsupported(schema),
            },
            "additionalProperties"
            | "additionalItems"
            | "contains"
            | "propertyNames"
            | "not"
            | "if"
            | "then"
            | "else" => unsupported(value),
            "format" => value
                .as_str()
                .filter(|f| !SUPPORTED_FORMATS.contains(f))
                .map(|f| format!("format \"{f}\"")),
            _ => None,
        };
        if found.is_some() {
            return found;
        }
    }
    None
}

#[derive(Default)]
struct Row {
    file: String,
    groups: usize,
    cases: usize,
    passed: usize,
    not_applicable: usize,
}

fn run_file(path: &Path, name: &str, failures: &mut Vec<String>) -> Row {
    let groups: Vec<Value> = serde_json::from_str(&fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut row = Row {
        file: name.to_owned(),
        ..Row::default()
    };
    for group in &groups {
        let description = group["description"].as_str().unwrap_or("?");
        let tests = group["tests"].as_array().expect("tests array");
        row.groups += 1;
        row.cases += tests.len();
        let compiled = Schema::compile(&group["schema"]);
        if let Some(keyword) = unsupported(&group["schema"]) {
            row.not_applicable += tests.len();
            if compiled.is_ok() {
                failures.push(format!(
                    "{name} / {description}: uses unsupported {keyword} but compiled"
                ));
            }
            continue;
        }
        let schema = match compiled {
            Ok(schema) => schema,
            Err(e) => {
                failures.push(format!("{name} / {description}: compile failed: {e}"));
                continue;
            }
        };
        for test in tests {
            let expected = test["valid"].as_bool().expect("valid flag");
            // Instances are validated as the pipeline holds events: parsed by sonic-rs.
            let data: sonic_rs::Value = sonic_rs::from_str(&test["data"].to_string())
                .unwrap_or_else(|e| panic!("{name} / {description}: {e}"));
            let mut violations = Vec::new();
            schema.validate(&data, &mut violations);
            let is_valid = schema.is_valid(&data);
            if is_valid == expected && violations.is_empty() == expected {
                row.passed += 1;
            } else {
                failures.push(format!(
                    "{name} / {description} / {}: expected valid={expected}, is_valid={is_valid}, violations={:?}",
                    test["description"].as_str().unwrap_or("?"),
                    violations.iter().map(|v| &v.message).collect::<Vec<_>>()
                ));
            }
        }
    }
    row
}

#[test]
fn draft7_conformance() {
    let dir = suite_dir();
    let mut files: Vec<(PathBuf, String)> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (p, name)
        })
        .collect();
    files.sort_by(|a, b| a.1.cmp(&b.1));
    for format in SUPPORTED_FORMATS {
        let p = dir.join("optional/format").join(format!("{format}.json"));
        // uuid only entered the suite with draft 2019-09.
        if p.is_file() {
            files.push((p, format!("optional/format/{format}.json")));
        }
    }

    let mut failures = Vec::new();
    let rows: Vec<Row> = files
        .iter()
        .map(|(p, name)| run_file(p, name, &mut failures))
        .collect();

    println!(
        "{:<40} {:>6} {:>6} {:>6} {:>6}",
        "file", "groups", "cases", "passed", "n/a"
    );
    for r in &rows {
        println!(
            "{:<40} {:>6} {:>6} {:>6} {:>6}",
            r.file, r.groups, r.cases, r.passed, r.not_applicable
        );
    }
    let total = |f: fn(&Row) -> usize| rows.iter().map(f).sum::<usize>();
    println!(
        "{:<40} {:>6} {:>6} {:>6} {:>6}",
        "TOTAL",
        total(|r| r.groups),
        total(|r| r.cases),
        total(|r| r.passed),
        total(|r| r.not_applicable)
    );

    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // Guards against a truncated or wrong folder making the run vacuous.
    assert!(
        rows.len() >= 35,
        "only {} files found in {}",
        rows.len(),
        dir.display()
    );
    for keyword in [
        "type",
        "properties",
        "required",
        "enum",
        "pattern",
        "items",
        "minimum",
        "format",
    ] {
        let row = rows
            .iter()
            .find(|r| r.file == format!("{keyword}.json"))
            .expect(keyword);
        assert!(row.passed > 0, "{keyword}.json: no applicable case ran");
    }
    assert!(
        total(|r| r.passed) >= 500,
        "only {} cases passed",
        total(|r| r.passed)
    );
}
