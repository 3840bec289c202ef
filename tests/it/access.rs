//! Access: every route of the API, asked without a login and with a wrong password, in both
//! login modes (htpasswd alone, and with `--anonymous-pull`). No route may read a repository
//! without the access it needs, and no refused write may change anything. Then: a blob known
//! from another repository is not readable without its link, an upload is not usable from
//! another repository, and no name reaches outside the data directory. (Bundle entries that
//! try to escape, `..`, absolute paths and links out, are refused in `bundles.rs`.)

use std::path::Path;

use http_types::Method;

use crate::support::content::*;
use crate::support::{files_under, Atoll, Req, Res};

const PASSWORD: &str = "correct horse";

fn args(dir: &Path, anonymous_pull: bool) -> Vec<String> {
    let file = dir.join("htpasswd");
    if !file.exists() {
        let line = format!("alice:{}\n", bcrypt::hash(PASSWORD, 4).unwrap());
        std::fs::write(&file, line).unwrap();
    }
    let mut args = vec!["--htpasswd".to_owned(), file.display().to_string()];
    if anonymous_pull {
        args.push("--anonymous-pull".into());
    }
    args
}

fn start(anonymous_pull: bool) -> (Atoll, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let args = args(dir.path(), anonymous_pull);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let a = Atoll::try_start_in(&dir.path().join("data"), &args, &[]).unwrap();
    (a, dir)
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Who {
    Nobody,
    WrongPassword,
    Alice,
}

fn as_(who: Who, r: Req) -> Req {
    match who {
        Who::Nobody => r,
        Who::WrongPassword => r.basic("alice", "guess"),
        Who::Alice => r.basic("alice", PASSWORD),
    }
}

/// What a route needs.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Needs {
    Read,
    Write,
    Nothing,
}

/// What alice pushed before the matrix runs.
struct World {
    img: Image,
    /// A blob pushed to `vault` only.
    secret: Vec<u8>,
    secret_manifest: Image,
    /// An upload session of `app`, holding `b"abc"`.
    upload: String,
    /// An image whose blobs `app` has and whose manifest it has not.
    next: Image,
}

fn alice(a: &Atoll, m: Method, path: &str) -> Req {
    as_(Who::Alice, a.req(m, path))
}

fn prepare(a: &Atoll) -> World {
    let img = Image::oci(1, 100);
    for b in img.blobs() {
        let d = sha256(b);
        alice(
            a,
            Method::Post,
            &format!("/v2/app/blobs/uploads/?digest={d}"),
        )
        .body(b.clone())
        .send()
        .expect(201, None);
    }
    alice(a, Method::Put, "/v2/app/manifests/v1")
        .header("Content-Type", OCI_MANIFEST)
        .body(img.manifest.clone())
        .send()
        .expect(201, None);
    let secret = random_bytes(300);
    let secret_manifest = Image::oci(0, 0).with_layers(vec![secret.clone()]);
    for b in secret_manifest.blobs() {
        let d = sha256(b);
        alice(
            a,
            Method::Post,
            &format!("/v2/vault/blobs/uploads/?digest={d}"),
        )
        .body(b.clone())
        .send()
        .expect(201, None);
    }
    alice(a, Method::Put, "/v2/vault/manifests/s1")
        .header("Content-Type", OCI_MANIFEST)
        .body(secret_manifest.manifest.clone())
        .send()
        .expect(201, None);
    let r = alice(a, Method::Post, "/v2/app/blobs/uploads/").send();
    r.expect(202, None);
    let upload = r.location();
    alice(a, Method::Patch, &upload)
        .header("Content-Type", "application/octet-stream")
        .body(b"abc".to_vec())
        .send()
        .expect(202, None);
    let next = Image::oci(0, 0).with_layers(img.layers.clone());
    let d = sha256(&next.config);
    alice(
        a,
        Method::Post,
        &format!("/v2/app/blobs/uploads/?digest={d}"),
    )
    .body(next.config.clone())
    .send()
    .expect(201, None);
    World {
        img,
        secret,
        secret_manifest,
        upload,
        next,
    }
}

