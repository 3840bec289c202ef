//! An entry's bytes as a bundle is read: files opened without ever waiting, bytes pumped in
//! chunks through a hasher or into the store, the length each header announced checked, and
//! where staged bytes go (straight into an ingest, or compressed into it). Used by
//! `entries.rs`, which decides what each entry is.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use rustix::fs::OFlags;

use super::files::refuse;
use super::gzip;
use crate::digest::{Algorithm, Digest, Hasher};
use crate::error::{Error, IoContext, Result};
use crate::store::Ingest;

/// Bytes read from the bundle per step.
pub(super) const CHUNK: usize = 256 * 1024;

/// Where staged bytes go: straight into the ingest, or through the gzip compressor into it
/// (the ingest then hashes the compressed bytes, and the entry's own digest is hashed on the
/// way in). Which one is decided by the first bytes (a layer already compressed is kept as it
/// is).
pub(super) enum StagedWriter {
    Undecided(Option<Ingest>, bool),
    Plain(Ingest),
    Gzip(Hasher, Box<flate2::write::GzEncoder<Ingest>>),
}

impl StagedWriter {
    pub(super) fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        if let StagedWriter::Undecided(ingest, compress) = self {
            let ingest = ingest.take().expect("undecided writer has its ingest");
            *self = if *compress && !gzip::is_gzip(chunk) && !gzip::is_zstd(chunk) {
                let raw = Algorithm::Sha256.hasher();
                StagedWriter::Gzip(raw, Box::new(gzip::encoder(ingest)))
            } else {
                StagedWriter::Plain(ingest)
            };
        }
        match self {
            StagedWriter::Plain(ingest) => ingest.write_all(chunk),
            StagedWriter::Gzip(raw, enc) => {
                enc.write_all(chunk)?;
                raw.update(chunk);
                Ok(())
            }
            StagedWriter::Undecided(..) => unreachable!(),
        }
    }
}

/// Opens a file without ever waiting, and describes what it opened. Opening a FIFO for reading
/// waits for a writer, possibly forever, so the file is opened non-blocking and judged by the
/// descriptor it got (a type checked by name before opening could be swapped in between); then
/// reads block as usual (a FIFO that no one writes reads as empty).
pub(super) fn open_no_wait(path: &Path) -> Result<(File, fs::Metadata)> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags((OFlags::NONBLOCK | OFlags::NOCTTY).bits() as i32)
        .open(path)
        .at("opening", path)?;
    let meta = file.metadata().at("reading", path)?;
    rustix::fs::fcntl_setfl(&file, OFlags::empty())
        .map_err(|e| Error::io_at("opening", path, e.into()))?;
    Ok((file, meta))
}

/// What a file that is neither a regular file nor a directory is, in words.
pub(super) fn special_kind(t: fs::FileType) -> Option<&'static str> {
    Some(if t.is_file() || t.is_dir() {
        return None;
    } else if t.is_symlink() {
        "a symbolic link"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else {
        "a special file"
    })
}

/// Reads an entry through without keeping it: its digest, and whether it starts like gzip.
pub(super) fn hash_through(
    path: &str,
    size: u64,
    r: &mut dyn Read,
    algorithm: Algorithm,
) -> Result<(Digest, bool)> {
    let mut h = algorithm.hasher();
    let (n, head) = pump(path, size, r, &mut |chunk| {
        h.update(chunk);
        Ok(())
    })?;
    check_length(path, n, size)?;
    Ok((h.finish(), gzip::is_gzip(&head)))
}

/// Reads up to `size` bytes in chunks; returns how many came and the first few.
pub(super) fn pump(
    path: &str,
    size: u64,
    r: &mut dyn Read,
    each: &mut dyn FnMut(&[u8]) -> io::Result<()>,
) -> Result<(u64, Vec<u8>)> {
    let mut buf = vec![0u8; CHUNK.min(size.max(1) as usize)];
    let mut r = r.take(size);
    let mut n = 0u64;
    let mut head = Vec::new();
    loop {
        let k = match r.read(&mut buf) {
            Ok(0) => return Ok((n, head)),
            Ok(k) => k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(refuse(path, format!("unreadable: {e}"))),
        };
        if head.len() < 8 {
            head.extend_from_slice(&buf[..k.min(8 - head.len())]);
        }
        each(&buf[..k]).ctx(|| format!("copying {path}"))?;
        n += k as u64;
    }
}

pub(super) fn check_length(path: &str, got: u64, want: u64) -> Result<()> {
    if got != want {
        return Err(refuse(
            path,
            format!("truncated: the bundle ends after {got} of its {want} bytes"),
        ));
    }
    Ok(())
}

pub(super) fn with_path(e: Error, path: &Path) -> Error {
    match e {
        Error::Io { context, source } => Error::Io {
            context: format!("{context} to {}", path.display()),
            source,
        },
        other => other,
    }
}
