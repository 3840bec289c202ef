//! Serving as an operator sees it: flags and environment, read-only and no-delete, logs,
//! bad names and paths, startup failures, graceful stop.

use std::time::Duration;

use http_types::Method;

use crate::support::content::*;
use crate::support::Atoll;

#[test]
fn the_api_base_answers_with_the_version_header() {
    let a = Atoll::start();
    let r = a.get("/v2/");
    r.expect(200, None);
    assert_eq!(
        r.header("Docker-Distribution-API-Version"),
        Some("registry/2.0")
    );
    let r = a.get("/v2");
    r.expect(200, None);
    // Every response carries it, errors too.
    let e = a.get("/v2/x/manifests/y");
    assert_eq!(
        e.header("Docker-Distribution-API-Version"),
        Some("registry/2.0")
    );
    a.get("/nope").expect(404, Some("UNSUPPORTED"));
    a.req(Method::Post, "/v2/")
        .send()
        .expect(405, Some("UNSUPPORTED"));
}

#[test]
fn startup_logs_say_where_and_each_request_is_logged() {
    let a = Atoll::start();
    Image::oci(1, 10).push(&a, "logged", "v1").expect(201, None);
    a.get("/v2/logged/manifests/v1");
    std::thread::sleep(Duration::from_millis(100));
    let log = a.log();
    assert!(
        log.contains(&format!("listening on http://{}", a.addr)),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "data directory: {}",
            a.dir.canonicalize().unwrap().display()
        )),
        "{log}"
    );
    let line = log
        .lines()
        .find(|l| l.contains("\"GET /v2/logged/manifests/v1\""))
        .expect("an access-log line");
    assert!(
        line.contains(" 200 ") && line.contains("B ") && line.ends_with("ms"),
        "{line}"
    );
}

#[test]
fn read_only_refuses_writes_but_serves_reads() {
    let a = Atoll::start();
    let img = Image::oci(1, 10);
    img.push(&a, "ro", "v1").expect(201, None);
    let a = a.restart(&["--read-only"]);
    a.get("/v2/ro/manifests/v1").expect(200, None);
    let r = a.req(Method::Post, "/v2/ro/blobs/uploads/").send();
    r.expect(405, Some("UNSUPPORTED"));
    assert!(
        r.error_message().contains("read-only"),
        "{}",
        r.error_message()
    );
    put_manifest(&a, "ro", "v2", OCI_MANIFEST, &img.manifest).expect(405, Some("UNSUPPORTED"));
    a.delete("/v2/ro/manifests/v1")
        .expect(405, Some("UNSUPPORTED"));
}

#[test]
fn no_delete_refuses_deletes_only() {
    let a = Atoll::start_with(&["--no-delete"]);
    let img = Image::oci(1, 10);
    img.push(&a, "nd", "v1").expect(201, None);
    let r = a.delete("/v2/nd/manifests/v1");
    r.expect(405, Some("UNSUPPORTED"));
    assert!(r.error_message().contains("--no-delete"));
    a.delete(&format!("/v2/nd/blobs/{}", sha256(&img.config)))
        .expect(405, Some("UNSUPPORTED"));
    a.get("/v2/nd/manifests/v1").expect(200, None);
}

#[test]
fn environment_variables_configure_and_flags_win() {
    let dir = tempfile::tempdir().unwrap();
    let a = Atoll::try_start_in(&dir.path().join("d"), &[], &[("ATOLL_NO_DELETE", "1")]).unwrap();
    Image::oci(1, 10).push(&a, "env", "v1").expect(201, None);
    a.delete("/v2/env/manifests/v1")
        .expect(405, Some("UNSUPPORTED"));
    drop(a);
    let log = Atoll::try_start_in(&dir.path().join("d"), &[], &[("ATOLL_READ_ONLY", "maybe")])
        .err()
        .unwrap();
    assert!(log.contains("ATOLL_READ_ONLY=\"maybe\""), "{log}");
    // The flag wins over the variable.
    let a = Atoll::try_start_in(
        &dir.path().join("d"),
        &["--read-only"],
        &[("ATOLL_READ_ONLY", "0")],
    )
    .unwrap();
    a.req(Method::Post, "/v2/env/blobs/uploads/")
        .send()
        .expect(405, Some("UNSUPPORTED"));
}

#[test]
fn invalid_names_are_name_invalid() {
    let a = Atoll::start();
    let long = vec!["abcdefghij"; 24].join("/");
    for name in [
        "UPPER",
        "a//b",
        "a..b",
        "a/..b",
        "-lead",
        "trail-",
        "a___b",
        long.as_str(),
    ] {
        let r = a.get(&format!("/v2/{name}/tags/list"));
        assert!(r.status == 400 || r.status == 404, "{name}: {r:?}");
        if r.status == 400 {
            assert_eq!(r.error_code(), "NAME_INVALID", "{name}");
        }
        let push = a
            .req(Method::Post, &format!("/v2/{name}/blobs/uploads/"))
            .send();
        assert!(push.status >= 400, "{name} accepted for push");
    }
    // Encoded slashes cannot smuggle a path; `..` segments are resolved by URL parsing before
    // routing, so they can only ever name a path inside /v2/ or nothing at all.
    a.get("/v2/a%2F..%2F..%2Fetc/tags/list")
        .expect(400, Some("NAME_INVALID"));
    let raw = a.raw(
        b"GET /v2/../../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_secs(2),
    );
    assert!(raw.starts_with("HTTP/1.1 404"), "{raw}");
    let raw = a.raw(
        b"GET /v2/x/%2e%2e/%2e%2e/%2e%2e/index.db HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_secs(2),
    );
    assert!(raw.starts_with("HTTP/1.1 404"), "{raw}");
}

