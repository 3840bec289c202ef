//! End to end over HTTPS and with logins: skopeo verifying the generated CA's chain, docker
//! logging in, pushing and pulling by a host name, and docker pulling anonymously through the
//! token flow when `--anonymous-pull` is on.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::support::content::sha256;
use crate::support::layout::{busybox_image, image_layout, ref_digest};
use crate::support::tools::{docker_host, have, run, run_fails};
use crate::support::Atoll;

const HOST: &str = "atoll-e2e.test";
const PASSWORD: &str = "e2e pass";

fn htpasswd(dir: &Path) -> String {
    let path = dir.join("htpasswd");
    std::fs::write(
        &path,
        format!("alice:{}\n", bcrypt::hash(PASSWORD, 4).unwrap()),
    )
    .unwrap();
    path.to_str().unwrap().to_owned()
}

fn skopeo(args: &[&str]) -> Command {
    let mut c = Command::new("skopeo");
    c.args(args);
    c
}

#[test]
fn skopeo_verifies_the_generated_ca_and_logs_in() {
    if !have("skopeo") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = htpasswd(dir.path());
    let data = dir.path().join("data");
    let a = Atoll::try_start_in(
        &data,
        &["--tls-auto", "--hostname", HOST, "--htpasswd", &file],
        &[],
    )
    .unwrap();
    let certs = dir.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::copy(data.join("tls/ca.crt"), certs.join("ca.crt")).unwrap();
    let certs = certs.to_str().unwrap();
    let creds = format!("alice:{PASSWORD}");
    let target = format!("docker://localhost:{}/e2e/tls:1", a.addr.port());

    let img = busybox_image("tls");
    let layout = dir.path().join("layout");
    image_layout(&layout, &img, "1");
    let src = format!("oci:{}:1", layout.display());
    run(&mut skopeo(&[
        "copy",
        "-q",
        "--preserve-digests",
        "--dest-tls-verify=true",
        "--dest-cert-dir",
        certs,
        "--dest-creds",
        &creds,
        &src,
        &target,
    ]));
    // Without trusting the CA, verification fails; without the login, the push is refused.
    let err = run_fails(&mut skopeo(&["inspect", "--tls-verify=true", &target]));
    assert!(err.contains("certificate") || err.contains("x509"), "{err}");
    let err = run_fails(&mut skopeo(&[
        "copy",
        "-q",
        "--dest-tls-verify=true",
        "--dest-cert-dir",
        certs,
        &src,
        &target,
    ]));
    assert!(err.to_lowercase().contains("auth"), "{err}");

    let back = dir.path().join("back");
    run(&mut skopeo(&[
        "copy",
        "-q",
        "--preserve-digests",
        "--src-tls-verify=true",
        "--src-cert-dir",
        certs,
        "--src-creds",
        &creds,
        &target,
        &format!("oci:{}:1", back.display()),
    ]));
    assert_eq!(ref_digest(&back, "1"), img.digest());
}

/// Makes `HOST` resolve to 127.0.0.1 (root only: CI runs as root).
fn ensure_hosts_entry() -> bool {
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    if hosts
        .lines()
        .any(|l| l.split_whitespace().skip(1).any(|n| n == HOST))
    {
        return true;
    }
    let appended = std::fs::OpenOptions::new()
        .append(true)
        .open("/etc/hosts")
        .and_then(|mut f| writeln!(f, "127.0.0.1 {HOST}"));
    if appended.is_err() {
        assert!(
            std::env::var("ATOLL_E2E").as_deref() != Ok("require"),
            "cannot add {HOST} to /etc/hosts (run as root)"
        );
        eprintln!("SKIPPED: cannot add {HOST} to /etc/hosts (not root)");
        return false;
    }
    true
}

fn docker(host: &str, config: &Path, args: &[&str]) -> Command {
    let mut c = Command::new("docker");
    c.env("DOCKER_HOST", host)
        .env("DOCKER_CONFIG", config)
        .args(args);
    c
}

