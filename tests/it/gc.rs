//! Garbage collection: what goes and what stays, `--dry-run` changing nothing, multi-arch and
//! referrers, faults (a missing file, a kill mid-sweep), and pushes racing a collection loop.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use http_types::Method;
use serde_json::json;

use crate::support::content::*;
use crate::support::{index, snapshot, stored, Atoll};

/// `atoll --gc` on `dir`; returns (success, stdout).
fn gc(dir: &Path, args: &[&str]) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_atoll"));
    cmd.args(["--gc", "--data-dir", dir.to_str().unwrap()])
        .args(args);
    crate::support::engines(&mut cmd, dir);
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (
        out.status.success(),
        stdout + &String::from_utf8_lossy(&out.stderr),
    )
}

/// Every index row names a file of the right size, every file has a row, no row names a missing
/// one, no file is left doomed; on SQLite, its file is sound.
pub fn assert_index_agrees_with_disk(dir: &Path) {
    if !index::on_postgres() {
        // SQLite's check of its own file. PostgreSQL's pages are its server's business.
        assert_eq!(index::query(dir, "PRAGMA integrity_check"), "ok");
    }
    let rows: Vec<(String, i64)> = index::query(dir, "SELECT digest, size FROM blobs")
        .lines()
        .map(|l| {
            let (d, size) = l.split_once('|').unwrap();
            (d.to_owned(), size.parse().unwrap())
        })
        .collect();
    for (d, size) in &rows {
        let bytes = stored::read(dir, d).unwrap_or_else(|| panic!("row {d} has no file"));
        assert_eq!(bytes.len() as i64, *size, "{d}");
    }
    let known: std::collections::HashSet<&str> =
        rows.iter().map(|(d, _)| &d["sha256:".len()..]).collect();
    for f in crate::support::files_under(dir)
        .into_iter()
        .filter(|f| f.starts_with("blobs/"))
    {
        let hex = f.rsplit('/').next().unwrap();
        assert!(known.contains(hex), "file {f} has no row");
    }
    assert_eq!(index::query(dir, DANGLING), "0", "rows naming missing rows");
    let doomed = index::query(dir, "SELECT count(*) FROM doomed_batches");
    assert_eq!(doomed, "0", "files left doomed");
    index::assert_holdings_counted(dir);
}

/// Rows naming a row that is not there: each foreign key of src/index/migrations asked as a
/// query, so it is checked the same way whether or not the engine enforces it.
const DANGLING: &str = "SELECT
    (SELECT count(*) FROM repo_blobs x
        WHERE NOT EXISTS (SELECT 1 FROM repos r WHERE r.id = x.repo_id)
        OR NOT EXISTS (SELECT 1 FROM blobs b WHERE b.digest = x.digest))
    + (SELECT count(*) FROM manifests x
        WHERE NOT EXISTS (SELECT 1 FROM repos r WHERE r.id = x.repo_id)
        OR NOT EXISTS (SELECT 1 FROM blobs b WHERE b.digest = x.digest))
    + (SELECT count(*) FROM tags x WHERE NOT EXISTS
        (SELECT 1 FROM manifests m WHERE m.repo_id = x.repo_id AND m.digest = x.digest))
    + (SELECT count(*) FROM manifest_refs x WHERE NOT EXISTS
        (SELECT 1 FROM manifests m WHERE m.repo_id = x.repo_id AND m.digest = x.manifest))
    + (SELECT count(*) FROM uploads x
        WHERE NOT EXISTS (SELECT 1 FROM repos r WHERE r.id = x.repo_id))";

/// What a collection's first transaction commits for a blob (row and links gone, file doomed),
/// done by hand beside a running server: the state between the two steps of a sweep.
fn doom(dir: &Path, digest: &str) {
    index::query(
        dir,
        &format!(
            "DELETE FROM repo_blobs WHERE digest = '{digest}';
             DELETE FROM blobs WHERE digest = '{digest}';
             INSERT INTO doomed_batches (digests) VALUES ('[\"{digest}\"]');"
        ),
    );
}

