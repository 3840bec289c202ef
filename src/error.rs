//! The one error type of atoll.
//!
//! Every failure a client can cause or see is a variant here, and its OCI error code and HTTP
//! status are decided in exactly one place ([`Error::code`], [`Error::status`]). `Display` is the
//! human message (it never leaks as the wire body: `http/response.rs` builds the JSON envelope
//! from `code()` and the message). Command-line modes use the same type and print the message.

use std::fmt;
use std::io;
use std::path::Path;

use crate::digest::Digest;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug)]
pub enum Error {
    // ---- The distribution spec's error codes --------------------------------------------------
    /// The blob is not in this repository.
    BlobUnknown(Digest),
    /// An upload request was malformed or could not be applied.
    BlobUploadInvalid(String),
    /// A chunk did not start where the upload ends (416).
    UploadOutOfOrder { offset: u64, message: String },
    /// No upload session with this id in this repository.
    BlobUploadUnknown(String),
    /// Another request is using this upload session right now (409).
    UploadBusy(String),
    /// A delete that would break a manifest of the repository: names what still needs it. 405,
    /// as for deletes that are switched off: the conformance suites accept it where they delete
    /// blobs before the manifests that name them.
    InUse(String),
    /// A digest was malformed, unsupported, or did not match the content.
    DigestInvalid(String),
    /// A manifest names a blob or child manifest this repository does not have.
    ManifestBlobUnknown(Digest),
    /// A manifest body could not be accepted.
    ManifestInvalid(String),
    /// No manifest by that tag or digest in this repository.
    ManifestUnknown(String),
    /// A repository name breaks the grammar.
    NameInvalid(String),
    /// A tag to push breaks the grammar.
    TagInvalid(String),
    /// The repository does not exist here.
    NameUnknown(String),
    /// A size or length did not match the content.
    SizeInvalid(String),
    /// A body is larger than atoll accepts (413).
    TooLarge(String),
    /// A Range header that cannot be served for this blob (416).
    RangeNotSatisfiable { size: u64 },
    /// No credentials, or wrong ones.
    Unauthorized(String),
    /// Authenticated, but not allowed.
    Denied(String),
    /// The operation is not supported or is disabled here (`--read-only`, `--no-delete`).
    Unsupported(String),
    /// The method is not defined for this URL (405).
    MethodNotAllowed(String),
    /// No route matches the URL (404).
    NotFound(String),
    /// A client is over a limit (failed logins, for instance).
    TooManyRequests(String),
    /// A request that is malformed at the HTTP level (bad header, query).
    BadRequest(String),
    /// An upstream registry failed or could not be reached, with no cached copy to fall back on.
    Upstream(String),
    /// The registry cannot serve right now (shutting down, overloaded).
    Unavailable(String),

    // ---- Failures of atoll itself ---------------------------------------------------------------
    /// An I/O failure, with what atoll was doing.
    Io { context: String, source: io::Error },
    /// The SQLite index failed.
    Index(rusqlite::Error),
    /// The PostgreSQL index refused a statement (one that reached it: a database that cannot
    /// be reached is [`Error::Unavailable`]).
    Database(postgres::Error),
    /// Stored data contradicts itself (e.g. an index row whose blob file is missing).
    Corrupt(String),
    /// A configuration problem found at startup: names the file or flag.
    Config(String),
    /// A bundle (import/export) problem: names the entry.
    Bundle(String),
}

