//! The server's periodic jobs, each on a timer until the shutdown signal (`background.rs`):
//! htpasswd reloads, certificate renewal, closing idle upstream connections, cache eviction,
//! garbage collection, the systemd watchdog; the signals that reload and stop; and the
//! command-line collection (`atoll --gc`), which reports where the scheduled one logs.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use log::{error, info, warn};
use smol::stream::StreamExt;

use crate::auth::Auth;
use crate::background;
use crate::config::GcConfig;
use crate::console::{DebugLog, Terminal};
use crate::error::Result;
use crate::gc::{GcOptions, GcReport};
use crate::http::app::App;
use crate::registry::Registry;
use crate::shutdown::Shutdown;
use crate::tls::{Tls, TlsSource};

/// How often the htpasswd file is checked for changes.
const HTPASSWD_POLL: Duration = Duration::from_secs(2);
/// The first scheduled collection comes this soon after a start (or after one interval, if
/// shorter), so a box that restarts more often than the interval still collects.
const FIRST_GC: Duration = Duration::from_secs(3600);
/// How often a generated certificate is checked for renewal.
const RENEWAL_CHECK: Duration = Duration::from_secs(12 * 3600);
/// How often upstream connections idle too long are closed (they may also wait this much
/// longer than `net::pool::IDLE_FOR`).
const IDLE_CONNECTION_SWEEP: Duration = Duration::from_secs(10);

/// Starts every job the configuration asks for on `executor`.
pub fn spawn(
    executor: &Arc<smol::Executor<'static>>,
    shutdown: &Shutdown,
    app: &Arc<App>,
    gc: &GcConfig,
    auth: Option<Arc<Auth>>,
    tls: Option<Arc<Tls>>,
) {
    executor
        .spawn(watch_signals(shutdown.clone(), auth.clone(), tls.clone()))
        .detach();
    if let Some(a) = auth.clone() {
        executor
            .spawn(background::every(
                HTPASSWD_POLL,
                shutdown.clone(),
                move || reload_htpasswd(a.clone(), false),
            ))
            .detach();
    }
    if let Some(proxy) = app.proxy.clone() {
        let sweep = proxy.clone();
        let close_idle = move || {
            sweep.close_idle_connections(std::time::Instant::now());
            async {}
        };
        executor
            .spawn(background::every(
                IDLE_CONNECTION_SWEEP,
                shutdown.clone(),
                close_idle,
            ))
            .detach();
        let period = Duration::from_secs(proxy.config.evict_interval as u64);
        proxy.next_eviction.store(
            crate::clock::now() + proxy.config.evict_interval,
            std::sync::atomic::Ordering::Relaxed,
        );
        let (every, registry) = (proxy.config.evict_interval, app.registry.clone());
        let evict = move || {
            let (p, r) = (proxy.clone(), registry.clone());
            async move {
                let run = move || match r.claim_turn("evict", every)? {
                    true => p.evict(crate::clock::now()).map(Some),
                    false => Ok(None),
                };
                if let Err(e) = smol::unblock(run).await {
                    warn!("cache eviction: {e}");
                }
            }
        };
        executor
            .spawn(background::every(period, shutdown.clone(), evict))
            .detach();
    }
    if gc.interval > 0 {
        let (reg, last) = (app.registry.clone(), app.last_gc.clone());
        let opts = GcOptions {
            dry_run: false,
            ..gc.options()
        };
        let period = Duration::from_secs(gc.interval as u64);
        let every = gc.interval;
        let metrics = app.metrics.clone();
        let gc = move || {
            scheduled(
                reg.clone(),
                opts.clone(),
                every,
                last.clone(),
                metrics.clone(),
            )
        };
        executor
            .spawn(background::every_after(
                period.min(FIRST_GC),
                period,
                shutdown.clone(),
                gc,
            ))
            .detach();
    }
    if let Some(t) = tls
        .clone()
        .filter(|t| matches!(t.source(), TlsSource::Auto { .. }))
    {
        executor
            .spawn(background::every(
                RENEWAL_CHECK,
                shutdown.clone(),
                move || reload_tls(t.clone()),
            ))
            .detach();
    }
    if let Some(period) = crate::notify::watchdog_period() {
        let ping = || async { crate::notify::notify("WATCHDOG=1") };
        executor
            .spawn(background::every(period, shutdown.clone(), ping))
            .detach();
    }
}

/// `atoll --gc`: one collection on the data directory, safe while a server runs on it.
pub fn collect(registry: &Registry, opts: &GcOptions) -> Result<GcReport> {
    let mut sink = Terminal::new();
    let report = registry.collect_garbage(opts, crate::clock::now(), &mut sink)?;
    sink.done();
    println!("{}", report.summary());
    Ok(report)
}

/// The scheduled collection: runs off the executor, logs its summary, and keeps the last
/// report (for `/metrics` and the web page). A run that finds another collection in progress
/// (`atoll --gc` from a shell) skips its turn.
async fn scheduled(
    registry: Arc<Registry>,
    opts: GcOptions,
    every: i64,
    last: Arc<Mutex<Option<GcReport>>>,
    metrics: Arc<crate::metrics::Metrics>,
) {
    let outcome = smol::unblock(move || match registry.claim_turn("gc", every)? {
        true => registry
            .collect_garbage(&opts, crate::clock::now(), &mut DebugLog("gc"))
            .map(Some),
        false => Ok(None),
    })
    .await;
    match outcome {
        Ok(None) => info!("scheduled garbage collection: another node ran this interval's"),
        Ok(Some(report)) => {
            info!("{}", report.summary());
            metrics.collected(&report, crate::clock::now());
            *last.lock().unwrap_or_else(|p| p.into_inner()) = Some(report);
        }
        Err(e) => warn!("scheduled garbage collection: {e}"),
    }
}

async fn reload_htpasswd(auth: Arc<Auth>, force: bool) {
    if let Err(e) = smol::unblock(move || auth.reload(force)).await {
        error!("{e}; keeping the users loaded before");
    }
}

async fn reload_tls(tls: Arc<Tls>) {
    if let Err(e) = smol::unblock(move || tls.reload()).await {
        error!("TLS: {e}; keeping the certificate in use");
    }
}

/// SIGTERM and SIGINT stop the server gracefully; SIGHUP reloads logins and certificates.
async fn watch_signals(shutdown: Shutdown, auth: Option<Arc<Auth>>, tls: Option<Arc<Tls>>) {
    use async_signal::{Signal, Signals};
    let mut signals = match Signals::new([Signal::Term, Signal::Int, Signal::Hup]) {
        Ok(s) => s,
        Err(e) => {
            warn!("cannot watch signals: {e}");
            return;
        }
    };
    while let Some(Ok(signal)) = signals.next().await {
        if signal == Signal::Hup {
            info!("SIGHUP: reloading logins and certificates");
            if let Some(a) = &auth {
                reload_htpasswd(a.clone(), true).await;
            }
            if let Some(t) = &tls {
                reload_tls(t.clone()).await;
            }
            continue;
        }
        info!("{signal:?} received: finishing requests in flight, then stopping");
        crate::notify::notify("STOPPING=1");
        shutdown.trigger();
    }
}
