//! What the registry holds, counted for `/metrics`; whether the index answers, for `/readyz`.

use crate::args;
use crate::error::Result;
use crate::index::Conn;

/// What the registry holds: repositories, manifests, tags, blobs and their bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Holdings {
    pub repositories: u64,
    pub manifests: u64,
    pub tags: u64,
    pub blobs: u64,
    pub blob_bytes: u64,
}

/// What the registry holds, for `/metrics` and the web page: one row that triggers keep
/// counted (migration 0007), the same cost at any size.
pub fn holdings(c: &Conn) -> Result<Holdings> {
    c.one(
        "SELECT repos, manifests, tags, blobs, blob_bytes FROM holdings",
        args![],
        holdings_row,
    )
}

/// The same counted from the rows themselves, for the tests of the counters.
#[cfg(test)]
pub fn holdings_counted(c: &Conn) -> Result<Holdings> {
    c.one(
        "SELECT (SELECT COUNT(*) FROM repos), (SELECT COUNT(*) FROM manifests),
                (SELECT COUNT(*) FROM tags), (SELECT COUNT(*) FROM blobs),
                (SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM blobs)",
        args![],
        holdings_row,
    )
}

fn holdings_row(r: &crate::index::Row) -> Result<Holdings> {
    Ok(Holdings {
        repositories: r.u64(0)?,
        manifests: r.u64(1)?,
        tags: r.u64(2)?,
        blobs: r.u64(3)?,
        blob_bytes: r.u64(4)?,
    })
}

/// One trivial statement: the index answers.
pub fn answers(c: &Conn) -> Result<()> {
    c.one("SELECT 1", args![], |r| r.int(0))?;
    Ok(())
}
