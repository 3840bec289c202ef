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
//! - Bytes in and out are counted for `/metrics`.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use smol::io::{AsyncRead, AsyncWrite};
use smol::Timer;

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
    closing: AtomicBool,
    drain_left: AtomicU64,
    drain_until: OnceLock<Instant>,
}

impl ConnState {
    /// The connection closes after the current response; what is left of the request body is
    /// drained within the budget, then reads see end-of-file.
    pub fn close_after_response(&self) {
        self.drain_left.store(DRAIN_BYTES, Ordering::Relaxed);
        let _ = self.drain_until.set(Instant::now() + DRAIN_TIME);
        self.closing.store(true, Ordering::Relaxed);
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

pub struct Conn<S> {
    io: S,
    stall: Duration,
    read_timer: Option<Timer>,
    write_timer: Option<Timer>,
    state: Arc<ConnState>,
    traffic: Arc<Traffic>,
}

impl<S: Clone> Clone for Conn<S> {
    fn clone(&self) -> Self {
        Conn {
            io: self.io.clone(),
            stall: self.stall,
            read_timer: None,
            write_timer: None,
            state: self.state.clone(),
            traffic: self.traffic.clone(),
        }
    }
}

impl<S> Conn<S> {
    pub fn new(io: S, stall: Duration, traffic: Arc<Traffic>) -> Conn<S> {
        Conn {
            io,
            stall,
            read_timer: None,
            write_timer: None,
            state: Arc::new(ConnState::default()),
            traffic,
        }
    }

    pub fn state(&self) -> Arc<ConnState> {
        self.state.clone()
    }
}

/// Polls the stall timer of a pending operation, arming it on the first pending poll.
fn stalled(timer: &mut Option<Timer>, stall: Duration, cx: &mut Context<'_>) -> bool {
    let t = match timer {
        Some(t) => t,
        None => timer.insert(Timer::after(stall)),
    };
    Pin::new(t).poll(cx).is_ready()
}

fn timed_out(what: &str, stall: Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("client made no progress {what} for {}s", stall.as_secs()),
    )
}

impl<S: AsyncRead + Unpin> AsyncRead for Conn<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let buf = match this.state.budget() {
            None => buf,
            Some(0) => return Poll::Ready(Ok(0)),
            Some(left) => {
                let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                &mut buf[..n]
            }
        };
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(r) => {
                this.read_timer = None;
                if let Ok(n) = r {
                    this.traffic.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
                    if this.state.closing.load(Ordering::Relaxed) {
                        this.state.drain_left.fetch_sub(n as u64, Ordering::Relaxed);
                    }
                }
                Poll::Ready(r)
            }
            Poll::Pending if stalled(&mut this.read_timer, this.stall, cx) => {
                Poll::Ready(Err(timed_out("sending", this.stall)))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Conn<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.io).poll_write(cx, buf) {
            Poll::Ready(r) => {
                this.write_timer = None;
                if let Ok(n) = r {
                    this.traffic
                        .bytes_out
                        .fetch_add(n as u64, Ordering::Relaxed);
                }
                Poll::Ready(r)
            }
            Poll::Pending if stalled(&mut this.write_timer, this.stall, cx) => {
                Poll::Ready(Err(timed_out("reading", this.stall)))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_close(cx)
    }
}
