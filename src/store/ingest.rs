//! Ingest: the one way bytes are written into the store before they may become a blob.
//!
//! An [`Ingest`] is a file being written whose bytes are hashed as they are written. Only what
//! the file took is hashed, so the hash always describes the file. It is bounded: a write that
//! would take it past its limit fails, writing nothing. And it is checked when finished: the
//! file must hold exactly the bytes hashed and, when the caller expects a digest, hash to it;
//! only then is it fsynced and handed out as a [`Staged`] file, ready to publish. It implements
//! `std::io::Write`, so it can sit under an encoder (a docker layer is gzip-compressed into
//! one), and it is `Send`, so async callers move it into `smol::unblock` (the [`Pipeline`] of
//! `pipeline.rs` does that for them).
//!
//! A new ingest writes a temporary file, deleted unless published. A [`Resumable`] is an
//! upload's file between requests, with the length and hash of what it holds: each request
//! continues it with an ingest that its session then keeps ([`Resumable::keep`]) or cuts back
//! ([`Ingest::rollback`]), so every request is all or nothing.
//!
//! Everything here blocks.
//!
//! [`Pipeline`]: super::Pipeline

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use super::{check_room, remove_if_exists, BlobStore, Staged};
use crate::digest::{Algorithm, Digest, Hasher};
use crate::error::{Error, IoContext, Result};

/// Bytes read per step when a file is hashed from the disk.
const CHUNK: usize = 1 << 20;

/// A file being written, hashed as it is written.
pub struct Ingest {
    pub(super) file: File,
    /// The file's path. Deleted when dropped for a temporary file; kept for an upload's file,
    /// which its session owns.
    staged: Staged,
    hasher: Hasher,
    /// The file's length when this ingest began: where a rollback cuts it back to.
    pub(super) start: u64,
    /// The file's length now: `start` and what this ingest wrote, every byte of it hashed.
    pub(super) len: u64,
    /// The length the file may reach.
    pub(super) max: u64,
}

/// A write that would have taken an ingest past its limit: nothing of it was written.
#[derive(Clone, Copy, Debug)]
pub struct Overflow {
    /// Bytes the ingest may take in all, from where it began.
    pub allowed: u64,
}

impl fmt::Display for Overflow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "more than the {} bytes allowed", self.allowed)
    }
}

impl std::error::Error for Overflow {}

/// A finished ingest: what its content hashes to, its length, and the checked, fsynced file.
pub struct Finished {
    pub digest: Digest,
    pub len: u64,
    pub staged: Staged,
}

impl BlobStore {
    /// A new temporary file to write `algorithm`-hashed bytes into, unbounded until
    /// [`Ingest::limit`]. Deleted when dropped unless published.
    pub fn ingest(&self, algorithm: Algorithm) -> Result<Ingest> {
        let staged = self.temp_file()?;
        let file = File::create(staged.path()).at("creating", staged.path())?;
        Ok(Ingest {
            file,
            staged,
            hasher: algorithm.hasher(),
            start: 0,
            len: 0,
            max: u64::MAX,
        })
    }

    /// [`Self::ingest`] for `needed` bytes that `what` announced: refused at once when the disk
    /// has less room ([`check_room`]), before any file is made.
    pub fn ingest_for(&self, needed: u64, what: &str, algorithm: Algorithm) -> Result<Ingest> {
        check_room(&self.layout.tmp_dir(), needed, what)?;
        self.ingest(algorithm)
    }

    /// Creates the empty file of upload `id`, hashed in `algorithm` as it grows.
    pub fn create_upload_file(&self, id: &str, algorithm: Algorithm) -> Result<Resumable> {
        let path = self.layout.upload(id);
        File::create(&path).at("creating upload", &path)?;
        Ok(Resumable {
            path,
            len: 0,
            hasher: algorithm.hasher(),
        })
    }

