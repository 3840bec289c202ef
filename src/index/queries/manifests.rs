//! Manifests, their references, tags and referrers.

use super::{ManifestRow, NewManifest, ReferrerRow, RepoId};
use crate::args;
use crate::error::Result;
use crate::index::{Conn, Dialect, Row};
use crate::manifest::Ref;

fn manifest_row(r: &Row) -> Result<ManifestRow> {
    Ok(ManifestRow {
        digest: r.text(0)?,
        media_type: r.text(1)?,
        size: r.u64(2)?,
        subject: r.opt_text(3)?,
        accessed_at: r.int(4)?,
    })
}

pub fn manifest_by_digest(c: &Conn, repo: RepoId, digest: &str) -> Result<Option<ManifestRow>> {
    c.row(
        "SELECT digest, media_type, size, subject, accessed_at FROM manifests
          WHERE repo_id = ?1 AND digest = ?2",
        args![repo, digest],
        manifest_row,
    )
}

/// The manifest tagged `tag` in the repository called `name`, with the repository's id: one
/// statement, so one round trip to a PostgreSQL index (a GET's whole read).
pub fn manifest_by_tag_in(
    c: &Conn,
    name: &str,
    tag: &str,
) -> Result<Option<(RepoId, ManifestRow)>> {
    c.row(
        "SELECT m.digest, m.media_type, m.size, m.subject, m.accessed_at, r.id
           FROM repos r JOIN tags t ON t.repo_id = r.id
                JOIN manifests m ON m.repo_id = t.repo_id AND m.digest = t.digest
          WHERE r.name = ?1 AND t.name = ?2",
        args![name, tag],
        |r| Ok((r.int(5)?, manifest_row(r)?)),
    )
}

/// [`manifest_by_tag_in`] by digest.
pub fn manifest_by_digest_in(
    c: &Conn,
    name: &str,
    digest: &str,
) -> Result<Option<(RepoId, ManifestRow)>> {
    c.row(
        "SELECT m.digest, m.media_type, m.size, m.subject, m.accessed_at, r.id
           FROM repos r JOIN manifests m ON m.repo_id = r.id
          WHERE r.name = ?1 AND m.digest = ?2",
        args![name, digest],
        |r| Ok((r.int(5)?, manifest_row(r)?)),
    )
}

pub fn manifest_by_tag(c: &Conn, repo: RepoId, tag: &str) -> Result<Option<ManifestRow>> {
    c.row(
        "SELECT m.digest, m.media_type, m.size, m.subject, m.accessed_at
           FROM tags t JOIN manifests m ON m.repo_id = t.repo_id AND m.digest = t.digest
          WHERE t.repo_id = ?1 AND t.name = ?2",
        args![repo, tag],
        manifest_row,
    )
}

/// How many levels of child manifests lie below `children` in a repository (0 when they are
/// all images), counted no further than `limit`. Each level is the distinct manifests at that
/// depth, so shared children are walked once per level, never once per path.
pub fn depth_below(c: &Conn, repo: RepoId, children: &[String], limit: usize) -> Result<usize> {
    let seeds = serde_json::to_string(children).expect("serialising to memory");
    let sql = match c.dialect() {
        Dialect::Sqlite => {
            "WITH RECURSIVE below(digest, depth) AS (
                 SELECT value, 0 FROM json_each(?2)
                 UNION
                 SELECT r.digest, b.depth + 1 FROM below b
                   JOIN manifest_refs r
                     ON r.repo_id = ?1 AND r.manifest = b.digest AND r.kind = 'child'
                  WHERE b.depth < ?3
             )
             SELECT MAX(depth) FROM below"
        }
        Dialect::Postgres => {
            "WITH RECURSIVE below(digest, depth) AS (
                 SELECT value COLLATE \"C\", CAST(0 AS BIGINT)
                   FROM json_array_elements_text(CAST(?2 AS TEXT)::json)
                 UNION
                 SELECT r.digest, b.depth + 1 FROM below b
                   JOIN manifest_refs r
                     ON r.repo_id = ?1 AND r.manifest = b.digest AND r.kind = 'child'
                  WHERE b.depth < ?3
             )
             SELECT MAX(depth) FROM below"
        }
    };
    let depth = c.one(sql, args![repo, seeds.as_str(), limit as i64], |r| {
        r.opt_int(0)
    })?;
    Ok(depth.unwrap_or(0) as usize)
}

