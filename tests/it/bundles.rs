//! Bundles from the command line, against the real binary and a real data directory: OCI
//! layouts (directory, tar, gzipped tar) and docker archives (three shapes) imported and
//! served; every kind of bad bundle refused with the entry named and nothing left behind;
//! idempotent re-imports; export and re-import with the same digests; delta bundles; the spool
//! directory; import while the server runs.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::support::bundles::*;
use crate::support::content::*;
use crate::support::layout;
use crate::support::Atoll;

/// An OCI image with exactly these layers.
fn image_of(layers: Vec<Vec<u8>>) -> Image {
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": { "type": "layers", "diff_ids": layers.iter().map(|l| sha256(l)).collect::<Vec<_>>() },
        "nonce": sha256(&random_bytes(16)),
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": descriptor("application/vnd.oci.image.config.v1+json", &config),
        "layers": layers.iter().map(|l| descriptor("application/vnd.oci.image.layer.v1.tar", l)).collect::<Vec<_>>(),
    }))
    .unwrap();
    Image {
        config,
        layers,
        manifest,
        media_type: OCI_MANIFEST.into(),
    }
}

/// An OCI layout directory holding `img` under `name`.
fn layout_dir(dir: &Path, img: &Image, name: &str) -> PathBuf {
    layout::image_layout(dir, img, name);
    dir.to_path_buf()
}

fn hex(d: &str) -> &str {
    &d["sha256:".len()..]
}

fn write(path: &Path, bytes: &[u8]) -> String {
    fs::write(path, bytes).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn an_oci_layout_imports_from_a_directory_a_tar_and_a_gzipped_tar() {
    let work = tempfile::tempdir().unwrap();
    let img = Image::oci(2, 40_000);
    let dir = layout_dir(&work.path().join("layout"), &img, "edge/app:1");
    let tar = Tar::default().layout(&dir).bytes();
    let bundles = [
        dir.to_str().unwrap().to_owned(),
        write(&work.path().join("app.tar"), &tar),
        write(&work.path().join("app.tar.gz"), &gzip(&tar)),
    ];
    for (i, bundle) in bundles.iter().enumerate() {
        let data = work.path().join(format!("data{i}"));
        let out = atoll_ok(&data, &["--import", bundle]);
        assert!(out.starts_with(&format!("imported {bundle}")), "{out}");
        assert!(
            out.contains(&format!("edge/app:1  {}  new", img.digest())),
            "{out}"
        );
        let before = store_files(&data);
        let again = atoll_ok(&data, &["--import", bundle]);
        assert!(
            again.starts_with(&format!("{bundle}: nothing new")),
            "{again}"
        );
        assert!(again.contains("unchanged"), "{again}");
        assert_eq!(store_files(&data), before, "a second import writes nothing");
    }
    let a = Atoll::start_in(&work.path().join("data2"), &[]);
    let got = a.get("/v2/edge/app/manifests/1");
    got.expect(200, None);
    assert_eq!(got.body, img.manifest);
    for b in img.blobs() {
        assert_eq!(&a.get(&format!("/v2/edge/app/blobs/{}", sha256(b))).body, b);
    }
}

#[test]
fn docker_archives_of_every_shape_become_the_same_schema2_image() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let img = Image::oci(2, 30_000);
    let mut digests = Vec::new();
    for shape in [DockerShape::Legacy, DockerShape::Skopeo, DockerShape::Oci] {
        let bundle = docker_archive(&img, &["registry.lan:5000/edge/app:1"], shape);
        let path = write(&work.path().join(format!("{shape:?}.tar")), &bundle);
        let out = atoll_ok(&data, &["--import", &path]);
        assert!(out.contains("Docker archive"), "{out}");
        let line = out.lines().find(|l| l.contains("edge/app:1")).unwrap();
        digests.push(line.split_whitespace().nth(1).unwrap().to_owned());
    }
    assert_eq!(
        digests[0], digests[1],
        "skopeo's shape gives the same image"
    );
    assert_eq!(
        digests[0], digests[2],
        "docker 25's shape gives the same image"
    );

    let a = Atoll::start_in(&data, &[]);
    let res = a
        .req(http_types::Method::Get, "/v2/edge/app/manifests/1")
        .header("Accept", DOCKER_MANIFEST)
        .send();
    res.expect(200, None);
    assert_eq!(sha256(&res.body), digests[0]);
    let m: Value = serde_json::from_slice(&res.body).unwrap();
    assert_eq!(m["mediaType"], DOCKER_MANIFEST);
    assert_eq!(
        m["config"]["digest"],
        sha256(&img.config),
        "the image id is kept"
    );
    assert_eq!(
        m["config"]["mediaType"],
        "application/vnd.docker.container.image.v1+json"
    );
    for (l, original) in m["layers"].as_array().unwrap().iter().zip(&img.layers) {
        assert_eq!(
            l["mediaType"],
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        );
        let gz = a
            .get(&format!(
                "/v2/edge/app/blobs/{}",
                l["digest"].as_str().unwrap()
            ))
            .body;
        let mut plain = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut plain).unwrap();
        assert_eq!(&plain, original, "the layer is the original, gzipped");
    }
}

