//! Server connection reuse, as policy: which answers leave their connection fit to carry
//! another request, and which idle connections are kept per origin (at most [`MAX_IDLE`] each,
//! none idle for [`IDLE_FOR`] or longer). Pure: values and `now` in, decisions out; no sockets
//! and no clock. `conn.rs` applies it to real connections.
//!
//! Why it matters: over an edge site's uplink every new connection costs a round trip for TCP
//! and two more for TLS before the request even leaves; a pull asks the same server for a
//! tag, a manifest and each layer in a row.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use http_types::Url;

/// Idle connections kept per origin; more are closed as they come back.
pub const MAX_IDLE: usize = 8;
/// An idle connection older than this is closed rather than reused: well under the idle
/// timeouts servers commonly use (60 s and more), so the server rarely closes one first.
pub const IDLE_FOR: Duration = Duration::from_secs(30);

/// Where a connection goes: scheme, host and port. Connections are shared only within one.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Origin {
    pub https: bool,
    pub host: String,
    pub port: u16,
}

impl Origin {
    pub fn of(url: &Url) -> Result<Origin, String> {
        Ok(Origin {
            https: url.scheme() == "https",
            host: url.host_str().ok_or("no host in the URL")?.to_owned(),
            port: url.port_or_known_default().ok_or("no port for the URL")?,
        })
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        write!(f, "{scheme}://{}:{}", self.host, self.port)
    }
}

/// Where the body of an answer ends (RFC 9112, section 6.3), which decides when, if ever, its
/// connection is free for the next request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyEnd {
    /// There is no body (the answer to a HEAD; 1xx, 204, 304): free once the head is read.
    Empty,
    /// After this many bytes (`Content-Length`).
    Length(u64),
    /// After the last chunk and its trailers (`Transfer-Encoding: chunked`).
    LastChunk,
    /// When the server closes the connection: it cannot be reused.
    Close,
}

/// How the body of an answer with `status` ends; `head` if it answers a HEAD. The header
/// values are the last of each (async-h1 frames the body by those).
pub fn body_end(
    head: bool,
    status: u16,
    content_length: Option<&str>,
    transfer_encoding: Option<&str>,
) -> BodyEnd {
    if head || (100..200).contains(&status) || status == 204 || status == 304 {
        return BodyEnd::Empty;
    }
    match (transfer_encoding, content_length) {
        (Some(te), _) if te.trim().eq_ignore_ascii_case("chunked") => BodyEnd::LastChunk,
        (Some(_), _) => BodyEnd::Close,
        (None, Some(len)) => len.trim().parse().map_or(BodyEnd::Close, BodyEnd::Length),
        (None, None) => BodyEnd::Close,
    }
}

/// Whether the server lets the connection stay open after this answer: HTTP/1.1 connections
/// persist unless a `Connection` header says `close`.
pub fn stays_open(connection: Option<&str>) -> bool {
    !connection.is_some_and(|c| {
        c.split(',')
            .any(|token| token.trim().eq_ignore_ascii_case("close"))
    })
}

/// Idle connections of type `C`, by origin, each with when it went idle.
pub struct Pool<C> {
    idle: HashMap<Origin, Vec<(C, Instant)>>,
}

impl<C> Default for Pool<C> {
    fn default() -> Self {
        Pool {
            idle: HashMap::new(),
        }
    }
}

fn fresh(since: Instant, now: Instant) -> bool {
    now.saturating_duration_since(since) < IDLE_FOR
}

impl<C> Pool<C> {
    /// An idle connection to `origin`, the one that went idle last (the likeliest to be
    /// alive); those idle too long are dropped on the way.
    pub fn take(&mut self, origin: &Origin, now: Instant) -> Option<C> {
        let list = self.idle.get_mut(origin)?;
        list.retain(|(_, since)| fresh(*since, now));
        let conn = list.pop().map(|(c, _)| c);
        if list.is_empty() {
            self.idle.remove(origin);
        }
        conn
    }

    /// Keeps `conn` for the next request to `origin`; if that origin already has
    /// [`MAX_IDLE`], the one idle longest is dropped.
    pub fn put(&mut self, origin: Origin, conn: C, now: Instant) {
        let list = self.idle.entry(origin).or_default();
        list.retain(|(_, since)| fresh(*since, now));
        if list.len() >= MAX_IDLE {
            list.remove(0);
        }
        list.push((conn, now));
    }