/// Pulls an image back and checks every byte.
#[track_caller]
fn assert_pulls(a: &Atoll, repo: &str, tag: &str, img: &Image) {
    let m = a.get(&format!("/v2/{repo}/manifests/{tag}"));
    m.expect(200, None);
    assert_eq!(m.body, img.manifest);
    for b in img.blobs() {
        let r = a.get(&format!("/v2/{repo}/blobs/{}", sha256(b)));
        assert_eq!(r.status, 200, "{repo}:{tag} blob {}", sha256(b));
        assert_eq!(&r.body, b);
    }
}

#[test]
fn collects_what_nothing_needs_and_keeps_every_tagged_image() {
    let a = Atoll::start();
    let (keep, untag, doomed) = (
        Image::oci(2, 1000),
        Image::oci(1, 1000),
        Image::oci(1, 1000),
    );
    keep.push(&a, "app", "v1").expect(201, None);
    untag.push(&a, "app", "old").expect(201, None);
    doomed.push(&a, "app", "gone").expect(201, None);
    // A layer shared with the kept image, and a dangling upload with no manifest.
    let shared_user = Image::oci(0, 0).with_layers(vec![keep.layers[0].clone()]);
    shared_user.push(&a, "other", "x").expect(201, None);
    let dangling = push_blob(&a, "app", &random_bytes(5000));
    a.delete("/v2/app/manifests/old").expect(202, None);
    a.delete(&format!("/v2/app/manifests/{}", doomed.digest()))
        .expect(202, None);
    a.delete("/v2/other/manifests/x").expect(202, None);

    // While the server runs.
    let (ok, out) = gc(&a.dir, &["--gc-grace", "0"]);
    assert!(ok, "{out}");
    assert!(out.contains(&format!("delete blob {dangling}")), "{out}");
    assert!(
        out.contains(&format!("delete blob {}", doomed.digest())),
        "the manifest's own bytes: {out}"
    );
    let summary = out.lines().last().unwrap();
    assert!(
        summary.starts_with("gc: kept 3 manifests") && summary.contains("deleted 0 manifests"),
        "{summary}"
    );
    assert!(!stored::exists(&a.dir, &dangling));
    for b in doomed.blobs() {
        assert!(
            !stored::exists(&a.dir, &sha256(b)),
            "the deleted image's blobs go"
        );
    }
    assert_pulls(&a, "app", "v1", &keep);
    // The untagged manifest stays without --delete-untagged, and so do its blobs.
    a.get(&format!("/v2/app/manifests/{}", untag.digest()))
        .expect(200, None);
    assert!(stored::exists(&a.dir, &sha256(&untag.layers[0])));
    assert_index_agrees_with_disk(&a.dir);

    let (ok, out) = gc(&a.dir, &["--gc-grace", "0", "--delete-untagged"]);
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!("delete manifest app@{}", untag.digest())),
        "{out}"
    );
    a.get(&format!("/v2/app/manifests/{}", untag.digest()))
        .expect(404, None);
    assert!(!stored::exists(&a.dir, &sha256(&untag.layers[0])));
    assert_pulls(&a, "app", "v1", &keep);
    assert_index_agrees_with_disk(&a.dir);
}

/// Times are whole seconds, and `--gc-grace 0s` used to protect what changed in the current
/// second: an image deleted a moment before stayed until the clock ticked over.
#[test]
fn a_zero_grace_collects_what_was_deleted_a_moment_ago() {
    let a = Atoll::start();
    let img = Image::oci(1, 1000);
    // Early in a second, so that the push, the delete and the collection share it.
    let into_second = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_millis();
    std::thread::sleep(Duration::from_millis(u64::from(1000 - into_second) + 20));
    img.push(&a, "app", "v1").expect(201, None);
    a.delete(&format!("/v2/app/manifests/{}", img.digest()))
        .expect(202, None);
    let (ok, out) = gc(&a.dir, &["--gc-grace", "0s"]);
    assert!(ok, "{out}");
    for b in img.blobs() {
        assert!(!stored::exists(&a.dir, &sha256(b)), "{out}");
    }
    assert_index_agrees_with_disk(&a.dir);
}

