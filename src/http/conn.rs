//! The stream under one HTTP connection, wrapped so that no client can hold it hostage.
//!
//! - A read or write that makes no progress for `stall` fails with `TimedOut`: a client that
//!   opens a connection and never speaks, trickles a body, or stops reading a download is cut
//!   off, while a slow but moving one is not.
//! - Once the request handler decides the connection must close (it answered an error without
//!   reading the body), what is left of the body is drained only up to a budget of bytes and
//!   time, then reads return end-of-file: a client that is still sending gets to finish and read
//!   the answer (a close with unread data would reset the connection and lose the answer), but
//!   nobody can make atoll swallow gigabytes of an unwanted body.
//! - A request head must arrive within `head` time and [`HEAD_BYTES`]: async-h1 checks the size
//!   of a head only when a line ends, so one endless header line would otherwise grow in memory
//!   as long as the client sends it. Which limit a head broke is kept in [`ConnState`], so the
//!   server can answer 431 or 408 before closing.
//! - Every request head passes here before async-h1 parses it, so its framing is checked here
//!   (`framing.rs`): a head with an ambiguous body length is refused (400, 501), an HTTP/1.0
//!   one kept for the server to answer, and async-h1 never sees either (its read fails).
//! - After every read that returns data a timer stays armed for `stall`: async-h1's chunked
//!   decoder can return `Pending` without having asked to be woken (a trailer cut short), and
//!   that timer wakes the connection's task so the stall check above runs instead of the
//!   connection hanging forever (which leaked a socket per such request).
//! - Response bytes are gathered into large writes (async-h1 hands them over 8 KiB at a time);
//!   a body that streams as it arrives has what is gathered sent whenever it catches up
//!   ([`Flusher`]).
//! - Bytes in and out are counted for `/metrics`.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use smol::io::{AsyncRead, AsyncWrite};
use smol::Timer;

use super::framing::{self, Head10, Verdict, MAX_HEAD};
use super::limits::HEAD_BYTES;

/// Byte counters shared by every connection.
#[derive(Default)]
pub struct Traffic {
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
}

/// How much of an unwanted request body is read (and discarded) before closing.
const DRAIN_BYTES: u64 = 8 * 1024 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(5);

/// State shared by the clones of one connection's stream.
#[derive(Default)]
pub struct ConnState {
    /// Set while a body writes the response to the socket itself (`direct.rs`): the response
    /// head must reach the socket before it, so it is not buffered.
    pub(super) write_through: AtomicBool,
    /// Bytes such a body sent, for the access log.
    pub(super) direct_sent: AtomicU64,
    /// Set by a body that has handed out every byte it has for now ([`Flusher`]): the next
    /// write sends what is buffered instead of waiting for a full buffer or the end.
    flush_next: AtomicBool,
    closing: AtomicBool,
    /// A read timed out: the client is gone or hostile, and every later read fails at once
    /// (async-h1 drains the body after the response, which would wait out a second stall).
    read_dead: AtomicBool,
    drain_left: AtomicU64,
    drain_until: OnceLock<Instant>,
    /// Requests whose head was read; a stream cloned when this was `n` reads the head of
    /// request `n + 1` until it changes (async-h1 clones the stream for each request).
    requests: AtomicU64,
    /// Why a request head was not handed to async-h1, if one was not.
    head_refusal: Mutex<Option<HeadRefusal>>,
}

/// What a connection lends its requests so a body that streams as it arrives (a blob on its way
/// from upstream) can have its bytes sent when it catches up, not when 256 KiB have gathered.
#[derive(Clone)]
pub struct Flusher(Arc<ConnState>);

impl Flusher {
    pub(super) fn new(state: Arc<ConnState>) -> Flusher {
        Flusher(state)
    }

    /// The next write sends everything buffered.
    pub fn flush_after_next_write(&self) {
        self.0.flush_next.store(true, Ordering::Relaxed);
    }
}

