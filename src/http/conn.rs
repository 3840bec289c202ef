//! The stream under one HTTP connection, wrapped so that no client can hold it hostage.
//!
//! - A read or write that makes no progress for `stall` fails with `TimedOut`: a client that
//!   opens a connection and never speaks, trickles a body, or stops reading a download is cut
//!   off, while a slow but moving one is not.
//! - Once the request handler decides the connection must close (it answered an error without
//!   reading the body), reads return end-of-file, so async-h1 does not drain gigabytes of an
//!   unwanted body before closing.
//! - Bytes in and out are counted for `/metrics`.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use smol::io::{AsyncRead, AsyncWrite};
use smol::Timer;

/// Byte counters shared by every connection.
#[derive(Default)]
pub struct Traffic {
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
}

/// State shared by the clones of one connection's stream.
#[derive(Default)]
pub struct ConnState {
    closing: AtomicBool,
}

impl ConnState {
    /// From now on reads see end-of-file: the connection closes after the current response.
    pub fn close_after_response(&self) {
        self.closing.store(true, Ordering::Relaxed);
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
        if this.state.closing.load(Ordering::Relaxed) {
            return Poll::Ready(Ok(0));
        }
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(r) => {
                this.read_timer = None;
                if let Ok(n) = r {
                    this.traffic.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
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
                    this.traffic.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
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
