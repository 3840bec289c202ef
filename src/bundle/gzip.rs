//! Gzip, the way atoll writes and recognises it: magic-byte detection, and the layer
//! compressor a docker archive's layers go through on import (as a `docker push` would).
//!
//! The compressor is fixed (flate2's pure-Rust miniz_oxide, level 1, no file name, mtime 0), so
//! the same layer always compresses to the same bytes and importing the same archive twice
//! gives the same digests. Level 1: several times level 6's speed for a few points of size on
//! real binaries (the figures: README, "Docker archives").

use std::io::{self, Read, Write};

use flate2::write::GzEncoder;
use flate2::{Compression, GzBuilder};

use crate::digest::{Algorithm, Digest};

pub const LEVEL: u32 = 1;

pub fn is_gzip(head: &[u8]) -> bool {
    head.starts_with(&[0x1f, 0x8b])
}

pub fn is_zstd(head: &[u8]) -> bool {
    head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
}

/// The deterministic gzip writer layers are compressed with.
pub fn encoder<W: Write>(w: W) -> GzEncoder<W> {
    GzBuilder::new().mtime(0).write(w, Compression::new(LEVEL))
}

/// The sha256 and size of what a gzip stream decompresses to (to check a compressed layer
/// against its config's `diff_ids`).
pub fn uncompressed_digest(r: impl Read) -> io::Result<(Digest, u64)> {
    let mut dec = flate2::read::GzDecoder::new(r);
    let mut h = Algorithm::Sha256.hasher();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = dec.read(&mut buf)?;
        if n == 0 {
            return Ok((h.finish(), size));
        }
        h.update(&buf[..n]);
        size += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_is_deterministic_and_round_trips() {
        let data: Vec<u8> = (0..100_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let gz = |d: &[u8]| {
            let mut e = encoder(Vec::new());
            e.write_all(d).unwrap();
            e.finish().unwrap()
        };
        let (a, b) = (gz(&data), gz(&data));
        assert_eq!(a, b, "same input, same gzip bytes");
        assert!(is_gzip(&a));
        let (d, n) = uncompressed_digest(&a[..]).unwrap();
        assert_eq!((d, n), (Digest::sha256_of(&data), data.len() as u64));
    }
}