/// A route: label, what it needs, method, path, body.
type Route = (&'static str, Needs, Method, String, Option<Vec<u8>>);

/// Every route of the API.
fn routes(w: &World) -> Vec<Route> {
    let layer = sha256(&w.img.layers[0]);
    let manifest = w.img.digest();
    let up = &w.upload;
    let sep = if up.contains('?') { '&' } else { '?' };
    let fresh = b"fresh bytes".to_vec();
    let fresh_d = sha256(&fresh);
    let secret = sha256(&w.secret);
    use Needs::*;
    vec![
        ("api base", Read, Method::Get, "/v2/".into(), None),
        ("catalog", Read, Method::Get, "/v2/_catalog".into(), None),
        ("tags", Read, Method::Get, "/v2/app/tags/list".into(), None),
        (
            "manifest GET",
            Read,
            Method::Get,
            "/v2/app/manifests/v1".into(),
            None,
        ),
        (
            "manifest HEAD",
            Read,
            Method::Head,
            "/v2/app/manifests/v1".into(),
            None,
        ),
        (
            "manifest GET by digest",
            Read,
            Method::Get,
            format!("/v2/app/manifests/{manifest}"),
            None,
        ),
        (
            "blob GET",
            Read,
            Method::Get,
            format!("/v2/app/blobs/{layer}"),
            None,
        ),
        (
            "blob HEAD",
            Read,
            Method::Head,
            format!("/v2/app/blobs/{layer}"),
            None,
        ),
        (
            "referrers",
            Read,
            Method::Get,
            format!("/v2/app/referrers/{manifest}"),
            None,
        ),
        (
            "manifest PUT",
            Write,
            Method::Put,
            "/v2/app/manifests/v2".into(),
            Some(w.next.manifest.clone()),
        ),
        (
            "tag DELETE",
            Write,
            Method::Delete,
            "/v2/app/manifests/v1".into(),
            None,
        ),
        (
            "manifest DELETE",
            Write,
            Method::Delete,
            format!("/v2/app/manifests/{manifest}"),
            None,
        ),
        (
            "blob DELETE",
            Write,
            Method::Delete,
            // The config of the manifest deleted just before (the layer is named by `next`,
            // pushed before, and a blob a manifest names is not deleted from under it).
            format!("/v2/app/blobs/{}", sha256(&w.img.config)),
            None,
        ),
        (
            "upload POST",
            Write,
            Method::Post,
            "/v2/app/blobs/uploads/".into(),
            None,
        ),
        (
            "upload POST ?digest",
            Write,
            Method::Post,
            format!("/v2/app/blobs/uploads/?digest={fresh_d}"),
            Some(fresh.clone()),
        ),
        (
            "mount from",
            Write,
            Method::Post,
            format!("/v2/app/blobs/uploads/?mount={secret}&from=vault"),
            None,
        ),
        (
            "mount",
            Write,
            Method::Post,
            format!("/v2/app/blobs/uploads/?mount={secret}"),
            None,
        ),
        ("upload GET", Write, Method::Get, up.clone(), None),
        (
            "upload PATCH",
            Write,
            Method::Patch,
            up.clone(),
            Some(b"def".to_vec()),
        ),
        (
            "upload PUT",
            Write,
            Method::Put,
            format!("{up}{sep}digest={}", sha256(b"abcdef")),
            None,
        ),
        ("upload DELETE", Write, Method::Delete, up.clone(), None),
        ("healthz", Nothing, Method::Get, "/healthz".into(), None),
        ("readyz", Nothing, Method::Get, "/readyz".into(), None),
        ("metrics", Nothing, Method::Get, "/metrics".into(), None),
    ]
}

fn send(a: &Atoll, who: Who, m: Method, path: &str, body: &Option<Vec<u8>>) -> Res {
    let mut r = as_(who, a.req(m, path));
    if let Some(b) = body {
        r = r
            .header("Content-Type", "application/octet-stream")
            .body(b.clone());
        if path.contains("/manifests/") {
            r = r.header("Content-Type", OCI_MANIFEST);
        }
    }
    r.send()
}

/// Nothing a refused request could have changed has changed.
fn unchanged(a: &Atoll, w: &World, before: &[String], ctx: &str) {
    let r = alice(a, Method::Get, "/v2/app/manifests/v1").send();
    assert_eq!(r.status, 200, "{ctx}: v1 gone");
    assert_eq!(r.body, w.img.manifest, "{ctx}");
    for b in w.img.blobs() {
        let r = alice(a, Method::Get, &format!("/v2/app/blobs/{}", sha256(b))).send();
        assert_eq!(r.status, 200, "{ctx}: a blob of v1 gone");
    }
    let r = alice(a, Method::Get, "/v2/app/manifests/v2").send();
    assert_eq!(r.status, 404, "{ctx}: v2 was written");
    let r = alice(a, Method::Get, &w.upload).send();
    assert_eq!(r.status, 204, "{ctx}: the upload is gone");
    assert_eq!(r.header("Range"), Some("0-2"), "{ctx}: the upload changed");
    for d in [sha256(&w.secret), sha256(b"fresh bytes")] {
        let r = alice(a, Method::Head, &format!("/v2/app/blobs/{d}")).send();
        assert_eq!(r.status, 404, "{ctx}: {d} was linked to app");
    }
    let blobs = files_under(&a.dir.join("blobs"));
    assert_eq!(blobs, before, "{ctx}: blob files changed");
}

#[test]
fn no_route_reads_or_writes_without_the_login_it_needs() {
    let mut asked = 0;
    for anonymous_pull in [false, true] {
        for who in [Who::Nobody, Who::WrongPassword] {
            let ctx = format!("{who:?}, anonymous_pull={anonymous_pull}");
            let (a, dir) = start(anonymous_pull);
            let w = prepare(&a);
            let before = files_under(&a.dir.join("blobs"));
            for (label, needs, m, path, body) in routes(&w) {
                let ctx = format!("{label} ({m} {path}) by {ctx}");
                let r = send(&a, who, m, &path, &body);
                asked += 1;
                let allowed = match needs {
                    Needs::Nothing => true,
                    // /v2/ without credentials is where clients learn how to log in.
                    Needs::Read => anonymous_pull && who == Who::Nobody && label != "api base",
                    Needs::Write => false,
                };
                if who == Who::WrongPassword && r.status == 429 {
                    // Failed logins from one address are throttled, on every route (the open
                    // ones too: the header is checked wherever it is sent).
                    assert_eq!(r.error_code(), "TOOMANYREQUESTS", "{ctx}");
                } else if allowed {
                    assert!(r.status < 300, "{ctx}: {} {:?}", r.status, r.text_lossy());
                } else {
                    assert_eq!(r.status, 401, "{ctx}: {:?}", r.text_lossy());
                    assert!(
                        r.header("WWW-Authenticate").is_some(),
                        "{ctx}: no challenge"
                    );
                    if !r.head {
                        assert_eq!(r.error_code(), "UNAUTHORIZED", "{ctx}");
                    }
                }
                if label == "metrics" {
                    // Open by policy: counts by operation, never a repository's name.
                    let text = r.text_lossy();
                    assert!(!text.contains("vault") && !text.contains("app/"), "{text}");
                }
            }
            // A restart forgets the throttling of the wrong password, not the data.
            let args = args(dir.path(), anonymous_pull);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let a = a.restart(&args);
            unchanged(&a, &w, &before, &ctx);
            // The same routes with the login: each does what it says (the refusals above are
            // not the work of routes that are broken).
            for (label, _, m, mut path, body) in routes(&w) {
                if label == "upload DELETE" {
                    // The upload PUT before it finished the first one.
                    path = alice(&a, Method::Post, "/v2/app/blobs/uploads/")
                        .send()
                        .location();
                }
                let r = send(&a, Who::Alice, m, &path, &body);
                assert!(
                    r.status < 300,
                    "{label} by alice: {} {:?}",
                    r.status,
                    r.text_lossy()
                );
            }
        }
    }
    eprintln!("access: {asked} requests without a valid login checked over every route");
}

#[test]
fn a_digest_from_another_repository_is_not_readable_without_a_link() {
    for anonymous_pull in [false, true] {
        let (a, _dir) = start(anonymous_pull);
        let w = prepare(&a);
        let secret = sha256(&w.secret);
        let secret_manifest = w.secret_manifest.digest();
        let upload_id = w
            .upload
            .rsplit('/')
            .next()
            .unwrap()
            .split('?')
            .next()
            .unwrap();
        for who in [Who::Nobody, Who::Alice] {
            if who == Who::Nobody && !anonymous_pull {
                continue;
            }
            for (m, path, status, code) in [
                (
                    Method::Get,
                    format!("/v2/app/blobs/{secret}"),
                    404,
                    "BLOB_UNKNOWN",
                ),
                (Method::Head, format!("/v2/app/blobs/{secret}"), 404, ""),
                (
                    Method::Get,
                    format!("/v2/app/manifests/{secret_manifest}"),
                    404,
                    "MANIFEST_UNKNOWN",
                ),
                (
                    Method::Head,
                    format!("/v2/app/manifests/{secret_manifest}"),
                    404,
                    "",
                ),
                (
                    Method::Get,
                    "/v2/app/manifests/s1".into(),
                    404,
                    "MANIFEST_UNKNOWN",
                ),
                (Method::Get, format!("/v2/nothere/blobs/{secret}"), 404, ""),
            ] {
                let r = as_(who, a.req(m, &path)).send();
                assert_eq!(r.status, status, "{m} {path} by {who:?}");
                if !code.is_empty() {
                    assert_eq!(r.error_code(), code, "{m} {path}");
                }
                assert!(!r.body.windows(w.secret.len()).any(|x| x == w.secret));
            }
        }
        // An upload belongs to its repository.
        for m in [Method::Get, Method::Patch, Method::Delete] {
            let r = alice(&a, m, &format!("/v2/vault/blobs/uploads/{upload_id}"))
                .body(b"x".to_vec())
                .send();
            assert_eq!(r.status, 404, "{m} of app's upload through vault");
            assert_eq!(r.error_code(), "BLOB_UPLOAD_UNKNOWN");
        }
        let r = alice(&a, Method::Get, &w.upload).send();
        assert_eq!(r.header("Range"), Some("0-2"));
    }
}

#[test]
fn no_name_reaches_outside_the_data_directory() {
    let a = Atoll::start();
    let img = Image::oci(1, 50);
    img.push(&a, "inside/app", "v1").expect(201, None);
    let outside = a.dir.parent().unwrap().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let canary = outside.join("canary");
    std::fs::write(&canary, b"keep").unwrap();
    let before = snapshot_names(a.dir.parent().unwrap());
    let layer = sha256(&img.layers[0]);
    let hex = &layer["sha256:".len()..];
    for name in [
        "..",
        "../outside",
        "inside/../..",
        "inside/%2e%2e/%2e%2e/outside",
        "%2e%2e%2foutside",
        "inside%2f..%2f..%2foutside",
        "/etc",
        "inside//app",
        "inside\\..\\..",
        "INSIDE/app",
        "inside/app%00",
    ] {
        for (m, path, body) in [
            (Method::Get, format!("/v2/{name}/tags/list"), None),
            (Method::Get, format!("/v2/{name}/manifests/v1"), None),
            (Method::Get, format!("/v2/{name}/blobs/{layer}"), None),
            (
                Method::Put,
                format!("/v2/{name}/manifests/v1"),
                Some(img.manifest.clone()),
            ),
            (Method::Post, format!("/v2/{name}/blobs/uploads/"), None),
            (
                Method::Post,
                format!("/v2/{name}/blobs/uploads/?digest={layer}"),
                Some(img.layers[0].clone()),
            ),
        ] {
            let status = raw_status(&a, &m, &path, &body);
            assert!(matches!(status, 400 | 404 | 405), "{m} {path}: {status}");
        }
    }
    // Digests and upload ids that are paths.
    for path in [
        format!("/v2/inside/app/blobs/sha256:../../{hex}"),
        "/v2/inside/app/blobs/sha256:..%2f..%2f..%2foutside%2fcanary".into(),
        "/v2/inside/app/blobs/uploads/..%2f..%2foutside%2fcanary".into(),
        "/v2/inside/app/blobs/uploads/../../../outside/canary".into(),
        "/v2/inside/app/manifests/..%2f..%2f..%2foutside%2fcanary".into(),
    ] {
        for m in [Method::Get, Method::Delete, Method::Patch, Method::Put] {
            let status = raw_status(&a, &m, &path, &Some(b"x".to_vec()));
            assert!(matches!(status, 400 | 404 | 405), "{m} {path}: {status}");
        }
    }
    assert_eq!(std::fs::read(&canary).unwrap(), b"keep");
    let after = snapshot_names(a.dir.parent().unwrap());
    let new: Vec<_> = after.iter().filter(|p| !before.contains(p)).collect();
    assert!(
        new.iter().all(|p| p.starts_with("data/")),
        "files appeared outside the data directory: {new:?}"
    );
    assert!(
        !new.iter().any(|p| p.starts_with("data/blobs/")),
        "blob files appeared: {new:?}"
    );
}

fn snapshot_names(dir: &Path) -> Vec<String> {
    files_under(dir)
}

/// Sends a request line as written (an HTTP client library would resolve `..` itself) and
/// returns the status.
fn raw_status(a: &Atoll, m: &Method, path: &str, body: &Option<Vec<u8>>) -> u16 {
    let body = body.clone().unwrap_or_default();
    let mut req = format!(
        "{m} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(&body);
    let answer = a.raw(&req, std::time::Duration::from_secs(10));
    answer
        .strip_prefix("HTTP/1.1 ")
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{m} {path}: no HTTP answer: {answer:?}"))
}
