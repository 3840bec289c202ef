//! Unguessable identifiers (upload sessions, temporary files).
//!
//! A BLAKE3 keyed hash of a counter: keyed once per process with 32 bytes from the operating
//! system, it is a PRF, so ids cannot be predicted from ones seen before, and making one costs
//! no system call.

use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

static KEY: OnceLock<[u8; 32]> = OnceLock::new();
static COUNTER: AtomicU64 = AtomicU64::new(0);

fn key() -> &'static [u8; 32] {
    KEY.get_or_init(|| {
        let mut k = [0u8; 32];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut k))
            .expect("reading /dev/urandom");
        k
    })
}

/// 32 lowercase hex characters (128 bits).
pub fn new_id() -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let hash = blake3::keyed_hash(key(), &n.to_le_bytes());
    hash.to_hex()[..32].to_string()
}

/// Random bytes for secrets that live in memory only (e.g. the credential-cache key).
pub fn random_key() -> [u8; 32] {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    *blake3::keyed_hash(key(), &[b"key".as_slice(), &n.to_le_bytes()].concat()).as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_unique_hex_of_fixed_length() {
        let ids: HashSet<String> = (0..10_000).map(|_| new_id()).collect();
        assert_eq!(ids.len(), 10_000);
        assert!(ids.iter().all(|i| i.len() == 32
            && i.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())));
    }
}
