//! The PostgreSQL engine: the index of several atoll nodes, in a database the site runs
//! (`--index postgres://…`).
//!
//! Owns connecting (a bounded pool of the synchronous `postgres` crate's clients, used on the
//! blocking threads as SQLite's connections are), the schema's migrations (one node at a time,
//! under an advisory lock), and the one rule that keeps every invariant the SQLite engine gives:
//! each write transaction first takes one cluster-wide advisory lock, so writes from all nodes
//! run one at a time, as SQLite's single writer runs them. Reads run beside them, each statement
//! seeing every transaction committed before it.

use std::sync::{Condvar, Mutex};
use std::time::Duration;

use super::conn::PgClient;
use super::Conn;
use crate::error::{Error, Result};

/// Migrations, in order; migration i brings the schema from version i to i+1. Never edit one
/// that has shipped: add the next. (Numbered on their own: the SQLite engine's first five are
/// the first one here.)
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/postgres/0001_schema.sql"),
    include_str!("migrations/postgres/0002_cluster.sql"),
    include_str!("migrations/postgres/0003_holdings.sql"),
];

/// The advisory lock every write transaction takes (`pg_advisory_xact_lock`): one writer at a
/// time across the cluster. Any fixed number; this is "atoll-wr" in ASCII.
const WRITE_LOCK: i64 = 0x61746f6c6c2d7772;
/// Held while one node migrates the schema ("atoll-mg").
const MIGRATE_LOCK: i64 = 0x61746f6c6c2d6d67;

/// Connections open at most: requests beyond it wait for one to come back.
const MAX_CONNECTIONS: usize = 16;
/// How long a request waits for a connection before it is answered 503.
const POOL_WAIT: Duration = Duration::from_secs(30);
/// How long connecting may take before the database counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection idle longer than this is checked (one round trip) before it is used: the
/// server may have restarted meanwhile, which an idle connection does not notice.
const CHECK_AFTER_IDLE: Duration = Duration::from_secs(10);
/// How long that check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Where the index is and how to log in.
#[derive(Clone)]
pub struct PgConfig {
    pub config: postgres::Config,
    /// The URL without its password, for logs and messages.
    pub shown: String,
    pub verify: Verify,
}

impl std::fmt::Debug for PgConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl PgConfig {
    /// Reads `--index URL`; `password` (from `ATOLL_INDEX_PASSWORD` or a file) is used when the
    /// URL has none. Errors say what is wrong with the URL, never repeating a password.
    pub fn parse(url: &str, password: Option<&str>) -> std::result::Result<PgConfig, String> {
        let (url, verify) = verification(url);
        let url = url.as_str();
        let mut config: postgres::Config = url.parse().map_err(|e| {
            format!("not a PostgreSQL URL ({e}): give postgres://USER@HOST[:PORT]/DATABASE")
        })?;
        if !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
            return Err("give postgres://USER@HOST[:PORT]/DATABASE".into());
        }
        if config.get_hosts().is_empty() {
            return Err("no host: give postgres://USER@HOST[:PORT]/DATABASE".into());
        }
        if config.get_user().is_none() {
            return Err("no user: give postgres://USER@HOST[:PORT]/DATABASE".into());
        }
        if config.get_dbname().is_none() {
            return Err("no database: give postgres://USER@HOST[:PORT]/DATABASE".into());
        }
        if let (None, Some(p)) = (config.get_password(), password) {
            config.password(p);
        }
        config
            .connect_timeout(CONNECT_TIMEOUT)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30))
            .application_name("atoll");
        let host = match &config.get_hosts()[0] {
            postgres::config::Host::Tcp(h) => h.clone(),
            postgres::config::Host::Unix(p) => p.display().to_string(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let shown = format!(
            "postgres://{}@{host}:{port}/{}",
            config.get_user().unwrap_or_default(),
            config.get_dbname().unwrap_or_default()
        );
        Ok(PgConfig {
            config,
            shown,
            verify,
        })
    }
}

/// How much of the server's certificate is checked, as libpq's `sslmode` says: `prefer` (the
/// default) and `require` encrypt without checking; `verify-ca` checks the chain against the
/// system's roots (`SSL_CERT_FILE` / `SSL_CERT_DIR` when set); `verify-full` the host name too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verify {
    Nothing,
    Chain,
    ChainAndName,
}

