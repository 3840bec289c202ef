//! Blob downloads on plain-TCP connections, written by the connection's own task straight to
//! the socket, 256 KiB at a time from one page-aligned buffer, instead of through async-h1's
//! 8 KiB copies. (TLS must encrypt every byte, so HTTPS keeps the `file_body.rs` path.)
//!
//! Why a copy and not `sendfile(2)`: on loopback the receiving client does the only copy, from
//! the blob's page-cache pages, cold in the processor's caches; a copy through a small buffer
//! hands it bytes the sender has just written, still in the shared cache, so a client on the
//! same box gets its blob sooner, and none later (the comparison is in
//! `bench/results/findings.md`). Over a real network the copy costs the server one `memcpy` per
//! byte.
//!
//! The reads try the page cache without waiting (`preadv2` with `RWF_NOWAIT`), so a cached blob
//! never leaves the task; a read that would wait for the disk runs on a blocking thread. A body
//! yields to the executor after every [`YIELD_BYTES`], so a fast reader cannot keep one task
//! on its thread for a whole blob.
//!
//! How it fits async-h1, which writes every response itself: the handler returns a response
//! whose body is a [`DirectBody`]. While that body lives, the connection writes the response
//! head straight to the socket (no buffering), so the head is out before async-h1 first polls
//! the body; the body then sends the file, and reports end-of-body to async-h1 once every byte
//! is sent.

use std::fs::File;
use std::future::Future;
use std::io::{self, IoSliceMut};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustix::io::{Errno, ReadWriteFlags};
use smol::io::{AsyncBufRead, AsyncRead, AsyncWrite};
use smol::{Task, Timer};

use super::conn::{ConnState, Traffic};
use crate::pagebuf::PageBuf;

/// Bodies smaller than this go through async-h1 with the head, in one write.
pub const MIN_BYTES: u64 = 256 * 1024;

/// Bytes read and written per step. Large enough that the per-step system calls are noise,
/// small enough to stay in the processor's cache between the read and the write.
const CHUNK: usize = 256 * 1024;

/// Bytes a body sends in one poll before it lets the executor run other tasks.
const YIELD_BYTES: u64 = 4 * 1024 * 1024;

/// What a plain-TCP connection lends its requests so a handler can send a file directly.
#[derive(Clone)]
pub struct Direct {
    pub(super) tcp: smol::net::TcpStream,
    pub(super) state: Arc<ConnState>,
    pub(super) traffic: Arc<Traffic>,
    pub(super) stall: Duration,
}

impl Direct {
    /// A body that sends `len` bytes of `file` from `offset`.
    pub fn body(&self, file: File, offset: u64, len: u64) -> DirectBody {
        self.state.write_through.store(true, Ordering::Relaxed);
        DirectBody {
            file: Arc::new(file),
            offset,
            end: offset + len,
            buf: Some(PageBuf::new(CHUNK)),
            pos: 0,
            filled: 0,
            reading: None,
            nowait: true,
            timer: None,
            direct: self.clone(),
        }
    }
}

pub struct DirectBody {
    file: Arc<File>,
    /// Where the next read starts, and where the body ends, in the file.
    offset: u64,
    end: u64,
    /// `buf[pos..filled]` is read and not yet sent. `None` while a blocking read holds it.
    buf: Option<PageBuf>,
    pos: usize,
    filled: usize,
    reading: Option<Task<(PageBuf, io::Result<usize>)>>,
    /// False once the file system refused a read that does not wait.
    nowait: bool,
    /// Armed while the socket takes nothing: the client stopped reading.
    timer: Option<Timer>,
    direct: Direct,
}

/// What a read that must not wait found.
enum Cached {
    Read(usize),
    /// Not in the page cache (or the file system cannot tell): read on a blocking thread.
    NotCached,
}

impl DirectBody {
    /// Writes what the buffer holds; `Pending` once the socket is full.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let buf = self.buf.as_ref().expect("buffer is home while sending");
        while self.pos < self.filled {
            match Pin::new(&mut self.direct.tcp).poll_write(cx, &buf[self.pos..self.filled]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    self.pos += n;
                    self.timer = None;
                    let d = &self.direct;
                    d.traffic.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
                    d.state.direct_sent.fetch_add(n as u64, Ordering::Relaxed);
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    let stall = self.direct.stall;
                    let timer = self.timer.get_or_insert_with(|| Timer::after(stall));
                    if Pin::new(timer).poll(cx).is_ready() {
                        let msg =
                            format!("client made no progress reading for {}s", stall.as_secs());
                        return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, msg)));
                    }
                    return Poll::Pending;
                }
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Reads the next chunk from the page cache, if it is there.
    fn read_cached(&mut self, want: usize) -> io::Result<Cached> {
        if !self.nowait {
            return Ok(Cached::NotCached);
        }
        let buf = self.buf.as_mut().expect("buffer is home while reading");
        let mut slices = [IoSliceMut::new(&mut buf[..want])];
        match rustix::io::preadv2(
            &*self.file,
            &mut slices,
            self.offset,
            ReadWriteFlags::NOWAIT,
        ) {
            // Nothing cached, or the end of the file: the blocking read tells which.
            Ok(0) | Err(Errno::AGAIN) => Ok(Cached::NotCached),
            Ok(n) => Ok(Cached::Read(n)),
            Err(Errno::OPNOTSUPP | Errno::INVAL | Errno::NOSYS) => {
                self.nowait = false;
                Ok(Cached::NotCached)
            }
            Err(Errno::INTR) => Ok(Cached::NotCached),
            Err(e) => Err(e.into()),
        }
    }

    fn read_done(&mut self, n: usize) -> io::Result<()> {
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the blob file is shorter than its index row",
            ));
        }
        self.offset += n as u64;
        self.pos = 0;
        self.filled = n;
        Ok(())
    }
}

impl AsyncBufRead for DirectBody {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let this = self.get_mut();
        let mut sent_this_poll = 0u64;
        loop {
            if let Some(task) = this.reading.as_mut() {
                let (buf, read) = match Pin::new(task).poll(cx) {
                    Poll::Ready(done) => done,
                    Poll::Pending => return Poll::Pending,
                };
                this.reading = None;
                this.buf = Some(buf);
                this.read_done(read?)?;
            }
            let before = this.pos;
            let sent = this.poll_send(cx);
            sent_this_poll += (this.pos - before) as u64;
            match sent {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
            if this.offset >= this.end {
                return Poll::Ready(Ok(&[]));
            }
            if sent_this_poll >= YIELD_BYTES {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let want = usize::try_from(this.end - this.offset)
                .unwrap_or(CHUNK)
                .min(CHUNK);
            match this.read_cached(want)? {
                Cached::Read(n) => this.read_done(n)?,
                Cached::NotCached => {
                    let mut buf = this.buf.take().expect("buffer is home");
                    let (file, offset) = (this.file.clone(), this.offset);
                    this.reading = Some(smol::unblock(move || {
                        let read = rustix::io::retry_on_intr(|| {
                            rustix::io::pread(&*file, &mut buf[..want], offset)
                        });
                        (buf, read.map_err(io::Error::from))
                    }));
                }
            }
        }
    }

    fn consume(self: Pin<&mut Self>, _amt: usize) {}
}

impl AsyncRead for DirectBody {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        _buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        // Everything goes out through the socket; the body itself yields nothing.
        self.poll_fill_buf(cx).map_ok(|_| 0)
    }
}

impl Drop for DirectBody {
    fn drop(&mut self) {
        self.direct
            .state
            .write_through
            .store(false, Ordering::Relaxed);
    }
}
