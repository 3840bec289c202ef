//! systemd's notify protocol, without a crate: one datagram to the socket named by
//! `$NOTIFY_SOCKET` (a path, or an abstract name written with a leading `@`). atoll sends
//! `READY=1` once it listens (so `Type=notify` units start their dependents only then),
//! `STOPPING=1` when it begins a graceful stop, and `WATCHDOG=1` at half of `$WATCHDOG_USEC`
//! when the unit sets `WatchdogSec=` (a wedged executor stops pinging and systemd restarts it).
//! Outside systemd every call is a no-op.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

#[cfg(target_os = "linux")]
use std::os::linux::net::SocketAddrExt;

/// Sends `state` (e.g. `"READY=1\nSTATUS=..."`) to systemd, if it is listening. Errors are
/// logged, never fatal: a missing notify socket must not stop a registry.
pub fn notify(state: &str) {
    let Ok(target) = std::env::var("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(e) = send(&target, state) {
        log::warn!("cannot notify systemd at {target}: {e}");
    }
}

fn send(target: &str, state: &str) -> std::io::Result<()> {
    let socket = UnixDatagram::unbound()?;
    let addr = match target.strip_prefix('@') {
        #[cfg(target_os = "linux")]
        Some(name) => SocketAddr::from_abstract_name(name.as_bytes())?,
        #[cfg(not(target_os = "linux"))]
        Some(_) => return Err(std::io::Error::other("abstract sockets need Linux")),
        None => SocketAddr::from_pathname(target)?,
    };
    socket.send_to_addr(state.as_bytes(), &addr)?;
    Ok(())
}

/// How often to ping the watchdog: half the interval systemd set, if it set one.
pub fn watchdog_period() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    // WATCHDOG_PID, when set, names the process the watchdog is for.
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_to_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        send(path.to_str().unwrap(), "READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
    }

    #[test]
    fn sends_to_an_abstract_socket() {
        let name = format!("atoll-test-{}", crate::ids::new_id());
        let listener =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        send(&format!("@{name}"), "STOPPING=1").unwrap();
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");
    }
}
