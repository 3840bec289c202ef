//! The pull-through cache: fetching from upstreams (atoll itself, and a scripted upstream that
//! misbehaves on demand), serving when the uplink is gone, one fetch per blob however many
//! clients ask, logins (Basic and the Bearer token flow), routing, eviction, and the reuse of
//! upstream connections.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use http_types::Method;

use crate::support::content::*;
use crate::support::fake_upstream::{Blobs, FakeUpstream};
use crate::support::relay::Relay;
use crate::support::Atoll;

/// Pulls an image through `a` (manifest by tag, then every blob) and checks every byte.
#[track_caller]
fn pull(a: &Atoll, repo: &str, tag: &str, img: &Image) {
    let m = a.get(&format!("/v2/{repo}/manifests/{tag}"));
    m.expect(200, None);
    assert_eq!(m.body, img.manifest, "{repo}:{tag}");
    assert_eq!(
        m.header("Docker-Content-Digest"),
        Some(img.digest().as_str())
    );
    for b in img.blobs() {
        let r = a.get(&format!("/v2/{repo}/blobs/{}", sha256(b)));
        r.expect(200, None);
        assert_eq!(&r.body, b, "{repo}: blob {}", sha256(b));
    }
    // The last byte reaches the client just before the fill commits the file;
    // wait for the commit so tests that look at the disk see what was pulled.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !img.blobs().iter().all(|b| holds_blob(a, &sha256(b))) {
        assert!(Instant::now() < deadline, "{repo}: the fill did not commit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn cache(upstream: &str, extra: &[&str]) -> Atoll {
    let mut args = vec!["--upstream", upstream, "--upstream-timeout", "1s"];
    args.extend_from_slice(extra);
    Atoll::start_with(&args)
}

/// Polls `done` every 50 ms for up to 15 s (eviction runs on a timer).
fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !done() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether an atoll's data directory holds a blob's file.
fn holds_blob(a: &Atoll, digest: &str) -> bool {
    crate::support::stored::exists(&a.dir, digest)
}

/// Upstream blob GETs in an atoll's access log.
fn upstream_blob_gets(up: &Atoll, digest: &str) -> usize {
    std::thread::sleep(Duration::from_millis(100));
    up.log()
        .lines()
        .filter(|l| l.contains("\"GET /v2/") && l.contains(&format!("/blobs/{digest}\"")))
        .count()
}

/// Pull requests (GET or HEAD under /v2/) in an atoll's access log from byte `from` of the log
/// on, and the distinct client connections (peer addresses) they came on.
fn pulls_and_connections(up: &Atoll, from: usize) -> (usize, usize) {
    std::thread::sleep(Duration::from_millis(100));
    let log = up.log();
    let peers: Vec<&str> = log[from..]
        .lines()
        .filter_map(|l| {
            let (before, _) = l
                .split_once(" \"GET /v2/")
                .or_else(|| l.split_once(" \"HEAD /v2/"))?;
            let words: Vec<&str> = before.split_whitespace().collect();
            words.len().checked_sub(2).map(|i| words[i])
        })
        .collect();
    let distinct: std::collections::HashSet<&str> = peers.iter().copied().collect();
    (peers.len(), distinct.len())
}

#[test]
fn a_pull_goes_over_one_upstream_connection() {
    let up = Atoll::start();
    let img = Image::oci(2, 50_000);
    img.push(&up, "library/app", "1").expect(201, None);
    let a = cache(&format!("http://{}", up.addr), &[]);
    let mark = up.log().len();
    pull(&a, "library/app", "1", &img);
    // The manifest by tag (a tag not cached yet is fetched without a HEAD first), the config
    // and two layers: one connection, kept open between them because each answer was read to
    // its end.
    assert_eq!(
        pulls_and_connections(&up, mark),
        (4, 1),
        "{}",
        &up.log()[mark..]
    );
    // A second image later: still that connection.
    let other = Image::oci(1, 1000);
    other.push(&up, "library/other", "1").expect(201, None);
    let mark = up.log().len();
    pull(&a, "library/other", "1", &other);
    let (requests, connections) = pulls_and_connections(&up, mark);
    assert_eq!((requests, connections), (3, 1));
}

/// An upstream holding `library/one:1` and `library/two:1`, a counting relay in front of it, and
/// a cache of the relay that has pulled the first: (upstream, second image, relay, cache).
fn one_pulled_through_a_relay() -> (Atoll, Image, Relay, Atoll) {
    let up = Atoll::start();
    let (one, two) = (Image::oci(1, 50_000), Image::oci(1, 50_000));
    one.push(&up, "library/one", "1").expect(201, None);
    two.push(&up, "library/two", "1").expect(201, None);
    let relay = Relay::start(up.addr);
    let a = cache(&relay.url(), &[]);
    pull(&a, "library/one", "1", &one);
    (up, two, relay, a)
}

#[test]
fn an_upstream_restarted_between_pulls_serves_the_second_pull() {
    // The relay keeps the upstream's address when it comes back on another port.
    let (up, two, relay, a) = one_pulled_through_a_relay();
    assert_eq!(relay.connections(), 1);
    // The restart ends the connection the cache keeps idle.
    let up = up.restart(&[]);
    relay.set_target(up.addr);
    pull(&a, "library/two", "1", &two);
    assert_eq!(
        relay.connections(),
        2,
        "one new connection, for the whole second pull"
    );
    assert!(!a.log().contains("serving the cached copy"), "{}", a.log());
}

#[test]
fn a_request_on_a_connection_the_upstream_just_closed_is_sent_again() {
    let (_up, two, relay, a) = one_pulled_through_a_relay();
    // The idle connection looks alive, and is closed as the next request arrives on it: the
    // request (the tag's GET, then the rest of the pull) goes on a new connection.
    relay.break_next_reuse();
    pull(&a, "library/two", "1", &two);
    assert_eq!(relay.connections(), 2);
    assert!(
        a.log().contains("an idle connection had closed"),
        "{}",
        a.log()
    );
    assert!(!a.log().contains("serving the cached copy"), "{}", a.log());
}

#[test]
fn pulls_through_once_then_serves_when_the_upstream_is_gone() {
    let mut up = Atoll::start();
    let img = Image::oci(2, 50_000);
    img.push(&up, "library/app", "1").expect(201, None);
    let a = cache(&format!("http://{}", up.addr), &[]);

    pull(&a, "library/app", "1", &img);
    pull(&a, "library/app", "1", &img);
    for b in img.blobs() {
        assert_eq!(
            upstream_blob_gets(&up, &sha256(b)),
            1,
            "each blob crossed the uplink once"
        );
    }
    let m = a.get("/metrics");
    let metrics = String::from_utf8_lossy(&m.body);
    assert!(
        metrics.contains("atoll_cache_misses_total 4"),
        "manifest + 3 blobs: {metrics}"
    );

    // The uplink drops: everything cached keeps working, by tag (with a warning) and digest.
    up.kill();
    let t = Instant::now();
    pull(&a, "library/app", "1", &img);
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "stale serving does not wait long: {:?}",
        t.elapsed()
    );
    a.get(&format!("/v2/library/app/manifests/{}", img.digest()))
        .expect(200, None);
    assert!(
        a.log().contains("library/app:1: serving the cached copy"),
        "{}",
        a.log()
    );
    // What was never cached gets a clear error.
    let r = a.get("/v2/library/other/manifests/1");
    assert_eq!(r.status, 502, "{r:?}");
    assert_eq!(r.error_code(), "UNAVAILABLE");
    assert!(
        r.error_message().contains("not cached"),
        "{}",
        r.error_message()
    );
}

