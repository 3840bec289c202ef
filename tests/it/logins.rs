//! Logins: htpasswd users and the env user, the access matrix with and without anonymous
//! pulls, the token flow, reloads, throttling, and what must never be logged.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use http_types::Method;

use crate::support::content::*;
use crate::support::{signal, Atoll, Res};

const PASSWORD: &str = "correct horse";

/// An htpasswd file with bcrypt entries (cost 4: tests need not be slow).
fn htpasswd(dir: &Path, users: &[(&str, &str)]) -> PathBuf {
    let path = dir.join("htpasswd");
    write_users(&path, users);
    path
}

fn write_users(path: &Path, users: &[(&str, &str)]) {
    let text: String = users
        .iter()
        .map(|(u, p)| format!("{u}:{}\n", bcrypt::hash(p, 4).unwrap()))
        .collect();
    std::fs::write(path, text).unwrap();
}

fn start(anonymous_pull: bool) -> (Atoll, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let file = htpasswd(dir.path(), &[("alice", PASSWORD)]);
    let mut args = vec!["--htpasswd", file.to_str().unwrap()];
    if anonymous_pull {
        args.push("--anonymous-pull");
    }
    let a = Atoll::try_start_in(&dir.path().join("data"), &args, &[]).unwrap();
    (a, dir)
}

/// Pushes an image as alice, with Basic credentials on every request.
fn push_as_alice(a: &Atoll, repo: &str, img: &Image) {
    for b in img.blobs() {
        let d = sha256(b);
        a.req(
            Method::Post,
            &format!("/v2/{repo}/blobs/uploads/?digest={d}"),
        )
        .basic("alice", PASSWORD)
        .body(b.clone())
        .send()
        .expect(201, None);
    }
    a.req(Method::Put, &format!("/v2/{repo}/manifests/v1"))
        .basic("alice", PASSWORD)
        .header("Content-Type", OCI_MANIFEST)
        .body(img.manifest.clone())
        .send()
        .expect(201, None);
}

#[derive(Clone, Copy, Debug)]
enum Who {
    Nobody,
    Alice,
    WrongPassword,
}

fn with(who: Who, r: crate::support::Req) -> crate::support::Req {
    match who {
        Who::Nobody => r,
        Who::Alice => r.basic("alice", PASSWORD),
        Who::WrongPassword => r.basic("alice", "guess"),
    }
}

fn pull(a: &Atoll, who: Who) -> Res {
    with(who, a.req(Method::Get, "/v2/app/manifests/v1")).send()
}

fn push(a: &Atoll, who: Who) -> Res {
    with(who, a.req(Method::Post, "/v2/app/blobs/uploads/")).send()
}

fn delete(a: &Atoll, who: Who) -> Res {
    with(who, a.req(Method::Delete, "/v2/app/manifests/v1")).send()
}

#[test]
fn the_access_matrix() {
    for anonymous_pull in [false, true] {
        let (a, _dir) = start(anonymous_pull);
        push_as_alice(&a, "app", &Image::oci(1, 10));
        let cases = [
            (
                Who::Nobody,
                if anonymous_pull { 200 } else { 401 },
                401,
                401,
            ),
            (Who::Alice, 200, 202, 202),
            (Who::WrongPassword, 401, 401, 401),
        ];
        for (who, pull_status, push_status, delete_status) in cases {
            let ctx = format!("{who:?}, anonymous_pull={anonymous_pull}");
            let r = pull(&a, who);
            assert_eq!(r.status, pull_status, "pull by {ctx}");
            let r = push(&a, who);
            assert_eq!(r.status, push_status, "push by {ctx}");
            if r.status == 401 {
                assert_eq!(r.error_code(), "UNAUTHORIZED");
                assert!(
                    r.header("WWW-Authenticate").is_some(),
                    "a 401 carries a challenge ({ctx})"
                );
            }
            // Delete last: it removes what the pulls read.
            if delete_status != 202 {
                assert_eq!(delete(&a, who).status, delete_status, "delete by {ctx}");
            }
        }
        assert_eq!(delete(&a, Who::Alice).status, 202);
    }
}

#[test]
fn without_anonymous_pulls_the_challenge_is_basic() {
    let (a, _dir) = start(false);
    let r = a.get("/v2/");
    r.expect(401, Some("UNAUTHORIZED"));
    assert_eq!(r.header("WWW-Authenticate"), Some("Basic realm=\"atoll\""));
    a.req(Method::Get, "/v2/")
        .basic("alice", PASSWORD)
        .send()
        .expect(200, None);
    // Health checks stay open for monitoring.
    a.get("/healthz").expect(200, None);
    // No token without a login.
    a.get("/token").expect(401, Some("UNAUTHORIZED"));
}

