//! Fences: has anything been written to the index since a moment, but by the writes that carry
//! the fence?
//!
//! Garbage collection marks from a snapshot, then deletes in many transactions. Each deletion
//! is checked again against the index as it is then, since a push may have started to use a
//! blob after the mark. If nothing but the collection itself has written since, the mark still
//! describes the index and those checks can be skipped. A fence taken before the snapshot
//! answers that from two counters SQLite keeps for the writer connection: `PRAGMA data_version`,
//! which changes when any other connection (another process) commits, and `total_changes()`,
//! the rows changed through this connection, i.e. by every write of this process.
//!
//! On PostgreSQL other nodes write without this process knowing: a fence there is never intact,
//! and every deletion is checked.

use rusqlite::Connection;

use super::Conn;
use crate::error::Result;

pub struct Fence {
    version: i64,
    changes: u64,
    intact: bool,
}

impl Fence {
    /// A fence at this moment; `conn` is the writer, between transactions.
    pub(super) fn new(conn: &Connection) -> Result<Fence> {
        Ok(Fence {
            version: data_version(conn)?,
            changes: conn.total_changes(),
            intact: true,
        })
    }

    /// A fence that is never intact (an index other processes write to unseen).
    pub(super) fn broken() -> Fence {
        Fence {
            version: 0,
            changes: 0,
            intact: false,
        }
    }

    /// Runs `f` in the write transaction `tx`, which has changed nothing yet, telling it
    /// whether the index is still as it was when the fence was taken, but for the writes of
    /// earlier calls; then counts `f`'s writes as the fence's own. Once something else has
    /// written, the answer stays no (as it does after a transaction that failed).
    pub fn run<T>(&mut self, tx: &Conn, f: impl FnOnce(bool) -> Result<T>) -> Result<T> {
        let Some(tx) = tx.as_sqlite().filter(|_| self.intact) else {
            self.intact = false;
            return f(false);
        };
        self.intact = data_version(tx)? == self.version && tx.total_changes() == self.changes;
        let out = f(self.intact)?;
        self.changes = tx.total_changes();
        Ok(out)
    }
}

impl Fence {
    /// Declares the index changed: every later run is told so.
    pub fn breach(&mut self) {
        self.intact = false;
    }
}

fn data_version(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row("PRAGMA data_version", [], |r| r.get(0))?)
}

#[cfg(test)]
mod tests {
    use super::super::{queries, Index};
    use crate::error::Error;

    fn index() -> (tempfile::TempDir, Index) {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(&dir.path().join("index.db")).unwrap();
        (dir, index)
    }

    /// Whether a fenced write (which inserts a blob row) is told that nothing else wrote.
    fn unchanged(index: &Index, fence: &mut super::Fence, digest: &str) -> bool {
        index
            .write(|tx| {
                fence.run(tx, |unchanged| {
                    queries::insert_blob(tx, digest, 1, 0)?;
                    Ok(unchanged)
                })
            })
            .unwrap()
    }

    #[test]
    fn a_fence_holds_across_its_own_writes() {
        let (_dir, index) = index();
        let mut fence = index.fence().unwrap();
        assert!(unchanged(&index, &mut fence, "sha256:a"));
        assert!(unchanged(&index, &mut fence, "sha256:b"));
    }

    #[test]
    fn a_write_of_this_process_breaks_a_fence_for_good() {
        let (_dir, index) = index();
        let mut fence = index.fence().unwrap();
        index
            .write(|tx| queries::insert_blob(tx, "sha256:x", 1, 0))
            .unwrap();
        assert!(!unchanged(&index, &mut fence, "sha256:a"));
        assert!(!unchanged(&index, &mut fence, "sha256:b"), "stays broken");
    }

    #[test]
    fn a_commit_of_another_process_breaks_a_fence() {
        let (dir, index) = index();
        let mut fence = index.fence().unwrap();
        let other = rusqlite::Connection::open(dir.path().join("index.db")).unwrap();
        other
            .execute("INSERT INTO repos (name, created_at) VALUES ('r', 0)", [])
            .unwrap();
        assert!(!unchanged(&index, &mut fence, "sha256:a"));
    }

    #[test]
    fn a_fenced_write_that_failed_breaks_its_fence() {
        let (_dir, index) = index();
        let mut fence = index.fence().unwrap();
        let failed: crate::error::Result<()> = index.write(|tx| {
            fence.run(tx, |_| {
                queries::insert_blob(tx, "sha256:a", 1, 0)?;
                Err(Error::NotFound("x".into()))
            })
        });
        assert!(failed.is_err());
        assert!(!unchanged(&index, &mut fence, "sha256:b"));
    }

    #[test]
    fn a_write_that_changes_nothing_leaves_a_fence_whole() {
        let (_dir, index) = index();
        index
            .write(|tx| queries::insert_blob(tx, "sha256:a", 1, 0))
            .unwrap();
        let mut fence = index.fence().unwrap();
        // INSERT OR IGNORE of a row that is there: no row changed, nothing to recheck.
        index
            .write(|tx| queries::insert_blob(tx, "sha256:a", 1, 0))
            .unwrap();
        assert!(unchanged(&index, &mut fence, "sha256:b"));
    }
}
