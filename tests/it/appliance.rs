//! The appliance: systemd units that verify and score well, readiness notification, health
//! and metrics, `--verify` and `--repair`, the files the binary carries, the static build.

use std::collections::BTreeSet;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use http_types::Method;

use crate::support::content::*;
use crate::support::tools::{have, run};
use crate::support::{files_under, stored, Atoll};

fn atoll(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_atoll"))
        .args(args)
        .output()
        .unwrap()
}

/// `atoll ARGS --data-dir DIR`, on the engine the suite runs on.
fn atoll_on(dir: &Path, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_atoll"));
    cmd.args(args).arg("--data-dir").arg(dir);
    crate::support::engines(&mut cmd, dir);
    cmd.output().unwrap()
}

/// A unit from systemd/, with ExecStart pointing at the binary under test (verify checks that
/// the executable exists).
fn unit_for_test(dir: &Path, name: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("systemd")
            .join(name),
    )
    .unwrap();
    let text = text.replace("/usr/local/bin/atoll", env!("CARGO_BIN_EXE_atoll"));
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Every unit in systemd/.
const UNITS: &[&str] = &["atoll.service", "atoll-import.path", "atoll-import.service"];

#[test]
fn the_units_pass_systemd_analyze_verify() {
    if !have("systemd-analyze") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for name in UNITS {
        let unit = unit_for_test(dir.path(), name);
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&unit)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        // Outside a booted systemd, verify may remark on the environment, never on the unit.
        let about_unit: Vec<&str> = said.lines().filter(|l| l.contains(name)).collect();
        assert!(
            out.status.success() && about_unit.is_empty(),
            "{name}: {said}"
        );
    }
}

/// The exposure score `systemd-analyze security` gives the unit (lower is safer; the README
/// quotes it).
#[test]
fn the_service_unit_scores_well_on_systemd_analyze_security() {
    if !have("systemd-analyze") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_for_test(dir.path(), "atoll.service");
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&unit)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("{text}{}", String::from_utf8_lossy(&out.stderr)));
    let score: f64 = line
        .split(':')
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    eprintln!("{line}");
    assert!(score <= 2.0, "{line}");
}

#[test]
fn systemd_hears_ready_when_atoll_listens_and_stopping_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("notify");
    let listener = UnixDatagram::bind(&sock).unwrap();
    listener
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut a = Atoll::try_start_in(
        &dir.path().join("data"),
        &[],
        &[("NOTIFY_SOCKET", sock.to_str().unwrap())],
    )
    .unwrap();
    let mut buf = [0u8; 256];
    let n = listener.recv(&mut buf).unwrap();
    let ready = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(ready.starts_with("READY=1\n"), "{ready}");
    assert!(ready.contains(&a.addr.to_string()), "{ready}");
    a.get("/v2/").expect(200, None);
    crate::support::signal(a.pid(), "TERM");
    let n = listener.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"STOPPING=1");
    assert!(a.terminate_after_signal().success());
}