#[test]
fn a_bad_flag_or_data_directory_stops_atoll_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_atoll"))
        .args(["--listen", "nowhere"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("--listen: \"nowhere\""), "{err}");

    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let log = Atoll::try_start_in(&file, &[], &[])
        .err()
        .expect("cannot serve from a file");
    assert!(log.contains(&file.display().to_string()), "{log}");
}

#[test]
fn sigterm_finishes_the_download_in_flight_then_exits_0() {
    use std::io::{Read, Write};
    let mut a = Atoll::start();
    let bytes = random_bytes(64 * 1024 * 1024);
    let d = push_blob(&a, "drain", &bytes);
    let mut s = std::net::TcpStream::connect(a.addr).unwrap();
    write!(s, "GET /v2/drain/blobs/{d} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    // Read the head and a little, then stop the server while the rest is in flight.
    let mut first = vec![0u8; 4096];
    s.read_exact(&mut first).unwrap();
    let pid = a.pid();
    crate::support::signal(pid, "TERM");
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    let mut all = first;
    all.extend(rest);
    let body_start = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(
        all.len() - body_start,
        bytes.len(),
        "the whole blob arrived"
    );
    assert_eq!(sha256(&all[body_start..]), d);
    let status = a.terminate_after_signal();
    assert!(status.success(), "{status:?}");
}

/// skopeo and docker try HTTPS first: a TLS ClientHello on the plain port must get an answer
/// at once, or each of them waits out a 10-second handshake timeout before falling back.
#[test]
fn a_tls_handshake_on_the_plain_port_is_answered_at_once() {
    let a = Atoll::start();
    let hello = [
        0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03,
    ];
    let started = std::time::Instant::now();
    let out = a.raw(&hello, Duration::from_secs(5));
    assert!(out.starts_with("HTTP/1.0 400"), "{out:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // Plain HTTP still works on the same port.
    a.get("/v2/").expect(200, None);
}

/// HTTP/1.0, as load balancers' health checks and `curl -0` send it: HAProxy's
/// `option httpchk GET /healthz` sends `GET /healthz HTTP/1.0` and no Host. Before, async-h1
/// answered every HTTP/1.0 request 400.
#[test]
fn http_1_0_health_checks_are_answered_then_closed() {
    let a = Atoll::start();
    let raw = |req: &str| {
        let t = std::time::Instant::now();
        let answer = a.raw(req.as_bytes(), Duration::from_secs(5));
        // Closed by atoll, not by the wait running out.
        assert!(t.elapsed() < Duration::from_secs(2), "{req:?} still open");
        let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
        (head.to_ascii_lowercase(), body.to_owned())
    };
    for (req, status, body) in [
        ("GET /healthz HTTP/1.0\r\n\r\n", 200, "{\"status\":\"ok\"}"),
        ("GET /readyz HTTP/1.0\r\n\r\n", 200, ""),
        ("GET /v2/ HTTP/1.0\r\nHost: registry\r\n\r\n", 200, "{}"),
        ("HEAD /healthz HTTP/1.0\r\n\r\n", 200, ""),
        ("GET /v2/x/manifests/y HTTP/1.0\r\n\r\n", 404, ""),
    ] {
        let (head, got) = raw(req);
        assert!(
            head.starts_with(&format!("http/1.1 {status} ")),
            "{req:?}: {head}"
        );
        assert!(head.contains("\r\nconnection: close"), "{req:?}: {head}");
        assert!(!head.contains("chunked"), "{req:?}: {head}");
        assert!(head.contains("\r\ndate: "), "{req:?}: {head}");
        if req.starts_with("HEAD") {
            assert!(head.contains("\r\ncontent-length: 15"), "{head}");
            assert_eq!(got, "", "a HEAD answer with a body");
        } else if !body.is_empty() {
            assert_eq!(got, body, "{req:?}");
        }
    }
    // Only GET and HEAD without a body: the rest is refused, and nothing is created.
    let (head, _) = raw("POST /v2/x/blobs/uploads/ HTTP/1.0\r\nContent-Length: 0\r\n\r\n");
    assert!(head.starts_with("http/1.1 400 "), "{head}");
    let log = a.log();
    assert!(log.contains("\"GET /healthz\" 200"), "{log}");
    assert!(!log.contains("\"POST /v2/x/blobs/uploads/\""), "{log}");

    // With logins, the API base asks for one; health needs none.
    let a = Atoll::start_env(
        &[],
        &[("ATOLL_USERNAME", "alice"), ("ATOLL_PASSWORD", "secret")],
    );
    let answer = a.raw(b"GET /v2/ HTTP/1.0\r\n\r\n", Duration::from_secs(5));
    assert!(answer.starts_with("HTTP/1.1 401 "), "{answer:?}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("www-authenticate: basic"),
        "{answer:?}"
    );
    let answer = a.raw(b"GET /healthz HTTP/1.0\r\n\r\n", Duration::from_secs(5));
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer:?}");
}
