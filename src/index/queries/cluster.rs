//! What the nodes on one shared index agree on: when a periodic job last ran anywhere, and
//! keys they must all hold.

use crate::args;
use crate::error::Result;
use crate::index::Conn;

/// Claims this interval's run of job `name`: true (and the run recorded) if none started in
/// the last `period` seconds, on any node; false if one did.
pub fn claim_job(c: &Conn, name: &str, now: i64, period: i64) -> Result<bool> {
    Ok(c.execute(
        "INSERT INTO job_runs (name, last_run) VALUES (?1, ?2)
         ON CONFLICT (name) DO UPDATE SET last_run = ?2 WHERE job_runs.last_run <= ?2 - ?3",
        args![name, now, period],
    )? > 0)
}

/// The secret `name`: the one stored, or `fresh`, stored now if there was none.
pub fn shared_secret(c: &Conn, name: &str, fresh: &str) -> Result<String> {
    c.execute(
        "INSERT INTO secrets (name, value) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
        args![name, fresh],
    )?;
    c.one(
        "SELECT value FROM secrets WHERE name = ?1",
        args![name],
        |r| r.text(0),
    )
}

/// Takes, or renews, `node`'s lease on fetching blob `digest` from an upstream, until `until`:
/// true if the fetch is this node's (no lease, a lapsed one, or its own already).
pub fn lease_fill(c: &Conn, digest: &str, node: &str, now: i64, until: i64) -> Result<bool> {
    Ok(c.execute(
        "INSERT INTO fill_leases (digest, node, until) VALUES (?1, ?2, ?4)
         ON CONFLICT (digest) DO UPDATE SET node = ?2, until = ?4
           WHERE fill_leases.node = ?2 OR fill_leases.until < ?3",
        args![digest, node, now, until],
    )? > 0)
}

/// Ends `node`'s lease on fetching `digest` (done, or failed: another node may try).
pub fn end_fill_lease(c: &Conn, digest: &str, node: &str) -> Result<()> {
    c.execute(
        "DELETE FROM fill_leases WHERE digest = ?1 AND node = ?2",
        args![digest, node],
    )?;
    Ok(())
}