#[test]
fn health_readiness_and_metrics_after_real_traffic() {
    let a = Atoll::start();
    let h = a.get("/healthz");
    h.expect(200, None);
    assert_eq!(h.json()["status"], "ok");
    a.get("/readyz").expect(200, None);
    let img = Image::oci(2, 10_000);
    img.push(&a, "metered", "v1").expect(201, None);
    for _ in 0..3 {
        a.get("/v2/metered/manifests/v1").expect(200, None);
    }
    a.get("/v2/metered/manifests/nope").expect(404, None);
    let m = a.get("/metrics");
    m.expect(200, None);
    assert!(m
        .header("Content-Type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = String::from_utf8(m.body).unwrap();
    let value = |name: &str| -> f64 {
        text.lines()
            .find(|l| {
                l.starts_with(name)
                    && l[name.len()..].starts_with([' ', '{'])
                    && (l.starts_with(&format!("{name} ")) || l.starts_with(name))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing:\n{text}"))
    };
    assert_eq!(
        value("atoll_http_requests_total{endpoint=\"manifest_get\",status=\"200\"}"),
        3.0
    );
    assert_eq!(
        value("atoll_http_requests_total{endpoint=\"manifest_get\",status=\"404\"}"),
        1.0
    );
    assert_eq!(
        value("atoll_http_requests_total{endpoint=\"manifest_put\",status=\"201\"}"),
        1.0
    );
    assert_eq!(value("atoll_manifests"), 1.0);
    assert_eq!(value("atoll_tags"), 1.0);
    assert_eq!(
        value("atoll_blobs"),
        4.0,
        "config, two layers, the manifest's bytes"
    );
    let bytes: usize = img.blobs().iter().map(|b| b.len()).sum::<usize>() + img.manifest.len();
    assert_eq!(value("atoll_blob_bytes"), bytes as f64);
    assert!(value("atoll_http_received_bytes_total") >= bytes as f64);
    assert!(value("atoll_http_sent_bytes_total") >= 3.0 * img.manifest.len() as f64);
    assert!(text.contains("atoll_build_info{version=\""), "{text}");
}

#[test]
fn verify_finds_a_corrupted_blob_and_repair_sets_it_aside() {
    let a = Atoll::start();
    let img = Image::oci(2, 5_000);
    img.push(&a, "v", "1").expect(201, None);
    let ok = atoll_on(&a.dir, &["--verify"]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("verify: checked 4 blobs"));

    // A file no row names (a crash between a blob's rename and its commit) is reported, and
    // the blobs with rows are not.
    let stray = random_bytes(64);
    stored::write(&a.dir, &sha256(&stray), &stray);
    let found = atoll_on(&a.dir, &["--verify"]);
    let out = String::from_utf8_lossy(&found.stdout);
    let line = |d: &str| format!("file of {d} has no index row");
    assert!(out.contains(&line(&sha256(&stray))), "{out}");
    assert_eq!(out.matches("has no index row").count(), 1, "{out}");
    stored::remove(&a.dir, &sha256(&stray));

    // Flip one byte of a layer, as a failing disk would.
    let layer = sha256(&img.layers[1]);
    let hex = &layer["sha256:".len()..];
    let mut bytes = stored::read(&a.dir, &layer).unwrap();
    bytes[100] ^= 0xff;
    stored::write(&a.dir, &layer, &bytes);

    let bad = atoll_on(&a.dir, &["--verify"]);
    let out = String::from_utf8_lossy(&bad.stdout);
    assert!(!bad.status.success());
    assert!(
        out.contains(&format!(
            "damaged blob {layer}: its file's content is sha256:"
        )),
        "{out}"
    );
    assert!(out.contains("1 damaged"), "{out}");

    let repaired = atoll_on(&a.dir, &["--verify", "--repair"]);
    let out = String::from_utf8_lossy(&repaired.stdout);
    assert!(repaired.status.success(), "{out}");
    assert!(out.contains(&format!("quarantined blob {layer}")), "{out}");
    let aside = format!("quarantine/sha256-{hex}");
    assert!(
        files_under(&a.dir).contains(&aside),
        "kept aside for a look"
    );
    // Clients get BLOB_UNKNOWN instead of bad bytes, and can push the layer again.
    a.get(&format!("/v2/v/blobs/{layer}"))
        .expect(404, Some("BLOB_UNKNOWN"));
    push_blob(&a, "v", &img.layers[1]);
    assert_eq!(a.get(&format!("/v2/v/blobs/{layer}")).body, img.layers[1]);
    assert!(atoll_on(&a.dir, &["--verify"]).status.success());
}

#[test]
fn version_and_the_files_the_binary_carries() {
    let v = atoll(&["--version"]);
    let line = String::from_utf8_lossy(&v.stdout);
    assert!(
        line.starts_with(&format!("atoll {} (", env!("CARGO_PKG_VERSION"))),
        "{line}"
    );
    assert!(line.contains("linux"), "the build's target: {line}");
    for (name, path) in [
        ("atoll.service", "systemd/atoll.service"),
        ("atoll.sysusers", "systemd/atoll.sysusers"),
        ("atoll-import.path", "systemd/atoll-import.path"),
        ("atoll-import.service", "systemd/atoll-import.service"),
        ("atoll.env", "assets/atoll.env"),
    ] {
        let out = atoll(&["--print-file", name]);
        assert!(out.status.success());
        let on_disk = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap();
        assert_eq!(out.stdout, on_disk, "{name}");
    }
    let bad = atoll(&["--print-file", "nope"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("there are atoll.service"));
}

/// assets/atoll.env documents every ATOLL_* variable the code reads.
#[test]
fn every_atoll_variable_is_documented_in_atoll_env() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let env_file = std::fs::read_to_string(root.join("assets/atoll.env")).unwrap();
    let mut used = BTreeSet::new();
    let mut stack = vec![root.join("src")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&p).unwrap();
                for (i, _) in text.match_indices("\"ATOLL_") {
                    let name: String = text[i + 1..]
                        .chars()
                        .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                        .collect();
                    if name.len() > "ATOLL_".len() && name != "ATOLL_TARGET" && name != "ATOLL_E2E"
                    {
                        used.insert(name);
                    }
                }
            }
        }
    }
    assert!(used.len() >= 15, "{used:?}");
    for v in &used {
        assert!(
            env_file.contains(&format!("#{v}=")),
            "{v} is not documented in assets/atoll.env"
        );
    }
}

/// The release binary is static (tests/run.sh builds it with scripts/build-static.sh and
/// names it in ATOLL_RELEASE_BIN).
#[test]
fn the_release_binary_is_statically_linked() {
    let Ok(bin) = std::env::var("ATOLL_RELEASE_BIN") else {
        assert!(
            std::env::var("ATOLL_E2E").as_deref() != Ok("require"),
            "ATOLL_RELEASE_BIN is not set"
        );
        eprintln!("SKIPPED: ATOLL_RELEASE_BIN is not set (tests/run.sh builds the release binary)");
        return;
    };
    let out = Command::new("ldd").arg(&bin).output().unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("statically linked") || said.contains("not a dynamic executable"),
        "{said}"
    );
    let v = run(Command::new(&bin).arg("--version"));
    assert!(String::from_utf8_lossy(&v.stdout).starts_with("atoll "));
    let _ = Method::Get;
}
