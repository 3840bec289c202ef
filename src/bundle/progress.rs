//! Progress of long imports and exports on a terminal: one line on stderr, redrawn at most ten
//! times a second, and only when stderr is a terminal (journald and pipes get just the
//! summary). Also the byte counts the summaries print.

use std::cell::Cell;
use std::io::{self, IsTerminal, Read, Write};
use std::time::{Duration, Instant};

const REDRAW: Duration = Duration::from_millis(100);

/// One operation's progress line.
pub struct Progress {
    label: String,
    total: Option<u64>,
    done: Cell<u64>,
    start: Instant,
    last: Cell<Option<Instant>>,
    enabled: bool,
}

impl Progress {
    /// A progress line for `label`, shown only if stderr is a terminal.
    pub fn new(label: &str, total: Option<u64>) -> Progress {
        Progress {
            label: label.to_owned(),
            total,
            done: Cell::new(0),
            start: Instant::now(),
            last: Cell::new(None),
            enabled: io::stderr().is_terminal(),
        }
    }

    pub fn add(&self, n: u64) {
        self.done.set(self.done.get() + n);
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        if self.last.get().is_some_and(|t| now - t < REDRAW) {
            return;
        }
        self.last.set(Some(now));
        let line = line(&self.label, self.done.get(), self.total, now - self.start);
        let mut err = io::stderr().lock();
        let _ = write!(err, "\r{line}\x1b[K");
        let _ = err.flush();
    }

    /// Clears the line (the caller prints its summary next).
    pub fn finish(&self) {
        if self.enabled && self.last.get().is_some() {
            let _ = write!(io::stderr().lock(), "\r\x1b[K");
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

/// `label: 12.0 MB of 80.0 MB (15%), 40.0 MB/s`.
fn line(label: &str, done: u64, total: Option<u64>, elapsed: Duration) -> String {
    let rate = done as f64 / elapsed.as_secs_f64().max(0.001);
    match total {
        Some(t) if t > 0 => format!(
            "{label}: {} of {} ({}%), {}/s",
            human(done),
            human(t),
            (done.min(t) * 100) / t,
            human(rate as u64)
        ),
        _ => format!("{label}: {}, {}/s", human(done), human(rate as u64)),
    }
}

/// Decimal units, one decimal: `212.4 MB`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["kB", "MB", "GB", "TB", "PB"];
    if bytes < 1000 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1000.0;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// Counts the bytes read through it into a progress line.
pub struct Counting<'a, R> {
    pub inner: R,
    pub progress: &'a Progress,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.add(n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_a_person_would_say_them() {
        assert_eq!(human(0), "0 B");
        assert_eq!(human(999), "999 B");
        assert_eq!(human(212_400_000), "212.4 MB");
        assert_eq!(human(1_500_000_000), "1.5 GB");
    }

    #[test]
    fn the_line_shows_share_and_rate() {
        let l = line(
            "bundle.tar",
            50_000_000,
            Some(200_000_000),
            Duration::from_secs(1),
        );
        assert_eq!(l, "bundle.tar: 50.0 MB of 200.0 MB (25%), 50.0 MB/s");
        let l = line("x", 2_000, None, Duration::from_secs(2));
        assert_eq!(l, "x: 2.0 kB, 1.0 kB/s");
    }
}