#[test]
fn a_moved_tag_is_followed_and_a_vanished_tag_is_404() {
    let up = Atoll::start();
    let (one, two) = (Image::oci(1, 100), Image::oci(1, 100));
    one.push(&up, "library/moving", "latest").expect(201, None);
    let a = cache(&format!("http://{}", up.addr), &[]);
    pull(&a, "library/moving", "latest", &one);
    two.push(&up, "library/moving", "latest").expect(201, None);
    pull(&a, "library/moving", "latest", &two);
    up.delete("/v2/library/moving/manifests/latest")
        .expect(202, None);
    a.get("/v2/library/moving/manifests/latest")
        .expect(404, Some("MANIFEST_UNKNOWN"));
    // By digest, cached content is immutable and still served.
    a.get(&format!("/v2/library/moving/manifests/{}", one.digest()))
        .expect(200, None);
}

#[test]
fn a_multi_arch_pull_caches_the_index_and_only_the_platforms_pulled() {
    let up = Atoll::start();
    let (amd, arm) = (Image::oci(1, 1000), Image::oci(1, 1000));
    amd.push(&up, "library/multi", &amd.digest())
        .expect(201, None);
    arm.push(&up, "library/multi", &arm.digest())
        .expect(201, None);
    let idx = index(OCI_INDEX, &[(&amd, "amd64"), (&arm, "arm64")]);
    put_manifest(&up, "library/multi", "1", OCI_INDEX, &idx).expect(201, None);
    let a = cache(&format!("http://{}", up.addr), &[]);
    assert_eq!(a.get("/v2/library/multi/manifests/1").body, idx);
    pull(&a, "library/multi", &amd.digest(), &amd);
    assert_eq!(
        upstream_blob_gets(&up, &sha256(&arm.layers[0])),
        0,
        "arm64 was never pulled"
    );
    let layer = &arm.layers[0];
    assert!(!crate::support::stored::exists(&a.dir, &sha256(layer)));
}

