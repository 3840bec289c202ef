//! PostgreSQL going away under the nodes (a restart, an outage held open): 503 at once, never
//! 500 or a hang, and every node back by itself once the database is.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http_types::Method;

use super::assert_pulls;
use crate::support::cluster::{postgres_ctl, Cluster};
use crate::support::content::*;
use crate::support::{Api, Atoll, Client};

/// Starts PostgreSQL again when dropped, so a failed assertion during an outage does not leave
/// the next tests without it.
struct Outage(bool);

impl Outage {
    fn begin() -> Outage {
        postgres_ctl(&["stop", "-m", "fast"]).unwrap_or_else(|e| panic!("{e}"));
        Outage(true)
    }

    fn end(mut self) {
        self.0 = false;
        postgres_ctl(&["start"]).unwrap_or_else(|e| panic!("{e}"));
    }
}

impl Drop for Outage {
    fn drop(&mut self) {
        if self.0 {
            // While a failed assertion unwinds: say it, do not panic again.
            if let Err(e) = postgres_ctl(&["start"]) {
                eprintln!("{e}");
            }
        }
    }
}

/// How long an answer may take while the database is away: a request that waits longer is a
/// hang to the client.
const OUTAGE_ANSWER: Duration = Duration::from_secs(5);

/// PostgreSQL restarted (`pg_ctl restart -m fast`) while clients use every node: every answer
/// is a success or 503, never 500, none slow; then an outage held open: reads, pushes and
/// /readyz answer 503 quickly on every node; once it is back, each node is ready, serves and
/// takes pushes again by itself, and nothing pushed before is lost.
#[test]
fn postgresql_restarting_gets_503_and_every_node_recovers_by_itself() {
    let c = Cluster::start(3, &[]);
    let mut pushed: Vec<(String, Image)> = Vec::new();
    for i in 0..3 {
        let (repo, img) = (format!("pg/r{i}"), Image::oci(1, 5000));
        img.push(&c.client(i), &repo, "v1").expect(201, None);
        pushed.push((repo, img));
    }
    let taken = restart_under_load(&c, &pushed);

    let outage = Outage::begin();
    for (i, (repo, img)) in pushed.iter().enumerate() {
        answers_503(c.node(i), &format!("node {i}"), repo, img);
    }
    outage.end();

    let back = Instant::now();
    for (i, n) in c.nodes().iter().enumerate() {
        while n.get("/readyz").status != 200 {
            assert!(
                back.elapsed() < Duration::from_secs(15),
                "node {i} not ready 15 s after PostgreSQL came back:\n{}",
                n.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    eprintln!(
        "cluster pg restart: every node ready {:?} after PostgreSQL came back",
        back.elapsed()
    );
    for i in 0..3 {
        let (repo, img) = (format!("pg/after{i}"), Image::oci(2, 3000));
        img.push(&c.client(i), &repo, "v1").expect(201, None);
        pushed.push((repo, img));
    }
    for (i, n) in c.nodes().iter().enumerate() {
        for (repo, img) in &pushed {
            assert_pulls(n, &format!("node {i}"), repo, "v1", img);
        }
        for (repo, bytes) in &taken {
            let d = sha256(bytes);
            let r = n.get(&format!("/v2/{repo}/blobs/{d}"));
            assert_eq!(
                r.status, 200,
                "node {i}: {d}, taken during the restart, is lost"
            );
            assert_eq!(sha256(&r.body), d, "node {i}");
        }
    }
    c.cli().verify();
}

/// `pg_ctl restart -m fast` while a client per node reads and pushes (`pushed[i]` on node i):
/// every answer a success or 503, none slower than [`OUTAGE_ANSWER`]. Returns the blobs nodes
/// took (201) meanwhile, by repository.
fn restart_under_load(c: &Cluster, pushed: &[(String, Image)]) -> Vec<(String, Vec<u8>)> {
    let stop = AtomicBool::new(false);
    let answers = Mutex::new(Vec::<(u16, Duration, String)>::new());
    let taken: Vec<(String, Vec<u8>)> = std::thread::scope(|s| {
        let clients: Vec<_> = pushed
            .iter()
            .enumerate()
            .map(|(i, (repo, img))| {
                let (node, stop, answers) = (c.client(i), &stop, &answers);
                s.spawn(move || keep_asking(node, &format!("node {i}"), repo, img, stop, answers))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(500));
        postgres_ctl(&["restart", "-m", "fast"]).unwrap_or_else(|e| panic!("{e}"));
        std::thread::sleep(Duration::from_millis(1500));
        stop.store(true, Relaxed);
        clients
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect()
    });
    let answers = answers.into_inner().unwrap();
    let unavailable = answers.iter().filter(|a| a.0 == 503).count();
    eprintln!(
        "cluster pg restart: {} answers while PostgreSQL restarted, {unavailable} of them 503, \
         slowest {:?}; {} pushes taken",
        answers.len(),
        answers.iter().map(|a| a.1).max().unwrap_or_default(),
        taken.len()
    );
    for (status, took, what) in &answers {
        assert!(
            [200, 201, 503].contains(status),
            "{what} answered {status} during the restart"
        );
        assert!(
            *took < OUTAGE_ANSWER,
            "{what} took {took:?} during the restart"
        );
    }
    assert!(
        unavailable > 0,
        "no request met the restart: {} answers",
        answers.len()
    );
    assert!(!taken.is_empty(), "no push was taken around the restart");
    taken
}

/// Until `stop`: a manifest GET, a blob HEAD and a one-request push of a fresh blob on `node`,
/// each answer's status and time into `answers`. Returns the blobs it took (201).
fn keep_asking(
    node: Client,
    who: &str,
    repo: &str,
    img: &Image,
    stop: &AtomicBool,
    answers: &Mutex<Vec<(u16, Duration, String)>>,
) -> Vec<(String, Vec<u8>)> {
    let layer = sha256(&img.layers[0]);
    let mut taken = Vec::new();
    while !stop.load(Relaxed) {
        let fresh = random_bytes(2000);
        let requests = [
            node.req(Method::Get, &format!("/v2/{repo}/manifests/v1"))
                .header("Accept", OCI_MANIFEST),
            node.req(Method::Head, &format!("/v2/{repo}/blobs/{layer}")),
            node.req(
                Method::Post,
                &format!("/v2/{repo}/blobs/uploads/?digest={}", sha256(&fresh)),
            )
            .body(fresh.clone()),
        ];
        for req in requests {
            let what = format!("{who}: {}", req.line());
            let t = Instant::now();
            let status = match req.try_send_within(Duration::from_secs(30)) {
                Ok(r) => r.status,
                Err(e) => panic!("{what}: {e}"),
            };
            answers.lock().unwrap().push((status, t.elapsed(), what));
            if status == 201 {
                taken.push((repo.to_owned(), fresh.clone()));
            }
        }
    }
    taken
}

/// While PostgreSQL is stopped: readiness, reads, pushes and listings on `node` answer 503
/// UNAVAILABLE, each within [`OUTAGE_ANSWER`].
fn answers_503(node: &Atoll, who: &str, repo: &str, img: &Image) {
    let fresh = random_bytes(2000);
    let requests = [
        node.req(Method::Get, "/readyz"),
        node.req(Method::Get, &format!("/v2/{repo}/manifests/v1"))
            .header("Accept", OCI_MANIFEST),
        node.req(
            Method::Head,
            &format!("/v2/{repo}/blobs/{}", sha256(&img.config)),
        ),
        node.req(Method::Post, &format!("/v2/{repo}/blobs/uploads/")),
        node.req(
            Method::Post,
            &format!("/v2/{repo}/blobs/uploads/?digest={}", sha256(&fresh)),
        )
        .body(fresh.clone()),
        node.req(Method::Put, &format!("/v2/{repo}/manifests/v2"))
            .header("Content-Type", OCI_MANIFEST)
            .body(img.manifest.clone()),
        node.req(Method::Get, "/v2/_catalog"),
    ];
    for req in requests {
        let what = format!("{who}: {}", req.line());
        let t = Instant::now();
        let r = req
            .try_send_within(Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("{what} during the outage: {e}"));
        assert_eq!(
            r.status,
            503,
            "{what} during the outage: {}",
            r.text_lossy()
        );
        if !r.head {
            assert_eq!(r.error_code(), "UNAVAILABLE", "{what}");
        }
        assert!(t.elapsed() < OUTAGE_ANSWER, "{what} took {:?}", t.elapsed());
    }
}
