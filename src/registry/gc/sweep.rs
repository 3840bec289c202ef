//! The collection's deleting transactions: manifests in batches (an index before its children),
//! blob rows doomed and their files unlinked in the next transaction, orphan files. Each batch
//! is its own transaction, so a failure changes nothing of it and the sweep goes on.

use std::collections::HashSet;

use super::{join, repo_name};
use crate::console::Sink;
use crate::digest::{Digest, Key};
use crate::error::{Error, Result};
use crate::gc::GcReport;
use crate::index::queries::{self, GcManifest};
use crate::index::{Conn, Fence};
use crate::registry::Registry;
use crate::units::human_bytes;

/// Blob rows (or orphan files) deleted per transaction: large enough to amortise the commit
/// (each rewrites the index pages it touched into the WAL, and fsyncs), small enough that a
/// push waiting for the write lock waits tens of milliseconds (figures: findings.md, "GC").
const BATCH: usize = 4096;

/// Manifests deleted per transaction: fewer than blob rows, as each costs SQLite's checks and
/// its cascades to tags and references, and the write lock must not be held long.
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

impl Registry {
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

    /// Deletes the `doomed` manifests that may still go; returns whether every one of them went.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn sweep_manifests(
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
    pub(in crate::registry) fn sweep_blobs(
        &self,
        candidates: &[(&Key, u64)],
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
        chunk: &[(&Key, u64)],
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
        tx: &Conn,
        chunk: &[(&Key, u64)],
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
                            .map(|d| parse_stored(d).and_then(|d| unlinker.delete(&d)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            let deleted =
                queries::UnusedBlobs::new(tx, cutoff, checks.rows).and_then(|mut unused| {
                    let mut deleted = Vec::new();
                    for (d, size) in chunk {
                        let d = d.to_string();
                        if unused.delete(&d)? {
                            deleted.push((d, *size));
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
    pub(super) fn sweep_orphans(
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
                        removed.push((d, *size, unlinker.delete(d)));
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

fn parse_stored(d: &str) -> Result<Digest> {
    d.parse()
        .map_err(|_| Error::Corrupt(format!("the index holds a malformed digest {d:?}")))
}