#[test]
fn the_grace_window_protects_recent_content() {
    let a = Atoll::start();
    let dangling = push_blob(&a, "r", &random_bytes(100));
    let (ok, out) = gc(&a.dir, &[]);
    assert!(ok, "{out}");
    assert!(
        stored::exists(&a.dir, &dangling),
        "pushed seconds ago: inside the default 1h grace"
    );
    assert!(
        out.lines()
            .last()
            .unwrap()
            .contains("deleted 0 manifests, 0 blobs"),
        "{out}"
    );
}

#[test]
fn dry_run_reports_and_changes_nothing_at_all() {
    let mut a = Atoll::start();
    let img = Image::oci(2, 2000);
    img.push(&a, "dry", "v1").expect(201, None);
    Image::oci(1, 100)
        .push(&a, "dry", "untagged")
        .expect(201, None);
    a.delete("/v2/dry/manifests/untagged").expect(202, None);
    push_blob(&a, "dry", &random_bytes(777));
    let loc = a
        .req(Method::Post, "/v2/dry/blobs/uploads/")
        .send()
        .location();
    a.req(Method::Patch, &loc)
        .body(random_bytes(10))
        .send()
        .expect(202, None);
    assert!(a.terminate().success());
    std::thread::sleep(Duration::from_millis(1100));
    let before = snapshot(&a.dir);
    let (ok, out) = gc(
        &a.dir,
        &[
            "--dry-run",
            "--gc-grace",
            "0",
            "--delete-untagged",
            "--upload-ttl",
            "0",
        ],
    );
    assert!(ok, "{out}");
    assert!(out.contains("would delete manifest dry@"), "{out}");
    assert!(out.contains("would delete blob "), "{out}");
    let summary = out.lines().last().unwrap();
    assert!(
        summary.contains("would delete 1 manifests")
            && summary.contains("1 stale uploads")
            && summary.ends_with("(dry run: nothing changed)"),
        "{summary}"
    );
    let after = snapshot(&a.dir);
    let names = |s: &[(String, Vec<u8>)]| s.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(
        names(&before),
        names(&after),
        "no file appeared or vanished"
    );
    for ((name, b), (_, a)) in before.iter().zip(&after) {
        assert!(b == a, "{name} changed");
    }
}

#[test]
fn multi_arch_children_and_referrers_of_kept_images_stay() {
    let a = Atoll::start();
    let (amd, arm) = (Image::oci(1, 500), Image::oci(1, 500));
    amd.push(&a, "multi", &amd.digest()).expect(201, None);
    arm.push(&a, "multi", &arm.digest()).expect(201, None);
    let idx = index(OCI_INDEX, &[(&amd, "amd64"), (&arm, "arm64")]);
    put_manifest(&a, "multi", "latest", OCI_INDEX, &idx).expect(201, None);
    // An SBOM of the index (kept), and a signature of an image that is then deleted.
    push_blob(&a, "multi", b"{}");
    let sbom_layer = random_bytes(64);
    push_blob(&a, "multi", &sbom_layer);
    let index_img = Image {
        manifest: idx.clone(),
        media_type: OCI_INDEX.into(),
        config: vec![],
        layers: vec![],
    };
    let sbom = artifact(
        &index_img,
        "application/vnd.example.sbom",
        &sbom_layer,
        json!({"k": "v"}),
    );
    put_manifest(&a, "multi", &sha256(&sbom), OCI_MANIFEST, &sbom).expect(201, None);
    let victim = Image::oci(1, 100);
    victim.push(&a, "multi", "victim").expect(201, None);
    let sig_layer = random_bytes(64);
    push_blob(&a, "multi", &sig_layer);
    let sig = artifact(
        &victim,
        "application/vnd.example.sig",
        &sig_layer,
        json!({}),
    );
    put_manifest(&a, "multi", &sha256(&sig), OCI_MANIFEST, &sig).expect(201, None);
    a.delete(&format!("/v2/multi/manifests/{}", victim.digest()))
        .expect(202, None);
    std::thread::sleep(Duration::from_millis(1100));

    // Even without --delete-untagged, a referrer whose subject is gone is collected.
    let (ok, out) = gc(&a.dir, &["--gc-grace", "0"]);
    assert!(ok, "{out}");
    a.get(&format!("/v2/multi/manifests/{}", sha256(&sig)))
        .expect(404, None);
    assert!(!stored::exists(&a.dir, &sha256(&sig_layer)));
    // --delete-untagged keeps the index's untagged children and its SBOM.
    let (ok, out) = gc(&a.dir, &["--gc-grace", "0", "--delete-untagged"]);
    assert!(ok, "{out}");
    assert!(
        !out.contains(&format!("manifest multi@{}", amd.digest())),
        "{out}"
    );
    for child in [&amd, &arm] {
        assert_pulls(&a, "multi", &child.digest(), child);
    }
    assert_eq!(a.get("/v2/multi/manifests/latest").body, idx);
    let refs = a
        .get(&format!("/v2/multi/referrers/{}", sha256(&idx)))
        .json();
    assert_eq!(refs["manifests"].as_array().unwrap().len(), 1, "{refs}");
    assert!(stored::exists(&a.dir, &sha256(&sbom_layer)));
    assert_index_agrees_with_disk(&a.dir);
}

