//! Running a collection: `atoll --gc [--dry-run]` from the command line (lines on stdout,
//! progress on a terminal's stderr, a summary line), and the scheduled one inside the server
//! (summary in the log, detail at debug).

use std::sync::{Arc, Mutex};

use log::{info, warn};

use super::{GcOptions, GcReport};
use crate::console::{DebugLog, Terminal};
use crate::error::Result;
use crate::registry::Registry;

/// `atoll --gc`: one collection on the data directory, safe while a server runs on it.
pub fn command(registry: &Registry, opts: &GcOptions) -> Result<GcReport> {
    let mut sink = Terminal::new();
    let report = registry.collect_garbage(opts, crate::clock::now(), &mut sink)?;
    sink.done();
    println!("{}", report.summary());
    Ok(report)
}

/// The scheduled collection: runs off the executor, logs its summary, and keeps the last
/// report (for `/metrics` and the web page). A run that finds another collection in progress
/// (`atoll --gc` from a shell) skips its turn.
pub async fn scheduled(
    registry: Arc<Registry>,
    opts: GcOptions,
    last: Arc<Mutex<Option<GcReport>>>,
    metrics: Arc<crate::metrics::Metrics>,
) {
    let outcome = smol::unblock(move || {
        registry.collect_garbage(&opts, crate::clock::now(), &mut DebugLog("gc"))
    })
    .await;
    match outcome {
        Ok(report) => {
            info!("{}", report.summary());
            metrics.collected(&report, crate::clock::now());
            *last.lock().unwrap_or_else(|p| p.into_inner()) = Some(report);
        }
        Err(e) => warn!("scheduled garbage collection: {e}"),
    }
}
