//! The hot path allocates nothing for a clean event: validating an event that conforms to its
//! plan, and scanning an event with no PII, must not touch the heap (the buffers passed in
//! excepted). Counted with a global allocator that records this thread's allocations.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use serde_json::json;
use tidegate_core::pii::PiiScanner;
use tidegate_core::plan::TrackingPlan;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// An event as the pipeline holds it: parsed from JSON text by sonic-rs.
fn doc(v: serde_json::Value) -> sonic_rs::Value {
    sonic_rs::from_str(&v.to_string()).unwrap()
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn allocations_during(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

#[test]
fn clean_events_allocate_nothing() {
    let plan = TrackingPlan::compile(&json!({
        "id": "tp", "version": 1,
        "events": {"Order Completed": {"properties": {"properties": {
            "type": "object",
            "required": ["order_id", "total", "products"],
            "properties": {
                "order_id": {"type": "string", "pattern": "^ORD-", "minLength": 5, "maxLength": 40},
                "total": {"type": "number", "minimum": 0, "multipleOf": 0.01},
                "currency": {"enum": ["EUR", "USD"]},
                "coupon": {"type": ["string", "null"]},
                "products": {"type": "array", "minItems": 1, "uniqueItems": true,
                             "items": {"type": "object", "required": ["sku"], "additionalProperties": false,
                                       "properties": {"sku": {"type": "string"}, "qty": {"type": "integer"}}}},
                "channel": {"anyOf": [{"const": "web"}, {"const": "app"}]}
            },
            "propertyNames": {"maxLength": 32},
            "additionalProperties": false
        }}}},
        "common": {"required": ["messageId"], "properties": {
            "timestamp": {"format": "date-time"}, "messageId": {"format": "uuid"},
            "context": {"properties": {"page": {"properties": {"url": {"format": "uri"}}}}}}}
    }))
    .unwrap();
    let event = doc(json!({
        "type": "track", "event": "Order Completed",
        "messageId": "123e4567-e89b-12d3-a456-426614174000",
        "timestamp": "2026-11-26T05:32:00.123Z",
        "properties": {"order_id": "ORD-2026-000123", "total": 129.99, "currency": "EUR", "coupon": null,
                       "products": [{"sku": "SKU-4821-BLK-XL", "qty": 1}, {"sku": "SKU-1180", "qty": 2}],
                       "channel": "web"},
        "context": {"library": {"name": "analytics.js", "version": "4.1.0"},
                    "page": {"url": "https://shop.example.com/checkout?step=3", "title": "Checkout"},
                    "userAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36",
                    "token_count": 3, "build": "10.4.22.1"}
    }));
    let scanner = PiiScanner::default();
    let mut violations = Vec::with_capacity(8);
    let mut findings = Vec::with_capacity(8);

    // Warm up: the regex engine builds its matching cache lazily, on first use per pool slot.
    plan.validate_event(&event, &mut violations);
    scanner.scan_event(&event, &mut findings);

    let n = allocations_during(|| plan.validate_event(&event, &mut violations));
    assert!(violations.is_empty(), "{violations:?}");
    assert_eq!(n, 0, "validating a conforming event allocated {n} times");

    let n = allocations_during(|| scanner.scan_event(&event, &mut findings));
    assert!(findings.is_empty(), "{findings:?}");
    assert_eq!(n, 0, "scanning a PII-free event allocated {n} times");

    // The counter does see allocations: a failing event produces owned messages.
    let bad = doc(json!({"type": "track", "event": "Order Completed", "properties": {}}));
    let n = allocations_during(|| plan.validate_event(&bad, &mut violations));
    assert!(n > 0 && !violations.is_empty());
}
