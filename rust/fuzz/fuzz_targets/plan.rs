#![no_main]
//! `tidegate_core::fuzzing::check_plan` on every input; see its documentation.

libfuzzer_sys::fuzz_target!(|data: &[u8]| tidegate_core::fuzzing::check_plan(data));
