//! One upstream fetch per blob, however many clients ask at once, with every client receiving
//! the bytes as they arrive.
//!
//! A [`Fill`] is a blob on its way from upstream into the cache: the fetching task appends to
//! a temporary file and announces progress; each client reads that file with its own offset
//! (`pread` on one shared handle, so the file may be renamed into `blobs/` while they read) and
//! waits for more when it has caught up. A fill that fails (upstream gone mid-blob, wrong
//! size, wrong digest) fails every client still reading it, and nothing is cached.

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

#[derive(Default)]
struct State {
    /// `Some(len)` once the upstream answered; `len` is `None` if it did not say.
    size: Option<Option<u64>>,
    written: u64,
    /// `Some` once the fill is over.
    outcome: Option<std::result::Result<(), String>>,
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

    /// The fill is over: every reader finishes (or fails) with it.
    pub fn finish(&self, outcome: std::result::Result<(), String>) {
        self.state().outcome = Some(outcome);
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
                if let Some(Err(e)) = &st.outcome {
                    return Err(Error::Upstream(e.clone()));
                }
            }
            listener.await;
        }
    }

    /// Bytes written so far.
    fn written(&self) -> u64 {
        self.state().written
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
    /// True when this reader has handed out every byte fetched so far: what the client was
    /// given should be sent now, not held until more arrives.
    pub fn caught_up(&self) -> bool {
        self.start >= self.buf.len() && self.pos >= self.fill.written()
    }
}

impl AsyncBufRead for FillReader {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let this = self.get_mut();
        if this.start < this.buf.len() {
            return Poll::Ready(Ok(&this.buf[this.start..]));
        }
        loop {
            let (written, outcome) = {
                let st = this.fill.state();
                (st.written, st.outcome.clone())
            };
            if this.pos < written {
                let n = usize::try_from(written - this.pos)
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
            match outcome {
                Some(Ok(())) => return Poll::Ready(Ok(&[])),
                Some(Err(e)) => return Poll::Ready(Err(io::Error::other(e))),
                None => {}
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
        f2.finish(Ok(()));
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
        f.finish(Err("upstream went away".into()));
        let mut out = Vec::new();
        let err = smol::block_on(f.reader().read_to_end(&mut out)).unwrap_err();
        assert!(err.to_string().contains("upstream went away"));
        assert_eq!(out.len(), 40, "what arrived was sent, then the failure");
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
