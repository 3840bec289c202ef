//! Upload sessions' rows (their bytes are the upload module's business).

use super::RepoId;
use crate::args;
use crate::error::Result;
use crate::index::Conn;

pub fn insert_upload(c: &Conn, id: &str, repo: RepoId, now: i64) -> Result<()> {
    c.execute(
        "INSERT INTO uploads (id, repo_id, created_at) VALUES (?1, ?2, ?3)",
        args![id, repo, now],
    )?;
    Ok(())
}

/// The repository an upload belongs to.
pub fn upload_repo(c: &Conn, id: &str) -> Result<Option<RepoId>> {
    c.row(
        "SELECT repo_id FROM uploads WHERE id = ?1",
        args![id],
        |r| r.int(0),
    )
}

/// The state an upload into the object store saved (`None`: none yet, or a disk upload).
pub fn upload_state(c: &Conn, id: &str) -> Result<Option<String>> {
    Ok(
        c.row("SELECT state FROM uploads WHERE id = ?1", args![id], |r| {
            r.opt_text(0)
        })?
        .flatten(),
    )
}

/// Saves an upload's state if its row holds `base` (or nothing yet: no request has saved one);
/// false if the upload has no row (any more) or another state.
pub fn save_upload_state(c: &Conn, id: &str, base: &str, state: &str) -> Result<bool> {
    Ok(c.execute(
        "UPDATE uploads SET state = ?2 WHERE id = ?1 AND (state IS NULL OR state = ?3)",
        args![id, state, base],
    )? > 0)
}

pub fn delete_upload(c: &Conn, id: &str) -> Result<bool> {
    Ok(c.execute("DELETE FROM uploads WHERE id = ?1", args![id])? > 0)
}

/// All upload ids with their start time and saved state.
pub fn uploads(c: &Conn) -> Result<Vec<(String, i64, Option<String>)>> {
    c.rows("SELECT id, created_at, state FROM uploads", args![], |r| {
        Ok((r.text(0)?, r.int(1)?, r.opt_text(2)?))
    })
}
