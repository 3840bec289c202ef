//! The pull-through cache's rows: cached manifests, their blobs and their sizes.

use rusqlite::Connection;

use super::RepoId;
use crate::error::Result;

/// A cached manifest as eviction sees it.
pub struct CachedManifest {
    pub repo: RepoId,
    pub repo_name: String,
    pub digest: String,
    pub accessed_at: i64,
}

pub fn cached_manifests(c: &Connection) -> Result<Vec<CachedManifest>> {
    let mut stmt = c.prepare(
        "SELECT m.repo_id, r.name, m.digest, m.accessed_at FROM manifests m
           JOIN repos r ON r.id = m.repo_id WHERE r.upstream IS NOT NULL",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(CachedManifest {
            repo: r.get(0)?,
            repo_name: r.get(1)?,
            digest: r.get(2)?,
            accessed_at: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// (repo, manifest, blob digest, blob size) for every config and layer of a cached manifest
/// that is in the cache.
pub fn cached_manifest_blobs(c: &Connection) -> Result<Vec<(RepoId, String, String, u64)>> {
    let mut stmt = c.prepare(
        "SELECT f.repo_id, f.manifest, f.digest, b.size FROM manifest_refs f
           JOIN repos r ON r.id = f.repo_id
           JOIN blobs b ON b.digest = f.digest
          WHERE r.upstream IS NOT NULL AND f.kind IN ('config', 'layer')",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get::<_, i64>(3)? as u64))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// (digest, size) of blobs linked to a cached repository that no manifest names: left by an
/// earlier eviction that found them inside the grace window.
pub fn cached_unreferenced_blobs(c: &Connection) -> Result<Vec<(String, u64)>> {
    let mut stmt = c.prepare(
        "SELECT b.digest, b.size FROM blobs b
          WHERE EXISTS (SELECT 1 FROM repo_blobs l JOIN repos r ON r.id = l.repo_id
                         WHERE l.digest = b.digest AND r.upstream IS NOT NULL)
            AND NOT EXISTS (SELECT 1 FROM manifest_refs f
                             WHERE f.digest = b.digest AND f.kind <> 'subject')
            AND NOT EXISTS (SELECT 1 FROM manifests m WHERE m.digest = b.digest)",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The sizes the manifests of repository `name` give blob `digest` as a config or a layer
/// (distinct; more than one only if some descriptor is wrong).
pub fn descriptor_sizes(c: &Connection, name: &str, digest: &str) -> Result<Vec<u64>> {
    let mut stmt = c.prepare_cached(
        "SELECT DISTINCT f.size FROM manifest_refs f JOIN repos r ON r.id = f.repo_id
          WHERE r.name = ?1 AND f.digest = ?2 AND f.kind IN ('config', 'layer')",
    )?;
    let rows = stmt.query_map([name, digest], |r| r.get::<_, i64>(0))?;
    Ok(rows
        .map(|r| r.map(|n| n as u64))
        .collect::<rusqlite::Result<_>>()?)
}

/// Bytes the cached repositories hold (every blob linked to one, counted once).
pub fn cached_bytes(c: &Connection) -> Result<u64> {
    Ok(c.query_row(
        "SELECT COALESCE(SUM(b.size), 0) FROM blobs b WHERE EXISTS
           (SELECT 1 FROM repo_blobs l JOIN repos r ON r.id = l.repo_id
             WHERE l.digest = b.digest AND r.upstream IS NOT NULL)",
        [],
        |r| r.get::<_, i64>(0),
    )? as u64)
}

/// Every manifest's size by digest (a manifest's bytes count once, however many repositories
/// hold it).
pub fn manifest_sizes(c: &Connection) -> Result<std::collections::HashMap<String, u64>> {
    let mut stmt = c.prepare("SELECT digest, size FROM manifests")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