#[test]
fn a_missing_blob_file_is_reported_and_the_collection_goes_on() {
    let a = Atoll::start();
    let keep = Image::oci(1, 100);
    keep.push(&a, "m", "v1").expect(201, None);
    let lost = push_blob(&a, "m", &random_bytes(300));
    let dangling = push_blob(&a, "m", &random_bytes(300));
    stored::remove(&a.dir, &lost);
    std::thread::sleep(Duration::from_millis(1100));
    let (ok, out) = gc(&a.dir, &["--gc-grace", "0"]);
    assert!(ok, "{out}");
    assert!(out.contains(&format!("blob {lost} had no file")), "{out}");
    assert!(
        out.lines()
            .last()
            .unwrap()
            .contains("1 index rows had lost their file"),
        "{out}"
    );
    assert!(!stored::exists(&a.dir, &dangling));
    assert_pulls(&a, "m", "v1", &keep);
    assert_index_agrees_with_disk(&a.dir);
}

/// Files no index row names (left by a crash between a blob's rename and its commit) go once
/// they are older than the grace window, sha256 and sha512 alike; blobs with rows stay.
#[test]
fn files_no_row_names_go_once_older_than_the_grace_window() {
    let a = Atoll::start();
    let keep = Image::oci(1, 100);
    keep.push(&a, "m", "v1").expect(201, None);
    let bytes = random_bytes(300);
    let strays = [sha256(&bytes), sha512(&bytes)];
    for d in &strays {
        stored::write(&a.dir, d, &bytes);
    }
    let (ok, out) = gc(&a.dir, &["--gc-grace", "1h"]);
    assert!(ok, "{out}");
    assert!(strays.iter().all(|d| stored::exists(&a.dir, d)), "{out}");
    std::thread::sleep(Duration::from_millis(1100));
    let (ok, out) = gc(&a.dir, &["--gc-grace", "0"]);
    assert!(ok, "{out}");
    for d in &strays {
        assert!(out.contains(&format!("delete file of {d}")), "{out}");
        assert!(!stored::exists(&a.dir, d), "{d}");
    }
    assert!(out.lines().last().unwrap().contains("2 files"), "{out}");
    assert_pulls(&a, "m", "v1", &keep);
    assert_index_agrees_with_disk(&a.dir);
}

