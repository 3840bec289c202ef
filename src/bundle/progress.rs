//! Progress of long imports and exports: bytes done, of how many, how fast, on the one status
//! line a terminal shows (`console::StatusLine`).

use std::cell::Cell;
use std::io::{self, Read};
use std::time::{Duration, Instant};

use crate::console::StatusLine;
use crate::units::human_bytes as human;

/// One operation's progress line: bytes done, of how many, how fast.
pub struct Progress {
    label: String,
    total: Option<u64>,
    done: Cell<u64>,
    start: Instant,
    status: StatusLine,
}

impl Progress {
    /// A progress line for `label`, shown only if stderr is a terminal.
    pub fn new(label: &str, total: Option<u64>) -> Progress {
        Progress {
            label: label.to_owned(),
            total,
            done: Cell::new(0),
            start: Instant::now(),
            status: StatusLine::new(),
        }
    }

    /// A progress that shows nothing (the other end of a pipe shows the line).
    pub fn quiet() -> Progress {
        Progress {
            label: String::new(),
            total: None,
            done: Cell::new(0),
            start: Instant::now(),
            status: StatusLine::silent(),
        }
    }

    pub fn add(&self, n: u64) {
        self.done.set(self.done.get() + n);
        if self.status.shows() {
            let elapsed = self.start.elapsed();
            self.status.draw(false, || {
                line(&self.label, self.done.get(), self.total, elapsed)
            });
        }
    }

    /// Clears the line (the caller prints its summary next).
    pub fn finish(&self) {
        self.status.end(false);
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
    fn the_line_shows_share_and_rate() {
        let l = line(
            "bundle.tar",
            50_000_000,
            Some(200_000_000),
            Duration::from_secs(1),
        );
        assert_eq!(l, "bundle.tar: 47.7 MiB of 190.7 MiB (25%), 47.7 MiB/s");
        let l = line("x", 2_000, None, Duration::from_secs(2));
        assert_eq!(l, "x: 2.0 KiB, 1000 B/s");
    }
}
