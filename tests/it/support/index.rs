//! The index of a data directory, whichever engine the suite runs on: SQLite's `DIR/index.db`,
//! or, when tests/run.sh sets ATOLL_TEST_INDEX=postgres, a PostgreSQL database of the
//! directory's own on the server tests/services/postgres.sh started (ATOLL_TEST_PG_*). Tests that
//! ask the index something go through `query`, so they check the same thing on both engines.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::content::sha256;

/// True when every atoll the tests start keeps its index in PostgreSQL.
pub fn on_postgres() -> bool {
    std::env::var("ATOLL_TEST_INDEX").as_deref() == Ok("postgres")
}

/// On PostgreSQL, points `cmd` (an atoll) at the data directory's database; on SQLite, leaves
/// it on `index.db` in the directory.
pub fn engine(cmd: &mut Command, dir: &Path) {
    if !on_postgres() {
        return;
    }
    cmd.env(
        "ATOLL_INDEX",
        format!(
            "postgres://atoll@{}:{}/{}",
            var("ATOLL_TEST_PG_HOST"),
            var("ATOLL_TEST_PG_PORT"),
            database(dir)
        ),
    )
    .env("ATOLL_INDEX_PASSWORD", var("ATOLL_TEST_PG_PASSWORD"));
}

/// Runs `sql` (one or more statements, in one transaction) on the index of the registry on
/// `dir`; returns the rows as `psql -At` prints them: a line per row, columns joined by `|`,
/// NULL empty. The SQL must read the same on both engines (the tables and columns are
/// src/index/migrations' on both).
pub fn query(dir: &Path, sql: &str) -> String {
    if on_postgres() {
        psql(&database(dir), &["--single-transaction"], sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    } else {
        sqlite_query(dir, sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }
}

/// The counters of what the registry holds (the `holdings` row the index's triggers keep, read
/// by `/metrics` and the web page) agree with the rows they count.
pub fn assert_holdings_counted(dir: &Path) {
    let row = query(
        dir,
        "SELECT h.repos, (SELECT COUNT(*) FROM repos), h.manifests, \
                (SELECT COUNT(*) FROM manifests), h.tags, (SELECT COUNT(*) FROM tags), \
                h.blobs, (SELECT COUNT(*) FROM blobs), \
                h.blob_bytes, (SELECT COALESCE(SUM(size), 0) FROM blobs) FROM holdings h",
    );
    let v: Vec<&str> = row.split('|').collect();
    for (i, what) in ["repositories", "manifests", "tags", "blobs", "blob bytes"]
        .iter()
        .enumerate()
    {
        assert_eq!(v[2 * i], v[2 * i + 1], "{what} counted / present: {row}");
    }
}

/// The name of `dir`'s database, made first if absent. One per data directory, named from its
/// path as the object store's prefix is: a registry restarted on the directory finds its index
/// again, and no two tests share one.
fn database(dir: &Path) -> String {
    let name = format!(
        "atoll_{}",
        &sha256(dir.to_string_lossy().as_bytes())["sha256:".len()..][..16]
    );
    create_database(&name);
    name
}

/// Makes the database `name` (lower-case letters, digits and `_`) on the test PostgreSQL
/// unless it exists. CREATE DATABASE has no IF NOT EXISTS and cannot run in a transaction, so
/// `\gexec` runs it only when the catalog lacks the name; two processes on one directory
/// (`--gc` beside a server) may still both try it, and "already exists" (42P04, or 23505 when
/// both insert the catalog row at once) means the other made it. None is dropped: tests/run.sh
/// removes the whole PostgreSQL cluster at the end.
pub fn create_database(name: &str) {
    let sql = format!(
        "SELECT 'CREATE DATABASE {name}' WHERE NOT EXISTS \
         (SELECT FROM pg_database WHERE datname = '{name}')\n\\gexec\n"
    );
    match psql("atoll_tests", &["-v", "VERBOSITY=sqlstate"], &sql) {
        Err(e) if !e.contains("42P04") && !e.contains("23505") => {
            panic!("creating the test database {name}: {e}")
        }
        _ => {}
    }
}

/// `query` on the database `name` (a cluster's, which no data directory names).
pub fn query_database(name: &str, sql: &str) -> String {
    psql(name, &["--single-transaction"], sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Runs `sql` from stdin with psql as role atoll over TCP, stopping at the first error;
/// returns stdout, or what psql printed on failure.
fn psql(database: &str, args: &[&str], sql: &str) -> Result<String, String> {
    let bin = std::env::var("ATOLL_TEST_PG_BIN").map_or("psql".into(), |d| format!("{d}/psql"));
    let (host, port) = (var("ATOLL_TEST_PG_HOST"), var("ATOLL_TEST_PG_PORT"));
    let mut child = Command::new(&bin)
        .args(["-X", "-q", "-A", "-t", "-w", "-v", "ON_ERROR_STOP=1"])
        .args([
            "-h", &host, "-p", &port, "-U", "atoll", "-d", database, "-f", "-",
        ])
        .args(args)
        .env("PGPASSWORD", var("ATOLL_TEST_PG_PASSWORD"))
        .env("PGCONNECT_TIMEOUT", "10")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {bin}: {e}"));
    // Closed after the write: psql sees the end of its script.
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(sql.as_bytes()).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!("psql failed ({}): {}", out.status, err.trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .trim_end_matches('\n')
        .to_owned())
}

/// How many of a process's descriptors (`links`: its /proc/PID/fd links, read) are the index's:
/// SQLite's files (`index.db` and its WAL), or its connections to PostgreSQL. Either engine
/// keeps a pool of them open: not a leak.
pub fn descriptors(pid: u32, links: &[String]) -> usize {
    let files = ["/index.db", "/index.db-wal", "/index.db-shm"];
    let sockets = if on_postgres() {
        postgres_sockets(pid)
    } else {
        Vec::new()
    };
    links
        .iter()
        .filter(|l| files.iter().any(|f| l.ends_with(f)) || sockets.contains(l))
        .count()
}

/// `socket:[INODE]` for each of `pid`'s TCP connections to the test PostgreSQL, from its
/// network namespace's socket table (/proc/PID/net/tcp: the remote address is the third
/// column, `HEXIP:HEXPORT`; the inode the tenth).
fn postgres_sockets(pid: u32) -> Vec<String> {
    let port = format!(":{:04X}", var("ATOLL_TEST_PG_PORT").parse::<u16>().unwrap());
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).unwrap_or_default();
    table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.len() > 9 && f[2].ends_with(&port))
        .map(|f| format!("socket:[{}]", f[9]))
        .collect()
}

/// `query` on `DIR/index.db`, beside a server that may be writing it.
fn sqlite_query(dir: &Path, sql: &str) -> rusqlite::Result<String> {
    use rusqlite::fallible_iterator::FallibleIterator;
    use rusqlite::types::ValueRef;
    let mut db = rusqlite::Connection::open_with_flags(
        dir.join("index.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE,
    )?;
    db.busy_timeout(Duration::from_secs(10))?;
    let tx = db.transaction()?;
    let mut lines = Vec::new();
    let mut statements = rusqlite::Batch::new(&tx, sql);
    while let Some(mut s) = statements.next()? {
        let columns = s.column_count();
        let mut rows = s.raw_query();
        while let Some(row) = rows.next()? {
            let text = (0..columns).map(|i| match row.get_ref_unwrap(i) {
                ValueRef::Null => String::new(),
                ValueRef::Integer(v) => v.to_string(),
                ValueRef::Real(v) => v.to_string(),
                ValueRef::Text(t) | ValueRef::Blob(t) => String::from_utf8_lossy(t).into_owned(),
            });
            lines.push(text.collect::<Vec<_>>().join("|"));
        }
    }
    tx.commit()?;
    Ok(lines.join("\n"))
}

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: ATOLL_TEST_INDEX=postgres needs tests/services/postgres.sh")
    })
}
