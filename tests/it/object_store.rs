//! What only the object store has: a bucket that can be wrong at startup or go away while
//! atoll runs, uploads that must not touch the local disk, presigned redirects, and the
//! leftovers in the bucket that collection removes. Runs in tests/run.sh's second pass (on
//! Garage); the rest of the registry's tests run on both engines.

use std::time::{Duration, Instant};

use http_types::Method;

use crate::support::content::*;
use crate::support::relay::Relay;
use crate::support::{files_under, on_object_store, stored, Atoll};

fn require_bucket() {
    assert!(
        on_object_store(),
        "these tests need ATOLL_TEST_BLOB_STORE=s3 and a running S3 service (tests/run.sh starts Garage)"
    );
}

fn endpoint_addr() -> std::net::SocketAddr {
    let url = std::env::var("ATOLL_TEST_S3_ENDPOINT").unwrap();
    url.trim_start_matches("http://").parse().unwrap()
}

/// atoll refuses to start, in one line that names what is wrong.
fn refused(env: &[(&str, &str)]) -> String {
    let temp = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let log = match Atoll::try_start_in(&temp.path().join("data"), &[], env) {
        Ok(_) => panic!("atoll started with {env:?}"),
        Err(log) => log,
    };
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    let errors: Vec<&str> = log.lines().filter(|l| l.starts_with("atoll:")).collect();
    assert_eq!(errors.len(), 1, "one line:\n{log}");
    errors[0].to_owned()
}

#[test]
fn a_wrong_bucket_key_or_endpoint_stops_atoll_at_startup_naming_it() {
    require_bucket();
    let bucket = std::env::var("ATOLL_TEST_S3_BUCKET").unwrap();
    let line = refused(&[("ATOLL_BLOB_STORE", "s3://no-such-bucket/x")]);
    assert!(line.contains("s3://no-such-bucket/x"), "{line}");
    assert!(line.contains("the bucket does not exist"), "{line}");
    let line = refused(&[("ATOLL_S3_SECRET_ACCESS_KEY", "wrong")]);
    assert!(line.contains(&format!("s3://{bucket}")), "{line}");
    assert!(line.contains("keys are refused"), "{line}");
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("http://{closed}");
    let line = refused(&[("ATOLL_S3_ENDPOINT", url.as_str())]);
    assert!(line.contains(&url), "{line}");
    assert!(line.contains("cannot connect"), "{line}");
    let line = refused(&[("ATOLL_BLOB_STORE", "s3://Not_A_Bucket")]);
    assert!(
        line.contains("--blob-store") || line.contains("ATOLL_BLOB_STORE"),
        "{line}"
    );
    let line = refused(&[
        ("ATOLL_S3_ACCESS_KEY_ID", ""),
        ("ATOLL_S3_SECRET_ACCESS_KEY", ""),
    ]);
    assert!(line.contains("needs keys"), "{line}");
}

/// The store going away answers 503 naming it, for readiness, pushes and pulls; nothing half
/// written becomes visible; once it is back, the same push succeeds.
#[test]
fn the_store_going_down_fails_readiness_and_pushes_and_nothing_half_written_shows() {
    require_bucket();
    let relay = Relay::start(endpoint_addr());
    let url = relay.url();
    let a = Atoll::start_env(&[], &[("ATOLL_S3_ENDPOINT", url.as_str())]);
    let kept = random_bytes(100_000);
    let kept_d = push_blob(&a, "r", &kept);
    a.get("/readyz").expect(200, None);

    relay.set_down(true);
    let r = a.get("/readyz");
    assert_eq!(r.status, 503, "{}", r.text_lossy());
    let fresh = random_bytes(200_000);
    let d = sha256(&fresh);
    let r = a
        .req(Method::Post, &format!("/v2/r/blobs/uploads/?digest={d}"))
        .body(fresh.clone())
        .send();
    assert_eq!(r.status, 503, "{}", r.text_lossy());
    assert!(
        r.error_message().contains("object store"),
        "{}",
        r.text_lossy()
    );
    let r = a.get(&format!("/v2/r/blobs/{kept_d}"));
    assert_ne!(r.status, 200);
    assert_eq!(
        a.head(&format!("/v2/r/blobs/{d}")).status,
        404,
        "not half visible"
    );

    relay.set_down(false);
    a.get("/readyz").expect(200, None);
    let r = a
        .req(Method::Post, &format!("/v2/r/blobs/uploads/?digest={d}"))
        .body(fresh.clone())
        .send();
    r.expect(201, None);
    for (d, bytes) in [(&d, &fresh), (&kept_d, &kept)] {
        let r = a.get(&format!("/v2/r/blobs/{d}"));
        r.expect(200, None);
        assert_eq!(&r.body, bytes);
    }
}

