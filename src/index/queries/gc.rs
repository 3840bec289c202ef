//! What garbage collection reads to mark, and the statements its sweep runs.

use super::{blob_size, RepoId};
use crate::args;
use crate::digest::{Fanout, Key};
use crate::error::Result;
use crate::index::{Conn, Dialect, Prepared};

/// A manifest as garbage collection sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GcManifest {
    pub repo: RepoId,
    pub digest: String,
    /// Tagged, or in a cached repository (whose manifests eviction, not GC, lets go).
    pub tagged: bool,
    pub subject: Option<String>,
    pub created_at: i64,
    pub accessed_at: i64,
}

pub fn gc_manifests(c: &Conn) -> Result<Vec<GcManifest>> {
    c.rows(
        "SELECT m.repo_id, m.digest,
                EXISTS (SELECT 1 FROM tags t WHERE t.repo_id = m.repo_id AND t.digest = m.digest)
                OR EXISTS (SELECT 1 FROM repos r WHERE r.id = m.repo_id AND r.upstream IS NOT NULL),
                m.subject, m.created_at, m.accessed_at
           FROM manifests m",
        args![],
        |r| {
            Ok(GcManifest {
                repo: r.int(0)?,
                digest: r.text(1)?,
                tagged: r.bool(2)?,
                subject: r.opt_text(3)?,
                created_at: r.int(4)?,
                accessed_at: r.int(5)?,
            })
        },
    )
}

/// An edge from a manifest to content it keeps alive. Manifests are named by their position in
/// the list `gc_manifests` read and the content by its [`Key`]: the mark holds every edge,
/// and (repository, manifest, kind, digest) as text took three strings an edge (findings.md,
/// "How cost grows, continued").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GcEdge {
    /// The manifest's position in the list; `None` if that list has no such manifest (no
    /// foreign key should allow it): the edge then keeps its digest whatever happens.
    pub parent: Option<u32>,
    /// For a child of an index (a manifest, kept with its parent), the child's position in
    /// the list, if it is there.
    pub child: Option<u32>,
    pub digest: Key,
}

/// Every edge from a manifest of `manifests` (read in the same transaction) to content it
/// keeps alive. Subjects are left out: a referrer does not keep its subject.
pub fn gc_edges(c: &Conn, manifests: &[GcManifest]) -> Result<Vec<GcEdge>> {
    let at: foldhash::HashMap<(RepoId, &str), u32> = manifests
        .iter()
        .enumerate()
        .map(|(i, m)| ((m.repo, m.digest.as_str()), i as u32))
        .collect();
    let mut edges = Vec::new();
    c.each(
        "SELECT repo_id, manifest, kind, digest FROM manifest_refs WHERE kind <> 'subject'",
        args![],
        |r| {
            let (repo, digest) = (r.int(0)?, r.str(3)?);
            let child = match r.str(2)? {
                "child" => at.get(&(repo, digest)).copied(),
                _ => None,
            };
            edges.push(GcEdge {
                parent: at.get(&(repo, r.str(1)?)).copied(),
                child,
                digest: Key::parse(digest),
            });
            Ok(())
        },
    )?;
    Ok(edges)
}

/// A blob row with the newest time anything touched it (created, linked, read).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GcBlob {
    pub digest: Key,
    pub size: u64,
    pub last_used: i64,
}

/// Every blob row, sorted by key, with the fanout that finds a row by its key. Two table
/// scans merged here: a `GROUP BY` over the join was slower. Each link finds its row through
/// the fanout: a binary search over all rows cost a cache miss at each step, and the hash map
/// it replaced took several times its memory (figures: findings.md, "Figures moved out of
/// code comments" and "How cost grows, continued").
pub fn gc_blobs(c: &Conn) -> Result<(Vec<GcBlob>, Fanout)> {
    let mut blobs: Vec<GcBlob> = c.rows(
        "SELECT digest, size, created_at FROM blobs ORDER BY digest",
        args![],
        |r| {
            Ok(GcBlob {
                digest: Key::parse(r.str(0)?),
                size: r.u64(1)?,
                last_used: r.int(2)?,
            })
        },
    )?;
    // Already in order but where a database's collation orders text otherwise: then sorted
    // here (a sorted slice costs one pass).
    blobs.sort_unstable_by(|a, b| a.digest.cmp(&b.digest));
    let fanout = Fanout::new(blobs.iter().map(|b| &b.digest));
    let links = match c.dialect() {
        Dialect::Sqlite => "SELECT digest, MAX(linked_at, accessed_at) FROM repo_blobs",
        Dialect::Postgres => "SELECT digest, GREATEST(linked_at, accessed_at) FROM repo_blobs",
    };
    c.each(links, args![], |r| {
        let key = Key::parse(r.str(0)?);
        if let Some(i) = fanout.find(&blobs, |b| &b.digest, &key) {
            blobs[i].last_used = blobs[i].last_used.max(r.int(1)?);
        }
        Ok(())
    })?;
    Ok((blobs, fanout))
}

