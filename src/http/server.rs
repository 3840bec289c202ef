//! The connection's life, from accept to close: the accept loop (which lets a connection in
//! only if the limits in `admit.rs` leave room for it), one task per connection, the first
//! byte telling plain HTTP from TLS, the TLS handshake inside that task (with a timeout, so a
//! silent client never stalls the loop), HTTP/1.1 through async-h1 over the guarded stream
//! (`conn.rs`), the answers to request heads atoll refuses (HTTP/1.0 ones written by
//! `http10.rs`), and a graceful stop that lets requests in flight finish.
//!
//! Each request goes through `respond`: route, authenticate (`authn.rs`), dispatch
//! (`handlers/`), errors into the envelope, the headers every response carries, and one
//! access-log line once the body is sent.
//!
//! It takes its listener and shutdown signal as arguments; `serve.rs` binds, tests bind port 0.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http_types::{Body, Method, Request, Response, StatusCode};
use log::{debug, error, info, warn};
use smol::future::FutureExt;
use smol::io::{AsyncBufRead, AsyncRead, AsyncWrite};
use smol::net::{TcpListener, TcpStream};
use smol::{Executor, Timer};

use super::admit::{Admission, RefusalLog, Refused, Slot};
use super::app::App;
use super::authn;
use super::conn::{Conn, ConnState, Flusher, HeadRefusal};
use super::direct::Direct;
use super::framing::Head10;
use super::handlers::dispatch;
use super::http10;
use super::limits::Limits;
use super::response::{self, API_VERSION};
use super::route::Endpoint;
use crate::auth::Identity;
use crate::error::{Error, Result};
use crate::tls::Tls;

pub struct Server {
    pub app: Arc<App>,
    pub tls: Option<Arc<Tls>>,
    pub limits: Limits,
    pub executor: Arc<Executor<'static>>,
    admission: Arc<Admission>,
}

impl Server {
    pub fn new(
        app: Arc<App>,
        tls: Option<Arc<Tls>>,
        limits: Limits,
        executor: Arc<Executor<'static>>,
    ) -> Server {
        Server {
            app,
            tls,
            admission: Admission::new(limits.max_connections, limits.per_address()),
            limits,
            executor,
        }
    }

    /// Accepts connections until shutdown, then waits (up to `limits.drain`) for the requests
    /// in flight to finish.
    pub async fn run(self: Arc<Self>, listener: TcpListener) -> Result<()> {
        let shutdown = self.app.shutdown.clone();
        let mut refusals = RefusalLog::default();
        loop {
            let next = async { Some(listener.accept().await) }
                .or(async {
                    shutdown.wait().await;
                    None
                })
                .await;
            let Some(accepted) = next else { break };
            match accepted {
                Ok((tcp, peer)) => match self.admission.admit(peer.ip()) {
                    Ok(slot) => {
                        self.executor
                            .spawn(self.clone().connection(tcp, peer, slot))
                            .detach();
                    }
                    // Closed at once: an answer could wait on a client that does not read.
                    Err(why) => self.refused(peer, why, &mut refusals),
                },
                Err(e) => {
                    // Out of file descriptors, typically: back off instead of spinning.
                    warn!("accepting a connection failed: {e}");
                    Timer::after(Duration::from_millis(100)).await;
                }
            }
        }
        drop(listener);
        let deadline = Instant::now() + self.limits.drain;
        while self.app.in_flight() > 0 && Instant::now() < deadline {
            Timer::after(Duration::from_millis(20)).await;
        }
        match self.app.in_flight() {
            0 => info!("all requests finished"),
            n => warn!(
                "stopping with {n} requests unfinished after {:?}",
                self.limits.drain
            ),
        }
        Ok(())
    }

    fn refused(&self, peer: SocketAddr, why: Refused, log: &mut RefusalLog) {
        let Some(n) = log.note(Instant::now()) else {
            debug!("refused {peer}: {why:?}");
            return;
        };
        let (max, per) = (self.limits.max_connections, self.limits.per_address());
        match why {
            Refused::Full => warn!("refused {peer}: {max} connections open (the limit)"),
            Refused::AddressFull => {
                warn!("refused {peer}: its address holds {per} connections (its share of {max})")
            }
        }
        if n > 1 {
            warn!("{n} connections refused since the previous such warning");
        }
    }

