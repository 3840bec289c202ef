//! The HTTP face of the registry: routing (pure), handlers, responses, the connection wrapper
//! and the server loop. Knows no SQL: everything it stores or reads goes through `Registry`.

pub mod conn;
pub mod handlers;
pub mod response;
pub mod route;
pub mod server;
