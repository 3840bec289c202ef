//! Blob rows and the links that let a repository read a blob.

use super::RepoId;
use crate::args;
use crate::error::Result;
use crate::index::Conn;

/// Size of a blob this repository may read, and when the link was last read.
pub fn linked_blob(c: &Conn, repo: RepoId, digest: &str) -> Result<Option<(u64, i64)>> {
    c.row(
        "SELECT b.size, l.accessed_at FROM repo_blobs l JOIN blobs b ON b.digest = l.digest
          WHERE l.repo_id = ?1 AND l.digest = ?2",
        args![repo, digest],
        |r| Ok((r.u64(0)?, r.int(1)?)),
    )
}

/// [`linked_blob`] in the repository called `name`, with the repository's id: one statement,
/// so one round trip to a PostgreSQL index (a HEAD's whole read).
pub fn linked_blob_in(c: &Conn, name: &str, digest: &str) -> Result<Option<(RepoId, u64, i64)>> {
    c.row(
        "SELECT l.repo_id, b.size, l.accessed_at
           FROM repos r JOIN repo_blobs l ON l.repo_id = r.id JOIN blobs b ON b.digest = l.digest
          WHERE r.name = ?1 AND l.digest = ?2",
        args![name, digest],
        |r| Ok((r.int(0)?, r.u64(1)?, r.int(2)?)),
    )
}

/// Size of a blob held by the registry, whoever it is linked to.
pub fn blob_size(c: &Conn, digest: &str) -> Result<Option<u64>> {
    c.row(
        "SELECT size FROM blobs WHERE digest = ?1",
        args![digest],
        |r| r.u64(0),
    )
}

/// Every blob row, by digest: what `atoll --inventory` prints.
pub fn all_blobs(c: &Conn) -> Result<Vec<(String, u64)>> {
    c.rows(
        "SELECT digest, size FROM blobs ORDER BY digest",
        args![],
        |r| Ok((r.text(0)?, r.u64(1)?)),
    )
}

/// Records a blob whose file was just published. (If a collection had doomed a file of the same
/// digest, the row keeps the file: see [`super::take_doomed_files`].)
pub fn insert_blob(c: &Conn, digest: &str, size: u64, now: i64) -> Result<()> {
    c.execute(
        "INSERT INTO blobs (digest, size, created_at) VALUES (?1, ?2, ?3)
         ON CONFLICT DO NOTHING",
        args![digest, size, now],
    )?;
    Ok(())
}

/// Links a blob to a repository, or refreshes the link: a fresh link is protected from GC.
pub fn link_blob(c: &Conn, repo: RepoId, digest: &str, now: i64) -> Result<()> {
    c.execute(
        "INSERT INTO repo_blobs (repo_id, digest, linked_at, accessed_at) VALUES (?1, ?2, ?3, ?3)
         ON CONFLICT (repo_id, digest) DO UPDATE SET linked_at = ?3, accessed_at = ?3",
        args![repo, digest, now],
    )?;
    Ok(())
}

/// Refreshes a link's read time; false if the link is gone.
pub fn touch_blob(c: &Conn, repo: RepoId, digest: &str, now: i64) -> Result<bool> {
    Ok(c.execute(
        "UPDATE repo_blobs SET accessed_at = ?3 WHERE repo_id = ?1 AND digest = ?2",
        args![repo, digest, now],
    )? > 0)
}

/// A manifest of `repo` that needs `digest`: names it as its config, a layer or a child. (A
/// referrer does not need its subject: the spec lets a subject go before its referrers.)
pub fn manifest_needing(c: &Conn, repo: RepoId, digest: &str) -> Result<Option<String>> {
    c.row(
        "SELECT manifest FROM manifest_refs
          WHERE repo_id = ?1 AND digest = ?2 AND kind <> 'subject' LIMIT 1",
        args![repo, digest],
        |r| r.text(0),
    )
}

pub fn unlink_blob(c: &Conn, repo: RepoId, digest: &str) -> Result<bool> {
    Ok(c.execute(
        "DELETE FROM repo_blobs WHERE repo_id = ?1 AND digest = ?2",
        args![repo, digest],
    )? > 0)
}