#[test]
fn a_second_collection_waits_its_turn_and_a_bad_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, out) = gc(&dir.path().join("nothing-here"), &[]);
    assert!(!ok);
    assert!(out.contains("not an atoll data directory"), "{out}");
    assert!(
        !dir.path().join("nothing-here").exists(),
        "nothing was created"
    );
    let a = Atoll::start();
    // On one box the lock is the data directory's gc.lock; with the index in PostgreSQL it is an
    // advisory lock of the database, held by a running collection in
    // cluster::contention::a_second_collection_on_the_cluster_refuses_while_one_runs.
    if !index::on_postgres() {
        let lock = std::fs::File::create(a.dir.join("gc.lock")).unwrap();
        lock.lock().unwrap();
        let (ok, out) = gc(&a.dir, &[]);
        assert!(!ok);
        assert!(
            out.contains("another garbage collection is running"),
            "{out}"
        );
        drop(lock);
    }
    assert!(gc(&a.dir, &[]).0);
}

#[test]
fn the_server_collects_on_its_schedule_and_purges_stale_uploads() {
    let a = Atoll::start_with(&[
        "--gc-interval",
        "1s",
        "--gc-grace",
        "1s",
        "--upload-ttl",
        "1s",
    ]);
    let dangling = push_blob(&a, "sched", &random_bytes(100));
    let loc = a
        .req(Method::Post, "/v2/sched/blobs/uploads/")
        .send()
        .location();
    let deadline = Instant::now() + Duration::from_secs(15);
    while stored::exists(&a.dir, &dangling) || a.get(&loc).status != 404 {
        assert!(Instant::now() < deadline, "not collected:\n{}", a.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(a.log().contains("gc: kept "), "{}", a.log());
}

/// kill -9 in the middle of a sweep: after a restart, the index and the disk agree and every
/// kept image pulls.
#[test]
fn a_kill_in_the_middle_of_a_sweep_loses_nothing_kept() {
    let a = Atoll::start();
    let keep = Image::oci(2, 1000);
    keep.push(&a, "k", "v1").expect(201, None);
    for _ in 0..1500 {
        a.req(
            Method::Post,
            &format!("/v2/k/blobs/uploads/?digest={}", sha256(&[])),
        )
        .body(Vec::new())
        .send();
        push_blob(&a, "k", &random_bytes(64));
    }
    let dir = a.dir.clone();
    let a = a.restart(&[]);
    std::thread::sleep(Duration::from_millis(1100));
    for delay_ms in [30, 80, 150] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_atoll"));
        cmd.args([
            "--gc",
            "--gc-grace",
            "0",
            "--data-dir",
            dir.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::null());
        crate::support::engines(&mut cmd, &dir);
        let mut child = cmd.spawn().unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
    }
    let a = a.restart(&[]);
    assert_pulls(&a, "k", "v1", &keep);
    let (ok, out) = gc(&dir, &["--gc-grace", "0"]);
    assert!(ok, "{out}");
    assert_pulls(&a, "k", "v1", &keep);
    assert_index_agrees_with_disk(&dir);
}

/// A blob pushed again between the transaction that deleted its row and the one that unlinks
/// its file keeps its file: the row it has again says the file is that blob's.
#[test]
fn a_blob_pushed_again_while_its_file_is_doomed_keeps_its_file() {
    let a = Atoll::start();
    let (again, gone) = (random_bytes(3000), random_bytes(3000));
    let (again_d, gone_d) = (push_blob(&a, "r", &again), push_blob(&a, "r", &gone));
    doom(&a.dir, &again_d);
    doom(&a.dir, &gone_d);
    a.head(&format!("/v2/r/blobs/{again_d}")).expect(404, None);
    assert_eq!(push_blob(&a, "r", &again), again_d);
    let (ok, out) = gc(&a.dir, &["--gc-grace", "1h"]);
    assert!(ok, "{out}");
    assert!(!stored::exists(&a.dir, &gone_d), "the doomed file goes");
    let r = a.get(&format!("/v2/r/blobs/{again_d}"));
    assert_eq!(
        (r.status, &r.body),
        (200, &again),
        "the pushed-again blob stays whole"
    );
    assert_index_agrees_with_disk(&a.dir);
}

/// A collection killed between its two steps leaves doomed files: the next start unlinks them.
#[test]
fn files_an_interrupted_collection_doomed_go_at_the_next_start() {
    let a = Atoll::start();
    let digest = push_blob(&a, "r", &random_bytes(3000));
    doom(&a.dir, &digest);
    assert!(stored::exists(&a.dir, &digest));
    let a = a.restart(&[]);
    assert!(!stored::exists(&a.dir, &digest));
    assert!(
        a.log()
            .contains("removed 1 blob files an interrupted garbage collection had left"),
        "{}",
        a.log()
    );
    assert_index_agrees_with_disk(&a.dir);
}

/// Pushes, pulls, re-pushes of old blobs and deletes, from several clients, while a collection
/// runs in a loop with a short grace window; then every image that was acknowledged and not
/// deleted must pull back byte for byte.
#[test]
fn pushes_and_pulls_racing_a_collection_loop_lose_nothing() {
    let a = Atoll::start_with(&["--gc-interval", "1s", "--gc-grace", "2s"]);
    let stop_at = Instant::now() + Duration::from_secs(12);
    let shared = Image::oci(3, 20_000);
    shared.push(&a, "soak/base", "v1").expect(201, None);
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let addr = a.addr;
            let shared = shared.clone();
            std::thread::spawn(move || {
                let a = crate::support::Client(addr);
                let mut kept = Vec::new();
                let mut n = 0;
                while Instant::now() < stop_at {
                    n += 1;
                    // A new image that reuses one of the shared layers: the client skips
                    // uploading what the registry already has, as docker does.
                    let mut img = Image::oci(1, 5_000);
                    img =
                        img.with_layers(vec![img.layers[0].clone(), shared.layers[n % 3].clone()]);
                    let repo = format!("soak/c{c}");
                    let tag = format!("t{n}");
                    assert_eq!(a.push_skipping_existing(&repo, &tag, &img), 201);
                    if n % 3 == 0 {
                        assert_eq!(a.delete(&format!("/v2/{repo}/manifests/{tag}")), 202);
                    } else {
                        kept.push((repo, tag, img));
                    }
                }
                kept
            })
        })
        .collect();
    let kept: Vec<_> = clients
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert!(kept.len() > 20, "only {} images pushed", kept.len());
    assert!(
        a.log().contains("gc: kept "),
        "the collection ran:\n{}",
        a.log()
    );
    for (repo, tag, img) in &kept {
        assert_pulls(&a, repo, tag, img);
    }
    assert_pulls(&a, "soak/base", "v1", &shared);
}

