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
//!
//! `sweep.rs` holds the transactions that delete (manifests, blob rows, doomed and orphan
//! files); this file decides the order and reports.

mod sweep;

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::time::Instant;

use super::Registry;
use crate::console::Sink;
use crate::digest::{Fanout, Key};
use crate::error::{Error, IoContext, Result};
use crate::gc::{self, GcOptions, GcReport};
use crate::index::queries::{self, GcBlob, GcEdge, GcManifest};
use crate::store::remove_if_exists;
use crate::units::human_bytes;

/// One collection under way: what it was asked, what it found so far, where it reports.
struct Run<'a> {
    opts: &'a GcOptions,
    cutoff: i64,
    /// "delete", or "would delete" on a dry run.
    verb: &'static str,
    report: GcReport,
    /// Taken before the mark, unless on a dry run (which changes nothing).
    fence: Option<crate::index::Fence>,
    sink: &'a mut dyn Sink,
}

/// The index's rows a collection marks from, read from one snapshot.
struct Marked {
    manifests: Vec<GcManifest>,
    edges: Vec<GcEdge>,
    names: std::collections::HashMap<i64, String>,
    /// Sorted by key, found through `fanout`.
    blobs: Vec<GcBlob>,
    fanout: Fanout,
}

/// The lock that keeps one collection at a time on a data directory (a file lock), or on a
/// cluster (an advisory lock in its shared index); released on drop.
pub enum GcLock {
    File(#[allow(dead_code)] File),
    Cluster(#[allow(dead_code)] Box<crate::index::SessionLock>),
}

impl Registry {
    /// Takes the collection lock, or says who holds it.
    pub fn gc_lock(&self) -> Result<GcLock> {
        if self.index.is_shared() {
            return match self.index.try_lock("gc")? {
                Some(held) => Ok(GcLock::Cluster(Box::new(held))),
                None => Err(Error::Unavailable(format!(
                    "another garbage collection is running on the index {}",
                    self.index.describe()
                ))),
            };
        }
        let path = self.store.layout().root().join("gc.lock");
        let f = File::create(&path).at("creating", &path)?;
        match f.try_lock() {
            Ok(()) => Ok(GcLock::File(f)),
            Err(fs::TryLockError::WouldBlock) => Err(Error::Unavailable(format!(
                "another garbage collection is running on {}",
                self.store.layout().root().display()
            ))),
            Err(fs::TryLockError::Error(e)) => Err(Error::io_at("locking", &path, e)),
        }
    }

    /// One collection. `now` is the current time in Unix seconds (tests pass their own).
    pub fn collect_garbage(
        &self,
        opts: &GcOptions,
        now: i64,
        sink: &mut dyn Sink,
    ) -> Result<GcReport> {
        let started = Instant::now();
        let mut run = Run {
            opts,
            cutoff: gc::cutoff(now, opts.grace),
            verb: if opts.dry_run {
                "would delete"
            } else {
                "delete"
            },
            report: GcReport {
                dry_run: opts.dry_run,
                ..GcReport::default()
            },
            fence: None,
            sink,
        };
        let _lock = if opts.dry_run {
            None
        } else {
            let lock = self.gc_lock()?;
            let (recovered, errors) = self.finish_unlinks()?;
            run.report.recovered = recovered;
            for e in errors {
                run.sink.line(format_args!("error: {e}"));
                run.report.errors.push(e);
            }
            Some(lock)
        };
        // The mark and the blob rows are read from one snapshot of the index while a thread
        // lists the files on disk. Every deletion below is checked again where it happens,
        // unless the fence taken before says that nothing else has written since: then a blob
        // row's deletion needs no check (manifests are always checked: they are few). Neither
        // the blob rows nor the files change as manifests go.
        if !opts.dry_run {
            run.fence = Some(self.index.fence()?);
        }
        let (marked, unnamed) = self.snapshot()?;
        let doomed = self.collect_manifests(&mut run, &marked)?;
        self.collect_blobs(&mut run, &marked, &doomed)?;
        self.collect_orphans(&mut run, unnamed)?;
        let mut report = run.report;
        self.finish(opts, now, run.cutoff, &mut report)?;
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        Ok(report)
    }

    /// The index's rows for the mark, from one read transaction, and the files under `blobs/`
    /// that no blob row names, listed on a thread of their own once the blob rows are read,
    /// while the manifests are: only what has no row is held (the whole listing of a million
    /// files was a quarter of the mark's memory).
    fn snapshot(&self) -> Result<(Marked, Vec<Key>)> {
        self.index.read_consistent(|tx| {
            let (blobs, fanout) = queries::gc_blobs(tx)?;
            let (rows, unnamed) = std::thread::scope(|s| {
                let unnamed = s.spawn(|| -> Result<Vec<Key>> {
                    let mut unnamed = Vec::new();
                    self.store.for_each_digest(|d| {
                        let key = Key::of(&d);
                        if fanout.find(&blobs, |b| &b.digest, &key).is_none() {
                            unnamed.push(key);
                        }
                    })?;
                    Ok(unnamed)
                });
                let rows = queries::gc_manifests(tx).and_then(|manifests| {
                    let edges = queries::gc_edges(tx, &manifests)?;
                    Ok((manifests, edges, queries::repo_names(tx)?))
                });
                (rows, join(unnamed))
            });
            let (manifests, edges, names) = rows?;
            let marked = Marked {
                manifests,
                edges,
                names,
                blobs,
                fanout,
            };
            Ok((marked, unnamed?))
        })
    }

    /// Deletes the manifests nothing keeps (reports them on a dry run); returns which they are.
    fn collect_manifests(&self, run: &mut Run<'_>, m: &Marked) -> Result<Vec<usize>> {
        let doomed =
            gc::manifests_to_delete(&m.manifests, &m.edges, run.opts.delete_untagged, run.cutoff);
        run.report.kept_manifests = (m.manifests.len() - doomed.len()) as u64;
        describe_kept(&m.manifests, &doomed, &m.names, run.sink);
        for &i in &doomed {
            let (repo, digest) = (
                repo_name(&m.names, m.manifests[i].repo),
                &m.manifests[i].digest,
            );
            run.sink
                .line(format_args!("{} manifest {repo}@{digest}", run.verb));
        }
        match &mut run.fence {
            Some(fence) => {
                let as_marked = self.sweep_manifests(
                    &m.manifests,
                    &doomed,
                    &m.names,
                    run.cutoff,
                    !run.opts.delete_untagged,
                    fence,
                    &mut run.report,
                    run.sink,
                )?;
                if !as_marked {
                    // A manifest the mark let go is still there: what it names is not garbage.
                    fence.breach();
                }
            }
            None => {
                run.report.deleted_manifests = doomed
                    .iter()
                    .map(|&i| {
                        let repo = repo_name(&m.names, m.manifests[i].repo);
                        format!("{repo}@{}", m.manifests[i].digest)
                    })
                    .collect();
            }
        }
        Ok(doomed)
    }

    /// Deletes the blobs nothing kept needs (reports them on a dry run).
    fn collect_blobs(&self, run: &mut Run<'_>, m: &Marked, doomed: &[usize]) -> Result<()> {
        let live = gc::live_blobs(&m.blobs, &m.fanout, &m.manifests, &m.edges, doomed);
        let gone = gc::blobs_to_delete(&m.blobs, &live, run.cutoff);
        drop(live);
        run.report.kept_blobs = (m.blobs.len() - gone.len()) as u64;
        run.report.kept_bytes = m.blobs.iter().map(|b| b.size).sum::<u64>()
            - gone.iter().map(|&i| m.blobs[i].size).sum::<u64>();
        let candidates: Vec<(&Key, u64)> = gone
            .iter()
            .map(|&i| (&m.blobs[i].digest, m.blobs[i].size))
            .collect();
        if !run.opts.dry_run {
            let (cutoff, fence) = (run.cutoff, run.fence.as_mut());
            return self.sweep_blobs(&candidates, cutoff, fence, &mut run.report, run.sink);
        }
        for (d, size) in &candidates {
            let verb = run.verb;
            run.sink
                .line(format_args!("{verb} blob {d} ({})", human_bytes(*size)));
        }
        run.report.deleted_blobs = candidates.len() as u64;
        run.report.deleted_bytes = candidates.iter().map(|(_, s)| s).sum();
        Ok(())
    }

    /// Deletes the files under `blobs/` that no row names (a crash between a rename and its
    /// commit), `unnamed` by the rows read before the sweep: a blob published since has a file
    /// newer than the cutoff, and each orphan is checked again before it goes.
    fn collect_orphans(&self, run: &mut Run<'_>, unnamed: Vec<Key>) -> Result<()> {
        let mut orphans = Vec::new();
        for d in unnamed.iter().filter_map(Key::digest) {
            if let Some(f) = self.store.file_info(&d)? {
                if f.modified < run.cutoff {
                    orphans.push((f.digest, f.size));
                }
            }
        }
        for (d, size) in &orphans {
            let (verb, size) = (run.verb, human_bytes(*size));
            run.sink.line(format_args!(
                "{verb} file of {d} ({size}): no index row names it"
            ));
        }
        if !run.opts.dry_run {
            return self.sweep_orphans(&orphans, &mut run.report, run.sink);
        }
        run.report.orphan_files = orphans.len() as u64;
        run.report.orphan_bytes = orphans.iter().map(|(_, s)| s).sum();
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
                    .filter(|(_, t, _)| *t < before)
                    .count() as u64
            } else {
                self.purge_uploads(before, before, Some(before))?
            };
        }
        if opts.dry_run {
            return Ok(());
        }
        let tmp = self.store.layout().tmp_dir();
        for entry in crate::store::entries_if_any(&tmp)? {
            let modified = entry
                .metadata()
                .and_then(|m| m.modified())
                .map_or(0, crate::clock::unix);
            if modified < cutoff {
                remove_if_exists(&entry.path())?;
            }
        }
        self.index.write(queries::delete_empty_repos)?;
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

fn repo_name(names: &std::collections::HashMap<i64, String>, id: i64) -> &str {
    names.get(&id).map_or("?", String::as_str)
}

/// The result of a scoped thread; its panic goes on unwinding here.
fn join<T>(handle: std::thread::ScopedJoinHandle<'_, T>) -> T {
    handle
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;
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
        let staged = registry.store.stage_bytes(bytes).unwrap();
        registry.store.publish(staged, &digest).unwrap();
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
