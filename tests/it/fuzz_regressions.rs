//! The fuzz targets' inputs, replayed on stable: every file in `fuzz/regressions/<target>/`
//! (a small seed corpus, and each input that ever crashed a target) goes through the same
//! function the target calls (`atoll::fuzzing`). A crash found by `reliability/fuzz.sh` is
//! fixed, and its input added here, so it stays fixed.

use std::path::{Path, PathBuf};

fn inputs(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{}: no inputs", dir.display());
    files
}

/// Feeds each input to `f`; a panic names the input.
fn replay(target: &str, f: impl Fn(&[u8]) + std::panic::RefUnwindSafe) {
    for path in inputs(target) {
        let data = std::fs::read(&path).unwrap();
        if std::panic::catch_unwind(|| f(&data)).is_err() {
            panic!(
                "fuzz/regressions/{target}/{} fails again",
                path.file_name().unwrap().to_string_lossy()
            );
        }
    }
}

#[test]
fn manifest_inputs() {
    replay("manifest", atoll::fuzzing::manifest);
}

#[test]
fn reference_inputs() {
    replay("reference", atoll::fuzzing::reference);
}

#[test]
fn range_inputs() {
    replay("range", atoll::fuzzing::range);
}

#[test]
fn htpasswd_inputs() {
    replay("htpasswd", atoll::fuzzing::htpasswd);
}

#[test]
fn bundle_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    replay("bundle", move |data| {
        let _ = atoll::fuzzing::bundle(&path, data);
    });
}

#[test]
fn the_seed_bundles_import() {
    // The seeds are real bundles: the bundle target reaches past the tar reader.
    for seed in ["seed-oci-layout", "seed-docker-archive"] {
        let dir = tempfile::tempdir().unwrap();
        let data = std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fuzz/regressions/bundle")
                .join(seed),
        )
        .unwrap();
        let images = atoll::fuzzing::bundle(dir.path(), &data);
        assert_eq!(images, Ok(1), "{seed}");
        let blobs = crate::support::files_under(&dir.path().join("data/blobs"));
        assert!(blobs.len() >= 2, "{seed} imported {blobs:?}");
    }
}
