//! Test support: start the real `atoll` binary on 127.0.0.1:0 against a temporary data
//! directory, and talk HTTP to it. No mocks: every test goes through the socket, the server,
//! the index (SQLite, or a real PostgreSQL: `index`) and the blob store (the disk, or a real S3:
//! `stored`).

#![allow(dead_code)]

pub mod browser;
pub mod bundles;
pub mod cluster;
pub mod conformance_data;
pub mod conformance_fixtures;
pub mod content;
pub mod fake_upstream;
pub mod index;
pub mod layout;
pub mod relay;
pub mod stored;
pub mod tools;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_types::{Body, Method, Request, Url};
use serde_json::Value;

/// A running atoll. Killed when dropped.
pub struct Atoll {
    child: Option<Child>,
    pub addr: SocketAddr,
    /// For an HTTPS atoll: the CA (PEM) clients trust, and the name they verify.
    pub tls: Option<(Vec<u8>, String)>,
    pub dir: PathBuf,
    _temp: Option<Arc<tempfile::TempDir>>,
    log: Arc<Mutex<String>>,
}

impl Atoll {
    /// atoll on a fresh temporary data directory.
    pub fn start() -> Atoll {
        Atoll::start_with(&[])
    }

    pub fn start_with(args: &[&str]) -> Atoll {
        let temp = Arc::new(tempfile::tempdir().expect("temp dir"));
        let dir = temp.path().join("data");
        let mut a = Atoll::start_in(&dir, args);
        a._temp = Some(temp);
        a
    }

    /// atoll on a given data directory (to restart on the same data).
    pub fn start_in(dir: &Path, args: &[&str]) -> Atoll {
        Atoll::try_start_in(dir, args, &[])
            .unwrap_or_else(|log| panic!("atoll did not start:\n{log}"))
    }

    /// atoll on a fresh temporary data directory, with these environment variables.
    pub fn start_env(args: &[&str], env: &[(&str, &str)]) -> Atoll {
        let temp = Arc::new(tempfile::tempdir().expect("temp dir"));
        let dir = temp.path().join("data");
        let mut a = Atoll::try_start_in(&dir, args, env)
            .unwrap_or_else(|log| panic!("atoll did not start:\n{log}"));
        a._temp = Some(temp);
        a
    }

    /// Starts atoll, or returns what it printed if it exits instead of listening.
    pub fn try_start_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Result<Atoll, String> {
        Atoll::try_start_bin(Path::new(env!("CARGO_BIN_EXE_atoll")), dir, args, env)
    }

    /// A given build of atoll (the release binary, for timings) on a fresh temporary directory.
    pub fn start_bin(bin: &Path, args: &[&str]) -> Atoll {
        let temp = Arc::new(tempfile::tempdir().expect("temp dir"));
        let dir = temp.path().join("data");
        let mut a = Atoll::try_start_bin(bin, &dir, args, &[])
            .unwrap_or_else(|log| panic!("{} did not start:\n{log}", bin.display()));
        a._temp = Some(temp);
        a
    }

    /// atoll on a fresh temporary data directory, started with this limit on open files (soft
    /// and hard), as under a low `ulimit -n`.
    pub fn start_with_files(soft: u64, hard: u64, args: &[&str], env: &[(&str, &str)]) -> Atoll {
        use std::os::unix::process::CommandExt;
        let temp = Arc::new(tempfile::tempdir().expect("temp dir"));
        let dir = temp.path().join("data");
        let mut cmd = Atoll::command(Path::new(env!("CARGO_BIN_EXE_atoll")), &dir, args, env);
        let limit = rustix::process::Rlimit {
            current: Some(soft),
            maximum: Some(hard),
        };
        // SAFETY: between fork and exec only setrlimit runs: one system call, no allocation,
        // no lock.
        unsafe {
            cmd.pre_exec(move || {
                rustix::process::setrlimit(rustix::process::Resource::Nofile, limit)
                    .map_err(std::io::Error::from)
            });
        }
        let mut a =
            Atoll::spawn(cmd, &dir).unwrap_or_else(|log| panic!("atoll did not start:\n{log}"));
        a._temp = Some(temp);
        a
    }

