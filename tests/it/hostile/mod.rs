//! Slow and hostile clients: connections that never speak, heads trickled or flooded, bodies
//! that stall, never end or announce absurd lengths. Each must end on a timeout or a limit,
//! cost atoll no memory to speak of and no file descriptor once it is over, and never slow a
//! normal client that pulls meanwhile.
//!
//! atoll runs with short limits (ATOLL_STALL_TIMEOUT=2s, ATOLL_HEAD_TIMEOUT=3s,
//! ATOLL_HANDSHAKE_TIMEOUT=2s where it matters) so the tests wait seconds; the defaults are 60 s,
//! 60 s and 10 s, and every bound below scales with them. Crowds from one address are in
//! `crowds.rs`, heads framed ambiguously in `framing.rs`.

mod crowds;
mod framing;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use http_types::Method;

use crate::support::content::{push_blob, sha256, Image};
use crate::support::{proc_stats, Api, Atoll, Client};

const STALL: Duration = Duration::from_secs(2);
const HEAD: Duration = Duration::from_secs(3);
/// Slack for a loaded 2-core machine running a debug build.
const SLACK: Duration = Duration::from_secs(2);
/// The slowest answer a normal client may get while an attack goes on.
const FAST: Duration = Duration::from_secs(1);

fn hostile_atoll() -> Atoll {
    Atoll::start_env(
        &[],
        &[("ATOLL_STALL_TIMEOUT", "2s"), ("ATOLL_HEAD_TIMEOUT", "3s")],
    )
}

/// A client that keeps pulling an image (a fresh connection per request) until stopped.
struct Normal {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<(Duration, usize, Vec<String>)>,
}

