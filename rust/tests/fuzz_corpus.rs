//! The kept fuzz corpus (`rust/fuzz/corpus/<target>/`) through the same checks the fuzz targets
//! run, so that every input that once found a bug, or reached new code, stays checked on stable.

use std::fs;
use std::path::Path;

use tidegate_core::fuzzing::{check_batch, check_ingest, check_plan};

fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let mut inputs = 0;
    for entry in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(outcome.is_ok(), "{target}: {} fails its check", path.display());
        inputs += 1;
    }
    assert!(inputs > 0, "no corpus in {}", dir.display());
}

#[test]
fn batch_corpus() {
    replay("batch", check_batch);
}

#[test]
fn ingest_corpus() {
    replay("ingest", check_ingest);
}

#[test]
fn plan_corpus() {
    replay("plan", check_plan);
}
