//! Garbage collection applied, safely while atoll serves (the policy is `crate::gc`).
//!
//! Every deletion is re-checked inside the write transaction that performs it, unless a fence
//! (`index::Fence`) shows that nothing but the collection has written since the mark. A blob
//! goes in two steps: one transaction deletes its row and records its digest as doomed; the
//! next one unlinks the file, unless the digest has a row again (not asked while the fence
//! shows that nothing else has written since the doom). Files are only ever unlinked
//! by a transaction that holds the write lock, after the row's deletion was committed: pushes
//! publish files inside their own write transactions, so a push and a deletion of the same
//! blob never interleave (a pushed-again blob's row keeps its file), and a crash anywhere
//! leaves either the row and its file, or a doomed digest that the next collection or start
//! unlinks. Each transaction unlinks the previous one's files on a few threads of its own
//! while its rows go. `gc.lock` keeps one collection at a time across processes (the scheduled
//! one and `atoll --gc`); a dry run takes no lock and changes nothing.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::time::Instant;

use rusqlite::Transaction;

use super::Registry;
use crate::console::Sink;
use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::gc::{self, GcOptions, GcReport};
use crate::index::queries::{self, GcManifest};
use crate::index::Fence;
use crate::store::remove_if_exists;
use crate::units::human_bytes;

/// Blob rows (or orphan files) deleted per transaction: large enough to amortise the commit
/// (each rewrites the index pages it touched into the WAL, and fsyncs), small enough that a
/// push waiting for the write lock waits tens of milliseconds. On the GC benchmark's store, 256 -> 1024 took the
/// collection from 8.2 to 6.7 s on this machine's disk, and 1.9 -> 1.4 s on tmpfs; 1024 ->
/// 4096 from 0.735 to 0.705 s on tmpfs (10,700 WAL frames written instead of 15,500), with a
/// transaction then holding the lock for about 35 ms.
const BATCH: usize = 4096;

/// Manifests deleted per transaction. Each costs about 75 us (SQLite's checks and its cascades
/// to tags and references): `--delete-untagged` on the benchmark's store took 316-327 ms per
/// transaction of 4,096, at most 31 ms per transaction of 256, 0.4 s for all 5,000 either way.
const MANIFEST_BATCH: usize = 256;

/// Threads that unlink files while a transaction's rows go: unlinks in different directories
/// run side by side in the kernel, and on a disk they are most of a collection's time.
const UNLINKERS: usize = 4;

/// What one sweep transaction did.
#[derive(Default)]
struct Swept {
    /// Rows deleted (their files doomed): digest and size.
    deleted: Vec<(String, u64)>,
    /// Doomed files unlinked.
    unlinked: u64,
    /// Doomed digests that had no file.
    missing: Vec<String>,
    errors: Vec<String>,
    /// Whether it ran under an intact fence: nothing but the collection had written since the
    /// mark, so the digests it doomed have no row, and will have none while the fence holds.
    fenced: bool,
}

/// What a sweep transaction checks again before it acts, rather than trusting the mark.
#[derive(Clone, Copy)]
struct Checks {
    /// That each blob row it deletes is still unused.
    rows: bool,
    /// That each doomed digest still has no row (a push may have published it again).
    doomed: bool,
}