#[test]
fn with_anonymous_pulls_clients_get_a_token_flow() {
    let (a, _dir) = start(true);
    push_as_alice(&a, "app", &Image::oci(1, 10));
    // The API base challenges with a Bearer realm on atoll itself.
    let r = a.get("/v2/");
    r.expect(401, Some("UNAUTHORIZED"));
    let challenge = r.header("WWW-Authenticate").unwrap().to_owned();
    assert_eq!(
        challenge,
        format!("Bearer realm=\"http://{}/token\",service=\"atoll\"", a.addr)
    );
    let push = a.req(Method::Post, "/v2/app/blobs/uploads/").send();
    assert!(push
        .header("WWW-Authenticate")
        .unwrap()
        .ends_with(",scope=\"repository:app:pull,push\""));
    // An anonymous token opens reads, not writes.
    let anon = a.get("/token?service=atoll&scope=repository:app:pull");
    anon.expect(200, None);
    let token = anon.json()["token"].as_str().unwrap().to_owned();
    assert_eq!(anon.json()["access_token"], token.as_str());
    let bearer = format!("Bearer {token}");
    a.req(Method::Get, "/v2/")
        .header("Authorization", &bearer)
        .send()
        .expect(200, None);
    a.req(Method::Get, "/v2/app/manifests/v1")
        .header("Authorization", &bearer)
        .send()
        .expect(200, None);
    a.req(Method::Post, "/v2/app/blobs/uploads/")
        .header("Authorization", &bearer)
        .send()
        .expect(401, Some("UNAUTHORIZED"));
    // A login's token opens writes.
    let user = a.req(Method::Get, "/token").basic("alice", PASSWORD).send();
    user.expect(200, None);
    let bearer = format!("Bearer {}", user.json()["token"].as_str().unwrap());
    a.req(Method::Post, "/v2/app/blobs/uploads/")
        .header("Authorization", &bearer)
        .send()
        .expect(202, None);
    // Wrong passwords get no token; forged tokens open nothing.
    a.req(Method::Get, "/token")
        .basic("alice", "guess")
        .send()
        .expect(401, None);
    a.req(Method::Get, "/v2/app/manifests/v1")
        .header("Authorization", "Bearer 9999999999.616c696365.00")
        .send()
        .expect(401, Some("UNAUTHORIZED"));
}

#[test]
fn the_environment_user_needs_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("ATOLL_USERNAME", "ci"), ("ATOLL_PASSWORD", "from-env")];
    let a = Atoll::try_start_in(&dir.path().join("data"), &[], &env).unwrap();
    a.get("/v2/").expect(401, None);
    a.req(Method::Get, "/v2/")
        .basic("ci", "from-env")
        .send()
        .expect(200, None);
    a.req(Method::Get, "/v2/")
        .basic("ci", "wrong")
        .send()
        .expect(401, None);
}