    /// Starts this build of atoll (the test build, or `release_bin()`).
    pub fn try_start_bin(
        bin: &Path,
        dir: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Atoll, String> {
        Atoll::spawn(Atoll::command(bin, dir, args, env), dir)
    }

    fn command(bin: &Path, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(bin);
        cmd.arg("--data-dir")
            .arg(dir)
            .args(["--listen", "127.0.0.1:0", "--log-level", "debug"])
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        engines(&mut cmd, dir);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs `cmd` and waits for atoll to say where it listens.
    fn spawn(mut cmd: Command, dir: &Path) -> Result<Atoll, String> {
        let mut child = cmd.spawn().expect("spawning atoll");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                // Log the line before announcing the address, so a test that looks for the
                // "listening" line right after start finds it.
                {
                    let mut l = sink.lock().unwrap();
                    l.push_str(&line);
                    l.push('\n');
                }
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let addr = rest.split("://").nth(1).unwrap_or(rest).trim().to_owned();
                    let _ = tx.send(addr);
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(addr) => Ok(Atoll {
                child: Some(child),
                addr: addr.parse().expect("listen address"),
                tls: None,
                dir: dir.to_path_buf(),
                _temp: None,
                log,
            }),
            Err(_) => {
                let _ = child.wait_timeout(Duration::from_secs(5));
                let _ = child.kill();
                let _ = child.wait();
                std::thread::sleep(Duration::from_millis(50));
                Err(log.lock().unwrap().clone())
            }
        }
    }

    /// Everything atoll has logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        signal(self.pid(), "TERM");
        self.terminate_after_signal()
    }

    /// Waits for the exit status after a signal was sent.
    pub fn terminate_after_signal(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        child
            .wait_timeout(Duration::from_secs(40))
            .expect("atoll did not stop within 40s of SIGTERM")
    }

    /// SIGKILL: no chance to clean up, as in a crash or power cut.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops this process and starts another on the same data directory.
    pub fn restart(mut self, args: &[&str]) -> Atoll {
        self.kill();
        let temp = self._temp.take();
        let mut next = Atoll::start_in(&self.dir, args);
        next._temp = temp;
        next
    }

    /// Talk HTTPS from now on, trusting `ca_pem` and verifying the name `host`.
    pub fn trust(mut self, ca_pem: Vec<u8>, host: &str) -> Atoll {
        self.tls = Some((ca_pem, host.to_owned()));
        self
    }

    pub fn url(&self, path: &str) -> Url {
        match &self.tls {
            Some((_, host)) => {
                Url::parse(&format!("https://{host}:{}{path}", self.addr.port())).unwrap()
            }
            None => Url::parse(&format!("http://{}{path}", self.addr)).unwrap(),
        }
    }

    pub fn req(&self, method: Method, path: &str) -> Req {
        Req {
            addr: self.addr,
            source: None,
            tls: self.tls.clone(),
            req: Request::new(method, self.url(path)),
        }
    }

    pub fn get(&self, path: &str) -> Res {
        self.req(Method::Get, path).send()
    }

    pub fn head(&self, path: &str) -> Res {
        self.req(Method::Head, path).send()
    }

    pub fn delete(&self, path: &str) -> Res {
        self.req(Method::Delete, path).send()
    }

    /// Writes raw bytes on a fresh connection and returns what comes back until the server
    /// closes or `wait` passes.
    pub fn raw(&self, bytes: &[u8], wait: Duration) -> String {
        let mut s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(wait)).unwrap();
        s.write_all(bytes).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// The binary that measurements should run: the static release build tests/run.sh makes
/// (ATOLL_RELEASE_BIN), else the test build.
pub fn release_bin() -> PathBuf {
    std::env::var_os("ATOLL_RELEASE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_atoll")))
}

/// What /proc says about a process: open file descriptors, resident and peak resident memory.
#[derive(Clone, Copy, Debug)]
pub struct ProcStats {
    pub fds: usize,
    /// Of which sockets (listener and connections).
    pub sockets: usize,
    /// Of which the index's (`index::descriptors`: SQLite's files, or the connections to
    /// PostgreSQL): the index's pool opens a connection for each read that finds none free, and
    /// keeps it.
    pub index_fds: usize,
    pub rss_kib: u64,
    pub peak_rss_kib: u64,
}

