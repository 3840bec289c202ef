//! The time limits and caps that keep one client from hurting the others, in one place.
//!
//! Most have no flag: the defaults suit every network atoll is meant for. The time limits can
//! be changed by environment variables (documented in `assets/atoll.env`), mainly so that the
//! tests of slow and hostile clients wait seconds rather than minutes:
//!
//! ```text
//! ATOLL_STALL_TIMEOUT      60s   a read or write that makes no progress this long fails
//! ATOLL_HEAD_TIMEOUT       60s   a request head (line and headers) must arrive within this,
//!                                counted from when atoll starts waiting for it (idle
//!                                keep-alive included)
//! ATOLL_HANDSHAKE_TIMEOUT  10s   a new connection must send its first byte, and a TLS one
//!                                complete its handshake, within this (counted from accept)
//! ATOLL_MAX_CONNECTIONS    4096  connections beyond this are closed as soon as accepted;
//!                                fewer if the file limit cannot hold that many
//! ATOLL_MAX_CONNECTIONS_PER_ADDRESS
//!                          1/4   of the connection limit, at least 16: one address (an IPv6
//!                                client's /64) beyond this has its new connections closed
//! ```
//!
//! The connection limit is bounded by the file limit ([`Limits::within_files`]): a connection
//! may hold two files (its socket and the blob it sends or the upload it writes), and some
//! files are kept back for the index, upstream connections and the runtime, so that atoll never
//! accepts a connection it cannot serve ("Too many open files" in the middle of a request).
//!
//! Fixed caps: a request head may take at most [`HEAD_BYTES`] from the socket (async-h1
//! refuses heads over 8 KiB or with more than 128 headers, but only once a line ends: one
//! endless header line would otherwise grow in memory until the head timeout).

use std::time::Duration;

use crate::error::{Error, Result};
use crate::units::parse_duration;

/// Bytes a request head may take from the socket. async-h1's own limit is 8 KiB of head; its
/// buffered reader may read up to 8 KiB of the body along with it, so this is well above both.
pub const HEAD_BYTES: u64 = 64 * 1024;

/// File descriptors kept back from connections: the index (a writer and up to 16 idle readers
/// plus one per blocking thread, three files each), upstream connections (8 idle per upstream,
/// and those of fills in flight), the listener, the runtime's and the log's.
const RESERVED_FILES: u64 = 256;
/// Files one connection may hold: its socket, and the blob it sends or the upload it writes.
const FILES_PER_CONNECTION: u64 = 2;
/// The least [`Limits::per_address`] is, unless the connection limit itself is lower: a docker
/// push opens a few connections side by side, a busy CI runner several pushes.
const MIN_PER_ADDRESS: usize = 16;

/// Time limits and caps for connections.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// A read or write that makes no progress for this long fails (and idle keep-alive ends).
    pub stall: Duration,
    /// A request head must be complete within this.
    pub head: Duration,
    /// A new connection must send its first byte, and a TLS one complete its handshake, within
    /// this of being accepted: a connection that says nothing costs a file for no longer.
    pub handshake: Duration,
    /// On shutdown, how long requests in flight may take to finish.
    pub drain: Duration,
    /// Connections beyond this are closed as soon as they are accepted.
    pub max_connections: usize,
    /// Connections from one address beyond this are closed as soon as they are accepted;
    /// `None`: a quarter of `max_connections` ([`Limits::per_address`]).
    pub max_per_address: Option<usize>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            stall: Duration::from_secs(60),
            head: Duration::from_secs(60),
            handshake: Duration::from_secs(10),
            drain: Duration::from_secs(30),
            max_connections: 4096,
            max_per_address: None,
        }
    }
}

