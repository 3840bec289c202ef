//! Real clients for end-to-end tests (skopeo, docker through a private dockerd).
//!
//! `tests/run.sh` installs them and starts the dockerd, and sets `ATOLL_E2E=require`: then a
//! missing tool fails the test. Run alone (`cargo test`) on a machine without them, the tests
//! say loudly that they skipped.

use std::process::{Command, Output};

fn required() -> bool {
    std::env::var("ATOLL_E2E").as_deref() == Ok("require")
}

fn skip(why: &str) -> bool {
    assert!(
        !required(),
        "{why}, and ATOLL_E2E=require: run tests/run.sh, which installs and starts what is needed"
    );
    eprintln!("SKIPPED: {why} (tests/run.sh installs it)");
    false
}

/// True if `tool` is on PATH; otherwise skips (or fails under ATOLL_E2E=require).
pub fn have(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    found || skip(&format!("{tool} is not installed"))
}

/// The private dockerd's socket (DOCKER_HOST, set by tests/run.sh), if it answers.
pub fn docker_host() -> Option<String> {
    if !have("docker") {
        return None;
    }
    let Ok(host) = std::env::var("DOCKER_HOST") else {
        skip("DOCKER_HOST is not set (no private dockerd)");
        return None;
    };
    let up = Command::new("docker")
        .args(["info"])
        .env("DOCKER_HOST", &host)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if up {
        Some(host)
    } else {
        skip(&format!("dockerd at {host} does not answer"));
        None
    }
}

/// Runs a command and asserts it succeeded, showing its output if not.
#[track_caller]
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs a command expected to fail; returns its stderr.
#[track_caller]
pub fn run_fails(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(!out.status.success(), "{cmd:?} should have failed");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A dockerd of the test's own, for daemon settings the shared one lacks (registry mirrors).
/// Same isolation as tests/run.sh's: own socket and state, no iptables, no bridge, vfs storage.
/// Stopped and removed when dropped.
pub struct Dockerd {
    pub host: String,
    child: std::process::Child,
    _state: tempfile::TempDir,
}

impl Dockerd {
    /// Starts one with these extra arguments, once the shared private dockerd shows docker
    /// works here (it needs root); `None` (or a failure under ATOLL_E2E=require) otherwise.
    pub fn start(extra: &[&str]) -> Option<Dockerd> {
        docker_host()?;
        let state = tempfile::Builder::new()
            .prefix("atoll-dockerd.")
            .tempdir_in("/tmp")
            .unwrap();
        let s = state.path();
        let host = format!("unix://{}", s.join("docker.sock").display());
        let log = std::fs::File::create(s.join("dockerd.log")).unwrap();
        let dockerd = if std::path::Path::new("/usr/sbin/dockerd").exists() {
            "/usr/sbin/dockerd"
        } else {
            "dockerd"
        };
        let child = Command::new(dockerd)
            .args(["--iptables=false", "--ip6tables=false", "--bridge=none"])
            .args(["--storage-driver=vfs", "-H", &host])
            .arg("--data-root")
            .arg(s.join("docker"))
            .arg("--exec-root")
            .arg(s.join("exec"))
            .arg("--pidfile")
            .arg(s.join("dockerd.pid"))
            .args(extra)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting dockerd");
        let d = Dockerd {
            host,
            child,
            _state: state,
        };
        for _ in 0..300 {
            let up = Command::new("docker")
                .arg("info")
                .env("DOCKER_HOST", &d.host)
                .output()
                .is_ok_and(|o| o.status.success());
            if up {
                return Some(d);
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let log = std::fs::read_to_string(d._state.path().join("dockerd.log")).unwrap_or_default();
        panic!("a second dockerd did not start in 30 s:\n{log}");
    }

    /// The socket of the containerd it runs, for `ctr -a`.
    pub fn containerd_socket(&self) -> String {
        let s = self._state.path().join("exec/containerd/containerd.sock");
        s.display().to_string()
    }

    pub fn docker(&self, args: &[&str]) -> Command {
        let mut c = Command::new("docker");
        c.env("DOCKER_HOST", &self.host).args(args);
        c
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        // SIGTERM: dockerd stops its containerd and unmounts; then wait for it.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        for _ in 0..150 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
