#![no_main]
//! `tidegate_core::fuzzing::check_ingest` on every input; see its documentation.

libfuzzer_sys::fuzz_target!(|data: &[u8]| tidegate_core::fuzzing::check_ingest(data));