    /// Serves one connection; `_slot` holds its place in the limits until it ends.
    async fn connection(self: Arc<Self>, tcp: TcpStream, peer: SocketAddr, _slot: Slot) {
        let _ = tcp.set_nodelay(true);
        // One deadline for the first byte and the TLS handshake: a connection that says
        // nothing holds a place in the limits (and a file) for no longer than this.
        let deadline = Instant::now() + self.limits.handshake;
        let first = first_byte(&tcp, deadline).await;
        match (&self.tls, first) {
            (_, None) => {}
            (None, Some(0x16)) => {
                // Clients that try HTTPS first (skopeo, docker) fall back to HTTP at once on
                // this answer, instead of waiting out their handshake timeout.
                debug!("{peer} sent a TLS handshake to the plain-HTTP port");
                refuse(
                    tcp,
                    "HTTP/1.0 400 Bad Request",
                    "Client sent an HTTPS request to a plain HTTP registry.",
                )
                .await;
            }
            (None, Some(_)) => self.http(tcp.clone(), peer, Some(tcp)).await,
            (Some(_), Some(b)) if b.is_ascii_uppercase() => {
                debug!("{peer} sent plain HTTP to the HTTPS port");
                refuse(
                    tcp,
                    "HTTP/1.0 400 Bad Request",
                    "Client sent an HTTP request to an HTTPS registry: use https://.",
                )
                .await;
            }
            (Some(tls), Some(_)) => {
                let acceptor = tls.acceptor();
                let handshake = async { Ok(acceptor.accept(tcp).await) }
                    .or(async {
                        Timer::at(deadline).await;
                        Err(())
                    })
                    .await;
                match handshake {
                    Ok(Ok(tls)) => {
                        let io = async_dup::Arc::new(async_dup::Mutex::new(tls));
                        self.http(io, peer, None).await
                    }
                    Ok(Err(e)) => debug!("TLS handshake with {peer} failed: {e}"),
                    Err(()) => debug!("TLS handshake with {peer} timed out"),
                }
            }
        }
    }

    /// Serves HTTP/1.1 on a connection. `plain` is the TCP stream of a connection without TLS,
    /// which requests may use to send blobs straight to the socket (`direct.rs`).
    async fn http<S>(&self, io: S, peer: SocketAddr, plain: Option<TcpStream>)
    where
        S: AsyncRead + AsyncWrite + Clone + Send + Sync + Unpin + 'static,
    {
        let conn = Conn::new(
            io,
            self.limits.stall,
            self.limits.head,
            self.app.traffic.clone(),
        );
        let state = conn.state();
        let answer = conn.clone();
        let direct = plain.map(|tcp| Direct {
            tcp,
            state: state.clone(),
            traffic: self.app.traffic.clone(),
            stall: self.limits.stall,
        });
        let app = self.app.clone();
        let flusher = Flusher::new(state.clone());
        let result = async_h1::accept(conn, move |mut req| {
            if let Some(d) = &direct {
                req.ext_mut().insert(d.clone());
            }
            req.ext_mut().insert(flusher.clone());
            let (app, state) = (app.clone(), state.clone());
            async move { Ok(respond(&app, req, &state, peer).await) }
        })
        .await;
        if let Err(e) = result {
            debug!("connection from {peer} ended: {e}");
            let state = answer.state();
            match state.take_head_refusal() {
                Some(HeadRefusal::Http10(head)) => self.http10(answer, head, &state, peer).await,
                refusal => {
                    if let Some((status, why)) = head_problem(&e, refusal) {
                        refuse(answer, &status, &why).await;
                    }
                }
            }
        }
    }

