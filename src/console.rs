//! What the command-line modes (`--gc`, `--verify`, the bundle modes) print: decisions as lines
//! on stdout, and, on a terminal only, one progress line on stderr ([`StatusLine`]). The same
//! operations run inside the server report to the log instead.

use std::cell::Cell;
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
    status: StatusLine,
    out: BufWriter<Stdout>,
    out_tty: bool,
}

impl Terminal {
    pub fn new() -> Terminal {
        Terminal {
            status: StatusLine::new(),
            out: BufWriter::with_capacity(64 * 1024, std::io::stdout()),
            out_tty: std::io::stdout().is_terminal(),
        }
    }

    /// Sends the lines still buffered and ends the progress line, if one is showing (it stays).
    pub fn done(&mut self) {
        let _ = self.out.flush();
        self.status.end(true);
    }
}

impl Default for Terminal {
    fn default() -> Self {
        Terminal::new()
    }
}

impl Sink for Terminal {
    fn line(&mut self, line: fmt::Arguments<'_>) {
        self.status.end(false);
        // A closed pipe (`atoll --gc | head`) must not stop the collection.
        let _ = writeln!(self.out, "{line}");
        if self.out_tty {
            let _ = self.out.flush();
        }
    }

    fn progress(&mut self, stage: &str, done: usize, total: usize) {
        self.status
            .draw(done >= total, || format!("{stage}: {done}/{total}"));
    }
}

/// One line on stderr, redrawn in place at most ten times a second, and only when stderr is a
/// terminal (journald and pipes get just the lines and summaries). `&self`, so a reader that
/// counts bytes can draw through a shared reference.
pub struct StatusLine {
    tty: bool,
    shown: Cell<Option<Instant>>,
}

impl StatusLine {
    const REDRAW: Duration = Duration::from_millis(100);

    pub fn new() -> StatusLine {
        StatusLine {
            tty: std::io::stderr().is_terminal(),
            shown: Cell::new(None),
        }
    }

    /// A line that is never drawn.
    pub fn silent() -> StatusLine {
        StatusLine {
            tty: false,
            shown: Cell::new(None),
        }
    }

    /// Whether anything is ever drawn (stderr is a terminal).
    pub fn shows(&self) -> bool {
        self.tty
    }

    /// Draws the line `text` makes, unless one was drawn less than a tenth of a second ago
    /// (`last`: draw anyway, it is the final state).
    pub fn draw(&self, last: bool, text: impl FnOnce() -> String) {
        let now = Instant::now();
        let recent = self.shown.get().is_some_and(|t| now - t < Self::REDRAW);
        if !self.tty || (recent && !last) {
            return;
        }
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r{}\x1b[K", text());
        let _ = err.flush();
        self.shown.set(Some(now));
    }

    /// Ends the line if one is showing: kept (a newline after it) or cleared.
    pub fn end(&self, keep: bool) {
        if self.shown.take().is_some() {
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(if keep { b"\n" } else { b"\r\x1b[K" });
            let _ = err.flush();
        }
    }
}

impl Default for StatusLine {
    fn default() -> Self {
        StatusLine::new()
    }
}

/// Lines to the debug log; no progress.
pub struct DebugLog(pub &'static str);

impl Sink for DebugLog {
    fn line(&mut self, line: fmt::Arguments<'_>) {
        log::debug!("{}: {line}", self.0);
    }
}
