//! The engine interface: where published blobs live, behind one trait with two engines, the
//! data directory's `blobs/` (`disk.rs`, the default) and an S3 bucket (`object.rs`).
//!
//! Bytes are hashed and checked before an engine gets them: staged in the data directory
//! (`tmp/`, `uploads/`: `mod.rs`, `ingest.rs`), or, for an upload into the bucket, checked as
//! they stream into it (`multipart.rs`), whose finished upload is already at the blob's key
//! ([`Staged::in_engine`]). Publishing is two steps so that an engine whose writes are slow (a
//! network away) never holds the index's write lock while it writes: [`Engine::send`] before
//! the index transaction that records the blob (nothing for the disk; the upload to the bucket),
//! [`Engine::commit`] inside it (the rename into `blobs/`; a check that the object is there),
//! so garbage collection, which deletes only inside its own transactions after checking that
//! no row names the blob, can never take a blob between its commit and its row.
//!
//! Every call blocks.

use std::fs::File;
use std::io::{self, Read};
use std::time::Duration;

use http_types::Url;

use super::Staged;
use crate::digest::Digest;
use crate::error::Result;

/// A blob's size and last change.
#[derive(Clone, Debug)]
pub struct BlobFile {
    pub digest: Digest,
    pub size: u64,
    /// Seconds since the epoch.
    pub modified: i64,
}

pub trait Engine: Send + Sync {
    /// Where the blobs are, for messages and the log (`disk /srv/atoll/blobs`).
    fn describe(&self) -> String;

    /// Fails when the engine cannot serve (readiness, startup): the bucket is unreachable.
    fn check(&self) -> Result<()>;

    /// A blob's size and time, or `None` if there is none.
    fn stat(&self, digest: &Digest) -> Result<Option<BlobFile>>;

    /// A blob's bytes (manifests, configs: small).
    fn read(&self, digest: &Digest) -> Result<Vec<u8>>;

    /// A blob opened to be streamed.
    fn open(&self, digest: &Digest) -> Result<Opened>;

    /// Publishing, step one, outside any index transaction: makes the staged file's bytes
    /// available to [`Self::commit`]. The caller has verified them against `digest`.
    fn send(&self, staged: &Staged, digest: &Digest) -> Result<()>;

    /// Publishing, step two, inside the index transaction that records the blob: after it,
    /// the blob is readable. Fails if the bytes are not there (a collection took them
    /// between the steps): the transaction rolls back and the client pushes again.
    fn commit(&self, staged: Staged, digest: &Digest) -> Result<()>;

    /// Every blob's digest, read from names alone, in no particular order, handed to `each`
    /// as it is read (a million of them are held by whoever needs them, in the form it needs).
    fn list(&self, each: &mut dyn FnMut(Digest)) -> Result<()>;

    /// Deletes blobs one after another (collection, once their rows are gone).
    fn deleter(&self) -> Box<dyn Deleter + '_>;

    /// Moves a damaged blob out of the way (`--verify --repair`), keeping its bytes for a look.
    fn quarantine(&self, digest: &Digest) -> Result<()>;

    /// A short-lived URL a client may fetch the blob from directly (`--blob-redirect`), if
    /// the engine has such URLs.
    fn presign(&self, _digest: &Digest, _valid: Duration) -> Option<Url> {
        None
    }
}

pub trait Deleter {
    /// Deletes a blob: `false` if there was none.
    fn delete(&mut self, digest: &Digest) -> Result<bool>;
}

/// A blob opened for reading.
pub enum Opened {
    /// A file on the local disk: read at offsets, or sent by the connection's task.
    File(File),
    /// An object in a bucket: its bytes come as an HTTP answer's body.
    Remote(Remote),
}

/// A blob in a bucket, not yet asked for: the caller says which bytes it wants.
pub struct Remote {
    pub(super) s3: std::sync::Arc<crate::s3::S3>,
    pub(super) key: String,
}

impl Remote {
    /// `len` bytes from `start` (the whole blob: `(0, size)` with the size its row gives),
    /// streamed: exactly `len` bytes, or a read error (an object shorter than its row must cut
    /// the download, not end it early as if complete).
    pub async fn fetch(&self, start: u64, len: u64) -> Result<http_types::Body> {
        let body = self.get(Some((start, len))).await?;
        Ok(http_types::Body::from_reader(
            smol::io::BufReader::new(Exact { body, left: len }),
            usize::try_from(len).ok(),
        ))
    }

    /// The object's bytes (a range of them), as the bucket sends them.
    async fn get(&self, range: Option<(u64, u64)>) -> Result<http_types::Body> {
        let res = self.s3.get(&self.key, range).await?;
        let mut res = res.ok_or_else(|| {
            crate::error::Error::Corrupt(format!(
                "blob object {} is in the index but not in {}; run atoll --verify",
                self.key,
                self.s3.label()
            ))
        })?;
        Ok(res.take_body())
    }
}

impl Opened {
    /// The whole blob as a blocking reader, whichever engine holds it.
    pub fn reader(self) -> Result<Box<dyn Read + Send>> {
        match self {
            Opened::File(f) => Ok(Box::new(f)),
            Opened::Remote(r) => {
                let body = smol::block_on(r.get(None))?;
                Ok(Box::new(BlockingBody(body)))
            }
        }
    }
}

/// An answer's body read from a blocking thread.
struct BlockingBody(http_types::Body);

impl Read for BlockingBody {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use smol::io::AsyncReadExt;
        smol::block_on(self.0.read(buf))
    }
}

/// A body that must bring exactly `left` more bytes: ending sooner is an error.
struct Exact {
    body: http_types::Body,
    left: u64,
}

impl smol::io::AsyncRead for Exact {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut [u8],
    ) -> std::task::Poll<io::Result<usize>> {
        let room = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        if room == 0 {
            return std::task::Poll::Ready(Ok(0));
        }
        let n =
            std::task::ready!(std::pin::Pin::new(&mut self.body).poll_read(cx, &mut buf[..room]))?;
        if n == 0 {
            return std::task::Poll::Ready(Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the object ended {} bytes short", self.left),
            )));
        }
        self.left -= n as u64;
        std::task::Poll::Ready(Ok(n))
    }
}
