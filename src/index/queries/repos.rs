//! Repositories: ids by name, the catalog, and where a repository's content comes from (pushed
//! here, or cached from an upstream).

use rusqlite::{params, Connection, OptionalExtension};

use super::RepoId;
use crate::error::Result;

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

/// Where a repository's content comes from: `None` if there is no such repository,
/// `Some(None)` if it was pushed here, `Some(Some(upstream))` if it caches that upstream.
pub fn repo_origin(c: &Connection, name: &str) -> Result<Option<Option<String>>> {
    Ok(
        c.prepare_cached("SELECT upstream FROM repos WHERE name = ?1")?
            .query_row([name], |r| r.get(0))
            .optional()?,
    )
}

/// The id of a repository that caches `upstream`, creating it. A local repository of that
/// name is not taken over: `Err` names it.
pub fn ensure_cached_repo(c: &Connection, name: &str, upstream: &str, now: i64) -> Result<RepoId> {
    match repo_origin(c, name)? {
        Some(Some(_)) => Ok(repo_id(c, name)?.expect("exists")),
        Some(None) => Err(crate::error::Error::Unsupported(format!(
            "{name} is a repository pushed here: it is not a cache of {upstream}"
        ))),
        None => {
            c.prepare_cached("INSERT INTO repos (name, created_at, upstream) VALUES (?1, ?2, ?3)")?
                .execute(params![name, now, upstream])?;
            Ok(c.last_insert_rowid())
        }
    }
}

/// The id of a repository pushes may write to, creating it. A cached repository is not:
/// what it holds mirrors its upstream.
pub fn ensure_local_repo(c: &Connection, name: &str, now: i64) -> Result<RepoId> {
    if let Some(Some(upstream)) = repo_origin(c, name)? {
        return Err(crate::error::Error::Unsupported(format!(
            "{name} is a cache of {upstream}: push to another name"
        )));
    }
    ensure_repo(c, name, now)
}