/// Every way a bundle can be bad, each refused with its entry named.
fn bad_bundles(work: &Path, img: &Image) -> Vec<(String, String)> {
    let good = layout_dir(&work.join("good"), img, "bad/one:1");
    let layer0 = format!("blobs/sha256/{}", hex(&sha256(&img.layers[0])));
    let layer1 = format!("blobs/sha256/{}", hex(&sha256(&img.layers[1])));
    let tar_of = |skip: &str| {
        let mut t = Tar::default();
        for f in crate::support::files_under(&good) {
            if f != skip {
                t = t.file(&f, &fs::read(good.join(&f)).unwrap());
            }
        }
        t
    };
    let full = tar_of("").bytes();
    let mut cases: Vec<(&str, Vec<u8>, String)> = vec![
        (
            "tampered.tar",
            tar_of(&layer0)
                .file(&layer0, &random_bytes(img.layers[0].len()))
                .bytes(),
            format!("{layer0}: digest mismatch: content is sha256:"),
        ),
        (
            "missing.tar",
            tar_of(&layer1).bytes(),
            format!(
                "1 blob(s) are neither in the bundle nor in this registry: {}",
                sha256(&img.layers[1])
            ),
        ),
        (
            "dotdot.tar",
            tar_of("").raw_file("../escape", b"x").bytes(),
            "../escape: a path with '..'".into(),
        ),
        (
            "absolute.tar",
            tar_of("").raw_file("/tmp/escape", b"x").bytes(),
            "/tmp/escape: an absolute path".into(),
        ),
        (
            "symlink-out.tar",
            tar_of(&layer0)
                .link(tar::EntryType::Symlink, &layer0, "../../../../etc/passwd")
                .bytes(),
            format!("{layer0}: a link to \"../../../../etc/passwd\", outside the bundle"),
        ),
        (
            "symlink-abs.tar",
            tar_of(&layer0)
                .link(tar::EntryType::Symlink, &layer0, "/etc/passwd")
                .bytes(),
            format!("{layer0}: a link to \"/etc/passwd\", outside the bundle"),
        ),
        (
            "hardlink-out.tar",
            tar_of("").link(tar::EntryType::Link, "x", "../y").bytes(),
            "x: a link to \"../y\", outside the bundle".into(),
        ),
        (
            "link-to-other.tar",
            tar_of(&layer0)
                .link(
                    tar::EntryType::Symlink,
                    &layer0,
                    hex(&sha256(&img.layers[1])),
                )
                .bytes(),
            format!("{layer0}: digest mismatch"),
        ),
        (
            "device.tar",
            tar_of("").special(tar::EntryType::Char, "dev/tty").bytes(),
            "dev/tty: a character device".into(),
        ),
        (
            "truncated.tar",
            full[..full.len() / 2].to_vec(),
            ": truncated: the bundle ends ".into(),
        ),
        (
            "truncated.tar.gz",
            {
                let gz = gzip(&full);
                gz[..gz.len() * 2 / 3].to_vec()
            },
            "truncated".into(),
        ),
        (
            "not-a-bundle.bin",
            random_bytes(4096),
            "not a tar archive".into(),
        ),
        (
            "no-index.tar",
            tar_of("index.json").bytes(),
            "neither index.json (an OCI image layout) nor manifest.json".into(),
        ),
    ];
    // A manifest whose descriptor lies about a layer's size.
    let mut m: Value = serde_json::from_slice(&img.manifest).unwrap();
    m["layers"][0]["size"] = json!(img.layers[0].len() + 1);
    let lying = serde_json::to_vec(&m).unwrap();
    let dir = work.join("lying");
    let blobs: Vec<&[u8]> = img.blobs().into_iter().map(|b| b.as_slice()).collect();
    layout::write(&dir, &[("bad/one:1", OCI_MANIFEST, &lying)], &blobs);
    cases.push((
        "size.tar",
        Tar::default().layout(&dir).bytes(),
        format!("{layer0}: size mismatch: the bundle has"),
    ));
    let mut out: Vec<(String, String)> = cases
        .into_iter()
        .map(|(name, bytes, want)| (write(&work.join(name), &bytes), want))
        .collect();
    // A directory bundle whose blob is a link to a file outside it.
    let dir = layout_dir(&work.join("linkdir"), img, "bad/one:1");
    fs::remove_file(dir.join(&layer0)).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", dir.join(&layer0)).unwrap();
    out.push((
        dir.to_str().unwrap().to_owned(),
        format!("{layer0}: a link to \"/etc/hostname\", outside the bundle"),
    ));
    out
}

