//! Blob uploads: every flow of the spec, and every way an upload can go wrong.

use std::time::Duration;

use http_types::Method;

use crate::support::content::*;
use crate::support::{files_under, Atoll};

fn start(a: &Atoll, repo: &str) -> String {
    let r = a
        .req(Method::Post, &format!("/v2/{repo}/blobs/uploads/"))
        .send();
    r.expect(202, None);
    assert_eq!(r.header("Range"), Some("0-0"));
    assert!(r.header("Docker-Upload-UUID").is_some());
    r.location()
}

fn assert_blob(a: &Atoll, repo: &str, bytes: &[u8]) {
    let d = sha256(bytes);
    let r = a.get(&format!("/v2/{repo}/blobs/{d}"));
    r.expect(200, None);
    assert_eq!(r.body, bytes, "bytes round-trip");
    assert_eq!(r.header("Docker-Content-Digest"), Some(d.as_str()));
}

/// Nothing half-written: no upload files, no temp files (on the object store: no upload
/// objects and no unfinished multipart upload in the bucket either).
fn assert_no_leftovers(a: &Atoll) {
    let left: Vec<String> = files_under(&a.dir)
        .into_iter()
        .filter(|f| f.starts_with("uploads/") || f.starts_with("tmp/"))
        .collect();
    assert_eq!(
        left,
        Vec::<String>::new(),
        "uploads/ and tmp/ must be empty"
    );
    assert_eq!(
        crate::support::stored::pending_uploads(&a.dir),
        0,
        "no unfinished multipart upload"
    );
}

/// A blob larger than the object store's parts, in chunks of every size the store must handle
/// (smaller than its minimum part, larger than a part, uneven), with a restart in the middle:
/// the bytes round-trip and nothing is left behind, on both engines.
#[test]
fn a_large_upload_in_chunks_of_every_size_survives_a_restart() {
    let a = Atoll::start();
    let bytes = random_bytes(41 << 20);
    let cuts = [0, 1 << 20, 4 << 20, 24 << 20, 30 << 20, 41 << 20];
    let loc = start(&a, "large");
    let mut a = a;
    for (i, w) in cuts.windows(2).enumerate() {
        let (from, to) = (w[0], w[1]);
        if i == 3 {
            a = a.restart(&[]);
        }
        let last = to == bytes.len();
        let (method, path) = match last {
            false => (Method::Patch, loc.clone()),
            true => (Method::Put, format!("{loc}?digest={}", sha256(&bytes))),
        };
        let r = a
            .req(method, &path)
            .header("Content-Range", &format!("{from}-{}", to - 1))
            .body(bytes[from..to].to_vec())
            .send();
        match last {
            false => {
                r.expect(202, None);
                assert_eq!(r.header("Range"), Some(format!("0-{}", to - 1).as_str()));
            }
            true => {
                r.expect(201, None);
            }
        }
    }
    assert_blob(&a, "large", &bytes);
    assert_no_leftovers(&a);
}

#[test]
fn post_then_put_stores_the_blob() {
    let a = Atoll::start();
    let bytes = random_bytes(100_000);
    let loc = start(&a, "team/app");
    let d = sha256(&bytes);
    let r = a
        .req(Method::Put, &format!("{loc}?digest={d}"))
        .body(bytes.clone())
        .send();
    r.expect(201, None);
    assert_eq!(r.location(), format!("/v2/team/app/blobs/{d}"));
    assert_eq!(r.header("Docker-Content-Digest"), Some(d.as_str()));
    assert_blob(&a, "team/app", &bytes);
    // Stored content-addressed.
    let stored = crate::support::stored::read(&a.dir, &d).unwrap();
    assert_eq!(stored, bytes);
    assert_no_leftovers(&a);
}

#[test]
fn a_single_post_with_digest_uploads_in_one_request() {
    let a = Atoll::start();
    let bytes = random_bytes(5000);
    let d = sha256(&bytes);
    let r = a
        .req(Method::Post, &format!("/v2/one/blobs/uploads/?digest={d}"))
        .body(bytes.clone())
        .send();
    r.expect(201, None);
    assert_eq!(r.location(), format!("/v2/one/blobs/{d}"));
    assert_blob(&a, "one", &bytes);
    // And a wrong digest keeps nothing.
    let other = random_bytes(10);
    let r = a
        .req(Method::Post, &format!("/v2/one/blobs/uploads/?digest={d}"))
        .body(other)
        .send();
    r.expect(400, Some("DIGEST_INVALID"));
    assert_blob(&a, "one", &bytes);
}

