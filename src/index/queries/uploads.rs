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

/// The state an upload into the object store saved (`None`: none yet, or a disk upload).
pub fn upload_state(c: &Connection, id: &str) -> Result<Option<String>> {
    Ok(c.prepare_cached("SELECT state FROM uploads WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?
        .flatten())
}

/// Saves an upload's state; false if the upload has no row (any more).
pub fn save_upload_state(c: &Connection, id: &str, state: &str) -> Result<bool> {
    Ok(
        c.prepare_cached("UPDATE uploads SET state = ?2 WHERE id = ?1")?
            .execute(params![id, state])?
            > 0,
    )
}

pub fn delete_upload(c: &Connection, id: &str) -> Result<bool> {
    Ok(c.prepare_cached("DELETE FROM uploads WHERE id = ?1")?
        .execute([id])?
        > 0)
}

/// All upload ids with their start time and saved state.
pub fn uploads(c: &Connection) -> Result<Vec<(String, i64, Option<String>)>> {
    let mut stmt = c.prepare_cached("SELECT id, created_at, state FROM uploads")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
