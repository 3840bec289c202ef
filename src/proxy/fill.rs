//! One upstream fetch per blob, however many clients ask at once, with every client receiving
//! the bytes as they arrive.
//!
//! A [`Fill`] is a blob on its way from upstream into the cache: the fetching task appends to
//! a temporary file and announces progress; each client reads that file with its own offset
//! (`pread` on one shared handle, so the file may be renamed into `blobs/` while they read) and
//! waits for more when it has caught up. A fill that fails (upstream gone mid-blob, wrong
//! size, wrong digest) fails every client still reading it, and nothing is cached.
//!
//! No reader gets the blob's last byte before the whole blob has been hashed and found to
//! match its digest: the newest byte written is always held back until the fetch says the
//! blob verified. So a corrupt blob never reaches a client as a complete body, whether it
//! started the fill or joined it: with a `Content-Length` the client sees a short body and
//! the connection closed, a chunked body never gets its last chunk. (Bytes handed out before
//! the end cannot be taken back; what makes them useless to a client is that the body never
//! completes.)

use std::collections::HashMap;
use std::fs::File;
use std::future::Future;
use std::io;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use event_listener::{Event, EventListener};
use smol::io::{AsyncBufRead, AsyncRead};

use crate::digest::Digest;
use crate::error::{Error, Result};

/// Fills in progress, by digest.
#[derive(Default)]
pub struct Fills {
    live: Mutex<HashMap<Digest, Arc<Fill>>>,
}

impl Fills {
    /// Joins the fill of `digest` if one runs; otherwise registers `fill` (made by `make`) and
    /// returns it with `true`: the caller must then run the fetch.
    pub fn join_or_start(
        &self,
        digest: &Digest,
        make: impl FnOnce() -> Result<Fill>,
    ) -> Result<(Arc<Fill>, bool)> {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = live.get(digest) {
            return Ok((f.clone(), false));
        }
        let f = Arc::new(make()?);
        live.insert(digest.clone(), f.clone());
        Ok((f, true))
    }

    /// The fill of `digest`, if one runs (for HEAD requests: its size, without joining).
    pub fn get(&self, digest: &Digest) -> Option<Arc<Fill>> {
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(digest)
            .cloned()
    }

    /// Forgets a finished fill: later requests find the blob in the store, or start afresh.
    pub fn remove(&self, digest: &Digest) {
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(digest);
    }

