//! The files of a bundle once read (by `entries.rs`): where each path's bytes are (in memory,
//! staged in `tmp/`, or already in the registry), links resolved among the bundle's own
//! entries, and the staged files handed over to the registration batch.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::Read;
use std::path::Path;

use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::registry::Registry;
use crate::store::Staged;

const MAX_LINK_HOPS: usize = 8;

/// How the bundle came.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Container {
    Directory,
    Tar,
    GzipTar,
}

/// One regular file of the bundle.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Of the bytes as the bundle holds them.
    pub digest: Digest,
    pub size: u64,
    /// The bytes start like gzip.
    pub gzip: bool,
    pub body: Body,
}

#[derive(Clone, Debug)]
pub enum Body {
    /// Small metadata, in memory.
    Memory(Vec<u8>),
    /// Staged in `tmp/` under `digest`.
    Staged,
    /// A `blobs/` file whose digest the registry already holds: verified, not copied.
    Known,
    /// A docker layer tar, gzip-compressed as it was read (as a push would); the compressed
    /// bytes are staged under this digest. `Entry::digest` is then the uncompressed one.
    Compressed { digest: Digest, size: u64 },
    /// Read and hashed, not kept: no image can use it (see `entries.rs`, "What is staged").
    Skipped,
}

/// The files of a bundle, read.
pub struct Files {
    pub container: Container,
    pub(super) entries: BTreeMap<String, Entry>,
    pub(super) links: BTreeMap<String, String>,
    pub(super) staged: HashMap<Digest, Staged>,
}

pub(super) fn refuse(path: &str, why: impl std::fmt::Display) -> Error {
    Error::Bundle(format!("{path}: {why}"))
}

/// Why a [`Body::Skipped`] entry cannot be used.
pub(super) fn not_kept(path: &str) -> Error {
    refuse(
        path,
        "was not kept: it is neither under blobs/ nor a .tar layer, and larger than a config \
         may be",
    )
}

pub(super) fn mismatch(path: &str, got: &Digest, want: &Digest) -> Error {
    refuse(
        path,
        format!("digest mismatch: content is {got}, expected {want}"),
    )
}

impl Files {
    /// The entry at `path`, following links among the bundle's own entries.
    pub fn get(&self, path: &str) -> Result<Option<(&str, &Entry)>> {
        let mut at = path;
        for _ in 0..MAX_LINK_HOPS {
            if let Some((p, e)) = self.entries.get_key_value(at) {
                return Ok(Some((p.as_str(), e)));
            }
            match self.links.get(at) {
                Some(next) => at = next,
                None => return Ok(None),
            }
        }
        Err(refuse(path, "a chain of links too long (or a loop)"))
    }

    /// The `blobs/<algorithm>/<encoded>` entry of a digest. Through a link it may be another
    /// file: it must then still have the digest its name says.
    pub fn blob(&self, d: &Digest) -> Result<Option<(String, &Entry)>> {
        let path = blob_path(d);
        match self.get(&path)? {
            Some((_, e)) if &e.digest != d => Err(mismatch(&path, &e.digest, d)),
            Some((_, e)) => Ok(Some((path, e))),
            None => Ok(None),
        }
    }

    pub fn has(&self, path: &str) -> bool {
        self.entries.contains_key(path) || self.links.contains_key(path)
    }

    /// An entry's bytes, if there are at most `limit`.
    pub fn bytes(&self, path: &str, e: &Entry, registry: &Registry, limit: u64) -> Result<Vec<u8>> {
        if e.size > limit {
            return Err(refuse(
                path,
                format!("{} bytes; the limit is {limit}", e.size),
            ));
        }
        match &e.body {
            Body::Memory(b) => Ok(b.clone()),
            Body::Known => registry.read_blob(&e.digest),
            Body::Staged => {
                let p = self.staged_path(&e.digest, path)?;
                fs::read(p).at("reading", p)
            }
            Body::Compressed { .. } => Err(refuse(path, "is a layer, not a metadata file")),
            Body::Skipped => Err(not_kept(path)),
        }
    }

    /// Opens an entry's bytes as the bundle holds them.
    pub fn open(&self, path: &str, e: &Entry, registry: &Registry) -> Result<Box<dyn Read + Send>> {
        match &e.body {
            Body::Known => registry.open_blob(&e.digest),
            Body::Staged => {
                let p = self.staged_path(&e.digest, path)?;
                Ok(Box::new(File::open(p).at("opening", p)?))
            }
            Body::Memory(_) | Body::Compressed { .. } => {
                Err(refuse(path, "cannot be opened as a blob"))
            }
            Body::Skipped => Err(not_kept(path)),
        }
    }

    fn staged_path(&self, d: &Digest, path: &str) -> Result<&Path> {
        self.staged
            .get(d)
            .map(Staged::path)
            .ok_or_else(|| refuse(path, "was not kept"))
    }

    /// Adds a staged file made while planning (a generated manifest, a compressed layer).
    pub fn add_staged(&mut self, d: Digest, s: Staged) {
        self.staged.entry(d).or_insert(s);
    }

    /// Hands a staged file over to the registration batch.
    pub fn take_staged(&mut self, d: &Digest) -> Option<Staged> {
        self.staged.remove(d)
    }
}

pub fn blob_path(d: &Digest) -> String {
    format!("blobs/{}/{}", d.algorithm().name(), d.hex())
}
