#![no_main]
//! `tidegate_core::fuzzing::check_batch` on every input; see its documentation.

libfuzzer_sys::fuzz_target!(|data: &[u8]| tidegate_core::fuzzing::check_batch(data));
