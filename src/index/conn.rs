//! One connection to the index, whichever engine holds it: the interface every query in
//! `queries/` is written against, once.
//!
//! SQL is written in SQLite's spelling with numbered parameters (`?1`); on PostgreSQL they
//! become `$1` when the statement is first prepared on a connection. Where the two dialects
//! differ, a query says so with [`Conn::dialect`] and gives both texts side by side. Parameters
//! are [`Value`]s, results are read by column number through [`Row`]. Statements are prepared
//! once per connection and cached, on both engines.

use std::cell::RefCell;
use std::collections::HashMap;

use bytes::BytesMut;
use postgres::types::{to_sql_checked, IsNull, ToSql, Type};

use crate::error::{Error, Result};

/// Which SQL a query must speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// A statement parameter.
#[derive(Clone, Copy, Debug)]
pub enum Value<'a> {
    Int(i64),
    Text(&'a str),
    /// Text that may be NULL.
    OptText(Option<&'a str>),
    Bool(bool),
}

impl From<i64> for Value<'_> {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}

impl From<i32> for Value<'_> {
    fn from(v: i32) -> Self {
        Value::Int(v.into())
    }
}

impl From<u32> for Value<'_> {
    fn from(v: u32) -> Self {
        Value::Int(v.into())
    }
}

/// Sizes are stored as signed 64-bit integers (neither engine has an unsigned one); no blob
/// comes near 2^63 bytes.
impl From<u64> for Value<'_> {
    fn from(v: u64) -> Self {
        Value::Int(v as i64)
    }
}

impl From<bool> for Value<'_> {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(v: &'a str) -> Self {
        Value::Text(v)
    }
}

impl<'a> From<&'a String> for Value<'a> {
    fn from(v: &'a String) -> Self {
        Value::Text(v)
    }
}

impl<'a> From<Option<&'a str>> for Value<'a> {
    fn from(v: Option<&'a str>) -> Self {
        Value::OptText(v)
    }
}

/// `args![a, b]`: a statement's parameters, each converted to a [`Value`].
#[macro_export]
macro_rules! args {
    ($($v:expr),* $(,)?) => { &[$($crate::index::Value::from($v)),*][..] };
}

impl rusqlite::ToSql for Value<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(match *self {
            Value::Int(i) => ToSqlOutput::Borrowed(ValueRef::Integer(i)),
            Value::Text(s) | Value::OptText(Some(s)) => {
                ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes()))
            }
            Value::OptText(None) => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Bool(b) => ToSqlOutput::Borrowed(ValueRef::Integer(b.into())),
        })
    }
}

/// PostgreSQL infers each parameter's type from the statement; an integer goes as whichever
/// width it inferred (a literal `0` makes a column `int4`).
impl ToSql for Value<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match *self {
            Value::Int(i) if *ty == Type::INT4 => i32::try_from(i)?.to_sql(ty, out),
            Value::Int(i) if *ty == Type::INT2 => i16::try_from(i)?.to_sql(ty, out),
            Value::Int(i) if <i64 as ToSql>::accepts(ty) => i.to_sql(ty, out),
            Value::Text(s) | Value::OptText(Some(s)) if <&str as ToSql>::accepts(ty) => {
                s.to_sql(ty, out)
            }
            Value::OptText(None) => Ok(IsNull::Yes),
            Value::Bool(b) if <bool as ToSql>::accepts(ty) => b.to_sql(ty, out),
            v => Err(format!("{v:?} given for a parameter of type {ty}").into()),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// A result row, read by column number.
pub enum Row<'r> {
    Lite(&'r rusqlite::Row<'r>),
    Pg(&'r postgres::Row),
}

impl<'r> Row<'r> {
    pub fn int(&self, i: usize) -> Result<i64> {
        self.opt_int(i)?
            .ok_or_else(|| Error::Corrupt(format!("index: NULL in column {i}, which has none")))
    }

    /// A size or a count.
    pub fn u64(&self, i: usize) -> Result<u64> {
        Ok(self.int(i)? as u64)
    }

    pub fn opt_int(&self, i: usize) -> Result<Option<i64>> {
        match self {
            Row::Lite(r) => Ok(r.get(i)?),
            Row::Pg(r) => {
                let ty = r.columns()[i].type_();
                Ok(if *ty == Type::INT4 {
                    r.try_get::<_, Option<i32>>(i)?.map(i64::from)
                } else if *ty == Type::INT2 {
                    r.try_get::<_, Option<i16>>(i)?.map(i64::from)
                } else if *ty == Type::BOOL {
                    r.try_get::<_, Option<bool>>(i)?.map(i64::from)
                } else {
                    r.try_get(i)?
                })
            }
        }
    }

    /// A truth: SQLite answers 0 or 1, PostgreSQL a boolean.
    pub fn bool(&self, i: usize) -> Result<bool> {
        match self {
            Row::Lite(r) => Ok(r.get(i)?),
            Row::Pg(r) if *r.columns()[i].type_() == Type::BOOL => Ok(r.try_get(i)?),
            _ => Ok(self.int(i)? != 0),
        }
    }

