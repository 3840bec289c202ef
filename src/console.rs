//! What the command-line modes (`--gc`, `--verify`) print: decisions as lines on stdout, and,
//! on a terminal only, progress on stderr. The same operations run inside the server report to
//! the log instead.

use std::fmt;
use std::io::{BufWriter, IsTerminal, Stdout, Write};
use std::time::{Duration, Instant};

/// Where a long operation reports what it decides (lines) and how far it is (progress). A line
/// comes as `format_args!`: formatted straight into the output, or not at all when nobody
/// listens (the debug log off), rather than into a string first (a collection can have
/// 100,000 lines to give).
pub trait Sink {
    fn line(&mut self, line: fmt::Arguments<'_>);
    fn progress(&mut self, _stage: &str, _done: usize, _total: usize) {}
}

/// Lines to stdout; progress to stderr when it is a terminal, at most ten times a second.
/// Lines to a file or pipe are buffered (a collection can list 100,000 blobs: one write each
/// cost a tenth of its time); to a terminal, each shows at once.
pub struct Terminal {
    tty: bool,
    out: BufWriter<Stdout>,
    out_tty: bool,
    shown: Option<Instant>,
}

impl Terminal {
    pub fn new() -> Terminal {
        Terminal {
            tty: std::io::stderr().is_terminal(),
            out: BufWriter::with_capacity(64 * 1024, std::io::stdout()),
            out_tty: std::io::stdout().is_terminal(),
            shown: None,
        }
    }

    /// Sends the lines still buffered and ends the progress line, if one is showing.
    pub fn done(&mut self) {
        let _ = self.out.flush();
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
    fn line(&mut self, line: fmt::Arguments<'_>) {
        if self.shown.take().is_some() {
            eprint!("\r\x1b[K");
        }
        // A closed pipe (`atoll --gc | head`) must not stop the collection.
        let _ = writeln!(self.out, "{line}");
        if self.out_tty {
            let _ = self.out.flush();
        }
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
    fn line(&mut self, line: fmt::Arguments<'_>) {
        log::debug!("{}: {line}", self.0);
    }
}