#[test]
fn names_pushed_here_stay_local_and_cached_names_take_no_pushes() {
    let up = Atoll::start();
    let upstream_img = Image::oci(1, 100);
    upstream_img
        .push(&up, "library/shadow", "1")
        .expect(201, None);
    upstream_img
        .push(&up, "library/cached", "1")
        .expect(201, None);
    let a = cache(&format!("http://{}", up.addr), &[]);
    // Pushed here first: local, never proxied, even though the upstream has the name.
    let local = Image::oci(1, 100);
    local.push(&a, "library/shadow", "1").expect(201, None);
    assert_eq!(a.get("/v2/library/shadow/manifests/1").body, local.manifest);
    // Cached: a push into it is refused, with the reason.
    pull(&a, "library/cached", "1", &upstream_img);
    let r = a
        .req(Method::Post, "/v2/library/cached/blobs/uploads/")
        .send();
    r.expect(405, Some("UNSUPPORTED"));
    assert!(
        r.error_message().contains("cache of"),
        "{}",
        r.error_message()
    );
}

#[test]
fn named_upstreams_are_chosen_by_prefix_or_ns() {
    let (hub, ghcr) = (Atoll::start(), Atoll::start());
    let (x, y) = (Image::oci(1, 100), Image::oci(1, 100));
    x.push(&hub, "library/x", "1").expect(201, None);
    y.push(&ghcr, "org/y", "1").expect(201, None);
    let a = cache(
        &format!("http://{}", hub.addr),
        &["--upstream", &format!("ghcr.io=http://{}", ghcr.addr)],
    );
    pull(&a, "library/x", "1", &x);
    pull(&a, "ghcr.io/org/y", "1", &y);
    // containerd's form: the same cached repository.
    let r = a.get("/v2/org/y/manifests/1?ns=ghcr.io");
    r.expect(200, None);
    assert_eq!(r.body, y.manifest);
    assert_eq!(upstream_blob_gets(&ghcr, &sha256(&y.layers[0])), 1);
    let cat = a.get("/v2/_catalog").json();
    assert_eq!(
        cat["repositories"],
        serde_json::json!(["ghcr.io/org/y", "library/x"])
    );
}

