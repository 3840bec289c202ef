//! Issue 20's reliability loop: nodes SIGKILLed again and again while clients push through all
//! of them and collections run; nothing acknowledged is lost.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use http_types::Method;

use super::{patch, MIB};
use crate::support::cluster::Cluster;
use crate::support::content::*;
use crate::support::{Api, Client, Res};

/// xorshift64*: a run is replayed from its printed seed (ATOLL_CLUSTER_SEED).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }
}

fn env_num(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Collections in the loop keep what was created, linked or read this recently.
const GRACE: Duration = Duration::from_secs(5);
/// Longer than any request should take, even on a node that is being killed: past it, a
/// request hangs, and the test says so instead of waiting forever.
const HANG: Duration = Duration::from_secs(30);

/// A manifest a node acknowledged with 201.
#[derive(Clone)]
struct Acked {
    repo: String,
    tag: String,
    img: Image,
}

/// What the clients of the reliability loop share: where the nodes are now (a restarted node
/// listens on a new port), and what they counted.
struct Loop {
    addrs: RwLock<Vec<SocketAddr>>,
    stop: AtomicBool,
    acked: Mutex<Vec<Acked>>,
    /// Requests that failed on a node being killed (or said 503), done again on another.
    retries: AtomicU64,
    /// Images whose blobs were pushed again: a collection took one, older than the grace,
    /// before the manifest came.
    repushed: AtomicU64,
    deleted: AtomicU64,
}

/// Where an upload stands after a request on it failed.
enum End {
    /// It holds this many bytes.
    At(usize),
    /// It was finished: the blob is there.
    Blob,
}

/// A request that did not get its answer because its node was killed or restarting (the
/// connection failed, or 503): worth asking another node. Anything else fails the test.
fn answered(r: Result<Res, String>, want: &[u16], what: &str) -> Result<Res, String> {
    match r {
        Err(e) if e.contains("no answer within") => panic!("{what}: {e}"),
        Err(e) => Err(format!("{what}: {e}")),
        Ok(r) if want.contains(&r.status) => Ok(r),
        Ok(r) if r.status == 503 => Err(format!("{what}: 503 {}", r.text_lossy())),
        Ok(r) => panic!("{what}: answered {}: {}", r.status, r.text_lossy()),
    }
}

/// [`answered`] for a request on an upload, where a 409 that says the upload changed
/// meanwhile is also worth asking again: a request this client sent to a node killed before
/// it answered may still have been committed, by PostgreSQL, after the client had asked
/// another node where the upload ends (the spec's answer: ask again, send from there).
fn answered_on_upload(r: Result<Res, String>, want: &[u16], what: &str) -> Result<Res, String> {
    match r {
        Ok(r) if r.status == 409 && r.text_lossy().contains("changed by another request") => {
            Err(format!("{what}: 409 {}", r.text_lossy()))
        }
        r => answered(r, want, what),
    }
}

impl Loop {
    /// The next node in this client's round: every request goes to the node after the last.
    fn next(&self, turn: &mut usize) -> Client {
        *turn += 1;
        let addrs = self.addrs.read().unwrap();
        Client(addrs[*turn % addrs.len()])
    }

    fn retried(&self) {
        self.retries.fetch_add(1, Relaxed);
        std::thread::sleep(Duration::from_millis(20));
    }

    /// A new upload in `repo`, begun on the next node that answers; `None` once the loop is
    /// stopping. (An upload a killed node began without saying so is left for collection.)
    fn start_upload(&self, turn: &mut usize, repo: &str) -> Option<String> {
        while !self.stop.load(Relaxed) {
            let r = self
                .next(turn)
                .req(Method::Post, &format!("/v2/{repo}/blobs/uploads/"))
                .try_send_within(HANG);
            match answered(r, &[202], "POST upload") {
                Ok(r) => return Some(r.location()),
                Err(_) => self.retried(),
            }
        }
        None
    }

    /// After a request on the upload at `loc` failed: where the upload ends, asked of the next
    /// node (the request may have been saved, or made the blob `digest`, before its node died).
    /// `None` if that node failed too.
    fn upload_end(&self, turn: &mut usize, loc: &str, digest: &str) -> Option<End> {
        let node = self.next(turn);
        let r = answered(
            node.req(Method::Get, loc).try_send_within(HANG),
            &[204, 404],
            "GET upload",
        )
        .ok()?;
        if r.status == 204 {
            let range = r.header("Range").expect("an upload's Range");
            let last: usize = range.trim_start_matches("0-").parse().expect("0-N");
            // "0-0" is no bytes: the blobs here are never 1 byte long, nor their halves.
            return Some(End::At(if last == 0 { 0 } else { last + 1 }));
        }
        let repo = &loc["/v2/".len()..loc.find("/blobs/uploads/").unwrap()];
        let r = answered(
            node.req(Method::Head, &format!("/v2/{repo}/blobs/{digest}"))
                .try_send_within(HANG),
            &[200, 404],
            "HEAD blob",
        )
        .ok()?;
        assert_eq!(
            r.status, 200,
            "{loc}: the upload is gone and {digest} is no blob: a failed request lost the upload"
        );
        Some(End::Blob)
    }

    /// POST on one node, PATCH of the first half on the next, PUT of the rest on the one after.
    /// A request that fails (its node killed) is sent again to another node, from where that
    /// node says the upload ends. `false` once the loop is stopping.
    fn push_blob(&self, turn: &mut usize, repo: &str, bytes: &[u8]) -> bool {
        let d = sha256(bytes);
        let half = bytes.len() / 2;
        let Some(loc) = self.start_upload(turn, repo) else {
            return false;
        };
        let mut offset = 0;
        while !self.stop.load(Relaxed) {
            let failed = if offset < half {
                let r = patch(&self.next(turn), &loc, offset, &bytes[offset..half])
                    .try_send_within(HANG);
                let sent = answered_on_upload(r, &[202], "PATCH upload");
                if sent.is_ok() {
                    offset = half;
                }
                sent.is_err()
            } else {
                let mut put = self
                    .next(turn)
                    .req(Method::Put, &format!("{loc}?digest={d}"));
                if offset < bytes.len() {
                    put = put
                        .header("Content-Type", "application/octet-stream")
                        .header("Content-Range", &format!("{offset}-{}", bytes.len() - 1))
                        .body(bytes[offset..].to_vec());
                }
                if answered_on_upload(put.try_send_within(HANG), &[201], "PUT upload").is_ok() {
                    return true;
                }
                true
            };
            if failed {
                self.retried();
                match self.upload_end(turn, &loc, &d) {
                    Some(End::At(n)) => offset = n,
                    Some(End::Blob) => return true,
                    None => {}
                }
            }
        }
        false
    }

    /// Pushes the image's blobs, then its manifest by `tag` until a node acknowledges it (201):
    /// then it is recorded. `false` once the loop is stopping.
    fn push_image(&self, turn: &mut usize, repo: &str, tag: &str, img: &Image) -> bool {
        let mut blobs_pushed = Instant::now();
        if !img.blobs().iter().all(|b| self.push_blob(turn, repo, b)) {
            return false;
        }
        loop {
            if self.stop.load(Relaxed) {
                return false;
            }
            let r = self
                .next(turn)
                .req(Method::Put, &format!("/v2/{repo}/manifests/{tag}"))
                .header("Content-Type", &img.media_type)
                .body(img.manifest.clone())
                .try_send_within(HANG);
            if let Ok(r) = &r {
                if r.status == 400 && r.error_code() == "MANIFEST_BLOB_UNKNOWN" {
                    // Allowed only past the grace: what was pushed more recently is kept.
                    let age = blobs_pushed.elapsed();
                    assert!(
                        age > GRACE - Duration::from_secs(1),
                        "{repo}:{tag}: a blob pushed {age:?} ago, within the collections' \
                         grace ({GRACE:?}), is gone: {}",
                        r.text_lossy()
                    );
                    self.repushed.fetch_add(1, Relaxed);
                    blobs_pushed = Instant::now();
                    if !img.blobs().iter().all(|b| self.push_blob(turn, repo, b)) {
                        return false;
                    }
                    continue;
                }
            }
            match answered(r, &[201], "PUT manifest") {
                Ok(_) => {
                    self.acked.lock().unwrap().push(Acked {
                        repo: repo.to_owned(),
                        tag: tag.to_owned(),
                        img: img.clone(),
                    });
                    return true;
                }
                Err(_) => self.retried(),
            }
        }
    }

    /// Deletes one of this client's acknowledged images by digest (forgotten first: whether
    /// the delete lands or not, it is no longer checked).
    fn delete_one(&self, turn: &mut usize, repo: &str, rng: &mut Rng) {
        let gone = {
            let mut acked = self.acked.lock().unwrap();
            let mine: Vec<usize> = (0..acked.len())
                .filter(|&i| acked[i].repo == repo)
                .collect();
            if mine.is_empty() {
                return;
            }
            acked.remove(mine[rng.below(mine.len() as u64) as usize])
        };
        self.deleted.fetch_add(1, Relaxed);
        while !self.stop.load(Relaxed) {
            let r = self
                .next(turn)
                .req(
                    Method::Delete,
                    &format!("/v2/{repo}/manifests/{}", gone.img.digest()),
                )
                .try_send_within(HANG);
            // 404: an attempt the killed node answered no more had deleted it.
            match answered(r, &[202, 404], "DELETE manifest") {
                Ok(_) => return,
                Err(_) => self.retried(),
            }
        }
    }

    /// One client: small distinct images (a shared base layer, one or two of their own,
    /// sometimes up to 2 MiB), now and then a blob no manifest names and a deleted image.
    fn client(&self, id: usize, seed: u64, base: &[u8]) {
        let mut rng = Rng(seed | 1);
        let mut turn = id;
        let repo = format!("loop/c{id}");
        for n in 0.. {
            let mut layers = vec![base.to_vec()];
            for _ in 0..1 + rng.below(2) {
                let size = match rng.below(10) {
                    0 => 1000 + rng.below(2 * MIB as u64),
                    _ => 1000 + rng.below(200 << 10),
                };
                layers.push(random_bytes(size as usize));
            }
            let img = Image::oci(0, 0).with_layers(layers);
            if !self.push_image(&mut turn, &repo, &format!("i{n}"), &img) {
                return;
            }
            if rng.below(5) == 0 && !self.push_blob(&mut turn, &repo, &random_bytes(5000)) {
                return;
            }
            if rng.below(8) == 0 {
                self.delete_one(&mut turn, &repo, &mut rng);
            }
        }
    }
}

/// The acknowledged image pulls from `node` by its tag: the manifest's bytes and digest, and
/// every blob (whose `digests` are given) with its bytes.
#[track_caller]
fn pulls(node: &Client, who: &str, a: &Acked, digests: &[String]) {
    let r = node
        .req(Method::Get, &format!("/v2/{}/manifests/{}", a.repo, a.tag))
        .header("Accept", &a.img.media_type)
        .send();
    assert_eq!(r.status, 200, "{who}: {}:{} is lost", a.repo, a.tag);
    assert!(
        r.body == a.img.manifest,
        "{who}: {}:{}: other bytes",
        a.repo,
        a.tag
    );
    assert_eq!(r.header("Docker-Content-Digest"), Some(&*a.img.digest()));
    for (b, d) in a.img.blobs().into_iter().zip(digests) {
        let r = node
            .req(Method::Get, &format!("/v2/{}/blobs/{d}", a.repo))
            .send();
        assert_eq!(r.status, 200, "{who}: {d} of {}:{} is lost", a.repo, a.tag);
        assert!(
            r.body == *b,
            "{who}: {d} of {}:{}: other bytes",
            a.repo,
            a.tag
        );
    }
}

/// Issue 20's reliability figure: three nodes, clients pushing small distinct images with every
/// request of an upload on another node, `atoll --gc` every few seconds, and a random node
/// SIGKILLed at least 30 times (restarted at once on its data directory; clients retry what
/// failed on another node). Every image acknowledged then pulls from every node with every
/// digest right, `--verify` is clean, and every blob in the bucket is its digest's.
#[test]
fn nodes_killed_while_clients_push_and_collections_run_lose_nothing_acknowledged() {
    let kills = env_num("ATOLL_CLUSTER_KILLS", 30);
    let clients = env_num("ATOLL_CLUSTER_CLIENTS", 3) as usize;
    let seed = env_num(
        "ATOLL_CLUSTER_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    );
    eprintln!("cluster loop: {kills} kills, {clients} clients, ATOLL_CLUSTER_SEED={seed}");
    let mut rng = Rng(seed | 1);
    let mut c = Cluster::start_release(3, &["--gc-interval", "0"]);
    let lp = Loop {
        addrs: RwLock::new(c.addrs()),
        stop: AtomicBool::new(false),
        acked: Mutex::new(Vec::new()),
        retries: AtomicU64::new(0),
        repushed: AtomicU64::new(0),
        deleted: AtomicU64::new(0),
    };
    let t0 = Instant::now();
    let (killed, collections, collected) = run(&mut c, &lp, clients, kills, &mut rng);
    let pushing = t0.elapsed();

    let acked = lp.acked.into_inner().unwrap();
    assert!(
        acked.len() >= 30,
        "only {} images acknowledged",
        acked.len()
    );
    // Each blob's digest, worked out once for the three nodes' checks.
    let digests: Vec<Vec<String>> = acked
        .iter()
        .map(|a| a.img.blobs().iter().map(|b| sha256(b)).collect())
        .collect();
    std::thread::scope(|s| {
        for i in 0..c.len() {
            let (node, acked, digests) = (c.client(i), &acked, &digests);
            s.spawn(move || {
                for (a, digests) in acked.iter().zip(digests) {
                    pulls(&node, &format!("node {i}"), a, digests);
                }
            });
        }
    });
    let pulled = t0.elapsed() - pushing;
    let verify = c.cli().verify();
    let whole = c.blobs_are_whole();
    eprintln!(
        "cluster loop: {killed} SIGKILLs of a random node in {pushing:.1?} ({:.1?} in all); \
         {} images acknowledged, each pulled back from all 3 nodes with every digest right \
         ({pulled:.1?}); {} requests retried on another node; {} images' blobs pushed again \
         after a collection; {} images deleted; {collections} collections deleted {collected} \
         blobs; {whole} blobs in the bucket, each its digest's; {verify}",
        t0.elapsed(),
        acked.len(),
        lp.retries.load(Relaxed),
        lp.repushed.load(Relaxed),
        lp.deleted.load(Relaxed),
    );
}

/// The loop itself: `clients` pushing, `atoll --gc` every 3 s, and a random node killed and
/// restarted every 1.5 to 3.5 s, `kills` times. Returns the kills, the collections run and the
/// blobs they deleted. A client or collection that failed fails the test here.
fn run(
    c: &mut Cluster,
    lp: &Loop,
    clients: usize,
    kills: u64,
    rng: &mut Rng,
) -> (u64, usize, usize) {
    let base = random_bytes(64 << 10);
    let grace = format!("{}s", GRACE.as_secs());
    let gc_args = ["--gc", "--gc-grace", grace.as_str(), "--upload-ttl", "60s"];
    let cli = c.cli().clone();
    std::thread::scope(|s| {
        let pushers: Vec<_> = (0..clients)
            .map(|id| {
                let (base, seed) = (&base, rng.below(u64::MAX));
                s.spawn(move || lp.client(id, seed, base))
            })
            .collect();
        let collector = s.spawn(|| {
            let (mut runs, mut deleted) = (0, 0);
            while !lp.stop.load(Relaxed) {
                let (ok, out) = cli.run(&gc_args);
                // A node restarting after a kill holds the collection lock while it finishes
                // what an interrupted collection doomed: this turn waits for the next, as a
                // scheduled one would. Anything else is a failure.
                if !ok && out.contains("another garbage collection is running") {
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
                assert!(ok, "atoll --gc failed against the cluster:\n{out}");
                runs += 1;
                deleted += out.lines().filter(|l| l.starts_with("delete blob")).count();
                for _ in 0..30 {
                    if !lp.stop.load(Relaxed) {
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
            (runs, deleted)
        });
        let mut killed = 0;
        while killed < kills {
            std::thread::sleep(Duration::from_millis(1500 + rng.below(2000)));
            if pushers.iter().any(|t| t.is_finished()) || collector.is_finished() {
                break; // a failed client or collection: its panic is reported below
            }
            let i = rng.below(3) as usize;
            let addr = c.kill_and_restart(i);
            lp.addrs.write().unwrap()[i] = addr;
            killed += 1;
        }
        std::thread::sleep(Duration::from_secs(1));
        lp.stop.store(true, Relaxed);
        for t in pushers {
            t.join()
                .expect("a client failed on something other than a kill");
        }
        let (runs, deleted) = collector.join().expect("the collection loop failed");
        (killed, runs, deleted)
    })
}
