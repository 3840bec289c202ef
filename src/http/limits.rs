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
//! ATOLL_HANDSHAKE_TIMEOUT  10s   a TLS handshake must complete within this
//! ATOLL_MAX_CONNECTIONS    4096  connections beyond this are closed as soon as accepted
//! ```
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

/// Time limits and caps for connections.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// A read or write that makes no progress for this long fails (and idle keep-alive ends).
    pub stall: Duration,
    /// A request head must be complete within this.
    pub head: Duration,
    /// A TLS handshake must complete within this.
    pub handshake: Duration,
    /// On shutdown, how long requests in flight may take to finish.
    pub drain: Duration,
    /// Connections beyond this are closed as soon as they are accepted.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            stall: Duration::from_secs(60),
            head: Duration::from_secs(60),
            handshake: Duration::from_secs(10),
            drain: Duration::from_secs(30),
            max_connections: 4096,
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
        if let Some(v) = env("ATOLL_MAX_CONNECTIONS").filter(|v| !v.trim().is_empty()) {
            l.max_connections = match v.trim().parse() {
                Ok(n) if n > 0 => n,
                _ => {
                    return Err(Error::Config(format!(
                        "ATOLL_MAX_CONNECTIONS={v:?}: expected a number above zero"
                    )))
                }
            };
        }
        Ok(l)
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
        ])
        .unwrap();
        assert_eq!(l.stall, Duration::from_secs(2));
        assert_eq!(l.head, Duration::from_secs(3));
        assert_eq!(l.max_connections, 300);
        for (var, bad) in [
            ("ATOLL_STALL_TIMEOUT", "0"),
            ("ATOLL_HEAD_TIMEOUT", "soon"),
            ("ATOLL_MAX_CONNECTIONS", "-1"),
        ] {
            let e = from(&[(var, bad)]).unwrap_err().to_string();
            assert!(e.starts_with(var), "{e}");
        }
    }
}
