//! The pull-through cache on a cluster: one upstream fetch per blob however many nodes are
//! asked at once (the others wait for it, then read the store), and a node that dies mid-fetch
//! leaves the fetch to another once its lease lapses.

use std::time::{Duration, Instant};

use crate::support::cluster::Cluster;
use crate::support::content::*;
use crate::support::fake_upstream::{Blobs, FakeUpstream};

/// Three caches of one slow upstream, asked for one layer at the same moment: the upstream
/// serves it once, and every node answers with its bytes.
#[test]
fn three_nodes_asked_at_once_fetch_a_blob_from_the_upstream_once() {
    let fake = FakeUpstream::start();
    let img = Image::oci(1, 600_000);
    fake.add("library/app", "1", &img);
    let cluster = Cluster::start(3, &["--upstream", &fake.url()]);
    for node in cluster.nodes() {
        node.get("/v2/library/app/manifests/1").expect(200, None);
    }
    // About a second of fetching: long enough for every node to ask while one fetches.
    fake.state.lock().unwrap().blob_mode = Some(Blobs::Crawl(Duration::from_millis(100)));
    let layer = sha256(&img.layers[0]);
    let path = format!("/v2/library/app/blobs/{layer}");
    let bodies: Vec<Vec<u8>> = std::thread::scope(|s| {
        let asked: Vec<_> = cluster
            .nodes()
            .iter()
            .map(|n| s.spawn(|| n.get(&path)))
            .collect();
        asked
            .into_iter()
            .map(|t| {
                let r = t.join().unwrap();
                assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
                r.body
            })
            .collect()
    });
    for (i, body) in bodies.iter().enumerate() {
        assert_eq!(sha256(body), layer, "node {i}");
    }
    assert_eq!(
        fake.count(&format!("GET /v2/library/app/blobs/{layer}")),
        1,
        "{:?}",
        fake.requests()
    );
}

/// The node fetching a blob is killed mid-fetch: another node asked for it takes the fetch over
/// once the lease lapses (30 s), and serves the right bytes.
#[test]
fn a_fetch_whose_node_died_is_taken_over_by_another() {
    let fake = FakeUpstream::start();
    let img = Image::oci(2, 600_000);
    fake.add("library/app", "1", &img);
    let mut cluster = Cluster::start(2, &["--upstream", &fake.url()]);
    for node in cluster.nodes() {
        node.get("/v2/library/app/manifests/1").expect(200, None);
    }
    fake.state.lock().unwrap().blob_mode = Some(Blobs::Crawl(Duration::from_millis(300)));
    let layer = sha256(&img.layers[0]);
    let path = format!("/v2/library/app/blobs/{layer}");
    let fetching = {
        let addr = cluster.node(0).addr;
        std::thread::spawn(move || {
            // Only to start node 0's fetch: its answer is cut by the kill.
            let _ = std::net::TcpStream::connect(addr).and_then(|mut s| {
                use std::io::Write;
                write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n")?;
                std::thread::sleep(Duration::from_secs(2));
                Ok(())
            });
        })
    };
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(fake.count(&format!("GET /v2/library/app/blobs/{layer}")), 1);
    cluster.kill_and_restart(0);
    fetching.join().unwrap();
    fake.state.lock().unwrap().blob_mode = Some(Blobs::Normal);
    let asked = Instant::now();
    let r = cluster
        .node(1)
        .get(&format!("/v2/library/app/blobs/{layer}"));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(sha256(&r.body), layer);
    assert!(
        asked.elapsed() < Duration::from_secs(40),
        "waited {:?} for a lease of 30 s",
        asked.elapsed()
    );
    assert_eq!(fake.count(&format!("GET /v2/library/app/blobs/{layer}")), 2);
}