impl Error {
    /// The OCI distribution error code for the `{"errors":[{"code": ...}]}` envelope.
    pub fn code(&self) -> &'static str {
        match self {
            Error::BlobUnknown(_) => "BLOB_UNKNOWN",
            Error::BlobUploadInvalid(_) | Error::UploadOutOfOrder { .. } | Error::UploadBusy(_) => {
                "BLOB_UPLOAD_INVALID"
            }
            Error::RangeNotSatisfiable { .. } => "RANGE_INVALID",
            Error::BlobUploadUnknown(_) => "BLOB_UPLOAD_UNKNOWN",
            Error::DigestInvalid(_) => "DIGEST_INVALID",
            Error::ManifestBlobUnknown(_) => "MANIFEST_BLOB_UNKNOWN",
            Error::ManifestInvalid(_) => "MANIFEST_INVALID",
            Error::ManifestUnknown(_) => "MANIFEST_UNKNOWN",
            Error::NameInvalid(_) => "NAME_INVALID",
            Error::TagInvalid(_) => "TAG_INVALID",
            Error::NameUnknown(_) => "NAME_UNKNOWN",
            Error::SizeInvalid(_) | Error::TooLarge(_) => "SIZE_INVALID",
            Error::Unauthorized(_) => "UNAUTHORIZED",
            Error::Denied(_) => "DENIED",
            Error::Unsupported(_)
            | Error::MethodNotAllowed(_)
            | Error::NotFound(_)
            | Error::InUse(_) => "UNSUPPORTED",
            Error::TooManyRequests(_) => "TOOMANYREQUESTS",
            Error::BadRequest(_) => "UNSUPPORTED",
            Error::Upstream(_) | Error::Unavailable(_) => "UNAVAILABLE",
            Error::Io { .. }
            | Error::Index(_)
            | Error::Database(_)
            | Error::Corrupt(_)
            | Error::Config(_)
            | Error::Bundle(_) => "UNKNOWN",
        }
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> u16 {
        match self {
            Error::BlobUnknown(_)
            | Error::BlobUploadUnknown(_)
            | Error::ManifestUnknown(_)
            | Error::NameUnknown(_)
            | Error::NotFound(_) => 404,
            Error::BlobUploadInvalid(_)
            | Error::DigestInvalid(_)
            | Error::ManifestBlobUnknown(_)
            | Error::ManifestInvalid(_)
            | Error::NameInvalid(_)
            | Error::TagInvalid(_)
            | Error::SizeInvalid(_)
            | Error::BadRequest(_) => 400,
            Error::UploadOutOfOrder { .. } | Error::RangeNotSatisfiable { .. } => 416,
            Error::TooLarge(_) => 413,
            Error::UploadBusy(_) => 409,
            Error::Unauthorized(_) => 401,
            Error::Denied(_) => 403,
            Error::Unsupported(_) | Error::MethodNotAllowed(_) | Error::InUse(_) => 405,
            Error::TooManyRequests(_) => 429,
            Error::Upstream(_) => 502,
            Error::Unavailable(_) => 503,
            Error::Io { source, .. } if is_disk_full(source) => 507,
            Error::Index(e) if is_index_full(e) => 507,
            Error::Io { .. }
            | Error::Index(_)
            | Error::Database(_)
            | Error::Corrupt(_)
            | Error::Config(_)
            | Error::Bundle(_) => 500,
        }
    }

    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// Wraps an I/O error with the path it happened on: `"<doing> <path>"`.
    pub fn io_at(doing: &str, path: &Path, source: io::Error) -> Error {
        Error::io(format!("{doing} {}", path.display()), source)
    }

    /// True for errors caused by the request (4xx), which are logged at debug, not as failures.
    pub fn is_client_error(&self) -> bool {
        self.status() < 500
    }
}

fn is_disk_full(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::StorageFull || e.kind() == io::ErrorKind::QuotaExceeded
}

/// SQLite says `SQLITE_FULL` when its journal or database cannot grow.
fn is_index_full(e: &rusqlite::Error) -> bool {
    e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull)
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BlobUnknown(d) => write!(f, "blob {d} is not known to this repository"),
            Error::BlobUploadUnknown(id) => write!(
                f,
                "upload {id} is not known (finished, cancelled or expired)"
            ),
            Error::ManifestBlobUnknown(d) => {
                write!(
                    f,
                    "manifest references {d}, which this repository does not have: push it first"
                )
            }
            Error::ManifestUnknown(r) => write!(f, "manifest {r} is not known to this repository"),
            Error::NameUnknown(n) => write!(f, "repository {n} is not known to this registry"),
            Error::RangeNotSatisfiable { size } => {
                write!(
                    f,
                    "requested range is not satisfiable for a blob of {size} bytes"
                )
            }
            Error::UploadOutOfOrder { message, .. } => f.write_str(message),
            Error::Io { context, source } if is_disk_full(source) => {
                write!(f, "disk full: {context}: {source}")
            }
            Error::Io { context, source } => write!(f, "{context}: {source}"),
            Error::Index(e) if is_index_full(e) => write!(f, "disk full: index database: {e}"),
            Error::Index(e) => write!(f, "index database: {e}"),
            Error::Database(e) => write!(f, "index database (PostgreSQL): {}", pg_said(e)),
            Error::BlobUploadInvalid(m)
            | Error::UploadBusy(m)
            | Error::InUse(m)
            | Error::DigestInvalid(m)
            | Error::ManifestInvalid(m)
            | Error::NameInvalid(m)
            | Error::TagInvalid(m)
            | Error::SizeInvalid(m)
            | Error::TooLarge(m)
            | Error::Unauthorized(m)
            | Error::Denied(m)
            | Error::Unsupported(m)
            | Error::MethodNotAllowed(m)
            | Error::NotFound(m)
            | Error::TooManyRequests(m)
            | Error::BadRequest(m)
            | Error::Upstream(m)
            | Error::Unavailable(m)
            | Error::Corrupt(m)
            | Error::Config(m)
            | Error::Bundle(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Index(e) => Some(e),
            Error::Database(e) => Some(e),
            _ => None,
        }
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Index(e)
    }
}