    pub fn len(&self) -> usize {
        self.live.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Bytes at the end of what was written that readers do not get until the blob verified. One
/// is enough: a body short of one byte is as incomplete as one short of a megabyte, and the
/// readers that caught up are kept only one byte behind the upstream.
const HELD_BACK: u64 = 1;

#[derive(Default)]
struct State {
    /// `Some(len)` once the upstream answered; `len` is `None` if it did not say.
    size: Option<Option<u64>>,
    written: u64,
    /// The whole blob is in and hashes to its digest: readers may have all of it.
    verified: bool,
    /// Why the fill failed, once it has (before it verified).
    failed: Option<String>,
}

impl State {
    /// Bytes readers may have: all of them once the blob verified, else all but the last.
    fn readable(&self) -> u64 {
        if self.verified {
            self.written
        } else {
            self.written.saturating_sub(HELD_BACK)
        }
    }
}

pub struct Fill {
    /// The temporary file, open for reading, shared by every reader.
    file: Arc<File>,
    state: Mutex<State>,
    changed: Event,
}

impl Fill {
    /// A fill reading from `file` (the temporary file the fetch writes to).
    pub fn new(file: File) -> Fill {
        Fill {
            file: Arc::new(file),
            state: Mutex::new(State::default()),
            changed: Event::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    // ---- the fetching side ----

    /// The upstream answered: the blob has `len` bytes (if it said).
    pub fn set_size(&self, len: Option<u64>) {
        self.state().size = Some(len);
        self.changed.notify(usize::MAX);
    }

    /// `n` more bytes are in the file.
    pub fn advance(&self, n: u64) {
        self.state().written += n;
        self.changed.notify(usize::MAX);
    }

    /// Every byte is in and the blob hashes to its digest: readers get the rest and end.
    pub fn verified(&self) {
        self.state().verified = true;
        self.changed.notify(usize::MAX);
    }

    /// The fill failed: every reader fails at the byte it had reached (short of the end). A
    /// blob that already verified stays good for its readers, whatever went wrong after.
    pub fn failed(&self, why: String) {
        let mut st = self.state();
        if !st.verified {
            st.failed = Some(why);
        }
        drop(st);
        self.changed.notify(usize::MAX);
    }

    // ---- the reading side ----

    /// Waits until the upstream has answered; the blob's size, if it said.
    pub async fn size(&self) -> Result<Option<u64>> {
        loop {
            let listener = self.changed.listen();
            {
                let st = self.state();
                if let Some(size) = st.size {
                    return Ok(size);
                }
                if let Some(e) = &st.failed {
                    return Err(Error::Upstream(e.clone()));
                }
            }
            listener.await;
        }
    }

    /// Bytes readers may have so far.
    fn readable(&self) -> u64 {
        self.state().readable()
    }

    /// A reader of the whole blob from its first byte.
    pub fn reader(self: &Arc<Self>) -> FillReader {
        FillReader {
            fill: self.clone(),
            pos: 0,
            buf: Vec::new(),
            start: 0,
            listener: None,
        }
    }
}

/// One client's view of a fill.
pub struct FillReader {
    fill: Arc<Fill>,
    /// Bytes of the file consumed so far.
    pos: u64,
    buf: Vec<u8>,
    start: usize,
    listener: Option<EventListener>,
}

/// Bytes read from the file per step.
const STEP: usize = 256 * 1024;

impl FillReader {
    /// True when this reader has handed out every byte it may have so far: what the client
    /// was given should be sent now, not held until more arrives.
    pub fn caught_up(&self) -> bool {
        self.start >= self.buf.len() && self.pos >= self.fill.readable()
    }
}

impl AsyncBufRead for FillReader {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let this = self.get_mut();
        if this.start < this.buf.len() {
            return Poll::Ready(Ok(&this.buf[this.start..]));
        }
        loop {
            let (readable, verified, failed) = {
                let st = this.fill.state();
                (st.readable(), st.verified, st.failed.clone())
            };
            if this.pos < readable {
                let n = usize::try_from(readable - this.pos)
                    .unwrap_or(STEP)
                    .min(STEP);
                this.buf.resize(n, 0);
                // Bytes the fetch wrote moments ago: read from the page cache, not the disk.
                this.fill.file.read_exact_at(&mut this.buf, this.pos)?;
                this.start = 0;
                this.pos += n as u64;
                this.listener = None;
                return Poll::Ready(Ok(&this.buf[..]));
            }
            if verified {
                return Poll::Ready(Ok(&[]));
            }
            if let Some(e) = failed {
                return Poll::Ready(Err(io::Error::other(e)));
            }
            match &mut this.listener {
                // Registered before re-checking, so no notification is missed.
                None => this.listener = Some(this.fill.changed.listen()),
                Some(l) => match Pin::new(l).poll(cx) {
                    Poll::Ready(()) => this.listener = None,
                    Poll::Pending => return Poll::Pending,
                },
            }
        }
    }

    fn consume(self: Pin<&mut Self>, amt: usize) {
        let this = self.get_mut();
        this.start = (this.start + amt).min(this.buf.len());
    }
}

impl AsyncRead for FillReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let available = match self.as_mut().poll_fill_buf(cx) {
            Poll::Ready(Ok(a)) => a,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        };
        let n = available.len().min(out.len());
        out[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Poll::Ready(Ok(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smol::io::AsyncReadExt;
    use std::io::Write;

    fn fill() -> (Arc<Fill>, std::fs::File, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        let writer = std::fs::File::create(&path).unwrap();
        let reader = std::fs::File::open(&path).unwrap();
        (Arc::new(Fill::new(reader)), writer, dir)
    }

    #[test]
    fn readers_get_bytes_as_they_arrive_and_all_of_them() {
        let (f, mut w, _dir) = fill();
        let (f2, data) = (
            f.clone(),
            (0..600_000u32).map(|i| i as u8).collect::<Vec<u8>>(),
        );
        let expected = data.clone();
        let readers: Vec<_> = (0..3)
            .map(|_| {
                let f = f.clone();
                std::thread::spawn(move || {
                    smol::block_on(async {
                        assert_eq!(f.size().await.unwrap(), Some(600_000));
                        let mut out = Vec::new();
                        f.reader().read_to_end(&mut out).await.unwrap();
                        out
                    })
                })
            })
            .collect();
        f2.set_size(Some(600_000));
        for chunk in data.chunks(70_000) {
            w.write_all(chunk).unwrap();
            f2.advance(chunk.len() as u64);
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        f2.verified();
        for r in readers {
            assert_eq!(r.join().unwrap(), expected);
        }
    }

    #[test]
    fn a_failed_fill_fails_its_readers() {
        let (f, mut w, _dir) = fill();
        f.set_size(Some(100));
        w.write_all(&[7; 40]).unwrap();
        f.advance(40);
        f.failed("upstream went away".into());
        let mut out = Vec::new();
        let err = smol::block_on(f.reader().read_to_end(&mut out)).unwrap_err();
        assert!(err.to_string().contains("upstream went away"));
        assert_eq!(
            out.len(),
            39,
            "what arrived was sent but the last byte, then the failure"
        );
    }

    /// Reads until the reader has nothing more to give now (or ends); the bytes, and whether
    /// it ended (`Some(Ok)`: cleanly).
    fn read_what_is_there(r: &mut FillReader) -> (Vec<u8>, Option<io::Result<()>>) {
        let mut got = Vec::new();
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        loop {
            match Pin::new(&mut *r).poll_fill_buf(&mut cx) {
                Poll::Ready(Ok([])) => return (got, Some(Ok(()))),
                Poll::Ready(Ok(b)) => {
                    let n = b.len();
                    got.extend_from_slice(b);
                    Pin::new(&mut *r).consume(n);
                }
                Poll::Ready(Err(e)) => return (got, Some(Err(e))),
                Poll::Pending => return (got, None),
            }
        }
    }

    #[test]
    fn the_last_byte_waits_until_the_blob_verified() {
        for good in [true, false] {
            let (f, mut w, _dir) = fill();
            f.set_size(Some(100));
            w.write_all(&[7; 100]).unwrap();
            f.advance(100);
            // A reader from the start and one joining later see the same.
            let (mut early, mut late) = (f.reader(), f.reader());
            let (got, end) = read_what_is_there(&mut early);
            assert_eq!(
                (got.len(), end.is_none()),
                (99, true),
                "held back, not ended"
            );
            assert!(
                early.caught_up(),
                "caught up with what it may have: flushed"
            );
            if good {
                f.verified();
                for r in [&mut early, &mut late] {
                    let (more, end) = read_what_is_there(r);
                    assert!(matches!(end, Some(Ok(()))));
                    assert_eq!(r.pos, 100, "{} more", more.len());
                }
            } else {
                f.failed("wrong digest".into());
                for r in [&mut early, &mut late] {
                    let (_, end) = read_what_is_there(r);
                    assert!(matches!(end, Some(Err(_))), "the body never completes");
                    assert_eq!(r.pos, 99);
                }
            }
        }
    }

    #[test]
    fn a_failure_after_verifying_leaves_the_readers_their_blob() {
        let (f, mut w, _dir) = fill();
        f.set_size(Some(10));
        w.write_all(&[1; 10]).unwrap();
        f.advance(10);
        f.verified();
        f.failed("publishing failed".into());
        let mut out = Vec::new();
        smol::block_on(f.reader().read_to_end(&mut out)).unwrap();
        assert_eq!(out, [1; 10]);
    }

    #[test]
    fn one_fill_per_digest() {
        let fills = Fills::default();
        let (_f, _w, dir) = fill();
        let d = Digest::sha256_of(b"x");
        let path = dir.path().join("blob");
        let (a, started) = fills
            .join_or_start(&d, || Ok(Fill::new(std::fs::File::open(&path).unwrap())))
            .unwrap();
        assert!(started);
        let (b, started) = fills
            .join_or_start(&d, || panic!("must not make a second fill"))
            .unwrap();
        assert!(!started && Arc::ptr_eq(&a, &b));
        fills.remove(&d);
        assert!(fills.is_empty());
    }
}
