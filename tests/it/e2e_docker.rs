//! End to end with docker, through a private dockerd (tests/run.sh starts it): pull an image
//! and run it, push it to another repository (a cross-repository mount), pull that back.

use std::process::Command;

use crate::support::content::sha256;
use crate::support::layout::{busybox_image, image_layout};
use crate::support::tools::{docker_host, have, run};
use crate::support::Atoll;

fn docker(host: &str, args: &[&str]) -> Command {
    let mut c = Command::new("docker");
    c.env("DOCKER_HOST", host).args(args);
    c
}

fn stdout(c: &mut Command) -> String {
    String::from_utf8_lossy(&run(c).stdout).trim().to_owned()
}

#[test]
fn docker_pulls_runs_and_pushes_with_a_cross_repository_mount() {
    let Some(host) = docker_host() else { return };
    if !have("skopeo") {
        return;
    }
    let a = Atoll::start();
    let reg = a.addr.to_string();
    let token = format!("atoll-e2e-{}", &sha256(reg.as_bytes())[7..19]);
    let img = busybox_image(&token);
    let work = tempfile::tempdir().unwrap();
    image_layout(work.path(), &img, "1");
    run(Command::new("skopeo").args([
        "copy",
        "-q",
        "--dest-tls-verify=false",
        "--preserve-digests",
        &format!("oci:{}:1", work.path().display()),
        &format!("docker://{reg}/e2e/busybox:1"),
    ]));

    let image = format!("{reg}/e2e/busybox:1");
    let copy = format!("{reg}/e2e/copy:1");
    let _ = docker(&host, &["rmi", "-f", &image, &copy]).output();
    run(&mut docker(&host, &["pull", "-q", &image]));
    let digest = stdout(&mut docker(
        &host,
        &["inspect", "--format", "{{index .RepoDigests 0}}", &image],
    ));
    assert_eq!(digest, format!("{reg}/e2e/busybox@{}", img.digest()));
    let out = stdout(&mut docker(
        &host,
        &["run", "--rm", "--network", "none", &image],
    ));
    assert_eq!(out, token, "the pulled image runs");

    // Push to another repository: docker mounts the layer instead of uploading it.
    run(&mut docker(&host, &["tag", &image, &copy]));
    run(&mut docker(&host, &["push", "-q", &copy]));
    std::thread::sleep(std::time::Duration::from_millis(100));
    let log = a.log();
    assert!(
        log.lines()
            .any(|l| l.contains("\"POST /v2/e2e/copy/blobs/uploads/?")
                && l.contains("mount=")
                && l.contains(" 201 ")),
        "docker push used a cross-repository mount:\n{log}"
    );

    // Pull the pushed copy back with nothing cached locally, and run it.
    let _ = docker(&host, &["rmi", "-f", &image, &copy]).output();
    run(&mut docker(&host, &["pull", "-q", &copy]));
    let out = stdout(&mut docker(
        &host,
        &["run", "--rm", "--network", "none", &copy],
    ));
    assert_eq!(out, token);
    let _ = docker(&host, &["rmi", "-f", &copy]).output();
}
