//! tidegate-core: the hot path of Tidegate, over whole batches.
//!
//! Domain modules hold no PyO3 types, so `cargo test` checks them without Python; the one
//! `#[pymodule]` lives in [`python`], compiled with the `python` feature that maturin enables.

pub mod batch;
pub mod dedupe;
pub mod govern;
pub mod idempotency;
pub mod identity;
pub mod ingest;
pub mod pii;
pub mod plan;
mod pointer;
pub mod timefmt;
pub mod warehouse;

#[cfg(feature = "python")]
mod python;