/// Why a request head was not handed to async-h1: the server answers it before closing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeadRefusal {
    /// Over [`HEAD_BYTES`]: 431.
    TooLarge,
    /// Not complete in time (after at least one byte): 408.
    TooSlow,
    /// Its framing is ambiguous or unsupported: this status (400, 501) and reason.
    Framing { status: u16, why: String },
    /// HTTP/1.0, which async-h1 does not speak: the server answers it.
    Http10(Head10),
}

impl ConnState {
    /// The connection closes after the current response; what is left of the request body is
    /// drained within the budget, then reads see end-of-file.
    pub fn close_after_response(&self) {
        self.drain_left.store(DRAIN_BYTES, Ordering::Relaxed);
        let _ = self.drain_until.set(Instant::now() + DRAIN_TIME);
        self.closing.store(true, Ordering::Relaxed);
    }

    /// The request's head has been read: what follows is its body.
    pub fn request_started(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Why the last request head was not handed to async-h1, if it was not.
    pub fn take_head_refusal(&self) -> Option<HeadRefusal> {
        self.refusal().take()
    }

    /// The first reason given stands.
    fn refuse_head(&self, why: HeadRefusal) {
        self.refusal().get_or_insert(why);
    }

    fn refusal(&self) -> std::sync::MutexGuard<'_, Option<HeadRefusal>> {
        self.head_refusal.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many bytes a read may still take: `None` while not closing.
    fn budget(&self) -> Option<u64> {
        if !self.closing.load(Ordering::Relaxed) {
            return None;
        }
        let expired = self.drain_until.get().is_some_and(|d| Instant::now() >= *d);
        Some(if expired {
            0
        } else {
            self.drain_left.load(Ordering::Relaxed)
        })
    }
}

/// Responses are gathered up to this many bytes per write: async-h1 copies bodies 8 KiB at a
/// time, and one system call per 8 KiB caps throughput well below the disk's.
const OUT_CAPACITY: usize = 256 * 1024;

/// Bytes written but not yet sent, and how far sending has got.
struct Outbox {
    buf: Vec<u8>,
    pos: usize,
}

pub struct Conn<S> {
    io: S,
    /// Only the stream handed to async-h1, which writes every response through it and flushes
    /// at the end of each, buffers; its clones (async-h1 writes `100 Continue` through one and
    /// never flushes it) write straight through.
    out: Option<Outbox>,
    stall: Duration,
    head_time: Duration,
    read_timer: Option<Timer>,
    write_timer: Option<Timer>,
    /// Re-armed by every read that returns data: wakes the task if nothing else will.
    wake_timer: Option<Timer>,
    /// The head being read: `ConnState::requests` when this stream was made, bytes read and
    /// the deadline (armed at the first read).
    head_of: u64,
    head_read: u64,
    head_timer: Option<Timer>,
    /// The head's bytes so far, while it spans reads and until its framing is checked.
    head_bytes: Vec<u8>,
    head_checked: bool,
    state: Arc<ConnState>,
    traffic: Arc<Traffic>,
}

impl<S: Clone> Clone for Conn<S> {
    fn clone(&self) -> Self {
        Conn {
            io: self.io.clone(),
            out: None,
            stall: self.stall,
            head_time: self.head_time,
            read_timer: None,
            write_timer: None,
            wake_timer: None,
            head_of: self.state.requests.load(Ordering::Relaxed),
            head_read: 0,
            head_timer: None,
            head_bytes: Vec::new(),
            head_checked: false,
            state: self.state.clone(),
            traffic: self.traffic.clone(),
        }
    }
}

impl<S> Conn<S> {
    /// `stall` bounds any read or write without progress, `head_time` each request head.
    pub fn new(io: S, stall: Duration, head_time: Duration, traffic: Arc<Traffic>) -> Conn<S> {
        Conn {
            io,
            out: Some(Outbox {
                buf: Vec::new(),
                pos: 0,
            }),
            stall,
            head_time,
            read_timer: None,
            write_timer: None,
            wake_timer: None,
            head_of: 0,
            head_read: 0,
            head_timer: None,
            head_bytes: Vec::new(),
            head_checked: false,
            state: Arc::new(ConnState::default()),
            traffic,
        }
    }

