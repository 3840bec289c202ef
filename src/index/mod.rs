//! The index: every name and reference the registry holds, in one of two engines behind one
//! interface. SQLite (`sqlite.rs`, the default) keeps it in `index.db` in the data directory;
//! PostgreSQL (`pg.rs`, `--index postgres://…`) keeps it for several nodes at once.
//!
//! Two ways to use it: [`Index::read`], and [`Index::write`], one transaction at a time across
//! every process that writes. Both lend a [`Conn`] to a closure; every call blocks, so callers
//! run it off the executor (`smol::unblock`). The typed queries live in `queries/`, one file a
//! concern, written once for both engines against [`Conn`] (`conn.rs`); nothing else writes
//! SQL.

mod conn;
mod fence;
mod pg;
pub mod queries;
mod sqlite;

use std::path::Path;

pub use conn::{Conn, Dialect, Prepared, Row, Value};
pub use fence::Fence;
pub use pg::{PgConfig, SessionLock};

use crate::error::{Error, Result};

/// Which engine holds the index, as configured (`--index`).
#[derive(Clone, Debug, Default)]
pub enum IndexConfig {
    /// `index.db` in the data directory.
    #[default]
    Sqlite,
    Postgres(Box<PgConfig>),
}

pub struct Index(Engine);

enum Engine {
    Sqlite(sqlite::Sqlite),
    Postgres(pg::Postgres),
}

impl Index {
    /// Opens (creating if needed) the SQLite index at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Index> {
        Ok(Index(Engine::Sqlite(sqlite::Sqlite::open(
            path,
            sqlite::Cache::Server,
        )?)))
    }

    /// The same for a command-line mode, which scans rather than serves: a smaller page cache.
    pub fn open_for_command(path: &Path) -> Result<Index> {
        Ok(Index(Engine::Sqlite(sqlite::Sqlite::open(
            path,
            sqlite::Cache::Command,
        )?)))
    }

    /// Opens an existing SQLite index for reading only, changing nothing on disk.
    pub fn open_read_only(path: &Path) -> Result<Index> {
        Ok(Index(Engine::Sqlite(sqlite::Sqlite::open_read_only(path)?)))
    }

    /// Connects to the PostgreSQL index and brings its schema up to date.
    pub fn connect(config: &PgConfig) -> Result<Index> {
        Ok(Index(Engine::Postgres(pg::Postgres::connect(config)?)))
    }

    /// Where the index is, for logs and the web page.
    pub fn describe(&self) -> String {
        match &self.0 {
            Engine::Sqlite(s) => s.path().display().to_string(),
            Engine::Postgres(p) => p.describe().to_owned(),
        }
    }

    /// True when other processes may write to the index unseen (PostgreSQL, several nodes).
    pub fn is_shared(&self) -> bool {
        matches!(self.0, Engine::Postgres(_))
    }

    /// Takes the cluster-wide lock named `name` (a collection, an eviction) until the value
    /// is dropped, or if this process dies; `None` while another process holds it. Only a
    /// shared index has one: on SQLite, `Unsupported` (a lock file does that job there).
    pub fn try_lock(&self, name: &str) -> Result<Option<SessionLock>> {
        match &self.0 {
            Engine::Sqlite(_) => Err(Error::Unsupported(format!(
                "the lock {name}: an SQLite index has no cluster-wide locks"
            ))),
            Engine::Postgres(p) => p.try_lock(lock_key(name)),
        }
    }

    /// Runs `f` on a connection; each statement sees every write committed before it. Several
    /// reads run at once.
    pub fn read<T>(&self, f: impl FnOnce(&Conn) -> Result<T>) -> Result<T> {
        match &self.0 {
            Engine::Sqlite(s) => s.read(false, f),
            Engine::Postgres(p) => p.read(false, f),
        }
    }

    /// Like [`Index::read`], with every query of `f` seeing the same moment.
    pub fn read_consistent<T>(&self, f: impl FnOnce(&Conn) -> Result<T>) -> Result<T> {
        match &self.0 {
            Engine::Sqlite(s) => s.read(true, f),
            Engine::Postgres(p) => p.read(true, f),
        }
    }

    /// Runs `f` in a write transaction, committed when `f` returns `Ok`. Writes run one at a
    /// time, across processes and nodes too, so GC and pushes serialise cleanly.
    pub fn write<T>(&self, f: impl FnOnce(&Conn) -> Result<T>) -> Result<T> {
        match &self.0 {
            Engine::Sqlite(s) => s.write(f),
            Engine::Postgres(p) => p.write(f),
        }
    }

    /// Like [`Index::write`], for bulk deletions (garbage collection) whose statements keep
    /// every key themselves: on SQLite, its per-row foreign-key checks are off for the
    /// transaction (`sqlite.rs` has the figures).
    pub fn write_keys_kept<T>(&self, f: impl FnOnce(&Conn) -> Result<T>) -> Result<T> {
        match &self.0 {
            Engine::Sqlite(s) => s.write_keys_kept(f),
            Engine::Postgres(p) => p.write(f),
        }
    }

    /// A [`Fence`] at this moment: take it before the snapshot later writes rely on.
    pub fn fence(&self) -> Result<Fence> {
        match &self.0 {
            Engine::Sqlite(s) => s.fence(),
            Engine::Postgres(_) => Ok(Fence::broken()),
        }
    }

    /// Closes every connection (SQLite: the last one checkpoints the WAL into `index.db`).
    /// Later calls fail.
    pub fn close(&self) -> Result<()> {
        match &self.0 {
            Engine::Sqlite(s) => s.close(),
            Engine::Postgres(p) => {
                p.close();
                Ok(())
            }
        }
    }

    /// "ok", or the problems the engine found in the index's own structure. (PostgreSQL
    /// enforces every key as it writes; SQLite's are checked here.)
    pub fn integrity_check(&self) -> Result<String> {
        match &self.0 {
            Engine::Sqlite(s) => s.integrity_check(),
            Engine::Postgres(p) => p.read(false, queries::answers).map(|()| "ok".into()),
        }
    }
}

