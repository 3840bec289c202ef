//! Crowds: one address opening idle connections by the hundred (no login needed) must not
//! lock anyone else out, and atoll must never accept more connections than its open-file limit
//! lets it serve.
//!
//! The crowd comes from 127.0.0.1 and the other client from 127.0.0.2 (all of 127/8 is
//! loopback on Linux, and a listener on 127.0.0.1 accepts connections from 127.0.0.2). A low
//! open-file limit keeps the crowd small: 200 files serve 50 connections, 16 from one address.

use std::net::{IpAddr, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use http_types::Method;

use super::{connect, read_to_close, FAST};
use crate::support::content::{sha256, Image};
use crate::support::{connect_from, proc_stats, Api, Atoll, ClientFrom};

/// Whether atoll has closed (or reset) `s`, without waiting.
fn is_closed(s: &TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 64];
    let closed = match std::io::Read::read(&mut &*s, &mut buf) {
        Ok(_) => true,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    };
    s.set_nonblocking(false).unwrap();
    closed
}

/// Before: the soft limit (64 here, 1024 on many boxes) was kept, the connection limit was a
/// fixed 4,096, and one address's idle connections used up every file: atoll could accept
/// nobody else (and open no blob file) until they timed out, 60 s later.
#[test]
fn one_address_holds_its_share_of_connections_and_the_others_are_served() {
    let a = Atoll::start_with_files(64, 200, &[], &[]);
    let crowd: Vec<TcpStream> = (0..200).map(|_| connect(&a)).collect();
    std::thread::sleep(Duration::from_millis(500));

    // Meanwhile another address pushes and pulls, at once.
    let other = ClientFrom(a.addr, "127.0.0.2".parse().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let t = Instant::now();
        let img = Image::oci(2, 64 * 1024);
        img.push(&other, "crowd/app", "1").expect(201, None);
        let m = other.req(Method::Get, "/v2/crowd/app/manifests/1").send();
        m.expect(200, None);
        assert_eq!(m.body, img.manifest);
        for b in img.blobs() {
            let path = format!("/v2/crowd/app/blobs/{}", sha256(b));
            let r = other.req(Method::Get, &path).send();
            r.expect(200, None);
            assert!(r.body == *b, "{path}: other bytes");
        }
        let _ = tx.send(t.elapsed());
    });
    let took = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("127.0.0.2 was not served (or failed) within 10 s");
    eprintln!("127.0.0.2 pushed and pulled in {took:?} beside 200 connections from 127.0.0.1");

    // The crowd's address holds its share; the rest of it was closed as soon as accepted.
    let open = crowd.iter().filter(|s| !is_closed(s)).count();
    assert_eq!(open, 16, "connections from 127.0.0.1 left open");
    let mut late = connect(&a);
    let (_, closed) = read_to_close(&mut late, FAST);
    assert!(closed.is_some(), "a connection over the share stayed open");
    let fds = proc_stats(a.pid()).fds;
    assert!(fds < 200, "atoll holds {fds} files, its limit is 200");

    // Its place comes back when its connections close.
    drop(crowd);
    std::thread::sleep(Duration::from_millis(300));
    a.get("/v2/").expect(200, None);

    let log = a.log();
    assert!(
        log.contains(
            "open-file limit raised from 64 to 200: up to 50 connections, 16 from one address"
        ),
        "{log}"
    );
    assert!(
        log.contains("refused 127.0.0.1:") && log.contains("(its share of 50)"),
        "{log}"
    );
}

/// The cap is per address, not per loopback: a second address of its own gets its own share.
#[test]
fn each_address_has_its_own_share() {
    let a = Atoll::start_with_files(200, 200, &[], &[]);
    let from = |ip: &str, n: usize| -> Vec<TcpStream> {
        let ip: IpAddr = ip.parse().unwrap();
        (0..n).map(|_| connect_from(ip, a.addr).unwrap()).collect()
    };
    let (one, two) = (from("127.0.0.3", 20), from("127.0.0.4", 20));
    std::thread::sleep(Duration::from_millis(500));
    for (ip, crowd) in [("127.0.0.3", &one), ("127.0.0.4", &two)] {
        let open = crowd.iter().filter(|s| !is_closed(s)).count();
        assert_eq!(open, 16, "connections from {ip} left open");
    }
}
