//! `atoll` with no mode flag: open the data directory, load logins and certificates, bind, and
//! serve until SIGTERM/SIGINT.
//!
//! Wires the pieces together in the order that keeps failures early and clear: the data
//! directory, the htpasswd file and the certificates are all opened and checked before the
//! socket is bound; the soft limit on open files is raised to the hard one and the connection
//! limits fitted to it; the first log lines say where atoll listens, what a client must trust,
//! what is exposed and how many connections it serves; signals and timers drive reloads and
//! the shared shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread;

use log::{info, warn};

use crate::auth::Auth;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::http::app::{App, Restrictions};
use crate::http::limits::Limits;
use crate::http::server::Server;
use crate::proxy::{Proxy, ProxyConfig};
use crate::registry::{Options, Registry};
use crate::shutdown::Shutdown;
use crate::tls::{Tls, TlsSource};

pub fn run(config: &Config) -> Result<()> {
    // A read refreshes "last used" at most every half grace window, so a blob a client has
    // just checked for is always inside the window when GC re-checks it.
    let options = Options {
        touch_interval: (config.gc.grace / 2).clamp(1, 60),
        // Like GC's grace but at most two minutes: eviction runs because the disk needs room.
        eviction_grace: config.gc.grace.min(120),
        blobs: config.blobs.clone(),
        index: config.index.clone(),
    };
    let registry = Arc::new(Registry::open(&config.data_dir, options)?);
    let auth = Auth::load(&config.auth, registry.token_key()?)?.map(Arc::new);
    let proxy_config = config.cache.proxy()?;
    let tls = match &config.tls {
        Some(source) => Some(Arc::new(Tls::load(source.with_default_hostname())?)),
        None => None,
    };
    registry.recover()?;
    let files = raise_file_limit();
    let limits = config.limits.clone().within_files(files.now);
    let listener = std::net::TcpListener::bind(config.listen)
        .map_err(|e| Error::Config(format!("--listen {}: cannot listen: {e}", config.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::io("reading the bound address", e))?;
    let listener = smol::net::TcpListener::try_from(listener)
        .map_err(|e| Error::io("registering the listener", e))?;

    announce(
        config,
        addr,
        auth.as_deref(),
        tls.as_deref(),
        proxy_config.as_ref(),
        (&files, &limits),
    );
    let shutdown = Shutdown::new();
    let restrictions = Restrictions {
        read_only: config.read_only,
        no_delete: config.no_delete,
    };
    let executor = Arc::new(smol::Executor::new());
    let mut app = App::new(
        registry,
        restrictions,
        auth.clone(),
        tls.is_some(),
        shutdown.clone(),
    );
    app.blob_redirect = config.blob_redirect;
    if let Some(cfg) = proxy_config {
        let proxy = Proxy::new(
            cfg,
            app.registry.clone(),
            app.metrics.clone(),
            executor.clone(),
        );
        app.proxy = Some(Arc::new(proxy));
    }
    let app = Arc::new(app);
    let server = Arc::new(Server::new(
        app.clone(),
        tls.clone(),
        limits,
        executor.clone(),
    ));

    let workers = thread::available_parallelism().map_or(2, |n| n.get());
    for i in 1..workers {
        let (ex, stop) = (executor.clone(), shutdown.clone());
        thread::Builder::new()
            .name(format!("atoll-worker-{i}"))
            .spawn(move || smol::block_on(ex.run(stop.wait())))
            .map_err(|e| Error::io("starting a worker thread", e))?;
    }
    crate::jobs::spawn(
        &executor,
        &shutdown,
        &app,
        &config.gc,
        auth.clone(),
        tls.clone(),
    );
    crate::notify::notify(&format!("READY=1\nSTATUS=serving on {addr}"));
    // The accept loop is a task of its own: the future this thread's runner is given is polled
    // again whenever any task wakes the runner, and an accept loop there tried `accept4` (and
    // got EAGAIN) hundreds of times during one pull.
    let accepting = executor.spawn(server.run(listener));
    smol::block_on(executor.run(accepting))?;
    app.registry.index().close()?;
    info!("stopped");
    Ok(())
}

/// The open-file limit (RLIMIT_NOFILE) before and after [`raise_file_limit`].
struct FileLimit {
    was: u64,
    now: u64,
}

impl std::fmt::Display for FileLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.was == self.now {
            true => write!(f, "open-file limit {}", self.now),
            false => write!(
                f,
                "open-file limit raised from {} to {}",
                self.was, self.now
            ),
        }
    }
}

