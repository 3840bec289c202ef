//! Blob rows and the links that let a repository read a blob.

use rusqlite::{params, Connection, OptionalExtension};

use super::RepoId;
use crate::error::Result;

/// Size of a blob this repository may read, and when the link was last read.
pub fn linked_blob(c: &Connection, repo: RepoId, digest: &str) -> Result<Option<(u64, i64)>> {
    Ok(c.prepare_cached(
        "SELECT b.size, l.accessed_at FROM repo_blobs l JOIN blobs b ON b.digest = l.digest
          WHERE l.repo_id = ?1 AND l.digest = ?2",
    )?
    .query_row(params![repo, digest], |r| {
        Ok((r.get::<_, i64>(0)? as u64, r.get(1)?))
    })
    .optional()?)
}

/// Size of a blob held by the registry, whoever it is linked to.
pub fn blob_size(c: &Connection, digest: &str) -> Result<Option<u64>> {
    Ok(
        c.prepare_cached("SELECT size FROM blobs WHERE digest = ?1")?
            .query_row([digest], |r| r.get::<_, i64>(0))
            .optional()?
            .map(|s| s as u64),
    )
}

/// Every blob row, by digest: what `atoll --inventory` prints.
pub fn all_blobs(c: &Connection) -> Result<Vec<(String, u64)>> {
    let mut stmt = c.prepare_cached("SELECT digest, size FROM blobs ORDER BY digest")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Records a blob whose file was just published. (If a collection had doomed a file of the same
/// digest, the row keeps the file: see [`take_doomed_files`].)
pub fn insert_blob(c: &Connection, digest: &str, size: u64, now: i64) -> Result<()> {
    c.prepare_cached("INSERT OR IGNORE INTO blobs (digest, size, created_at) VALUES (?1, ?2, ?3)")?
        .execute(params![digest, size as i64, now])?;
    Ok(())
}

/// Links a blob to a repository, or refreshes the link: a fresh link is protected from GC.
pub fn link_blob(c: &Connection, repo: RepoId, digest: &str, now: i64) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO repo_blobs (repo_id, digest, linked_at, accessed_at) VALUES (?1, ?2, ?3, ?3)
         ON CONFLICT (repo_id, digest) DO UPDATE SET linked_at = ?3, accessed_at = ?3",
    )?
    .execute(params![repo, digest, now])?;
    Ok(())
}

/// Refreshes a link's read time; false if the link is gone.
pub fn touch_blob(c: &Connection, repo: RepoId, digest: &str, now: i64) -> Result<bool> {
    Ok(c.prepare_cached(
        "UPDATE repo_blobs SET accessed_at = ?3 WHERE repo_id = ?1 AND digest = ?2",
    )?
    .execute(params![repo, digest, now])?
        > 0)
}

/// A manifest of `repo` that needs `digest`: names it as its config, a layer or a child. (A
/// referrer does not need its subject: the spec lets a subject go before its referrers.)
pub fn manifest_needing(c: &Connection, repo: RepoId, digest: &str) -> Result<Option<String>> {
    Ok(c.prepare_cached(
        "SELECT manifest FROM manifest_refs
          WHERE repo_id = ?1 AND digest = ?2 AND kind <> 'subject' LIMIT 1",
    )?
    .query_row(params![repo, digest], |r| r.get(0))
    .optional()?)
}

pub fn unlink_blob(c: &Connection, repo: RepoId, digest: &str) -> Result<bool> {
    Ok(
        c.prepare_cached("DELETE FROM repo_blobs WHERE repo_id = ?1 AND digest = ?2")?
            .execute(params![repo, digest])?
            > 0,
    )
}