fn normal_client(a: &Atoll) -> Normal {
    let img = Image::oci(1, 64 * 1024);
    img.push(a, "normal/app", "1").expect(201, None);
    let c = Client(a.addr);
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let layer = sha256(&img.layers[0]);
    let handle = std::thread::spawn(move || {
        let (mut slowest, mut n, mut bad) = (Duration::ZERO, 0, Vec::new());
        while !flag.load(Ordering::Relaxed) {
            for path in [
                "/v2/".to_owned(),
                "/v2/normal/app/manifests/1".to_owned(),
                format!("/v2/normal/app/blobs/{layer}"),
            ] {
                let t = Instant::now();
                let res = c.req(Method::Get, &path).try_send();
                slowest = slowest.max(t.elapsed());
                n += 1;
                match res {
                    Ok(r) if r.status == 200 => {}
                    Ok(r) => bad.push(format!("{path}: {}", r.status)),
                    Err(e) => bad.push(format!("{path}: {e}")),
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        (slowest, n, bad)
    });
    // Let it open what it uses (index connections, the blob) before a baseline is taken.
    std::thread::sleep(Duration::from_millis(300));
    Normal { stop, handle }
}

impl Normal {
    /// Stops; asserts every answer was a fast 200.
    #[track_caller]
    fn finish(self, what: &str) {
        self.stop.store(true, Ordering::Relaxed);
        let (slowest, n, bad) = self.handle.join().unwrap();
        eprintln!("{what}: a normal client made {n} requests meanwhile, slowest {slowest:?}");
        assert!(bad.is_empty(), "{what}: normal requests failed: {bad:?}");
        assert!(n > 0, "{what}: the normal client made no request");
        assert!(
            slowest < FAST,
            "{what}: a normal request took {slowest:?} (limit {FAST:?})"
        );
    }
}

/// The file descriptors atoll holds but the index's: the reader pool may grow by a connection
/// when an attack's requests read the index side by side, and keeps it (not a leak).
fn held_fds(a: &Atoll) -> usize {
    let s = proc_stats(a.pid());
    s.fds - s.index_fds
}

/// Waits until atoll holds no more file descriptors than `base` (+1: a keep-alive the normal
/// client's last request may still hold), the index's aside; fails after `within`.
#[track_caller]
fn fds_return_to(a: &Atoll, base: usize, within: Duration) {
    let end = Instant::now() + within;
    loop {
        let now = held_fds(a);
        if now <= base + 1 {
            return;
        }
        assert!(
            Instant::now() < end,
            "atoll holds {now} file descriptors, {base} before the attack"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn connect(a: &Atoll) -> TcpStream {
    let s = TcpStream::connect(a.addr).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Reads until the server closes (or resets) the connection; returns what came and when the
/// connection ended, or `None` if it was still open after `limit`.
fn read_to_close(s: &mut TcpStream, limit: Duration) -> (String, Option<Duration>) {
    let t = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let left = limit.saturating_sub(t.elapsed());
        if left.is_zero() {
            return (String::from_utf8_lossy(&out).into_owned(), None);
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return (String::from_utf8_lossy(&out).into_owned(), None)
            }
            Err(_) => break, // reset
        }
    }
    (
        String::from_utf8_lossy(&out).into_owned(),
        Some(t.elapsed()),
    )
}

/// Writes `chunk` over and over until the connection fails or `max` bytes went; returns the
/// bytes written.
fn flood(mut s: TcpStream, chunk: Vec<u8>, max: usize) -> JoinHandle<usize> {
    std::thread::spawn(move || {
        let mut sent = 0;
        while sent < max && s.write_all(&chunk).is_ok() {
            sent += chunk.len();
        }
        sent
    })
}

fn start_upload(a: &Atoll, repo: &str) -> String {
    let r = a
        .req(Method::Post, &format!("/v2/{repo}/blobs/uploads/"))
        .send();
    r.expect(202, None);
    r.location()
}

fn upload_range(a: &Atoll, location: &str) -> String {
    let r = a.get(location);
    r.expect(204, None);
    r.header("Range").unwrap_or_default().to_owned()
}

/// A connection that never sends a byte holds a file and a place in the limits: it is closed
/// after the first-byte limit (ATOLL_HANDSHAKE_TIMEOUT: 10 s by default, 2 s here), not the
/// stall limit (60 s, the default, here). It waited the stall limit before.
#[test]
fn connections_that_never_speak_are_closed_after_the_first_byte_limit() {
    const FIRST: Duration = Duration::from_secs(2);
    let a = Atoll::start_env(&[], &[("ATOLL_HANDSHAKE_TIMEOUT", "2s")]);
    let normal = normal_client(&a);
    let base = held_fds(&a);
    let t = Instant::now();
    let mut silent: Vec<TcpStream> = (0..100).map(|_| connect(&a)).collect();
    std::thread::sleep(Duration::from_millis(300));
    let held = held_fds(&a);
    assert!(held >= base + 95, "atoll holds {held} fds, {base} before");
    for s in &mut silent {
        let (_, closed) = read_to_close(s, FIRST + SLACK * 2);
        assert!(closed.is_some(), "a silent connection was still open");
    }
    let took = t.elapsed();
    eprintln!("100 silent connections: all closed by atoll after {took:?}");
    assert!(took >= FIRST - Duration::from_millis(200), "{took:?}");
    assert!(took <= FIRST + SLACK, "{took:?}");
    normal.finish("silent connections");
    fds_return_to(&a, base, SLACK);
}

/// Clients that ask for a large blob and never read it: each download fills the socket, waits
/// out the stall limit and is cut, its file and socket closed; meanwhile a normal client is
/// served as fast as ever.
#[test]
fn downloads_nobody_reads_are_cut_after_the_stall_limit() {
    let a = hostile_atoll();
    let blob = crate::support::content::random_bytes(32 << 20);
    let d = push_blob(&a, "unread/blob", &blob);
    let normal = normal_client(&a);
    let base = held_fds(&a);
    let t = Instant::now();
    let unread: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut s = connect(&a);
            write!(
                s,
                "GET /v2/unread/blob/blobs/{d} HTTP/1.1\r\nHost: x\r\n\r\n"
            )
            .unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let held = held_fds(&a);
    assert!(held >= base + 20, "atoll holds {held} fds, {base} before");
    fds_return_to(&a, base, STALL + SLACK * 2);
    let took = t.elapsed();
    eprintln!("20 unread downloads: all cut by atoll after {took:?}");
    assert!(took >= STALL, "cut after {took:?}, before the stall limit");
    normal.finish("unread downloads");
    drop(unread);
}

#[test]
fn trickled_heads_are_cut_at_the_head_timeout_with_408() {
    let a = hostile_atoll();
    let normal = normal_client(&a);
    let base = held_fds(&a);
    let t = Instant::now();
    let lorises: Vec<JoinHandle<(String, Option<Duration>)>> = (0..20)
        .map(|i| {
            let mut s = connect(&a);
            std::thread::spawn(move || {
                s.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n").unwrap();
                let t = Instant::now();
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                s.set_read_timeout(Some(Duration::from_millis(400)))
                    .unwrap();
                // A header line every 400 ms: never stalled, never done.
                while t.elapsed() < HEAD * 4 {
                    match s.read(&mut buf) {
                        Ok(0) => return (String::from_utf8_lossy(&got).into(), Some(t.elapsed())),
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            if s.write_all(format!("X-{i}: slow\r\n").as_bytes()).is_err() {
                                let (rest, _) = read_to_close(&mut s, SLACK);
                                got.extend_from_slice(rest.as_bytes());
                                return (String::from_utf8_lossy(&got).into(), Some(t.elapsed()));
                            }
                        }
                        Err(_) => return (String::from_utf8_lossy(&got).into(), Some(t.elapsed())),
                    }
                }
                (String::from_utf8_lossy(&got).into(), None)
            })
        })
        .collect();
    for l in lorises {
        let (answer, closed) = l.join().unwrap();
        let closed = closed.expect("a trickled head was still being read after 4 head timeouts");
        assert!(closed <= HEAD + SLACK, "cut after {closed:?}");
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    }
    eprintln!(
        "20 trickled heads: all cut with 408 after {:?}",
        t.elapsed()
    );
    normal.finish("trickled heads");
    fds_return_to(&a, base, SLACK);
}

#[test]
fn header_floods_get_431_and_cost_no_memory() {
    let a = hostile_atoll();
    let normal = normal_client(&a);
    let base = held_fds(&a);
    let before = proc_stats(a.pid());
    // One header line that never ends: before the head cap, atoll kept all of it in memory.
    let mut s = connect(&a);
    s.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Flood: ")
        .unwrap();
    let sent = flood(s, vec![b'a'; 64 * 1024], 64 << 20).join().unwrap();
    let after = proc_stats(a.pid());
    let grew = after.peak_rss_kib.saturating_sub(before.peak_rss_kib);
    eprintln!(
        "an endless header line: atoll cut it after {} KiB had been written (socket buffers \
         included); peak RSS {} -> {} KiB",
        sent / 1024,
        before.peak_rss_kib,
        after.peak_rss_kib
    );
    assert!(
        sent < 32 << 20,
        "atoll took {sent} bytes of one header line"
    );
    assert!(grew < 8 * 1024, "peak RSS grew by {grew} KiB");

    // Many headers, a long head, one long line: each refused with 431, and said why.
    let many: String = (0..200).map(|i| format!("X-{i}: v\r\n")).collect();
    let long: String = (0..100)
        .map(|i| format!("X-{i}: {}\r\n", "v".repeat(200)))
        .collect();
    let line = format!("X-Long: {}\r\n", "v".repeat(12 * 1024));
    for (what, headers) in [
        ("200 headers", many),
        ("20 KiB of headers", long),
        ("a 12 KiB line", line),
    ] {
        let answer = a.raw(
            format!("GET /v2/ HTTP/1.1\r\nHost: x\r\n{headers}\r\n").as_bytes(),
            STALL + SLACK,
        );
        assert!(answer.starts_with("HTTP/1.1 431"), "{what}: {answer:?}");
        assert!(answer.contains("request head"), "{what}: {answer:?}");
    }
    normal.finish("header floods");
    fds_return_to(&a, base, SLACK);
}

#[test]
fn a_stalled_body_is_cut_and_the_upload_keeps_its_offset_while_a_slow_one_finishes() {
    let a = hostile_atoll();
    let normal = normal_client(&a);
    let base = held_fds(&a);
    let loc = start_upload(&a, "slow/body");
    let mut s = connect(&a);
    write!(
        s,
        "PATCH {loc} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: 1048576\r\n\r\n"
    )
    .unwrap();
    s.write_all(&[7u8; 100]).unwrap();
    let (answer, closed) = read_to_close(&mut s, STALL + SLACK * 2);
    let closed = closed.expect("a stalled body kept its connection");
    eprintln!(
        "a body that stalls: cut after {closed:?}: {:?}",
        answer.lines().next()
    );
    assert!(closed <= STALL + SLACK, "{closed:?}");
    assert_eq!(
        upload_range(&a, &loc),
        "0-0",
        "the cut chunk is rolled back"
    );

    // Moving, however slowly, is not stalling: a link that slow is still a link.
    let mut s = connect(&a);
    write!(
        s,
        "PATCH {loc} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: 10\r\n\r\n"
    )
    .unwrap();
    let t = Instant::now();
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(450));
        s.write_all(b"x").unwrap();
    }
    let mut answer = [0u8; 12];
    s.set_read_timeout(Some(SLACK)).unwrap();
    s.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"HTTP/1.1 202", "after {:?}", t.elapsed());
    assert!(t.elapsed() > STALL * 2);
    drop(s);
    assert_eq!(upload_range(&a, &loc), "0-9");
    normal.finish("slow bodies");
    fds_return_to(&a, base, SLACK);
}

#[test]
fn absurd_content_lengths_are_answered_at_once() {
    let a = hostile_atoll();
    let normal = normal_client(&a);
    let base = held_fds(&a);
    let head = |method: &str, path: &str, len: &str| {
        format!("{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len}\r\n\r\n")
    };
    for len in ["99999999999999999999999", "-1", "12abc"] {
        let answer = a.raw(head("GET", "/v2/", len).as_bytes(), STALL + SLACK);
        assert!(answer.starts_with("HTTP/1.1 400"), "{len}: {answer:?}");
    }

    // A petabyte upload: 507 before a byte is written, and the upload stays usable.
    let loc = start_upload(&a, "absurd/len");
    let mut s = connect(&a);
    let t = Instant::now();
    s.write_all(head("PATCH", &loc, "1000000000000000").as_bytes())
        .unwrap();
    s.write_all(b"some bytes").unwrap();
    let mut first = [0u8; 12];
    s.set_read_timeout(Some(SLACK)).unwrap();
    s.read_exact(&mut first).unwrap();
    assert!(t.elapsed() < FAST, "{:?}", t.elapsed());
    let (rest, closed) = read_to_close(&mut s, STALL + SLACK * 3);
    let answer = String::from_utf8_lossy(&first).into_owned() + &rest;
    assert!(answer.starts_with("HTTP/1.1 507"), "{answer:?}");
    assert!(answer.contains("disk full"), "{answer:?}");
    assert!(closed.is_some(), "the connection stayed open after the 507");
    assert_eq!(upload_range(&a, &loc), "0-0");
    let d = push_blob(&a, "absurd/len", b"still works");
    assert_eq!(d, sha256(b"still works"));

    // A terabyte manifest: 413 at once.
    let mut s = connect(&a);
    let t = Instant::now();
    s.write_all(head("PUT", "/v2/absurd/len/manifests/1", "1000000000000").as_bytes())
        .unwrap();
    let mut first = [0u8; 12];
    s.set_read_timeout(Some(SLACK)).unwrap();
    s.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 413");
    assert!(t.elapsed() < FAST, "{:?}", t.elapsed());

    // A body nobody reads, announced and never sent: answered, then closed on the stall.
    let mut s = connect(&a);
    s.write_all(head("GET", "/v2/", "1000000000000").as_bytes())
        .unwrap();
    let (answer, closed) = read_to_close(&mut s, STALL + SLACK * 2);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    assert!(closed.expect("still open") <= STALL + SLACK);
    normal.finish("absurd lengths");
    fds_return_to(&a, base, SLACK);
}

#[test]
fn endless_chunked_bodies_end_at_a_limit() {
    let a = hostile_atoll();
    let normal = normal_client(&a);
    let base = held_fds(&a);
    let before = proc_stats(a.pid());
    let mut chunk = format!("{:x}\r\n", 64 * 1024).into_bytes();
    chunk.extend(std::iter::repeat_n(b'{', 64 * 1024));
    chunk.extend(b"\r\n");
    let chunked = |method: &str, path: &str| {
        format!("{method} {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    };

    // To a manifest: 413 once past 4 MiB. To a URL that reads no body: answered, and the
    // connection closed once the drain budget (8 MiB or 5 s) is spent.
    for (what, method, path, status) in [
        (
            "manifest",
            "PUT",
            "/v2/endless/m/manifests/1",
            "HTTP/1.1 413",
        ),
        ("no body wanted", "GET", "/v2/", "HTTP/1.1 200"),
    ] {
        let mut s = connect(&a);
        s.write_all(chunked(method, path).as_bytes()).unwrap();
        let t = Instant::now();
        let writer = flood(s.try_clone().unwrap(), chunk.clone(), 1 << 30);
        let (answer, closed) = read_to_close(&mut s, Duration::from_secs(5) + SLACK * 2);
        let closed =
            closed.unwrap_or_else(|| panic!("{what}: still reading after {:?}", t.elapsed()));
        let sent = writer.join().unwrap();
        eprintln!(
            "an endless chunked body ({what}): {} after {closed:?}, {} MiB written",
            answer.lines().next().unwrap_or(""),
            sent >> 20
        );
        assert!(answer.starts_with(status), "{what}: {answer:?}");
        assert!(sent < 64 << 20, "{what}: {sent} bytes taken");
    }

    // A body whose trailer is cut short: async-h1's decoder then waits without asking to be
    // woken, and atoll kept the connection (and its descriptor) forever.
    let mut s = connect(&a);
    s.write_all(chunked("POST", "/v2/").as_bytes()).unwrap();
    s.write_all(b"0\r\nX-Trailer: cut").unwrap();
    let (answer, closed) = read_to_close(&mut s, STALL * 3 + SLACK);
    assert!(answer.starts_with("HTTP/1.1 405"), "{answer:?}");
    let closed = closed.expect("a cut trailer kept its connection open");
    eprintln!("a cut trailer: connection closed after {closed:?}");
    assert!(closed <= STALL * 2 + SLACK, "{closed:?}");

    let after = proc_stats(a.pid());
    let grew = after.peak_rss_kib.saturating_sub(before.peak_rss_kib);
    assert!(grew < 16 * 1024, "peak RSS grew by {grew} KiB");
    normal.finish("endless chunked bodies");
    fds_return_to(&a, base, SLACK);
}