/// Raises the soft limit on open files to the hard one: every connection is a file, and the
/// soft limit (often 1024) is a default for programs that never asked, not a budget. The
/// connection limit then follows what was got (`Limits::within_files`).
fn raise_file_limit() -> FileLimit {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let limit = getrlimit(Resource::Nofile);
    let was = limit.current.unwrap_or(u64::MAX);
    // No hard limit ("unlimited") is not a value Linux takes for open files: keep the soft one.
    let Some(hard) = limit.maximum.filter(|&h| h > was) else {
        return FileLimit { was, now: was };
    };
    let raised = rustix::process::Rlimit {
        current: Some(hard),
        maximum: Some(hard),
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => FileLimit { was, now: hard },
        Err(e) => {
            warn!("cannot raise the open-file limit from {was} to {hard}: {e}");
            FileLimit { was, now: was }
        }
    }
}

/// The startup lines: where data lives, what clients must trust, what is exposed to whom, how
/// many connections are served, and last where atoll listens.
fn announce(
    config: &Config,
    addr: SocketAddr,
    auth: Option<&Auth>,
    tls: Option<&Tls>,
    cache: Option<&ProxyConfig>,
    (files, limits): (&FileLimit, &Limits),
) {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let data = config
        .data_dir
        .canonicalize()
        .unwrap_or_else(|_| config.data_dir.clone());
    info!(
        "atoll {} ({})",
        env!("CARGO_PKG_VERSION"),
        env!("ATOLL_TARGET")
    );
    info!("data directory: {}", data.display());
    if let crate::index::IndexConfig::Postgres(pg) = &config.index {
        info!("index in PostgreSQL: {pg:?}");
        if config.blobs == crate::store::StoreConfig::Disk {
            log::warn!(
                "the index is shared (PostgreSQL) but blobs are on this machine's disk: \
                 only this atoll may use that index; several nodes need an s3:// --blob-store"
            );
        }
    }
    if let crate::store::StoreConfig::S3(s3) = &config.blobs {
        let redirect = if config.blob_redirect {
            ", blob GETs redirected to it"
        } else {
            ""
        };
        info!("blobs in the object store {s3}{redirect}");
    }
    if let Some(files) = tls.and_then(Tls::auto_files) {
        let names = match tls.map(Tls::source) {
            Some(TlsSource::Auto { hostnames, .. }) => crate::tls::subject_names(hostnames),
            _ => vec![],
        };
        let ca = files.ca_cert.canonicalize().unwrap_or(files.ca_cert);
        info!(
            "TLS certificate for {} signed by the CA {}",
            names.join(", "),
            ca.display()
        );
        let host = names.first().map_or("localhost", String::as_str);
        info!(
            "each docker client must trust that CA: sudo mkdir -p /etc/docker/certs.d/{host}:{port} && sudo cp {ca} /etc/docker/certs.d/{host}:{port}/ca.crt",
            port = addr.port(),
            ca = ca.display()
        );
    }
    match auth {
        Some(a) if a.anonymous_pull => info!(
            "anyone may pull; pushes and deletes need one of {} logins",
            a.user_count()
        ),
        Some(a) => info!("every request needs a login ({} users)", a.user_count()),
        None => {}
    }
    if let Some(c) = cache {
        for u in &c.upstreams.list {
            let which = if u.key.is_empty() {
                "names with no registry prefix".to_owned()
            } else {
                format!("{}/... and ?ns={}", u.key, u.key)
            };
            let login = if u.credentials.is_some() {
                ", with credentials"
            } else {
                ""
            };
            info!("pull-through cache: {which} from {}{login}", u.url);
        }
        let budget = c.max_bytes.map_or("no size limit".to_owned(), |b| {
            format!("at most {}", crate::units::human_bytes(b))
        });
        info!(
            "cache eviction every {} s: content unread for {} s goes, {budget}{}",
            c.evict_interval,
            c.ttl,
            if c.pins.is_empty() {
                String::new()
            } else {
                format!(", pinned: {}", c.pins.join(" "))
            }
        );
    }
    if config.read_only {
        info!("read-only: pushes and deletes are refused");
    } else if config.no_delete {
        info!("deletes are refused (--no-delete)");
    }
    if !addr.ip().is_loopback() {
        if tls.is_none() {
            warn!("serving plain HTTP on {addr}: passwords and images cross the network in the clear, and docker refuses it unless listed in insecure-registries; use --tls-auto or --tls-cert");
        }
        if auth.is_none() && !config.read_only {
            warn!(
                "no logins on {addr}: anyone who can reach it can push and delete (use --htpasswd)"
            );
        }
    }
    info!(
        "{files}: up to {} connections, {} from one address",
        limits.max_connections,
        limits.per_address()
    );
    // Last, so that a line saying "listening" means everything above is in place.
    info!("listening on {scheme}://{addr}");
}
