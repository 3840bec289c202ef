//! A TCP relay on loopback for the pull-through cache's tests: it stands between atoll and its
//! upstream at an address that stays the same when the upstream is restarted elsewhere, counts
//! the connections it is asked for, and closes a connection as a request arrives on demand; or
//! before an object store, which it can take down and bring back ([`Relay::set_down`]).
//! When either side of a relayed connection ends, both do, as with a direct connection.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Shared {
    target: Mutex<Option<SocketAddr>>,
    accepted: AtomicUsize,
    /// Close the next connection that has carried an answer when a request arrives on it.
    break_next_reuse: AtomicBool,
    /// Down: new connections are closed at once, and relayed ones as soon as anything moves.
    down: AtomicBool,
}

pub struct Relay {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Relay {
    pub fn start(target: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        *shared.target.lock().unwrap() = Some(target);
        let s = shared.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                s.accepted.fetch_add(1, Ordering::SeqCst);
                if s.down.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let target = s.target.lock().unwrap().expect("a target");
                match TcpStream::connect(target) {
                    Ok(up) => relay(client, up, s.clone()),
                    Err(_) => drop(client),
                }
            }
        });
        Relay { addr, shared }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Connections relayed so far.
    pub fn connections(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// New connections go to `target` from now on.
    pub fn set_target(&self, target: SocketAddr) {
        *self.shared.target.lock().unwrap() = Some(target);
    }

    /// Takes the service behind the relay down (as far as its clients can tell), or back up.
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }

    /// The next request on a connection that already carried an answer finds it closed, as if
    /// the upstream had ended it a moment before (its idle timeout, a restart).
    pub fn break_next_reuse(&self) {
        self.shared.break_next_reuse.store(true, Ordering::SeqCst);
    }
}

fn relay(client: TcpStream, up: TcpStream, shared: Arc<Shared>) {
    let answered = Arc::new(AtomicBool::new(false));
    // Client to upstream; a request on a connection that carried an answer may be refused.
    let (mut from, mut to) = (client.try_clone().unwrap(), up.try_clone().unwrap());
    let a = answered.clone();
    let down = shared.clone();
    std::thread::spawn(move || {
        pump(&mut from, &mut to, |_| {
            let refuse_reuse = a.load(Ordering::SeqCst)
                && shared
                    .break_next_reuse
                    .compare_exchange(true, false, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok();
            !shared.down.load(Ordering::SeqCst) && !refuse_reuse
        })
    });
    // Upstream to client.
    let (mut from, mut to) = (up, client);
    std::thread::spawn(move || {
        pump(&mut from, &mut to, |_| {
            answered.store(true, Ordering::SeqCst);
            !down.down.load(Ordering::SeqCst)
        })
    });
}

/// Copies `from` to `to` while `pass` lets each piece through, then ends both connections
/// (which ends the pump of the other direction too).
fn pump(from: &mut TcpStream, to: &mut TcpStream, mut pass: impl FnMut(&[u8]) -> bool) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if !pass(&buf[..n]) || to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