impl Limits {
    /// The defaults, changed by whichever `ATOLL_*` variable `env` has (see the module doc).
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Limits> {
        let mut l = Limits::default();
        let seconds = |var: &str, default: Duration| -> Result<Duration> {
            match env(var).filter(|v| !v.trim().is_empty()) {
                None => Ok(default),
                Some(v) => match parse_duration(&v) {
                    Some(s) if s > 0 => Ok(Duration::from_secs(s as u64)),
                    _ => Err(Error::Config(format!(
                        "{var}={v:?}: expected a duration above zero like 30s or 2m"
                    ))),
                },
            }
        };
        l.stall = seconds("ATOLL_STALL_TIMEOUT", l.stall)?;
        l.head = seconds("ATOLL_HEAD_TIMEOUT", l.head)?;
        l.handshake = seconds("ATOLL_HANDSHAKE_TIMEOUT", l.handshake)?;
        let count = |var: &str| -> Result<Option<usize>> {
            match env(var).filter(|v| !v.trim().is_empty()) {
                None => Ok(None),
                Some(v) => match v.trim().parse() {
                    Ok(n) if n > 0 => Ok(Some(n)),
                    _ => Err(Error::Config(format!(
                        "{var}={v:?}: expected a number above zero"
                    ))),
                },
            }
        };
        if let Some(n) = count("ATOLL_MAX_CONNECTIONS")? {
            l.max_connections = n;
        }
        l.max_per_address = count("ATOLL_MAX_CONNECTIONS_PER_ADDRESS")?;
        Ok(l)
    }

    /// These limits with the connection limit lowered, if need be, to what `files` open files
    /// (the process's RLIMIT_NOFILE) can serve: two per connection, after a reserve (at most
    /// half of them) for the index, upstreams and the runtime.
    pub fn within_files(mut self, files: u64) -> Limits {
        let reserve = RESERVED_FILES.min(files / 2);
        let fit = (files - reserve) / FILES_PER_CONNECTION;
        let fit = usize::try_from(fit).unwrap_or(usize::MAX).max(1);
        self.max_connections = self.max_connections.min(fit);
        self
    }

    /// How many connections one address may hold: as set, else a quarter of the connection
    /// limit but at least [`MIN_PER_ADDRESS`]; never above the connection limit. Behind a
    /// reverse proxy every client shares the proxy's address: raise it there.
    pub fn per_address(&self) -> usize {
        self.max_per_address
            .unwrap_or((self.max_connections / 4).max(MIN_PER_ADDRESS))
            .min(self.max_connections)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(vars: &[(&str, &str)]) -> Result<Limits> {
        Limits::from_env(&|k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn variables_change_the_defaults_and_bad_values_name_the_variable() {
        assert_eq!(from(&[]).unwrap(), Limits::default());
        let l = from(&[
            ("ATOLL_STALL_TIMEOUT", "2s"),
            ("ATOLL_HEAD_TIMEOUT", "3"),
            ("ATOLL_MAX_CONNECTIONS", "300"),
            ("ATOLL_MAX_CONNECTIONS_PER_ADDRESS", "250"),
        ])
        .unwrap();
        assert_eq!(l.stall, Duration::from_secs(2));
        assert_eq!(l.head, Duration::from_secs(3));
        assert_eq!(l.max_connections, 300);
        assert_eq!(l.per_address(), 250);
        for (var, bad) in [
            ("ATOLL_STALL_TIMEOUT", "0"),
            ("ATOLL_HEAD_TIMEOUT", "soon"),
            ("ATOLL_MAX_CONNECTIONS", "-1"),
            ("ATOLL_MAX_CONNECTIONS_PER_ADDRESS", "0"),
        ] {
            let e = from(&[(var, bad)]).unwrap_err().to_string();
            assert!(e.starts_with(var), "{e}");
        }
    }

    #[test]
    fn the_connection_limit_fits_the_file_limit_and_one_address_gets_a_quarter() {
        let d = Limits::default();
        assert_eq!(d.handshake, Duration::from_secs(10));
        // (files, connections, per address)
        for (files, conns, per) in [
            (1_048_576, 4096, 1024), // docker's default hard limit
            (65_536, 4096, 1024),    // atoll.service's LimitNOFILE
            (8_448, 4096, 1024),     // just enough for 4096
            (4_096, 1920, 480),
            (1_024, 384, 96),
            (200, 50, 16),
            (64, 16, 16),
            (3, 1, 1),
            (0, 1, 1),
        ] {
            let l = d.clone().within_files(files);
            assert_eq!(
                (l.max_connections, l.per_address()),
                (conns, per),
                "{files}"
            );
        }
        let mut set = Limits {
            max_connections: 100_000,
            max_per_address: Some(200_000),
            ..Limits::default()
        };
        assert_eq!(set.clone().within_files(1_024).max_connections, 384);
        assert_eq!(set.clone().within_files(1_024).per_address(), 384);
        set.max_per_address = Some(3);
        assert_eq!(set.within_files(1_024).per_address(), 3);
    }
}