#[test]
fn upstream_logins_basic_and_bearer() {
    // A Basic-login atoll upstream.
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    std::fs::write(
        &htpasswd,
        format!("bot:{}\n", bcrypt::hash("up-pass", 4).unwrap()),
    )
    .unwrap();
    let up = Atoll::try_start_in(
        &dir.path().join("up"),
        &["--htpasswd", htpasswd.to_str().unwrap()],
        &[],
    )
    .unwrap();
    let img = Image::oci(1, 100);
    for b in img.blobs() {
        up.req(
            Method::Post,
            &format!("/v2/library/private/blobs/uploads/?digest={}", sha256(b)),
        )
        .basic("bot", "up-pass")
        .body(b.clone())
        .send()
        .expect(201, None);
    }
    up.req(Method::Put, "/v2/library/private/manifests/1")
        .basic("bot", "up-pass")
        .header("Content-Type", OCI_MANIFEST)
        .body(img.manifest.clone())
        .send()
        .expect(201, None);
    let host = up.addr.to_string();
    let without = cache(&format!("http://{host}"), &[]);
    let r = without.get("/v2/library/private/manifests/1");
    assert_eq!(r.status, 502);
    assert!(
        r.error_message().contains("--upstream-credentials"),
        "{}",
        r.error_message()
    );
    let with = cache(
        &format!("http://{host}"),
        &["--upstream-credentials", &format!("{host}=bot:up-pass")],
    );
    pull(&with, "library/private", "1", &img);
    assert!(
        !with.log().contains("up-pass"),
        "credentials never reach a log line"
    );

    // The Bearer token flow, against a token service that wants credentials.
    let fake = FakeUpstream::start();
    let img = Image::oci(2, 1000);
    fake.add("library/tok", "1", &img);
    fake.state.lock().unwrap().token = Some(Some(("me".into(), "tok-pass".into())));
    let refused = cache(&fake.url(), &[]);
    assert_eq!(refused.get("/v2/library/tok/manifests/1").status, 502);
    let before = fake.count("GET /token");
    let a = cache(
        &fake.url(),
        &[
            "--upstream-credentials",
            &format!("{}=me:tok-pass", fake.addr),
        ],
    );
    pull(&a, "library/tok", "1", &img);
    assert_eq!(
        fake.count("GET /token") - before,
        1,
        "one token, reused: {:?}",
        fake.requests()
    );
    // Anonymous tokens work too.
    let anon = FakeUpstream::start();
    anon.add("library/anon", "1", &img);
    anon.state.lock().unwrap().token = Some(None);
    pull(&cache(&anon.url(), &[]), "library/anon", "1", &img);
}

