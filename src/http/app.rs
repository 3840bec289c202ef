//! [`App`]: what every request handler shares (the registry, logins, the pull-through cache,
//! counters, what the operator switched off: [`Restrictions`]) and the count of requests in
//! flight. Built once by `serve.rs`; the server hands it to each request. Of `http/` it uses
//! only the traffic counters (`conn.rs`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::conn::Traffic;
use crate::auth::Auth;
use crate::error::Result;
use crate::gc::GcReport;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::shutdown::Shutdown;

/// What the operator switched off: every write (`--read-only`), or deletes (`--no-delete`).
#[derive(Clone, Debug, Default)]
pub struct Restrictions {
    pub read_only: bool,
    pub no_delete: bool,
}

/// What every request handler shares.
pub struct App {
    pub registry: Arc<Registry>,
    pub restrictions: Restrictions,
    /// Logins, when configured; `None` is an open registry.
    pub auth: Option<Arc<Auth>>,
    /// Whether clients reach atoll over HTTPS (for the token realm's URL).
    pub https: bool,
    pub traffic: Arc<Traffic>,
    pub shutdown: Shutdown,
    /// The pull-through cache, when upstreams are configured.
    pub proxy: Option<Arc<crate::proxy::Proxy>>,
    /// The last scheduled garbage collection's report.
    pub last_gc: Arc<std::sync::Mutex<Option<GcReport>>>,
    pub metrics: Arc<Metrics>,
    /// When this server started (Unix seconds).
    pub started_at: i64,
    /// Blob GETs answered with a presigned URL of the object store (`--blob-redirect`).
    pub blob_redirect: bool,
    in_flight: AtomicUsize,
}

impl App {
    pub fn new(
        registry: Arc<Registry>,
        restrictions: Restrictions,
        auth: Option<Arc<Auth>>,
        https: bool,
        shutdown: Shutdown,
    ) -> App {
        App {
            registry,
            restrictions,
            auth,
            https,
            traffic: Arc::default(),
            shutdown,
            proxy: None,
            last_gc: Arc::default(),
            metrics: Arc::default(),
            started_at: crate::clock::now(),
            blob_redirect: false,
            in_flight: AtomicUsize::new(0),
        }
    }

    /// Requests received whose response has not been fully sent.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// A request was received.
    pub(super) fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// A response was sent, or its client went away.
    pub(super) fn request_ended(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// Runs `f` with the registry on a blocking thread: SQLite, fsync and big hashes must not
    /// hold an executor thread.
    pub async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Registry) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let reg = self.registry.clone();
        smol::unblock(move || f(&reg)).await
    }
}
