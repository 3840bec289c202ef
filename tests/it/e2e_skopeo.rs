//! End to end with skopeo (containers/image, the library podman, buildah and CI systems use):
//! push OCI, Docker v2s2 and multi-arch images, inspect, list tags, pull back, compare digests,
//! delete.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::support::content::*;
use crate::support::layout::{image_layout, ref_digest, write};
use crate::support::tools::{have, run, run_fails};
use crate::support::Atoll;

fn skopeo(args: &[&str]) -> Command {
    let mut c = Command::new("skopeo");
    c.args(args);
    c
}

/// `skopeo copy`. `--preserve-digests` unless converting: by default skopeo compresses
/// uncompressed layers on the way, which rewrites the manifest.
fn copy(src: &str, dst: &str, extra: &[&str]) {
    let mut args = vec![
        "copy",
        "-q",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
    ];
    if !extra.contains(&"--format") {
        args.push("--preserve-digests");
    }
    args.extend_from_slice(extra);
    args.extend([src, dst]);
    run(&mut skopeo(&args));
}

fn inspect_raw(reference: &str) -> String {
    String::from_utf8(
        run(&mut skopeo(&[
            "inspect",
            "--raw",
            "--tls-verify=false",
            reference,
        ]))
        .stdout,
    )
    .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8(b.to_vec()).unwrap()
}

fn blob_files(dir: &Path) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = std::fs::read_dir(dir.join("blobs/sha256"))
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn skopeo_round_trips_oci_docker_and_multi_arch_images() {
    if !have("skopeo") {
        return;
    }
    let a = Atoll::start();
    let work = tempfile::tempdir().unwrap();
    let reg = a.addr.to_string();

    // An OCI image, pushed as OCI and converted to Docker v2s2.
    let img = Image::oci(2, 300_000);
    let src = work.path().join("src");
    image_layout(&src, &img, "t");
    copy(
        &format!("oci:{}:t", src.display()),
        &format!("docker://{reg}/e2e/img:oci"),
        &[],
    );
    copy(
        &format!("oci:{}:t", src.display()),
        &format!("docker://{reg}/e2e/img:v2s2"),
        &["--format", "v2s2"],
    );
    assert_eq!(
        inspect_raw(&format!("docker://{reg}/e2e/img:oci")),
        text(&img.manifest),
        "exact bytes"
    );
    let v2: Value =
        serde_json::from_str(&inspect_raw(&format!("docker://{reg}/e2e/img:v2s2"))).unwrap();
    assert_eq!(v2["mediaType"], DOCKER_MANIFEST);

    let info: Value = serde_json::from_slice(
        &run(&mut skopeo(&[
            "inspect",
            "--tls-verify=false",
            &format!("docker://{reg}/e2e/img:oci"),
        ]))
        .stdout,
    )
    .unwrap();
    assert_eq!(info["Digest"], img.digest());
    let tags: Value = serde_json::from_slice(
        &run(&mut skopeo(&[
            "list-tags",
            "--tls-verify=false",
            &format!("docker://{reg}/e2e/img"),
        ]))
        .stdout,
    )
    .unwrap();
    assert_eq!(tags["Tags"], serde_json::json!(["oci", "v2s2"]));

    // Pull back: same manifest digest, same blobs, byte for byte.
    let back = work.path().join("back");
    copy(
        &format!("docker://{reg}/e2e/img:oci"),
        &format!("oci:{}:t", back.display()),
        &[],
    );
    assert_eq!(ref_digest(&back, "t"), img.digest());
    assert_eq!(blob_files(&back), blob_files(&src));

    // Delete (skopeo deletes by digest): the v2s2 manifest and its tag go, the OCI one stays.
    run(&mut skopeo(&[
        "delete",
        "--tls-verify=false",
        &format!("docker://{reg}/e2e/img:v2s2"),
    ]));
    run_fails(&mut skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{reg}/e2e/img:v2s2"),
    ]));
    let tags: Value = serde_json::from_slice(
        &run(&mut skopeo(&[
            "list-tags",
            "--tls-verify=false",
            &format!("docker://{reg}/e2e/img"),
        ]))
        .stdout,
    )
    .unwrap();
    assert_eq!(tags["Tags"], serde_json::json!(["oci"]));
}

#[test]
fn skopeo_copies_every_platform_of_an_index_with_all() {
    if !have("skopeo") {
        return;
    }
    let a = Atoll::start();
    let work = tempfile::tempdir().unwrap();
    let reg = a.addr.to_string();
    let (amd, arm) = (Image::oci(1, 1000), Image::oci(2, 1000));
    let idx = index(OCI_INDEX, &[(&amd, "amd64"), (&arm, "arm64")]);
    let src = work.path().join("multi");
    let mut blobs: Vec<&[u8]> = amd
        .blobs()
        .into_iter()
        .chain(arm.blobs())
        .map(|b| b.as_slice())
        .collect();
    blobs.push(&amd.manifest);
    blobs.push(&arm.manifest);
    write(&src, &[("multi", OCI_INDEX, &idx)], &blobs);

    copy(
        &format!("oci:{}:multi", src.display()),
        &format!("docker://{reg}/e2e/multi:1"),
        &["--all"],
    );
    assert_eq!(
        inspect_raw(&format!("docker://{reg}/e2e/multi:1")),
        text(&idx)
    );
    for child in [&amd, &arm] {
        assert_eq!(
            text(
                &a.get(&format!("/v2/e2e/multi/manifests/{}", child.digest()))
                    .body
            ),
            text(&child.manifest)
        );
    }
    let back = work.path().join("back");
    copy(
        &format!("docker://{reg}/e2e/multi:1"),
        &format!("oci:{}:m", back.display()),
        &["--all"],
    );
    assert_eq!(ref_digest(&back, "m"), sha256(&idx));
    assert_eq!(blob_files(&back), blob_files(&src));
}
