//! `atoll` with no mode flag: open the data directory, bind, and serve until SIGTERM/SIGINT.
//!
//! Wires the pieces together in the order that keeps failures early and clear: everything is
//! opened and checked before the socket is bound; the socket is bound before the first log line
//! says where atoll listens; signals trigger the shared shutdown.

use std::sync::Arc;
use std::thread;

use log::{info, warn};
use smol::stream::StreamExt;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::http::handlers::Policy;
use crate::http::server::{App, Limits, Server};
use crate::registry::{Options, Registry};
use crate::shutdown::Shutdown;

pub fn run(config: &Config) -> Result<()> {
    let registry = Arc::new(Registry::open(&config.data_dir, Options::default())?);
    // Nothing is in flight yet: upload files without a session are a crash's leftovers.
    let leftovers = registry.purge_uploads(i64::MIN, i64::MAX)?;
    if leftovers > 0 {
        info!("removed {leftovers} upload files left by an earlier run");
    }
    let listener = std::net::TcpListener::bind(config.listen)
        .map_err(|e| Error::Config(format!("--listen {}: cannot listen: {e}", config.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::io("reading the bound address", e))?;
    let listener = smol::net::TcpListener::try_from(listener)
        .map_err(|e| Error::io("registering the listener", e))?;

    let shutdown = Shutdown::new();
    let policy = Policy {
        read_only: config.read_only,
        no_delete: config.no_delete,
    };
    let app = Arc::new(App::new(registry, policy, shutdown.clone()));
    let executor = Arc::new(smol::Executor::new());
    let server = Arc::new(Server::new(app, None, Limits::default(), executor.clone()));

    let data = config
        .data_dir
        .canonicalize()
        .unwrap_or_else(|_| config.data_dir.clone());
    info!(
        "atoll {} listening on http://{addr}",
        env!("CARGO_PKG_VERSION")
    );
    info!("data directory: {}", data.display());
    if config.read_only {
        info!("read-only: pushes and deletes are refused");
    } else if config.no_delete {
        info!("deletes are refused (--no-delete)");
    }
    if !addr.ip().is_loopback() {
        warn!("serving plain HTTP without logins on {addr}: anyone who can reach it can push and delete");
    }

    let workers = thread::available_parallelism().map_or(2, |n| n.get());
    for i in 1..workers {
        let (ex, stop) = (executor.clone(), shutdown.clone());
        thread::Builder::new()
            .name(format!("atoll-worker-{i}"))
            .spawn(move || smol::block_on(ex.run(stop.wait())))
            .map_err(|e| Error::io("starting a worker thread", e))?;
    }
    executor.spawn(watch_signals(shutdown.clone())).detach();
    smol::block_on(executor.run(server.run(listener)))?;
    info!("stopped");
    Ok(())
}

/// SIGTERM and SIGINT stop the server gracefully.
async fn watch_signals(shutdown: Shutdown) {
    use async_signal::{Signal, Signals};
    let mut signals = match Signals::new([Signal::Term, Signal::Int]) {
        Ok(s) => s,
        Err(e) => {
            warn!("cannot watch signals: {e}");
            return;
        }
    };
    while let Some(Ok(signal)) = signals.next().await {
        info!("{signal:?} received: finishing requests in flight, then stopping");
        shutdown.trigger();
    }
}
