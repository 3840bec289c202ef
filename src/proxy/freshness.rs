//! How fresh a cached tag must be, decided without I/O: what a pull by tag does first, what it
//! does with the upstream's answer, and the cooldown that keeps a failing upstream from being
//! asked again at once. `proxy/mod.rs` carries the decisions out; `now` is passed in.
//!
//! Content addressed by digest never changes, so only tags need asking about. A tag the cache
//! does not hold is fetched outright (one round trip: nothing to compare with). A cached tag is
//! probed with a HEAD; if the upstream cannot answer, the cached copy is served (a site whose
//! uplink is down pulls at local speed) and the upstream rests for [`COOLDOWN`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long an upstream that failed is left alone: pulls by tag serve the cache meanwhile.
pub const COOLDOWN: Duration = Duration::from_secs(30);

/// The first step of a pull by tag.
#[derive(Debug, PartialEq, Eq)]
pub enum First {
    /// Nothing cached: GET the manifest by tag.
    Fetch,
    /// Cached: HEAD the tag and compare digests.
    Probe,
    /// The upstream is resting: decide without it.
    WithoutUpstream,
}

pub fn first(cached: bool, resting: bool) -> First {
    match (cached, resting) {
        (_, true) => First::WithoutUpstream,
        (false, false) => First::Fetch,
        (true, false) => First::Probe,
    }
}

/// What the upstream said to the HEAD of a tag.
#[derive(Debug, PartialEq, Eq)]
pub enum Probed<D> {
    /// 200, with the tag's current digest if the upstream gave a valid one.
    Current(Option<D>),
    /// 404: the tag is gone upstream.
    Gone,
    /// Anything else, or no answer: why.
    Failed(String),
}

/// What to do after the probe.
#[derive(Debug, PartialEq, Eq)]
pub enum Then<D> {
    /// The cached copy is current.
    ServeCached,
    /// The tag moved: serve `D` if the cache holds it (re-pointing the tag), else fetch it.
    Moved(D),
    /// The tag moved to a digest the upstream did not say: fetch by tag.
    Fetch,
    /// The tag is gone upstream: 404.
    NoSuchTag,
    /// The upstream failed: serve the cached copy if there is one (and rest the upstream).
    Fallback(String),
}

pub fn after_probe<D: PartialEq>(probed: Probed<D>, cached: Option<&D>) -> Then<D> {
    match probed {
        Probed::Current(Some(d)) if cached == Some(&d) => Then::ServeCached,
        Probed::Current(Some(d)) => Then::Moved(d),
        Probed::Current(None) => Then::Fetch,
        Probed::Gone => Then::NoSuchTag,
        Probed::Failed(why) => Then::Fallback(why),
    }
}

/// Which upstreams are resting after a failure, and until when.
#[derive(Default)]
pub struct Cooldown {
    until: Mutex<HashMap<usize, Instant>>,
}

impl Cooldown {
    pub fn resting(&self, upstream: usize, now: Instant) -> bool {
        self.map().get(&upstream).is_some_and(|until| *until > now)
    }

    pub fn failed(&self, upstream: usize, now: Instant) {
        self.map().insert(upstream, now + COOLDOWN);
    }

    pub fn answered(&self, upstream: usize) {
        self.map().remove(&upstream);
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<usize, Instant>> {
        self.until.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_not_cached_is_fetched_a_cached_one_probed_and_a_resting_upstream_left_alone() {
        assert_eq!(first(false, false), First::Fetch);
        assert_eq!(first(true, false), First::Probe);
        assert_eq!(first(true, true), First::WithoutUpstream);
        assert_eq!(first(false, true), First::WithoutUpstream);
    }

    #[test]
    fn the_probe_decides_between_the_cache_a_move_a_fetch_and_a_fallback() {
        let a = "sha256:a";
        assert_eq!(
            after_probe(Probed::Current(Some(a)), Some(&a)),
            Then::ServeCached
        );
        assert_eq!(
            after_probe(Probed::Current(Some("sha256:b")), Some(&a)),
            Then::Moved("sha256:b")
        );
        assert_eq!(after_probe(Probed::Current(Some(a)), None), Then::Moved(a));
        assert_eq!(after_probe(Probed::Current(None), Some(&a)), Then::Fetch);
        assert_eq!(after_probe(Probed::<&str>::Gone, Some(&a)), Then::NoSuchTag);
        assert_eq!(
            after_probe(Probed::<&str>::Failed("503".into()), Some(&a)),
            Then::Fallback("503".into())
        );
    }

    #[test]
    fn an_upstream_rests_for_the_cooldown_after_a_failure_and_not_after_an_answer() {
        let (c, t0) = (Cooldown::default(), Instant::now());
        assert!(!c.resting(0, t0));
        c.failed(0, t0);
        assert!(c.resting(0, t0 + COOLDOWN - Duration::from_millis(1)));
        assert!(!c.resting(0, t0 + COOLDOWN));
        assert!(!c.resting(1, t0), "one upstream's failure is its own");
        c.failed(0, t0);
        c.answered(0);
        assert!(!c.resting(0, t0));
    }
}
