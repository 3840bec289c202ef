//! Typed queries over the index. Each function is one statement (or a short fixed sequence),
//! takes a `Connection` (a `Transaction` derefs to one) and returns plain values. The registry
//! decides which of them run together in one transaction.

use rusqlite::{params, Connection, OptionalExtension};

use crate::error::Result;
use crate::manifest::Ref;

pub type RepoId = i64;

/// A manifest row: what a GET needs to answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestRow {
    pub digest: String,
    pub media_type: String,
    pub size: u64,
    pub subject: Option<String>,
    pub accessed_at: i64,
}

/// A manifest that names a subject, as the referrers API lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReferrerRow {
    pub digest: String,
    pub media_type: String,
    pub size: u64,
    pub artifact_type: Option<String>,
    pub annotations: Option<String>,
}

/// What is inserted for a pushed manifest.
pub struct NewManifest<'a> {
    pub digest: &'a str,
    pub media_type: &'a str,
    pub size: u64,
    pub artifact_type: Option<&'a str>,
    pub subject: Option<&'a str>,
    pub annotations: Option<&'a str>,
}

// ---- repositories -------------------------------------------------------------------------------

pub fn repo_id(c: &Connection, name: &str) -> Result<Option<RepoId>> {
    Ok(c.prepare_cached("SELECT id FROM repos WHERE name = ?1")?
        .query_row([name], |r| r.get(0))
        .optional()?)
}

pub fn ensure_repo(c: &Connection, name: &str, now: i64) -> Result<RepoId> {
    if let Some(id) = repo_id(c, name)? {
        return Ok(id);
    }
    c.prepare_cached("INSERT INTO repos (name, created_at) VALUES (?1, ?2)")?
        .execute(params![name, now])?;
    Ok(c.last_insert_rowid())
}