#[test]
fn chunked_patches_in_order_then_put() {
    let a = Atoll::start();
    let bytes = random_bytes(3 * 1024 * 1024 + 17);
    let (c1, rest) = bytes.split_at(1024 * 1024);
    let (c2, c3) = rest.split_at(2 * 1024 * 1024);
    let loc = start(&a, "chunks");
    let r = a
        .req(Method::Patch, &loc)
        .header("Content-Range", &format!("0-{}", c1.len() - 1))
        .body(c1.to_vec())
        .send();
    r.expect(202, None);
    assert_eq!(
        r.header("Range"),
        Some(format!("0-{}", c1.len() - 1).as_str())
    );
    let loc2 = r.location();
    // Sending the first chunk again is out of order.
    a.req(Method::Patch, &loc)
        .header("Content-Range", &format!("0-{}", c1.len() - 1))
        .body(c1.to_vec())
        .send()
        .expect(416, Some("BLOB_UPLOAD_INVALID"));
    // A gap is out of order too.
    let gap = c1.len() + 10;
    a.req(Method::Patch, &loc)
        .header("Content-Range", &format!("{gap}-{}", gap + 9))
        .body(vec![0u8; 10])
        .send()
        .expect(416, Some("BLOB_UPLOAD_INVALID"));
    let status = a.get(&loc);
    status.expect(204, None);
    assert_eq!(
        status.header("Range"),
        Some(format!("0-{}", c1.len() - 1).as_str())
    );
    assert!(status.header("Location").is_some());
    // The second chunk, sent chunked (no Content-Length), as the conformance client does.
    let start2 = c1.len();
    a.req(Method::Patch, &loc2)
        .header(
            "Content-Range",
            &format!("{start2}-{}", start2 + c2.len() - 1),
        )
        .chunked(c2.to_vec())
        .send()
        .expect(202, None);
    // The final PUT carries the last chunk.
    let start3 = start2 + c2.len();
    let d = sha256(&bytes);
    a.req(Method::Put, &format!("{loc}?digest={d}"))
        .header(
            "Content-Range",
            &format!("{start3}-{}", start3 + c3.len() - 1),
        )
        .body(c3.to_vec())
        .send()
        .expect(201, None);
    assert_blob(&a, "chunks", &bytes);
    assert_no_leftovers(&a);
}

#[test]
fn streamed_patch_without_content_range() {
    let a = Atoll::start();
    let bytes = random_bytes(2_500_000);
    let loc = start(&a, "stream");
    let r = a.req(Method::Patch, &loc).chunked(bytes.clone()).send();
    r.expect(202, None);
    assert_eq!(
        r.header("Range"),
        Some(format!("0-{}", bytes.len() - 1).as_str())
    );
    let d = sha256(&bytes);
    a.req(Method::Put, &format!("{}?digest={d}", r.location()))
        .header("Content-Length", "0")
        .send()
        .expect(201, None);
    assert_blob(&a, "stream", &bytes);
}

