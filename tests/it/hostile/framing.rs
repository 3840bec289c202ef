//! Request heads whose body length two readers could take differently (RFC 9112 §6): behind a
//! front proxy, that is how request smuggling starts. Each is refused before a byte of its
//! body is read or anything is written, and the connection is closed.

use std::io::Write;
use std::time::{Duration, Instant};

use super::{connect, read_to_close, SLACK};
use crate::support::content::sha256;
use crate::support::Atoll;

fn upload_sessions(a: &Atoll) -> String {
    let metrics = a.get("/metrics").text_lossy();
    metrics
        .lines()
        .find(|l| l.starts_with("atoll_upload_sessions "))
        .unwrap_or_default()
        .to_owned()
}

/// Before: two different `Content-Length`s were taken (async-h1 framed the body by the last,
/// the handler read the first), `+5` was taken for 5, and an unknown transfer coding got no
/// body at all: the upload was created (202, or 201 with a blob) and the body read as the next
/// request.
#[test]
fn ambiguous_framing_is_refused_and_the_connection_closed() {
    let a = Atoll::start();
    let body = "hello";
    let digest = sha256(body.as_bytes());
    let monolithic =
        format!("POST /v2/smuggle/blobs/uploads/?digest={digest} HTTP/1.1\r\nHost: x\r\n");
    let chunked_body = "5\r\nhello\r\n0\r\n\r\n";
    // (headers, body, status)
    let cases = [
        ("Content-Length: 0\r\nContent-Length: 5\r\n", body, 400),
        ("Content-Length: 5\r\nContent-Length: 0\r\n", body, 400),
        ("Content-Length: +5\r\n", body, 400),
        ("Content-Length: 5, 5\r\n", body, 400),
        ("Transfer-Encoding: xchunked\r\n", chunked_body, 501),
        ("Transfer-Encoding: gzip, chunked\r\n", chunked_body, 501),
        ("Transfer-Encoding: chunked, chunked\r\n", chunked_body, 400),
        (
            "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
            chunked_body,
            400,
        ),
    ];
    let before = upload_sessions(&a);
    for (headers, body, status) in cases {
        let mut s = connect(&a);
        let t = Instant::now();
        // The body carries a request of its own after it: it must never be answered.
        let smuggled = "GET /v2/smuggled/manifests/x HTTP/1.1\r\nHost: x\r\n\r\n";
        write!(s, "{monolithic}{headers}\r\n{body}{smuggled}").unwrap();
        let (answer, closed) = read_to_close(&mut s, SLACK * 2);
        let what = format!("{headers:?}: {answer:?}");
        assert!(answer.starts_with(&format!("HTTP/1.1 {status} ")), "{what}");
        assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "{what}");
        assert!(closed.is_some(), "{what}: the connection stayed open");
        assert!(
            t.elapsed() < SLACK,
            "{what}: answered after {:?}",
            t.elapsed()
        );
    }
    // Nothing was written: no blob, no upload session.
    a.head(&format!("/v2/smuggle/blobs/{digest}"))
        .expect(404, None);
    assert_eq!(upload_sessions(&a), before);
    // A well-framed request on the same server is served as ever.
    let ok = format!("{monolithic}Content-Length: 5\r\nConnection: close\r\n\r\n{body}");
    let answer = a.raw(ok.as_bytes(), Duration::from_secs(5));
    assert!(answer.starts_with("HTTP/1.1 201 "), "{answer:?}");
}

/// An empty line ending in a bare LF ends the head for async-h1's parser but perhaps not for a
/// proxy in front: what follows it was read one way there, dropped here (200 before). A header
/// value outside ASCII made async-h1 panic: the connection closed without an answer.
#[test]
fn a_head_ended_by_a_bare_lf_or_with_a_value_outside_ascii_gets_400() {
    let a = Atoll::start();
    for head in [
        "GET /v2/ HTTP/1.1\r\nHost: x\n\nContent-Length: 5\r\n\r\nhello",
        "GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Name: caf\u{e9}\r\n\r\n",
    ] {
        let answer = a.raw(head.as_bytes(), SLACK * 2);
        assert!(answer.starts_with("HTTP/1.1 400 "), "{head:?}: {answer:?}");
    }
}