#[test]
fn bad_bundles_are_refused_naming_the_entry_and_leave_nothing_behind() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let there = Image::oci(1, 1000);
    let first = layout_dir(&work.path().join("first"), &there, "good/one:1");
    atoll_ok(&data, &["--import", first.to_str().unwrap()]);
    let files = store_files(&data);
    let inventory = atoll_ok(&data, &["--inventory"]);

    let img = Image::oci(2, 20_000);
    for (bundle, want) in bad_bundles(work.path(), &img) {
        let err = atoll_fails(&data, &["--import", &bundle]);
        assert!(err.starts_with(&format!("atoll: {bundle}: ")), "{err}");
        assert!(err.contains(&want), "{bundle}: expected {want:?} in\n{err}");
        assert_eq!(store_files(&data), files, "{bundle} left files behind");
        assert_eq!(atoll_ok(&data, &["--inventory"]), inventory, "{bundle}");
    }
    let a = Atoll::start_in(&data, &[]);
    assert_eq!(
        a.get("/v2/_catalog").json()["repositories"],
        json!(["good/one"])
    );
}

#[test]
fn names_come_from_the_bundle_or_from_import_name() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let img = Image::oci(1, 1000);
    let dir = layout_dir(&work.path().join("l"), &img, "7.1");
    let path = dir.to_str().unwrap();
    let err = atoll_fails(&data, &["--import", path]);
    assert!(
        err.contains("named only by the tag \"7.1\": give --import-name NAME"),
        "{err}"
    );
    let out = atoll_ok(&data, &["--import", path, "--import-name", "edge/tool"]);
    assert!(out.contains("edge/tool:7.1"), "{out}");
    let out = atoll_ok(
        &data,
        &["--import", path, "--import-name", "edge/tool:stable"],
    );
    assert!(out.contains("edge/tool:stable"), "{out}");
    let out = atoll(&data, &["--import"]);
    assert_eq!(out.status.code(), Some(2), "a usage error is exit code 2");
}

#[test]
fn a_ref_name_pinning_another_digest_is_imported_with_a_warning() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let img = Image::oci(1, 1000);
    let other = sha256(b"some other manifest");
    let dir = layout_dir(&work.path().join("l"), &img, &format!("edge/pin@{other}"));
    let out = atoll_ok(&data, &["--import", dir.to_str().unwrap()]);
    let warning = format!(
        "warning: index.json: manifests[0]: org.opencontainers.image.ref.name \
         \"edge/pin@{other}\" pins {other}, not the manifest it annotates, {}: imported by the \
         manifest's own digest",
        img.digest()
    );
    assert!(out.contains(&warning), "{out}");
    assert!(out.contains(&format!("edge/pin@{}", img.digest())), "{out}");
    let a = Atoll::start_in(&data, &[]);
    let pulled = a.get(&format!("/v2/edge/pin/manifests/{}", img.digest()));
    assert_eq!(pulled.body, img.manifest);
}

