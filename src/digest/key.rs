//! Digests in a fixed 40 bytes, and finding one among millions of them.
//!
//! Garbage collection holds every blob row and every edge at once: their digests as text were
//! most of its memory (findings.md, "How cost grows, continued"). A [`Key`] keeps a sha256
//! digest as its 32 bytes and anything else (sha512, a row no parser would accept) as its
//! text, so a key is always exactly the text it was made from and turns back into it.
//! [`Fanout`] finds keys in a sorted slice without a hash map beside it.

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
            Key::Sha256(bytes) => write!(f, "sha256:{}", super::to_hex(bytes)),
            Key::Other(text) => f.write_str(text),
        }
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Where each prefix of the sha256 keys of a sorted slice starts, as git's pack index has
/// for 8 bits; here as many bits as the slice has keys, about: a key is then found with two
/// reads, its prefix's entry and its row (a bucket holds one key on average), where a binary
/// search of the whole slice misses the cache at each step, and in a few bytes a row where a
/// hash map beside the rows took several times that. sha256 digests are spread evenly, and
/// no one can choose them: a crowded prefix only costs its search a step more. Keys of other
/// algorithms come after and are searched among themselves.
pub struct Fanout {
    /// How many leading bits of a key pick its entry (8 to 24).
    bits: u32,
    /// `starts[p]`: the first position whose key's prefix is at least `p`; the last entry:
    /// where the other keys begin.
    starts: Box<[u32]>,
}

/// A key's first 32 bits.
fn top(bytes: &[u8; 32]) -> u32 {
    u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

impl Fanout {
    /// Over `keys`, sorted (at most 2^32 of them), read twice.
    pub fn new<'a, I>(keys: I) -> Fanout
    where
        I: IntoIterator<Item = &'a Key>,
        I::IntoIter: Clone,
    {
        let keys = keys.into_iter();
        let sha256 = keys.clone().filter(|k| matches!(k, Key::Sha256(_))).count();
        let bits = sha256.max(1).ilog2().clamp(8, 24);
        let mut starts = vec![0u32; (1 << bits) + 1];
        for k in keys {
            if let Key::Sha256(bytes) = k {
                starts[(top(bytes) >> (32 - bits)) as usize + 1] += 1;
            }
        }
        for p in 1..starts.len() {
            starts[p] += starts[p - 1];
        }
        Fanout {
            bits,
            starts: starts.into_boxed_slice(),
        }
    }

    /// The position of `key` in `sorted` (the slice this was made over), found by `key_of`.
    pub fn find<T>(&self, sorted: &[T], key_of: impl Fn(&T) -> &Key, key: &Key) -> Option<usize> {
        let (lo, hi) = match key {
            Key::Sha256(bytes) => {
                let p = (top(bytes) >> (32 - self.bits)) as usize;
                (self.starts[p] as usize, self.starts[p + 1] as usize)
            }
            Key::Other(_) => (self.starts[self.starts.len() - 1] as usize, sorted.len()),
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
        // Enough keys for a wider prefix than 8 bits, some sharing their first bytes.
        let mut many: Vec<Key> = (0..5000u32)
            .map(|i| Key::of(&Digest::sha256_of(&i.to_le_bytes())))
            .chain((0..50u8).map(|i| {
                let mut b = [0xab; 32];
                b[31] = i;
                Key::Sha256(b)
            }))
            .collect();
        many.sort();
        let fanout = Fanout::new(&many);
        assert!(fanout.bits > 8);
        for (i, k) in many.iter().enumerate() {
            assert_eq!(fanout.find(&many, |k| k, k), Some(i), "{k}");
        }
        let absent = Key::of(&Digest::sha256_of(b"not among them"));
        assert_eq!(fanout.find(&many, |k| k, &absent), None);
        let empty: Vec<Key> = Vec::new();
        assert_eq!(
            Fanout::new(&empty).find(&empty, |k| k, &Key::parse(A)),
            None
        );
    }
}
