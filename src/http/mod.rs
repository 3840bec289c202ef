//! The HTTP face of the registry: routing (pure), handlers, responses, which connections are
//! let in, the connection wrapper and the framing check it runs on every request head, the
//! server loop, HTTP/1.0 answers, and the built-in web page (`ui/`). Knows no SQL: everything
//! it stores or reads goes through `Registry`.

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
pub mod proxied;
pub mod response;
pub mod route;
pub mod server;
pub mod ui;