/// Re-checked inside the deleting transaction: may this manifest still go? (Untagged, named by
/// no index that exists, old and unread; for an orphaned referrer, its subject still absent.)
pub fn gc_manifest_still_deletable(
    c: &Conn,
    repo: RepoId,
    digest: &str,
    cutoff: i64,
    only_orphans: bool,
) -> Result<bool> {
    c.one(
        "SELECT EXISTS (SELECT 1 FROM manifests m WHERE m.repo_id = ?1 AND m.digest = ?2
                          AND m.created_at < ?3 AND m.accessed_at < ?3
                          AND (m.subject IS NULL AND NOT ?4
                               OR m.subject IS NOT NULL AND NOT EXISTS
                                  (SELECT 1 FROM manifests s WHERE s.repo_id = ?1 AND s.digest = m.subject)))
            AND NOT EXISTS (SELECT 1 FROM tags WHERE repo_id = ?1 AND digest = ?2)
            AND NOT EXISTS (SELECT 1 FROM repos WHERE id = ?1 AND upstream IS NOT NULL)
            AND NOT EXISTS (SELECT 1 FROM manifest_refs r
                              JOIN manifests p ON p.repo_id = r.repo_id AND p.digest = r.manifest
                             WHERE r.repo_id = ?1 AND r.digest = ?2 AND r.kind = 'child')",
        args![repo, digest, cutoff, only_orphans],
        |r| r.bool(0),
    )
}

/// Deletes the rows of blobs that are still unused, in one transaction, with statements
/// prepared once for all of them (finding a statement in the connection's cache hashes its
/// text: one lookup per statement per blob was 5% of a collection's time).
///
/// Whether a blob is still unused is checked in the deleting statement, unless the caller
/// knows that nothing has been written since it decided (an intact [`crate::index::Fence`]):
/// the checks are four index lookups a blob, half again the sweep's SQLite time.
pub struct UnusedBlobs<'c, 't> {
    conn: &'t Conn<'c>,
    delete: Prepared<'c>,
    delete_links: Prepared<'c>,
    cutoff: i64,
}

impl<'c, 't> UnusedBlobs<'c, 't> {
    /// `cutoff`: a blob created, linked or read at or after it is in use. `check`: see whether
    /// each blob is still unused (else only that its row is older than the cutoff).
    pub fn new(c: &'t Conn<'c>, cutoff: i64, check: bool) -> Result<UnusedBlobs<'c, 't>> {
        Ok(UnusedBlobs {
            conn: c,
            delete: c.prepare(if check {
                "DELETE FROM blobs WHERE digest = ?1 AND created_at < ?2
                    AND NOT EXISTS (SELECT 1 FROM manifest_refs
                                     WHERE digest = ?1 AND kind <> 'subject')
                    AND NOT EXISTS (SELECT 1 FROM manifests WHERE digest = ?1)
                    AND NOT EXISTS (SELECT 1 FROM repo_blobs WHERE digest = ?1
                                      AND (linked_at >= ?2 OR accessed_at >= ?2))"
            } else {
                "DELETE FROM blobs WHERE digest = ?1 AND created_at < ?2"
            })?,
            delete_links: c.prepare("DELETE FROM repo_blobs WHERE digest = ?1")?,
            cutoff,
        })
    }

    /// Deletes a blob's row if it is still unused, checked in the same statement (no manifest
    /// names it or is it, and nothing created, linked or read it since the cutoff), with its
    /// links; its file is the caller's to [`doom`]. Keeps the foreign keys itself, so it may
    /// run in [`crate::index::Index::write_keys_kept`]. Returns whether the row went.
    pub fn delete(&mut self, digest: &str) -> Result<bool> {
        if self.delete.execute(self.conn, args![digest, self.cutoff])? == 0 {
            return Ok(false);
        }
        self.delete_links.execute(self.conn, args![digest])?;
        Ok(true)
    }
}