/// A database that went away, restarts, is overloaded or lost a race that a retry wins is
/// unavailable (503: the client retries); anything else it said is atoll's own failure.
impl From<postgres::Error> for Error {
    fn from(e: postgres::Error) -> Self {
        let unavailable = match e.code() {
            // 08 connection, 53 resources, 57 operator intervention (shutdown, restart),
            // 40 serialization failure or deadlock.
            Some(code) => matches!(&code.code()[..2], "08" | "53" | "57" | "40"),
            // Lost the connection, or never had one.
            None => e.is_closed() || is_io(&e),
        };
        if unavailable {
            Error::Unavailable(format!(
                "the index database is unavailable: {}",
                pg_said(&e)
            ))
        } else {
            Error::Database(e)
        }
    }
}

/// What PostgreSQL, or the connection to it, said: the server's own message for a refused
/// login or statement (the error's own text is only "db error"), else the error with its cause.
pub fn pg_said(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} (SQLSTATE {})", db.message(), db.code().code());
    }
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

fn is_io(e: &postgres::Error) -> bool {
    std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
}

/// Adds "which file" to I/O results: `fs::read(&p).at("reading", &p)?`.
pub trait IoContext<T> {
    fn at(self, doing: &str, path: &Path) -> Result<T>;
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, doing: &str, path: &Path) -> Result<T> {
        self.map_err(|e| Error::io_at(doing, path, e))
    }

    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::io(context(), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_statuses_follow_the_spec() {
        let d = Digest::sha256_of(b"");
        let cases: Vec<(Error, &str, u16)> = vec![
            (Error::BlobUnknown(d.clone()), "BLOB_UNKNOWN", 404),
            (
                Error::BlobUploadInvalid("x".into()),
                "BLOB_UPLOAD_INVALID",
                400,
            ),
            (
                Error::UploadOutOfOrder {
                    offset: 3,
                    message: "x".into(),
                },
                "BLOB_UPLOAD_INVALID",
                416,
            ),
            (
                Error::BlobUploadUnknown("x".into()),
                "BLOB_UPLOAD_UNKNOWN",
                404,
            ),
            (Error::DigestInvalid("x".into()), "DIGEST_INVALID", 400),
            (Error::ManifestBlobUnknown(d), "MANIFEST_BLOB_UNKNOWN", 400),
            (Error::ManifestInvalid("x".into()), "MANIFEST_INVALID", 400),
            (Error::ManifestUnknown("x".into()), "MANIFEST_UNKNOWN", 404),
            (Error::NameInvalid("x".into()), "NAME_INVALID", 400),
            (Error::NameUnknown("x".into()), "NAME_UNKNOWN", 404),
            (Error::SizeInvalid("x".into()), "SIZE_INVALID", 400),
            (Error::TooLarge("x".into()), "SIZE_INVALID", 413),
            (Error::Unauthorized("x".into()), "UNAUTHORIZED", 401),
            (Error::Denied("x".into()), "DENIED", 403),
            (Error::Unsupported("x".into()), "UNSUPPORTED", 405),
            (Error::TooManyRequests("x".into()), "TOOMANYREQUESTS", 429),
        ];
        for (e, code, status) in cases {
            assert_eq!((e.code(), e.status()), (code, status), "{e:?}");
        }
    }

    #[test]
    fn a_full_disk_is_507_and_says_so() {
        let e = Error::io(
            "writing upload",
            io::Error::from(io::ErrorKind::StorageFull),
        );
        assert_eq!(e.status(), 507);
        assert!(
            e.to_string().starts_with("disk full: writing upload"),
            "{e}"
        );
        let full = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
            None,
        );
        let e = Error::from(full);
        assert_eq!(e.status(), 507);
        assert!(
            e.to_string().starts_with("disk full: index database"),
            "{e}"
        );
    }
}