    /// Answers an HTTP/1.0 request (`http10.rs`) through the same `respond` as every other
    /// request, then closes the connection.
    async fn http10(
        &self,
        io: impl AsyncWrite + Unpin,
        head: Head10,
        state: &Arc<ConnState>,
        peer: SocketAddr,
    ) {
        let Some(req) = http10::request(&head) else {
            return http10::malformed(io).await;
        };
        let method = req.method();
        let res = respond(&self.app, req, state, peer).await;
        http10::send(io, method, res, peer).await
    }
}

/// The answer to a request head atoll could not take, if the connection ended on one: over
/// the size limits (ours, or async-h1's 8 KiB and 128 headers: its messages are matched, and a
/// test fails if they change), too slow, framed ambiguously (`framing.rs`), or malformed.
/// Failures of the socket itself, and anything after a request was read, get no answer:
/// async-h1 reports those as I/O errors.
fn head_problem(e: &http_types::Error, refusal: Option<HeadRefusal>) -> Option<(String, String)> {
    let line = |code: u16| {
        let status = http_types::StatusCode::try_from(code).unwrap_or(StatusCode::BadRequest);
        format!("HTTP/1.1 {} {}", code, status.canonical_reason())
    };
    match refusal {
        Some(HeadRefusal::TooLarge) => return Some((line(431), e.to_string())),
        Some(HeadRefusal::TooSlow) => return Some((line(408), e.to_string())),
        Some(HeadRefusal::Framing { status, why }) => return Some((line(status), why)),
        Some(HeadRefusal::Http10(_)) | None => {}
    }
    if e.downcast_ref::<std::io::Error>().is_some() {
        return None;
    }
    let msg = e.to_string();
    if msg.contains("Head byte length") || msg.contains("too many headers") {
        return Some((
            line(431),
            format!("request head over the limits of 8 KiB and 128 headers ({msg})"),
        ));
    }
    Some((line(400), format!("malformed request: {msg}")))
}

/// Answers a connection with a plain-text error and closes it: one speaking the wrong
/// protocol, or a request head atoll cannot take.
async fn refuse(mut io: impl AsyncWrite + Unpin, status: &str, why: &str) {
    // No length: the body ends when the connection closes (HTTP/1.0 clients included).
    let msg = format!("{status}\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n{why}\n");
    let _ = smol::io::AsyncWriteExt::write_all(&mut io, msg.as_bytes()).await;
    let _ = smol::io::AsyncWriteExt::flush(&mut io).await;
}

/// The client's first byte, without consuming it; `None` if it says nothing by `deadline` or
/// hangs up.
async fn first_byte(tcp: &TcpStream, deadline: Instant) -> Option<u8> {
    let mut first = [0u8; 1];
    let peeked = async { tcp.peek(&mut first).await.ok() }
        .or(async {
            Timer::at(deadline).await;
            None
        })
        .await;
    (peeked == Some(1)).then_some(first[0])
}

/// Answers one request: route, authenticate, dispatch, turn errors into the envelope, add the
/// headers every response carries, and attach the access-log line to the body (written once it
/// is sent).
async fn respond(
    app: &Arc<App>,
    mut req: Request,
    conn: &Arc<ConnState>,
    peer: SocketAddr,
) -> Response {
    conn.request_started();
    app.request_started();
    let started = Instant::now();
    let method = req.method();
    let target = log_target(&req);
    let has_body = req.header("Transfer-Encoding").is_some()
        || req
            .header("Content-Length")
            .is_some_and(|v| v.as_str().trim() != "0");
    let parsed = Endpoint::parse(&method, req.url().path(), req.url().query());
    let reads_body = parsed.as_ref().is_ok_and(Endpoint::reads_body);
    let label = parsed.as_ref().map_or("invalid", Endpoint::label);
    let (who, result) = match parsed {
        Ok(endpoint) => handle(app, &mut req, endpoint, peer).await,
        Err(e) => (Identity::Anonymous, Err(e)),
    };
    let mut res = result.unwrap_or_else(|e| error_answer(app, &req, e, peer, &target));
    res.insert_header(API_VERSION.0, API_VERSION.1);
    let failed = !res.status().is_success();
    if has_body && (failed || !reads_body) {
        // A body the handler did not read to its end: async-h1 would drain it after the
        // response, and its chunked decoder can swallow the start of the client's next request
        // on this connection. Close instead (after a bounded drain, so the client can finish
        // sending and read the answer).
        conn.close_after_response();
        res.insert_header("Connection", "close");
    } else if app.shutdown.is_triggered() {
        res.insert_header("Connection", "close");
    }
    let line = AccessLine {
        endpoint: label,
        peer,
        user: who.name().to_owned(),
        method,
        target,
        status: res.status() as u16,
        started,
    };
    logged(res, line, app, conn)
}

