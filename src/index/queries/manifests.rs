//! Manifests, their references, tags and referrers.

use rusqlite::{params, Connection, OptionalExtension};

use super::{ManifestRow, NewManifest, ReferrerRow, RepoId};
use crate::error::Result;
use crate::manifest::Ref;

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

/// How many levels of child manifests lie below `children` in a repository (0 when they are
/// all images), counted no further than `limit`. Each level is the distinct manifests at that
/// depth, so shared children are walked once per level, never once per path.
pub fn depth_below(
    c: &Connection,
    repo: RepoId,
    children: &[String],
    limit: usize,
) -> Result<usize> {
    let seeds = serde_json::to_string(children).expect("serialising to memory");
    let depth: Option<i64> = c
        .prepare_cached(
            "WITH RECURSIVE below(digest, depth) AS (
                 SELECT value, 0 FROM json_each(?2)
                 UNION
                 SELECT r.digest, b.depth + 1 FROM below b
                   JOIN manifest_refs r
                     ON r.repo_id = ?1 AND r.manifest = b.digest AND r.kind = 'child'
                  WHERE b.depth < ?3
             )
             SELECT MAX(depth) FROM below",
        )?
        .query_row(params![repo, seeds, limit as i64], |r| r.get(0))?;
    Ok(depth.unwrap_or(0) as usize)
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

/// Refreshes a manifest's read time; false if it is gone.
pub fn touch_manifest(c: &Connection, repo: RepoId, digest: &str, now: i64) -> Result<bool> {
    Ok(c.prepare_cached(
        "UPDATE manifests SET accessed_at = ?3 WHERE repo_id = ?1 AND digest = ?2",
    )?
    .execute(params![repo, digest, now])?
        > 0)
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
    limit: Option<u32>,
) -> Result<Vec<ReferrerRow>> {
    let mut stmt = c.prepare_cached(
        "SELECT digest, media_type, size, artifact_type, annotations, created_at
           FROM manifests INDEXED BY manifests_by_subject
          WHERE repo_id = ?1 AND subject = ?2 AND (?3 IS NULL OR artifact_type = ?3)
          ORDER BY created_at, digest LIMIT ?4",
    )?;
    let limit = limit.map_or(-1, i64::from);
    let rows = stmt.query_map(params![repo, subject, artifact_type, limit], |r| {
        Ok(ReferrerRow {
            digest: r.get(0)?,
            media_type: r.get(1)?,
            size: r.get::<_, i64>(2)? as u64,
            artifact_type: r.get(3)?,
            annotations: r.get(4)?,
            created_at: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Every repository holding a manifest with this digest: (its name, its id).
pub fn manifest_holders(c: &Connection, digest: &str) -> Result<Vec<(String, RepoId)>> {
    let mut stmt = c.prepare_cached(
        "SELECT r.name, m.repo_id FROM manifests m JOIN repos r ON r.id = m.repo_id
          WHERE m.digest = ?1",
    )?;
    let rows = stmt.query_map([digest], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
