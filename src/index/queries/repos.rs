//! Repositories: ids by name, the catalog, and where a repository's content comes from (pushed
//! here, or cached from an upstream).

use super::RepoId;
use crate::args;
use crate::error::Result;
use crate::index::Conn;

pub fn repo_id(c: &Conn, name: &str) -> Result<Option<RepoId>> {
    c.row("SELECT id FROM repos WHERE name = ?1", args![name], |r| {
        r.int(0)
    })
}

pub fn ensure_repo(c: &Conn, name: &str, now: i64) -> Result<RepoId> {
    if let Some(id) = repo_id(c, name)? {
        return Ok(id);
    }
    c.one(
        "INSERT INTO repos (name, created_at) VALUES (?1, ?2) RETURNING id",
        args![name, now],
        |r| r.int(0),
    )
}

/// Repository names after `last`, in order, that hold at least one manifest.
pub fn catalog(c: &Conn, last: Option<&str>, limit: u32) -> Result<Vec<String>> {
    c.rows(
        "SELECT name FROM repos r WHERE name > ?1
           AND EXISTS (SELECT 1 FROM manifests m WHERE m.repo_id = r.id)
         ORDER BY name LIMIT ?2",
        args![last.unwrap_or(""), limit],
        |r| r.text(0),
    )
}

/// Where a repository's content comes from: `None` if there is no such repository,
/// `Some(None)` if it was pushed here, `Some(Some(upstream))` if it caches that upstream.
pub fn repo_origin(c: &Conn, name: &str) -> Result<Option<Option<String>>> {
    c.row(
        "SELECT upstream FROM repos WHERE name = ?1",
        args![name],
        |r| r.opt_text(0),
    )
}

/// The id of a repository that caches `upstream`, creating it. A local repository of that
/// name is not taken over: `Err` names it.
pub fn ensure_cached_repo(c: &Conn, name: &str, upstream: &str, now: i64) -> Result<RepoId> {
    match repo_origin(c, name)? {
        Some(Some(_)) => Ok(repo_id(c, name)?.expect("exists")),
        Some(None) => Err(crate::error::Error::Unsupported(format!(
            "{name} is a repository pushed here: it is not a cache of {upstream}"
        ))),
        None => c.one(
            "INSERT INTO repos (name, created_at, upstream) VALUES (?1, ?2, ?3) RETURNING id",
            args![name, now, upstream],
            |r| r.int(0),
        ),
    }
}

/// The id of a repository pushes may write to, creating it. A cached repository is not:
/// what it holds mirrors its upstream.
pub fn ensure_local_repo(c: &Conn, name: &str, now: i64) -> Result<RepoId> {
    if let Some(Some(upstream)) = repo_origin(c, name)? {
        return Err(crate::error::Error::Unsupported(format!(
            "{name} is a cache of {upstream}: push to another name"
        )));
    }
    ensure_repo(c, name, now)
}