fn docker_login(host: &str, config: &Path, registry: &str, password: &str) -> std::process::Output {
    let mut child = docker(
        host,
        config,
        &["login", registry, "-u", "alice", "--password-stdin"],
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(password.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// Pushes the runnable test image to `repo:1` with skopeo, as alice.
fn seed(
    a: &Atoll,
    dir: &Path,
    repo: &str,
    tls_certs: Option<&str>,
) -> crate::support::content::Image {
    let img = busybox_image(repo);
    let layout = dir.join(format!("layout-{}", &sha256(repo.as_bytes())[7..19]));
    image_layout(&layout, &img, "1");
    let (verify, target) = match tls_certs {
        Some(_) => (
            "--dest-tls-verify=true",
            format!("docker://localhost:{}/{repo}:1", a.addr.port()),
        ),
        None => (
            "--dest-tls-verify=false",
            format!("docker://{}/{repo}:1", a.addr),
        ),
    };
    let mut args = vec!["copy", "-q", "--preserve-digests", verify, "--dest-creds"];
    let creds = format!("alice:{PASSWORD}");
    args.push(&creds);
    if let Some(c) = tls_certs {
        args.extend(["--dest-cert-dir", c]);
    }
    let src = format!("oci:{}:1", layout.display());
    args.extend([src.as_str(), target.as_str()]);
    run(&mut skopeo(&args));
    img
}

#[test]
fn docker_logs_in_pushes_and_pulls_over_tls_by_host_name() {
    let Some(host) = docker_host() else { return };
    if !have("skopeo") || !ensure_hosts_entry() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = htpasswd(dir.path());
    let data = dir.path().join("data");
    let a = Atoll::try_start_in(
        &data,
        &["--tls-auto", "--hostname", HOST, "--htpasswd", &file],
        &[],
    )
    .unwrap();
    let registry = format!("{HOST}:{}", a.addr.port());
    let certs_d = Path::new("/etc/docker/certs.d").join(&registry);
    std::fs::create_dir_all(&certs_d).unwrap();
    std::fs::copy(data.join("tls/ca.crt"), certs_d.join("ca.crt")).unwrap();
    let _cleanup = RemoveOnDrop(certs_d.clone());
    let skopeo_certs = dir.path().join("certs");
    std::fs::create_dir_all(&skopeo_certs).unwrap();
    std::fs::copy(data.join("tls/ca.crt"), skopeo_certs.join("ca.crt")).unwrap();
    let img = seed(
        &a,
        dir.path(),
        "e2e/tls-docker",
        Some(skopeo_certs.to_str().unwrap()),
    );

    let config = dir.path().join("docker-config");
    let bad = docker_login(&host, &config, &registry, "wrong");
    assert!(!bad.status.success(), "a wrong password is refused");
    let ok = docker_login(&host, &config, &registry, PASSWORD);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("Login Succeeded"));

    let image = format!("{registry}/e2e/tls-docker:1");
    let copy = format!("{registry}/e2e/tls-copy:1");
    run(&mut docker(&host, &config, &["pull", "-q", &image]));
    let digest = String::from_utf8(
        run(&mut docker(
            &host,
            &config,
            &["inspect", "--format", "{{index .RepoDigests 0}}", &image],
        ))
        .stdout,
    )
    .unwrap();
    assert_eq!(
        digest.trim(),
        format!("{registry}/e2e/tls-docker@{}", img.digest())
    );
    run(&mut docker(&host, &config, &["tag", &image, &copy]));
    run(&mut docker(&host, &config, &["push", "-q", &copy]));
    let _ = docker(&host, &config, &["rmi", "-f", &image, &copy]).output();
    run(&mut docker(&host, &config, &["pull", "-q", &copy]));
    let _ = docker(&host, &config, &["rmi", "-f", &copy]).output();
    assert!(
        a.log()
            .contains("alice \"PUT /v2/e2e/tls-copy/manifests/1\" 201"),
        "{}",
        a.log()
    );
}

#[test]
fn docker_pulls_anonymously_and_pushes_after_login_with_anonymous_pull() {
    let Some(host) = docker_host() else { return };
    if !have("skopeo") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = htpasswd(dir.path());
    let a = Atoll::try_start_in(
        &dir.path().join("data"),
        &["--htpasswd", &file, "--anonymous-pull"],
        &[],
    )
    .unwrap();
    seed(&a, dir.path(), "e2e/anon", None);
    let config = dir.path().join("docker-config");
    let registry = a.addr.to_string();
    let image = format!("{registry}/e2e/anon:1");
    let copy = format!("{registry}/e2e/anon-copy:1");
    let _ = docker(&host, &config, &["rmi", "-f", &image, &copy]).output();

    // No login: the pull works (an anonymous token), the push does not.
    run(&mut docker(&host, &config, &["pull", "-q", &image]));
    run(&mut docker(&host, &config, &["tag", &image, &copy]));
    let refused = run_fails(&mut docker(&host, &config, &["push", "-q", &copy]));
    assert!(
        refused.to_lowercase().contains("unauthorized") || refused.contains("denied"),
        "{refused}"
    );

    let ok = docker_login(&host, &config, &registry, PASSWORD);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    run(&mut docker(&host, &config, &["push", "-q", &copy]));
    let _ = docker(&host, &config, &["rmi", "-f", &image, &copy]).output();
    assert!(
        a.log()
            .contains("alice \"PUT /v2/e2e/anon-copy/manifests/1\" 201"),
        "{}",
        a.log()
    );
}

struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
