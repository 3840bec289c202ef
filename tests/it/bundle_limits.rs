//! What a bundle may cost the machine that imports it, against the real binary: a gzip bomb is
//! refused at the header of the entry that inflates too far, an entry the disk cannot hold is
//! refused before a byte of it is written, and a file no image can use is read but never
//! staged. `tmp/` is watched while atoll runs, by `--import` and by the spool alike. And the
//! spool parks what is not a bundle (a FIFO, a socket, a link) instead of waiting on it.

use std::fs;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::bundles::*;
use crate::support::content::*;
use crate::support::layout;

const MIB: u64 = 1 << 20;
/// sha256 of 256 MiB of zeros (`head -c 268435456 /dev/zero | sha256sum`): the bomb's entry
/// is a blob that no manifest of the bundle uses.
const ZEROS_256M: &str = "a6d72ac7690f53be6ae46ba88506bd97302a093f7108472bd9efc3cefda06484";

/// Runs atoll, measuring the most bytes `DATA/tmp` held meanwhile; kills it after `limit`.
fn run_watching_tmp(data: &Path, args: &[&str], limit: Duration) -> (Output, u64) {
    let mut child = atoll_command(data, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running atoll");
    let (start, mut peak) = (Instant::now(), 0);
    while child.try_wait().unwrap().is_none() {
        peak = peak.max(bytes_in(&data.join("tmp")));
        if start.elapsed() > limit {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!(
                "atoll {args:?} still ran after {limit:?}:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    (child.wait_with_output().unwrap(), peak)
}

fn bytes_in(dir: &Path) -> u64 {
    let Ok(list) = fs::read_dir(dir) else {
        return 0;
    };
    list.filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// The one line a failed run printed, after checking it failed with exit code 1.
#[track_caller]
fn one_line(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).trim_end().to_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    err
}

fn image_tar(work: &Path, name: &str) -> Tar {
    let dir = work.join(format!("layout-{}", name.replace(['/', ':'], "-")));
    layout::image_layout(&dir, &Image::oci(1, 3000), name);
    Tar::default().layout(&dir)
}

#[test]
fn a_gzip_bomb_is_refused_at_its_header_by_import_and_spool_and_never_reaches_tmp() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let entry = format!("blobs/sha256/{ZEROS_256M}");
    let bomb = gzip_bomb(
        &entry,
        256 * MIB,
        &image_tar(work.path(), "bomb/app:1").bytes(),
    );
    assert!(bomb.len() < 2 * MIB as usize, "{} bytes", bomb.len());
    let file = work.path().join("bomb.tar.gz");
    fs::write(&file, &bomb).unwrap();

    let limit = Duration::from_secs(60);
    let (out, peak) = run_watching_tmp(&data, &["--import", file.to_str().unwrap()], limit);
    let err = one_line(&out);
    assert!(
        err.contains(&format!("{entry}: 268435456 bytes once decompressed"))
            && err.contains("decompression bomb"),
        "{err}"
    );
    assert!(peak < MIB, "tmp/ held {peak} bytes");
    assert!(store_files(&data).is_empty(), "{:?}", store_files(&data));

    let spool = work.path().join("spool");
    fs::create_dir_all(spool.join("incoming")).unwrap();
    fs::write(spool.join("incoming/bomb.tar.gz"), &bomb).unwrap();
    let spool_arg = spool.to_str().unwrap();
    let args = ["--import-spool", spool_arg, "--spool-settle", "0"];
    let (out, peak) = run_watching_tmp(&data, &args, limit);
    assert_eq!(out.status.code(), Some(1));
    assert!(peak < MIB, "tmp/ held {peak} bytes");
    assert!(spool.join("failed/bomb.tar.gz").is_file());
    let why = fs::read_to_string(spool.join("failed/bomb.tar.gz.error")).unwrap();
    assert!(
        why.contains(&entry) && why.contains("decompression bomb"),
        "{why}"
    );
    assert!(store_files(&data).is_empty(), "{:?}", store_files(&data));
}

#[test]
fn an_entry_larger_than_the_free_space_is_refused_before_it_is_written() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    // A plain tar (no inflation to bound) whose blob entry announces 1 PiB.
    let entry = format!("blobs/sha256/{ZEROS_256M}");
    let tar = image_tar(work.path(), "huge/app:1")
        .announced(&entry, 1 << 50, &[0u8; 4096])
        .bytes();
    let file = work.path().join("huge.tar");
    fs::write(&file, tar).unwrap();
    let (out, peak) = run_watching_tmp(
        &data,
        &["--import", file.to_str().unwrap()],
        Duration::from_secs(60),
    );
    let err = one_line(&out);
    assert!(
        err.contains(&format!(
            "disk full: {entry} announces 1125899906842624 bytes, and the disk has"
        )),
        "{err}"
    );
    assert!(
        peak < 64 * 1024,
        "tmp/ held {peak} bytes: only the image's own blobs"
    );
    assert!(store_files(&data).is_empty(), "{:?}", store_files(&data));
}

#[test]
fn a_file_no_image_uses_is_read_but_never_staged() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let tar = image_tar(work.path(), "extra/app:1")
        .file("notes/recording.bin", &vec![7u8; 24 * MIB as usize])
        .bytes();
    let file = work.path().join("extra.tar");
    fs::write(&file, tar).unwrap();
    let (out, peak) = run_watching_tmp(
        &data,
        &["--import", file.to_str().unwrap()],
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("extra/app:1"));
    assert!(peak < MIB, "tmp/ held {peak} bytes");
}

#[test]
fn a_fifo_a_socket_or_a_link_in_the_spool_is_parked_and_the_bundle_after_it_imports() {
    let work = tempfile::tempdir().unwrap();
    let (data, spool) = (work.path().join("data"), work.path().join("spool"));
    let incoming = spool.join("incoming");
    fs::create_dir_all(&incoming).unwrap();
    // Named to come first: the spool takes incoming/ in name order.
    let fifo = incoming.join("a.fifo");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.unwrap().success());
    let _socket = std::os::unix::net::UnixListener::bind(incoming.join("b.sock")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", incoming.join("c.link")).unwrap();
    let good = image_tar(work.path(), "spool/after:1").bytes();
    fs::write(incoming.join("d.tar"), good).unwrap();

    let spool_arg = spool.to_str().unwrap();
    let args = ["--import-spool", spool_arg, "--spool-settle", "0"];
    let (out, _) = run_watching_tmp(&data, &args, Duration::from_secs(20));
    assert_eq!(out.status.code(), Some(1), "three of four failed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("spool/after:1"), "{stdout}");
    assert!(spool.join("done/d.tar").is_file());
    for (name, what) in [
        ("a.fifo", "a FIFO"),
        ("b.sock", "a socket"),
        ("c.link", "a symbolic link"),
    ] {
        assert!(fs::symlink_metadata(spool.join("failed").join(name)).is_ok());
        let why = fs::read_to_string(spool.join("failed").join(format!("{name}.error"))).unwrap();
        assert!(
            why.contains(&format!("{name}: {what}, not a bundle")),
            "{why}"
        );
    }
    assert_eq!(fs::read_dir(&incoming).unwrap().count(), 0);
}
