//! What `/metrics` reports, in Prometheus's text format: counters the server keeps in memory
//! (requests by endpoint and status, bytes in and out, failed logins, cache hits and misses,
//! collections) and gauges read at scrape time (what the registry holds, uploads in progress).
//! Rendering is pure: a snapshot in, text out.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

use crate::gc::GcReport;
use crate::index::queries::Holdings;

/// Counters, shared by every connection.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    pub login_failures: AtomicU64,
    pub cache_hits: AtomicU64,
    pub cache_misses: AtomicU64,
    pub cache_evictions: AtomicU64,
    pub cache_evicted_bytes: AtomicU64,
    pub upstream_bytes: AtomicU64,
    gc_runs: AtomicU64,
    gc_freed_bytes: AtomicU64,
    gc_last_run: AtomicI64,
}

/// Everything a scrape reports besides the counters.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub holdings: Holdings,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub in_flight: u64,
    pub upload_sessions: u64,
    pub started_at: i64,
}

impl Metrics {
    /// Counts one answered request.
    pub fn request(&self, endpoint: &'static str, status: u16) {
        let mut r = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        *r.entry((endpoint, status)).or_default() += 1;
    }

    /// Counts one collection.
    pub fn collected(&self, report: &GcReport, now: i64) {
        self.gc_runs.fetch_add(1, Ordering::Relaxed);
        self.gc_freed_bytes.fetch_add(
            report.deleted_bytes + report.orphan_bytes,
            Ordering::Relaxed,
        );
        self.gc_last_run.store(now, Ordering::Relaxed);
    }

    /// When the server last collected garbage (Unix seconds), if it has.
    pub fn gc_last_run(&self) -> Option<i64> {
        Some(self.gc_last_run.load(Ordering::Relaxed)).filter(|&t| t > 0)
    }

    /// The whole exposition.
    pub fn render(&self, s: &Snapshot) -> String {
        let mut out = String::with_capacity(4096);
        let requests = self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        header(
            &mut out,
            "atoll_http_requests_total",
            "counter",
            "Requests answered, by endpoint and status.",
        );
        for ((endpoint, status), n) in &requests {
            let _ = writeln!(
                out,
                "atoll_http_requests_total{{endpoint=\"{endpoint}\",status=\"{status}\"}} {n}"
            );
        }
        for (name, kind, help, v) in self.samples(s) {
            header(&mut out, name, kind, help);
            let _ = writeln!(out, "{name} {v}");
        }
        header(
            &mut out,
            "atoll_start_time_seconds",
            "gauge",
            "When atoll started (Unix time).",
        );
        let _ = writeln!(out, "atoll_start_time_seconds {}", s.started_at);
        header(
            &mut out,
            "atoll_build_info",
            "gauge",
            "Version and target of this build.",
        );
        let _ = writeln!(
            out,
            "atoll_build_info{{version=\"{}\",target=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION"),
            env!("ATOLL_TARGET")
        );
        out
    }

    /// Every metric that is one number: (name, type, help, value).
    fn samples(&self, s: &Snapshot) -> [(&'static str, &'static str, &'static str, u64); 18] {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let h = &s.holdings;
        [
            (
                "atoll_http_received_bytes_total",
                "counter",
                "Bytes received from clients.",
                s.bytes_in,
            ),
            (
                "atoll_http_sent_bytes_total",
                "counter",
                "Bytes sent to clients.",
                s.bytes_out,
            ),
            (
                "atoll_http_requests_in_flight",
                "gauge",
                "Requests received and not yet fully answered.",
                s.in_flight,
            ),
            (
                "atoll_login_failures_total",
                "counter",
                "Failed logins.",
                load(&self.login_failures),
            ),
            (
                "atoll_repositories",
                "gauge",
                "Repositories.",
                h.repositories,
            ),
            ("atoll_manifests", "gauge", "Manifests.", h.manifests),
            ("atoll_tags", "gauge", "Tags.", h.tags),
            (
                "atoll_blobs",
                "gauge",
                "Blobs stored (manifests' bytes included).",
                h.blobs,
            ),
            (
                "atoll_blob_bytes",
                "gauge",
                "Bytes of the blobs stored.",
                h.blob_bytes,
            ),
            (
                "atoll_upload_sessions",
                "gauge",
                "Upload sessions open in memory.",
                s.upload_sessions,
            ),
            (
                "atoll_cache_hits_total",
                "counter",
                "Pull-through cache hits.",
                load(&self.cache_hits),
            ),
            (
                "atoll_cache_misses_total",
                "counter",
                "Pull-through cache misses (fetched upstream).",
                load(&self.cache_misses),
            ),
            (
                "atoll_cache_evictions_total",
                "counter",
                "Cached manifests and blobs evicted.",
                load(&self.cache_evictions),
            ),
            (
                "atoll_cache_evicted_bytes_total",
                "counter",
                "Bytes freed by cache eviction.",
                load(&self.cache_evicted_bytes),
            ),
            (
                "atoll_upstream_received_bytes_total",
                "counter",
                "Bytes fetched from upstream registries.",
                load(&self.upstream_bytes),
            ),
            (
                "atoll_gc_runs_total",
                "counter",
                "Garbage collections run by the server.",
                load(&self.gc_runs),
            ),
            (
                "atoll_gc_freed_bytes_total",
                "counter",
                "Bytes freed by garbage collection.",
                load(&self.gc_freed_bytes),
            ),
            (
                "atoll_gc_last_run_timestamp_seconds",
                "gauge",
                "When the server last collected (Unix time; 0: never).",
                self.gc_last_run.load(Ordering::Relaxed).max(0) as u64,
            ),
        ]
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.request("manifest_get", 200);
        m.request("manifest_get", 200);
        m.request("blob_head", 404);
        m.collected(
            &GcReport {
                deleted_bytes: 10,
                orphan_bytes: 5,
                ..GcReport::default()
            },
            1234,
        );
        let text = m.render(&Snapshot {
            holdings: Holdings {
                blobs: 3,
                blob_bytes: 300,
                ..Holdings::default()
            },
            bytes_out: 99,
            ..Snapshot::default()
        });
        for line in [
            "atoll_http_requests_total{endpoint=\"manifest_get\",status=\"200\"} 2",
            "atoll_http_requests_total{endpoint=\"blob_head\",status=\"404\"} 1",
            "atoll_blobs 3",
            "atoll_blob_bytes 300",
            "atoll_http_sent_bytes_total 99",
            "atoll_gc_runs_total 1",
            "atoll_gc_freed_bytes_total 15",
            "atoll_gc_last_run_timestamp_seconds 1234",
            "# TYPE atoll_cache_hits_total counter",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        // Every sample line is `name{labels} value` with a numeric value.
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let v = l.rsplit(' ').next().unwrap();
            assert!(v.parse::<f64>().is_ok(), "{l}");
        }
    }
}
