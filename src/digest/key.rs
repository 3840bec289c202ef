//! Digests in a fixed 40 bytes, and finding one among millions of them.
//!
//! Garbage collection holds every blob row, every edge and the store's listing at once: a
//! million blobs' digests as text (a 24-byte `String` and 80 bytes of heap each) were most of
//! its memory (findings.md, "How cost grows"). A [`Key`] keeps a sha256 digest as its 32
//! bytes and anything else (sha512, a row no parser would accept) as its text, so a key is
//! always exactly the text it was made from and turns back into it. [`Fanout`] finds keys in
//! a sorted slice without a hash map beside it.

use std::fmt;

use super::{Algorithm, Digest};

/// A digest as garbage collection holds it. Ordered sha256 keys first, by their bytes (which
/// is the order of their text), then the others by their text.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    Sha256([u8; 32]),
    Other(Box<str>),
}

impl Key {
    /// The key of a digest's text, as the index stores it.
    pub fn parse(text: &str) -> Key {
        match text.strip_prefix("sha256:").and_then(decode) {
            Some(bytes) => Key::Sha256(bytes),
            None => Key::Other(text.into()),
        }
    }

    pub fn of(digest: &Digest) -> Key {
        match digest.algorithm() {
            Algorithm::Sha256 => match decode(digest.hex()) {
                Some(bytes) => Key::Sha256(bytes),
                None => Key::Other(digest.to_string().into()),
            },
            Algorithm::Sha512 => Key::Other(digest.to_string().into()),
        }
    }

    /// The digest, if the text is one atoll accepts.
    pub fn digest(&self) -> Option<Digest> {
        self.to_string().parse().ok()
    }
}

/// The 32 bytes of 64 lowercase hex digits (the only spelling of a sha256 digest atoll
/// stores; any other stays text, so that the key gives back the text it was made from).
fn decode(hex: &str) -> Option<[u8; 32]> {
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let hex = hex.as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        *o = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Sha256(bytes) => {
                f.write_str("sha256:")?;
                bytes.iter().try_for_each(|b| write!(f, "{b:02x}"))
            }
            Key::Other(text) => f.write_str(text),
        }
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Where each 16-bit prefix of the sha256 keys of a sorted slice starts (git's pack index does
/// the same with 8 bits): a key is then found by a binary search among its few neighbours
/// (~15 at a million), within a cache line or two, where a search of the whole slice missed
/// the cache at each of 20 steps and a hash map took 16-36 bytes a row. sha256 digests are
/// spread evenly, and no one can choose them: a crowded prefix only costs its search a step
/// more. Keys of other algorithms come after and are searched among themselves.
pub struct Fanout {
    /// `starts[p]`: the first position whose key's prefix is at least `p`; `starts[1 << 16]`:
    /// where the other keys begin.
    starts: Box<[u32]>,
}

const PREFIXES: usize = 1 << 16;

fn prefix(bytes: &[u8; 32]) -> usize {
    usize::from(u16::from_be_bytes([bytes[0], bytes[1]]))
}

impl Fanout {
    /// Over `keys`, sorted (at most 2^32 of them).
    pub fn new<'a>(keys: impl IntoIterator<Item = &'a Key>) -> Fanout {
        let mut counts = vec![0u32; PREFIXES + 1];
        for k in keys {
            let slot = match k {
                Key::Sha256(bytes) => prefix(bytes) + 1,
                Key::Other(_) => continue,
            };
            counts[slot] += 1;
        }
        for p in 1..=PREFIXES {
            counts[p] += counts[p - 1];
        }
        Fanout {
            starts: counts.into_boxed_slice(),
        }
    }

    /// The position of `key` in `sorted` (the slice this was made over), found by `key_of`.
    pub fn find<T>(&self, sorted: &[T], key_of: impl Fn(&T) -> &Key, key: &Key) -> Option<usize> {
        let (lo, hi) = match key {
            Key::Sha256(bytes) => {
                let p = prefix(bytes);
                (self.starts[p] as usize, self.starts[p + 1] as usize)
            }
            Key::Other(_) => (self.starts[PREFIXES] as usize, sorted.len()),
        };
        sorted[lo..hi]
            .binary_search_by(|t| key_of(t).cmp(key))
            .ok()
            .map(|i| lo + i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
    const B: &str = "sha256:00000000000000000000000000000000000000000000000000000000000000ff";
    const C: &str = "sha256:0001aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const D: &str = "sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";

    #[test]
    fn a_key_gives_back_the_text_it_was_made_from() {
        let sha512 = format!("sha512:{}", "ab".repeat(64));
        for text in [
            A,
            D,
            &sha512,
            "sha256:ABCD",
            "sha256:00",
            "not a digest",
            "",
        ] {
            assert_eq!(Key::parse(text).to_string(), text);
        }
        assert!(matches!(Key::parse(D), Key::Sha256(_)));
        let upper = D.to_uppercase().replace("SHA256", "sha256");
        assert!(
            matches!(Key::parse(&upper), Key::Other(_)),
            "only canonical hex is bytes"
        );
        for text in [A, sha512.as_str()] {
            let digest: Digest = text.parse().unwrap();
            assert_eq!(Key::of(&digest), Key::parse(text));
            assert_eq!(Key::of(&digest).digest(), Some(digest));
        }
        assert_eq!(Key::parse("sha256:00").digest(), None);
    }

    #[test]
    fn sha256_keys_order_as_their_text() {
        let mut keys: Vec<Key> = [D, C, A, B].iter().map(|t| Key::parse(t)).collect();
        keys.sort();
        let texts: Vec<String> = keys.iter().map(Key::to_string).collect();
        assert_eq!(texts, [A, B, C, D]);
    }

    #[test]
    fn the_fanout_finds_every_key_and_no_other() {
        let sha512 = format!("sha512:{}", "ab".repeat(64));
        let mut sorted: Vec<Key> = [A, B, C, D, &sha512, "zzz"]
            .iter()
            .map(|t| Key::parse(t))
            .collect();
        sorted.sort();
        let fanout = Fanout::new(&sorted);
        for (i, k) in sorted.iter().enumerate() {
            assert_eq!(fanout.find(&sorted, |k| k, k), Some(i), "{k}");
        }
        let absent = "sha256:00000000000000000000000000000000000000000000000000000000000000fe";
        for k in [absent, "sha256:1234", "aaa"] {
            assert_eq!(fanout.find(&sorted, |k| k, &Key::parse(k)), None, "{k}");
        }
        let empty: Vec<Key> = Vec::new();
        assert_eq!(
            Fanout::new(&empty).find(&empty, |k| k, &Key::parse(A)),
            None
        );
    }
}
