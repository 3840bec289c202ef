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