    /// Upload `id` as its file holds it (after a restart): its bytes hashed again, in sha256
    /// (the algorithm of every session that has an index row). `None` if it has no file.
    pub fn recover_upload_file(&self, id: &str) -> Result<Option<Resumable>> {
        let path = self.layout.upload(id);
        let mut hasher = Algorithm::Sha256.hasher();
        let len = match hash_file(&path, &mut hasher) {
            Ok(len) => len,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io_at("reading upload", &path, e)),
        };
        Ok(Some(Resumable { path, len, hasher }))
    }
}

impl Ingest {
    /// Lets the file take at most `allowed` bytes more than it held when this ingest began.
    pub fn limit(&mut self, allowed: u64) {
        self.max = self.start.saturating_add(allowed);
    }

    /// Bytes this ingest wrote (and hashed).
    pub fn written(&self) -> u64 {
        self.len - self.start
    }

    /// Bytes the file may still take.
    pub fn room(&self) -> u64 {
        self.max.saturating_sub(self.len)
    }

    /// Where the bytes are (for messages).
    pub fn path(&self) -> &Path {
        self.staged.path()
    }

    /// A handle that reads the file from its start while it grows, and goes on reading the
    /// same bytes once it is published (a rename keeps the file).
    pub fn reader(&self) -> Result<File> {
        File::open(self.path()).at("opening", self.path())
    }

    /// The overflow that writing `n` more bytes would be, if it would.
    pub(super) fn check_fits(&self, n: u64) -> std::result::Result<(), Overflow> {
        match n <= self.room() {
            true => Ok(()),
            false => Err(Overflow {
                allowed: self.max.saturating_sub(self.start),
            }),
        }
    }

    /// Checks the file (it holds exactly the bytes hashed) and fsyncs it. Its digest is what
    /// it hashes to: for content named by its own hash (a bundle's layer, a compressed copy).
    pub fn finish(self) -> Result<Finished> {
        self.finish_if(|_| Ok(()))
    }

    /// [`Self::finish`] for content that must hash to `expected`: anything else is refused
    /// with the error `mismatch` makes from the digest it has, before the file is fsynced.
    pub fn finish_as(
        self,
        expected: &Digest,
        mismatch: impl FnOnce(&Digest) -> Error,
    ) -> Result<Finished> {
        self.finish_if(|digest| match digest == expected {
            true => Ok(()),
            false => Err(mismatch(digest)),
        })
    }

    /// Finishes the ingest if `accept` takes its digest.
    fn finish_if(self, accept: impl FnOnce(&Digest) -> Result<()>) -> Result<Finished> {
        let Ingest {
            file,
            mut staged,
            hasher,
            len,
            ..
        } = self;
        let digest = hasher.finish();
        accept(&digest)?;
        seal(&file, staged.path(), len)?;
        staged.keep = false;
        Ok(Finished {
            digest,
            len,
            staged,
        })
    }

    /// Cuts the file back to the length it had when this ingest began: a failed request
    /// leaves its upload as it found it. (A temporary file simply goes when dropped.)
    pub fn rollback(self) -> Result<()> {
        self.file
            .set_len(self.start)
            .at("rolling back", self.staged.path())
    }
}

impl Write for Ingest {
    /// Writes and hashes what the file takes; a write past the limit fails (the error's
    /// source is an [`Overflow`]) and writes nothing.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.check_fits(buf.len() as u64)
            .map_err(|o| io::Error::new(io::ErrorKind::FileTooLarge, o))?;
        let n = self.file.write(buf)?;
        // Hash only what was written, so the hash always matches the file.
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(()) // nothing is buffered; `finish` fsyncs
    }
}

/// An upload's file between requests, with the length and hash of what it holds: what an
/// ingest needs to continue it. The session keeps it; every request resumes it.
#[derive(Clone)]
pub struct Resumable {
    path: PathBuf,
    len: u64,
    hasher: Hasher,
}

impl Resumable {
    /// Bytes the file holds (all of them hashed).
    pub fn offset(&self) -> u64 {
        self.len
    }

