//! Bundles end to end with real clients: archives written by skopeo (`oci-archive:`,
//! `docker-archive:`, multi-arch `--all`) and by `docker save` are imported, then pulled back
//! with skopeo and docker (digests compared, images run); atoll's exports are loaded by skopeo
//! (`oci-archive:`) and `docker load`.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::support::bundles::{atoll_ok, DockerShape};
use crate::support::content::*;
use crate::support::layout::{busybox_image, host_arch, image_layout, ref_digest, write};
use crate::support::tools::{docker_host, have, run};
use crate::support::Atoll;

fn skopeo(args: &[&str]) -> String {
    let mut c = Command::new("skopeo");
    c.args(args);
    String::from_utf8(run(&mut c).stdout).unwrap()
}

fn docker(host: &str, args: &[&str]) -> String {
    let mut c = Command::new("docker");
    c.env("DOCKER_HOST", host).args(args);
    String::from_utf8_lossy(&run(&mut c).stdout)
        .trim()
        .to_owned()
}

fn rmi(host: &str, images: &[&str]) {
    let _ = Command::new("docker")
        .env("DOCKER_HOST", host)
        .args(["rmi", "-f"])
        .args(images)
        .output();
}

/// The digest atoll's import summary gives a name.
fn imported(summary: &str, name: &str) -> String {
    summary
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{name} ")))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or_else(|| panic!("{name} not in {summary}"))
        .to_owned()
}

fn token(a: &Atoll, what: &str) -> String {
    format!(
        "atoll-{what}-{}",
        &sha256(a.addr.to_string().as_bytes())[7..17]
    )
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn skopeo_archives_import_and_pull_back_with_the_same_digests() {
    if !have("skopeo") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let img = busybox_image("skopeo-archives");
    let src = work.path().join("src");
    image_layout(&src, &img, "1");
    let oa = work.path().join("oa.tar");
    let da = work.path().join("da.tar");
    let from = format!("oci:{}:1", p(&src));
    skopeo(&[
        "copy",
        "-q",
        "--preserve-digests",
        &from,
        &format!("oci-archive:{}:e2e/bb:1", p(&oa)),
    ]);
    skopeo(&[
        "copy",
        "-q",
        &from,
        &format!("docker-archive:{}:e2e/bbd:1", p(&da)),
    ]);
    // Every platform of an index, with --all.
    let other = Image::oci(1, 2000);
    let idx = index(OCI_INDEX, &[(&img, host_arch()), (&other, "s390x")]);
    let mut blobs: Vec<&[u8]> = img
        .blobs()
        .into_iter()
        .chain(other.blobs())
        .map(|b| b.as_slice())
        .collect();
    blobs.push(&img.manifest);
    blobs.push(&other.manifest);
    let multi = work.path().join("multi");
    write(&multi, &[("m", OCI_INDEX, &idx)], &blobs);
    let ma = work.path().join("multi.tar");
    skopeo(&[
        "copy",
        "-q",
        "--all",
        "--preserve-digests",
        &format!("oci:{}:m", p(&multi)),
        &format!("oci-archive:{}:e2e/multi:1", p(&ma)),
    ]);

    let out = atoll_ok(&data, &["--import", p(&oa), p(&da), p(&ma)]);
    assert_eq!(imported(&out, "e2e/bb:1"), img.digest());
    assert_eq!(imported(&out, "e2e/multi:1"), sha256(&idx));
    let docker_digest = imported(&out, "e2e/bbd:1");

    let a = Atoll::start_in(&data, &[]);
    let reg = a.addr.to_string();
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{reg}/e2e/bb:1"),
    ]);
    assert_eq!(
        raw.as_bytes(),
        img.manifest.as_slice(),
        "the exact manifest"
    );
    let back = work.path().join("back");
    skopeo(&[
        "copy",
        "-q",
        "--all",
        "--preserve-digests",
        "--src-tls-verify=false",
        &format!("docker://{reg}/e2e/multi:1"),
        &format!("oci:{}:m", p(&back)),
    ]);
    assert_eq!(
        ref_digest(&back, "m"),
        sha256(&idx),
        "every platform came back"
    );
    let info: Value = serde_json::from_str(&skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{reg}/e2e/bbd:1"),
    ]))
    .unwrap();
    assert_eq!(info["Digest"], docker_digest);

    // The docker-archive import is a schema2 image docker pulls and runs.
    let Some(host) = docker_host() else { return };
    let image = format!("{reg}/e2e/bbd:1");
    rmi(&host, &[&image]);
    docker(&host, &["pull", "-q", &image]);
    assert_eq!(
        docker(&host, &["run", "--rm", "--network", "none", &image]),
        "skopeo-archives"
    );
    let repo_digest = docker(
        &host,
        &["inspect", "--format", "{{index .RepoDigests 0}}", &image],
    );
    assert_eq!(repo_digest, format!("{reg}/e2e/bbd@{docker_digest}"));
    rmi(&host, &[&image]);
}

