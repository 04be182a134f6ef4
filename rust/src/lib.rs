//! tidegate-core: the hot path of Tidegate, over whole batches.
//!
//! Domain modules hold no PyO3 types, so `cargo test` checks them without Python; the one
//! `#[pymodule]` lives in [`python`], compiled with the `python` feature that maturin enables.

pub mod archive;
pub mod batch;
pub mod dedupe;
pub mod fields;
pub mod fuzzing;
pub mod govern;
pub mod idempotency;
pub mod identity;
pub mod ingest;
pub mod json;
pub mod pii;
pub mod plan;
mod pointer;
pub mod reconcile;
pub mod timefmt;
pub mod warehouse;

#[cfg(feature = "python")]
mod python;

/// Append the JSON text of `value` to `out`. (serde_json is built without `std`, so without
/// `to_writer`; see Cargo.toml.)
pub(crate) fn write_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    let text = serde_json::to_vec(value).expect("serialising a Value or str cannot fail");
    out.extend_from_slice(&text);
}