/// A chunked upload goes to the bucket as it arrives: the data directory holds none of it
/// while it is under way, and the bucket holds nothing of it once it is a blob.
#[test]
fn an_upload_goes_to_the_bucket_and_never_to_the_local_disk() {
    require_bucket();
    let a = Atoll::start();
    let bytes = random_bytes(20 << 20);
    let r = a.req(Method::Post, "/v2/r/blobs/uploads/").send();
    r.expect(202, None);
    let loc = r.location();
    a.req(Method::Patch, &loc)
        .header("Content-Range", &format!("0-{}", (18 << 20) - 1))
        .body(bytes[..18 << 20].to_vec())
        .send()
        .expect(202, None);
    let local: Vec<String> = std::fs::read_dir(a.dir.join("uploads"))
        .unwrap()
        .chain(std::fs::read_dir(a.dir.join("tmp")).unwrap())
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(local, Vec::<String>::new(), "no local copy");
    assert_eq!(
        stored::pending_uploads(&a.dir),
        1,
        "a multipart upload under way"
    );
    a.req(Method::Put, &format!("{loc}?digest={}", sha256(&bytes)))
        .header(
            "Content-Range",
            &format!("{}-{}", 18 << 20, bytes.len() - 1),
        )
        .body(bytes[18 << 20..].to_vec())
        .send()
        .expect(201, None);
    assert_eq!(stored::read(&a.dir, &sha256(&bytes)).unwrap(), bytes);
    let left: Vec<String> = files_under(&a.dir)
        .into_iter()
        .filter(|f| f.starts_with("uploads/") || f.starts_with("tmp/"))
        .collect();
    assert_eq!(left, Vec::<String>::new());
    assert_eq!(stored::pending_uploads(&a.dir), 0);
}

/// `--blob-redirect`: a blob GET answers 307 to a presigned URL of the bucket that serves the
/// blob's bytes; HEAD still answers itself, and an unknown blob is still BLOB_UNKNOWN.
#[test]
fn blob_redirect_sends_clients_to_a_presigned_url_that_serves_the_bytes() {
    require_bucket();
    let a = Atoll::start_with(&["--blob-redirect"]);
    let bytes = random_bytes(300_000);
    let d = push_blob(&a, "r", &bytes);
    let r = a.get(&format!("/v2/r/blobs/{d}"));
    assert_eq!(r.status, 307);
    let location = r.header("Location").unwrap().to_owned();
    assert!(location.contains("X-Amz-Signature="), "{location}");
    let url = http_types::Url::parse(&location).unwrap();
    let mut s =
        std::net::TcpStream::connect((url.host_str().unwrap(), url.port().unwrap())).unwrap();
    let path = &location[location.find(url.path()).unwrap()..];
    use std::io::{Read, Write};
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {}:{}\r\nConnection: close\r\n\r\n",
        url.host_str().unwrap(),
        url.port().unwrap()
    )
    .unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    let body_start = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(
        all.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&all[..body_start])
    );
    assert_eq!(
        sha256(&all[body_start..]),
        d,
        "the bucket serves the blob's bytes"
    );
    a.head(&format!("/v2/r/blobs/{d}")).expect(200, None);
    a.get(&format!("/v2/r/blobs/{}", sha256(b"nope")))
        .expect(404, Some("BLOB_UNKNOWN"));
}

