//! The HTTP face of the registry: routing (pure), handlers, responses, which connections are
//! let in, the connection wrapper, the server loop, and the built-in web page (`ui/`). Knows no
//! SQL: everything it stores or reads goes through `Registry`.

pub mod admit;
pub mod conn;
pub mod direct;
pub mod file_body;
pub mod handlers;
pub mod limits;
pub mod proxied;
pub mod response;
pub mod route;
pub mod server;
pub mod ui;
