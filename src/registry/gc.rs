//! Garbage collection applied, safely while atoll serves (the policy is `crate::gc`).
//!
//! Every deletion is re-checked inside the write transaction that performs it, and a blob's
//! file is moved to `trash/` inside that same transaction: pushes publish files inside their
//! own write transactions, so a push and a deletion of the same blob can never interleave. A
//! crash mid-sweep leaves either the row and a trashed file (put back at the next start) or
//! neither (the trashed file is deleted). `gc.lock` keeps one collection at a time across
//! processes (the scheduled one and `atoll --gc`); a dry run takes no lock and changes nothing.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::time::Instant;

use super::Registry;
use crate::console::Sink;
use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::gc::{self, human_bytes, GcOptions, GcReport};
use crate::index::queries::{self, GcManifest};
use crate::store::remove_if_exists;

/// Rows deleted per transaction: large enough to amortise the commit's fsync, small enough
/// that pushes waiting for the write lock wait milliseconds.
const BATCH: usize = 256;

/// The lock that keeps one collection at a time on a data directory; released on drop.
pub struct GcLock(#[allow(dead_code)] File);

impl Registry {
    /// Takes the collection lock, or says who holds it.
    pub fn gc_lock(&self) -> Result<GcLock> {
        let path = self.store.layout().root().join("gc.lock");
        let f = File::create(&path).at("creating", &path)?;
        match f.try_lock() {
            Ok(()) => Ok(GcLock(f)),
            Err(fs::TryLockError::WouldBlock) => Err(Error::Unavailable(format!(
                "another garbage collection is running on {}",
                self.store.layout().root().display()
            ))),
            Err(fs::TryLockError::Error(e)) => Err(Error::io_at("locking", &path, e)),
        }
    }

    /// Puts back trashed blobs whose rows survived an interrupted collection and deletes the
    /// rest. Call with the lock held (or at startup, when nothing else runs).
    pub fn recover_trash(&self) -> Result<u64> {
        let (restored, _) = self
            .store
            .recover_trash(|d| self.index.read(|c| queries::blob_exists(c, &d.to_string())))?;
        Ok(restored)
    }

    /// One collection. `now` is the current time in Unix seconds (tests pass their own).
    pub fn collect_garbage(
        &self,
        opts: &GcOptions,
        now: i64,
        sink: &mut dyn Sink,
    ) -> Result<GcReport> {
        let started = Instant::now();
        let cutoff = now - opts.grace;
        let mut report = GcReport {
            dry_run: opts.dry_run,
            ..GcReport::default()
        };
        let _lock = if opts.dry_run {
            None
        } else {
            Some(self.gc_lock()?)
        };
        if !opts.dry_run {
            report.restored = self.recover_trash()?;
        }
        let verb = if opts.dry_run {
            "would delete"
        } else {
            "delete"
        };

        // Mark, from one consistent snapshot of the index.
        let (manifests, edges, names) = self.index.read(|c| {
            let tx = c.unchecked_transaction()?;
            Ok((
                queries::gc_manifests(&tx)?,
                queries::gc_edges(&tx)?,
                queries::repo_names(&tx)?,
            ))
        })?;
        let doomed = gc::manifests_to_delete(&manifests, &edges, opts.delete_untagged, cutoff);
        report.kept_manifests = (manifests.len() - doomed.len()) as u64;
        describe_kept(&manifests, &doomed, &names, sink);
        for &i in &doomed {
            let m = &manifests[i];
            sink.line(&format!(
                "{verb} manifest {}@{}",
                repo_name(&names, m.repo),
                m.digest
            ));
        }
        if !opts.dry_run {
            self.sweep_manifests(
                &manifests,
                &doomed,
                &names,
                cutoff,
                !opts.delete_untagged,
                &mut report,
                sink,
            )?;
        } else {
            report.deleted_manifests = doomed
                .iter()
                .map(|&i| {
                    format!(
                        "{}@{}",
                        repo_name(&names, manifests[i].repo),
                        manifests[i].digest
                    )
                })
                .collect();
        }

        // Blobs nothing kept needs.
        let blobs = self.index.read(queries::gc_blobs)?;
        let live = gc::live_digests(&manifests, &edges, &doomed);
        let gone = gc::blobs_to_delete(&blobs, &live, cutoff);
        let gone_set: HashSet<usize> = gone.iter().copied().collect();
        for (i, b) in blobs.iter().enumerate() {
            if !gone_set.contains(&i) {
                report.kept_blobs += 1;
                report.kept_bytes += b.size;
            }
        }
        for &i in &gone {
            sink.line(&format!(
                "{verb} blob {} ({})",
                blobs[i].digest,
                human_bytes(blobs[i].size)
            ));
        }
        let candidates: Vec<(String, u64)> = gone
            .iter()
            .map(|&i| (blobs[i].digest.clone(), blobs[i].size))
            .collect();
        if opts.dry_run {
            report.deleted_blobs = candidates.len() as u64;
            report.deleted_bytes = candidates.iter().map(|(_, s)| s).sum();
        } else {
            self.sweep_blobs(&candidates, cutoff, &mut report, sink)?;
        }

        // Files under blobs/ that no row names (a crash between a rename and its commit).
        let known: HashSet<String> = if opts.dry_run {
            blobs.iter().map(|b| b.digest.clone()).collect()
        } else {
            self.index
                .read(queries::gc_blobs)?
                .into_iter()
                .map(|b| b.digest)
                .collect()
        };
        let mut orphans = Vec::new();
        self.store.list(|f| {
            if !known.contains(&f.digest.to_string()) && crate::clock::unix(f.modified) < cutoff {
                orphans.push((f.digest, f.size));
            }
            Ok(())
        })?;
        for (d, size) in &orphans {
            sink.line(&format!(
                "{verb} file of {d} ({}): no index row names it",
                human_bytes(*size)
            ));
        }
        if opts.dry_run {
            report.orphan_files = orphans.len() as u64;
            report.orphan_bytes = orphans.iter().map(|(_, s)| s).sum();
        } else {
            self.sweep_orphans(&orphans, &mut report, sink)?;
        }

        self.finish(opts, now, cutoff, &mut report)?;
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        Ok(report)
    }

    #[allow(clippy::too_many_arguments)]
    fn sweep_manifests(
        &self,
        manifests: &[GcManifest],
        doomed: &[usize],
        names: &std::collections::HashMap<i64, String>,
        cutoff: i64,
        only_orphans: bool,
        report: &mut GcReport,
        sink: &mut dyn Sink,
    ) -> Result<()> {
        // An index goes before its children and a subject before its referrers: whatever a
        // pass cannot delete yet is tried again while the passes make progress.
        let mut left: Vec<usize> = doomed.to_vec();
        loop {
            let before = left.len();
            let mut still = Vec::new();
            for chunk in left.chunks(BATCH) {
                let deleted = self.index.write(|tx| {
                    let mut done = Vec::new();
                    for &i in chunk {
                        let m = &manifests[i];
                        if queries::gc_manifest_still_deletable(
                            tx,
                            m.repo,
                            &m.digest,
                            cutoff,
                            only_orphans,
                        )? && queries::delete_manifest(tx, m.repo, &m.digest)?
                        {
                            done.push(i);
                        }
                    }
                    Ok(done)
                });
                let Some(deleted) = step(deleted, report, sink) else {
                    still.extend_from_slice(chunk);
                    continue;
                };
                let done: HashSet<usize> = deleted.iter().copied().collect();
                report.deleted_manifests.extend(deleted.iter().map(|&i| {
                    format!(
                        "{}@{}",
                        repo_name(names, manifests[i].repo),
                        manifests[i].digest
                    )
                }));
                still.extend(chunk.iter().copied().filter(|i| !done.contains(i)));
                sink.progress("manifests", report.deleted_manifests.len(), doomed.len());
            }
            left = still;
            if left.is_empty() || left.len() == before {
                break;
            }
        }
        for &i in &left {
            let m = &manifests[i];
            sink.line(&format!(
                "kept manifest {}@{}: in use again",
                repo_name(names, m.repo),
                m.digest
            ));
        }
        Ok(())
    }

    pub(super) fn sweep_blobs(
        &self,
        candidates: &[(String, u64)],
        cutoff: i64,
        report: &mut GcReport,
        sink: &mut dyn Sink,
    ) -> Result<()> {
        for (n, chunk) in candidates.chunks(BATCH).enumerate() {
            let trashed = self.index.write(|tx| {
                let mut trashed = Vec::new();
                for (d, size) in chunk {
                    if !queries::gc_blob_still_unused(tx, d, cutoff)? {
                        continue;
                    }
                    queries::delete_blob(tx, d)?;
                    let digest = parse_stored(d)?;
                    let had_file = self.store.move_to_trash(&digest)?;
                    trashed.push((digest, *size, had_file));
                }
                Ok(trashed)
            });
            let Some(trashed) = step(trashed, report, sink) else {
                continue;
            };
            for (digest, size, had_file) in trashed {
                report.deleted_blobs += 1;
                report.deleted_bytes += size;
                if !had_file {
                    report.missing_files += 1;
                    sink.line(&format!("blob {digest} had no file: its row is gone now"));
                }
                if let Err(e) = self.store.purge_trash(&digest) {
                    report.errors.push(e.to_string());
                    sink.line(&format!("error: {e}"));
                }
            }
            sink.progress(
                "blobs",
                ((n + 1) * BATCH).min(candidates.len()),
                candidates.len(),
            );
        }
        Ok(())
    }

    fn sweep_orphans(
        &self,
        orphans: &[(Digest, u64)],
        report: &mut GcReport,
        sink: &mut dyn Sink,
    ) -> Result<()> {
        for chunk in orphans.chunks(BATCH) {
            let trashed = self.index.write(|tx| {
                let mut trashed = Vec::new();
                for (d, size) in chunk {
                    // A push may have published this very blob since the listing.
                    if !queries::blob_exists(tx, &d.to_string())? && self.store.move_to_trash(d)? {
                        trashed.push((d.clone(), *size));
                    }
                }
                Ok(trashed)
            });
            let Some(trashed) = step(trashed, report, sink) else {
                continue;
            };
            for (d, size) in trashed {
                report.orphan_files += 1;
                report.orphan_bytes += size;
                if let Err(e) = self.store.purge_trash(&d) {
                    report.errors.push(e.to_string());
                    sink.line(&format!("error: {e}"));
                }
            }
        }
        Ok(())
    }

    /// Stale uploads, temporary files left by crashes, empty repositories.
    fn finish(&self, opts: &GcOptions, now: i64, cutoff: i64, report: &mut GcReport) -> Result<()> {
        if let Some(ttl) = opts.upload_ttl {
            let before = now - ttl;
            report.purged_uploads = if opts.dry_run {
                self.index
                    .read(queries::uploads)?
                    .iter()
                    .filter(|(_, t)| *t < before)
                    .count() as u64
            } else {
                self.purge_uploads(before, before)?
            };
        }
        if opts.dry_run {
            return Ok(());
        }
        let tmp = self.store.layout().tmp_dir();
        for entry in fs::read_dir(&tmp).at("listing", &tmp)? {
            let entry = entry.at("listing", &tmp)?;
            let modified = entry
                .metadata()
                .and_then(|m| m.modified())
                .map_or(0, crate::clock::unix);
            if modified < cutoff {
                remove_if_exists(&entry.path())?;
            }
        }
        self.index.write(|tx| queries::delete_empty_repos(tx))?;
        Ok(())
    }
}

/// "kept repo: N manifests (tags: a, b)" for each repository with content that stays.
fn describe_kept(
    manifests: &[GcManifest],
    doomed: &[usize],
    names: &std::collections::HashMap<i64, String>,
    sink: &mut dyn Sink,
) {
    let doomed: HashSet<usize> = doomed.iter().copied().collect();
    let mut per_repo: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for (i, m) in manifests.iter().enumerate() {
        if !doomed.contains(&i) {
            let e = per_repo.entry(repo_name(names, m.repo)).or_default();
            e.0 += 1;
            e.1 += usize::from(m.tagged);
        }
    }
    for (repo, (n, tagged)) in per_repo {
        sink.line(&format!("keep {repo}: {n} manifests, {tagged} tagged"));
    }
}

/// A batch that failed (a full disk, a busy index) is reported and the sweep goes on with the
/// next: each batch is its own transaction, so a failed one changed nothing.
fn step<T>(outcome: Result<T>, report: &mut GcReport, sink: &mut dyn Sink) -> Option<T> {
    match outcome {
        Ok(v) => Some(v),
        Err(e) => {
            sink.line(&format!("error: {e}"));
            report.errors.push(e.to_string());
            None
        }
    }
}

fn repo_name(names: &std::collections::HashMap<i64, String>, id: i64) -> &str {
    names.get(&id).map_or("?", String::as_str)
}

fn parse_stored(d: &str) -> Result<Digest> {
    d.parse()
        .map_err(|_| Error::Corrupt(format!("the index holds a malformed digest {d:?}")))
}