/// The URL as the `postgres` crate reads it (it knows `sslmode` up to `require`: a verifying
/// mode becomes `require`), and how much to verify.
fn verification(url: &str) -> (String, Verify) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), Verify::Nothing);
    };
    let mut verify = Verify::Nothing;
    let params: Vec<String> = query
        .split('&')
        .map(|p| match p {
            "sslmode=verify-ca" => {
                verify = Verify::Chain;
                "sslmode=require".to_owned()
            }
            "sslmode=verify-full" => {
                verify = Verify::ChainAndName;
                "sslmode=require".to_owned()
            }
            other => other.to_owned(),
        })
        .collect();
    (format!("{base}?{}", params.join("&")), verify)
}

struct Pool {
    idle: Vec<PgClient>,
    /// Connections lent out or idle.
    open: usize,
    closed: bool,
}

/// A session advisory lock, held while its connection (its own, outside the pool) is open:
/// released when dropped, and by the server if this process dies.
pub struct SessionLock(#[allow(dead_code)] postgres::Client);

pub struct Postgres {
    config: PgConfig,
    /// TLS when the server offers it (`sslmode=prefer`, the default) or must (`require` and
    /// the verifying modes), through the vendored OpenSSL the rest of atoll uses.
    tls: postgres_native_tls::MakeTlsConnector,
    pool: Mutex<Pool>,
    returned: Condvar,
}

impl Postgres {
    /// Connects, and brings the schema up to date (one node at a time).
    pub fn connect(config: &PgConfig) -> Result<Postgres> {
        let roots = native_tls::TlsConnector::builder()
            .danger_accept_invalid_certs(config.verify == Verify::Nothing)
            .danger_accept_invalid_hostnames(config.verify != Verify::ChainAndName)
            .build()
            .map_err(|e| Error::Config(format!("setting up TLS to the index database: {e}")))?;
        let pg = Postgres {
            config: config.clone(),
            tls: postgres_native_tls::MakeTlsConnector::new(roots),
            pool: Mutex::new(Pool {
                idle: Vec::new(),
                open: 0,
                closed: false,
            }),
            returned: Condvar::new(),
        };
        let mut c = pg.connect_one().map_err(|e| Error::Config(e.to_string()))?;
        migrate(&mut c.client)
            .map_err(|e| Error::Config(format!("the index database {}: {e}", config.shown)))?;
        let mut pool = pg.pool.lock().unwrap_or_else(|p| p.into_inner());
        pool.open += 1;
        pool.idle.push(c);
        drop(pool);
        Ok(pg)
    }

    pub fn describe(&self) -> &str {
        &self.config.shown
    }

    fn connect_one(&self) -> Result<PgClient> {
        let client = self.config.config.connect(self.tls.clone()).map_err(|e| {
            Error::Unavailable(format!(
                "cannot connect to the index database {}: {}",
                self.config.shown,
                crate::error::pg_said(&e)
            ))
        })?;
        Ok(PgClient::new(client))
    }

    /// A connection from the pool, or a new one while fewer than [`MAX_CONNECTIONS`] are open.
    fn take(&self) -> Result<PgClient> {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if pool.closed {
                return Err(super::closed());
            }
            if let Some(mut c) = pool.idle.pop() {
                if c.idle_since.elapsed() < CHECK_AFTER_IDLE && !c.client.is_closed() {
                    return Ok(c);
                }
                drop(pool);
                if c.client.is_valid(CHECK_TIMEOUT).is_ok() {
                    return Ok(c);
                }
                pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
                pool.open -= 1;
                continue;
            }
            if pool.open < MAX_CONNECTIONS {
                pool.open += 1;
                drop(pool);
                return self.connect_one().inspect_err(|_| {
                    self.pool.lock().unwrap_or_else(|p| p.into_inner()).open -= 1;
                    self.returned.notify_one();
                });
            }
            let (next, wait) = self
                .returned
                .wait_timeout(pool, POOL_WAIT)
                .unwrap_or_else(|p| p.into_inner());
            pool = next;
            if wait.timed_out() && pool.idle.is_empty() && pool.open >= MAX_CONNECTIONS {
                return Err(Error::Unavailable(format!(
                    "all {MAX_CONNECTIONS} connections to the index database are busy"
                )));
            }
        }
    }

    /// Gives a connection back. A closed one is dropped instead, with every idle one: they
    /// were opened before the same outage (a server restart), and would each fail a request.
    fn give_back(&self, mut c: PgClient) {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        if c.client.is_closed() || pool.closed {
            let stale = std::mem::take(&mut pool.idle);
            pool.open -= 1 + stale.len();
        } else {
            c.idle_since = std::time::Instant::now();
            pool.idle.push(c);
        }
        drop(pool);
        self.returned.notify_one();
    }

    /// Runs `f` on a connection, each statement its own transaction; `consistent`: in one
    /// repeatable-read transaction, so that its queries see one moment.
    pub fn read<T>(&self, consistent: bool, f: impl FnOnce(&Conn) -> Result<T>) -> Result<T> {
        let mut c = self.take()?;
        let out = if consistent {
            run_in_tx(&mut c, true, f)
        } else {
            f(&Conn::pg_auto(&mut c))
        };
        self.give_back(c);
        out
    }

    /// Runs `f` in a transaction that first takes the cluster's write lock, committed when `f`
    /// returns `Ok`.
    pub fn write<T>(&self, f: impl FnOnce(&Conn) -> Result<T>) -> Result<T> {
        let mut c = self.take()?;
        let out = run_in_tx(&mut c, false, |conn| {
            conn.one(
                "SELECT pg_advisory_xact_lock(?1)",
                crate::args![WRITE_LOCK],
                |_| Ok(()),
            )?;
            f(conn)
        });
        self.give_back(c);
        out
    }

    /// Takes the session advisory lock `key` on a connection of its own; `None` if another
    /// process holds it.
    pub fn try_lock(&self, key: i64) -> Result<Option<SessionLock>> {
        let mut c = self.connect_one()?.client;
        let got: bool = c
            .query_one("SELECT pg_try_advisory_lock($1)", &[&key])?
            .get(0);
        Ok(got.then_some(SessionLock(c)))
    }

    pub fn close(&self) {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        pool.closed = true;
        let idle = std::mem::take(&mut pool.idle);
        pool.open -= idle.len();
        drop(pool);
        for c in idle {
            let _ = c.client.close();
        }
        self.returned.notify_all();
    }
}

