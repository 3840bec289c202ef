//! How much of a blob a fetch from an upstream may read. Pure: sizes in, a decision out.
//!
//! The size given by the descriptor of the cached manifest that named the blob is the blob's
//! size: an upstream `Content-Length` that differs is refused before any byte is read, and a
//! body with no length (chunked) is cut one byte past it. A blob no cached manifest names (a
//! GET before its manifest was pulled) has only the upstream's word for its size, and that word
//! may be missing: it is held to a cap, the cache's budget or [`MAX_UNVOUCHED`], whichever is
//! less. Without these bounds an upstream that sends no length streamed into `tmp/` until the
//! digest check at the end, however long that was (2 GiB for a blob of 100,000 bytes).

/// The most a blob whose size no manifest vouches for may take, when the cache's budget does
/// not say less. Above the largest layers registries accept (ECR's 52,000 MiB).
pub const MAX_UNVOUCHED: u64 = 64 << 30;

/// Who says how large the blob is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The descriptor in a cached manifest that names the blob.
    Descriptor,
    /// The upstream's `Content-Length`, under the cap.
    Announced,
    /// Nobody: the cap.
    Cap,
}

/// The bytes a fetch may read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bound {
    /// Never read more than this.
    pub max: u64,
    /// Who set `max`. Unless it is the cap, the blob must have exactly `max` bytes.
    pub source: Source,
}

impl Bound {
    /// The size the blob must have, when someone says.
    pub fn exact(&self) -> Option<u64> {
        (self.source != Source::Cap).then_some(self.max)
    }

    /// Why no more than `max` bytes, for an error message.
    pub fn why(&self) -> &'static str {
        match self.source {
            Source::Descriptor => "its manifest's descriptor gives",
            Source::Announced => "it announced",
            Source::Cap => "a blob of unknown size may take",
        }
    }
}

/// The cap for blobs of unknown size, given the cache's budget.
pub fn cap(max_bytes: Option<u64>) -> u64 {
    max_bytes.map_or(MAX_UNVOUCHED, |b| b.min(MAX_UNVOUCHED))
}

/// The bound of a fetch, from the descriptor's size (if a cached manifest names the blob) and
/// the upstream's `Content-Length` (if it sent one); `Err` says why the answer is refused
/// before its body is read.
pub fn bound(descriptor: Option<u64>, announced: Option<u64>, cap: u64) -> Result<Bound, String> {
    match (descriptor, announced) {
        (Some(d), Some(a)) if a != d => Err(format!(
            "announced {a} bytes, but its manifest's descriptor gives {d}"
        )),
        (Some(d), _) => Ok(Bound {
            max: d,
            source: Source::Descriptor,
        }),
        (None, Some(a)) if a > cap => Err(format!(
            "announced {a} bytes, more than the {cap} a blob of unknown size may take"
        )),
        (None, Some(a)) => Ok(Bound {
            max: a,
            source: Source::Announced,
        }),
        (None, None) => Ok(Bound {
            max: cap,
            source: Source::Cap,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_descriptor_decides_and_a_different_length_is_refused() {
        let b = bound(Some(100_000), None, 1 << 20).unwrap();
        assert_eq!((b.max, b.exact()), (100_000, Some(100_000)));
        assert_eq!(bound(Some(100_000), Some(100_000), 1 << 20).unwrap(), b);
        let e = bound(Some(100_000), Some(100_001), 1 << 20).unwrap_err();
        assert!(e.contains("100001") && e.contains("100000"), "{e}");
        // The descriptor is the blob's size even above the cap: the manifest vouches for it.
        assert_eq!(bound(Some(5 << 20), None, 1 << 20).unwrap().max, 5 << 20);
    }

    #[test]
    fn without_a_descriptor_the_cap_bounds_what_the_upstream_says_or_does_not() {
        let b = bound(None, Some(300), 1000).unwrap();
        assert_eq!(
            (b.max, b.exact(), b.source),
            (300, Some(300), Source::Announced)
        );
        assert!(bound(None, Some(1001), 1000).is_err());
        let b = bound(None, None, 1000).unwrap();
        assert_eq!((b.max, b.exact(), b.source), (1000, None, Source::Cap));
    }

    #[test]
    fn the_cap_is_the_budget_when_that_is_less() {
        assert_eq!(cap(None), MAX_UNVOUCHED);
        assert_eq!(cap(Some(1 << 20)), 1 << 20);
        assert_eq!(cap(Some(u64::MAX)), MAX_UNVOUCHED);
    }
}