/// The envelope for a request that failed, logged (a client's mistake only at debug level),
/// with the login challenge on a 401.
fn error_answer(app: &App, req: &Request, e: Error, peer: SocketAddr, target: &str) -> Response {
    let method = req.method();
    if e.is_client_error() {
        debug!("{peer} \"{method} {target}\": {e}");
    } else {
        error!("{peer} \"{method} {target}\": {e}");
    }
    let mut res = response::error(&e);
    if let (Error::Unauthorized(_), Some(auth)) = (&e, &app.auth) {
        res.insert_header("WWW-Authenticate", authn::challenge(app, auth, req));
    }
    res
}

/// `res` with its body wrapped to write the access-log `line` once it is sent.
fn logged(mut res: Response, line: AccessLine, app: &Arc<App>, conn: &Arc<ConnState>) -> Response {
    let len = res.len();
    let body = res.take_body();
    res.set_body(Body::from_reader(
        Logged {
            inner: body,
            sent: 0,
            line,
            app: app.clone(),
            conn: conn.clone(),
        },
        len,
    ));
    res
}

/// Who is asking, may they (`authn.rs`), and then the handler.
async fn handle(
    app: &Arc<App>,
    req: &mut Request,
    endpoint: Endpoint,
    peer: SocketAddr,
) -> (Identity, Result<Response>) {
    let (who, allowed) = authn::identify(app, req, &endpoint, peer).await;
    if let Err(e) = allowed {
        return (who, Err(e));
    }
    let result = dispatch(app, req, endpoint, &who).await;
    (who, result)
}

/// Path and query as logged: never a header, so never a credential; bounded in length.
fn log_target(req: &Request) -> String {
    let url = req.url();
    let mut t = url.path().to_owned();
    if let Some(q) = url.query() {
        t.push('?');
        t.push_str(q);
    }
    if t.len() > 300 {
        let mut end = 300;
        while !t.is_char_boundary(end) {
            end -= 1;
        }
        t.truncate(end);
        t.push_str("...");
    }
    t
}

struct AccessLine {
    endpoint: &'static str,
    peer: SocketAddr,
    user: String,
    method: Method,
    target: String,
    status: u16,
    started: Instant,
}

/// A response body that counts what is sent and, when dropped (fully sent, or the client gone),
/// writes the access-log line and ends the request's time in flight.
struct Logged {
    inner: Body,
    sent: u64,
    line: AccessLine,
    app: Arc<App>,
    /// Bytes a body wrote to the socket itself (`direct.rs`) are counted there.
    conn: Arc<ConnState>,
}

impl AsyncRead for Logged {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            self.sent += n as u64;
        }
        r
    }
}

impl AsyncBufRead for Logged {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<&[u8]>> {
        Pin::new(&mut self.get_mut().inner).poll_fill_buf(cx)
    }

    fn consume(mut self: Pin<&mut Self>, amt: usize) {
        self.sent += amt as u64;
        Pin::new(&mut self.inner).consume(amt)
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        self.sent += self.conn.direct_sent.swap(0, Ordering::Relaxed);
        let l = &self.line;
        info!(
            "{} {} \"{} {}\" {} {}B {:.1}ms",
            l.peer,
            l.user,
            l.method,
            l.target,
            l.status,
            self.sent,
            l.started.elapsed().as_secs_f64() * 1000.0
        );
        self.app.metrics.request(l.endpoint, l.status);
        self.app.request_ended();
    }
}