/// An advisory lock's number: the first 8 bytes of a hash of its name, the same on every node.
fn lock_key(name: &str) -> i64 {
    let h = blake3::hash(format!("atoll lock {name}").as_bytes());
    i64::from_le_bytes(h.as_bytes()[..8].try_into().expect("8 bytes"))
}

fn closed() -> Error {
    Error::Unavailable("the index is closed (atoll is stopping)".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args;

    fn keys_on(index: &Index) -> bool {
        // A panic inside a write poisons the lock; `Index` takes it all the same.
        match &index.0 {
            Engine::Sqlite(s) => s.keys_on(),
            Engine::Postgres(_) => unreachable!(),
        }
    }

    #[test]
    fn files_doomed_before_the_batches_are_still_doomed_after_the_migration() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.db");
        let old = rusqlite::Connection::open(&path).unwrap();
        for sql in &sqlite::MIGRATIONS[..3] {
            old.execute_batch(sql).unwrap();
        }
        old.execute_batch(
            "PRAGMA user_version = 3;
             INSERT INTO doomed_files (digest) VALUES ('sha256:aa'), ('sha256:bb');",
        )
        .unwrap();
        drop(old);
        let index = Index::open(&path).unwrap();
        // bb was published again since: its file stays.
        index
            .write(|tx| queries::insert_blob(tx, "sha256:bb", 1, 0))
            .unwrap();
        let taken = index
            .write(|tx| queries::take_doomed_files(tx, true))
            .unwrap();
        assert_eq!(taken, vec!["sha256:aa".to_string()]);
        let again = index
            .write(|tx| queries::take_doomed_files(tx, true))
            .unwrap();
        assert!(again.is_empty(), "taken once");
    }

    #[test]
    fn holdings_are_counted_from_what_was_there_before_the_migration_and_kept_after() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.db");
        let old = rusqlite::Connection::open(&path).unwrap();
        for sql in &sqlite::MIGRATIONS[..6] {
            old.execute_batch(sql).unwrap();
        }
        old.execute_batch(
            "PRAGMA user_version = 6;
             INSERT INTO repos (id, name, created_at) VALUES (1, 'a', 0), (2, 'b', 0);
             INSERT INTO blobs VALUES ('sha256:m', 10, 0), ('sha256:l', 1000, 0);
             INSERT INTO manifests (repo_id, digest, media_type, size, created_at, accessed_at)
                  VALUES (1, 'sha256:m', 't', 10, 0, 0);
             INSERT INTO tags VALUES (1, 'v1', 'sha256:m', 0), (1, 'v2', 'sha256:m', 0);",
        )
        .unwrap();
        drop(old);
        let index = Index::open(&path).unwrap();
        let counted = |index: &Index| {
            let h = index.read(queries::holdings).unwrap();
            assert_eq!(h, index.read(queries::holdings_counted).unwrap());
            h
        };
        let h = counted(&index);
        assert_eq!((h.repositories, h.manifests, h.tags), (2, 1, 2));
        assert_eq!((h.blobs, h.blob_bytes), (2, 1010));
        // A repository's deletion cascades to its manifest and tags: each is counted out.
        index
            .write(|tx| {
                tx.execute("DELETE FROM repos WHERE id = 1", args![])?;
                tx.execute("DELETE FROM blobs WHERE digest = 'sha256:l'", args![])
            })
            .unwrap();
        let h = counted(&index);
        assert_eq!((h.repositories, h.manifests, h.tags), (1, 0, 0));
        assert_eq!((h.blobs, h.blob_bytes), (1, 10));
    }

    #[test]
    fn foreign_keys_come_back_on_after_a_keys_kept_write_whatever_happens() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(&dir.path().join("index.db")).unwrap();
        assert!(keys_on(&index));
        let inside: bool = index
            .write_keys_kept(|tx| tx.one("PRAGMA foreign_keys", &[], |r| r.bool(0)))
            .unwrap();
        assert!(!inside, "off inside");
        assert!(keys_on(&index), "on after a commit");
        let failed: Result<()> = index.write_keys_kept(|_| Err(Error::NotFound("x".into())));
        assert!(failed.is_err());
        assert!(keys_on(&index), "on after an error");
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            index.write_keys_kept(|_| -> Result<()> { panic!("in the middle") })
        }));
        assert!(panicked.is_err());
        assert!(keys_on(&index), "on after a panic");
    }
}
