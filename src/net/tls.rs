//! TLS to servers (upstream registries, an object store) with one `native_tls::TlsConnector`
//! for the whole process.
//!
//! async-native-tls builds a new connector, and so re-reads the system's CA bundle, for every
//! connection: tens of milliseconds of CPU each (bench/results/findings.md), paid by every
//! request to a server (a tag check, a token, each blob). Here the connector is built once, on the first
//! HTTPS connection, and each handshake drives native-tls's blocking API over the async
//! socket: the socket's `Pending` becomes `WouldBlock` for OpenSSL, and `WouldBlock` becomes
//! `Pending` again for the caller, with the task's waker registered in between. No unsafe code.

use std::io::{self, Read, Write};
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};

use native_tls::{HandshakeError, MidHandshakeTlsStream, TlsConnector};
use smol::io::{AsyncRead, AsyncWrite};

/// The process's connector, with the system's roots (`SSL_CERT_FILE` / `SSL_CERT_DIR` when
/// set, the distribution's bundle otherwise).
fn connector() -> io::Result<&'static TlsConnector> {
    static CONNECTOR: OnceLock<Result<TlsConnector, String>> = OnceLock::new();
    CONNECTOR
        .get_or_init(|| TlsConnector::new().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| io::Error::other(format!("cannot set up TLS: {e}")))
}

/// A TLS connection over an async stream.
pub struct TlsStream<S>(native_tls::TlsStream<Adapter<S>>);

/// Connects TLS over `stream`, verifying the certificate for `domain`.
pub async fn connect<S>(domain: &str, stream: S) -> io::Result<TlsStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let connector = connector()?;
    let mut start = Some(Adapter {
        inner: stream,
        waker: None,
    });
    let mut mid: Option<MidHandshakeTlsStream<Adapter<S>>> = None;
    std::future::poll_fn(|cx| {
        let result = match (start.take(), mid.take()) {
            (Some(mut adapter), _) => {
                adapter.waker = Some(cx.waker().clone());
                connector.connect(domain, adapter)
            }
            (None, Some(mut m)) => {
                m.get_mut().waker = Some(cx.waker().clone());
                m.handshake()
            }
            (None, None) => unreachable!("polled after completion"),
        };
        match result {
            Ok(s) => Poll::Ready(Ok(TlsStream(s))),
            Err(HandshakeError::WouldBlock(m)) => {
                mid = Some(m);
                Poll::Pending
            }
            Err(HandshakeError::Failure(e)) => Poll::Ready(Err(io::Error::other(e))),
        }
    })
    .await
}

/// The async stream seen through `Read`/`Write`, for native-tls: polled with the waker of the
/// task that last polled the TLS stream.
pub struct Adapter<S> {
    inner: S,
    waker: Option<Waker>,
}

impl<S: Unpin> Adapter<S> {
    fn poll<T>(
        &mut self,
        f: impl FnOnce(Pin<&mut S>, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> io::Result<T> {
        let waker = self
            .waker
            .as_ref()
            .expect("a waker is set before every poll");
        match f(Pin::new(&mut self.inner), &mut Context::from_waker(waker)) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl<S: AsyncRead + Unpin> Read for Adapter<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.poll(|s, cx| s.poll_read(cx, buf))
    }
}

impl<S: AsyncWrite + Unpin> Write for Adapter<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.poll(|s, cx| s.poll_write(cx, buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.poll(|s, cx| s.poll_flush(cx))
    }
}

impl<S> TlsStream<S> {
    /// Runs a blocking TLS call with `cx`'s waker in place; `WouldBlock` means "not yet".
    fn with<T>(
        &mut self,
        cx: &mut Context<'_>,
        f: impl FnOnce(&mut native_tls::TlsStream<Adapter<S>>) -> io::Result<T>,
    ) -> Poll<io::Result<T>> {
        self.0.get_mut().waker = Some(cx.waker().clone());
        match f(&mut self.0) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Poll::Pending,
            r => Poll::Ready(r),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().with(cx, |s| s.read(buf))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().with(cx, |s| s.write(buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().with(cx, |s| s.flush())
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.with(cx, |s| s.shutdown()) {
            Poll::Ready(Ok(())) => {
                let adapter = this.0.get_mut();
                Pin::new(&mut adapter.inner).poll_close(cx)
            }
            other => other,
        }
    }
}