/// A data directory from an atoll that parked blobs in `trash/` while collecting, left by a
/// collection interrupted before a row went: the next start puts that blob back, deletes the
/// rest, and removes the directory.
#[test]
fn a_blob_an_older_collection_left_in_trash_is_put_back_at_start() {
    let a = Atoll::start();
    let (kept, gone) = (random_bytes(3000), random_bytes(3000));
    let kept_d = push_blob(&a, "r", &kept);
    let trash = a.dir.join("trash");
    std::fs::create_dir(&trash).unwrap();
    let parked = trash.join(kept_d.replacen(':', "-", 1));
    std::fs::write(&parked, stored::read(&a.dir, &kept_d).unwrap()).unwrap();
    stored::remove(&a.dir, &kept_d);
    let gone_d = sha256(&gone);
    std::fs::write(trash.join(gone_d.replacen(':', "-", 1)), &gone).unwrap();
    // Before: a row whose file is missing.
    assert_ne!(a.get(&format!("/v2/r/blobs/{kept_d}")).status, 200);
    let a = a.restart(&[]);
    let r = a.get(&format!("/v2/r/blobs/{kept_d}"));
    assert_eq!((r.status, &r.body), (200, &kept), "put back whole");
    assert!(!trash.exists(), "trash/ is gone");
    assert!(a.log().contains("put back 1 blobs"), "{}", a.log());
    assert_index_agrees_with_disk(&a.dir);
}