impl Checks {
    const ALL: Checks = Checks {
        rows: true,
        doomed: true,
    };
}

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

    /// Unlinks the files an interrupted collection doomed (their rows are gone), and puts back
    /// what an older atoll's interrupted collection left in `trash/`. Call with the lock held
    /// (or at startup, when no collection runs). Returns how many doomed files it handled, and
    /// the files it could not unlink (they stay doomed).
    pub fn finish_unlinks(&self) -> Result<(u64, Vec<String>)> {
        let restored = self
            .store
            .restore_old_trash(|d| self.index.read(|c| queries::blob_exists(c, &d.to_string())))?;
        if restored > 0 {
            log::info!(
                "put back {restored} blobs that an older atoll's interrupted collection \
                 had set aside in trash/"
            );
        }
        let swept = self.sweep_step(&[], i64::MIN, None, false)?;
        Ok((swept.unlinked + swept.missing.len() as u64, swept.errors))
    }

    /// One collection. `now` is the current time in Unix seconds (tests pass their own).
    pub fn collect_garbage(
        &self,
        opts: &GcOptions,
        now: i64,
        sink: &mut dyn Sink,
    ) -> Result<GcReport> {
        let started = Instant::now();
        let cutoff = gc::cutoff(now, opts.grace);
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
            let (recovered, errors) = self.finish_unlinks()?;
            report.recovered = recovered;
            for e in errors {
                sink.line(format_args!("error: {e}"));
                report.errors.push(e);
            }
        }
        let verb = if opts.dry_run {
            "would delete"
        } else {
            "delete"
        };

        // The mark and the blob rows are read from one snapshot of the index while a thread
        // lists the files on disk. Every deletion below is checked again where it happens,
        // unless the fence taken before says that nothing else has written since: then a blob
        // row's deletion needs no check (manifests are always checked: they are few). Neither
        // the blob rows nor the files change as manifests go.
        let mut fence = if opts.dry_run {
            None
        } else {
            Some(self.index.fence()?)
        };
        let (marked, files) = std::thread::scope(|s| {
            let files = s.spawn(|| self.store.list_digests());
            let marked = self.index.read(|c| {
                let tx = c.unchecked_transaction()?;
                Ok((
                    queries::gc_manifests(&tx)?,
                    queries::gc_edges(&tx)?,
                    queries::repo_names(&tx)?,
                    queries::gc_blobs(&tx)?,
                ))
            });
            (marked, join(files))
        });
        let ((manifests, edges, names, blobs), files) = (marked?, files?);
        let doomed = gc::manifests_to_delete(&manifests, &edges, opts.delete_untagged, cutoff);
        report.kept_manifests = (manifests.len() - doomed.len()) as u64;
        describe_kept(&manifests, &doomed, &names, sink);
        for &i in &doomed {
            let m = &manifests[i];
            sink.line(format_args!(
                "{verb} manifest {}@{}",
                repo_name(&names, m.repo),
                m.digest
            ));
        }
        if let Some(fence) = &mut fence {
            let as_marked = self.sweep_manifests(
                &manifests,
                &doomed,
                &names,
                cutoff,
                !opts.delete_untagged,
                fence,
                &mut report,
                sink,
            )?;
            if !as_marked {
                // A manifest the mark let go is still there: what it names is not garbage.
                fence.breach();
            }
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
        let live = gc::live_digests(&manifests, &edges, &doomed);
        let gone = gc::blobs_to_delete(&blobs, &live, cutoff);
        report.kept_blobs = (blobs.len() - gone.len()) as u64;
        report.kept_bytes = blobs.iter().map(|b| b.size).sum::<u64>()
            - gone.iter().map(|&i| blobs[i].size).sum::<u64>();
        let candidates: Vec<(String, u64)> = gone
            .iter()
            .map(|&i| (blobs[i].digest.clone(), blobs[i].size))
            .collect();
        if opts.dry_run {
            for (d, size) in &candidates {
                sink.line(format_args!("{verb} blob {d} ({})", human_bytes(*size)));
            }
            report.deleted_blobs = candidates.len() as u64;
            report.deleted_bytes = candidates.iter().map(|(_, s)| s).sum();
        } else {
            self.sweep_blobs(&candidates, cutoff, fence.as_mut(), &mut report, sink)?;
        }

        // Files under blobs/ that no row names (a crash between a rename and its commit). The
        // rows and names read before the sweep will do: a blob published since has a file
        // newer than the cutoff, and each orphan is checked again before it goes. Files are
        // matched by the encoded part of their digest (no string built per file): a sha256 and
        // a sha512 digest never have the same length.
        let known: foldhash::HashSet<&str> = blobs
            .iter()
            .map(|b| b.digest.split_once(':').map_or("", |(_, hex)| hex))
            .collect();
        let mut orphans = Vec::new();
        for d in files {
            if known.contains(d.hex()) {
                continue;
            }
            if let Some(f) = self.store.file_info(&d)? {
                if crate::clock::unix(f.modified) < cutoff {
                    orphans.push((f.digest, f.size));
                }
            }
        }
        for (d, size) in &orphans {
            sink.line(format_args!(
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

    /// Deletes the `doomed` manifests that may still go; returns whether every one of them went.
    #[allow(clippy::too_many_arguments)]
    fn sweep_manifests(
        &self,
        manifests: &[GcManifest],
        doomed: &[usize],
        names: &std::collections::HashMap<i64, String>,
        cutoff: i64,
        only_orphans: bool,
        fence: &mut Fence,
        report: &mut GcReport,
        sink: &mut dyn Sink,
    ) -> Result<bool> {
        // An index goes before its children and a subject before its referrers: whatever a
        // pass cannot delete yet is tried again while the passes make progress.
        let mut left: Vec<usize> = doomed.to_vec();
        loop {
            let before = left.len();
            let mut still = Vec::new();
            for chunk in left.chunks(MANIFEST_BATCH) {
                let deleted = self.index.write(|tx| {
                    fence.run(tx, |_| {
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
                    })
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
            sink.line(format_args!(
                "kept manifest {}@{}: in use again",
                repo_name(names, m.repo),
                m.digest
            ));
        }
        Ok(left.is_empty())
    }

    /// Deletes the rows of `candidates` that are still unused and their files, `BATCH` rows a
    /// transaction, then unlinks the last batch's files. With a `fence` taken before the
    /// candidates were chosen from a complete mark, rows are checked only once it is breached,
    /// and so are the doomed digests, once the first transaction has taken those it did not
    /// doom itself (an interrupted collection's).
    pub(super) fn sweep_blobs(
        &self,
        candidates: &[(String, u64)],
        cutoff: i64,
        mut fence: Option<&mut Fence>,
        report: &mut GcReport,
        sink: &mut dyn Sink,
    ) -> Result<()> {
        let (mut done, mut doomed_by_fenced) = (0, false);
        for chunk in candidates.chunks(BATCH).chain([&[][..]]) {
            done += chunk.len();
            let swept = self.sweep_step(chunk, cutoff, fence.as_deref_mut(), doomed_by_fenced);
            let Some(swept) = step(swept, report, sink) else {
                continue;
            };
            doomed_by_fenced = swept.fenced;
            for (d, size) in &swept.deleted {
                sink.line(format_args!("delete blob {d} ({})", human_bytes(*size)));
                report.deleted_blobs += 1;
                report.deleted_bytes += size;
            }
            for d in &swept.missing {
                report.missing_files += 1;
                sink.line(format_args!("blob {d} had no file: its row is gone now"));
            }
            for e in swept.errors {
                sink.line(format_args!("error: {e}"));
                report.errors.push(e);
            }
            if !chunk.is_empty() {
                sink.progress("blobs", done, candidates.len());
            }
        }
        Ok(())
    }

    /// One sweep transaction: unlinks the files the previous one doomed, on `UNLINKERS`
    /// threads, while it deletes the rows of `chunk` that are still unused and dooms their
    /// files. A file that cannot be unlinked stays doomed (the next collection tries again).
    /// `doomed_by_fenced`: every doomed digest now was doomed by a [`Swept::fenced`] step.
    fn sweep_step(
        &self,
        chunk: &[(String, u64)],
        cutoff: i64,
        fence: Option<&mut Fence>,
        doomed_by_fenced: bool,
    ) -> Result<Swept> {
        self.index.write_keys_kept(|tx| match fence {
            Some(fence) => fence.run(tx, |unchanged| {
                let checks = Checks {
                    rows: !unchanged,
                    doomed: !(unchanged && doomed_by_fenced),
                };
                let swept = self.sweep_in(tx, chunk, cutoff, checks)?;
                Ok(Swept {
                    fenced: unchanged,
                    ..swept
                })
            }),
            None => self.sweep_in(tx, chunk, cutoff, Checks::ALL),
        })
    }

    /// The body of [`Self::sweep_step`].
    fn sweep_in(
        &self,
        tx: &Transaction,
        chunk: &[(String, u64)],
        cutoff: i64,
        checks: Checks,
    ) -> Result<Swept> {
        // All of them leave the list now; any that cannot be unlinked go back below.
        let doomed = queries::take_doomed_files(tx, checks.doomed)?;
        let (deleted, unlinks) = std::thread::scope(|s| {
            let share = doomed.len().div_ceil(UNLINKERS).max(1);
            let unlinkers: Vec<_> = doomed
                .chunks(share)
                .map(|part| {
                    s.spawn(|| {
                        let mut unlinker = self.store.unlinker();
                        part.iter()
                            .map(|d| parse_stored(d).and_then(|d| unlinker.unlink(&d)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            let deleted =
                queries::UnusedBlobs::new(tx, cutoff, checks.rows).and_then(|mut unused| {
                    let mut deleted = Vec::new();
                    for (d, size) in chunk {
                        if unused.delete(d)? {
                            deleted.push((d.clone(), *size));
                        }
                    }
                    Ok(deleted)
                });
            let unlinks: Vec<_> = unlinkers.into_iter().flat_map(join).collect();
            (deleted, unlinks)
        });
        let mut swept = Swept {
            deleted: deleted?,
            ..Swept::default()
        };
        let mut doom: Vec<&str> = swept.deleted.iter().map(|(d, _)| d.as_str()).collect();
        for (d, outcome) in doomed.iter().zip(unlinks) {
            match outcome {
                Ok(true) => swept.unlinked += 1,
                Ok(false) => swept.missing.push(d.clone()),
                Err(e) => {
                    swept.errors.push(e.to_string());
                    doom.push(d);
                }
            }
        }
        queries::doom(tx, &doom)?;
        Ok(swept)
    }

    /// Deletes files no row names. No row names them before or after, so no doom is needed;
    /// each is checked inside the write lock, since a push may have published it meanwhile.
    fn sweep_orphans(
        &self,
        orphans: &[(Digest, u64)],
        report: &mut GcReport,
        sink: &mut dyn Sink,
    ) -> Result<()> {
        for chunk in orphans.chunks(BATCH) {
            let removed = self.index.write(|tx| {
                let (mut removed, mut unlinker) = (Vec::new(), self.store.unlinker());
                for (d, size) in chunk {
                    if !queries::blob_exists(tx, &d.to_string())? {
                        removed.push((d, *size, unlinker.unlink(d)));
                    }
                }
                Ok(removed)
            });
            let Some(removed) = step(removed, report, sink) else {
                continue;
            };
            for (_, size, outcome) in removed {
                match outcome {
                    Ok(true) => {
                        report.orphan_files += 1;
                        report.orphan_bytes += size;
                    }
                    Ok(false) => {}
                    Err(e) => {
                        sink.line(format_args!("error: {e}"));
                        report.errors.push(e.to_string());
                    }
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
        sink.line(format_args!("keep {repo}: {n} manifests, {tagged} tagged"));
    }
}

/// A batch that failed (a full disk, a busy index) is reported and the sweep goes on with the
/// next: each batch is its own transaction, so a failed one changed nothing.
fn step<T>(outcome: Result<T>, report: &mut GcReport, sink: &mut dyn Sink) -> Option<T> {
    match outcome {
        Ok(v) => Some(v),
        Err(e) => {
            sink.line(format_args!("error: {e}"));
            report.errors.push(e.to_string());
            None
        }
    }
}

fn repo_name(names: &std::collections::HashMap<i64, String>, id: i64) -> &str {
    names.get(&id).map_or("?", String::as_str)
}

/// The result of a scoped thread; its panic goes on unwinding here.
fn join<T>(handle: std::thread::ScopedJoinHandle<'_, T>) -> T {
    handle
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

fn parse_stored(d: &str) -> Result<Digest> {
    d.parse()
        .map_err(|_| Error::Corrupt(format!("the index holds a malformed digest {d:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Options;

    /// A sink that runs `hook` once, at the first line that starts with `at`. The first line
    /// of all (`at` empty) comes between the mark and the sweep; "delete blob D" comes after
    /// the transaction that deleted D's row and before the one that unlinks its file.
    struct Hook<F: FnMut()>(&'static str, Option<F>);

    impl<F: FnMut()> Sink for Hook<F> {
        fn line(&mut self, line: std::fmt::Arguments<'_>) {
            if line.to_string().starts_with(self.0) {
                if let Some(mut hook) = self.1.take() {
                    hook();
                }
            }
        }
    }

    /// An old blob, linked to repository `r` at time 0 only.
    fn old_blob(registry: &Registry, bytes: &[u8]) -> Digest {
        let digest = Digest::sha256_of(bytes);
        registry
            .store
            .stage_bytes(bytes)
            .unwrap()
            .publish(&digest)
            .unwrap();
        let d = digest.to_string();
        registry
            .index
            .write(|tx| {
                let repo = queries::ensure_repo(tx, "r", 0)?;
                queries::insert_blob(tx, &d, bytes.len() as u64, 0)?;
                queries::link_blob(tx, repo, &d, 0)
            })
            .unwrap();
        digest
    }

    /// A tagged image in `r` (config and one layer): the collection names it in its first
    /// line ("keep r: ..."), printed between the mark and the sweep.
    fn tagged_image(registry: &Registry) {
        let (config, layer) = (old_blob(registry, b"{}"), old_blob(registry, b"layer"));
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": config.to_string(), "size": 2},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": layer.to_string(), "size": 5}],
        });
        registry
            .put_manifest(
                &"r".parse().unwrap(),
                &"v1".parse().unwrap(),
                &[],
                Some("application/vnd.oci.image.manifest.v1+json"),
                manifest.to_string().as_bytes(),
            )
            .unwrap();
    }

    fn collect(registry: &Registry, sink: &mut dyn Sink) -> GcReport {
        let opts = GcOptions {
            dry_run: false,
            delete_untagged: false,
            grace: 60,
            upload_ttl: None,
        };
        registry.collect_garbage(&opts, 1000, sink).unwrap()
    }

    /// Whatever a push does after the mark (here: mounts the blob, as a client does before it
    /// pushes a manifest naming it) is seen by the sweep, which then checks every row.
    #[test]
    fn a_blob_linked_after_the_mark_stays() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::open(dir.path(), Options::default()).unwrap();
        tagged_image(&registry);
        let (used, unused) = (old_blob(&registry, b"used"), old_blob(&registry, b"unused"));
        let mut sink = Hook(
            "",
            Some(|| {
                let d = used.to_string();
                registry
                    .index
                    .write(|tx| {
                        let repo = queries::ensure_repo(tx, "r", 0)?;
                        queries::link_blob(tx, repo, &d, 1000)
                    })
                    .unwrap();
            }),
        );
        let report = collect(&registry, &mut sink);
        assert!(sink.1.is_none(), "the hook ran");
        assert_eq!(report.deleted_blobs, 1, "{report:?}");
        assert!(registry.store.stat(&used).unwrap().is_some(), "used stays");
        assert!(
            registry.store.stat(&unused).unwrap().is_none(),
            "unused goes"
        );
        let rows = registry.index.read(queries::all_blobs).unwrap();
        assert!(
            rows.iter().any(|(d, _)| *d == used.to_string()),
            "its row stays"
        );
    }

    /// With nothing written after the mark, every old blob goes.
    #[test]
    fn with_nothing_written_after_the_mark_every_old_blob_goes() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::open(dir.path(), Options::default()).unwrap();
        tagged_image(&registry);
        let blobs = [old_blob(&registry, b"a"), old_blob(&registry, b"b")];
        let report = collect(&registry, &mut Hook("", Some(|| {})));
        assert_eq!(report.deleted_blobs, 2, "{report:?}");
        for d in &blobs {
            assert!(registry.store.stat(d).unwrap().is_none());
        }
    }

    /// A blob pushed again after the transaction that deleted its row, before the one that
    /// unlinks its file: the push's write breaches the fence, so the doomed digest is checked
    /// for a row again, and the file (now the new row's) stays.
    #[test]
    fn a_blob_pushed_again_between_its_deletion_and_its_unlink_keeps_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::open(dir.path(), Options::default()).unwrap();
        tagged_image(&registry);
        let (again, gone) = (old_blob(&registry, b"again"), old_blob(&registry, b"gone"));
        let at = format!("delete blob {again}").leak();
        let mut sink = Hook(
            at,
            Some(|| {
                old_blob(&registry, b"again");
            }),
        );
        let report = collect(&registry, &mut sink);
        assert!(sink.1.is_none(), "the hook ran");
        assert_eq!(report.deleted_blobs, 2, "{report:?}");
        assert!(
            registry.store.stat(&again).unwrap().is_some(),
            "the file of the row pushed again stays"
        );
        assert!(registry.store.stat(&gone).unwrap().is_none(), "gone goes");
        let rows = registry.index.read(queries::all_blobs).unwrap();
        assert!(rows.iter().any(|(d, _)| *d == again.to_string()));
    }
}
