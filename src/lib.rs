//! atoll: a container image registry (OCI distribution / Docker registry API v2) in one static
//! binary, for edge sites and air-gapped networks.
//!
//! How the crate is laid out (pure modules do no I/O and know no async runtime; the HTTP layer
//! knows no SQL; only `registry` makes the store and the index act together):
//!
//! ```text
//! cli         raw command-line flags (argh)
//! assets      files the binary carries (systemd units, settings template)
//! config      validated configuration: flags, else ATOLL_* variables, else defaults (pure)
//! console     lines and terminal progress for the command-line modes
//! serve       `atoll` with no mode: open, bind, serve until a signal (the composition root)
//! jobs        the server's periodic jobs and signals; `atoll --gc` from the command line
//! error       the one Error type: OCI code, HTTP status, message
//! auth        logins (htpasswd bcrypt, env user), Bearer tokens, access rule, login throttling
//! tls         PEM certificate checks; the generated, name-constrained CA and server certificate
//! digest      sha256/sha512 digests and the streaming hasher (pure)
//! reference   repository names, tags, references (pure)
//! manifest    manifest and index parsing and validation (pure)
//! range       Range / Content-Range parsing (pure)
//! clock       Unix-seconds time; policy takes `now` as a value
//! units       sizes, durations and switches as typed; byte counts as read (pure)
//! ids         unguessable ids (BLAKE3 keyed PRF)
//! metrics     counters and the /metrics exposition (pure rendering)
//! notify      systemd readiness, stopping and watchdog notifications
//! pagebuf     page-aligned buffers for the large copies between files and sockets
//! shutdown    the shared stop signal
//! background  periodic jobs with a shutdown signal
//! store       blobs, committed crash-safe, behind one engine interface (store/engine.rs) with
//!             two engines: files under DATA_DIR/blobs (store/disk.rs) and an S3 bucket
//!             (store/object.rs, uploads as multipart parts: store/multipart.rs); the ingest
//!             streamed bytes are staged through (hashed as written, bounded, checked before
//!             publishing) and its async pipeline (store/ingest.rs, store/pipeline.rs); the
//!             data directory's layout (store/paths.rs)
//! net         the pooled HTTP/1.1 client out of the process (connections, reuse, TLS)
//! s3          the S3 client over net: signing (rusty-s3), the calls, XML answers, settings
//! index       the index, SQLite or PostgreSQL behind one interface: connections, migrations, typed queries
//! upload      upload sessions: the live-session table, all-or-nothing requests into the ingest
//! registry    the domain operations over store + index + uploads (blobs, uploads, manifests, gc);
//!             the only holder of the store: proxy fills and imports get ingests from it
//! gc          garbage collection and cache eviction policy (pure)
//! bundle      image bundles: --import (OCI layouts, docker archives), --export, --inventory,
//!             --copy-from (a box into a cluster, bundle by bundle through a pipe)
//! proxy       the pull-through cache: upstreams, client, single-flight fills, eviction's schedule
//! http        the server (connections, TLS, the request pipeline and access log), request
//!             authentication, routing (pure), handlers by resource, the response envelope,
//!             connection limits and guard, the web page
//! fuzzing     arbitrary bytes into each parser of untrusted input (fuzz targets, their replay)
//! ```

pub mod assets;
pub mod auth;
pub mod background;
pub mod bundle;
pub mod cli;
pub mod clock;
pub mod config;
pub mod console;
pub mod digest;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod gc;
pub mod http;
pub mod ids;
pub mod index;
pub mod jobs;
pub mod manifest;
pub mod metrics;
pub mod net;
pub mod notify;
pub mod pagebuf;
pub mod proxy;
pub mod range;
pub mod reference;
pub mod registry;
pub mod s3;
pub mod serve;
pub mod shutdown;
pub mod store;
pub mod tls;
pub mod units;
pub mod upload;

pub use error::{Error, Result};