#[test]
fn a_changed_htpasswd_is_reloaded_without_dropping_connections() {
    use std::io::{BufRead, BufReader, Write};
    let dir = tempfile::tempdir().unwrap();
    let file = htpasswd(dir.path(), &[("alice", PASSWORD)]);
    let mut a = Atoll::try_start_in(
        &dir.path().join("data"),
        &["--htpasswd", file.to_str().unwrap()],
        &[],
    )
    .unwrap();
    // A keep-alive connection, open across the reload.
    let mut conn = std::net::TcpStream::connect(a.addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let get = |conn: &mut std::net::TcpStream| {
        write!(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut reader = BufReader::new(conn.try_clone().unwrap());
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        let mut len = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
            if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0u8; len];
        std::io::Read::read_exact(&mut reader, &mut body).unwrap();
        status
    };
    assert!(get(&mut conn).starts_with("HTTP/1.1 200"));

    // Rewritten: bob in, alice out. The file is polled, no signal needed.
    write_users(&file, &[("bob", "bob-pass")]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while a
        .req(Method::Get, "/v2/")
        .basic("bob", "bob-pass")
        .send()
        .status
        != 200
    {
        assert!(Instant::now() < deadline, "the new file was not picked up");
        std::thread::sleep(Duration::from_millis(200));
    }
    a.req(Method::Get, "/v2/")
        .basic("alice", PASSWORD)
        .send()
        .expect(401, None);
    assert!(
        get(&mut conn).starts_with("HTTP/1.1 200"),
        "the connection survived the reload"
    );

    // SIGHUP reloads at once; a broken file keeps the users loaded before.
    std::fs::write(&file, "not an htpasswd line\n").unwrap();
    signal(a.pid(), "HUP");
    std::thread::sleep(Duration::from_millis(500));
    a.req(Method::Get, "/v2/")
        .basic("bob", "bob-pass")
        .send()
        .expect(200, None);
    assert!(
        a.log().contains("keeping the users loaded before"),
        "{}",
        a.log()
    );
    assert!(a.terminate().success());
}

#[test]
fn failed_logins_are_slowed_then_refused_with_429() {
    let (a, _dir) = start(false);
    let mut slow = 0;
    let mut refused = None;
    for i in 0..12 {
        let t = Instant::now();
        let r = a
            .req(Method::Get, "/v2/")
            .basic("alice", &format!("guess{i}"))
            .send();
        if t.elapsed() >= Duration::from_millis(200) {
            slow += 1;
        }
        if r.status == 429 {
            assert_eq!(r.error_code(), "TOOMANYREQUESTS");
            assert!(r.header("Retry-After").is_some());
            refused = Some(i);
            break;
        }
        r.expect(401, Some("UNAUTHORIZED"));
    }
    assert!(
        slow >= 3,
        "failures past the first few are answered slowly ({slow})"
    );
    assert_eq!(refused, Some(9), "the tenth failure is refused");
    // While refused, even the right password waits.
    a.req(Method::Get, "/v2/")
        .basic("alice", PASSWORD)
        .send()
        .expect(429, Some("TOOMANYREQUESTS"));
    // Anonymous requests that need no login are not affected.
    a.get("/healthz").expect(200, None);
}

#[test]
fn credentials_never_reach_the_log() {
    let (a, _dir) = start(false);
    push_as_alice(&a, "secret", &Image::oci(1, 10));
    a.req(Method::Get, "/v2/")
        .basic("alice", "a-wrong-password")
        .send();
    let token = a
        .req(Method::Get, "/token")
        .basic("alice", PASSWORD)
        .send()
        .json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    std::thread::sleep(Duration::from_millis(100));
    let log = a.log();
    assert!(
        log.contains(" alice \"PUT /v2/secret/manifests/v1\" 201"),
        "the user is logged: {log}"
    );
    for secret in [
        PASSWORD,
        "a-wrong-password",
        "Basic ",
        "Y29ycmVjdCBob3JzZQ",
        &token,
    ] {
        assert!(!log.contains(secret), "{secret:?} leaked into the log");
    }
}

#[test]
fn a_bad_htpasswd_file_stops_atoll_before_it_binds() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("htpasswd");
    let cases: [(&str, &str); 3] = [
        ("alice\n", "line 1: expected user:hash"),
        ("carol:$apr1$abc$def\n", "no bcrypt users"),
        ("", "no bcrypt users"),
    ];
    for (text, why) in cases {
        std::fs::write(&file, text).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_atoll"))
            .args([
                "--data-dir",
                dir.path().join("d").to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
            ])
            .args(["--htpasswd", file.to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{text:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.trim().lines().last().unwrap();
        assert!(
            last.starts_with(&format!("atoll: --htpasswd {}: ", file.display())),
            "{err}"
        );
        assert!(last.contains(why), "{err}");
        assert!(!err.contains("listening"), "{err}");
    }
    let missing = dir.path().join("nope");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_atoll"))
        .args([
            "--data-dir",
            dir.path().join("d").to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .args(["--htpasswd", missing.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}

#[test]
fn a_weak_hash_line_is_skipped_with_a_warning_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("htpasswd");
    let good = bcrypt::hash(PASSWORD, 4).unwrap();
    std::fs::write(&file, format!("old:$apr1$xyz$abc\nalice:{good}\n")).unwrap();
    let a = Atoll::try_start_in(
        &dir.path().join("d"),
        &["--htpasswd", file.to_str().unwrap()],
        &[],
    )
    .unwrap();
    assert!(
        a.log().contains("line 1 (user \"old\"): MD5"),
        "{}",
        a.log()
    );
    a.req(Method::Get, "/v2/")
        .basic("alice", PASSWORD)
        .send()
        .expect(200, None);
    a.req(Method::Get, "/v2/")
        .basic("old", "anything")
        .send()
        .expect(401, None);
}

#[test]
fn exposure_is_warned_about_at_startup() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_atoll"));
    let child = cmd
        .args([
            "--data-dir",
            dir.path().join("d").to_str().unwrap(),
            "--listen",
            "0.0.0.0:0",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    signal(child.id(), "TERM");
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("serving plain HTTP on 0.0.0.0"), "{err}");
    assert!(err.contains("no logins on 0.0.0.0"), "{err}");
}

/// For hosts without Apache's htpasswd: `atoll --hash-password USER` prints a line that works.
#[test]
fn hash_password_prints_a_line_that_logs_in() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_atoll"))
        .args(["--hash-password", "carol"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"carol's pass\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let line = String::from_utf8(out.stdout).unwrap();
    assert!(line.starts_with("carol:$2y$10$"), "{line}");
    let file = dir.path().join("htpasswd");
    std::fs::write(&file, &line).unwrap();
    let a = Atoll::try_start_in(
        &dir.path().join("d"),
        &["--htpasswd", file.to_str().unwrap()],
        &[],
    )
    .unwrap();
    a.req(Method::Get, "/v2/")
        .basic("carol", "carol's pass")
        .send()
        .expect(200, None);
}
