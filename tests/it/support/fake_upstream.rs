//! A scripted upstream registry for the pull-through cache's tests: it serves the manifests
//! and blobs it is given, can demand a Bearer token from its own token service, and can
//! misbehave on purpose (redirect to a "CDN", lie about sizes, send garbage, hang up mid-blob,
//! crawl). It records every request. Test code only: a minimal HTTP/1.1 server, one request
//! per connection.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;

use super::content::sha256;

/// How blob downloads are answered.
#[derive(Clone, Debug, PartialEq)]
pub enum Blobs {
    Normal,
    /// 307 to `/cdn/<digest>` on this server, named `localhost` (another origin than the
    /// `127.0.0.1` it is reached by, so credentials must not follow).
    Redirect,
    /// Announce this many more bytes than the blob has, send the blob, close.
    LongerThanSent(u64),
    /// Send this many bytes of the blob, then close the connection.
    HangUpAfter(usize),
    /// Send the right length of wrong bytes.
    Garbage,
    /// Send in 64 KiB pieces, pausing between them.
    Crawl(Duration),
    /// `Crawl` with the right length of wrong bytes: clients join the fill before it fails.
    CrawlGarbage(Duration),
    /// No Content-Length: a chunked body of endless bytes, until the reader hangs up (or a
    /// minute or 4 GiB pass: the fake stops by itself). Counted in `State::endless_sent`.
    NoLengthEndless,
}

#[derive(Default)]
pub struct State {
    pub manifests: HashMap<String, (String, Vec<u8>)>,
    pub blobs: HashMap<String, Vec<u8>>,
    /// `METHOD path` of every request, in order.
    pub requests: Vec<String>,
    /// Require a Bearer token from /token; with credentials, the token service wants them.
    pub token: Option<Option<(String, String)>>,
    pub blob_mode: Option<Blobs>,
    /// Answer every manifest request with this status (e.g. 500), if set.
    pub manifest_status: Option<u16>,
    /// Body bytes `Blobs::NoLengthEndless` got written to a socket.
    pub endless_sent: u64,
}

pub struct FakeUpstream {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<State>>,
}

impl FakeUpstream {
    pub fn start() -> FakeUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let s = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let s = s.clone();
                std::thread::spawn(move || serve(conn, addr, &s));
            }
        });
        FakeUpstream { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Adds an image: its manifest under `repo:tag` and by digest, and its blobs.
    pub fn add(&self, repo: &str, tag: &str, img: &super::content::Image) {
        let mut st = self.state.lock().unwrap();
        for r in [tag.to_owned(), img.digest()] {
            st.manifests.insert(
                format!("{repo}/{r}"),
                (img.media_type.clone(), img.manifest.clone()),
            );
        }
        for b in img.blobs() {
            st.blobs.insert(sha256(b), b.clone());
        }
    }

    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }

    /// How many requests started with `prefix` (e.g. "GET /v2/x/blobs/").
    pub fn count(&self, prefix: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.starts_with(prefix))
            .count()
    }
}