#[test]
fn twenty_clients_one_fetch_per_blob_each_streamed_as_it_arrives() {
    let fake = FakeUpstream::start();
    let img = Image::oci(1, 4 << 20);
    fake.add("library/big", "1", &img);
    fake.state.lock().unwrap().blob_mode = Some(Blobs::Crawl(Duration::from_millis(15)));
    let a = cache(&fake.url(), &[]);
    a.get("/v2/library/big/manifests/1").expect(200, None);
    let layer = sha256(&img.layers[0]);
    let started = Instant::now();
    let clients: Vec<_> = (0..20)
        .map(|_| {
            let (addr, layer) = (a.addr, layer.clone());
            std::thread::spawn(move || {
                let mut s = std::net::TcpStream::connect(addr).unwrap();
                write!(s, "GET /v2/library/big/blobs/{layer} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
                let mut first = [0u8; 1];
                s.read_exact(&mut first).unwrap();
                let first_byte = Instant::now();
                let mut rest = Vec::new();
                s.read_to_end(&mut rest).unwrap();
                (first_byte, Instant::now(), [first.to_vec(), rest].concat())
            })
        })
        .collect();
    for c in clients {
        let (first, done, response) = c.join().unwrap();
        let body_at = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        assert_eq!(
            sha256(&response[body_at..]),
            layer,
            "every client gets the whole blob"
        );
        assert!(
            done.duration_since(first) > Duration::from_millis(300),
            "bytes flowed before the blob was complete"
        );
        assert!(first.duration_since(started) < Duration::from_secs(2));
    }
    assert_eq!(
        fake.count(&format!("GET /v2/library/big/blobs/{layer}")),
        1,
        "{:?}",
        fake.requests()
    );
}

#[test]
fn the_first_bytes_reach_the_client_before_the_upstream_sends_more() {
    // 150 KB in three 64 KiB pieces, 800 ms apart: less than the connection's 256 KiB buffer.
    let fake = FakeUpstream::start();
    let img = Image::oci(1, 150_000);
    fake.add("library/slow", "1", &img);
    fake.state.lock().unwrap().blob_mode = Some(Blobs::Crawl(Duration::from_millis(800)));
    let a = cache(&fake.url(), &[]);
    a.get("/v2/library/slow/manifests/1").expect(200, None);
    let layer = sha256(&img.layers[0]);
    let mut s = std::net::TcpStream::connect(a.addr).unwrap();
    let asked = Instant::now();
    write!(
        s,
        "GET /v2/library/slow/blobs/{layer} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut first = [0u8; 1];
    s.read_exact(&mut first).unwrap();
    let waited = asked.elapsed();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    let response = [first.to_vec(), rest].concat();
    let body_at = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(sha256(&response[body_at..]), layer);
    assert!(
        waited < Duration::from_millis(600),
        "the first piece waited {waited:?}: held until more arrived"
    );
}

/// What a plain HTTP/1.1 client that trusts the framing (curl, a script, an HTTP cache) takes
/// from a GET: it keeps the body if the body completes and the connection then ends cleanly.
struct RawGet {
    status: u16,
    content_length: Option<usize>,
    chunked: bool,
    /// Bytes after the head (with a chunked body's framing).
    body: Vec<u8>,
    /// The connection was reset or timed out rather than closed.
    broken: bool,
}

impl RawGet {
    /// A client reads at most this much (an endless body would otherwise fill memory).
    const MAX: usize = 16 << 20;

    fn send(addr: std::net::SocketAddr, path: &str) -> RawGet {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 64 * 1024];
        let broken = loop {
            if got.len() > RawGet::MAX {
                break true; // endless: as good as broken, and this client gives up
            }
            match s.read(&mut buf) {
                Ok(0) => break false,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(_) => break true,
            }
        };
        let at = got
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a response head");
        let head = String::from_utf8_lossy(&got[..at]).to_ascii_lowercase();
        let header = |name: &str| {
            head.lines().find_map(|l| {
                l.strip_prefix(&format!("{name}:"))
                    .map(|v| v.trim().to_owned())
            })
        };
        RawGet {
            status: head[9..12].parse().unwrap(),
            content_length: header("content-length").map(|v| v.parse().unwrap()),
            chunked: header("transfer-encoding").is_some_and(|v| v.contains("chunked")),
            body: got[at + 4..].to_vec(),
            broken,
        }
    }

    /// The body arrived whole by its own framing and the connection ended cleanly.
    fn complete(&self) -> bool {
        !self.broken
            && match (self.content_length, self.chunked) {
                (Some(len), _) => self.body.len() >= len,
                (None, true) => self.body.ends_with(b"0\r\n\r\n"),
                (None, false) => true,
            }
    }
}

#[test]
fn a_bad_upstream_caches_nothing_and_fails_the_clients_reading_it() {
    let img = Image::oci(1, 300_000);
    let layer = sha256(&img.layers[0]);
    for mode in [
        Blobs::HangUpAfter(100_000),
        Blobs::LongerThanSent(1000),
        Blobs::Garbage,
        // Slow enough that the second and third clients join the fill the first started.
        Blobs::CrawlGarbage(Duration::from_millis(60)),
    ] {
        let fake = FakeUpstream::start();
        fake.add("library/bad", "1", &img);
        let a = cache(&fake.url(), &[]);
        a.get("/v2/library/bad/manifests/1").expect(200, None);
        fake.state.lock().unwrap().blob_mode = Some(mode.clone());
        let clients: Vec<_> = (0..3u64)
            .map(|i| {
                let (addr, path) = (a.addr, format!("/v2/library/bad/blobs/{layer}"));
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(40 * i));
                    RawGet::send(addr, &path)
                })
            })
            .collect();
        for (i, c) in clients.into_iter().enumerate() {
            let r = c.join().unwrap();
            // A body that failed verification never reaches a client as a complete one: it
            // is cut short of its Content-Length (or of its last chunk), or the answer is an
            // error. A client that does not hash what it gets must still see a failure.
            assert!(
                r.status != 200 || !r.complete(),
                "{mode:?}, client {i}: a complete 200 of {} bytes (Content-Length {:?}), \
                 clean end: a bad blob was served as good",
                r.body.len(),
                r.content_length
            );
        }
        if matches!(mode, Blobs::CrawlGarbage(_)) {
            assert_eq!(
                fake.count(&format!("GET /v2/library/bad/blobs/{layer}")),
                1,
                "the clients shared one fill: {:?}",
                fake.requests()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
        assert!(!holds_blob(&a, &layer), "{mode:?}: nothing cached");
        assert!(
            crate::support::files_under(&a.dir.join("tmp")).is_empty(),
            "{mode:?}: no temporary file left"
        );
        // Fixed upstream: the next pull fetches again and succeeds.
        fake.state.lock().unwrap().blob_mode = None;
        pull(&a, "library/bad", "1", &img);
    }
}