    /// Text, borrowed from the row.
    pub fn str(&self, i: usize) -> Result<&'r str> {
        match self {
            Row::Lite(r) => Ok(r.get_ref(i)?.as_str().map_err(rusqlite::Error::from)?),
            Row::Pg(r) => Ok(r.try_get(i)?),
        }
    }

    pub fn text(&self, i: usize) -> Result<String> {
        self.str(i).map(str::to_owned)
    }

    pub fn opt_text(&self, i: usize) -> Result<Option<String>> {
        match self {
            Row::Lite(r) => Ok(r.get(i)?),
            Row::Pg(r) => Ok(r.try_get(i)?),
        }
    }
}

/// A PostgreSQL connection with its prepared statements, keyed by the SQLite-spelt text.
pub struct PgClient {
    pub(super) client: postgres::Client,
    statements: HashMap<String, postgres::Statement>,
    /// When it was last given back to its pool.
    pub(super) idle_since: std::time::Instant,
}

impl PgClient {
    pub(super) fn new(client: postgres::Client) -> PgClient {
        PgClient {
            client,
            statements: HashMap::new(),
            idle_since: std::time::Instant::now(),
        }
    }

    /// The connection and its statements, borrowed apart (a transaction borrows the first).
    pub(super) fn parts(
        &mut self,
    ) -> (
        &mut postgres::Client,
        &mut HashMap<String, postgres::Statement>,
    ) {
        (&mut self.client, &mut self.statements)
    }
}

/// What a PostgreSQL [`Conn`] runs its statements on: the connection itself (each statement
/// its own transaction) or a transaction on it.
enum PgOn<'c> {
    Auto(&'c mut postgres::Client),
    Tx(postgres::Transaction<'c>),
}

struct Pg<'c> {
    on: PgOn<'c>,
    statements: &'c mut HashMap<String, postgres::Statement>,
}

impl Pg<'_> {
    fn statement(&mut self, sql: &str) -> Result<postgres::Statement> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let text = numbered_params(sql);
        let s = match &mut self.on {
            PgOn::Auto(c) => c.prepare(&text)?,
            PgOn::Tx(t) => t.prepare(&text)?,
        };
        self.statements.insert(sql.to_owned(), s.clone());
        Ok(s)
    }

    fn query(&mut self, sql: &str, args: &[Value]) -> Result<Vec<postgres::Row>> {
        let s = self.statement(sql)?;
        let params: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| a as _).collect();
        Ok(match &mut self.on {
            PgOn::Auto(c) => c.query(&s, &params)?,
            PgOn::Tx(t) => t.query(&s, &params)?,
        })
    }

    fn execute(&mut self, sql: &str, args: &[Value]) -> Result<u64> {
        let s = self.statement(sql)?;
        let params: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| a as _).collect();
        Ok(match &mut self.on {
            PgOn::Auto(c) => c.execute(&s, &params)?,
            PgOn::Tx(t) => t.execute(&s, &params)?,
        })
    }

    fn batch(&mut self, sql: &str) -> Result<()> {
        match &mut self.on {
            PgOn::Auto(c) => c.batch_execute(sql)?,
            PgOn::Tx(t) => t.batch_execute(sql)?,
        }
        Ok(())
    }
}

enum Inner<'c> {
    Lite(&'c rusqlite::Connection),
    Pg(RefCell<Pg<'c>>),
}

/// A connection (or a transaction) on the index, lent to a closure by `Index::read` or
/// `Index::write`.
pub struct Conn<'c>(Inner<'c>);

impl<'c> Conn<'c> {
    pub(super) fn sqlite(c: &'c rusqlite::Connection) -> Conn<'c> {
        Conn(Inner::Lite(c))
    }

    /// Statements on `c` as they come, each its own transaction.
    pub(super) fn pg_auto(c: &'c mut PgClient) -> Conn<'c> {
        Conn(Inner::Pg(RefCell::new(Pg {
            on: PgOn::Auto(&mut c.client),
            statements: &mut c.statements,
        })))
    }

    /// Statements in `tx`, a transaction begun on `statements`' connection.
    pub(super) fn pg_tx(
        tx: postgres::Transaction<'c>,
        statements: &'c mut HashMap<String, postgres::Statement>,
    ) -> Conn<'c> {
        Conn(Inner::Pg(RefCell::new(Pg {
            on: PgOn::Tx(tx),
            statements,
        })))
    }

    /// Commits the PostgreSQL transaction this was made with by [`Conn::pg_tx`].
    pub(super) fn commit(self) -> Result<()> {
        if let Inner::Pg(pg) = self.0 {
            if let PgOn::Tx(tx) = pg.into_inner().on {
                tx.commit()?;
            }
        }
        Ok(())
    }

    pub fn dialect(&self) -> Dialect {
        match self.0 {
            Inner::Lite(_) => Dialect::Sqlite,
            Inner::Pg(_) => Dialect::Postgres,
        }
    }

    /// The SQLite connection, for what only SQLite has (pragmas, its fence): `None` on
    /// PostgreSQL.
    pub(super) fn as_sqlite(&self) -> Option<&'c rusqlite::Connection> {
        match self.0 {
            Inner::Lite(c) => Some(c),
            Inner::Pg(_) => None,
        }
    }