#[test]
fn empty_blob_round_trips() {
    let a = Atoll::start();
    let d = push_blob(&a, "empty", b"");
    assert_eq!(
        d,
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    let h = a.head(&format!("/v2/empty/blobs/{d}"));
    h.expect(200, None);
    assert_eq!(h.header("Content-Length"), Some("0"));
    assert_blob(&a, "empty", b"");
    a.delete(&format!("/v2/empty/blobs/{d}")).expect(202, None);
    a.head(&format!("/v2/empty/blobs/{d}")).expect(404, None);
}

#[test]
fn sha512_uploads_are_verified_with_sha512() {
    let a = Atoll::start();
    let bytes = random_bytes(70_000);
    let d = sha512(&bytes);
    // Chunked session: hashed with sha256 as it arrives, re-hashed with sha512 at the end.
    let loc = start(&a, "five12");
    a.req(Method::Patch, &loc)
        .body(bytes.clone())
        .send()
        .expect(202, None);
    a.req(Method::Put, &format!("{loc}?digest={d}"))
        .send()
        .expect(201, None);
    let r = a.get(&format!("/v2/five12/blobs/{d}"));
    r.expect(200, None);
    assert_eq!(r.body, bytes);
    // Single request with a sha512 digest.
    let other = random_bytes(1000);
    let d2 = sha512(&other);
    a.req(
        Method::Post,
        &format!("/v2/five12/blobs/uploads/?digest={d2}"),
    )
    .body(other.clone())
    .send()
    .expect(201, None);
    assert_eq!(a.get(&format!("/v2/five12/blobs/{d2}")).body, other);
}

#[test]
fn a_wrong_digest_is_refused_and_nothing_is_kept() {
    let a = Atoll::start();
    let bytes = random_bytes(1000);
    let wrong = sha256(b"something else");
    let loc = start(&a, "mismatch");
    let r = a
        .req(Method::Put, &format!("{loc}?digest={wrong}"))
        .body(bytes.clone())
        .send();
    r.expect(400, Some("DIGEST_INVALID"));
    assert!(
        r.error_message().contains(&sha256(&bytes)),
        "{}",
        r.error_message()
    );
    a.head(&format!("/v2/mismatch/blobs/{wrong}"))
        .expect(404, Some("BLOB_UNKNOWN"));
    a.head(&format!("/v2/mismatch/blobs/{}", sha256(&bytes)))
        .expect(404, None);
    // The session is gone.
    a.get(&loc).expect(404, Some("BLOB_UPLOAD_UNKNOWN"));
    // A single POST with the wrong digest keeps nothing either.
    a.req(
        Method::Post,
        &format!("/v2/mismatch/blobs/uploads/?digest={wrong}"),
    )
    .body(bytes)
    .send()
    .expect(400, Some("DIGEST_INVALID"));
    a.head(&format!("/v2/mismatch/blobs/{wrong}"))
        .expect(404, None);
    assert_no_leftovers(&a);
    let blobs: Vec<String> = files_under(&a.dir)
        .into_iter()
        .filter(|f| f.starts_with("blobs/"))
        .collect();
    assert_eq!(blobs, Vec::<String>::new());
}

#[test]
fn content_range_and_length_must_agree() {
    let a = Atoll::start();
    let loc = start(&a, "size");
    a.req(Method::Patch, &loc)
        .header("Content-Range", "0-99")
        .body(vec![1u8; 50])
        .send()
        .expect(400, Some("SIZE_INVALID"));
    // Nothing was kept of the refused chunk.
    assert_eq!(a.get(&loc).header("Range"), Some("0-0"));
    a.req(Method::Patch, &loc)
        .header("Content-Range", "not-a-range")
        .body(vec![1u8; 5])
        .send()
        .expect(400, Some("BLOB_UPLOAD_INVALID"));
}

#[test]
fn cancel_deletes_the_session_and_its_bytes() {
    let a = Atoll::start();
    let loc = start(&a, "cancel");
    a.req(Method::Patch, &loc)
        .body(random_bytes(1000))
        .send()
        .expect(202, None);
    a.delete(&loc).expect(204, None);
    a.get(&loc).expect(404, Some("BLOB_UPLOAD_UNKNOWN"));
    a.req(Method::Patch, &loc)
        .body(vec![1])
        .send()
        .expect(404, Some("BLOB_UPLOAD_UNKNOWN"));
    a.delete(&loc).expect(404, Some("BLOB_UPLOAD_UNKNOWN"));
    assert_no_leftovers(&a);
}

#[test]
fn unknown_or_foreign_upload_ids_are_unknown() {
    let a = Atoll::start();
    let made_up = "/v2/x/blobs/uploads/0123456789abcdef0123456789abcdef";
    a.get(made_up).expect(404, Some("BLOB_UPLOAD_UNKNOWN"));
    a.get("/v2/x/blobs/uploads/not-an-id")
        .expect(404, Some("BLOB_UPLOAD_UNKNOWN"));
    a.get("/v2/x/blobs/uploads/..%2F..%2Findex.db")
        .expect(404, None);
    // An upload of repository a cannot be used through repository b.
    let loc = start(&a, "owner");
    let id = loc.rsplit('/').next().unwrap();
    a.get(&format!("/v2/thief/blobs/uploads/{id}"))
        .expect(404, Some("BLOB_UPLOAD_UNKNOWN"));
    a.req(
        Method::Put,
        &format!("/v2/thief/blobs/uploads/{id}?digest={}", sha256(b"")),
    )
    .send()
    .expect(404, Some("BLOB_UPLOAD_UNKNOWN"));
}

#[test]
fn the_final_put_needs_a_valid_digest() {
    let a = Atoll::start();
    let loc = start(&a, "nodigest");
    a.req(Method::Put, &loc)
        .send()
        .expect(400, Some("DIGEST_INVALID"));
    a.req(Method::Put, &format!("{loc}?digest=sha256:123"))
        .send()
        .expect(400, Some("DIGEST_INVALID"));
    a.req(
        Method::Put,
        &format!("{loc}?digest=md5:d41d8cd98f00b204e9800998ecf8427e"),
    )
    .send()
    .expect(400, Some("DIGEST_INVALID"));
}

/// A client that hangs up mid-chunk leaves the session where it was before that chunk.
#[test]
fn a_client_hanging_up_mid_upload_leaves_nothing_half_written() {
    let a = Atoll::start();
    let first = random_bytes(1000);
    let loc = start(&a, "hangup");
    a.req(Method::Patch, &loc)
        .body(first.clone())
        .send()
        .expect(202, None);
    // Announce a megabyte, send 300 KB, hang up.
    let head = format!(
        "PATCH {loc} HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\nContent-Range: 1000-1049575\r\n\r\n"
    );
    let mut bytes = head.into_bytes();
    bytes.extend(random_bytes(300_000));
    a.raw(&bytes, Duration::from_millis(300));
    // Give the server a moment to notice the hang-up and roll back.
    std::thread::sleep(Duration::from_millis(300));
    let status = a.get(&loc);
    status.expect(204, None);
    assert_eq!(status.header("Range"), Some("0-999"));
    if !crate::support::on_object_store() {
        let id = loc.rsplit('/').next().unwrap();
        let len = std::fs::metadata(a.dir.join("uploads").join(id))
            .unwrap()
            .len();
        assert_eq!(len, 1000, "the partial chunk was cut back");
    }
    // The upload goes on from there.
    let second = random_bytes(500);
    let mut all = first.clone();
    all.extend(&second);
    a.req(Method::Put, &format!("{loc}?digest={}", sha256(&all)))
        .header("Content-Range", "1000-1499")
        .body(second)
        .send()
        .expect(201, None);
    assert_blob(&a, "hangup", &all);
}

/// Upload sessions are in the index: a restart does not lose one.
#[test]
fn an_upload_resumes_after_a_restart() {
    let a = Atoll::start();
    let bytes = random_bytes(200_000);
    let (c1, c2) = bytes.split_at(120_000);
    let loc = start(&a, "resume");
    a.req(Method::Patch, &loc)
        .body(c1.to_vec())
        .send()
        .expect(202, None);
    let a = a.restart(&[]);
    let status = a.get(&loc);
    status.expect(204, None);
    assert_eq!(status.header("Range"), Some("0-119999"));
    a.req(Method::Put, &format!("{loc}?digest={}", sha256(&bytes)))
        .header("Content-Range", &format!("120000-{}", bytes.len() - 1))
        .body(c2.to_vec())
        .send()
        .expect(201, None);
    assert_blob(&a, "resume", &bytes);
}

#[test]
fn mounts_link_blobs_across_repositories() {
    let a = Atoll::start();
    let bytes = random_bytes(4000);
    let d = push_blob(&a, "source/repo", &bytes);
    // From a named repository.
    let r = a
        .req(
            Method::Post,
            &format!("/v2/dest/blobs/uploads/?mount={d}&from=source/repo"),
        )
        .send();
    r.expect(201, None);
    assert_eq!(r.location(), format!("/v2/dest/blobs/{d}"));
    assert_blob(&a, "dest", &bytes);
    // Without from: found in the registry.
    a.req(Method::Post, &format!("/v2/dest2/blobs/uploads/?mount={d}"))
        .send()
        .expect(201, None);
    assert_blob(&a, "dest2", &bytes);
    // From a repository that does not have it: a fresh upload session instead.
    let missing = sha256(b"never pushed");
    let r = a
        .req(
            Method::Post,
            &format!("/v2/dest3/blobs/uploads/?mount={missing}&from=source/repo"),
        )
        .send();
    r.expect(202, None);
    assert!(r.location().starts_with("/v2/dest3/blobs/uploads/"));
    let r = a
        .req(
            Method::Post,
            &format!("/v2/dest3/blobs/uploads/?mount={missing}"),
        )
        .send();
    r.expect(202, None);
    // A blob that exists, but not in the named source, is not mounted from it.
    push_blob(&a, "other", b"private");
    a.req(
        Method::Post,
        &format!(
            "/v2/dest4/blobs/uploads/?mount={}&from=source/repo",
            sha256(b"private")
        ),
    )
    .send()
    .expect(202, None);
}

/// Sends two requests on connections of their own, overlapping: both heads a moment apart
/// (well inside `busy`, the time the server takes to answer the first), then both bodies once
/// that time has passed three times over. Returns each response's status.
fn statuses_of_overlapping(a: &Atoll, busy: Duration, requests: [(String, &[u8]); 2]) -> [u16; 2] {
    use std::io::{Read, Write};
    let mut conns = [(); 2].map(|_| std::net::TcpStream::connect(a.addr).unwrap());
    for (c, (head, _)) in conns.iter_mut().zip(&requests) {
        c.write_all(head.as_bytes()).unwrap();
        std::thread::sleep((busy / 10).min(Duration::from_millis(20)));
    }
    std::thread::sleep(busy * 3);
    for (c, (_, body)) in conns.iter_mut().zip(&requests) {
        c.write_all(body).unwrap();
    }
    conns.map(|mut c| {
        c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut head = [0u8; 12];
        c.read_exact(&mut head).unwrap();
        String::from_utf8_lossy(&head[9..12]).parse().unwrap()
    })
}

/// The upload of an interrupted push, resumed after a restart by two requests at once (two
/// PATCHes at one offset, or a PATCH and the final PUT). Each request used to recover a copy of
/// the session of its own: both appended to the one file, each hashed only its own chunk, and a
/// blob was published whose bytes did not hash to its digest (or a published blob kept growing).
/// Now there is one session per upload: the loser gets 409 (busy) or 416 (the upload moved on),
/// and whatever is published hashes to its digest and is exactly as long as it says.
#[test]
fn two_requests_resuming_one_upload_after_a_restart_never_publish_wrong_bytes() {
    // Large enough that recovering the session (re-hashing its file) takes a while.
    let first = vec![7u8; 16 << 20];
    let (x, y) = (random_bytes(1000), random_bytes(1000));
    let joined = |tail: &[u8]| [first.as_slice(), tail].concat();
    let range = format!("{}-{}", first.len(), first.len() + 999);
    let head = |method: &str, path: &str| {
        format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\
             Content-Range: {range}\r\nConnection: close\r\n\r\n"
        )
    };
    for final_put_races in [false, true] {
        let a = Atoll::start();
        // `probe` measures how long recovering a session of this size takes here.
        let [loc, probe] = ["race", "probe"].map(|repo| {
            let loc = start(&a, repo);
            a.req(Method::Patch, &loc)
                .body(first.clone())
                .send()
                .expect(202, None);
            loc
        });
        let a = a.restart(&[]);
        let began = std::time::Instant::now();
        a.get(&probe).expect(204, None);
        let busy = began.elapsed();
        let put_y = format!("{loc}?digest={}", sha256(&joined(&y)));
        let other = match final_put_races {
            true => head("PUT", &put_y),
            false => head("PATCH", &loc),
        };
        let [patch, other] =
            statuses_of_overlapping(&a, busy, [(head("PATCH", &loc), &x), (other, &y)]);
        let won = if final_put_races { 201 } else { 202 };
        let losers = [404, 409, 416];
        assert!(
            (patch == 202 && losers.contains(&other)) || (other == won && losers.contains(&patch)),
            "one request wins, the other is refused (PUT raced: {final_put_races}): {patch} {other}"
        );
        if final_put_races && other == 201 {
            assert_blob(&a, "race", &joined(&y));
        } else {
            // Finish with the chunk that won.
            let tail = if patch == 202 { &x } else { &y };
            a.req(
                Method::Put,
                &format!("{loc}?digest={}", sha256(&joined(tail))),
            )
            .send()
            .expect(201, None);
            assert_blob(&a, "race", &joined(tail));
        }
        // Whatever is served under either digest hashes to it.
        for tail in [&x, &y] {
            let d = sha256(&joined(tail));
            if a.head(&format!("/v2/race/blobs/{d}")).status == 200 {
                assert_blob(&a, "race", &joined(tail));
            }
        }
        a.delete(&probe).expect(204, None);
        assert_no_leftovers(&a);
    }
}