fn serve(mut conn: TcpStream, me: SocketAddr, state: &Mutex<State>) {
    conn.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    let (method, target) = (
        parts.next().unwrap_or("").to_owned(),
        parts.next().unwrap_or("").to_owned(),
    );
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    state
        .lock()
        .unwrap()
        .requests
        .push(format!("{method} {target}"));
    let path = target.split('?').next().unwrap_or("").to_owned();
    let reply = |conn: &mut TcpStream, status: &str, headers: &[(&str, String)], body: &[u8]| {
        let mut head = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let _ = conn.write_all(head.as_bytes());
        if method != "HEAD" {
            let _ = conn.write_all(body);
        }
    };

    if path == "/token" {
        let want = state.lock().unwrap().token.clone().flatten();
        let given = headers
            .get("authorization")
            .and_then(|a| a.strip_prefix("Basic "))
            .and_then(|b| {
                let raw = base64::engine::general_purpose::STANDARD.decode(b).ok()?;
                let s = String::from_utf8(raw).ok()?;
                s.split_once(':').map(|(u, p)| (u.to_owned(), p.to_owned()))
            });
        if want.is_some() && given != want {
            return reply(&mut conn, "401 Unauthorized", &[], b"{}");
        }
        return reply(
            &mut conn,
            "200 OK",
            &[("Content-Type", "application/json".into())],
            br#"{"token":"fake-token","expires_in":300}"#,
        );
    }
    if path.starts_with("/cdn/") {
        if headers.contains_key("authorization") {
            return reply(
                &mut conn,
                "400 Bad Request",
                &[],
                b"credentials must not follow a redirect to another host",
            );
        }
        let digest = path.trim_start_matches("/cdn/").to_owned();
        let blob = state.lock().unwrap().blobs.get(&digest).cloned();
        return match blob {
            Some(b) => reply(&mut conn, "200 OK", &[], &b),
            None => reply(&mut conn, "404 Not Found", &[], b""),
        };
    }
    let needs_token = state.lock().unwrap().token.is_some();
    if needs_token && headers.get("authorization").map(String::as_str) != Some("Bearer fake-token")
    {
        let challenge = format!("Bearer realm=\"http://{me}/token\",service=\"fake\"");
        return reply(
            &mut conn,
            "401 Unauthorized",
            &[("WWW-Authenticate", challenge)],
            b"{}",
        );
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return reply(&mut conn, "404 Not Found", &[], b"");
    };
    if let Some(i) = rest.rfind("/manifests/") {
        let key = format!("{}/{}", &rest[..i], &rest[i + "/manifests/".len()..]);
        let (status, found) = {
            let st = state.lock().unwrap();
            (st.manifest_status, st.manifests.get(&key).cloned())
        };
        if let Some(s) = status {
            return reply(&mut conn, &format!("{s} Failing"), &[], b"");
        }
        return match found {
            Some((ct, body)) => reply(
                &mut conn,
                "200 OK",
                &[
                    ("Content-Type", ct),
                    ("Docker-Content-Digest", sha256(&body)),
                ],
                &body,
            ),
            None => reply(&mut conn, "404 Not Found", &[], b"{}"),
        };
    }
    if let Some(i) = rest.rfind("/blobs/") {
        let digest = rest[i + "/blobs/".len()..].to_owned();
        let (blob, mode) = {
            let st = state.lock().unwrap();
            (
                st.blobs.get(&digest).cloned(),
                st.blob_mode.clone().unwrap_or(Blobs::Normal),
            )
        };
        let Some(blob) = blob else {
            return reply(&mut conn, "404 Not Found", &[], b"{}");
        };
        let len = blob.len();
        return match mode {
            Blobs::Normal => reply(&mut conn, "200 OK", &[], &blob),
            Blobs::Redirect => {
                let to = format!("http://localhost:{}/cdn/{digest}", me.port());
                reply(
                    &mut conn,
                    "307 Temporary Redirect",
                    &[("Location", to)],
                    b"",
                )
            }
            Blobs::Garbage => reply(&mut conn, "200 OK", &[], &vec![0x5a; len]),
            Blobs::LongerThanSent(extra) => {
                reply(
                    &mut conn,
                    "200 OK",
                    &[("Content-Length", (len as u64 + extra).to_string())],
                    &blob,
                );
            }
            Blobs::HangUpAfter(n) => {
                reply(
                    &mut conn,
                    "200 OK",
                    &[("Content-Length", len.to_string())],
                    &blob[..n.min(len)],
                );
            }
            Blobs::Crawl(pause) => crawl(&mut conn, &blob, pause),
            Blobs::CrawlGarbage(pause) => crawl(&mut conn, &vec![0x5a; len], pause),
            Blobs::NoLengthEndless => endless(&mut conn, state),
        };
    }
    reply(&mut conn, "404 Not Found", &[], b"")
}

/// Answers 200 with `body` in 64 KiB pieces, `pause` after each.
fn crawl(conn: &mut TcpStream, body: &[u8], pause: Duration) {
    let len = body.len();
    let head = format!("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: {len}\r\n\r\n");
    let _ = conn.write_all(head.as_bytes());
    for piece in body.chunks(64 * 1024) {
        if conn.write_all(piece).is_err() {
            return;
        }
        std::thread::sleep(pause);
    }
}

/// Answers 200 with a chunked body that does not end until the reader hangs up.
fn endless(conn: &mut TcpStream, state: &Mutex<State>) {
    let head = "HTTP/1.1 200 OK\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n";
    let _ = conn.write_all(head.as_bytes());
    let piece = [0x5au8; 64 * 1024];
    let chunk = [format!("{:X}\r\n", piece.len()).as_bytes(), &piece, b"\r\n"].concat();
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        if conn.write_all(&chunk).is_err() {
            return;
        }
        let mut st = state.lock().unwrap();
        st.endless_sent += piece.len() as u64;
        if st.endless_sent >= 4 << 30 {
            return;
        }
    }
}
