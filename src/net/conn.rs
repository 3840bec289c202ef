//! Connections to servers and their reuse, applying `pool.rs`'s policy: a TCP (or TLS over
//! TCP) stream that async-h1 can share with the response body it returns, the process's idle
//! connections ([`Idle`]), and [`lease`], which gives a connection back to them once its answer
//! has been read to its end (the whole `Content-Length`, or the last chunk) and the server
//! did not say `Connection: close`. A body dropped before its end takes its connection with it:
//! what is left of it could not be told from the next answer.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll, Waker};
use std::time::Instant;

use http_types::{Body, Response};
use smol::io::{AsyncBufRead, AsyncRead, AsyncWrite};
use smol::net::TcpStream;

use super::pool::{self, BodyEnd, Origin, Pool};
use super::tls::TlsStream;

/// A connection to a server. Clones share the one stream: async-h1 reads the response
/// through one, the pool keeps another.
#[derive(Clone)]
pub enum Conn {
    Tcp(TcpStream),
    Tls(async_dup::Arc<async_dup::Mutex<TlsStream<TcpStream>>>),
}

impl Conn {
    /// A new connection: TCP, then TLS for https.
    pub async fn open(origin: &Origin) -> Result<Conn, String> {
        let (host, port) = (origin.host.as_str(), origin.port);
        let tcp = TcpStream::connect((host, port))
            .await
            .map_err(|e| format!("cannot connect to {host}:{port}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        if !origin.https {
            return Ok(Conn::Tcp(tcp));
        }
        let tls = super::tls::connect(host, tcp)
            .await
            .map_err(|e| format!("TLS with {host}: {e}"))?;
        Ok(Conn::Tls(async_dup::Arc::new(async_dup::Mutex::new(tls))))
    }

    /// False when an idle connection has ended (the server closed it) or holds bytes nobody
    /// asked for; it is not waited on. One that passes may still be closed as the request goes
    /// out: the caller retries those.
    fn looks_alive(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        let mut byte = [0u8; 1];
        matches!(Pin::new(self).poll_read(&mut cx, &mut byte), Poll::Pending)
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_close(cx),
            Conn::Tls(s) => Pin::new(s).poll_close(cx),
        }
    }
}

/// The idle connections of the process, by origin.
#[derive(Default)]
pub struct Idle(Mutex<Pool<Conn>>);

impl Idle {
    fn pool(&self) -> std::sync::MutexGuard<'_, Pool<Conn>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An idle connection to `origin` that has not visibly died, if there is one.
    pub fn take(&self, origin: &Origin) -> Option<Conn> {
        loop {
            let mut conn = self.pool().take(origin, Instant::now())?;
            if conn.looks_alive() {
                return Some(conn);
            }
        }
    }

    fn put(&self, origin: Origin, conn: Conn) {
        self.pool().put(origin, conn, Instant::now());
    }

    /// Closes the connections idle too long; returns how many.
    pub fn prune(&self, now: Instant) -> usize {
        self.pool().prune(now)
    }

    pub fn len(&self) -> usize {
        self.pool().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A connection on its way back to the idle ones.
struct Return {
    conn: Conn,
    origin: Origin,
    idle: Arc<Idle>,
}

impl Return {
    fn home(self) {
        self.idle.put(self.origin, self.conn);
    }
}

/// `res`, which arrived on `conn` (to `origin`, answering a HEAD if `head`), with its body set
/// to give `conn` back to `idle` at its end, when the answer allows reuse at all.
pub fn lease(
    mut res: Response,
    conn: Conn,
    origin: Origin,
    idle: &Arc<Idle>,
    head: bool,
) -> Response {
    let last = |name: &str| res.header(name).map(|v| v.last().as_str().to_owned());
    let end = pool::body_end(
        head,
        res.status() as u16,
        last("Content-Length").as_deref(),
        last("Transfer-Encoding").as_deref(),
    );
    if !pool::stays_open(last("Connection").as_deref()) {
        return res;
    }
    let back = Return {
        conn,
        origin,
        idle: idle.clone(),
    };
    let left = match end {
        BodyEnd::Close => return res,
        BodyEnd::Empty => {
            // async-h1 gives a HEAD's answer a body of its Content-Length, to be read from the
            // connection: it must never be, the connection now carries other answers.
            drop(res.take_body());
            back.home();
            return res;
        }
        BodyEnd::Length(n) => Some(n),
        BodyEnd::LastChunk => None,
    };
    let len = left.and_then(|n| usize::try_from(n).ok());
    let body = Lease {
        body: res.take_body(),
        left,
        back: Some(back),
    };
    res.set_body(Body::from_reader(body, len));
    res
}

/// A response body that gives its connection back once read to its end.
struct Lease {
    body: Body,
    /// Bytes of a `Content-Length` body still to come; `None` for a chunked body.
    left: Option<u64>,
    back: Option<Return>,
}

impl Lease {
    /// `n` bytes were read (`n == 0` with room to read: the body's end).
    fn advanced(&mut self, n: usize, asked: bool) {
        let done = match &mut self.left {
            Some(left) => {
                *left = left.saturating_sub(n as u64);
                if n == 0 && asked && *left > 0 {
                    // Cut short: the connection is in no state to be reused.
                    self.back = None;
                }
                *left == 0
            }
            None => n == 0 && asked,
        };
        if done {
            if let Some(back) = self.back.take() {
                back.home();
            }
        }
    }
}

impl AsyncRead for Lease {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let room = match this.left {
            Some(left) => buf.len().min(usize::try_from(left).unwrap_or(usize::MAX)),
            None => buf.len(),
        };
        let n = if room == 0 {
            0
        } else {
            ready!(Pin::new(&mut this.body).poll_read(cx, &mut buf[..room]))?
        };
        this.advanced(n, !buf.is_empty());
        Poll::Ready(Ok(n))
    }
}

impl AsyncBufRead for Lease {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let this = self.get_mut();
        if this.left == Some(0) {
            this.advanced(0, true);
            return Poll::Ready(Ok(&[]));
        }
        let buf = ready!(Pin::new(&mut this.body).poll_fill_buf(cx))?;
        if buf.is_empty() {
            // The end of a chunked body gives the connection back; a body cut short does not.
            match this.back.take() {
                Some(back) if this.left.is_none() => back.home(),
                _ => {}
            }
        }
        Poll::Ready(Ok(buf))
    }

