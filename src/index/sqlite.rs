//! The SQLite engine: one database file, `index.db`, in the data directory (the default).
//!
//! Owns opening it (WAL, `synchronous=FULL` so an acknowledged push survives power loss,
//! foreign keys on), migrations by `user_version`, a pool of reader connections and the single
//! writer, which runs every write in an immediate transaction.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};

use super::{Conn, Fence};
use crate::error::{Error, Result};

/// Migrations, in order; migration i brings `user_version` from i to i+1. Never edit one that
/// has shipped: add the next.
pub(super) const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_schema.sql"),
    include_str!("migrations/0002_gc.sql"),
    include_str!("migrations/0003_doomed_files.sql"),
    include_str!("migrations/0004_doomed_batches.sql"),
    include_str!("migrations/0005_upload_state.sql"),
    include_str!("migrations/0006_cluster.sql"),
    include_str!("migrations/0007_holdings.sql"),
];

/// How long a writer waits for another process (`atoll --gc`, `--import`) holding the lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Idle reader connections kept for reuse.
const MAX_IDLE_READERS: usize = 16;

/// SQLite's page cache, per connection, in KiB. The server's keeps an index's hot pages (the web
/// page's first page of repositories slowed as the index outgrew it); a command-line mode's
/// (`--gc`, `--verify`) reads each page of its scans once or in order, so the server's cache
/// would be memory spent for no time saved (findings.md, "How cost grows, continued").
/// SQLite's own default is the command's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cache {
    Server = 8000,
    Command = 2000,
}

pub struct Sqlite {
    path: PathBuf,
    cache: Cache,
    /// For a read-only index: how readers open it.
    reader_uri: Option<String>,
    /// `None` once closed.
    writer: Mutex<Option<Connection>>,
    readers: Mutex<Vec<Connection>>,
}

impl Sqlite {
    /// Opens (creating if needed) `path` and brings its schema up to date.
    pub fn open(path: &Path, cache: Cache) -> Result<Sqlite> {
        let conn = open_conn(path, false, cache)?;
        migrate(&conn).map_err(|e| with_path(e, path))?;
        Ok(Sqlite {
            path: path.to_path_buf(),
            cache,
            reader_uri: None,
            writer: Mutex::new(Some(conn)),
            readers: Mutex::new(Vec::new()),
        })
    }

    /// Opens an existing index for reading only, changing nothing on disk: with a server
    /// running (a `-wal` file exists) as a plain read-only connection; with none, as an
    /// immutable file, so that SQLite does not even create its `-wal` and `-shm` files.
    pub fn open_read_only(path: &Path) -> Result<Sqlite> {
        let wal = path.with_file_name(format!(
            "{}-wal",
            path.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("index.db")
        ));
        let mode = if wal.exists() {
            "mode=ro"
        } else {
            "immutable=1"
        };
        let uri = format!("file:{}?{mode}", uri_path(path));
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn =
            Connection::open_with_flags(&uri, flags).map_err(|e| with_path(e.into(), path))?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| with_path(e.into(), path))?;
        if version != MIGRATIONS.len() as i64 {
            return Err(Error::Config(format!(
                "{}: index schema version {version}, this atoll expects {}: start the server once to bring it up to date",
                path.display(),
                MIGRATIONS.len()
            )));
        }
        Ok(Sqlite {
            path: path.to_path_buf(),
            cache: Cache::Command,
            reader_uri: Some(uri),
            writer: Mutex::new(Some(conn)),
            readers: Mutex::new(Vec::new()),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn is_closed(&self) -> bool {
        self.writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none()
    }

    /// Runs `f` on a reader connection; several run at once (WAL). `consistent`: in one read
    /// transaction, so that its queries see one moment.
    pub fn read<T>(&self, consistent: bool, f: impl FnOnce(&Conn) -> Result<T>) -> Result<T> {
        if self.is_closed() {
            return Err(super::closed());
        }
        let pooled = self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match (pooled, &self.reader_uri) {
            (Some(c), _) => c,
            (None, None) => open_conn(&self.path, true, self.cache)?,
            (None, Some(uri)) => Connection::open_with_flags(
                uri,
                OpenFlags::SQLITE_OPEN_READ_ONLY
                    | OpenFlags::SQLITE_OPEN_URI
                    | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?,
        };
        let out = if consistent {
            conn.unchecked_transaction()
                .map_err(Error::from)
                .and_then(|tx| f(&Conn::sqlite(&tx)))
        } else {
            f(&Conn::sqlite(&conn))
        };
        let mut pool = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < MAX_IDLE_READERS {
            pool.push(conn);
        }
        out
    }

    /// Runs `f` in an immediate write transaction, committed when `f` returns `Ok`.
    /// Immediate, so the write lock is taken up front and GC and pushes serialise cleanly.
    pub fn write<T>(&self, f: impl FnOnce(&Conn) -> Result<T>) -> Result<T> {
        let mut guard = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let conn = guard.as_mut().ok_or_else(super::closed)?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&Conn::sqlite(&tx))?;
        tx.commit()?;
        Ok(out)
    }

    /// A [`Fence`] at this moment.
    pub fn fence(&self) -> Result<Fence> {
        let guard = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        Fence::new(guard.as_ref().ok_or_else(super::closed)?)
    }

    /// Like [`Sqlite::write`], with SQLite's foreign-key enforcement off for the transaction.
    /// Deleting the 55,000 garbage blob rows of the GC benchmark's store took 1.03 s with
    /// SQLite's per-row checks and cascades, 0.31 s with them off and the links deleted by
    /// hand; `atoll --verify` runs `PRAGMA foreign_key_check`.
    pub fn write_keys_kept<T>(&self, f: impl FnOnce(&Conn) -> Result<T>) -> Result<T> {
        /// Turns enforcement back on when dropped, even by a panic in `f`.
        struct KeysBack<'a>(&'a Connection);
        impl Drop for KeysBack<'_> {
            fn drop(&mut self) {
                if let Err(e) = self.0.pragma_update(None, "foreign_keys", true) {
                    log::error!("index: turning foreign keys back on: {e}");
                }
            }
        }
        let guard = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let conn = guard.as_ref().ok_or_else(super::closed)?;
        // A no-op inside a transaction, so set between them.
        conn.pragma_update(None, "foreign_keys", false)?;
        let _back = KeysBack(conn);
        let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
        let out = f(&Conn::sqlite(&tx))?;
        tx.commit()?;
        Ok(out)
    }