/// Bytes in the files under `dir`.
fn bytes_under(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => bytes_under(&e.path()),
            _ => e.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

/// Sends `RawGet` while watching how many bytes `a`'s `tmp/` holds: the answer, how long it
/// took, and the most `tmp/` held.
fn get_watching_tmp(a: &Atoll, path: &str) -> (RawGet, Duration, u64) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let (tmp, s) = (a.dir.join("tmp"), stop.clone());
    let watcher = std::thread::spawn(move || {
        let mut most = 0;
        while !s.load(Ordering::Relaxed) {
            most = most.max(bytes_under(&tmp));
            std::thread::sleep(Duration::from_millis(1));
        }
        most.max(bytes_under(&tmp))
    });
    let started = Instant::now();
    let r = RawGet::send(a.addr, path);
    let took = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    (r, took, watcher.join().unwrap())
}

#[test]
fn an_upstream_sending_no_length_is_cut_at_the_size_the_manifest_gives() {
    let fake = FakeUpstream::start();
    let img = Image::oci(1, 100_000);
    fake.add("library/endless", "1", &img);
    let a = cache(&fake.url(), &[]);
    a.get("/v2/library/endless/manifests/1").expect(200, None);
    let layer = sha256(&img.layers[0]);
    let path = format!("/v2/library/endless/blobs/{layer}");

    // Chunked, endless: the fill stops one byte past the descriptor's 100,000 and fails.
    fake.state.lock().unwrap().blob_mode = Some(Blobs::NoLengthEndless);
    let (r, took, most) = get_watching_tmp(&a, &path);
    assert!(
        took < Duration::from_secs(5),
        "the fill failed fast: {took:?}"
    );
    assert!(r.status != 200 || !r.complete(), "the client gets an error");
    assert!(
        r.body.len() < 100_000,
        "{} bytes reached the client",
        r.body.len()
    );
    assert!(most <= 100_000, "tmp/ held {most} bytes");
    // The log line can land a moment after the client saw its error (seen under load).
    wait_until("the fill's failure is logged", || {
        a.log()
            .contains("than the 100000 bytes its manifest's descriptor gives")
    });
    std::thread::sleep(Duration::from_millis(200));
    let sent = fake.state.lock().unwrap().endless_sent;
    assert!(
        sent < 64 << 20,
        "the upstream was hung up on, not drained: {sent}"
    );
    assert!(crate::support::files_under(&a.dir.join("tmp")).is_empty());
    assert!(!holds_blob(&a, &layer));

    // A Content-Length other than the descriptor's: refused before the body is read, so the
    // client gets an error answer, not a body.
    fake.state.lock().unwrap().blob_mode = Some(Blobs::LongerThanSent(1));
    let r = RawGet::send(a.addr, &path);
    assert_eq!(r.status, 502, "{}", String::from_utf8_lossy(&r.body));
    wait_until("the refusal is logged", || {
        a.log()
            .contains("announced 100001 bytes, but its manifest's descriptor gives 100000")
    });
    assert!(crate::support::files_under(&a.dir.join("tmp")).is_empty());

    fake.state.lock().unwrap().blob_mode = None;
    pull(&a, "library/endless", "1", &img);
}

