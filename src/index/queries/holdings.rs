//! What the registry holds, counted for `/metrics`; whether the index answers, for `/readyz`.

use crate::args;
use crate::error::Result;
use crate::index::Conn;

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
pub fn holdings(c: &Conn) -> Result<Holdings> {
    c.one(
        "SELECT (SELECT COUNT(*) FROM repos), (SELECT COUNT(*) FROM manifests),
                (SELECT COUNT(*) FROM tags), (SELECT COUNT(*) FROM blobs),
                (SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM blobs)",
        args![],
        |r| {
            Ok(Holdings {
                repositories: r.u64(0)?,
                manifests: r.u64(1)?,
                tags: r.u64(2)?,
                blobs: r.u64(3)?,
                blob_bytes: r.u64(4)?,
            })
        },
    )
}

/// One trivial statement: the index answers.
pub fn answers(c: &Conn) -> Result<()> {
    c.one("SELECT 1", args![], |r| r.int(0))?;
    Ok(())
}