    pub fn state(&self) -> Arc<ConnState> {
        self.state.clone()
    }
}

/// Polls the stall timer of a pending operation, arming it on the first pending poll. A timer
/// that fired is dropped: a fired `Timer` never fires again, and async-h1 reads on after a
/// failed read (it drains the request body once the response is out), so a kept one left that
/// read pending forever with nothing to wake it (a stalled body held its connection).
fn stalled(timer: &mut Option<Timer>, stall: Duration, cx: &mut Context<'_>) -> bool {
    let t = timer.get_or_insert_with(|| Timer::after(stall));
    let fired = Pin::new(t).poll(cx).is_ready();
    if fired {
        *timer = None;
    }
    fired
}

fn timed_out(what: &str, stall: Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("client made no progress {what} for {}s", stall.as_secs()),
    )
}

impl<S> Conn<S> {
    /// True while this stream reads a request head.
    fn in_head(&self) -> bool {
        self.state.requests.load(Ordering::Relaxed) == self.head_of
    }

    /// The head's limits, checked before each read of it: `Err` once one is broken;
    /// otherwise how many bytes the read may take.
    fn head_allowance(&mut self, cx: &mut Context<'_>) -> io::Result<usize> {
        let timer = self
            .head_timer
            .get_or_insert_with(|| Timer::after(self.head_time));
        if Pin::new(timer).poll(cx).is_ready() {
            if self.head_read > 0 {
                self.state.refuse_head(HeadRefusal::TooSlow);
            }
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "request head not complete within {}s",
                    self.head_time.as_secs()
                ),
            ));
        }
        if self.head_read >= HEAD_BYTES {
            self.state.refuse_head(HeadRefusal::TooLarge);
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("request head larger than {} KiB", HEAD_BYTES / 1024),
            ));
        }
        Ok(usize::try_from(HEAD_BYTES - self.head_read).unwrap_or(usize::MAX))
    }

    /// Checks the framing of the head once it is complete; `got` is what the last read
    /// returned. `Err` if the head must not reach async-h1 (the reason is in the state).
    fn check_head(&mut self, got: &[u8]) -> io::Result<()> {
        if self.head_checked {
            return Ok(());
        }
        let searched = self.head_bytes.len();
        let verdict = match (searched, framing::head_end(got, 0)) {
            // The whole head in one read (the usual case): nothing is copied.
            (0, Some(end)) => framing::check(&got[..end]),
            _ => {
                let room = (MAX_HEAD + 1).saturating_sub(searched);
                self.head_bytes
                    .extend_from_slice(&got[..got.len().min(room)]);
                match framing::head_end(&self.head_bytes, searched) {
                    Some(end) => framing::check(&self.head_bytes[..end]),
                    // Too long for async-h1, which refuses it: nothing to check.
                    None if self.head_bytes.len() > MAX_HEAD => Verdict::Pass,
                    None => return Ok(()),
                }
            }
        };
        self.head_checked = true;
        self.head_bytes = Vec::new();
        let (refusal, what) = match verdict {
            Verdict::Pass => return Ok(()),
            Verdict::Refuse { status, why } => {
                let what = format!("request head refused ({status}): {why}");
                (HeadRefusal::Framing { status, why }, what)
            }
            Verdict::Http10(head) => (HeadRefusal::Http10(head), "HTTP/1.0 request".into()),
        };
        self.state.refuse_head(refusal);
        Err(io::Error::new(io::ErrorKind::InvalidData, what))
    }

    /// Keeps a timer armed for `stall` after a read returned data (see the module doc).
    fn keep_awake(&mut self, cx: &mut Context<'_>) {
        let timer = self.wake_timer.get_or_insert_with(Timer::never);
        timer.set_after(self.stall);
        let _ = Pin::new(timer).poll(cx);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Conn<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.state.read_dead.load(Ordering::Relaxed) {
            return Poll::Ready(Err(timed_out("sending", this.stall)));
        }
        let in_head = this.in_head();
        let allowance = if in_head {
            this.head_allowance(cx)?
        } else {
            usize::MAX
        };
        let buf = match this.state.budget() {
            None => buf,
            Some(0) => return Poll::Ready(Ok(0)),
            Some(left) => {
                let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                &mut buf[..n]
            }
        };
        let end = buf.len().min(allowance);
        match Pin::new(&mut this.io).poll_read(cx, &mut buf[..end]) {
            Poll::Ready(r) => {
                this.read_timer = None;
                if let Ok(n) = r {
                    this.traffic.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
                    if this.state.closing.load(Ordering::Relaxed) {
                        this.state.drain_left.fetch_sub(n as u64, Ordering::Relaxed);
                    }
                    if in_head {
                        this.head_read += n as u64;
                        this.check_head(&buf[..n])?;
                    }
                    if n > 0 {
                        this.keep_awake(cx);
                    }
                }
                Poll::Ready(r)
            }
            Poll::Pending if stalled(&mut this.read_timer, this.stall, cx) => {
                if in_head && this.head_read > 0 {
                    this.state.refuse_head(HeadRefusal::TooSlow);
                }
                this.state.read_dead.store(true, Ordering::Relaxed);
                Poll::Ready(Err(timed_out("sending", this.stall)))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncWrite + Unpin> Conn<S> {
    /// One write to the socket, under the stall timer, counted.
    fn poll_socket_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.io).poll_write(cx, buf) {
            Poll::Ready(r) => {
                self.write_timer = None;
                if let Ok(n) = r {
                    self.traffic
                        .bytes_out
                        .fetch_add(n as u64, Ordering::Relaxed);
                }
                Poll::Ready(r)
            }
            Poll::Pending if stalled(&mut self.write_timer, self.stall, cx) => {
                Poll::Ready(Err(timed_out("reading", self.stall)))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// Writes out what is buffered.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some(out) = self.out.as_mut().filter(|o| o.pos < o.buf.len()) {
            let (pos, end) = (out.pos, out.buf.len());
            let chunk = std::mem::take(&mut out.buf);
            let written = self.poll_socket_write(cx, &chunk[pos..end]);
            let out = self.out.as_mut().expect("still buffered");
            out.buf = chunk;
            match written? {
                Poll::Ready(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(n) => out.pos += n,
                Poll::Pending => return Poll::Pending,
            }
        }
        if let Some(out) = self.out.as_mut() {
            // An idle keep-alive connection keeps no large buffer.
            if out.buf.capacity() > 16 * 1024 {
                out.buf = Vec::new();
            } else {
                out.buf.clear();
            }
            out.pos = 0;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Conn<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.state.write_through.load(Ordering::Relaxed) {
            ready!(this.poll_drain(cx))?;
            return this.poll_socket_write(cx, buf);
        }
        let Some(out) = this.out.as_ref() else {
            return this.poll_socket_write(cx, buf);
        };
        if out.buf.len() + buf.len() > OUT_CAPACITY {
            ready!(this.poll_drain(cx))?;
            if buf.len() >= OUT_CAPACITY {
                return this.poll_socket_write(cx, buf);
            }
        }
        this.out
            .as_mut()
            .expect("buffered")
            .buf
            .extend_from_slice(buf);
        if this.state.flush_next.swap(false, Ordering::Relaxed) {
            // The bytes are taken either way; a full socket sends them with the next write
            // or the final flush.
            if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
                return Poll::Ready(Err(e));
            }
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.io).poll_close(cx)
    }
}
