//! The built-in web page: every repository with its tags, digests, types, platforms, sizes,
//! push and pull times and referrers; the pull-through cache, disk usage and the last garbage
//! collection; a filter by name and the `docker pull` line to copy.
//!
//! The page is static (`assets/ui/`, embedded) and reads a small paginated JSON API under
//! `/ui/api/`. It obeys the API's access rules: its routes need what a pull needs (so with
//! logins on, a browser gets the Basic challenge, and with `--anonymous-pull` it reads without
//! one), and it offers deletes only to those who may make them, through the API's own DELETE.
//!
//! `route.rs` parses its URLs (pure); `handlers.rs` answers them.

pub mod handlers;
pub mod route;

pub use handlers::serve;
pub use route::UiRoute;