/// Repository names after `last`, in order, that hold at least one manifest.
pub fn catalog(c: &Connection, last: Option<&str>, limit: u32) -> Result<Vec<String>> {
    let mut stmt = c.prepare_cached(
        "SELECT name FROM repos r WHERE name > ?1
           AND EXISTS (SELECT 1 FROM manifests m WHERE m.repo_id = r.id)
         ORDER BY name LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![last.unwrap_or(""), limit], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

// ---- blobs and links ----------------------------------------------------------------------------

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

pub fn touch_blob(c: &Connection, repo: RepoId, digest: &str, now: i64) -> Result<()> {
    c.prepare_cached("UPDATE repo_blobs SET accessed_at = ?3 WHERE repo_id = ?1 AND digest = ?2")?
        .execute(params![repo, digest, now])?;
    Ok(())
}

pub fn unlink_blob(c: &Connection, repo: RepoId, digest: &str) -> Result<bool> {
    Ok(
        c.prepare_cached("DELETE FROM repo_blobs WHERE repo_id = ?1 AND digest = ?2")?
            .execute(params![repo, digest])?
            > 0,
    )
}

// ---- manifests and tags -------------------------------------------------------------------------

fn manifest_row(r: &rusqlite::Row) -> rusqlite::Result<ManifestRow> {
    Ok(ManifestRow {
        digest: r.get(0)?,
        media_type: r.get(1)?,
        size: r.get::<_, i64>(2)? as u64,
        subject: r.get(3)?,
        accessed_at: r.get(4)?,
    })
}

pub fn manifest_by_digest(
    c: &Connection,
    repo: RepoId,
    digest: &str,
) -> Result<Option<ManifestRow>> {
    Ok(c.prepare_cached(
        "SELECT digest, media_type, size, subject, accessed_at FROM manifests
          WHERE repo_id = ?1 AND digest = ?2",
    )?
    .query_row(params![repo, digest], manifest_row)
    .optional()?)
}

pub fn manifest_by_tag(c: &Connection, repo: RepoId, tag: &str) -> Result<Option<ManifestRow>> {
    Ok(c.prepare_cached(
        "SELECT m.digest, m.media_type, m.size, m.subject, m.accessed_at
           FROM tags t JOIN manifests m ON m.repo_id = t.repo_id AND m.digest = t.digest
          WHERE t.repo_id = ?1 AND t.name = ?2",
    )?
    .query_row(params![repo, tag], manifest_row)
    .optional()?)
}

/// Inserts a manifest and its edges; false (and nothing changed) if it was already there.
pub fn insert_manifest(
    c: &Connection,
    repo: RepoId,
    m: &NewManifest,
    refs: &[Ref],
    now: i64,
) -> Result<bool> {
    let inserted =
        c.prepare_cached(
            "INSERT OR IGNORE INTO manifests
               (repo_id, digest, media_type, size, artifact_type, subject, annotations,
                created_at, accessed_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
        )?
        .execute(params![
            repo,
            m.digest,
            m.media_type,
            m.size as i64,
            m.artifact_type,
            m.subject,
            m.annotations,
            now
        ])? > 0;
    if inserted {
        let mut stmt = c.prepare_cached(
            "INSERT OR IGNORE INTO manifest_refs (repo_id, manifest, kind, digest, size, platform)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for r in refs {
            stmt.execute(params![
                repo,
                m.digest,
                r.kind.as_str(),
                r.digest.to_string(),
                r.size as i64,
                r.platform
            ])?;
        }
    }
    Ok(inserted)
}

pub fn touch_manifest(c: &Connection, repo: RepoId, digest: &str, now: i64) -> Result<()> {
    c.prepare_cached("UPDATE manifests SET accessed_at = ?3 WHERE repo_id = ?1 AND digest = ?2")?
        .execute(params![repo, digest, now])?;
    Ok(())
}

pub fn set_tag(c: &Connection, repo: RepoId, tag: &str, digest: &str, now: i64) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO tags (repo_id, name, digest, updated_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (repo_id, name) DO UPDATE SET digest = ?3, updated_at = ?4
           WHERE digest <> ?3",
    )?
    .execute(params![repo, tag, digest, now])?;
    Ok(())
}

pub fn delete_tag(c: &Connection, repo: RepoId, tag: &str) -> Result<bool> {
    Ok(
        c.prepare_cached("DELETE FROM tags WHERE repo_id = ?1 AND name = ?2")?
            .execute(params![repo, tag])?
            > 0,
    )
}

/// Deletes a manifest with its tags and edges (the blob file stays for GC).
pub fn delete_manifest(c: &Connection, repo: RepoId, digest: &str) -> Result<bool> {
    Ok(
        c.prepare_cached("DELETE FROM manifests WHERE repo_id = ?1 AND digest = ?2")?
            .execute(params![repo, digest])?
            > 0,
    )
}

/// Tag names after `last`, in lexical order.
pub fn list_tags(
    c: &Connection,
    repo: RepoId,
    last: Option<&str>,
    limit: u32,
) -> Result<Vec<String>> {
    let mut stmt = c.prepare_cached(
        "SELECT name FROM tags WHERE repo_id = ?1 AND name > ?2 ORDER BY name LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![repo, last.unwrap_or(""), limit], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn referrers(
    c: &Connection,
    repo: RepoId,
    subject: &str,
    artifact_type: Option<&str>,
) -> Result<Vec<ReferrerRow>> {
    let mut stmt = c.prepare_cached(
        "SELECT digest, media_type, size, artifact_type, annotations FROM manifests
          WHERE repo_id = ?1 AND subject = ?2 AND (?3 IS NULL OR artifact_type = ?3)
          ORDER BY created_at, digest",
    )?;
    let rows = stmt.query_map(params![repo, subject, artifact_type], |r| {
        Ok(ReferrerRow {
            digest: r.get(0)?,
            media_type: r.get(1)?,
            size: r.get::<_, i64>(2)? as u64,
            artifact_type: r.get(3)?,
            annotations: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

// ---- uploads ------------------------------------------------------------------------------------

pub fn insert_upload(c: &Connection, id: &str, repo: RepoId, now: i64) -> Result<()> {
    c.prepare_cached("INSERT INTO uploads (id, repo_id, created_at) VALUES (?1, ?2, ?3)")?
        .execute(params![id, repo, now])?;
    Ok(())
}

/// The repository an upload belongs to.
pub fn upload_repo(c: &Connection, id: &str) -> Result<Option<RepoId>> {
    Ok(
        c.prepare_cached("SELECT repo_id FROM uploads WHERE id = ?1")?
            .query_row([id], |r| r.get(0))
            .optional()?,
    )
}

pub fn delete_upload(c: &Connection, id: &str) -> Result<bool> {
    Ok(c.prepare_cached("DELETE FROM uploads WHERE id = ?1")?
        .execute([id])?
        > 0)
}

/// All upload ids with their start time.
pub fn uploads(c: &Connection) -> Result<Vec<(String, i64)>> {
    let mut stmt = c.prepare_cached("SELECT id, created_at FROM uploads")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
