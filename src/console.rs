//! What the command-line modes (`--gc`, `--verify`) print: decisions as lines on stdout, and,
//! on a terminal only, progress on stderr. The same operations run inside the server report to
//! the log instead.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Where a long operation reports what it decides (lines) and how far it is (progress).
pub trait Sink {
    fn line(&mut self, line: &str);
    fn progress(&mut self, _stage: &str, _done: usize, _total: usize) {}
}

/// Lines to stdout; progress to stderr when it is a terminal, at most ten times a second.
pub struct Terminal {
    tty: bool,
    shown: Option<Instant>,
}

impl Terminal {
    pub fn new() -> Terminal {
        Terminal {
            tty: std::io::stderr().is_terminal(),
            shown: None,
        }
    }

    /// Ends the progress line, if one is showing.
    pub fn done(&mut self) {
        if self.shown.take().is_some() {
            eprintln!();
        }
    }
}

impl Default for Terminal {
    fn default() -> Self {
        Terminal::new()
    }
}

impl Sink for Terminal {
    fn line(&mut self, line: &str) {
        if self.shown.take().is_some() {
            eprint!("\r\x1b[K");
        }
        println!("{line}");
    }

    fn progress(&mut self, stage: &str, done: usize, total: usize) {
        let recent = self
            .shown
            .is_some_and(|t| t.elapsed() < Duration::from_millis(100));
        if !self.tty || (recent && done < total) {
            return;
        }
        eprint!("\r\x1b[K{stage}: {done}/{total}");
        let _ = std::io::stderr().flush();
        self.shown = Some(Instant::now());
    }
}

/// Lines to the debug log; no progress.
pub struct DebugLog(pub &'static str);

impl Sink for DebugLog {
    fn line(&mut self, line: &str) {
        log::debug!("{}: {line}", self.0);
    }
}
