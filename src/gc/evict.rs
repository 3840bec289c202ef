//! What the cache lets go: a pure choice over what it holds, with `now` passed in.
//!
//! An entry is a cached manifest with the blobs it names (its own bytes, config, layers).
//! First, every entry not read for the TTL goes; then, while the cache holds more than its
//! budget, the least recently read entry goes. A blob is freed only when no entry that stays
//! names it, so a layer shared with a kept image is never counted as freed (nor deleted).
//! Entries of pinned repositories stay. Applying the choice (`registry/cache.rs`) removes the
//! manifests and their tags, then the blobs nothing else needs.

use std::collections::HashMap;

/// A cached manifest as eviction sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub last_access: i64,
    pub pinned: bool,
    /// Indexes into the blob sizes passed alongside.
    pub blobs: Vec<usize>,
}

/// The policy's knobs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Seconds since the last read after which an entry goes.
    pub ttl: i64,
    /// The most the cache may hold, in bytes (`None`: no limit).
    pub max_bytes: Option<u64>,
}

/// The entries to evict, and the bytes that frees.
pub fn choose(
    entries: &[Entry],
    blob_sizes: &[u64],
    now: i64,
    policy: &Policy,
) -> (Vec<usize>, u64) {
    let mut refs: HashMap<usize, u32> = HashMap::new();
    for e in entries {
        for &b in &e.blobs {
            *refs.entry(b).or_default() += 1;
        }
    }
    let mut held: u64 = refs.keys().map(|&b| blob_sizes[b]).sum();
    let mut gone = vec![false; entries.len()];
    let mut freed = 0u64;
    let evict = |i: usize, gone: &mut Vec<bool>, refs: &mut HashMap<usize, u32>| -> u64 {
        gone[i] = true;
        let mut f = 0;
        for &b in &entries[i].blobs {
            let r = refs.get_mut(&b).expect("counted above");
            *r -= 1;
            if *r == 0 {
                f += blob_sizes[b];
            }
        }
        f
    };
    let cutoff = now - policy.ttl;
    for (i, e) in entries.iter().enumerate() {
        if !e.pinned && e.last_access < cutoff {
            let f = evict(i, &mut gone, &mut refs);
            freed += f;
            held -= f;
        }
    }
    if let Some(budget) = policy.max_bytes {
        let mut by_age: Vec<usize> = (0..entries.len())
            .filter(|&i| !gone[i] && !entries[i].pinned)
            .collect();
        by_age.sort_by_key(|&i| (entries[i].last_access, i));
        for i in by_age {
            if held <= budget {
                break;
            }
            let f = evict(i, &mut gone, &mut refs);
            freed += f;
            held -= f;
        }
    }
    ((0..entries.len()).filter(|&i| gone[i]).collect(), freed)
}

/// `--cache-pin` patterns: `*` matches any run of characters (slashes included).
pub fn pinned(name: &str, patterns: &[String]) -> bool {
    patterns.iter().any(|p| glob(p.as_bytes(), name.as_bytes()))
}

fn glob(p: &[u8], s: &[u8]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => (0..=s.len()).any(|i| glob(rest, &s[i..])),
        Some((c, rest)) => s.first() == Some(c) && glob(rest, &s[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;
    const NOW: i64 = 100 * DAY;

    fn e(days_ago: i64, blobs: &[usize]) -> Entry {
        Entry {
            last_access: NOW - days_ago * DAY,
            pinned: false,
            blobs: blobs.to_vec(),
        }
    }

    #[test]
    fn entries_unread_for_the_ttl_go_and_each_read_refreshes() {
        let entries = vec![e(8, &[0]), e(6, &[1]), e(30, &[2])];
        let policy = Policy {
            ttl: 7 * DAY,
            max_bytes: None,
        };
        assert_eq!(
            choose(&entries, &[10, 20, 30], NOW, &policy),
            (vec![0, 2], 40)
        );
        // A changed TTL applies to everything already cached.
        let shorter = Policy {
            ttl: 5 * DAY,
            ..policy
        };
        assert_eq!(
            choose(&entries, &[10, 20, 30], NOW, &shorter).0,
            vec![0, 1, 2]
        );
    }

    #[test]
    fn a_shared_blob_is_freed_only_with_its_last_user() {
        // Two images share layer 0 (100 bytes); each has its own small config.
        let entries = vec![e(10, &[0, 1]), e(1, &[0, 2])];
        let policy = Policy {
            ttl: 7 * DAY,
            max_bytes: None,
        };
        assert_eq!(choose(&entries, &[100, 5, 6], NOW, &policy), (vec![0], 5));
    }

    #[test]
    fn over_budget_the_least_recently_read_go_first() {
        let entries = vec![e(3, &[0]), e(1, &[1]), e(2, &[2]), e(0, &[3])];
        let sizes = [100, 100, 100, 100];
        let policy = Policy {
            ttl: 30 * DAY,
            max_bytes: Some(250),
        };
        assert_eq!(choose(&entries, &sizes, NOW, &policy), (vec![0, 2], 200));
        let unlimited = Policy {
            max_bytes: None,
            ..policy
        };
        assert!(choose(&entries, &sizes, NOW, &unlimited).0.is_empty());
    }

    #[test]
    fn pinned_entries_stay_whatever_their_age() {
        let mut old = e(365, &[0]);
        old.pinned = true;
        let entries = vec![old, e(400, &[1])];
        let policy = Policy {
            ttl: DAY,
            max_bytes: Some(0),
        };
        assert_eq!(choose(&entries, &[10, 10], NOW, &policy).0, vec![1]);
        assert!(pinned("ghcr.io/org/base", &["ghcr.io/org/*".into()]));
        assert!(pinned("library/alpine", &["library/alpine".into()]));
        assert!(!pinned("library/alpine2", &["library/alpine".into()]));
        assert!(pinned("a/b/c", &["*".into()]));
        assert!(pinned("team/x/tools", &["team/*/tools".into()]));
    }
}
