//! Zero-copy blob downloads on plain-TCP connections: the kernel sends the file's pages to
//! the socket (`sendfile`), instead of the bytes being read into memory and copied through
//! async-h1 8 KiB at a time. (TLS must encrypt every byte, so HTTPS keeps the copying path.)
//!
//! How it fits async-h1, which writes every response itself: the handler returns a response
//! whose body is a [`SendfileBody`]. While that body lives, the connection writes the response
//! head straight to the socket (no buffering), so the head is out before async-h1 first polls
//! the body; the body then sends the file in steps on a blocking thread (a read from a cold
//! disk must not stall the executor), waits for the socket to take more between steps (under
//! the stall limit), and reports end-of-body to async-h1 once every byte is sent.

use std::fs::File;
use std::future::Future;
use std::io;
use std::os::fd::AsFd;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use smol::io::{AsyncBufRead, AsyncRead};
use smol::{Async, Task, Timer};

use super::conn::{ConnState, Traffic};

/// Bodies smaller than this are not worth the extra set-up (a dup and a reactor registration).
pub const MIN_BYTES: u64 = 256 * 1024;

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
    pub fn body(&self, file: File, offset: u64, len: u64) -> io::Result<SendfileBody> {
        let sock = std::net::TcpStream::from(self.tcp.as_fd().try_clone_to_owned()?);
        let sock = Arc::new(Async::new(sock)?);
        self.state.write_through.store(true, Ordering::Relaxed);
        Ok(SendfileBody {
            file: Arc::new(file),
            sock,
            offset,
            end: offset + len,
            step: Step::Ready,
            timer: None,
            direct: self.clone(),
        })
    }
}

enum Step {
    /// Start the next send.
    Ready,
    /// A send is running on a blocking thread.
    Sending(Task<(u64, io::Result<bool>)>),
    /// The socket is full: wait until it takes more.
    Waiting,
}

pub struct SendfileBody {
    file: Arc<File>,
    sock: Arc<Async<std::net::TcpStream>>,
    offset: u64,
    end: u64,
    step: Step,
    timer: Option<Timer>,
    direct: Direct,
}

/// Sends from `off` until the socket is full (`Ok(true)`), the range is sent (`Ok(false)`),
/// or something fails. Returns the new offset either way.
fn send(
    file: &File,
    sock: &std::net::TcpStream,
    mut off: u64,
    end: u64,
) -> (u64, io::Result<bool>) {
    while off < end {
        let count = usize::try_from(end - off)
            .unwrap_or(usize::MAX)
            .min(1 << 30);
        match rustix::fs::sendfile(sock, file, Some(&mut off), count) {
            Ok(0) => {
                let e = io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the blob file is shorter than its index row",
                );
                return (off, Err(e));
            }
            Ok(_) => {}
            Err(rustix::io::Errno::AGAIN) => return (off, Ok(true)),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return (off, Err(e.into())),
        }
    }
    (off, Ok(false))
}

impl AsyncBufRead for SendfileBody {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let this = self.get_mut();
        loop {
            match &mut this.step {
                Step::Ready if this.offset >= this.end => return Poll::Ready(Ok(&[])),
                Step::Ready => {
                    let (file, sock, off, end) =
                        (this.file.clone(), this.sock.clone(), this.offset, this.end);
                    this.step =
                        Step::Sending(smol::unblock(move || send(&file, sock.get_ref(), off, end)));
                }
                Step::Sending(task) => {
                    let (off, outcome) = match Pin::new(task).poll(cx) {
                        Poll::Ready(done) => done,
                        Poll::Pending => return Poll::Pending,
                    };
                    let sent = off - this.offset;
                    this.offset = off;
                    this.direct
                        .traffic
                        .bytes_out
                        .fetch_add(sent, Ordering::Relaxed);
                    this.direct
                        .state
                        .direct_sent
                        .fetch_add(sent, Ordering::Relaxed);
                    this.step = match outcome {
                        Err(e) => {
                            this.step = Step::Ready;
                            return Poll::Ready(Err(e));
                        }
                        Ok(true) => Step::Waiting,
                        Ok(false) => Step::Ready,
                    };
                }
                Step::Waiting => match this.sock.poll_writable(cx) {
                    Poll::Ready(Ok(())) => {
                        this.timer = None;
                        this.step = Step::Ready;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => {
                        let stall = this.direct.stall;
                        let timer = this.timer.get_or_insert_with(|| Timer::after(stall));
                        if Pin::new(timer).poll(cx).is_ready() {
                            let msg =
                                format!("client made no progress reading for {}s", stall.as_secs());
                            return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, msg)));
                        }
                        return Poll::Pending;
                    }
                },
            }
        }
    }

    fn consume(self: Pin<&mut Self>, _amt: usize) {}
}

impl AsyncRead for SendfileBody {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        _buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        // Everything goes out through sendfile; the body itself yields nothing.
        self.poll_fill_buf(cx).map_ok(|_| 0)
    }
}

impl Drop for SendfileBody {
    fn drop(&mut self) {
        self.direct
            .state
            .write_through
            .store(false, Ordering::Relaxed);
    }
}