/// What a crash or a failed request leaves in the bucket (an upload object with no row, a
/// multipart upload no row names) goes at the next collection past the upload TTL; a blob's
/// object stays.
#[test]
fn collection_removes_upload_leftovers_from_the_bucket() {
    require_bucket();
    let a = Atoll::start();
    let img = Image::oci(1, 1000);
    img.push(&a, "r", "v1").expect(201, None);
    let s3 = stored::test_bucket(&a.dir);
    smol::block_on(async {
        s3.put("uploads/deadbeef/tail-5", b"stray".to_vec().into())
            .await
            .unwrap();
        s3.create_upload("uploads/deadbeef/data").await.unwrap();
    });
    assert_eq!(stored::pending_uploads(&a.dir), 1);
    std::thread::sleep(Duration::from_millis(1100));
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_atoll"));
    cmd.args([
        "--gc",
        "--gc-grace",
        "0s",
        "--upload-ttl",
        "0s",
        "--data-dir",
    ])
    .arg(&a.dir);
    crate::support::engines(&mut cmd, &a.dir);
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let left: Vec<String> = files_under(&a.dir)
        .into_iter()
        .filter(|f| f.starts_with("uploads/"))
        .collect();
    assert_eq!(left, Vec::<String>::new());
    assert_eq!(stored::pending_uploads(&a.dir), 0);
    for b in img.blobs() {
        assert_eq!(
            &stored::read(&a.dir, &sha256(b)).unwrap(),
            b,
            "a tagged image stays"
        );
    }
}

/// HTTPS to the endpoint is verified: a certificate the system does not trust stops atoll at
/// startup, naming the store; trusted through `SSL_CERT_FILE`, the same endpoint serves. (Garage
/// speaks plain HTTP: a TLS relay stands before it, `support/tls_relay.py`.)
#[test]
fn https_to_the_endpoint_is_verified_against_the_system_roots_or_ssl_cert_file() {
    require_bucket();
    let temp = tempfile::tempdir().unwrap();
    let (cert, key) = (temp.path().join("cert.pem"), temp.path().join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let garage = endpoint_addr();
    let relay_py = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/support/tls_relay.py");
    let mut relay = std::process::Command::new("python3")
        .arg(relay_py)
        .arg(&cert)
        .arg(&key)
        .arg(garage.ip().to_string())
        .arg(garage.port().to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut port = String::new();
    use std::io::BufRead;
    std::io::BufReader::new(relay.stdout.take().unwrap())
        .read_line(&mut port)
        .unwrap();
    let url = format!("https://localhost:{}", port.trim());

    let line = refused(&[("ATOLL_S3_ENDPOINT", url.as_str())]);
    assert!(line.contains(&url), "{line}");
    assert!(line.contains("certificate"), "{line}");

    let cert_file = cert.to_str().unwrap();
    let a = Atoll::start_env(
        &[],
        &[
            ("ATOLL_S3_ENDPOINT", url.as_str()),
            ("SSL_CERT_FILE", cert_file),
        ],
    );
    let bytes = random_bytes(300_000);
    let d = push_blob(&a, "tls", &bytes);
    let r = a.get(&format!("/v2/tls/blobs/{d}"));
    r.expect(200, None);
    assert_eq!(r.body, bytes);
    let _ = relay.kill();
    let _ = relay.wait();
}

/// A prefix with characters that URLs escape (a space, `+`, non-ASCII) works for every call,
/// the server-side copy that finishes a large upload included.
#[test]
fn a_prefix_that_urls_must_escape_works_for_every_call() {
    require_bucket();
    let bucket = std::env::var("ATOLL_TEST_S3_BUCKET").unwrap();
    let store = format!("s3://{bucket}/site a+b/é-{}", std::process::id());
    let a = Atoll::start_env(&[], &[("ATOLL_BLOB_STORE", store.as_str())]);
    for size in [1000, 20 << 20] {
        let bytes = random_bytes(size);
        let d = push_blob(&a, "esc", &bytes);
        let r = a.get(&format!("/v2/esc/blobs/{d}"));
        r.expect(200, None);
        assert_eq!(sha256(&r.body), d, "{size} bytes");
    }
}