#[test]
fn export_then_import_keeps_every_digest() {
    let work = tempfile::tempdir().unwrap();
    let (src, dst) = (work.path().join("src"), work.path().join("dst"));
    // An index with two platforms, and a Docker image from a docker archive.
    let (amd, arm) = (Image::oci(1, 5000), Image::oci(2, 5000));
    let arch = layout::host_arch();
    let idx = index(OCI_INDEX, &[(&amd, arch), (&arm, "s390x")]);
    let mut blobs: Vec<&[u8]> = amd
        .blobs()
        .into_iter()
        .chain(arm.blobs())
        .map(|b| b.as_slice())
        .collect();
    blobs.push(&amd.manifest);
    blobs.push(&arm.manifest);
    let multi = work.path().join("multi");
    layout::write(&multi, &[("edge/multi:1", OCI_INDEX, &idx)], &blobs);
    atoll_ok(&src, &["--import", multi.to_str().unwrap()]);
    let docker_img = Image::oci(1, 3000);
    let archive = write(
        &work.path().join("d.tar"),
        &docker_archive(&docker_img, &["edge/dock:2"], DockerShape::Legacy),
    );
    let out = atoll_ok(&src, &["--import", &archive]);
    let dock_digest = out
        .lines()
        .last()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_owned();

    let bundle = work.path().join("out.tar");
    let out = atoll(
        &src,
        &[
            "--export",
            "edge/multi",
            "edge/dock:2",
            "--output",
            bundle.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("exported 2 image(s) under 2 name(s)"),
        "{said}"
    );
    let streamed = atoll(
        &src,
        &["--export", "edge/multi", "edge/dock:2", "--output", "-"],
    );
    assert_eq!(
        streamed.stdout,
        fs::read(&bundle).unwrap(),
        "--output - streams the same bytes"
    );

    let out = atoll_ok(&dst, &["--import", bundle.to_str().unwrap()]);
    assert!(
        out.contains(&format!("edge/multi:1  {}  new", sha256(&idx))),
        "{out}"
    );
    assert!(
        out.contains(&format!("edge/dock:2  {dock_digest}  new")),
        "{out}"
    );
    assert_eq!(
        atoll_ok(&dst, &["--inventory"]).lines().count() + 1,
        atoll_ok(&src, &["--inventory"]).lines().count() + 1
    );

    // A Docker archive: the host's platform of the index, and the Docker image.
    let docker = work.path().join("docker.tar");
    atoll_ok(
        &src,
        &[
            "--export",
            "edge/multi:1",
            "edge/dock",
            "--format",
            "docker",
            "--output",
            docker.to_str().unwrap(),
        ],
    );
    let mut ar = tar::Archive::new(fs::File::open(&docker).unwrap());
    let manifest: Value = ar
        .entries()
        .unwrap()
        .map(|e| e.unwrap())
        .find(|e| e.path().unwrap().to_str() == Some("manifest.json"))
        .map(|e| serde_json::from_reader(e).unwrap())
        .unwrap();
    assert_eq!(manifest[0]["RepoTags"], json!(["edge/multi:1"]));
    assert_eq!(
        manifest[0]["Config"],
        format!("blobs/sha256/{}", hex(&sha256(&amd.config)))
    );
    assert_eq!(manifest[1]["RepoTags"], json!(["edge/dock:2"]));
    assert_eq!(
        manifest[1]["Config"],
        format!("blobs/sha256/{}", hex(&sha256(&docker_img.config)))
    );
}

#[test]
fn a_delta_bundle_carries_only_what_the_target_lacks() {
    let work = tempfile::tempdir().unwrap();
    let (src, site, fresh) = (
        work.path().join("src"),
        work.path().join("site"),
        work.path().join("fresh"),
    );
    let base = random_bytes(200_000);
    let v1 = image_of(vec![base.clone(), random_bytes(1000)]);
    let v2 = image_of(vec![base.clone(), random_bytes(2000)]);
    let l1 = layout_dir(&work.path().join("v1"), &v1, "edge/app:1");
    let l2 = layout_dir(&work.path().join("v2"), &v2, "edge/app:2");
    for l in [&l1, &l2] {
        atoll_ok(&src, &["--import", l.to_str().unwrap()]);
    }
    atoll_ok(&site, &["--import", l1.to_str().unwrap()]);
    let inv = work.path().join("site.inventory");
    atoll_ok(&site, &["--inventory", "--output", inv.to_str().unwrap()]);

    let delta = work.path().join("delta.tar");
    let out = atoll(
        &src,
        &[
            "--export",
            "edge/app:2",
            "--exclude-from",
            inv.to_str().unwrap(),
            "--output",
            delta.to_str().unwrap(),
        ],
    );
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("left out 1 blob(s) (195.3 KiB) the target already has"),
        "{said}"
    );
    let names: Vec<String> = tar::Archive::new(fs::File::open(&delta).unwrap())
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(!names.contains(&format!("blobs/sha256/{}", hex(&sha256(&base)))));
    assert!(names.contains(&format!("blobs/sha256/{}", hex(&sha256(&v2.layers[1])))));

    let out = atoll_ok(&site, &["--import", delta.to_str().unwrap()]);
    assert!(
        out.contains(&format!("edge/app:2  {}  new", v2.digest())),
        "{out}"
    );
    let err = atoll_fails(&fresh, &["--import", delta.to_str().unwrap()]);
    assert!(
        err.contains(&format!(
            "1 blob(s) are neither in the bundle nor in this registry: {}",
            sha256(&base)
        )),
        "{err}"
    );
    let a = Atoll::start_in(&site, &[]);
    assert_eq!(
        a.get(&format!("/v2/edge/app/blobs/{}", sha256(&base))).body,
        base
    );
    assert_eq!(a.get("/v2/edge/app/manifests/2").body, v2.manifest);
}