    /// Runs a statement; the number of rows it changed.
    pub fn execute(&self, sql: &str, args: &[Value]) -> Result<u64> {
        match &self.0 {
            Inner::Lite(c) => Ok(c.prepare_cached(sql)?.execute(args_lite(args))? as u64),
            Inner::Pg(pg) => pg.borrow_mut().execute(sql, args),
        }
    }

    /// Runs several statements without parameters (a migration, a test's fixtures).
    pub fn batch(&self, sql: &str) -> Result<()> {
        match &self.0 {
            Inner::Lite(c) => Ok(c.execute_batch(sql)?),
            Inner::Pg(pg) => pg.borrow_mut().batch(sql),
        }
    }

    /// Calls `f` on each row, in order.
    pub fn each(
        &self,
        sql: &str,
        args: &[Value],
        mut f: impl FnMut(&Row) -> Result<()>,
    ) -> Result<()> {
        match &self.0 {
            Inner::Lite(c) => {
                let mut stmt = c.prepare_cached(sql)?;
                let mut rows = stmt.query(args_lite(args))?;
                while let Some(r) = rows.next()? {
                    f(&Row::Lite(r))?;
                }
                Ok(())
            }
            Inner::Pg(pg) => {
                let rows = pg.borrow_mut().query(sql, args)?;
                for r in &rows {
                    f(&Row::Pg(r))?;
                }
                Ok(())
            }
        }
    }

    /// Every row, each turned into a `T` by `f`.
    pub fn rows<T>(
        &self,
        sql: &str,
        args: &[Value],
        mut f: impl FnMut(&Row) -> Result<T>,
    ) -> Result<Vec<T>> {
        let mut out = Vec::new();
        self.each(sql, args, |r| {
            out.push(f(r)?);
            Ok(())
        })?;
        Ok(out)
    }

    /// The first row, if any, turned into a `T` by `f`.
    pub fn row<T>(
        &self,
        sql: &str,
        args: &[Value],
        f: impl FnOnce(&Row) -> Result<T>,
    ) -> Result<Option<T>> {
        match &self.0 {
            Inner::Lite(c) => {
                let mut stmt = c.prepare_cached(sql)?;
                let mut rows = stmt.query(args_lite(args))?;
                match rows.next()? {
                    Some(r) => Ok(Some(f(&Row::Lite(r))?)),
                    None => Ok(None),
                }
            }
            Inner::Pg(pg) => {
                let rows = pg.borrow_mut().query(sql, args)?;
                rows.first().map(|r| f(&Row::Pg(r))).transpose()
            }
        }
    }

    /// The one row a statement answers with (an aggregate, `SELECT EXISTS`).
    pub fn one<T>(
        &self,
        sql: &str,
        args: &[Value],
        f: impl FnOnce(&Row) -> Result<T>,
    ) -> Result<T> {
        self.row(sql, args, f)?
            .ok_or_else(|| Error::Corrupt(format!("index: no row from {sql}")))
    }

    /// A statement prepared once for many runs (garbage collection's sweep).
    pub fn prepare(&self, sql: &'static str) -> Result<Prepared<'c>> {
        match &self.0 {
            Inner::Lite(c) => Ok(Prepared::Lite(c.prepare_cached(sql)?)),
            Inner::Pg(pg) => {
                pg.borrow_mut().statement(sql)?;
                Ok(Prepared::Pg(sql))
            }
        }
    }
}

/// A statement kept prepared (see [`Conn::prepare`]); run it on the connection it came from.
pub enum Prepared<'c> {
    Lite(rusqlite::CachedStatement<'c>),
    /// PostgreSQL's statements are kept by the connection: this is the key.
    Pg(&'static str),
}

impl Prepared<'_> {
    pub fn execute(&mut self, c: &Conn, args: &[Value]) -> Result<u64> {
        match self {
            Prepared::Lite(s) => Ok(s.execute(args_lite(args))? as u64),
            Prepared::Pg(sql) => c.execute(sql, args),
        }
    }
}

fn args_lite<'a>(args: &'a [Value<'a>]) -> impl rusqlite::Params + 'a {
    rusqlite::params_from_iter(args.iter())
}

/// `?1` as `$1`, outside quoted text: SQLite's numbered parameters in PostgreSQL's spelling.
fn numbered_params(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quoted = false;
    let mut chars = sql.chars().peekable();
    while let Some(ch) = chars.next() {
        if ch == '\'' {
            quoted = !quoted;
        }
        if ch == '?' && !quoted && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('$');
        } else {
            out.push(ch);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_parameters_become_dollars_outside_quotes_only() {
        assert_eq!(
            numbered_params("SELECT ?1, '?2', x FROM t WHERE a = ?12 AND b LIKE '?' || ?3"),
            "SELECT $1, '?2', x FROM t WHERE a = $12 AND b LIKE '?' || $3"
        );
    }
}
