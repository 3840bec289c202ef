//! Crash consistency: clients push images concurrently while atoll is killed with SIGKILL at
//! random moments, again and again, on the same data directory. After every kill:
//!
//! - `atoll --verify` passes (every indexed blob's file has the right bytes, the index's own
//!   check is ok: `PRAGMA integrity_check` on SQLite);
//! - every file under `blobs/` hashes to its name (no partial blob, indexed or not);
//! - once atoll is back, `uploads/` and `tmp/` hold nothing a crash left;
//! - every manifest acknowledged with 201 before any kill pulls by its tag with the right
//!   digest, and every blob it names pulls with the right bytes.
//!
//! The normal suite does a few kills; the full run (`reliability/crash.sh`) sets
//! `ATOLL_CRASH_KILLS=60`. `ATOLL_CRASH_SEED` replays a run (the seed is printed).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_types::Method;

use crate::support::content::{random_bytes, sha256, Image};
use crate::support::{index, release_bin, Api, Atoll, Client, Res};

fn env_num(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// xorshift64*: reproducible from the printed seed, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A manifest atoll acknowledged with 201.
#[derive(Clone)]
struct Acked {
    repo: String,
    tag: String,
    img: Image,
}

fn ok(r: Result<Res, String>, want: u16, what: &str) -> Result<Res, String> {
    let r = r?;
    if r.status == want {
        Ok(r)
    } else {
        Err(format!(
            "{what}: {} {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        ))
    }
}

/// One blob, pushed one of three ways: a single PUT, POST + PATCH chunks + PUT, or a
/// cross-repository mount from a repository that has it (falling back to an upload).
fn push_blob(c: &Client, repo: &str, bytes: &[u8], way: u64) -> Result<(), String> {
    let d = sha256(bytes);
    let post = if way == 2 {
        format!("/v2/{repo}/blobs/uploads/?mount={d}&from=crash/base")
    } else {
        format!("/v2/{repo}/blobs/uploads/")
    };
    let r = c.req(Method::Post, &post).try_send()?;
    if r.status == 201 {
        return Ok(());
    }
    let r = ok(Ok(r), 202, "POST upload")?;
    let mut loc = r.location();
    if way == 1 && bytes.len() > 1 {
        let mid = bytes.len() / 2;
        for (from, part) in [(0, &bytes[..mid]), (mid, &bytes[mid..])] {
            let r = c
                .req(Method::Patch, &loc)
                .header("Content-Type", "application/octet-stream")
                .header(
                    "Content-Range",
                    &format!("{from}-{}", from + part.len() - 1),
                )
                .body(part.to_vec())
                .try_send();
            loc = ok(r, 202, "PATCH")?.location();
        }
        let sep = if loc.contains('?') { '&' } else { '?' };
        let r = c
            .req(Method::Put, &format!("{loc}{sep}digest={d}"))
            .try_send();
        ok(r, 201, "PUT upload")?;
    } else {
        let sep = if loc.contains('?') { '&' } else { '?' };
        let r = c
            .req(Method::Put, &format!("{loc}{sep}digest={d}"))
            .header("Content-Type", "application/octet-stream")
            .body(bytes.to_vec())
            .try_send();
        ok(r, 201, "PUT blob")?;
    }
    Ok(())
}

/// Pushes images until atoll dies; every 201 manifest goes into `acked`.
fn pusher(c: Client, id: usize, seed: u64, base: Arc<Vec<u8>>, acked: Arc<Mutex<Vec<Acked>>>) {
    let mut rng = Rng(seed | 1);
    for n in 0.. {
        let repo = format!("crash/r{}", rng.below(3));
        let tag = format!("c{id}-{seed:x}-{n}");
        let mut layers = vec![base.to_vec()];
        for _ in 0..1 + rng.below(3) {
            let size = match rng.below(10) {
                0 => 1 + rng.below(2 << 20),
                _ => 1 + rng.below(200 << 10),
            };
            layers.push(random_bytes(size as usize));
        }
        let img = Image::oci(0, 0).with_layers(layers);
        let pushed = img
            .blobs()
            .iter()
            .try_for_each(|b| push_blob(&c, &repo, b, rng.below(3)));
        if pushed.is_err() {
            return;
        }
        let r = c
            .req(Method::Put, &format!("/v2/{repo}/manifests/{tag}"))
            .header("Content-Type", &img.media_type)
            .body(img.manifest.clone())
            .try_send();
        match r {
            Ok(r) if r.status == 201 => acked.lock().unwrap().push(Acked { repo, tag, img }),
            Ok(r) => panic!(
                "manifest PUT answered {}: {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            ),
            Err(_) => return,
        }
    }
}

/// Every blob (file or object) hashes to its name; returns how many there are.
fn blob_files_are_whole(dir: &Path) -> usize {
    let mut n = 0;
    for (path, bytes) in crate::support::snapshot(dir) {
        let Some(rest) = path.strip_prefix("blobs/sha256/") else {
            continue;
        };
        let name = rest.rsplit('/').next().unwrap();
        assert_eq!(
            sha256(&bytes),
            format!("sha256:{name}"),
            "{path} holds other bytes than its name says ({} bytes)",
            bytes.len()
        );
        n += 1;
    }
    n
}

fn verify(dir: &Path) -> String {
    let mut cmd = std::process::Command::new(release_bin());
    cmd.arg("--data-dir").arg(dir).arg("--verify").env_clear();
    crate::support::engines(&mut cmd, dir);
    let out = cmd.output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "atoll --verify failed:\n{text}");
    assert!(text.contains("index: ok"), "{text}");
    text.lines()
        .find(|l| l.contains("verify:"))
        .unwrap_or("")
        .to_owned()
}

/// The manifest pulls by tag with its digest; every blob pulls with its bytes.
fn pulls(c: &Client, a: &Acked) {
    let r = c
        .req(Method::Get, &format!("/v2/{}/manifests/{}", a.repo, a.tag))
        .header("Accept", &a.img.media_type)
        .send();
    assert_eq!(r.status, 200, "{}:{} lost after a kill", a.repo, a.tag);
    assert_eq!(r.body, a.img.manifest, "{}:{}", a.repo, a.tag);
    assert_eq!(r.header("Docker-Content-Digest"), Some(&*a.img.digest()));
    for b in a.img.blobs() {
        let d = sha256(b);
        let r = c
            .req(Method::Get, &format!("/v2/{}/blobs/{d}", a.repo))
            .send();
        assert_eq!(r.status, 200, "{d} of {}:{} lost", a.repo, a.tag);
        assert!(r.body == *b, "{d} of {}:{}: other bytes", a.repo, a.tag);
    }
}

fn files_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Files a crash left: temporary files, and upload files of no session (an upload with a
/// session row survives a restart on purpose: the client can resume it).
fn leftovers(dir: &Path) -> Vec<String> {
    let sessions: Vec<String> = index::query(dir, "SELECT id FROM uploads")
        .lines()
        .map(str::to_owned)
        .collect();
    let mut left: Vec<String> = files_in(&dir.join("tmp"))
        .into_iter()
        .map(|f| format!("tmp/{f}"))
        .collect();
    left.extend(
        files_in(&dir.join("uploads"))
            .into_iter()
            .filter(|f| !sessions.contains(f))
            .map(|f| format!("uploads/{f}")),
    );
    left
}

#[test]
fn acknowledged_pushes_survive_sigkill_and_nothing_is_left_half_written() {
    let kills = env_num("ATOLL_CRASH_KILLS", 4);
    let clients = env_num("ATOLL_CRASH_CLIENTS", 4) as usize;
    let seed = env_num(
        "ATOLL_CRASH_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    );
    eprintln!("crash: {kills} kills, {clients} clients, ATOLL_CRASH_SEED={seed}");
    let mut rng = Rng(seed | 1);
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("data");
    let start = |dir: &Path| {
        Atoll::try_start_bin(&release_bin(), dir, &[], &[])
            .unwrap_or_else(|log| panic!("atoll did not start after a kill:\n{log}"))
    };
    let base = Arc::new(random_bytes(64 << 10));
    let a = start(&dir);
    crate::support::content::push_blob(&a, "crash/base", &base);
    drop(a);

    let acked = Arc::new(Mutex::new(Vec::<Acked>::new()));
    let (mut checked, mut left_by_crashes) = (0, 0);
    let t0 = Instant::now();
    let mut last;
    for round in 0..=kills {
        // After a kill: the disk and the index, as atoll left them.
        last = verify(&dir);
        let blob_files = blob_files_are_whole(&dir);
        left_by_crashes += leftovers(&dir).len();
        let mut a = start(&dir);
        let c = Client(a.addr);
        let left = leftovers(&dir);
        assert!(
            left.is_empty(),
            "round {round}: left after restart: {left:?}"
        );
        // Everything acknowledged so far (the newest since the last check; all at the end).
        let all = acked.lock().unwrap().clone();
        let from = if round == kills { 0 } else { checked };
        for img in &all[from..] {
            pulls(&c, img);
        }
        checked = all.len();
        if round == kills {
            eprintln!(
                "crash: {kills} kills survived in {:?}; {} acknowledged images verified \
                 (manifests and every blob); {blob_files} blob files whole; {left_by_crashes} \
                 upload/temp files left by kills, all purged at restart; {last}",
                t0.elapsed(),
                all.len()
            );
            assert!(!all.is_empty(), "no push was acknowledged");
            break;
        }
        let threads: Vec<_> = (0..clients)
            .map(|id| {
                let (acked, base, s) = (acked.clone(), base.clone(), rng.next());
                std::thread::spawn(move || pusher(c, id, s, base, acked))
            })
            .collect();
        // Kill at a random moment: early (mid-handshake, first uploads) to late.
        std::thread::sleep(Duration::from_millis(30 + rng.below(900)));
        if round + 1 == kills {
            // On a loaded machine a push can take longer than every window so far: the last
            // round waits for one acknowledged push, so the check at the end has one to check.
            let until = Instant::now() + Duration::from_secs(30);
            while acked.lock().unwrap().is_empty() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        a.kill();
        for t in threads {
            t.join()
                .expect("a pusher failed on something other than the kill");
        }
    }
}
