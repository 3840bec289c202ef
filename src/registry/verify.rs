//! `atoll --verify [--repair]`: does what is on disk match what the index says?
//!
//! Every blob row's file is re-hashed against its digest (on every core) and its size
//! compared; every file under `blobs/` must have a row; SQLite checks itself. With `--repair`,
//! a blob whose bytes are wrong or missing is moved to `quarantine/` and its rows deleted, so
//! clients get BLOB_UNKNOWN (and push it again) instead of bad bytes; a manifest whose own bytes
//! are damaged goes with its tags, and is named in the report.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::Registry;
use crate::console::Sink;
use crate::digest::{Digest, Fanout, Key};
use crate::error::{IoContext, Result};
use crate::store::hash_reader;
use crate::units::human_bytes;

/// What is wrong with one blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Damage {
    Missing,
    WrongSize { expected: u64, actual: u64 },
    WrongContent { actual: Digest },
    Unreadable(String),
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Damage::Missing => f.write_str("its file is missing"),
            Damage::WrongSize { expected, actual } => {
                write!(f, "its file has {actual} bytes, the index says {expected}")
            }
            Damage::WrongContent { actual } => write!(f, "its file's content is {actual}"),
            Damage::Unreadable(e) => write!(f, "its file cannot be read: {e}"),
        }
    }
}

#[derive(Debug, Default)]
pub struct VerifyReport {
    pub checked: u64,
    pub bytes: u64,
    pub damaged: Vec<(Digest, Damage)>,
    /// Files with no index row (garbage collection removes them).
    pub orphans: Vec<Digest>,
    /// `PRAGMA integrity_check`'s and `foreign_key_check`'s answer ("ok" when sound).
    pub integrity: String,
    pub repaired: u64,
    /// `repo@digest` of manifests removed because their own bytes were damaged.
    pub removed_manifests: Vec<String>,
}

impl VerifyReport {
    /// True when nothing is wrong, or everything wrong was repaired.
    pub fn sound(&self) -> bool {
        self.integrity == "ok" && self.repaired == self.damaged.len() as u64
    }

    pub fn summary(&self) -> String {
        let mut s = format!(
            "verify: checked {} blobs ({}): {} damaged, {} files without an index row; index: {}",
            self.checked,
            human_bytes(self.bytes),
            self.damaged.len(),
            self.orphans.len(),
            self.integrity
        );
        if self.repaired > 0 {
            s.push_str(&format!(
                "; repaired {} (moved to quarantine/)",
                self.repaired
            ));
        }
        s
    }
}

impl Registry {
    pub fn verify(&self, repair: bool, sink: &mut dyn Sink) -> Result<VerifyReport> {
        let _lock = if repair { Some(self.gc_lock()?) } else { None };
        let mut report = VerifyReport {
            integrity: self.index.integrity_check()?,
            ..VerifyReport::default()
        };
        let rows: Vec<(String, u64)> = self.index.read(crate::index::queries::all_blobs)?;
        report.checked = rows.len() as u64;
        report.bytes = rows.iter().map(|(_, s)| s).sum();
        report.damaged = self.rehash(&rows, sink);
        for (d, why) in &report.damaged {
            sink.line(format_args!("damaged blob {d}: {why}"));
        }
        // The rows' digests as keys, sorted, and the listing compared as it comes (as the
        // collection's mark does: digest/key.rs).
        let mut known: Vec<Key> = rows.iter().map(|(d, _)| Key::parse(d)).collect();
        known.sort_unstable();
        let fanout = Fanout::new(&known);
        self.store.for_each_digest(|d| {
            if fanout.find(&known, |k| k, &Key::of(&d)).is_none() {
                report.orphans.push(d);
            }
        })?;
        for d in &report.orphans {
            sink.line(format_args!(
                "file of {d} has no index row (garbage collection removes it)"
            ));
        }
        if repair {
            let damaged = report.damaged.clone();
            for (d, _) in damaged {
                self.quarantine(&d, &mut report, sink)?;
            }
        }
        Ok(report)
    }

    /// Re-hashes every row's file, spreading the work over the cores.
    fn rehash(&self, rows: &[(String, u64)], sink: &mut dyn Sink) -> Vec<(Digest, Damage)> {
        let next = AtomicUsize::new(0);
        let done = AtomicUsize::new(0);
        let found = Mutex::new(Vec::new());
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((d, size)) = rows.get(i) else { break };
                    if let Some(damage) = self.check_one(d, *size) {
                        if let Ok(digest) = d.parse::<Digest>() {
                            found
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .push((digest, damage));
                        }
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                });
            }
            while done.load(Ordering::Relaxed) < rows.len() {
                sink.progress("verifying blobs", done.load(Ordering::Relaxed), rows.len());
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        });
        sink.progress("verifying blobs", rows.len(), rows.len());
        let mut found = found.into_inner().unwrap_or_else(|p| p.into_inner());
        found.sort_by(|a, b| a.0.cmp(&b.0));
        found
    }

    fn check_one(&self, digest: &str, size: u64) -> Option<Damage> {
        let Ok(d) = digest.parse::<Digest>() else {
            return Some(Damage::Unreadable(format!(
                "the index holds a malformed digest {digest:?}"
            )));
        };
        let actual = match self.store.stat(&d) {
            Ok(Some(n)) => n,
            Ok(None) => return Some(Damage::Missing),
            Err(e) => return Some(Damage::Unreadable(e.to_string())),
        };
        if actual != size {
            return Some(Damage::WrongSize {
                expected: size,
                actual,
            });
        }
        let mut hasher = d.algorithm().hasher();
        let hashed = self
            .store
            .open_blob(&d)
            .and_then(|o| o.reader())
            .and_then(|mut r| hash_reader(&mut r, &mut hasher).ctx(|| format!("reading blob {d}")));
        if let Err(e) = hashed {
            return Some(Damage::Unreadable(e.to_string()));
        }
        let actual = hasher.finish();
        (actual != d).then_some(Damage::WrongContent { actual })
    }

    /// Moves a damaged blob aside and deletes its rows (and a manifest it was the bytes of).
    fn quarantine(&self, d: &Digest, report: &mut VerifyReport, sink: &mut dyn Sink) -> Result<()> {
        let key = d.to_string();
        let removed = self.index.write(|tx| {
            let manifests = crate::index::queries::manifest_holders(tx, &key)?;
            for (_, repo) in &manifests {
                crate::index::queries::delete_manifest(tx, *repo, &key)?;
            }
            crate::index::queries::delete_blob(tx, &key)?;
            self.store.quarantine(d)?;
            Ok(manifests
                .into_iter()
                .map(|(name, _)| format!("{name}@{key}"))
                .collect::<Vec<_>>())
        })?;
        for m in &removed {
            sink.line(format_args!(
                "removed manifest {m}: its bytes were damaged; push it again"
            ));
        }
        sink.line(format_args!(
            "quarantined blob {d}: clients now get BLOB_UNKNOWN and can push it again"
        ));
        report.removed_manifests.extend(removed);
        report.repaired += 1;
        Ok(())
    }
}
