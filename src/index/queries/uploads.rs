//! Upload sessions' rows (their bytes are the upload module's business).

use rusqlite::{params, Connection, OptionalExtension};

use super::RepoId;
use crate::error::Result;

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
