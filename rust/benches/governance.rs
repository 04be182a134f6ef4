//! Throughput of the governance hot path on ≈700-byte events: parse, tracking-plan validation,
//! PII scan, all three together, and the whole batch call (`batch::process`: parse, keys,
//! policy, warehouse layout) on collector envelopes of 25 events.
//! `cargo bench -p tidegate-core --bench governance`.
//! The target is ≥500K events/s per core for the whole batch call (see DESIGN.md).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;
use sonic_rs::Value;
use tidegate_core::batch::{self, Message};
use tidegate_core::govern::{Governance, SourcePolicy};
use tidegate_core::json::parse;
use tidegate_core::pii::{apply, PiiAction, PiiClass, PiiPolicy, PiiScanner};
use tidegate_core::plan::TrackingPlan;

fn event(i: usize) -> Vec<u8> {
    let note = if i.is_multiple_of(20) {
        "call me at +44 20 7946 0958 tomorrow"
    } else {
        "left at the front desk, thanks"
    };
    serde_json::to_vec(&json!({
        "type": "track",
        "event": "Order Completed",
        "messageId": format!("7f1c2a9e-{:04x}-4b6e-9c1d-5e8f3a2b1c0d", i % 65536),
        "anonymousId": "a9f0c6b2-1c1e-4f7e-9d1a-0b7c2f3e4d5a",
        "userId": format!("user_{i}"),
        "timestamp": "2026-11-26T05:32:00.123Z",
        "sentAt": "2026-11-26T05:32:01.456Z",
        "receivedAt": "2026-11-26T05:32:01.789Z",
        "properties": {
            "order_id": format!("ORD-2026-{i:06}"),
            "total": 129.99, "revenue": 119.99, "currency": "EUR", "coupon": null,
            "products": [
                {"product_id": "507f1f77bcf86cd799439011", "sku": "SKU-4821-BLK-XL", "name": "Rain Jacket", "price": 89.99, "quantity": 1},
                {"product_id": "507f191e810c19729de860ea", "sku": "SKU-1180-WHT-M", "name": "T-Shirt", "price": 19.99, "quantity": 2}
            ],
            "delivery_note": note
        },
        "context": {
            "library": {"name": "analytics.js", "version": "4.1.0"},
            "page": {"path": "/checkout/complete", "url": "https://shop.example.com/checkout/complete?step=3", "referrer": "https://shop.example.com/cart"},
            "userAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
            "locale": "en-GB", "ip": "81.2.69.160"
        }
    }))
    .unwrap()
}

fn plan() -> TrackingPlan {
    TrackingPlan::compile(&json!({
        "id": "tp_bench", "version": 1,
        "events": {"Order Completed": {"properties": {"properties": {
            "type": "object",
            "required": ["order_id", "total", "currency", "products"],
            "properties": {
                "order_id": {"type": "string", "pattern": "^ORD-"},
                "total": {"type": "number", "minimum": 0},
                "revenue": {"type": "number"},
                "currency": {"enum": ["EUR", "USD", "GBP"]},
                "coupon": {"type": ["string", "null"]},
                "delivery_note": {"type": "string", "maxLength": 500},
                "products": {"type": "array", "items": {"type": "object", "required": ["sku", "price"],
                    "properties": {"sku": {"type": "string"}, "price": {"type": "number"}, "quantity": {"type": "integer", "minimum": 1}}}}
            },
            "additionalProperties": false
        }}}},
        "common": {"required": ["messageId", "type"], "properties": {"timestamp": {"format": "date-time"}}}
    }))
    .unwrap()
}

/// Nanoseconds this thread has run on a CPU (Linux), so that the rate holds on a shared
/// machine: time spent waiting for a core is not counted.
fn cpu_ns() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    stat.split_whitespace().next()?.parse().ok()
}

/// `GOVERNANCE_BENCH_ONLY=<label prefix>` runs one line, e.g. under `perf stat`.
fn rate(label: &str, n: usize, f: impl FnMut()) {
    if std::env::var("GOVERNANCE_BENCH_ONLY").is_ok_and(|only| !label.starts_with(&only)) {
        return;
    }
    let mut f = f;
    f(); // warm up
    let (start, cpu_start) = (Instant::now(), cpu_ns());
    f();
    let wall = start.elapsed().as_secs_f64();
    // CPU time when the OS reports it, else wall-clock time.
    let secs = cpu_start.zip(cpu_ns()).map_or(wall, |(a, b)| (b - a) as f64 / 1e9);
    println!(
        "{label:<36} {:>10.0} events/s  ({:.0} ns/event; wall clock {:.0} ns/event)",
        n as f64 / secs,
        secs * 1e9 / n as f64,
        wall * 1e9 / n as f64
    );
}

fn main() {
    let n = 200_000;
    let raw: Vec<Vec<u8>> = (0..n).map(event).collect();
    let avg = raw.iter().map(Vec::len).sum::<usize>() / n;
    println!("{n} events, {avg} bytes on average");
    let plan = plan();
    let scanner = PiiScanner::default();
    let policy = PiiPolicy::new(
        PiiAction::Redact,
        &[(PiiClass::Email, PiiAction::Hash)],
        &[7u8; 32],
    )
    .unwrap();

    // Each event is parsed and processed while it is hot in cache, as in the batch call; the
    // cost of a stage is the difference from the parse-only line.
    let mut violations = Vec::new();
    let mut findings = Vec::new();
    rate("parse only", n, || {
        for b in &raw {
            black_box(parse(b).unwrap());
        }
    });
    rate("parse + plan validate", n, || {
        for b in &raw {
            let e: Value = parse(b).unwrap();
            violations.clear();
            plan.validate_event(&e, &mut violations);
            assert!(violations.is_empty());
        }
    });
    rate("parse + PII scan", n, || {
        for b in &raw {
            let e: Value = parse(b).unwrap();
            findings.clear();
            scanner.scan_event(&e, &mut findings);
            black_box(&findings);
        }
    });
    rate("parse + validate + scan + apply", n, || {
        for b in &raw {
            let mut e: Value = parse(b).unwrap();
            violations.clear();
            plan.validate_event(&e, &mut violations);
            findings.clear();
            scanner.scan_event(&e, &mut findings);
            if !findings.is_empty() {
                black_box(apply(&mut e, &findings, &policy));
            }
            black_box(&e);
        }
    });

    // The whole batch call, on envelopes of 25 events (the collector's 100-event requests split
    // over 4 partitions), 10 000 events per batch.
    let envelopes: Vec<Vec<u8>> = raw
        .chunks(25)
        .map(|events| {
            let mut m = b"[".to_vec();
            m.extend(events.join(&b","[..]));
            m.push(b']');
            m
        })
        .collect();
    let batches: Vec<Vec<Message<'_>>> = envelopes
        .chunks(400)
        .map(|chunk| {
            chunk
                .iter()
                .map(|events| Message { source: "web", received_at_us: 0, events, duplicates: b"", late_by_ms: &[] })
                .collect()
        })
        .collect();
    let extra = [("tidegate_config_version", Value::from("bench"))];
    let none = Governance::default();
    let mut governed = Governance::default();
    governed.sources.insert("web".into(), SourcePolicy { plan: Arc::new(plan), drop: [false; 6] });
    governed.pii = Some((scanner, policy));
    for (label, gov) in [("batch::process, no policy", &none), ("batch::process, plan + PII", &governed)] {
        rate(label, n, || {
            for msgs in &batches {
                let out = batch::process(msgs, &extra, gov);
                assert_eq!(out.accepted, msgs.len() * 25, "{:?}", out.rejected.first());
                black_box(out);
            }
        });
    }
}