    /// An ingest appending to the file, from a copy of its hash. `announced` is what the
    /// request says it brings: refused at once if the disk cannot hold it, and the ingest takes
    /// no more.
    pub fn resume(&self, announced: Option<u64>) -> Result<Ingest> {
        if let Some(needed) = announced {
            check_room(&self.path, needed, "the upload")?;
        }
        // Appending: a write that lands behind the session's back (a request dropped while its
        // write ran) can only make the file longer than what was hashed, which `finish` refuses.
        let file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => Error::Corrupt(format!(
                    "upload file {} vanished (purged as stale?)",
                    self.path.display()
                )),
                _ => Error::io_at("opening upload", &self.path, e),
            })?;
        let mut ingest = Ingest {
            file,
            staged: Staged {
                path: self.path.clone(),
                keep: true,
                in_engine: false,
            },
            hasher: self.hasher.clone(),
            start: self.len,
            len: self.len,
            max: u64::MAX,
        };
        if let Some(n) = announced {
            ingest.limit(n);
        }
        Ok(ingest)
    }

    /// Takes back an ingest of this file whose bytes stay: the next one continues after them.
    pub fn keep(&mut self, ingest: Ingest) {
        debug_assert_eq!(ingest.path(), self.path);
        self.len = ingest.len;
        self.hasher = ingest.hasher;
    }

    /// The file as a blob of `expected`, if its bytes hash to it (a digest in another
    /// algorithm than the one hashed as they came re-reads the file) and it holds exactly the
    /// bytes hashed (a file that grew or shrank behind its session's back is not a blob); else
    /// the error `mismatch` makes from the digest it has. Fsynced; the staged file is the
    /// upload's own, deleted if dropped unpublished.
    pub fn finish(
        &self,
        expected: &Digest,
        mismatch: impl FnOnce(&Digest) -> Error,
    ) -> Result<Staged> {
        let digest = if expected.algorithm() == self.hasher.algorithm() {
            self.hasher.clone().finish()
        } else {
            let mut h = expected.algorithm().hasher();
            hash_file(&self.path, &mut h).at("reading upload", &self.path)?;
            h.finish()
        };
        if &digest != expected {
            return Err(mismatch(&digest));
        }
        let file = File::open(&self.path).at("opening", &self.path)?;
        seal(&file, &self.path, self.len)?;
        Ok(Staged {
            path: self.path.clone(),
            keep: false,
            in_engine: false,
        })
    }

    /// Deletes the file (the upload was cancelled or failed).
    pub fn remove(&self) -> Result<()> {
        remove_if_exists(&self.path)
    }
}

/// Refuses a file that does not hold exactly the `hashed` bytes; fsyncs it.
fn seal(file: &File, path: &Path, hashed: u64) -> Result<()> {
    let len = file.metadata().at("reading", path)?.len();
    if len != hashed {
        return Err(Error::Corrupt(format!(
            "{} holds {len} bytes, but {hashed} were hashed: not published",
            path.display()
        )));
    }
    file.sync_all().at("syncing", path)
}

/// Feeds a whole file to `hasher`; returns its length.
pub fn hash_file(path: &Path, hasher: &mut Hasher) -> io::Result<u64> {
    hash_reader(&mut File::open(path)?, hasher)
}

