//! Typed read queries for the web page (`registry/browse.rs`): repositories with their counts,
//! tags with the manifest each points at, a manifest's total size and platforms, referrers with
//! their push time, what the pull-through cache holds. Read-only, one statement each, every one
//! bounded by a `LIMIT` or by one repository or manifest, so a page costs the same with 10 or
//! 10,000 repositories.

use rusqlite::{params, Connection};

use super::queries::RepoId;
use crate::error::Result;

/// A repository as the page lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepoRow {
    pub id: RepoId,
    pub name: String,
    /// The upstream a cached repository mirrors; `None` for one pushed here.
    pub upstream: Option<String>,
    pub created_at: i64,
    pub tags: u64,
    pub manifests: u64,
    /// When a tag last moved (`None`: no tags).
    pub updated_at: Option<i64>,
}

/// Repositories holding at least one manifest, after `last` in name order, whose name matches
/// the `LIKE` pattern (`None`: all), `limit` at most.
pub fn repos(
    c: &Connection,
    pattern: Option<&str>,
    last: Option<&str>,
    limit: u32,
) -> Result<Vec<RepoRow>> {
    let mut stmt = c.prepare_cached(
        "SELECT r.id, r.name, r.upstream, r.created_at,
                (SELECT COUNT(*) FROM tags t WHERE t.repo_id = r.id),
                (SELECT COUNT(*) FROM manifests m WHERE m.repo_id = r.id),
                (SELECT MAX(t.updated_at) FROM tags t WHERE t.repo_id = r.id)
           FROM repos r
          WHERE r.name > ?1 AND (?2 IS NULL OR r.name LIKE ?2 ESCAPE '\\')
            AND EXISTS (SELECT 1 FROM manifests m WHERE m.repo_id = r.id)
          ORDER BY r.name LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![last.unwrap_or(""), pattern, limit], |r| {
        Ok(RepoRow {
            id: r.get(0)?,
            name: r.get(1)?,
            upstream: r.get(2)?,
            created_at: r.get(3)?,
            tags: r.get::<_, i64>(4)? as u64,
            manifests: r.get::<_, i64>(5)? as u64,
            updated_at: r.get(6)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Manifests of a repository that nothing reaches: no tag, no subject (a referrer is shown
/// under its subject), not a child of an index.
pub fn untagged(c: &Connection, repo: RepoId) -> Result<u64> {
    Ok(c.prepare_cached(
        "SELECT COUNT(*) FROM manifests m
          WHERE m.repo_id = ?1 AND m.subject IS NULL
            AND NOT EXISTS (SELECT 1 FROM tags t WHERE t.repo_id = ?1 AND t.digest = m.digest)
            AND NOT EXISTS (SELECT 1 FROM manifest_refs r
                             WHERE r.repo_id = ?1 AND r.digest = m.digest AND r.kind = 'child')",
    )?
    .query_row([repo], |r| r.get::<_, i64>(0))? as u64)
}

/// A tag with the manifest it points at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagRow {
    pub tag: String,
    pub digest: String,
    /// When the tag was last pointed at this digest.
    pub updated_at: i64,
    pub media_type: String,
    pub artifact_type: Option<String>,
    pub created_at: i64,
    pub accessed_at: i64,
}

/// Tags after `last` in name order, `limit` at most.
pub fn tags(c: &Connection, repo: RepoId, last: Option<&str>, limit: u32) -> Result<Vec<TagRow>> {
    let mut stmt = c.prepare_cached(
        "SELECT t.name, t.digest, t.updated_at, m.media_type, m.artifact_type,
                m.created_at, m.accessed_at
           FROM tags t JOIN manifests m ON m.repo_id = t.repo_id AND m.digest = t.digest
          WHERE t.repo_id = ?1 AND t.name > ?2
          ORDER BY t.name LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![repo, last.unwrap_or(""), limit], |r| {
        Ok(TagRow {
            tag: r.get(0)?,
            digest: r.get(1)?,
            updated_at: r.get(2)?,
            media_type: r.get(3)?,
            artifact_type: r.get(4)?,
            created_at: r.get(5)?,
            accessed_at: r.get(6)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Bytes stored for a manifest and everything it names (config, layers, an index's children
/// and theirs), each blob counted once.
pub fn total_size(c: &Connection, repo: RepoId, digest: &str) -> Result<u64> {
    Ok(c.prepare_cached(
        "WITH RECURSIVE reach(digest) AS (
             SELECT ?2
             UNION
             SELECT r.digest FROM manifest_refs r JOIN reach ON r.manifest = reach.digest
              WHERE r.repo_id = ?1 AND r.kind <> 'subject'
         )
         SELECT COALESCE(SUM(b.size), 0) FROM reach JOIN blobs b ON b.digest = reach.digest",
    )?
    .query_row(params![repo, digest], |r| r.get::<_, i64>(0))? as u64)
}

/// The platforms of an index's children (`os/arch[/variant]`), sorted, without repeats.
pub fn platforms(c: &Connection, repo: RepoId, digest: &str) -> Result<Vec<String>> {
    let mut stmt = c.prepare_cached(
        "SELECT DISTINCT platform FROM manifest_refs
          WHERE repo_id = ?1 AND manifest = ?2 AND kind = 'child' AND platform IS NOT NULL
          ORDER BY platform",
    )?;
    let rows = stmt.query_map(params![repo, digest], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// A manifest that names a subject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReferrerRow {
    pub digest: String,
    pub media_type: String,
    pub artifact_type: Option<String>,
    pub size: u64,
    pub created_at: i64,
}

/// The referrers of `subject` (signatures, SBOMs, attestations), oldest first, `limit` at most.
pub fn referrers(
    c: &Connection,
    repo: RepoId,
    subject: &str,
    limit: u32,
) -> Result<Vec<ReferrerRow>> {
    let mut stmt = c.prepare_cached(
        "SELECT digest, media_type, artifact_type, size, created_at FROM manifests
          WHERE repo_id = ?1 AND subject = ?2
          ORDER BY created_at, digest LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![repo, subject, limit], |r| {
        Ok(ReferrerRow {
            digest: r.get(0)?,
            media_type: r.get(1)?,
            artifact_type: r.get(2)?,
            size: r.get::<_, i64>(3)? as u64,
            created_at: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn referrer_count(c: &Connection, repo: RepoId, subject: &str) -> Result<u64> {
    Ok(
        c.prepare_cached("SELECT COUNT(*) FROM manifests WHERE repo_id = ?1 AND subject = ?2")?
            .query_row(params![repo, subject], |r| r.get::<_, i64>(0))? as u64,
    )
}

/// What the pull-through cache holds from one upstream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamRow {
    pub upstream: String,
    pub repos: u64,
    /// Bytes of the blobs its repositories link (a blob shared by two counts twice).
    pub bytes: u64,
}

/// Cached repositories grouped by upstream.
pub fn upstreams(c: &Connection) -> Result<Vec<UpstreamRow>> {
    let mut stmt = c.prepare_cached(
        "SELECT r.upstream, COUNT(DISTINCT r.id), COALESCE(SUM(b.size), 0)
           FROM repos r
           LEFT JOIN repo_blobs l ON l.repo_id = r.id
           LEFT JOIN blobs b ON b.digest = l.digest
          WHERE r.upstream IS NOT NULL
          GROUP BY r.upstream ORDER BY r.upstream",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(UpstreamRow {
            upstream: r.get(0)?,
            repos: r.get::<_, i64>(1)? as u64,
            bytes: r.get::<_, i64>(2)? as u64,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
