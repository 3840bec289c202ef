//! Which accepted connections are served: at most a total, and at most a share of it from any
//! one address, so that one client (no login needed: an idle socket is enough) cannot fill the
//! server and lock every other client out. Bookkeeping only: an address in, a [`Slot`] or a
//! refusal out; the slot gives its place back when dropped. No sockets, no runtime.
//!
//! An IPv6 client is counted by its /64: one host usually holds a whole /64 and may pick any
//! address in it. Loopback is an address like any other: behind a reverse proxy on the same
//! box every client arrives from the proxy's address, which then needs a higher cap
//! (`ATOLL_MAX_CONNECTIONS_PER_ADDRESS`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Why a connection was not let in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The server holds its limit of connections.
    Full,
    /// This address holds its share.
    AddressFull,
}

/// Counts open connections, in all and by address.
pub struct Admission {
    max: usize,
    per_address: usize,
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    total: usize,
    /// Only addresses with a connection open: the map never outgrows the limit.
    by_address: HashMap<IpAddr, usize>,
}

/// A connection's place; given back when dropped.
pub struct Slot {
    admission: Arc<Admission>,
    address: IpAddr,
}

impl Admission {
    pub fn new(max: usize, per_address: usize) -> Arc<Admission> {
        Arc::new(Admission {
            max,
            per_address,
            open: Mutex::default(),
        })
    }

    /// A place for a connection from `peer`, if the limits leave one.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Slot, Refused> {
        let address = counted_as(peer);
        let mut open = self.lock();
        if open.total >= self.max {
            return Err(Refused::Full);
        }
        let mine = open.by_address.entry(address).or_insert(0);
        if *mine >= self.per_address {
            return Err(Refused::AddressFull);
        }
        *mine += 1;
        open.total += 1;
        Ok(Slot {
            admission: self.clone(),
            address,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.lock().total
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.admission.lock();
        open.total -= 1;
        if let Some(n) = open.by_address.get_mut(&self.address) {
            *n -= 1;
            if *n == 0 {
                open.by_address.remove(&self.address);
            }
        }
    }
}

/// Refused connections are logged at most this often: a flood of them must not flood the log.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// When to log refusals: the first at once, then a count at most every [`LOG_EVERY`].
#[derive(Default)]
pub struct RefusalLog {
    quiet_until: Option<Instant>,
    unlogged: u64,
}

impl RefusalLog {
    /// One more refusal at `now`: `Some(n)` if it is to be logged, with the `n` refusals since
    /// the last line (itself included).
    pub fn note(&mut self, now: Instant) -> Option<u64> {
        self.unlogged += 1;
        if self.quiet_until.is_some_and(|t| now < t) {
            return None;
        }
        self.quiet_until = Some(now + LOG_EVERY);
        Some(std::mem::take(&mut self.unlogged))
    }
}

/// The address a peer is counted under: IPv4 as is (an IPv4-mapped IPv6 peer as its IPv4
/// address), IPv6 by its /64.
fn counted_as(peer: IpAddr) -> IpAddr {
    match peer {
        IpAddr::V4(_) => peer,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn one_address_gets_its_share_and_the_others_the_rest() {
        let a = Admission::new(10, 4);
        let mine: Vec<Slot> = (0..4).map(|_| a.admit(ip("10.0.0.1")).unwrap()).collect();
        assert_eq!(a.admit(ip("10.0.0.1")).err(), Some(Refused::AddressFull));
        let others: Vec<Slot> = (2..8)
            .map(|i| a.admit(ip(&format!("10.0.0.{i}"))).unwrap())
            .collect();
        assert_eq!(a.open(), 10);
        assert_eq!(a.admit(ip("10.0.0.9")).err(), Some(Refused::Full));
        drop(mine);
        assert_eq!(a.open(), 6);
        let again = a.admit(ip("10.0.0.1")).unwrap();
        drop((again, others));
        assert_eq!(a.open(), 0);
        assert!(a.lock().by_address.is_empty(), "no address left behind");
    }

    #[test]
    fn refusals_are_logged_once_then_counted_every_ten_seconds() {
        let (mut log, t) = (RefusalLog::default(), Instant::now());
        assert_eq!(log.note(t), Some(1));
        assert_eq!(log.note(t + Duration::from_secs(1)), None);
        assert_eq!(log.note(t + Duration::from_secs(9)), None);
        assert_eq!(log.note(t + LOG_EVERY), Some(3));
        assert_eq!(log.note(t + LOG_EVERY * 3), Some(1));
    }

    #[test]
    fn an_ipv6_host_counts_by_its_64_and_a_mapped_ipv4_as_itself() {
        let a = Admission::new(100, 2);
        let _one = a.admit(ip("2001:db8:1:2::1")).unwrap();
        let _two = a.admit(ip("2001:db8:1:2:ffff::9")).unwrap();
        assert_eq!(
            a.admit(ip("2001:db8:1:2:abcd::1")).err(),
            Some(Refused::AddressFull)
        );
        assert!(a.admit(ip("2001:db8:1:3::1")).is_ok(), "another /64");
        let _v4 = a.admit(ip("192.0.2.7")).unwrap();
        let _mapped = a.admit(ip("::ffff:192.0.2.7")).unwrap();
        assert_eq!(a.admit(ip("192.0.2.7")).err(), Some(Refused::AddressFull));
    }
}
