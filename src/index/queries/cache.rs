//! The pull-through cache's rows: cached manifests, their blobs and their sizes.

use super::RepoId;
use crate::args;
use crate::error::Result;
use crate::index::Conn;

/// A cached manifest as eviction sees it.
pub struct CachedManifest {
    pub repo: RepoId,
    pub repo_name: String,
    pub digest: String,
    pub accessed_at: i64,
}

pub fn cached_manifests(c: &Conn) -> Result<Vec<CachedManifest>> {
    c.rows(
        "SELECT m.repo_id, r.name, m.digest, m.accessed_at FROM manifests m
           JOIN repos r ON r.id = m.repo_id WHERE r.upstream IS NOT NULL",
        args![],
        |r| {
            Ok(CachedManifest {
                repo: r.int(0)?,
                repo_name: r.text(1)?,
                digest: r.text(2)?,
                accessed_at: r.int(3)?,
            })
        },
    )
}

/// (repo, manifest, blob digest, blob size) for every config and layer of a cached manifest
/// that is in the cache.
pub fn cached_manifest_blobs(c: &Conn) -> Result<Vec<(RepoId, String, String, u64)>> {
    c.rows(
        "SELECT f.repo_id, f.manifest, f.digest, b.size FROM manifest_refs f
           JOIN repos r ON r.id = f.repo_id
           JOIN blobs b ON b.digest = f.digest
          WHERE r.upstream IS NOT NULL AND f.kind IN ('config', 'layer')",
        args![],
        |r| Ok((r.int(0)?, r.text(1)?, r.text(2)?, r.u64(3)?)),
    )
}

/// (digest, size) of blobs linked to a cached repository that no manifest names: left by an
/// earlier eviction that found them inside the grace window.
pub fn cached_unreferenced_blobs(c: &Conn) -> Result<Vec<(String, u64)>> {
    c.rows(
        "SELECT b.digest, b.size FROM blobs b
          WHERE EXISTS (SELECT 1 FROM repo_blobs l JOIN repos r ON r.id = l.repo_id
                         WHERE l.digest = b.digest AND r.upstream IS NOT NULL)
            AND NOT EXISTS (SELECT 1 FROM manifest_refs f
                             WHERE f.digest = b.digest AND f.kind <> 'subject')
            AND NOT EXISTS (SELECT 1 FROM manifests m WHERE m.digest = b.digest)",
        args![],
        |r| Ok((r.text(0)?, r.u64(1)?)),
    )
}

/// The sizes the manifests of repository `name` give blob `digest` as a config or a layer
/// (distinct; more than one only if some descriptor is wrong).
pub fn descriptor_sizes(c: &Conn, name: &str, digest: &str) -> Result<Vec<u64>> {
    c.rows(
        "SELECT DISTINCT f.size FROM manifest_refs f JOIN repos r ON r.id = f.repo_id
          WHERE r.name = ?1 AND f.digest = ?2 AND f.kind IN ('config', 'layer')",
        args![name, digest],
        |r| r.u64(0),
    )
}

/// Bytes the cached repositories hold (every blob linked to one, counted once), reached from
/// the cached repositories (index `repos_cached`): it costs what the cache holds.
pub fn cached_bytes(c: &Conn) -> Result<u64> {
    c.one(
        "SELECT CAST(COALESCE(SUM(b.size), 0) AS BIGINT) FROM blobs b WHERE b.digest IN
           (SELECT l.digest FROM repos r JOIN repo_blobs l ON l.repo_id = r.id
             WHERE r.upstream IS NOT NULL)",
        args![],
        |r| r.u64(0),
    )
}

/// Every manifest's size by digest (a manifest's bytes count once, however many repositories
/// hold it).
pub fn manifest_sizes(c: &Conn) -> Result<std::collections::HashMap<String, u64>> {
    Ok(c.rows("SELECT digest, size FROM manifests", args![], |r| {
        Ok((r.text(0)?, r.u64(1)?))
    })?
    .into_iter()
    .collect())
}
