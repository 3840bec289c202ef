//! Two at once on one cluster: two collections (one runs, the other refuses), and two nodes
//! writing the same bytes of one upload (one wins, and no blob is ever made of other bytes).

use std::sync::Barrier;
use std::time::{Duration, Instant};

use http_types::Method;

use super::{assert_pulls, patch, start_upload, MIB};
use crate::support::cluster::Cluster;
use crate::support::content::*;
use crate::support::{signal, Res};

/// 300 blobs no manifest names, pushed through every node at once; their digests.
fn push_garbage(c: &Cluster) -> Vec<String> {
    std::thread::scope(|s| {
        let pushers: Vec<_> = (0..3)
            .map(|i| {
                let node = c.client(i);
                s.spawn(move || {
                    (0..100)
                        .map(|_| push_blob(&node, "junk/r", &random_bytes(1000)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        pushers
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect()
    })
}

/// Waits until a session of the cluster's database holds the collection lock: the advisory key
/// src/index/mod.rs's `lock_key("gc")` makes, which pg_locks shows as its high and low 32 bits.
/// `gc` is the collection expected to take it.
fn wait_for_collection_lock(c: &Cluster, gc: &mut std::process::Child) {
    let h = blake3::hash(b"atoll lock gc");
    let key = i64::from_le_bytes(h.as_bytes()[..8].try_into().unwrap()) as u64;
    let held = format!(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
         AND classid = {} AND objid = {} AND objsubid = 1",
        key >> 32,
        key & 0xffff_ffff
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while c.query(&held) != "1" {
        if let Some(status) = gc.try_wait().unwrap() {
            panic!("the collection ended ({status}) before it was seen holding the lock");
        }
        assert!(Instant::now() < deadline, "no collection took the lock");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Two `atoll --gc` against one cluster: the second, run while the first holds the cluster's
/// collection lock, refuses and names the other; the first finishes its work; afterwards every
/// tagged image pulls on every node and `--verify` is clean.
#[test]
fn a_second_collection_on_the_cluster_refuses_while_one_runs() {
    let c = Cluster::start(3, &["--gc-interval", "0"]);
    let kept: Vec<(String, Image)> = (0..3)
        .map(|i| {
            let repo = format!("keep/r{i}");
            let img = Image::oci(2, 2000);
            img.push(&c.client(i), &repo, "v1").expect(201, None);
            (repo, img)
        })
        .collect();
    // Garbage: blobs no manifest names, and an image deleted by digest.
    let garbage = push_garbage(&c);
    let gone = Image::oci(1, 3000);
    gone.push(&c.client(1), "junk/img", "v1").expect(201, None);
    c.node(2)
        .delete(&format!("/v2/junk/img/manifests/{}", gone.digest()))
        .expect(202, None);

    // The first collection, caught while it holds the lock: stopped there (SIGSTOP), so the
    // second one surely asks while it is under way, however fast the first would be.
    let mut first = c
        .cli()
        .command(&["--gc", "--gc-grace", "0s"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_collection_lock(&c, &mut first);
    signal(first.id(), "STOP");
    let (ok, second) = c.cli().run(&["--gc", "--gc-grace", "0s"]);
    signal(first.id(), "CONT");
    let first = first.wait_with_output().unwrap();
    let first_out = String::from_utf8_lossy(&first.stdout).into_owned()
        + &String::from_utf8_lossy(&first.stderr);
    assert!(!ok, "a second collection ran beside the first:\n{second}");
    assert!(
        second.contains("another garbage collection is running on the index"),
        "{second}"
    );
    assert!(
        first.status.success(),
        "the first collection failed:\n{first_out}"
    );
    for d in garbage
        .iter()
        .chain([&gone.digest(), &sha256(&gone.layers[0])])
    {
        assert!(
            first_out.contains(&format!("delete blob {d}")),
            "{d} not collected:\n{first_out}"
        );
    }

    for (i, node) in c.nodes().iter().enumerate() {
        for (repo, img) in &kept {
            assert_pulls(node, &format!("node {i}"), repo, "v1", img);
        }
        for d in &garbage[..10] {
            node.head(&format!("/v2/junk/r/blobs/{d}"))
                .expect(404, None);
        }
    }
    let summary = c.cli().verify();
    assert!(
        summary.contains(" 0 files without an index row"),
        "{summary}"
    );
    // The lock went with the first: a collection runs again.
    let (ok, out) = c.cli().run(&["--gc", "--gc-grace", "0s"]);
    assert!(ok, "{out}");
}

/// Two PATCHes of the same offset of one upload, sent at once to two nodes: at most one is
/// taken, and finishing the upload with the digest of what was taken either makes a blob with
/// exactly those bytes or fails cleanly. Never a blob whose bytes are not its digest's. Sizes:
/// a small tail object (256 KiB), one part (6 MiB), a part and a tail (20 MiB); at offset 0 and
/// after a first chunk.
#[test]
fn two_nodes_patching_one_upload_at_once_never_make_a_blob_of_other_bytes() {
    let c = Cluster::start(3, &[]);
    let repo = "race/app";
    let mut outcomes = Vec::new();
    for (round, size) in [256 << 10, 6 * MIB, 20 * MIB]
        .repeat(2)
        .into_iter()
        .enumerate()
    {
        let loc = start_upload(c.node(0), repo);
        let before = if round >= 3 {
            random_bytes(MIB)
        } else {
            Vec::new()
        };
        if !before.is_empty() {
            patch(c.node(2), &loc, 0, &before).send().expect(202, None);
        }
        let offset = before.len();
        let bodies = [random_bytes(size), random_bytes(size)];
        let barrier = Barrier::new(2);
        let answers: Vec<Res> = std::thread::scope(|s| {
            let sent: Vec<_> = (0..2)
                .map(|i| {
                    let (node, body, barrier, loc) = (c.client(i), &bodies[i], &barrier, &loc);
                    s.spawn(move || {
                        let req = patch(&node, loc, offset, body);
                        barrier.wait();
                        req.send()
                    })
                })
                .collect();
            sent.into_iter().map(|t| t.join().unwrap()).collect()
        });
        let statuses: Vec<u16> = answers.iter().map(|r| r.status).collect();
        let won: Vec<usize> = (0..2).filter(|&i| answers[i].status == 202).collect();
        assert!(
            won.len() <= 1,
            "round {round} ({size} bytes): both PATCHes were taken"
        );
        for r in answers.iter().filter(|r| r.status != 202) {
            assert!(
                (400..500).contains(&r.status),
                "round {round}: the PATCH that lost answered {}: {}",
                r.status,
                r.text_lossy()
            );
            r.error_code();
        }
        // What the upload holds now, by the PATCH that was taken.
        let held = match won.first() {
            Some(&i) => [before.as_slice(), bodies[i].as_slice()].concat(),
            None => before.clone(),
        };
        let r = c.node(2).get(&loc);
        r.expect(204, None);
        if !held.is_empty() {
            assert_eq!(
                r.header("Range"),
                Some(&*format!("0-{}", held.len() - 1)),
                "round {round}: where the upload ends"
            );
        }
        let digest = sha256(&held);
        let put = c
            .node(2)
            .req(Method::Put, &format!("{loc}?digest={digest}"))
            .send();
        outcomes.push(format!(
            "{size}@{offset}: PATCH {statuses:?}, PUT {}",
            put.status
        ));
        for (i, n) in c.nodes().iter().enumerate() {
            let r = n.get(&format!("/v2/{repo}/blobs/{digest}"));
            if put.status == 201 {
                r.expect(200, None);
                assert_eq!(sha256(&r.body), digest, "round {round}: node {i}");
            } else {
                assert_eq!(
                    r.status, 404,
                    "round {round}: the PUT failed, yet node {i} has it"
                );
            }
        }
        if put.status != 201 {
            put.error_code();
        }
        // The bytes that lost are no blob anywhere.
        for lost in (0..2).filter(|i| !won.contains(i)) {
            let d = sha256(&[before.as_slice(), bodies[lost].as_slice()].concat());
            c.node(1)
                .head(&format!("/v2/{repo}/blobs/{d}"))
                .expect(404, None);
        }
    }
    eprintln!("cluster race: {}", outcomes.join("; "));
    let whole = c.blobs_are_whole();
    assert!(whole > 0, "no blob was made: {outcomes:?}");
    c.cli().verify();
}

/// The scheduled collection runs once an interval for the whole cluster, not once per node:
/// three nodes collecting every 2 s collect about as often in 9 s as one node would.
#[test]
fn the_scheduled_collection_runs_once_an_interval_for_the_cluster() {
    let cluster = Cluster::start(3, &["--gc-interval", "2s"]);
    std::thread::sleep(Duration::from_secs(9));
    let logs: Vec<String> = cluster.nodes().iter().map(|n| n.log()).collect();
    let count = |what: &str| -> usize { logs.iter().map(|l| l.matches(what).count()).sum() };
    let (ran, skipped) = (count("gc: kept"), count("another node ran this interval's"));
    // Each node's timer fires about 4 times (12 turns); the cluster runs one a 1.8 s window.
    assert!(
        (3..=6).contains(&ran),
        "{ran} collections in 9 s:\n{}",
        logs.join("\n")
    );
    assert!(skipped >= 4, "{skipped} turns left to another node");
}
