//! Feeding an [`Ingest`] from async code: each chunk is written on a blocking thread while the
//! caller reads the next one (two in flight: one being read, one being written), and the file
//! is flushed to the disk behind the writes. The one part of the store that awaits; uploads and
//! proxy fills stream through it.
//!
//! Write-behind: once [`WRITE_BEHIND`] bytes were written since the last flush, an `fdatasync`
//! starts on a blocking thread of its own (on a second descriptor of the file; one at a time),
//! so the fsync that publishes the blob finds little left to write: the disk works while the
//! network does, not after it. (`sync_file_range` and `posix_fadvise` from the writing thread
//! were tried: they shortened that fsync, not the push; see bench/results/findings.md.) A
//! failed flush fails the stream: the kernel reports a write-back error to one `fsync` only, so
//! the publishing fsync might not see it again.

use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;

use super::ingest::{Ingest, Overflow};
use crate::error::{IoContext, Result};

/// Bytes written between two write-behind flushes (when the last one has finished).
const WRITE_BEHIND: u64 = 8 << 20;

/// An ingest written from async code, one chunk at a time on blocking threads.
///
/// The caller's loop: take a [`Self::buffer`], read a chunk into it, [`Self::wait`] for the
/// write before (so an error leaves no write running behind the caller's back), then
/// [`Self::write`] the chunk; at the end [`Self::flush`], and take the ingest back with
/// [`Self::into_ingest`] to finish it, keep it, or roll it back.
pub struct Pipeline {
    /// Back from its last write; `None` while a write holds it.
    ingest: Option<Ingest>,
    writing: Option<smol::Task<Step>>,
    /// The buffer the last write gave back, for the next chunk.
    spare: Option<Vec<u8>>,
    /// The file's length once the write in flight is done.
    len: u64,
    start: u64,
    max: u64,
    behind: WriteBehind,
}

/// A write done on a blocking thread: the ingest and the buffer come back with the outcome.
struct Step {
    ingest: Ingest,
    buf: Vec<u8>,
    /// Bytes of `buf` written.
    len: usize,
    result: io::Result<()>,
}

impl Pipeline {
    pub fn new(ingest: Ingest) -> Pipeline {
        Pipeline {
            len: ingest.len,
            start: ingest.start,
            max: ingest.max,
            behind: WriteBehind::new(&ingest),
            ingest: Some(ingest),
            writing: None,
            spare: None,
        }
    }

    /// A buffer of `size` bytes for the next chunk: the one the last write gave back, if any
    /// (still `size` bytes long: it is not filled again).
    pub fn buffer(&mut self, size: usize) -> Vec<u8> {
        let mut buf = self.spare.take().unwrap_or_default();
        buf.resize(size, 0);
        buf
    }

    /// Bytes written, or being written, since the ingest began.
    pub fn written(&self) -> u64 {
        self.len - self.start
    }

    /// Bytes the ingest may still take.
    pub fn room(&self) -> u64 {
        self.max.saturating_sub(self.len)
    }

    /// Starts writing the first `len` bytes of `buf` on a blocking thread; the write before
    /// must be over ([`Self::wait`]). A chunk that would take the ingest past its limit is
    /// refused here: nothing of it is written.
    pub fn write(&mut self, buf: Vec<u8>, len: usize) -> std::result::Result<(), Overflow> {
        let mut ingest = self.ingest.take().expect("the write before was waited for");
        if let Err(o) = ingest.check_fits(len as u64) {
            self.ingest = Some(ingest);
            return Err(o);
        }
        self.len += len as u64;
        self.writing = Some(smol::unblock(move || {
            let result = ingest.write_all(&buf[..len]);
            Step {
                ingest,
                buf,
                len,
                result,
            }
        }));
        Ok(())
    }

    /// Waits for the write in flight, if any: its bytes are then in the file, and hashed.
    /// Returns how many it wrote (0 if none was in flight).
    pub async fn wait(&mut self) -> Result<u64> {
        let Some(task) = self.writing.take() else {
            return Ok(0);
        };
        let Step {
            ingest,
            buf,
            len,
            result,
        } = task.await;
        self.len = ingest.len;
        let written = result.at("writing", ingest.path());
        self.ingest = Some(ingest);
        self.spare = Some(buf);
        written?;
        self.behind.wrote(len as u64).await?;
        Ok(len as u64)
    }

    /// Waits for the write and the flush in flight: everything written is in the file.
    pub async fn flush(&mut self) -> Result<()> {
        self.wait().await?;
        self.behind.finish().await
    }

    /// The ingest back, once no write holds it (after an error too: the caller decides).
    pub async fn into_ingest(mut self) -> Ingest {
        if let Some(task) = self.writing.take() {
            self.ingest = Some(task.await.ingest);
        }
        self.ingest.expect("no write holds the ingest")
    }
}

/// Flushes the file to the disk while more is written to it: one `fdatasync` at a time, on a
/// second descriptor of the file, each started once [`WRITE_BEHIND`] bytes were written since
/// the last.
struct WriteBehind {
    file: Option<Arc<File>>,
    path: PathBuf,
    unflushed: u64,
    running: Option<smol::Task<io::Result<()>>>,
}

impl WriteBehind {
    /// Without a second descriptor (out of descriptors), nothing is flushed early.
    fn new(ingest: &Ingest) -> WriteBehind {
        WriteBehind {
            file: ingest.file.try_clone().ok().map(Arc::new),
            path: ingest.path().to_path_buf(),
            unflushed: 0,
            running: None,
        }
    }

    /// `n` more bytes were written.
    async fn wrote(&mut self, n: u64) -> Result<()> {
        self.unflushed += n;
        if self.running.as_ref().is_some_and(|t| t.is_finished()) {
            self.finish().await?;
        }
        if self.running.is_none() && self.unflushed >= WRITE_BEHIND {
            if let Some(file) = self.file.clone() {
                self.unflushed = 0;
                self.running = Some(smol::unblock(move || file.sync_data()));
            }
        }
        Ok(())
    }

    /// Waits for the flush still running, if any.
    async fn finish(&mut self) -> Result<()> {
        match self.running.take() {
            Some(task) => task.await.at("flushing", &self.path),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::{Algorithm, Digest};
    use crate::store::{BlobStore, StoreConfig};

    #[test]
    fn chunks_written_in_flight_arrive_in_order_and_a_chunk_past_the_limit_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path(), &StoreConfig::Disk).unwrap();
        let mut ingest = store.ingest(Algorithm::Sha256).unwrap();
        ingest.limit(30 << 20);
        let data: Vec<u8> = (0..30u32 << 20).map(|i| (i % 251) as u8).collect();
        let done = smol::block_on(async {
            let mut pipe = Pipeline::new(ingest);
            let mut waited = 0;
            for chunk in data.chunks(1 << 20) {
                let mut buf = pipe.buffer(1 << 20);
                buf[..chunk.len()].copy_from_slice(chunk);
                waited += pipe.wait().await.unwrap();
                pipe.write(buf, chunk.len()).unwrap();
            }
            waited += pipe.wait().await.unwrap();
            assert_eq!(
                (waited, pipe.written(), pipe.room()),
                (30 << 20, 30 << 20, 0)
            );
            let o = pipe.write(vec![0], 1).unwrap_err();
            assert_eq!(o.allowed, 30 << 20);
            pipe.flush().await.unwrap();
            pipe.into_ingest().await
        });
        let done = done
            .finish_as(&Digest::sha256_of(&data), |_| panic!())
            .unwrap();
        assert_eq!(std::fs::read(done.staged.path()).unwrap(), data);
    }
}
