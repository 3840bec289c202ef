//! Failed-login throttling per client address: the first few failures are answered at once,
//! the next ones ever more slowly, and past a limit the address gets TOOMANYREQUESTS until the
//! block expires. A success clears the address. Pure: time comes in as milliseconds.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

/// Failures answered without delay.
const FREE_FAILURES: u32 = 3;
/// The failure that gets an address blocked.
const BLOCK_AT: u32 = 10;
/// Failures older than this are forgotten.
const WINDOW_MS: u64 = 10 * 60 * 1000;
/// How long a blocked address is refused.
const BLOCK_MS: u64 = 60 * 1000;
/// The longest delay before answering a failed login.
const MAX_DELAY_MS: u64 = 4_000;
/// Addresses tracked at most; the stalest are dropped beyond it.
const MAX_ENTRIES: usize = 10_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Go ahead (or answer the failure) now.
    Allow,
    /// Answer the failure after this long.
    Delay(Duration),
    /// Refuse with 429 and this Retry-After.
    Block(Duration),
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    failures: u32,
    last_ms: u64,
    blocked_until_ms: u64,
}

#[derive(Default)]
pub struct Limiter {
    entries: HashMap<IpAddr, Entry>,
}

impl Limiter {
    /// Before checking credentials: is this address blocked?
    pub fn check(&self, ip: IpAddr, now_ms: u64) -> Verdict {
        match self.entries.get(&ip) {
            Some(e) if e.blocked_until_ms > now_ms => {
                Verdict::Block(Duration::from_millis(e.blocked_until_ms - now_ms))
            }
            _ => Verdict::Allow,
        }
    }

    /// After a failed login: how to answer it.
    pub fn failed(&mut self, ip: IpAddr, now_ms: u64) -> Verdict {
        if self.entries.len() >= MAX_ENTRIES {
            self.prune(now_ms);
        }
        let e = self.entries.entry(ip).or_insert(Entry {
            failures: 0,
            last_ms: now_ms,
            blocked_until_ms: 0,
        });
        if now_ms.saturating_sub(e.last_ms) > WINDOW_MS {
            e.failures = 0;
        }
        e.failures += 1;
        e.last_ms = now_ms;
        if e.failures >= BLOCK_AT {
            e.blocked_until_ms = now_ms + BLOCK_MS;
            return Verdict::Block(Duration::from_millis(BLOCK_MS));
        }
        if e.failures <= FREE_FAILURES {
            return Verdict::Allow;
        }
        let doublings = e.failures - FREE_FAILURES - 1;
        let delay = (250u64 << doublings.min(10)).min(MAX_DELAY_MS);
        Verdict::Delay(Duration::from_millis(delay))
    }

    /// After a successful login: the address starts afresh.
    pub fn succeeded(&mut self, ip: IpAddr) {
        self.entries.remove(&ip);
    }

    fn prune(&mut self, now_ms: u64) {
        self.entries.retain(|_, e| {
            now_ms.saturating_sub(e.last_ms) <= WINDOW_MS || e.blocked_until_ms > now_ms
        });
        if self.entries.len() >= MAX_ENTRIES {
            let mut ages: Vec<u64> = self.entries.values().map(|e| e.last_ms).collect();
            ages.sort_unstable();
            let cutoff = ages[ages.len() / 2];
            self.entries.retain(|_, e| e.last_ms > cutoff);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 7));

    #[test]
    fn failures_are_free_then_slowed_then_blocked() {
        let mut l = Limiter::default();
        let t = 1_000_000;
        for i in 0..FREE_FAILURES {
            assert_eq!(l.failed(IP, t + u64::from(i)), Verdict::Allow);
        }
        assert_eq!(
            l.failed(IP, t + 10),
            Verdict::Delay(Duration::from_millis(250))
        );
        assert_eq!(
            l.failed(IP, t + 11),
            Verdict::Delay(Duration::from_millis(500))
        );
        for i in 0..3 {
            assert!(matches!(l.failed(IP, t + 20 + i), Verdict::Delay(_)));
        }
        assert_eq!(
            l.failed(IP, t + 30),
            Verdict::Delay(Duration::from_millis(MAX_DELAY_MS))
        );
        assert_eq!(
            l.failed(IP, t + 40),
            Verdict::Block(Duration::from_millis(BLOCK_MS))
        );
        assert!(matches!(l.check(IP, t + 41), Verdict::Block(_)));
        // Another address is not affected.
        assert_eq!(l.check("10.0.0.8".parse().unwrap(), t + 41), Verdict::Allow);
        // The block ends.
        assert_eq!(l.check(IP, t + 40 + BLOCK_MS), Verdict::Allow);
    }

    #[test]
    fn a_success_or_a_quiet_window_clears_the_count() {
        let mut l = Limiter::default();
        for i in 0..6 {
            l.failed(IP, i);
        }
        l.succeeded(IP);
        assert_eq!(l.failed(IP, 10), Verdict::Allow);
        for i in 0..6 {
            l.failed(IP, 20 + i);
        }
        assert_eq!(l.failed(IP, 30 + WINDOW_MS + 1), Verdict::Allow);
    }

    #[test]
    fn the_table_stays_bounded() {
        let mut l = Limiter::default();
        for i in 0..(MAX_ENTRIES as u32 + 100) {
            l.failed(IpAddr::V4(i.into()), u64::from(i));
        }
        assert!(l.entries.len() <= MAX_ENTRIES);
    }
}