/// Records the files of blobs whose rows are gone, to be unlinked by the next transaction that
/// [`take_doomed_files`] (see `migrations/0004`).
pub fn doom(c: &Conn, digests: &[&str]) -> Result<()> {
    if !digests.is_empty() {
        let batch = serde_json::Value::from(digests).to_string();
        c.execute(
            "INSERT INTO doomed_batches (digests) VALUES (?1)",
            args![&batch],
        )?;
    }
    Ok(())
}

/// Empties the doomed list and returns the files that may go: call in the transaction that
/// unlinks them. A digest that has a row again was published since its row was deleted: its
/// file is that blob's, and stays. `check: false` skips that check, for a caller that knows no
/// row came back (a collection whose fence shows that nothing else wrote since it doomed them).
pub fn take_doomed_files(c: &Conn, check: bool) -> Result<Vec<String>> {
    let batches = c.rows(
        "DELETE FROM doomed_batches RETURNING digests",
        args![],
        |r| r.text(0),
    )?;
    let mut files = Vec::new();
    for batch in batches {
        // Only `doom` writes these. Should one be unreadable all the same, its files are left
        // for the next collection, which removes files that no row names.
        let digests: Vec<String> = serde_json::from_str(&batch).unwrap_or_else(|e| {
            log::warn!("index: a doomed batch that is not a list of digests ({e}): left");
            Vec::new()
        });
        for d in digests {
            if !check || !blob_exists(c, &d)? {
                files.push(d);
            }
        }
    }
    Ok(files)
}

/// Deletes a blob row and every link to it.
pub fn delete_blob(c: &Conn, digest: &str) -> Result<bool> {
    Ok(c.execute("DELETE FROM blobs WHERE digest = ?1", args![digest])? > 0)
}

pub fn blob_exists(c: &Conn, digest: &str) -> Result<bool> {
    Ok(blob_size(c, digest)?.is_some())
}

/// Removes repositories left with no manifest, no blob and no upload.
pub fn delete_empty_repos(c: &Conn) -> Result<usize> {
    Ok(c.execute(
        "DELETE FROM repos WHERE
           NOT EXISTS (SELECT 1 FROM manifests WHERE repo_id = repos.id)
           AND NOT EXISTS (SELECT 1 FROM repo_blobs WHERE repo_id = repos.id)
           AND NOT EXISTS (SELECT 1 FROM uploads WHERE repo_id = repos.id)",
        args![],
    )? as usize)
}

/// Repository names by id.
pub fn repo_names(c: &Conn) -> Result<std::collections::HashMap<RepoId, String>> {
    Ok(c.rows("SELECT id, name FROM repos", args![], |r| {
        Ok((r.int(0)?, r.text(1)?))
    })?
    .into_iter()
    .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::queries::{ensure_repo, insert_blob, link_blob, touch_blob};
    use crate::index::Index;

    // Two under one 16-bit prefix, one under another, and a sha512 digest.
    const AA: &str = "sha256:aaaa000000000000000000000000000000000000000000000000000000000000";
    const BB: &str = "sha256:aaaa0000000000000000000000000000000000000000000000000000000000bb";
    const CC: &str = "sha256:cccc000000000000000000000000000000000000000000000000000000000000";
    const LONG: &str = "sha512:dddd0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000";

    /// Each blob's last use is the newest of its creation and its links, for sha256 digests
    /// (found by their prefix) as for the others.
    #[test]
    fn gc_blobs_finds_each_links_row() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(&dir.path().join("index.db")).unwrap();
        index
            .write(|tx| {
                let (r, s) = (ensure_repo(tx, "r", 0)?, ensure_repo(tx, "s", 0)?);
                for (d, created) in [(AA, 10), (BB, 20), (CC, 30), (LONG, 40)] {
                    insert_blob(tx, d, 1, created)?;
                }
                link_blob(tx, r, AA, 50)?;
                link_blob(tx, s, AA, 40)?;
                link_blob(tx, r, CC, 5)?;
                touch_blob(tx, s, AA, 60)?;
                link_blob(tx, r, LONG, 70)?;
                Ok(())
            })
            .unwrap();
        let want = [(AA, 60), (BB, 20), (CC, 30), (LONG, 70)]
            .map(|(d, t)| GcBlob {
                digest: Key::parse(d),
                size: 1,
                last_used: t,
            })
            .to_vec();
        assert_eq!(index.read(gc_blobs).unwrap().0, want);
    }
}
