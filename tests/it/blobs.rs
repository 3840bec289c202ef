//! Blob reads: GET, HEAD, ranges, deletes, and which repository may read what.

use crate::support::content::*;
use crate::support::Atoll;
use std::time::Duration;

#[test]
fn head_and_get_describe_the_blob() {
    let a = Atoll::start();
    let bytes = random_bytes(12_345);
    let d = push_blob(&a, "r", &bytes);
    let h = a.head(&format!("/v2/r/blobs/{d}"));
    h.expect(200, None);
    assert_eq!(h.header("Content-Length"), Some("12345"));
    assert_eq!(h.header("Docker-Content-Digest"), Some(d.as_str()));
    assert_eq!(
        h.header("Docker-Distribution-API-Version"),
        Some("registry/2.0")
    );
    assert!(h.body.is_empty());
    let g = a.get(&format!("/v2/r/blobs/{d}"));
    assert_eq!(g.body, bytes);
    assert_eq!(g.header("Content-Type"), Some("application/octet-stream"));
}

#[test]
fn a_large_blob_streams_intact() {
    let a = Atoll::start();
    let bytes = random_bytes(40 * 1024 * 1024 + 3);
    let d = push_blob(&a, "big", &bytes);
    let g = a.get(&format!("/v2/big/blobs/{d}"));
    assert_eq!(g.body.len(), bytes.len());
    assert_eq!(sha256(&g.body), d);
}

#[test]
fn ranges_are_served_with_206_and_refused_with_416() {
    let a = Atoll::start();
    let bytes = random_bytes(2048);
    let d = push_blob(&a, "ranged", &bytes);
    let path = format!("/v2/ranged/blobs/{d}");
    let cases: [(&str, usize, usize); 4] = [
        ("bytes=500-1499", 500, 1499),
        ("bytes=500-", 500, 2047),
        ("bytes=-500", 1548, 2047),
        ("bytes=2000-5000", 2000, 2047),
    ];
    for (range, s, e) in cases {
        let r = a
            .req(http_types::Method::Get, &path)
            .header("Range", range)
            .send();
        r.expect(206, None);
        assert_eq!(r.body, &bytes[s..=e], "{range}");
        assert_eq!(
            r.header("Content-Range"),
            Some(format!("bytes {s}-{e}/2048").as_str()),
            "{range}"
        );
        assert_eq!(
            r.header("Content-Length"),
            Some((e - s + 1).to_string().as_str())
        );
    }
    for range in ["bytes=500-0", "bytes=5000-10000", "bytes=2048-"] {
        let r = a
            .req(http_types::Method::Get, &path)
            .header("Range", range)
            .send();
        r.expect(416, None);
        assert_eq!(r.header("Content-Range"), Some("bytes */2048"), "{range}");
    }
    // A Range atoll does not serve (several ranges) gets the whole blob.
    let r = a
        .req(http_types::Method::Get, &path)
        .header("Range", "bytes=0-1,4-5")
        .send();
    r.expect(200, None);
    assert_eq!(r.body, bytes);
}

/// Past 256 KiB a plain-TCP download is written by the connection's task itself, 256 KiB at a
/// time from explicit file offsets (`direct.rs`): a range starts and ends where it was asked
/// to, across those steps.
#[test]
fn ranges_of_a_large_blob_come_back_exact() {
    let a = Atoll::start();
    let bytes = random_bytes(3 * 1024 * 1024 + 5);
    let d = push_blob(&a, "bigranged", &bytes);
    let path = format!("/v2/bigranged/blobs/{d}");
    let n = bytes.len();
    for (s, e) in [(1, 1_000_000), (262_143, 2_359_297), (n - 300_000, n - 1)] {
        let r = a
            .req(http_types::Method::Get, &path)
            .header("Range", &format!("bytes={s}-{e}"))
            .send();
        r.expect(206, None);
        assert_eq!(r.body.len(), e - s + 1, "bytes={s}-{e}");
        assert!(
            r.body == bytes[s..=e],
            "bytes={s}-{e}: other bytes came back"
        );
    }
}