#[test]
fn docker_save_imports_and_docker_pulls_it_back() {
    let Some(host) = docker_host() else { return };
    if !have("skopeo") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let a = Atoll::start();
    let reg = a.addr.to_string();
    let tok = token(&a, "save");
    let img = busybox_image(&tok);
    let src = work.path().join("src");
    image_layout(&src, &img, "1");
    let original = format!("{reg}/e2e/saved:1");
    skopeo(&[
        "copy",
        "-q",
        "--preserve-digests",
        "--dest-tls-verify=false",
        &format!("oci:{}:1", p(&src)),
        &format!("docker://{original}"),
    ]);
    rmi(&host, &[&original]);
    docker(&host, &["pull", "-q", &original]);
    let id = docker(&host, &["inspect", "--format", "{{.Id}}", &original]);
    let saved = work.path().join("saved.tar");
    docker(&host, &["save", "-o", p(&saved), &original]);
    rmi(&host, &[&original]);

    let b_dir = work.path().join("b");
    let out = atoll_ok(&b_dir, &["--import", p(&saved)]);
    let digest = imported(&out, "e2e/saved:1");
    let b = Atoll::start_in(&b_dir, &[]);
    let copy = format!("{}/e2e/saved:1", b.addr);
    docker(&host, &["pull", "-q", &copy]);
    assert_eq!(
        docker(&host, &["inspect", "--format", "{{.Id}}", &copy]),
        id,
        "the same image id"
    );
    assert_eq!(
        docker(
            &host,
            &["inspect", "--format", "{{index .RepoDigests 0}}", &copy]
        ),
        format!("{}/e2e/saved@{digest}", b.addr)
    );
    assert_eq!(
        docker(&host, &["run", "--rm", "--network", "none", &copy]),
        tok
    );
    let info: Value = serde_json::from_str(&skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{copy}"),
    ]))
    .unwrap();
    assert_eq!(info["Digest"], digest);
    rmi(&host, &[&copy]);
}

#[test]
fn exports_load_with_skopeo_and_docker() {
    if !have("skopeo") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let img = busybox_image("exported");
    let src = work.path().join("src");
    image_layout(&src, &img, "e2e/run:1");
    atoll_ok(&data, &["--import", p(&src)]);
    // A Docker-typed image too (from a docker archive): exported with its OCI form for skopeo.
    let d = Image::oci(1, 4000);
    let archive = work.path().join("d.tar");
    std::fs::write(
        &archive,
        crate::support::bundles::docker_archive(&d, &["e2e/dock:1"], DockerShape::Legacy),
    )
    .unwrap();
    let out = atoll_ok(&data, &["--import", p(&archive)]);
    let dock = imported(&out, "e2e/dock:1");

    let bundle = work.path().join("out.tar");
    atoll_ok(
        &data,
        &["--export", "e2e/run:1", "e2e/dock", "--output", p(&bundle)],
    );
    let c = Atoll::start();
    let reg = c.addr.to_string();
    for name in ["e2e/run:1", "e2e/dock:1"] {
        skopeo(&[
            "copy",
            "-q",
            "--preserve-digests",
            "--dest-tls-verify=false",
            &format!("oci-archive:{}:{name}", p(&bundle)),
            &format!("docker://{reg}/{name}"),
        ]);
    }
    let info: Value = serde_json::from_str(&skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{reg}/e2e/run:1"),
    ]))
    .unwrap();
    assert_eq!(
        info["Digest"],
        img.digest(),
        "skopeo loads the OCI image as is"
    );
    let info: Value = serde_json::from_str(&skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{reg}/e2e/dock:1"),
    ]))
    .unwrap();
    assert_ne!(
        info["Digest"], dock,
        "skopeo takes the OCI form of a Docker image"
    );
    let config = skopeo(&[
        "inspect",
        "--config",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{reg}/e2e/dock:1"),
    ]);
    assert_eq!(
        sha256(config.as_bytes()),
        sha256(&d.config),
        "the same image, in its OCI form"
    );

    let Some(host) = docker_host() else { return };
    let docker_bundle = work.path().join("docker.tar");
    atoll_ok(
        &data,
        &[
            "--export",
            "e2e/run:1",
            "--format",
            "docker",
            "--output",
            p(&docker_bundle),
        ],
    );
    rmi(&host, &["e2e/run:1"]);
    let loaded = docker(&host, &["load", "-i", p(&docker_bundle)]);
    assert!(loaded.contains("e2e/run:1"), "{loaded}");
    assert_eq!(
        docker(&host, &["run", "--rm", "--network", "none", "e2e/run:1"]),
        "exported"
    );
    assert_eq!(
        docker(&host, &["inspect", "--format", "{{.Id}}", "e2e/run:1"]),
        sha256(&img.config)
    );
    rmi(&host, &["e2e/run:1"]);
}
