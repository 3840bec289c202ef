//! The server: accept loop (which lets a connection in only if the limits in `admit.rs` leave
//! room for it), one task per connection, TLS handshake inside that task (with a timeout, so a
//! silent client never stalls the loop), one access-log line per request, and a graceful stop
//! that lets requests in flight finish.
//!
//! It takes its listener and shutdown signal as arguments; `main.rs` binds, tests bind port 0.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
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
use super::conn::{Conn, ConnState, Flusher, HeadRefusal, Traffic};
use super::direct::Direct;
use super::handlers::{dispatch, Policy};
pub use super::limits::Limits;
use super::response::{self, API_VERSION};
use super::route::Endpoint;
use crate::auth::limiter::Verdict;
use crate::auth::{self, Access, Auth, Identity, Refusal};
use crate::error::{Error, Result};
use crate::gc::GcReport;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::shutdown::Shutdown;
use crate::tls::Tls;

/// What every request handler shares.
pub struct App {
    pub registry: Arc<Registry>,
    pub policy: Policy,
    /// Logins, when configured; `None` is an open registry.
    pub auth: Option<Arc<Auth>>,
    /// Whether clients reach atoll over HTTPS (for the token realm's URL).
    pub https: bool,
    pub traffic: Arc<Traffic>,
    pub shutdown: Shutdown,
    /// The pull-through cache, when upstreams are configured.
    pub proxy: Option<Arc<crate::proxy::Proxy>>,
    /// The last scheduled garbage collection's report.
    pub last_gc: Arc<std::sync::Mutex<Option<GcReport>>>,
    pub metrics: Arc<Metrics>,
    /// When this server started (Unix seconds).
    pub started_at: i64,
    in_flight: AtomicUsize,
}

impl App {
    pub fn new(
        registry: Arc<Registry>,
        policy: Policy,
        auth: Option<Arc<Auth>>,
        https: bool,
        shutdown: Shutdown,
    ) -> App {
        App {
            registry,
            policy,
            auth,
            https,
            traffic: Arc::default(),
            shutdown,
            proxy: None,
            last_gc: Arc::default(),
            metrics: Arc::default(),
            started_at: crate::clock::now(),
            in_flight: AtomicUsize::new(0),
        }
    }

    /// Requests received whose response has not been fully sent.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
}

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
                Some(HeadRefusal::Http10(head)) => {
                    super::http10::answer(&self.app, answer, head, &state, peer).await
                }
                refusal => {
                    if let Some((status, why)) = head_problem(&e, refusal) {
                        refuse(answer, &status, &why).await;
                    }
                }
            }
        }
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

/// Answers one request: route, dispatch, turn errors into the envelope, add the headers every
/// response carries, and attach the access-log line to the body (written once it is sent).
pub(super) async fn respond(
    app: &Arc<App>,
    mut req: Request,
    conn: &Arc<ConnState>,
    peer: SocketAddr,
) -> Response {
    conn.request_started();
    app.in_flight.fetch_add(1, Ordering::Relaxed);
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
    let mut res = result.unwrap_or_else(|e| {
        if e.is_client_error() {
            debug!("{peer} \"{method} {target}\": {e}");
        } else {
            error!("{peer} \"{method} {target}\": {e}");
        }
        let mut res = response::error(&e);
        if let (Error::Unauthorized(_), Some(auth)) = (&e, &app.auth) {
            res.insert_header("WWW-Authenticate", challenge(app, auth, &req));
        }
        res
    });
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

/// Who is asking, may they, and then the handler.
async fn handle(
    app: &Arc<App>,
    req: &mut Request,
    endpoint: Endpoint,
    peer: SocketAddr,
) -> (Identity, Result<Response>) {
    let Some(auth) = &app.auth else {
        return (
            Identity::Anonymous,
            dispatch(app, req, endpoint, &Identity::Anonymous).await,
        );
    };
    let header = req.header("Authorization").map(|h| h.as_str().to_owned());
    let who = match authenticate(app, auth, header.as_deref(), peer).await {
        Ok(who) => who,
        Err(e) => return (Identity::Anonymous, Err(e)),
    };
    // The API base is where clients learn how to log in: without credentials, the challenge.
    let probe = endpoint == Endpoint::ApiBase && header.is_none();
    if probe || !auth::allowed(auth.anonymous_pull, &who, endpoint.access()) {
        let why = match endpoint.access() {
            Access::Write => "pushes and deletes need a login",
            _ => "this registry needs a login",
        };
        return (who, Err(Error::Unauthorized(why.into())));
    }
    let result = dispatch(app, req, endpoint, &who).await;
    (who, result)
}

/// Checks credentials, throttling addresses that keep failing. A first login costs a bcrypt
/// check on a blocking thread; later requests with the same credentials are answered from
/// memory.
async fn authenticate(
    app: &App,
    auth: &Arc<Auth>,
    header: Option<&str>,
    peer: SocketAddr,
) -> Result<Identity> {
    let Some(header) = header else {
        return Ok(Identity::Anonymous);
    };
    let now_ms = crate::clock::now_ms();
    if let Some(wait) = auth.throttled(peer.ip(), now_ms) {
        return Err(too_many(wait));
    }
    if let Some(who) = auth.cached(Some(header)) {
        return Ok(who);
    }
    let (a, h) = (auth.clone(), header.to_owned());
    let checked = smol::unblock(move || a.authenticate(Some(&h), crate::clock::now())).await;
    match checked {
        Ok(who) => {
            if who != Identity::Anonymous {
                auth.record(peer.ip(), true, now_ms);
            }
            Ok(who)
        }
        Err(Refusal::Throttled(wait)) => Err(too_many(wait)),
        Err(Refusal::BadCredentials) => {
            app.metrics.login_failures.fetch_add(1, Ordering::Relaxed);
            let bad = || Error::Unauthorized("wrong user name, password or token".into());
            match auth.record(peer.ip(), false, now_ms) {
                Verdict::Allow => Err(bad()),
                Verdict::Delay(d) => {
                    Timer::after(d).await;
                    Err(bad())
                }
                Verdict::Block(wait) => Err(too_many(wait)),
            }
        }
    }
}

fn too_many(wait: Duration) -> Error {
    Error::TooManyRequests(format!(
        "too many failed logins from this address: try again in {} s",
        wait.as_secs().max(1)
    ))
}

/// `WWW-Authenticate` for a 401: Basic when every request needs a login; with anonymous pulls,
/// a Bearer challenge pointing at atoll's own token endpoint, because docker refuses to pull
/// anonymously from a Basic challenge but fetches an anonymous token from a Bearer one.
fn challenge(app: &App, auth: &Auth, req: &Request) -> String {
    if !auth.anonymous_pull {
        return "Basic realm=\"atoll\"".into();
    }
    let host: String = req
        .header("Host")
        .map(|h| h.as_str())
        .unwrap_or("localhost")
        .chars()
        .filter(|c| !matches!(c, '"' | '\\' | ' '))
        .collect();
    let scheme = if app.https { "https" } else { "http" };
    let mut c = format!("Bearer realm=\"{scheme}://{host}/token\",service=\"atoll\"");
    if let Ok(endpoint) = Endpoint::parse(&req.method(), req.url().path(), req.url().query()) {
        if let Some(name) = endpoint.repo() {
            let actions = if endpoint.access() == Access::Write {
                "pull,push"
            } else {
                "pull"
            };
            c.push_str(&format!(",scope=\"repository:{name}:{actions}\""));
        }
    }
    c
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
        self.app.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