    /// Closes every connection. The last one to close checkpoints the WAL into `index.db` and
    /// removes `-wal` and `-shm`, so an atoll stopped cleanly leaves one file. Later calls fail.
    pub fn close(&self) -> Result<()> {
        self.readers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        let writer = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(conn) = writer {
            conn.close()
                .map_err(|(_, e)| with_path(e.into(), &self.path))?;
        }
        Ok(())
    }

    /// `PRAGMA integrity_check`, then `PRAGMA foreign_key_check`: "ok" or the problems
    /// SQLite found.
    pub fn integrity_check(&self) -> Result<String> {
        self.read(false, |c| {
            let c = c.as_sqlite().expect("an SQLite connection");
            let rows: Vec<String> = c
                .prepare("PRAGMA integrity_check")?
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            if rows != ["ok"] {
                return Ok(rows.join("; "));
            }
            let mut dangling: std::collections::BTreeMap<(String, String), usize> =
                std::collections::BTreeMap::new();
            let mut stmt = c.prepare("PRAGMA foreign_key_check")?;
            let mut q = stmt.query([])?;
            while let Some(r) = q.next()? {
                *dangling.entry((r.get(0)?, r.get(2)?)).or_default() += 1;
            }
            if dangling.is_empty() {
                return Ok("ok".into());
            }
            Ok(dangling
                .iter()
                .map(|((table, parent), n)| {
                    format!("{n} rows of {table} name a missing {parent} row")
                })
                .collect::<Vec<_>>()
                .join("; "))
        })
    }

    /// Whether the writer has foreign keys on (for tests).
    #[cfg(test)]
    pub(super) fn keys_on(&self) -> bool {
        let guard = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        guard
            .as_ref()
            .unwrap()
            .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
            .unwrap()
    }
}

fn open_conn(path: &Path, reader: bool, cache: Cache) -> Result<Connection> {
    let flags = if reader {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags).map_err(|e| with_path(e.into(), path))?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    if !reader {
        // A new, empty index has nothing to lose: it is created (WAL switch, schema) without
        // waiting for fsyncs, which on a slow disk is most of a cold start. `migrate` turns
        // them back on.
        let empty: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
        if empty == 0 {
            conn.pragma_update(None, "synchronous", "OFF")?;
        }
        // WAL lets readers run beside the writer; FULL fsyncs the WAL on every commit, so a
        // manifest acknowledged with 201 survives a power cut, not only a crash.
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::Config(format!(
                "{}: the index needs WAL mode, but SQLite chose {mode}",
                path.display()
            )));
        }
    }
    conn.execute_batch(&format!(
        "PRAGMA foreign_keys=ON; PRAGMA cache_size=-{};",
        cache as i32
    ))?;
    if reader {
        conn.pragma_update(None, "synchronous", "FULL")?;
    }
    conn.set_prepared_statement_cache_capacity(64);
    // rusqlite clears a cached statement's bindings when it hands it out again, and with the
    // planner flags of the bundled SQLite that invalidates the statement: every query was
    // compiled anew (52% of a manifest GET's instructions, measured with callgrind). The
    // query planner stability guarantee keeps the plan, so cached statements stay compiled.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(conn)
}

fn migrate(conn: &Connection) -> Result<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > MIGRATIONS.len() as i64 {
        return Err(Error::Config(format!(
            "index schema version {version} is newer than this atoll understands ({}); \
             run a newer atoll",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    // From here on every commit is durable (see open_conn).
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(())
}

/// A path as the path part of an SQLite `file:` URI.
fn uri_path(path: &Path) -> String {
    let mut out = String::new();
    for b in path.to_string_lossy().bytes() {
        match b {
            b'%' | b'?' | b'#' => out.push_str(&format!("%{b:02X}")),
            _ => out.push(b as char),
        }
    }
    out
}

fn with_path(e: Error, path: &Path) -> Error {
    match e {
        Error::Config(m) => Error::Config(m),
        other => Error::Config(format!("{}: {other}", path.display())),
    }
}