/// Feeds everything `f` reads to `hasher`; returns how many bytes that was.
pub fn hash_reader(f: &mut dyn Read, hasher: &mut Hasher) -> io::Result<u64> {
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(total);
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreConfig;

    fn store() -> (BlobStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        (
            BlobStore::open(dir.path(), &StoreConfig::Disk).unwrap(),
            dir,
        )
    }

    fn wrong(got: &Digest) -> Error {
        Error::DigestInvalid(format!("got {got}"))
    }

    #[test]
    fn a_write_past_the_limit_fails_and_writes_nothing() {
        let (store, _dir) = store();
        let mut ingest = store.ingest(Algorithm::Sha256).unwrap();
        ingest.limit(10);
        ingest.write_all(b"12345678").unwrap();
        let e = ingest.write_all(b"abc").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::FileTooLarge);
        assert_eq!(e.to_string(), "more than the 10 bytes allowed");
        ingest.write_all(b"90").unwrap();
        assert_eq!((ingest.written(), ingest.room()), (10, 0));
        let path = ingest.path().to_owned();
        let done = ingest
            .finish_as(&Digest::sha256_of(b"1234567890"), wrong)
            .unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"1234567890");
        assert_eq!(done.len, 10);
    }

    #[test]
    fn a_temporary_ingest_that_is_not_published_leaves_nothing() {
        let (store, _dir) = store();
        let mut ingest = store.ingest(Algorithm::Sha256).unwrap();
        ingest.write_all(b"abc").unwrap();
        let path = ingest.path().to_owned();
        let e = ingest
            .finish_as(&Digest::sha256_of(b"xyz"), wrong)
            .err()
            .unwrap();
        assert!(e
            .to_string()
            .contains(&Digest::sha256_of(b"abc").to_string()));
        assert!(!path.exists(), "a mismatch drops the file");

        let mut ingest = store.ingest(Algorithm::Sha256).unwrap();
        ingest.write_all(b"abc").unwrap();
        let done = ingest.finish().unwrap();
        assert_eq!(done.digest, Digest::sha256_of(b"abc"));
        let path = done.staged.path().to_owned();
        drop(done);
        assert!(!path.exists(), "finished but not published: dropped");
    }

    #[test]
    fn an_upload_resumes_where_it_ends_and_a_rollback_cuts_back_only_its_own_bytes() {
        let (store, _dir) = store();
        let mut upload = store.create_upload_file("0a", Algorithm::Sha256).unwrap();
        let mut first = upload.resume(None).unwrap();
        first.write_all(b"hello ").unwrap();
        upload.keep(first);
        let mut second = upload.resume(Some(5)).unwrap();
        assert!(second.write_all(b"world!").is_err(), "announced 5");
        second.write_all(b"wor").unwrap();
        second.rollback().unwrap();
        assert_eq!(upload.offset(), 6);
        let mut third = upload.resume(Some(5)).unwrap();
        third.write_all(b"world").unwrap();
        upload.keep(third);
        let path = store.layout().upload("0a");
        assert_eq!(std::fs::read(&path).unwrap(), b"hello world");
        // After a restart, the same state from the file alone.
        let recovered = store.recover_upload_file("0a").unwrap().unwrap();
        assert_eq!(recovered.offset(), 11);
        let sha512 = Digest::of(Algorithm::Sha512, b"hello world");
        for u in [&upload, &recovered] {
            for d in [Digest::sha256_of(b"hello world"), sha512.clone()] {
                drop(u.finish(&d, wrong).unwrap());
                assert!(!path.exists(), "an unpublished finish deletes the upload");
                std::fs::write(&path, b"hello world").unwrap();
            }
        }
        assert!(store.recover_upload_file("0b").unwrap().is_none());
    }

    #[test]
    fn a_file_longer_or_shorter_than_what_was_hashed_is_not_staged() {
        let (store, _dir) = store();
        let mut upload = store.create_upload_file("0a", Algorithm::Sha256).unwrap();
        let mut ingest = upload.resume(None).unwrap();
        ingest.write_all(b"hashed").unwrap();
        upload.keep(ingest);
        let path = store.layout().upload("0a");
        let digest = Digest::sha256_of(b"hashed");
        for behind_its_back in [&b"hashed, then more"[..], b"hash"] {
            std::fs::write(&path, behind_its_back).unwrap();
            let e = upload.finish(&digest, wrong).err().unwrap();
            let holds = format!("holds {} bytes, but 6", behind_its_back.len());
            assert!(e.to_string().contains(&holds), "{e}");
            assert!(
                path.exists(),
                "the session's owner decides what becomes of the file"
            );
        }
        std::fs::write(&path, b"hashed").unwrap();
        let staged = upload.finish(&digest, wrong).unwrap();
        store.publish(staged, &digest).unwrap();
        assert_eq!(store.stat(&digest).unwrap(), Some(6));
    }
}