/// Inserts a manifest and its edges; false (and nothing changed) if it was already there.
pub fn insert_manifest(
    c: &Conn,
    repo: RepoId,
    m: &NewManifest,
    refs: &[Ref],
    now: i64,
) -> Result<bool> {
    let inserted = c.execute(
        "INSERT INTO manifests
           (repo_id, digest, media_type, size, artifact_type, subject, annotations,
            created_at, accessed_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)
         ON CONFLICT DO NOTHING",
        args![
            repo,
            m.digest,
            m.media_type,
            m.size,
            m.artifact_type,
            m.subject,
            m.annotations,
            now
        ],
    )? > 0;
    if inserted {
        for r in refs {
            c.execute(
                "INSERT INTO manifest_refs (repo_id, manifest, kind, digest, size, platform)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT DO NOTHING",
                args![
                    repo,
                    m.digest,
                    r.kind.as_str(),
                    &r.digest.to_string(),
                    r.size,
                    r.platform.as_deref()
                ],
            )?;
        }
    }
    Ok(inserted)
}

/// Refreshes a manifest's read time; false if it is gone.
pub fn touch_manifest(c: &Conn, repo: RepoId, digest: &str, now: i64) -> Result<bool> {
    Ok(c.execute(
        "UPDATE manifests SET accessed_at = ?3 WHERE repo_id = ?1 AND digest = ?2",
        args![repo, digest, now],
    )? > 0)
}

pub fn set_tag(c: &Conn, repo: RepoId, tag: &str, digest: &str, now: i64) -> Result<()> {
    c.execute(
        "INSERT INTO tags (repo_id, name, digest, updated_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (repo_id, name) DO UPDATE SET digest = ?3, updated_at = ?4
           WHERE tags.digest <> ?3",
        args![repo, tag, digest, now],
    )?;
    Ok(())
}

pub fn delete_tag(c: &Conn, repo: RepoId, tag: &str) -> Result<bool> {
    Ok(c.execute(
        "DELETE FROM tags WHERE repo_id = ?1 AND name = ?2",
        args![repo, tag],
    )? > 0)
}

/// Deletes a manifest with its tags and edges (the blob file stays for GC).
pub fn delete_manifest(c: &Conn, repo: RepoId, digest: &str) -> Result<bool> {
    Ok(c.execute(
        "DELETE FROM manifests WHERE repo_id = ?1 AND digest = ?2",
        args![repo, digest],
    )? > 0)
}

/// Tag names after `last`, in lexical order.
pub fn list_tags(c: &Conn, repo: RepoId, last: Option<&str>, limit: u32) -> Result<Vec<String>> {
    c.rows(
        "SELECT name FROM tags WHERE repo_id = ?1 AND name > ?2 ORDER BY name LIMIT ?3",
        args![repo, last.unwrap_or(""), limit],
        |r| r.text(0),
    )
}

pub fn referrers(
    c: &Conn,
    repo: RepoId,
    subject: &str,
    artifact_type: Option<&str>,
    limit: Option<u32>,
) -> Result<Vec<ReferrerRow>> {
    // SQLite, left to itself, walks the primary key for this; PostgreSQL picks the index.
    let sql = match c.dialect() {
        Dialect::Sqlite => {
            "SELECT digest, media_type, size, artifact_type, annotations, created_at
               FROM manifests INDEXED BY manifests_by_subject
              WHERE repo_id = ?1 AND subject = ?2 AND (?3 IS NULL OR artifact_type = ?3)
              ORDER BY created_at, digest LIMIT ?4"
        }
        Dialect::Postgres => {
            "SELECT digest, media_type, size, artifact_type, annotations, created_at
               FROM manifests
              WHERE repo_id = ?1 AND subject = ?2
                AND (CAST(?3 AS TEXT) IS NULL OR artifact_type = ?3)
              ORDER BY created_at, digest LIMIT ?4"
        }
    };
    // No limit: more rows than any table holds.
    let limit = limit.map_or(i64::MAX, i64::from);
    c.rows(sql, args![repo, subject, artifact_type, limit], |r| {
        Ok(ReferrerRow {
            digest: r.text(0)?,
            media_type: r.text(1)?,
            size: r.u64(2)?,
            artifact_type: r.opt_text(3)?,
            annotations: r.opt_text(4)?,
            created_at: r.int(5)?,
        })
    })
}

/// Every repository holding a manifest with this digest: (its name, its id).
pub fn manifest_holders(c: &Conn, digest: &str) -> Result<Vec<(String, RepoId)>> {
    c.rows(
        "SELECT r.name, m.repo_id FROM manifests m JOIN repos r ON r.id = m.repo_id
          WHERE m.digest = ?1",
        args![digest],
        |r| Ok((r.text(0)?, r.int(1)?)),
    )
}
