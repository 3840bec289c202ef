//! The HTTP face of the registry. Knows no SQL: everything it stores or reads goes through
//! `Registry`, or the pull-through cache (`Proxy`).
//!
//! ```text
//! server.rs     a connection's life: accept, first byte, TLS handshake, async-h1, refused
//!               heads; each request's pipeline and its access-log line
//! admit.rs      which connections are let in: a total, a share per address (bookkeeping only)
//! limits.rs     the time limits and caps for connections
//! conn.rs       the stream under a connection: stalls, head limits, drain budget, batching
//! framing.rs    a request head's framing, checked before async-h1 reads it (pure)
//! http10.rs     HTTP/1.0 heads turned into requests, and their answers written
//! direct.rs     blob bodies written by the connection's task straight to a plain-TCP socket
//! file_body.rs  blob bodies read on a blocking thread (HTTPS, small blobs)
//! authn.rs      who sent a request, may they, and the 401 challenge
//! app.rs        App: what every handler shares; what the operator switched off
//! route.rs      (method, path, query) -> Endpoint (pure)
//! handlers/     one file per resource; dispatch in mod.rs
//! response.rs   the error envelope (written only there), locations, Link headers
//! ui/           the built-in web page: its routes (pure) and handlers
//! ```
//!
//! Imports go one way, so no module here imports one that imports it back: `server` uses
//! `authn`, `handlers` and `http10`; `handlers` use `app`, `route`, `response` and the body
//! types (`direct`, `file_body`, `conn`); `app` uses only `conn`; `route` uses `ui/route.rs`.

pub mod admit;
pub mod app;
pub mod authn;
pub mod conn;
pub mod direct;
pub mod file_body;
pub mod framing;
pub mod handlers;
mod http10;
pub mod limits;
pub mod response;
pub mod route;
pub mod server;
pub mod ui;
