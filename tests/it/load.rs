//! Load: 200 concurrent keep-alive connections, each pushing and pulling images for a bounded
//! time. No error response (there is no deliberate limit at this load), every pull has the
//! right bytes, memory stays bounded (peak RSS reported) and no file descriptor leaks.
//!
//! The normal suite runs a few seconds; the full run (`reliability/load.sh`) sets
//! `ATOLL_LOAD_SECS=60`. Measure the release build (`ATOLL_RELEASE_BIN`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_types::Method;

use crate::support::content::{sha256, Image};
use crate::support::{proc_stats, release_bin, Api, Atoll, Client, KeepAlive, Req, Res};

const CONNECTIONS: usize = 200;

fn on(conn: &mut KeepAlive, req: Req, want: u16, what: &str) -> Result<Res, String> {
    let r = req.send_on(conn).map_err(|e| format!("{what}: {e}"))?;
    if r.status == want {
        Ok(r)
    } else {
        Err(format!("{what}: {} {}", r.status, r.text_lossy()))
    }
}

/// Pushes `img` over one connection: each blob in one POST, then the manifest.
fn push(
    c: &Client,
    conn: &mut KeepAlive,
    repo: &str,
    tag: &str,
    img: &Image,
) -> Result<(), String> {
    for b in img.blobs() {
        let d = sha256(b);
        let req = c
            .req(
                Method::Post,
                &format!("/v2/{repo}/blobs/uploads/?digest={d}"),
            )
            .header("Content-Type", "application/octet-stream")
            .body(b.clone());
        on(conn, req, 201, "blob POST")?;
    }
    let req = c
        .req(Method::Put, &format!("/v2/{repo}/manifests/{tag}"))
        .header("Content-Type", &img.media_type)
        .body(img.manifest.clone());
    on(conn, req, 201, "manifest PUT")?;
    Ok(())
}

/// Pulls `img` over one connection and checks every byte.
fn pull(
    c: &Client,
    conn: &mut KeepAlive,
    repo: &str,
    tag: &str,
    img: &Image,
) -> Result<(), String> {
    let r = on(
        conn,
        c.req(Method::Get, &format!("/v2/{repo}/manifests/{tag}"))
            .header("Accept", &img.media_type),
        200,
        "manifest GET",
    )?;
    if r.body != img.manifest {
        return Err(format!("{repo}:{tag}: other manifest bytes"));
    }
    for b in img.blobs() {
        let d = sha256(b);
        let r = on(
            conn,
            c.req(Method::Get, &format!("/v2/{repo}/blobs/{d}")),
            200,
            "blob GET",
        )?;
        if r.body != *b {
            return Err(format!("{d}: other bytes"));
        }
    }
    Ok(())
}

#[test]
fn two_hundred_connections_push_and_pull_without_errors_leaks_or_unbounded_memory() {
    let secs: u64 = std::env::var("ATOLL_LOAD_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let temp = tempfile::tempdir().unwrap();
    let a = Atoll::try_start_bin(&release_bin(), &temp.path().join("data"), &[], &[]).unwrap();
    let c = Client(a.addr);
    // What every connection pulls: a few shared images.
    let shared: Vec<Image> = (0..4).map(|_| Image::oci(2, 256 << 10)).collect();
    for (i, img) in shared.iter().enumerate() {
        img.push(&a, "load/shared", &format!("{i}"))
            .expect(201, None);
    }
    let shared = Arc::new(shared);
    // Warm: one round over a connection, so the baseline counts what atoll keeps open anyway.
    pull(&c, &mut KeepAlive::new(&a), "load/shared", "0", &shared[0]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let before = proc_stats(a.pid());

    let stop = Arc::new(AtomicBool::new(false));
    let (requests, pushes, pulls) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let peak_conns = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let threads: Vec<_> = (0..CONNECTIONS)
        .map(|i| {
            let (stop, shared, errors) = (stop.clone(), shared.clone(), errors.clone());
            let (requests, pushes, pulls) = (requests.clone(), pushes.clone(), pulls.clone());
            let mut conn = KeepAlive::new(&a);
            std::thread::Builder::new()
                .stack_size(256 << 10)
                .spawn(move || {
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let result = if n % 4 == i % 4 {
                            let img = Image::oci(2, 8 << 10);
                            let r =
                                push(&c, &mut conn, &format!("load/c{i}"), &format!("t{n}"), &img)
                                    .and_then(|()| {
                                        pull(
                                            &c,
                                            &mut conn,
                                            &format!("load/c{i}"),
                                            &format!("t{n}"),
                                            &img,
                                        )
                                    });
                            requests.fetch_add(7, Ordering::Relaxed);
                            pushes.fetch_add(1, Ordering::Relaxed);
                            r
                        } else {
                            let k = (i + n) % shared.len();
                            requests.fetch_add(4, Ordering::Relaxed);
                            pulls.fetch_add(1, Ordering::Relaxed);
                            pull(&c, &mut conn, "load/shared", &k.to_string(), &shared[k])
                        };
                        if let Err(e) = result {
                            errors.lock().unwrap().push(e);
                        }
                        n += 1;
                    }
                    conn.opened
                })
                .unwrap()
        })
        .collect();
    let mut during = before;
    while t0.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_millis(250));
        let s = proc_stats(a.pid());
        peak_conns.fetch_max(s.fds as u64, Ordering::Relaxed);
        during = s;
    }
    stop.store(true, Ordering::Relaxed);
    let opened: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    let took = t0.elapsed();
    // Clients hang up: atoll closes their connections and holds what it held before.
    let end = Instant::now() + Duration::from_secs(10);
    let mut after = proc_stats(a.pid());
    while after.sockets > before.sockets && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(100));
        after = proc_stats(a.pid());
    }
    let errors = errors.lock().unwrap();
    eprintln!(
        "load: {CONNECTIONS} connections for {took:.1?}: {} requests ({:.0}/s), {} image pushes, \
         {} image pulls, {} errors; connections opened {opened}; fds {} before, {} peak, {} \
         after ({} sockets before, {} after: the rest are index connections the pool opened under \
         load); RSS {} KiB before, peak {} KiB (last sample {} KiB)",
        requests.load(Ordering::Relaxed),
        requests.load(Ordering::Relaxed) as f64 / took.as_secs_f64(),
        pushes.load(Ordering::Relaxed),
        pulls.load(Ordering::Relaxed),
        errors.len(),
        before.fds,
        peak_conns.load(Ordering::Relaxed),
        after.fds,
        before.sockets,
        after.sockets,
        before.rss_kib,
        after.peak_rss_kib,
        during.rss_kib,
    );
    assert!(
        errors.is_empty(),
        "{} errors, first: {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    assert!(
        peak_conns.load(Ordering::Relaxed) as usize >= before.fds + CONNECTIONS / 2,
        "the connections were not concurrent"
    );
    assert_eq!(
        after.sockets, before.sockets,
        "sockets left open after the clients hung up"
    );
    // The index keeps up to 16 idle SQLite reader connections (MAX_IDLE_READERS), each with
    // its database and WAL files open.
    assert!(
        after.fds <= before.fds + 32,
        "fds: {} before, {} after",
        before.fds,
        after.fds
    );
    assert!(
        after.peak_rss_kib < 512 * 1024,
        "peak RSS {} KiB",
        after.peak_rss_kib
    );
    assert_eq!(
        opened, CONNECTIONS,
        "a connection was closed under the clients"
    );
}