/// A blob file cut short on disk (a bad disk, a hand in the data directory) must not be padded
/// or hang the download: the connection ends before the announced length, so the client sees
/// the download fail, and the registry goes on serving.
#[test]
fn a_blob_file_shorter_than_its_row_ends_the_download_early() {
    use std::io::{Read, Write};
    let a = Atoll::start();
    let bytes = random_bytes(2 * 1024 * 1024);
    let d = push_blob(&a, "cut", &bytes);
    let kept = 700_000;
    crate::support::stored::write(&a.dir, &d, &bytes[..kept]);
    let mut s = std::net::TcpStream::connect(a.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(s, "GET /v2/cut/blobs/{d} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all)
        .expect("the connection ends, not the read timeout");
    let body_start = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&all[..body_start]).to_lowercase();
    assert!(
        head.contains(&format!("content-length: {}", bytes.len())),
        "{head}"
    );
    let got = &all[body_start..];
    assert!(
        got.len() <= kept && got == &bytes[..got.len()],
        "stored bytes and nothing after: {} bytes came",
        got.len()
    );
    if !crate::support::on_object_store() {
        // The connection's task sends a file itself: every byte the file holds arrives.
        assert_eq!(got.len(), kept, "the bytes on disk, all of them");
    }
    a.get("/v2/").expect(200, None);
}

#[test]
fn a_repository_reads_only_its_own_blobs() {
    let a = Atoll::start();
    let secret = random_bytes(100);
    let d = push_blob(&a, "private/repo", &secret);
    // Knowing the digest is not access.
    a.get(&format!("/v2/other/blobs/{d}"))
        .expect(404, Some("BLOB_UNKNOWN"));
    a.head(&format!("/v2/private/repo2/blobs/{d}"))
        .expect(404, Some("BLOB_UNKNOWN"));
    a.get(&format!("/v2/private/blobs/{d}"))
        .expect(404, Some("BLOB_UNKNOWN"));
}

#[test]
fn deleting_a_blob_unlinks_it_from_that_repository_only() {
    let a = Atoll::start();
    let bytes = random_bytes(100);
    let d = push_blob(&a, "one", &bytes);
    push_blob(&a, "two", &bytes);
    a.delete(&format!("/v2/one/blobs/{d}")).expect(202, None);
    a.head(&format!("/v2/one/blobs/{d}"))
        .expect(404, Some("BLOB_UNKNOWN"));
    a.get(&format!("/v2/two/blobs/{d}")).expect(200, None);
    a.delete(&format!("/v2/one/blobs/{d}"))
        .expect(404, Some("BLOB_UNKNOWN"));
    a.delete(&format!("/v2/nobody/blobs/{d}"))
        .expect(404, Some("BLOB_UNKNOWN"));
}

#[test]
fn unknown_blobs_and_bad_digests() {
    let a = Atoll::start();
    let d = sha256(b"hello world");
    a.head(&format!("/v2/r/blobs/{d}"))
        .expect(404, Some("BLOB_UNKNOWN"));
    a.get(&format!("/v2/r/blobs/{d}"))
        .expect(404, Some("BLOB_UNKNOWN"));
    a.get("/v2/r/blobs/sha256:abc")
        .expect(400, Some("DIGEST_INVALID"));
    let escape = a.get("/v2/r/blobs/sha256:../../../../etc/passwd");
    assert!(matches!(escape.status, 400 | 404), "{escape:?}");
    a.get("/v2/r/blobs/blake3:0000")
        .expect(400, Some("DIGEST_INVALID"));
}

/// A blob whose stored bytes went bad (a failing disk, a bucket object damaged) is mended by
/// pushing it again: the push writes the verified bytes over the damaged ones, on both engines,
/// and a manifest read while damaged is refused, never served under its digest.
#[test]
fn pushing_again_mends_a_damaged_blob_and_manifest() {
    use crate::support::stored;
    let a = Atoll::start();
    let img = Image::oci(1, 50_000);
    img.push(&a, "m", "v1").expect(201, None);
    let layer = sha256(&img.layers[0]);
    let manifest = img.digest();
    for (d, good) in [(&layer, &img.layers[0]), (&manifest, &img.manifest)] {
        let mut bad = good.clone();
        bad[10] ^= 0xff;
        stored::write(&a.dir, d, &bad);
    }
    // Read while damaged: refused, never served under a digest it does not hash to (and the
    // object store, which keeps small blobs it reads in memory, keeps nothing of it).
    let r = a
        .req(
            http_types::Method::Get,
            &format!("/v2/m/manifests/{manifest}"),
        )
        .header("Accept", &img.media_type)
        .send();
    assert_eq!(r.status, 500, "{}", String::from_utf8_lossy(&r.body));
    assert!(
        String::from_utf8_lossy(&r.body).contains("--verify --repair"),
        "says what to do"
    );

    push_blob(&a, "m", &img.layers[0]);
    put_manifest(&a, "m", "v1", &img.media_type, &img.manifest).expect(201, None);
    assert_eq!(stored::read(&a.dir, &layer).unwrap(), img.layers[0]);
    assert_eq!(stored::read(&a.dir, &manifest).unwrap(), img.manifest);
    assert_eq!(a.get(&format!("/v2/m/blobs/{layer}")).body, img.layers[0]);
    let r = a
        .req(
            http_types::Method::Get,
            &format!("/v2/m/manifests/{manifest}"),
        )
        .header("Accept", &img.media_type)
        .send();
    r.expect(200, None);
    assert_eq!(
        r.body, img.manifest,
        "the mended bytes, not the ones read before"
    );
}