#[test]
fn a_blob_is_fetched_by_digest_before_any_manifest_of_its_name_was_pulled() {
    let fake = FakeUpstream::start();
    let img = Image::oci(1, 50_000);
    fake.add("library/early", "1", &img);
    let a = cache(&fake.url(), &["--cache-max-bytes", "1M"]);
    let layer = sha256(&img.layers[0]);
    let path = format!("/v2/library/early/blobs/{layer}");
    let r = a.get(&path);
    r.expect(200, None);
    assert_eq!(r.body, img.layers[0]);
    assert_eq!(r.header("Docker-Content-Digest"), Some(layer.as_str()));
    assert_eq!(
        fake.count(&format!("GET {path}")),
        1,
        "{:?}",
        fake.requests()
    );
    // Cached like any blob pulled through: the next GET stays here.
    wait_until("the fill commits", || holds_blob(&a, &layer));
    assert_eq!(a.get(&path).body, img.layers[0]);
    assert_eq!(
        fake.count(&format!("GET {path}")),
        1,
        "{:?}",
        fake.requests()
    );

    // No manifest gives its size and the upstream sends none: the cap (the cache's budget
    // here) bounds the fetch.
    let other = Image::oci(1, 10_000);
    fake.add("library/early2", "1", &other);
    fake.state.lock().unwrap().blob_mode = Some(Blobs::NoLengthEndless);
    let (r, took, most) = get_watching_tmp(
        &a,
        &format!("/v2/library/early2/blobs/{}", sha256(&other.layers[0])),
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(r.status != 200 || !r.complete(), "the client gets an error");
    assert!(most <= 1 << 20, "tmp/ held {most} bytes");
    // The client may see its error before the fill's failure is logged.
    wait_until("the refusal is logged", || {
        a.log()
            .contains("than the 1048576 bytes a blob of unknown size may take")
    });

    // A HEAD on a name not cached yet stays local: a client pushing a new name HEADs each blob
    // first, and must not be told that one it has not pushed is here.
    let fresh = format!("/v2/library/fresh/blobs/{layer}");
    assert_eq!(a.head(&fresh).status, 404);
    assert_eq!(fake.count(&format!("HEAD {fresh}")), 0);
}

#[test]
fn redirects_are_followed_without_credentials_and_failing_upstreams_are_survived() {
    let fake = FakeUpstream::start();
    let img = Image::oci(1, 50_000);
    fake.add("library/cdn", "1", &img);
    fake.state.lock().unwrap().blob_mode = Some(Blobs::Redirect);
    fake.state.lock().unwrap().token = Some(None);
    let a = cache(&fake.url(), &[]);
    pull(&a, "library/cdn", "1", &img);
    assert!(fake.count("GET /cdn/") >= 1);
    // An upstream answering 500 for manifests: the cached copy is served.
    fake.state.lock().unwrap().manifest_status = Some(500);
    pull(&a, "library/cdn", "1", &img);
    assert!(
        a.log()
            .contains("serving the cached copy (it answered 500)"),
        "{}",
        a.log()
    );
}

#[test]
fn a_client_hanging_up_does_not_stop_the_fill_for_the_others() {
    let fake = FakeUpstream::start();
    let img = Image::oci(1, 2 << 20);
    fake.add("library/hang", "1", &img);
    fake.state.lock().unwrap().blob_mode = Some(Blobs::Crawl(Duration::from_millis(20)));
    let a = cache(&fake.url(), &[]);
    a.get("/v2/library/hang/manifests/1").expect(200, None);
    let layer = sha256(&img.layers[0]);
    {
        let mut s = std::net::TcpStream::connect(a.addr).unwrap();
        write!(
            s,
            "GET /v2/library/hang/blobs/{layer} HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        .unwrap();
        let mut some = [0u8; 1000];
        s.read_exact(&mut some).unwrap();
    } // hangs up here
    let deadline = Instant::now() + Duration::from_secs(15);
    while !crate::support::stored::exists(&a.dir, &layer) {
        assert!(Instant::now() < deadline, "the fill did not complete");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        crate::support::stored::read(&a.dir, &layer).unwrap(),
        img.layers[0]
    );
}

#[test]
fn eviction_by_ttl_and_budget_keeps_shared_and_pinned_content() {
    let up = Atoll::start();
    let shared = random_bytes(200_000);
    let imgs: Vec<Image> = (0..3)
        .map(|_| Image::oci(0, 0).with_layers(vec![shared.clone(), random_bytes(100_000)]))
        .collect();
    for (i, img) in imgs.iter().enumerate() {
        img.push(&up, &format!("library/e{i}"), "1")
            .expect(201, None);
    }
    let pinned = Image::oci(1, 50_000);
    pinned.push(&up, "keep/me", "1").expect(201, None);
    // Budget: the shared layer plus about one image's own layer.
    let a = cache(
        &format!("http://{}", up.addr),
        &[
            "--cache-max-bytes",
            "380000",
            "--evict-interval",
            "1s",
            "--cache-pin",
            "keep/*",
            "--gc-grace",
            "1s",
        ],
    );
    pull(&a, "keep/me", "1", &pinned);
    for (i, img) in imgs.iter().enumerate() {
        pull(&a, &format!("library/e{i}"), "1", img);
        std::thread::sleep(Duration::from_millis(1100));
    }
    let blob = |d: &str| holds_blob(&a, d);
    wait_until("the least recently read is evicted", || {
        !blob(&sha256(&imgs[0].layers[1]))
    });
    let log = a.log();
    assert!(log.contains("evicted "), "{log}");
    assert!(
        blob(&sha256(&shared)),
        "the shared layer stays with the images that keep it"
    );
    assert!(
        blob(&sha256(&imgs[2].layers[1])),
        "the most recently read stays"
    );
    assert!(blob(&sha256(&pinned.layers[0])), "pinned content stays");
    assert!(
        String::from_utf8_lossy(&a.get("/metrics").body).contains("atoll_cache_evictions_total")
    );
    // An evicted image comes back on the next pull.
    pull(&a, "library/e0", "1", &imgs[0]);

    // TTL: with no budget, what has not been read for the TTL goes, pinned content stays.
    let b = cache(
        &format!("http://{}", up.addr),
        &[
            "--cache-ttl",
            "2s",
            "--evict-interval",
            "1s",
            "--cache-pin",
            "keep/*",
            "--gc-grace",
            "1s",
        ],
    );
    pull(&b, "keep/me", "1", &pinned);
    pull(&b, "library/e1", "1", &imgs[1]);
    let own = sha256(&imgs[1].layers[1]);
    assert!(holds_blob(&b, &own));
    let pulled = Instant::now();
    wait_until("unread for longer than the TTL: evicted", || {
        !holds_blob(&b, &own)
    });
    assert!(
        pulled.elapsed() >= Duration::from_secs(2),
        "evicted before the TTL"
    );
    assert!(!holds_blob(&b, &sha256(&shared)));
    assert!(
        holds_blob(&b, &sha256(&pinned.layers[0])),
        "pinned content outlives the TTL"
    );
    pull(&b, "library/e1", "1", &imgs[1]);
    // Eviction deletes whole repositories, their rows going by cascade: still counted.
    crate::support::index::assert_holdings_counted(&b.dir);
}

#[test]
fn bad_cache_settings_stop_atoll_before_it_binds() {
    let dir = tempfile::tempdir().unwrap();
    for (args, why) in [
        (vec!["--upstream", "ftp://x"], "https://"),
        (
            vec!["--upstream-credentials", "a=b:c"],
            "without any --upstream",
        ),
        (
            vec![
                "--upstream",
                "https://a",
                "--upstream-credentials",
                "b=u:secret",
            ],
            "no --upstream for",
        ),
        (
            vec!["--upstream", "https://a", "--cache-max-bytes", "lots"],
            "--cache-max-bytes",
        ),
        (
            vec![
                "--upstream",
                "https://a",
                "--upstream-credentials-file",
                "/nonexistent",
            ],
            "cannot read",
        ),
    ] {
        let log = Atoll::try_start_in(&dir.path().join("d"), &args, &[])
            .err()
            .expect("must not start");
        assert!(log.contains(why), "{args:?}: {log}");
        assert!(!log.contains("secret"), "{log}");
    }
}

#[test]
fn an_https_upstream_is_verified_against_the_system_roots() {
    let dir = tempfile::tempdir().unwrap();
    let up_data = dir.path().join("up");
    let up = Atoll::try_start_in(&up_data, &["--tls-auto"], &[]).unwrap();
    let ca_path = up_data.join("tls/ca.crt");
    let up = up.trust(std::fs::read(&ca_path).unwrap(), "localhost");
    let img = Image::oci(3, 300_000);
    img.push(&up, "team/app", "1").expect(201, None);
    let relay = Relay::start(up.addr);
    let url = format!("https://localhost:{}", relay.addr.port());
    let args = ["--upstream", url.as_str(), "--upstream-timeout", "1s"];

    // Roots as OpenSSL finds them (SSL_CERT_FILE names the upstream's private CA).
    let ca = ca_path.display().to_string();
    let a = Atoll::try_start_in(
        &dir.path().join("a"),
        &args,
        &[("SSL_CERT_FILE", ca.as_str())],
    )
    .unwrap();
    pull(&a, "team/app", "1", &img);
    assert_eq!(
        relay.connections(),
        1,
        "one TLS connection for the tag, the manifest and four blobs"
    );

    // Without that CA the upstream's certificate is refused, and nothing is cached.
    let b = Atoll::try_start_in(
        &dir.path().join("b"),
        &args,
        &[("SSL_CERT_FILE", "/dev/null")],
    )
    .unwrap();
    let r = b.get("/v2/team/app/manifests/1");
    assert!(r.status >= 500, "{}", r.status);
    assert!(
        r.error_message().contains("certificate"),
        "{}",
        r.error_message()
    );
    assert!(crate::support::files_under(&b.dir.join("blobs")).is_empty());
}