    /// Drops every connection idle for [`IDLE_FOR`] or longer; returns how many went.
    pub fn prune(&mut self, now: Instant) -> usize {
        let before = self.len();
        self.idle.retain(|_, list| {
            list.retain(|(_, since)| fresh(*since, now));
            !list.is_empty()
        });
        before - self.len()
    }

    /// Idle connections held, over all origins.
    pub fn len(&self) -> usize {
        self.idle.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(host: &str) -> Origin {
        Origin {
            https: true,
            host: host.into(),
            port: 443,
        }
    }

    #[test]
    fn where_a_body_ends_decides_reuse() {
        use BodyEnd::*;
        for (head, status, len, te, want) in [
            (false, 200, Some("1234"), None, Length(1234)),
            (false, 200, Some(" 0 "), None, Length(0)),
            (false, 200, None, Some("chunked"), LastChunk),
            (false, 200, None, Some("Chunked"), LastChunk),
            // Any other coding ends with the connection.
            (false, 200, None, Some("gzip"), Close),
            (false, 200, None, None, Close),
            (false, 200, Some("lots"), None, Close),
            (false, 200, Some("-1"), None, Close),
            // No body, whatever the headers announce.
            (true, 200, Some("1234"), None, Empty),
            (true, 404, None, Some("chunked"), Empty),
            (false, 204, None, None, Empty),
            (false, 304, Some("99"), None, Empty),
            (false, 101, None, None, Empty),
            // Errors and redirects have bodies like any other answer.
            (false, 401, Some("15"), None, Length(15)),
            (false, 307, Some("0"), None, Length(0)),
        ] {
            assert_eq!(
                body_end(head, status, len, te),
                want,
                "{head} {status} {len:?} {te:?}"
            );
        }
    }

    #[test]
    fn connection_close_ends_reuse() {
        assert!(stays_open(None));
        assert!(stays_open(Some("keep-alive")));
        assert!(!stays_open(Some("close")));
        assert!(!stays_open(Some("Close")));
        assert!(!stays_open(Some("upgrade, close")));
        assert!(stays_open(Some("closed-captions")));
    }

    #[test]
    fn the_last_returned_goes_first_and_origins_are_apart() {
        let (t, mut p) = (Instant::now(), Pool::default());
        p.put(origin("a"), 1, t);
        p.put(origin("a"), 2, t);
        p.put(origin("b"), 3, t);
        assert_eq!(p.take(&origin("a"), t), Some(2));
        assert_eq!(p.take(&origin("a"), t), Some(1));
        assert_eq!(p.take(&origin("a"), t), None);
        let http = Origin {
            https: false,
            ..origin("b")
        };
        assert_eq!(p.take(&http, t), None, "another scheme is another origin");
        assert_eq!(p.take(&origin("b"), t), Some(3));
        assert!(p.is_empty());
    }

    #[test]
    fn at_most_max_idle_per_origin_the_oldest_goes() {
        let (t, mut p) = (Instant::now(), Pool::default());
        for i in 0..MAX_IDLE + 3 {
            p.put(origin("a"), i, t + Duration::from_millis(i as u64));
        }
        p.put(origin("b"), 100, t);
        assert_eq!(p.len(), MAX_IDLE + 1);
        let now = t + Duration::from_secs(1);
        let mut got = Vec::new();
        while let Some(c) = p.take(&origin("a"), now) {
            got.push(c);
        }
        assert_eq!(got, (3..MAX_IDLE + 3).rev().collect::<Vec<_>>());
    }

    #[test]
    fn connections_idle_too_long_are_dropped() {
        let (t, mut p) = (Instant::now(), Pool::default());
        p.put(origin("a"), 1, t);
        p.put(origin("a"), 2, t + Duration::from_secs(20));
        p.put(origin("b"), 3, t);
        // Taking skips the stale ones.
        let later = t + IDLE_FOR + Duration::from_secs(1);
        assert_eq!(p.take(&origin("a"), later), Some(2));
        assert_eq!(p.take(&origin("a"), later), None);
        // The sweep drops them everywhere, and only them.
        p.put(origin("c"), 4, later);
        assert_eq!(p.prune(later), 1, "b's went");
        assert_eq!(p.len(), 1);
        assert_eq!(p.prune(later + IDLE_FOR), 1);
        assert!(p.is_empty());
    }
}
