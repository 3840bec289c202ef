//! Running a collection: `atoll --gc [--dry-run]` from the command line (lines on stdout,
//! progress on a terminal's stderr, a summary line), and the scheduled one inside the server
//! (summary in the log, detail at debug).

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use log::{debug, info, warn};

use super::{GcOptions, GcReport};
use crate::error::Result;
use crate::registry::{GcSink, Registry};

/// Prints decisions to stdout and, on a terminal, progress to stderr (at most 10 times a second).
struct Terminal {
    tty: bool,
    last: Option<Instant>,
}

impl GcSink for Terminal {
    fn line(&mut self, line: &str) {
        if self.tty && self.last.take().is_some() {
            eprint!("\r\x1b[K");
        }
        println!("{line}");
    }

    fn progress(&mut self, stage: &str, done: usize, total: usize) {
        if !self.tty
            || self
                .last
                .is_some_and(|t| t.elapsed() < Duration::from_millis(100) && done < total)
        {
            return;
        }
        eprint!("\r\x1b[Ksweeping {stage}: {done}/{total}");
        let _ = std::io::stderr().flush();
        self.last = Some(Instant::now());
    }
}

/// `atoll --gc`: one collection on the data directory, safe while a server runs on it.
pub fn command(registry: &Registry, opts: &GcOptions) -> Result<GcReport> {
    let mut sink = Terminal {
        tty: std::io::stderr().is_terminal(),
        last: None,
    };
    let report = registry.collect_garbage(opts, crate::clock::now(), &mut sink)?;
    if sink.last.is_some() {
        eprintln!();
    }
    println!("{}", report.summary());
    Ok(report)
}

/// Detail lines go to the debug log.
struct Log;

impl GcSink for Log {
    fn line(&mut self, line: &str) {
        debug!("gc: {line}");
    }
}

/// The scheduled collection: runs off the executor, logs its summary, and keeps the last
/// report (for `/metrics` and the web page). A run that finds another collection in progress
/// (`atoll --gc` from a shell) skips its turn.
pub async fn scheduled(
    registry: Arc<Registry>,
    opts: GcOptions,
    last: Arc<Mutex<Option<GcReport>>>,
) {
    let outcome =
        smol::unblock(move || registry.collect_garbage(&opts, crate::clock::now(), &mut Log)).await;
    match outcome {
        Ok(report) => {
            info!("{}", report.summary());
            *last.lock().unwrap_or_else(|p| p.into_inner()) = Some(report);
        }
        Err(e) => warn!("scheduled garbage collection: {e}"),
    }
}
