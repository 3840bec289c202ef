//! What the registry holds, counted for `/metrics`; whether the index answers, for `/readyz`.

use rusqlite::Connection;

use crate::error::Result;

/// What the registry holds, counted when `/metrics` is scraped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Holdings {
    pub repositories: u64,
    pub manifests: u64,
    pub tags: u64,
    pub blobs: u64,
    pub blob_bytes: u64,
}

/// What the registry holds, for `/metrics`.
pub fn holdings(c: &Connection) -> Result<Holdings> {
    Ok(c.query_row(
        "SELECT (SELECT COUNT(*) FROM repos), (SELECT COUNT(*) FROM manifests),
                (SELECT COUNT(*) FROM tags), (SELECT COUNT(*) FROM blobs),
                (SELECT COALESCE(SUM(size), 0) FROM blobs)",
        [],
        |r| {
            Ok(Holdings {
                repositories: r.get::<_, i64>(0)? as u64,
                manifests: r.get::<_, i64>(1)? as u64,
                tags: r.get::<_, i64>(2)? as u64,
                blobs: r.get::<_, i64>(3)? as u64,
                blob_bytes: r.get::<_, i64>(4)? as u64,
            })
        },
    )?)
}

/// One trivial statement: the index answers.
pub fn answers(c: &Connection) -> Result<()> {
    c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?;
    Ok(())
}