/// Runs `f` in a transaction begun with `begin`, committed if `f` returns `Ok`, rolled back
/// otherwise.
fn run_in_tx<T>(c: &mut PgClient, snapshot: bool, f: impl FnOnce(&Conn) -> Result<T>) -> Result<T> {
    let (client, statements) = c.parts();
    let tx = if snapshot {
        client
            .build_transaction()
            .isolation_level(postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()?
    } else {
        client.transaction()?
    };
    let conn = Conn::pg_tx(tx, statements);
    let out = f(&conn)?;
    conn.commit()?;
    Ok(out)
}

fn migrate(client: &mut postgres::Client) -> Result<()> {
    client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATE_LOCK])?;
    let out = (|| -> Result<()> {
        client.batch_execute(
            "CREATE TABLE IF NOT EXISTS atoll_schema (version INTEGER NOT NULL);
             INSERT INTO atoll_schema SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM atoll_schema);",
        )?;
        let version: i32 = client
            .query_one("SELECT version FROM atoll_schema", &[])?
            .get(0);
        if version as usize > MIGRATIONS.len() {
            return Err(Error::Config(format!(
                "index schema version {version} is newer than this atoll understands ({}); \
                 run a newer atoll",
                MIGRATIONS.len()
            )));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let mut tx = client.transaction()?;
            tx.batch_execute(sql)?;
            tx.execute("UPDATE atoll_schema SET version = $1", &[&(i as i32 + 1)])?;
            tx.commit()?;
            log::debug!("index: schema brought to version {}", i + 1);
        }
        Ok(())
    })();
    client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATE_LOCK])?;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verifying_sslmodes_become_require_with_what_to_check() {
        let base = "postgres://atoll@db:5432/atoll";
        assert_eq!(verification(base), (base.to_owned(), Verify::Nothing));
        assert_eq!(
            verification(&format!("{base}?sslmode=require")),
            (format!("{base}?sslmode=require"), Verify::Nothing)
        );
        assert_eq!(
            verification(&format!("{base}?connect_timeout=3&sslmode=verify-ca")),
            (
                format!("{base}?connect_timeout=3&sslmode=require"),
                Verify::Chain
            )
        );
        assert_eq!(
            verification(&format!("{base}?sslmode=verify-full&application_name=x")),
            (
                format!("{base}?sslmode=require&application_name=x"),
                Verify::ChainAndName
            )
        );
        let parsed = PgConfig::parse(&format!("{base}?sslmode=verify-full"), Some("pw")).unwrap();
        assert_eq!(parsed.verify, Verify::ChainAndName);
        assert_eq!(parsed.shown, base, "no password, no query in what is shown");
        assert!(PgConfig::parse(&format!("{base}?sslmode=sometimes"), None).is_err());
    }
}