#[test]
fn the_spool_imports_what_arrives_and_parks_what_fails() {
    let work = tempfile::tempdir().unwrap();
    let (data, spool) = (work.path().join("data"), work.path().join("spool"));
    let incoming = spool.join("incoming");
    fs::create_dir_all(&incoming).unwrap();
    let good = Image::oci(1, 3000);
    let dir = layout_dir(&work.path().join("good"), &good, "spool/good:1");
    write(
        &incoming.join("good.tar"),
        &Tar::default().layout(&dir).bytes(),
    );
    layout_dir(
        &incoming.join("layout"),
        &Image::oci(1, 2000),
        "spool/dir:1",
    );
    let bad = Image::oci(1, 3000);
    let bad_dir = layout_dir(&work.path().join("bad"), &bad, "spool/bad:1");
    let layer = format!("blobs/sha256/{}", hex(&sha256(&bad.layers[0])));
    fs::write(bad_dir.join(&layer), b"not the layer").unwrap();
    write(
        &incoming.join("bad.tar"),
        &Tar::default().layout(&bad_dir).bytes(),
    );

    let spool_arg = spool.to_str().unwrap();
    let out = atoll(&data, &["--import-spool", spool_arg, "--spool-settle", "0"]);
    assert_eq!(out.status.code(), Some(1), "one bundle failed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("spool/good:1") && stdout.contains("spool/dir:1"),
        "{stdout}"
    );
    let mut done: Vec<String> = fs::read_dir(spool.join("done"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    done.sort();
    assert_eq!(done, vec!["good.tar", "layout"]);
    assert!(spool.join("failed/bad.tar").is_file());
    let why = fs::read_to_string(spool.join("failed/bad.tar.error")).unwrap();
    assert!(why.contains(&format!("{layer}: digest mismatch")), "{why}");
    assert_eq!(fs::read_dir(&incoming).unwrap().count(), 0);
    atoll_ok(&data, &["--import-spool", spool_arg, "--spool-settle", "0"]);
}

#[test]
fn an_import_while_the_server_runs_is_served_at_once() {
    let work = tempfile::tempdir().unwrap();
    let a = Atoll::start();
    let img = Image::oci(2, 10_000);
    let dir = layout_dir(&work.path().join("l"), &img, "live/app:1");
    a.get("/v2/live/app/manifests/1")
        .expect(404, Some("NAME_UNKNOWN"));
    atoll_ok(&a.dir, &["--import", dir.to_str().unwrap()]);
    assert_eq!(a.get("/v2/live/app/manifests/1").body, img.manifest);
    let out = atoll(&a.dir, &["--export", "live/app", "--output", "-"]);
    assert!(out.status.success());
    assert!(!out.stdout.is_empty());
}

/// `atoll --copy-from` on a box's data directory (SQLite and the disk, always: the box is what
/// is copied) into the registry the suite runs on (in the PostgreSQL pass, a cluster's index):
/// every tag arrives naming the same digest with every blob, while the box keeps serving; a
/// second run sends only what is missing; a damaged blob on the box stops the copy of its
/// repository, naming it, and registers nothing of it.
#[test]
fn a_box_is_copied_into_another_registry_verified_and_resumable() {
    let work = tempfile::tempdir().unwrap();
    let (src, dst) = (work.path().join("box"), work.path().join("cluster"));
    let on_box = |args: &[&str]| -> String {
        let out = atoll_command(&src, args)
            .env("ATOLL_INDEX", "")
            .env("ATOLL_BLOB_STORE", "")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        String::from_utf8(out.stdout).unwrap()
    };
    let base = random_bytes(300_000);
    let (app1, app2) = (
        image_of(vec![base.clone(), random_bytes(1000)]),
        image_of(vec![base.clone(), random_bytes(2000)]),
    );
    let tool = image_of(vec![random_bytes(5000)]);
    for (img, name, at) in [
        (&app1, "edge/app:1", "a1"),
        (&app2, "edge/app:2", "a2"),
        (&tool, "edge/tool:latest", "t"),
    ] {
        on_box(&[
            "--import",
            layout_dir(&work.path().join(at), img, name)
                .to_str()
                .unwrap(),
        ]);
    }
    // The box serves on while it is copied.
    let serving =
        Atoll::try_start_in(&src, &[], &[("ATOLL_INDEX", ""), ("ATOLL_BLOB_STORE", "")]).unwrap();
    let copy = ["--copy-from", src.to_str().unwrap()];
    let first = atoll_ok(&dst, &copy);
    assert!(first.contains("copied 2 repositories (3 tags"), "{first}");
    let box_inventory = on_box(&["--inventory"]);
    assert_eq!(atoll_ok(&dst, &["--inventory"]), box_inventory);
    assert_eq!(serving.get("/v2/edge/app/manifests/1").status, 200);
    drop(serving);

    let again = atoll_ok(&dst, &copy);
    // The summary, the last line: "copied ... here): N blobs, ... sent".
    let sent = |out: &str| -> usize {
        let summary = out.lines().last().unwrap();
        let blobs = summary.rsplit("): ").next().unwrap();
        blobs.split(' ').next().unwrap().parse().unwrap()
    };
    assert!(
        sent(&again) < sent(&first),
        "a second run sends only manifests: {first} / {again}"
    );

    let cluster = Atoll::start_in(&dst, &[]);
    for (img, repo, tag) in [
        (&app1, "edge/app", "1"),
        (&app2, "edge/app", "2"),
        (&tool, "edge/tool", "latest"),
    ] {
        let m = cluster.get(&format!("/v2/{repo}/manifests/{tag}"));
        assert_eq!(m.status, 200, "{repo}:{tag}");
        assert_eq!(m.body, img.manifest, "{repo}:{tag}");
        for blob in img.blobs() {
            let got = cluster.get(&format!("/v2/{repo}/blobs/{}", sha256(blob)));
            assert_eq!(sha256(&got.body), sha256(blob), "{repo}:{tag}");
        }
    }
    drop(cluster);

    // A blob damaged on the box: that repository is refused whole, named.
    let broken = image_of(vec![random_bytes(4000)]);
    on_box(&[
        "--import",
        layout_dir(&work.path().join("b"), &broken, "edge/broken:1")
            .to_str()
            .unwrap(),
    ]);
    let layer = sha256(&broken.layers[0]);
    let hex = &layer["sha256:".len()..];
    let path = src.join("blobs/sha256").join(&hex[..2]).join(hex);
    let mut bytes = fs::read(&path).unwrap();
    bytes[0] ^= 0xff;
    fs::write(&path, bytes).unwrap();
    let err = atoll_fails(&dst, &copy);
    assert!(
        err.contains("copying edge/broken") && err.contains("run again"),
        "{err}"
    );
    assert!(
        !atoll_ok(&dst, &["--inventory"]).contains(hex),
        "nothing of it registered"
    );
    let cluster = Atoll::start_in(&dst, &[]);
    assert_eq!(cluster.get("/v2/edge/broken/manifests/1").status, 404);
}