    fn consume(self: Pin<&mut Self>, amt: usize) {
        let this = self.get_mut();
        Pin::new(&mut this.body).consume(amt);
        if amt > 0 {
            this.advanced(amt, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_types::{Method, Request, Url};
    use smol::io::{AsyncReadExt, AsyncWriteExt};
    use smol::net::TcpListener;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// A server on loopback answering every request with `head` and, unless it is a HEAD,
    /// `body`; it counts the connections it accepts.
    struct Server {
        origin: Origin,
        accepted: Arc<AtomicUsize>,
        _task: smol::Task<()>,
    }

    async fn server(head: &'static str, body: &'static str) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let task = smol::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                smol::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    while let Ok(n @ 1..) = s.read(&mut buf).await {
                        let answer = match buf[..n].starts_with(b"HEAD") {
                            true => head.to_owned(),
                            false => format!("{head}{body}"),
                        };
                        if s.write_all(answer.as_bytes()).await.is_err() {
                            break;
                        }
                    }
                })
                .detach();
            }
        });
        let origin = Origin {
            https: false,
            host: "127.0.0.1".into(),
            port,
        };
        Server {
            origin,
            accepted,
            _task: task,
        }
    }

    /// One request the way the client sends it: on an idle connection if there is one.
    async fn ask(origin: &Origin, idle: &Arc<Idle>, method: Method) -> Response {
        let url = Url::parse(&format!("{origin}/x")).unwrap();
        let conn = match idle.take(origin) {
            Some(c) => c,
            None => Conn::open(origin).await.unwrap(),
        };
        let res = async_h1::connect(conn.clone(), Request::new(method, url))
            .await
            .unwrap();
        lease(res, conn, origin.clone(), idle, method == Method::Head)
    }

    async fn body(mut res: Response) -> Vec<u8> {
        crate::proxy::client::read_small(&mut res, 1000, Duration::from_secs(5))
            .await
            .unwrap()
    }

    #[test]
    fn a_connection_goes_back_once_its_answer_is_read() {
        smol::block_on(async {
            let s = server("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", "hello").await;
            let idle = Arc::new(Idle::default());
            let res = ask(&s.origin, &idle, Method::Head).await;
            assert_eq!(idle.len(), 1, "a HEAD's answer has no body to wait for");
            assert_eq!(body(res).await, b"");
            for _ in 0..3 {
                let res = ask(&s.origin, &idle, Method::Get).await;
                assert!(idle.is_empty(), "in use until its answer is read");
                assert_eq!(body(res).await, b"hello");
                assert_eq!(idle.len(), 1);
            }
            assert_eq!(s.accepted.load(Ordering::SeqCst), 1);
        })
    }

    #[test]
    fn the_end_of_a_chunked_answer_gives_its_connection_back() {
        smol::block_on(async {
            let chunked = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
            let s = server(chunked, "5\r\nhello\r\n0\r\n\r\n").await;
            let idle = Arc::new(Idle::default());
            for _ in 0..2 {
                assert_eq!(
                    body(ask(&s.origin, &idle, Method::Get).await).await,
                    b"hello"
                );
                assert_eq!(idle.len(), 1);
            }
            assert_eq!(s.accepted.load(Ordering::SeqCst), 1);
        })
    }

    #[test]
    fn an_answer_not_read_to_its_end_or_saying_close_takes_its_connection() {
        smol::block_on(async {
            let s = server("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", "hello").await;
            let idle = Arc::new(Idle::default());
            let mut res = ask(&s.origin, &idle, Method::Get).await;
            let mut two = [0u8; 2];
            res.read_exact(&mut two).await.unwrap();
            drop(res);
            assert!(idle.is_empty());

            let close = "HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 5\r\n\r\n";
            let s = server(close, "hello").await;
            assert_eq!(
                body(ask(&s.origin, &idle, Method::Get).await).await,
                b"hello"
            );
            assert!(idle.is_empty());

            // Without a length the body ends when the server closes: nothing to reuse.
            let s = server("HTTP/1.1 200 OK\r\n\r\n", "").await;
            let _ = body(ask(&s.origin, &idle, Method::Get).await).await;
            assert!(idle.is_empty());
        })
    }
}
