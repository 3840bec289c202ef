//! `atoll --copy-from DIR`: moves a box's registry (the SQLite index and the blobs of data
//! directory DIR) into the registry this atoll is set up for, typically a cluster's PostgreSQL
//! and bucket, one repository at a time.
//!
//! Each repository goes as a bundle: exported from DIR into a pipe, and imported from it here on
//! the other side, in this process. So every blob is verified on the way in and recorded in the
//! same transaction that publishes it, exactly as an import is, and nothing is staged but the
//! blobs in flight. A repository is registered whole or not at all. Blobs the target already
//! holds are left out of the bundles (its inventory, read again before each repository), so a
//! run that stopped is resumed by running it again. DIR is opened read-only: the box may keep
//! serving meanwhile (what it takes in after a repository's snapshot goes at the next run).
//! At the end, every tag of DIR is checked to name the same digest here.

use std::collections::HashSet;
use std::path::Path;

use super::job::ImageName;
use super::{export, import};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::reference::{RepoName, Tag};
use crate::registry::{Options, Provenance, Registry};

/// What a copy did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub repositories: usize,
    pub tags: usize,
    /// Blobs (manifests' own bytes included) and their bytes sent over.
    pub blobs: usize,
    pub bytes: u64,
    /// Repositories of DIR's pull-through cache, left behind: they fill again from upstream.
    pub cached_left: usize,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "copied {} repositories ({} tags, each checked to name the same digest here): \
             {} blobs, {} sent",
            self.repositories,
            self.tags,
            self.blobs,
            crate::units::human_bytes(self.bytes)
        )?;
        if self.cached_left > 0 {
            write!(
                f,
                "; {} cached repositories left behind (they fill again from their upstreams)",
                self.cached_left
            )?;
        }
        Ok(())
    }
}

/// Copies the registry in `source` (a data directory with an `index.db`) into `target`.
pub fn copy_from(source: &Path, target: &Registry) -> Result<Report> {
    let from = Registry::open_existing(source, Options::default(), true)?;
    let mut report = Report::default();
    let names = from.catalog(None, None)?.items;
    for name in &names {
        let repo: RepoName = name.parse().map_err(|e| {
            Error::Corrupt(format!("{name}: a stored name that does not parse: {e}"))
        })?;
        if let Provenance::Cached(_) = from.provenance(&repo)? {
            report.cached_left += 1;
            continue;
        }
        if from.tags(&repo, Some(1), None)?.items.is_empty() {
            continue;
        }
        let have = inventory(target)?;
        let (sent, bytes) = copy_repository(&from, target, &repo, &have)
            .map_err(|e| Error::Bundle(format!("copying {repo}: {e} (run again to resume)")))?;
        report.repositories += 1;
        report.blobs += sent;
        report.bytes += bytes;
        println!(
            "{repo}: {sent} blobs, {} sent",
            crate::units::human_bytes(bytes)
        );
    }
    report.tags = check(&from, target, &names)?;
    Ok(report)
}

/// Every digest `target` holds.
fn inventory(target: &Registry) -> Result<HashSet<Digest>> {
    Ok(target
        .inventory()?
        .into_iter()
        .filter_map(|(d, _)| d.parse().ok())
        .collect())
}

/// One repository through a pipe: its export on a thread, the import here. Returns the blobs
/// and bytes sent.
fn copy_repository(
    from: &Registry,
    target: &Registry,
    repo: &RepoName,
    have: &HashSet<Digest>,
) -> Result<(usize, u64)> {
    let (reader, writer) =
        std::io::pipe().map_err(|e| Error::io("making a pipe for the copy", e))?;
    let label = format!("the copy of {repo}");
    let images = [ImageName {
        repo: repo.clone(),
        tag: None,
    }];
    std::thread::scope(|s| {
        let exported = s.spawn(|| export::export_to(from, &images, have, writer, &label));
        let imported = import::import_pipe(
            target,
            std::fs::File::from(std::os::fd::OwnedFd::from(reader)),
            &label,
        );
        // A failed import closes the pipe, which ends the export with an error of its own:
        // the import's says why.
        let exported = exported.join().expect("the export thread does not panic");
        let report = exported.and_then(|e| imported.map(|_| e))?;
        Ok((report.blobs, report.bytes))
    })
}

/// Every tag of every local repository of `from` names the same digest in `target`; returns
/// how many tags were checked.
fn check(from: &Registry, target: &Registry, names: &[String]) -> Result<usize> {
    let mut checked = 0;
    for name in names {
        let repo: RepoName = name
            .parse()
            .map_err(|e| Error::Corrupt(format!("{name}: {e}")))?;
        if !matches!(from.provenance(&repo)?, Provenance::Local) {
            continue;
        }
        for tag in from.tags(&repo, None, None)?.items {
            let tag: Tag = tag
                .parse()
                .map_err(|e| Error::Corrupt(format!("{repo}:{tag}: {e}")))?;
            let want = from.view(|v| v.resolve(&repo, &tag))?.digest;
            let got = target.view(|v| v.resolve(&repo, &tag)).map(|r| r.digest);
            match got {
                Ok(d) if d == want => checked += 1,
                // A tag the box moved after its repository was copied: the next run takes it.
                Ok(d) => {
                    return Err(Error::Bundle(format!(
                        "{repo}:{tag} is {want} on the box but {d} here (moved on the box \
                         meanwhile?): run again"
                    )))
                }
                Err(_) => {
                    return Err(Error::Bundle(format!(
                        "{repo}:{tag} is missing here (pushed on the box meanwhile?): run again"
                    )))
                }
            }
        }
    }
    Ok(checked)
}
