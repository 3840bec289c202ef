#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

/// One registry per fuzzing process, under the system's temp directory.
fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("atoll-fuzz-bundle-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = atoll::fuzzing::bundle(dir(), data);
});
