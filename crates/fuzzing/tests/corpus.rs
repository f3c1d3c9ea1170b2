//! Every input kept in `fuzz/seeds/TARGET/` (hand-written) and
//! `fuzz/corpus/TARGET/` (what fuzzing runs found worth keeping) through its
//! target: what once passed must keep passing, and a crash found by fuzzing,
//! once its input is added to the seeds, stays fixed.

use std::path::PathBuf;

#[test]
fn the_kept_corpus_passes_every_target() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    for (name, target) in nearhost_fuzzing::TARGETS {
        let dir = root.join(name);
        let inputs: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        assert!(
            inputs.len() >= 3,
            "{name}: only {} inputs kept in {}",
            inputs.len(),
            dir.display()
        );
        for path in inputs {
            let data = std::fs::read(&path).unwrap();
            let run = std::panic::catch_unwind(|| target(&data));
            assert!(run.is_ok(), "{name} fails on {}", path.display());
        }
    }
}