pub fn proc_stats(pid: u32) -> ProcStats {
    let links: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .map(|e| {
                    std::fs::read_link(e.path())
                        .map(|l| l.display().to_string())
                        .unwrap_or_default()
                })
                .collect()
        })
        .unwrap_or_default();
    let fds = links.len();
    let sockets = links.iter().filter(|l| l.starts_with("socket:")).count();
    let index_fds = index::descriptors(pid, &links);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    ProcStats {
        fds,
        sockets,
        index_fds,
        rss_kib: kib("VmRSS:"),
        peak_rss_kib: kib("VmHWM:"),
    }
}

impl Drop for Atoll {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "kill -{sig} {pid} failed");
}

trait WaitTimeout {
    fn wait_timeout(&mut self, d: Duration) -> Option<std::process::ExitStatus>;
}

impl WaitTimeout for Child {
    fn wait_timeout(&mut self, d: Duration) -> Option<std::process::ExitStatus> {
        let end = std::time::Instant::now() + d;
        while std::time::Instant::now() < end {
            if let Ok(Some(s)) = self.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

/// Anything that can build a request to atoll: the running server, or a plain client made
/// from its address (which threads can share).
pub trait Api {
    fn req(&self, method: Method, path: &str) -> Req;
}

impl Api for Atoll {
    fn req(&self, method: Method, path: &str) -> Req {
        Atoll::req(self, method, path)
    }
}

/// A plain-HTTP client of an atoll at this address.
#[derive(Clone, Copy)]
pub struct Client(pub SocketAddr);

impl Api for Client {
    fn req(&self, method: Method, path: &str) -> Req {
        Req {
            addr: self.0,
            source: None,
            tls: None,
            req: Request::new(
                method,
                Url::parse(&format!("http://{}{path}", self.0)).unwrap(),
            ),
        }
    }
}

/// A plain-HTTP client connecting from a given local address (another address of the
/// loopback network, 127.0.0.2 say: all of 127/8 is loopback on Linux).
#[derive(Clone, Copy)]
pub struct ClientFrom(pub SocketAddr, pub IpAddr);

impl Api for ClientFrom {
    fn req(&self, method: Method, path: &str) -> Req {
        let mut r = Client(self.0).req(method, path);
        r.source = Some(self.1);
        r
    }
}

/// A TCP connection to `to` from the local address `from`.
pub fn connect_from(from: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let s = socket2::Socket::new(
        socket2::Domain::for_address(to),
        socket2::Type::STREAM,
        None,
    )?;
    s.bind(&SocketAddr::new(from, 0).into())?;
    s.connect(&to.into())?;
    Ok(s.into())
}

impl Client {
    pub fn delete(&self, path: &str) -> u16 {
        self.req(Method::Delete, path).send().status
    }

    /// Pushes an image as docker does: a blob the registry says it has (HEAD 200) is not
    /// uploaded again. Returns the manifest PUT's status.
    pub fn push_skipping_existing(&self, repo: &str, tag: &str, img: &content::Image) -> u16 {
        for b in img.blobs() {
            let d = content::sha256(b);
            if self
                .req(Method::Head, &format!("/v2/{repo}/blobs/{d}"))
                .send()
                .status
                != 200
            {
                content::push_blob(self, repo, b);
            }
        }
        content::put_manifest(self, repo, tag, &img.media_type, &img.manifest).status
    }
}

/// A request being built.
pub struct Req {
    addr: SocketAddr,
    /// The local address to connect from; `None`: the system's choice.
    source: Option<IpAddr>,
    tls: Option<(Vec<u8>, String)>,
    req: Request,
}

impl Req {
    pub fn header(mut self, name: &str, value: &str) -> Req {
        self.req.append_header(name, value);
        self
    }

    pub fn body(mut self, bytes: impl Into<Vec<u8>>) -> Req {
        self.req.set_body(Body::from_bytes(bytes.into()));
        self
    }

    /// A body sent with `Transfer-Encoding: chunked` (no Content-Length), as streaming clients do.
    pub fn chunked(mut self, bytes: impl Into<Vec<u8>>) -> Req {
        let reader = smol::io::Cursor::new(bytes.into());
        self.req.set_body(Body::from_reader(reader, None));
        self
    }

    /// Basic credentials.
    pub fn basic(self, user: &str, password: &str) -> Req {
        use base64::Engine as _;
        let v = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        self.header("Authorization", &format!("Basic {v}"))
    }

    pub fn send(self) -> Res {
        self.try_send().expect("HTTP exchange")
    }

    /// Over HTTPS trusting only the system's CAs (not atoll's): the handshake should fail.
    pub fn try_send_untrusted(mut self) -> Result<Res, String> {
        if let Some((ca, _)) = &mut self.tls {
            ca.clear();
        }
        self.try_send()
    }

    /// "METHOD /path?query", for messages.
    pub fn line(&self) -> String {
        let url = self.req.url();
        let query = url.query().map(|q| format!("?{q}")).unwrap_or_default();
        format!("{} {}{query}", self.req.method(), url.path())
    }

    /// Sends; an error is a failure below HTTP (connection, TLS handshake).
    pub fn try_send(self) -> Result<Res, String> {
        smol::block_on(self.exchange())
    }

    /// [`Req::try_send`], given up after `limit` with an error saying so: for clients of servers
    /// that are killed and restarted under them, where a request that hangs must not hang the
    /// test.
    pub fn try_send_within(self, limit: Duration) -> Result<Res, String> {
        use smol::future::FutureExt as _;
        let what = self.line();
        let late = async move {
            smol::Timer::after(limit).await;
            Err(format!("{what}: no answer within {limit:?}"))
        };
        smol::block_on(self.exchange().or(late))
    }

    async fn exchange(self) -> Result<Res, String> {
        let Req {
            addr,
            source,
            tls,
            req,
        } = self;
        let stream = match source {
            None => smol::net::TcpStream::connect(addr).await,
            Some(from) => connect_from(from, addr).and_then(smol::net::TcpStream::try_from),
        }
        .map_err(|e| e.to_string())?;
        let head = req.method() == Method::Head;
        let mut res = match tls {
            None => async_h1::connect(stream, req).await,
            Some((ca, host)) => {
                let mut connector = async_native_tls::TlsConnector::new();
                if !ca.is_empty() {
                    let cert =
                        async_native_tls::Certificate::from_pem(&ca).map_err(|e| e.to_string())?;
                    connector = connector.add_root_certificate(cert);
                }
                let tls = connector
                    .connect(&host, stream)
                    .await
                    .map_err(|e| e.to_string())?;
                async_h1::connect(tls, req).await
            }
        }
        .map_err(|e| e.to_string())?;
        // A HEAD response announces a length but carries no body.
        let body = if head {
            Vec::new()
        } else {
            res.body_bytes().await.map_err(|e| e.to_string())?
        };
        Ok(Res::of(&res, body, head))
    }
}

/// One connection used request after request, as Go's client (the conformance suites') uses
/// its keep-alive connections: a new one is opened only after the server said
/// `Connection: close`.
pub struct KeepAlive {
    addr: SocketAddr,
    stream: Option<smol::net::TcpStream>,
    /// Connections opened so far.
    pub opened: usize,
}

impl KeepAlive {
    pub fn new(a: &Atoll) -> KeepAlive {
        KeepAlive {
            addr: a.addr,
            stream: None,
            opened: 0,
        }
    }
}

impl Req {
    /// Sends on `conn`'s open connection (or a new one). An exchange that fails, as one on a
    /// connection the server dropped without saying so, is an `Err` naming whether the
    /// connection was reused.
    pub fn send_on(self, conn: &mut KeepAlive) -> Result<Res, String> {
        let Req { req, .. } = self;
        smol::block_on(async move {
            let reused = conn.stream.is_some();
            let stream = match conn.stream.take() {
                Some(s) => s,
                None => {
                    conn.opened += 1;
                    smol::net::TcpStream::connect(conn.addr)
                        .await
                        .map_err(|e| format!("connect: {e}"))?
                }
            };
            let head = req.method() == Method::Head;
            let failed = |e: http_types::Error| {
                format!(
                    "HTTP exchange failed on a {} connection: {e}",
                    if reused { "reused" } else { "new" }
                )
            };
            let mut res = async_h1::connect(stream.clone(), req)
                .await
                .map_err(failed)?;
            let body = if head {
                Vec::new()
            } else {
                res.body_bytes().await.map_err(failed)?
            };
            let close = res
                .header("Connection")
                .is_some_and(|v| v.as_str().eq_ignore_ascii_case("close"));
            if !close {
                conn.stream = Some(stream);
            }
            Ok(Res::of(&res, body, head))
        })
    }
}

/// A response, fully read.
#[derive(Debug)]
pub struct Res {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// A response to HEAD: no body, so no error envelope to check.
    pub head: bool,
}

impl Res {
    /// A response's status and headers with the body already read.
    fn of(res: &http_types::Response, body: Vec<u8>, head: bool) -> Res {
        let headers = res
            .iter()
            .flat_map(|(n, vs)| {
                vs.iter()
                    .map(move |v| (n.as_str().to_owned(), v.as_str().to_owned()))
            })
            .collect();
        Res {
            status: res.status() as u16,
            headers,
            body,
            head,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// The body as text, for messages.
    pub fn text_lossy(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The code of the first error in the spec's envelope.
    pub fn error_code(&self) -> String {
        let v = self.json();
        v["errors"][0]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error envelope: {v}"))
            .to_owned()
    }

    pub fn error_message(&self) -> String {
        self.json()["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Asserts status and, for errors, the OCI error code.
    #[track_caller]
    pub fn expect(&self, status: u16, code: Option<&str>) -> &Res {
        assert_eq!(
            self.status,
            status,
            "unexpected status; body: {}",
            String::from_utf8_lossy(&self.body)
        );
        if let (Some(code), false) = (code, self.head) {
            assert_eq!(
                self.error_code(),
                code,
                "body: {}",
                String::from_utf8_lossy(&self.body)
            );
        }
        self
    }

    pub fn location(&self) -> String {
        let loc = self.header("Location").expect("Location header");
        // Clients follow the path of the Location; tests do the same.
        match loc.find("/v2/") {
            Some(i) => loc[i..].to_owned(),
            None => loc.to_owned(),
        }
    }
}

/// Lists every file under `dir`, relative, with its contents: a snapshot to compare. On the
/// object store, the bucket's objects under the directory's prefix are in it too, by key
/// (`blobs/sha256/..` reads the same on both engines).
pub fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.push((rel, std::fs::read(&p).unwrap_or_default()));
            }
        }
    }
    walk(dir, dir, &mut out);
    out.extend(stored::objects(dir));
    out.sort();
    out
}

/// Files under `dir` (recursively), relative paths.
pub fn files_under(dir: &Path) -> Vec<String> {
    snapshot(dir).into_iter().map(|(p, _)| p).collect()
}

/// Points `cmd`, an atoll on `dir`, at the blob store and the index the suite runs on (the
/// disk and SQLite unless tests/run.sh says otherwise). Every atoll the tests start goes
/// through here, the command-line modes (`--gc`, `--verify`, ...) too: they must see the data
/// the server on the same directory keeps.
pub fn engines(cmd: &mut Command, dir: &Path) {
    object_store(cmd, dir);
    index::engine(cmd, dir);
}

/// When the suite runs on the object store (tests/run.sh's second and fourth passes set
/// ATOLL_TEST_BLOB_STORE=s3, and ATOLL_TEST_S3_* for the Garage it started), points `cmd` at
/// the test bucket, under a prefix of its own for each data directory: a registry restarted on
/// the same directory finds its blobs again, and no two registries see each other's.
pub fn object_store(cmd: &mut Command, dir: &Path) {
    if !on_object_store() {
        return;
    }
    let endpoint = std::env::var("ATOLL_TEST_S3_ENDPOINT")
        .expect("ATOLL_TEST_BLOB_STORE=s3 needs the ATOLL_TEST_S3_* of a running S3 service");
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"));
    let prefix = &content::sha256(dir.to_string_lossy().as_bytes())["sha256:".len()..][..16];
    cmd.env(
        "ATOLL_BLOB_STORE",
        format!("s3://{}/{prefix}", var("ATOLL_TEST_S3_BUCKET")),
    )
    .env("ATOLL_S3_ENDPOINT", endpoint)
    .env("ATOLL_S3_REGION", var("ATOLL_TEST_S3_REGION"))
    .env("ATOLL_S3_ACCESS_KEY_ID", var("ATOLL_TEST_S3_ACCESS_KEY_ID"))
    .env(
        "ATOLL_S3_SECRET_ACCESS_KEY",
        var("ATOLL_TEST_S3_SECRET_ACCESS_KEY"),
    );
}

/// True when the suite runs on the object store: tests that look at `blobs/` on the disk
/// check the bucket's side through the registry instead.
pub fn on_object_store() -> bool {
    std::env::var("ATOLL_TEST_BLOB_STORE").as_deref() == Ok("s3")
}
