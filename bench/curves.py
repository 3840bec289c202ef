#!/usr/bin/env python3
"""The scale curves: how a request's, a startup's, a collection's and a connection's cost grows
with what the registry holds and with the number of clients, atoll beside the reference at
every point of one run. Called by `bench/run.sh --curves` (which builds atoll first):

    curves.py --bin BIN [--smoke] [--points 1,10,100] [--only startup,latency,gc,clients,large]
              [--gc-points 10,100,1000] [--gc-media tmpfs,disk] [--clients 100,1000,5000]
              [--large-gb 5,20] [--reps N] [--duration S] [--out DIR]

Curves (each a table and a PNG under --out, default bench/results/curves/):
- startup: exec to the first 200 on /v2/ and idle RSS, on the scalestore.py store at each
  point (p = 1, 10, 100: 1k/10k/100k repositories, 10k/100k/1M blobs, a repository of
  1k/10k/100k tags, a subject with 100/1k/10k referrers);
- latency: p50 and p99 (wrk, 10 connections) of each small request on those stores;
- gc: collection time and peak memory over gcstore.py stores of 10k/100k/1M blobs (half of
  them garbage), on tmpfs and on the disk;
- clients: 100/1,000/5,000 keep-alive clients pulling one small image: memory per connection,
  p50/p99 of a request, errors;
- large: push (one streamed PATCH) and pull of one 5 GB and one 20 GB layer: seconds, the
  server's peak RSS, and the digest of what came back.

Stores are generated from a seeded PRNG and kept under bench/work/curves/ between runs (building
the p = 100 pair takes a while and is never timed); a store is rebuilt when its generator changes
(STORE_VERSION). Exit status: 0 when every point ran, 1 when one broke.
"""

import argparse
import hashlib
import http.client
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import gcstore
import measures
import report
import scalestore
from measures import MANIFEST_ACCEPT, MB, RssSampler, run
from registries import LOOPBACK, Atoll, Pids, Reference, free_port, proc_status, stop_pid

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
STORE_VERSION = 1  # bump when scalestore.py's content changes: cached stores are rebuilt
GB = 1_000_000_000


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bin", required=True)
    p.add_argument("--smoke", action="store_true", help="tiny points, 1 s loads: for CI")
    p.add_argument("--points", help="scale factors of the store (default 1,10,100)")
    p.add_argument("--only", help="curves to run (default startup,latency,gc,clients,large)")
    p.add_argument("--gc-points", help="GC stores in repositories of 1,000 blobs "
                                       "(default 10,100,1000)")
    p.add_argument("--gc-media", default="tmpfs,disk")
    p.add_argument("--clients", help="concurrent keep-alive clients (default 100,1000,5000)")
    p.add_argument("--large-gb", help="layer sizes in GB (default 5,20)")
    p.add_argument("--reps", type=int, help="repetitions per point (default 3)")
    p.add_argument("--duration", type=int, help="seconds per load (default 5)")
    p.add_argument("--out", type=Path)
    p.add_argument("--append", action="store_true",
                   help="keep the points already in --out's curves.json and add these (a "
                        "point measured again replaces the old one): a curve's points taken "
                        "in separate runs, each point's two registries still side by side")
    cfg = p.parse_args(argv)
    smoke = cfg.smoke
    floats = lambda s: [float(x) for x in s.split(",")]  # noqa: E731
    cfg.points = floats(cfg.points or ("0.01,0.05" if smoke else "1,10,100"))
    cfg.gc_points = [int(x) for x in (cfg.gc_points or ("1,2" if smoke else "10,100,1000"))
                     .split(",")]
    cfg.gc_media = cfg.gc_media.split(",")
    cfg.clients = [int(x) for x in (cfg.clients or ("10,50" if smoke else "100,1000,5000"))
                   .split(",")]
    cfg.large_gb = floats(cfg.large_gb or ("0.05" if smoke else "5,20"))
    cfg.only = (cfg.only or "startup,latency,gc,clients,large").split(",")
    cfg.reps = cfg.reps or (1 if smoke else 3)
    cfg.duration = cfg.duration or (1 if smoke else 5)
    cfg.settle = 0.3 if smoke else 2.0
    cfg.out = cfg.out or (BENCH / "work" / "curves-smoke" if smoke else
                          BENCH / "results" / "curves")
    unknown = set(cfg.only) - {"startup", "latency", "gc", "clients", "large"}
    if unknown:
        p.error(f"unknown curve {sorted(unknown)}")
    return cfg


def pstr(p):
    return f"{p:g}"


class Curves:
    """The run: configuration, the two registries' kinds, and every figure measured so far."""

    def __init__(self, cfg, work, pids):
        self.cfg, self.work, self.pids = cfg, work, pids
        self.atoll = Atoll(work, pids, Path(cfg.bin).resolve())
        self.reference = Reference(work, pids)
        self.rows = []  # {curve, metric, x, registry, value}
        self.errors = {}

    def add(self, curve, metric, x, reg, value):
        self.rows.append({"curve": curve, "metric": metric, "x": x, "registry": reg,
                          "value": value})
        print(f"  {curve} {metric} @ {x:,g}: {reg} {value:.4g}", flush=True)

    # ---- stores -------------------------------------------------------------------------------

    def store(self, p):
        """The pair of data directories holding scalestore.Store(p), built if missing."""
        base = self.work / "curves" / f"store-v{STORE_VERSION}-p{pstr(p)}"
        done = base / "done"
        if not done.exists():
            base.mkdir(parents=True, exist_ok=True)
            s = scalestore.Store(p)
            started = time.perf_counter()
            print(f"  building store p={pstr(p)}: {s.describe()}", flush=True)
            # Each half is kept once whole: the reference's tree at p = 100 takes a while.
            if not (base / "reference.done").exists():
                shutil.rmtree(base / "reference", ignore_errors=True)
                s.write_reference(base / "reference")
                (base / "reference.done").write_text("")
            shutil.rmtree(base / "atoll", ignore_errors=True)
            for stale in base.glob("oci-*"):  # an interrupted build's
                shutil.rmtree(stale)
            for layout in s.write_oci_layouts(base):
                run([self.atoll.binary, "--data-dir", str(base / "atoll"), "--log-level",
                     "error", "--import", layout])
            (base / "probe.json").write_text(json.dumps(
                {**s.probe(), "subject": s.subject_digest(), "middle_repo": s.middle_repo,
                 "middle_tag": s.middle_tag()}))
            done.write_text("")
            print(f"  store p={pstr(p)} built in {time.perf_counter() - started:.0f} s "
                  f"(not measured)", flush=True)
        return base, json.loads((base / "probe.json").read_text())

    def serve(self, reg, data, env_extra=None):
        """Starts `reg` on `data`; returns (process, port, seconds to the first 200)."""
        port = free_port()
        proc, seconds = reg.spawn(data, port, self.work / f"curves-{reg.name}.log", env_extra)
        reg.proc, reg.port = proc, port
        return proc, port, seconds

    # ---- startup and latency -------------------------------------------------------------------

    def startup(self, p, base):
        for rep in range(self.cfg.reps):
            for reg in self.pair(rep):
                proc, _, seconds = self.serve(reg, base / reg.name)
                try:
                    time.sleep(self.cfg.settle)
                    rss = proc_status(proc.pid)["VmRSS"]
                finally:
                    stop_pid(proc.pid)
                self.add("startup", "first_200_ms", p, reg.name, seconds * 1000)
                self.add("startup", "idle_rss_mb", p, reg.name, rss / MB)

    def requests(self, probe):
        """(name, method, path, atoll only) of each small request the latency curve times."""
        r = probe
        return [
            ("manifest GET by tag", "GET", f"/v2/{r['repo']}/manifests/t0", False),
            ("blob HEAD", "HEAD", f"/v2/{r['repo']}/blobs/{r['layer']}", False),
            ("tags page (n=100, last)", "GET",
             f"/v2/c/tags/tags/list?n=100&last={r['middle_tag']}", False),
            ("catalog page (n=100, last)", "GET",
             f"/v2/_catalog?n=100&last={r['middle_repo']}", False),
            ("referrers of a subject", "GET", f"/v2/c/refs/referrers/{r['subject']}", True),
            ("web: repositories page", "GET", "/ui/api/repos?n=20", True),
            ("web: filter", "GET", "/ui/api/repos?q=tags&n=20", True),
            ("web: a repository's tags", "GET",
             f"/ui/api/tags?repo=c/tags&n=50&last={r['middle_tag']}", True),
            ("web: summary", "GET", "/ui/api/summary", True),
            ("/metrics", "GET", "/metrics", True),
        ]

    def latency(self, p, base, probe):
        for reg in (self.atoll, self.reference):
            proc, port, _ = self.serve(reg, base / reg.name)
            try:
                for name, method, path, atoll_only in self.requests(probe):
                    if atoll_only and reg is not self.atoll:
                        continue
                    out = self.load(reg, method, path, connections=10)
                    self.add("latency", f"{name} p50_ms", p, reg.name,
                             out["latency_us"]["p50"] / 1000)
                    self.add("latency", f"{name} p99_ms", p, reg.name,
                             out["latency_us"]["p99"] / 1000)
            finally:
                stop_pid(proc.pid)

    def load(self, reg, method, path, connections, seconds=None, paths=None):
        """wrk (GET) or hey (HEAD) on `path` for the configured duration."""
        seconds = seconds or self.cfg.duration
        ctx = _LoadCtx(self.cfg, connections, seconds)
        accept = MANIFEST_ACCEPT if "/manifests/" in path else ""
        if method == "HEAD":
            return measures.hey(ctx, reg, path, method="HEAD", seconds=seconds)
        cmd, env = measures.wrk_command(ctx, reg.host, path, accept=accept, seconds=seconds,
                                        connections=connections)
        if paths:
            env["WRK_PATHS"] = ",".join(paths)
        with RssSampler(reg.proc.pid) as rss:
            out = run(cmd, env=env, capture=True)
        if '"requests":0,' in out and not paths:
            return self.slow(reg, path, accept)
        result = measures.wrk_report(out, f"{reg.name} {method} {path}")
        result["peak_rss"] = rss.peak
        return result

    def slow(self, reg, path, accept, n=3):
        """A request slower than the whole load (wrk finished none: the reference's catalog
        page at 100,000 repositories): `n` of them one after the other, timed to the last
        byte; p50 is their median and p99 their slowest."""
        took = []
        for _ in range(n):
            conn = http.client.HTTPConnection(LOOPBACK, reg.port, timeout=600)
            started = time.perf_counter()
            conn.request("GET", path, headers={"Accept": accept} if accept else {})
            r = conn.getresponse()
            r.read()
            took.append(time.perf_counter() - started)
            conn.close()
            if r.status != 200:
                raise RuntimeError(f"{reg.name} GET {path} answered {r.status}")
        took.sort()
        return {"latency_us": {"p50": took[n // 2] * 1e6, "p99": took[-1] * 1e6},
                "errors": {}, "rps": n / sum(took), "peak_rss": 0}

    def pair(self, rep):
        return (self.atoll, self.reference) if rep % 2 == 0 else (self.reference, self.atoll)

    # ---- garbage collection -------------------------------------------------------------------

    def gc(self, repos, medium):
        """Collections of a gcstore.py store of `repos` repositories (1,000 blobs each, half of
        them garbage) on `medium`, each registry in turn. Small stores are built once and
        copied afresh for each repetition; a million-blob store is built in place and collected
        once (two copies of the reference's 25 GB tree do not fit beside the rest)."""
        content = gcstore.Content(repos=repos, kept=100, deleted=50)
        x = content.blob_count
        in_place = repos >= 1000
        scratch = self.scratch(medium, f"gc-{repos}")
        try:
            for reg in (self.atoll, self.reference):
                data = scratch / reg.name
                pristine = self.work / "curves" / f"gc-v{STORE_VERSION}-{repos}-{reg.name}"
                if not in_place and not (pristine / ".done").exists():
                    shutil.rmtree(pristine, ignore_errors=True)
                    self.build_gc(reg, content, pristine)
                    (pristine / ".done").write_text("")
                for _ in range(1 if in_place else self.cfg.reps):
                    shutil.rmtree(data, ignore_errors=True)
                    if in_place:
                        self.build_gc(reg, content, data)
                    else:
                        run(["cp", "-a", str(pristine), str(data)])
                        (data / ".done").unlink()
                    seconds, peak = self.collect(reg, data)
                    left = measures._blob_files(reg, data)
                    if left != content.kept_digests():
                        raise RuntimeError(f"{reg.name} GC left {len(left)} blobs, expected "
                                           f"{len(content.kept_digests())}")
                    shutil.rmtree(data)
                    self.add(f"gc-{medium}", "seconds", x, reg.name, seconds)
                    self.add(f"gc-{medium}", "peak_rss_mb", x, reg.name, peak / MB)
        finally:
            self.drop_scratch(scratch)

    def build_gc(self, reg, content, pristine):
        started = time.perf_counter()
        if reg is self.atoll:
            for layout in content.write_oci_layouts(pristine.parent / f"{pristine.name}-oci"):
                run([reg.binary, "--data-dir", str(pristine), "--log-level", "error",
                     "--import", layout])
            proc, port, _ = self.serve(reg, pristine)
            measures._delete_manifests(proc, port, content, timeout=60)
        else:
            content.write_reference(pristine)
        print(f"  gc store ({content.describe()}) for {reg.name} built in "
              f"{time.perf_counter() - started:.0f} s (not measured)", flush=True)

    def collect(self, reg, data):
        """One offline collection of `data`: (seconds, peak RSS in bytes: the process's VmHWM,
        read every 10 ms; the rusage of a child is no good here, it counts the pages of the
        Python process it was forked from)."""
        if reg is self.atoll:
            cmd = [reg.binary, "--gc", "--gc-grace", "0s", "--log-level", "error",
                   "--data-dir", str(data)]
        else:
            config = data.parent / "reference-gc.yml"
            config.write_text("version: 0.1\nlog: { level: error }\nstorage:\n"
                              f"  filesystem: {{ rootdirectory: {data} }}\n"
                              "  delete: { enabled: true }\n")
            cmd = ["/usr/bin/docker-registry", "garbage-collect", str(config)]
        os.sync()
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        peak = 0
        while proc.poll() is None:
            peak = max(peak, proc_status(proc.pid).get("VmHWM", 0))
            time.sleep(0.01)
        seconds = time.perf_counter() - started
        if proc.returncode != 0:
            raise RuntimeError(f"{reg.name} GC failed ({proc.returncode}): "
                               f"{proc.stderr.read().decode()[-400:]}")
        return seconds, peak

    def scratch(self, medium, name):
        """A directory on `medium`: a private tmpfs (any number of inodes: the reference's
        million-blob tree has four million) or bench/work on the disk."""
        path = self.work / "curves" / f"scratch-{name}-{medium}"
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        if medium == "tmpfs":
            mount = ["mount", "-t", "tmpfs", "-o", "size=16g,nr_inodes=0", "tmpfs", str(path)]
            if subprocess.run(mount, stderr=subprocess.DEVNULL).returncode != 0:
                # Not root: /dev/shm, whose inodes (a few million) bound the store.
                path.rmdir()
                path = Path(tempfile.mkdtemp(prefix=f"atoll-curves-{name}-", dir="/dev/shm"))
        return path

    @staticmethod
    def drop_scratch(path):
        subprocess.run(["umount", str(path)], stderr=subprocess.DEVNULL)
        shutil.rmtree(path, ignore_errors=True)

    # ---- many clients -------------------------------------------------------------------------

    def clients(self, n, base, probe):
        """`n` keep-alive connections: memory per idle connection (RSS with them open, less
        RSS before, over n), then wrk with n connections pulling one image (its manifest by tag
        and its layers, round robin): p50, p99, errors."""
        limits = {"ATOLL_MAX_CONNECTIONS": str(2 * n + 100),
                  "ATOLL_MAX_CONNECTIONS_PER_ADDRESS": str(2 * n + 100)}
        for reg in (self.atoll, self.reference):
            proc, port, _ = self.serve(reg, base / reg.name,
                                       limits if reg is self.atoll else None)
            try:
                paths = [f"/v2/{probe['repo']}/manifests/t0", f"/v2/{probe['repo']}/blobs/"
                         f"{probe['layer']}"]
                self.load(reg, "GET", "/v2/", connections=10, seconds=1)  # warm
                time.sleep(0.5)
                before = proc_status(proc.pid)["VmRSS"]
                socks = []
                try:
                    for _ in range(n):
                        s = socket.create_connection((LOOPBACK, port))
                        s.sendall(f"GET /v2/ HTTP/1.1\r\nHost: {LOOPBACK}:{port}\r\n\r\n"
                                  .encode())
                        socks.append(s)
                    for s in socks:
                        s.settimeout(10)
                        if not s.recv(4096).startswith(b"HTTP/1.1 200"):
                            raise RuntimeError(f"{reg.name}: a connection was not answered 200")
                    time.sleep(self.cfg.settle)
                    held = proc_status(proc.pid)["VmRSS"]
                finally:
                    for s in socks:
                        s.close()
                self.add("clients", "kb_per_idle_connection", n, reg.name,
                         max(0, held - before) / n / 1000)
                out = self.load(reg, "GET", paths[0], connections=n, paths=paths)
                errors = sum(out["errors"].values())
                self.add("clients", "p50_ms", n, reg.name, out["latency_us"]["p50"] / 1000)
                self.add("clients", "p99_ms", n, reg.name, out["latency_us"]["p99"] / 1000)
                self.add("clients", "errors", n, reg.name, errors)
                self.add("clients", "req_per_s", n, reg.name, out["rps"])
                self.add("clients", "peak_rss_mb", n, reg.name, out["peak_rss"] / MB)
            finally:
                stop_pid(proc.pid)

    # ---- large blobs --------------------------------------------------------------------------

    def large(self, gb):
        """Push one layer of `gb` GB as one streamed PATCH and a PUT, then GET it back whole:
        seconds each, the server's peak RSS, and the digest of the bytes that came back."""
        size = int(gb * GB)
        digest = "sha256:" + _stream_digest(size)
        for reg in (self.atoll, self.reference):
            data = self.work / "curves" / f"large-{reg.name}"
            shutil.rmtree(data, ignore_errors=True)
            proc, port, _ = self.serve(reg, data)
            try:
                with RssSampler(proc.pid, interval=0.2) as rss:
                    started = time.perf_counter()
                    _push_stream(port, "big/layer", size, digest)
                    push_s = time.perf_counter() - started
                push_rss = rss.peak
                with RssSampler(proc.pid, interval=0.2) as rss:
                    started = time.perf_counter()
                    got = _pull_digest(port, "big/layer", digest)
                    pull_s = time.perf_counter() - started
                if got != digest:
                    raise RuntimeError(f"{reg.name} served {got} under {digest}")
                self.add("large", "push_mb_s", gb, reg.name, size / MB / push_s)
                self.add("large", "pull_mb_s", gb, reg.name, size / MB / pull_s)
                self.add("large", "push_peak_rss_mb", gb, reg.name, push_rss / MB)
                self.add("large", "pull_peak_rss_mb", gb, reg.name, rss.peak / MB)
            finally:
                stop_pid(proc.pid)
                shutil.rmtree(data, ignore_errors=True)


class _LoadCtx:
    """What measures.wrk_command and measures.hey read of a bench.Context."""

    def __init__(self, cfg, connections, seconds):
        self.bench_dir = BENCH
        self.cfg = argparse.Namespace(threads=2, connections=connections, duration=seconds)


CHUNK = 1 << 20


def _chunks(size):
    """`size` bytes of a repeatable stream: each MiB different (a counter in a random block),
    so nothing along the way can compress or deduplicate it."""
    block = bytearray(hashlib.shake_256(b"atoll-curves").digest(CHUNK))
    sent, n = 0, 0
    while sent < size:
        block[:8] = n.to_bytes(8, "little")
        take = min(CHUNK, size - sent)
        yield bytes(block[:take])
        sent, n = sent + take, n + 1


def _stream_digest(size):
    h = hashlib.sha256()
    for c in _chunks(size):
        h.update(c)
    return h.hexdigest()


def _push_stream(port, repo, size, digest):
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=600)
    conn.request("POST", f"/v2/{repo}/blobs/uploads/")
    r = conn.getresponse()
    r.read()
    if r.status != 202:
        raise RuntimeError(f"POST upload answered {r.status}")
    location = r.getheader("Location")
    conn.putrequest("PATCH", location)
    conn.putheader("Content-Type", "application/octet-stream")
    conn.putheader("Content-Length", str(size))
    conn.endheaders()
    for c in _chunks(size):
        conn.send(c)
    r = conn.getresponse()
    r.read()
    if r.status != 202:
        raise RuntimeError(f"PATCH answered {r.status}")
    location = r.getheader("Location")
    sep = "&" if "?" in location else "?"
    conn.request("PUT", f"{location}{sep}digest={digest}", headers={"Content-Length": "0"})
    r = conn.getresponse()
    r.read()
    if r.status != 201:
        raise RuntimeError(f"PUT answered {r.status}")
    conn.close()


def _pull_digest(port, repo, digest):
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=600)
    conn.request("GET", f"/v2/{repo}/blobs/{digest}")
    r = conn.getresponse()
    if r.status != 200:
        raise RuntimeError(f"GET blob answered {r.status}")
    h = hashlib.sha256()
    while True:
        c = r.read(CHUNK)
        if not c:
            break
        h.update(c)
    conn.close()
    return "sha256:" + h.hexdigest()


# ---- report -----------------------------------------------------------------------------------

def tables(rows):
    """Markdown: one table per curve, a row per (metric, x), atoll / reference / ratio."""
    out = []
    for curve in dict.fromkeys(r["curve"] for r in rows):
        out += [f"### {curve}", "", "| metric | x | atoll | reference | ratio |", "|---|---|---|---|---|"]
        cells = {}
        for r in rows:
            if r["curve"] == curve:
                cells.setdefault((r["metric"], r["x"]), {}).setdefault(r["registry"], []).append(
                    r["value"])
        metrics = list(dict.fromkeys(m for m, _ in cells))
        for metric, x in sorted(cells, key=lambda k: (metrics.index(k[0]), k[1])):
            by = cells[(metric, x)]
            a = _median(by.get("atoll"))
            ref = _median(by.get("reference"))
            ratio = f"{a / ref:.2f}x" if a is not None and ref else "-"
            xs = f"{x:,.0f}" if x >= 1 and x == int(x) else f"{x:g}"
            out.append(f"| {metric} | {xs} | {_fmt(a)} | {_fmt(ref)} | {ratio} |")
        out.append("")
    return "\n".join(out)


def _median(values):
    if not values:
        return None
    v = sorted(values)
    return v[len(v) // 2]


def _fmt(v):
    return "-" if v is None else f"{v:.3g}" if v < 1000 else f"{v:,.0f}"


def plots(rows, out):
    """One PNG per curve: a panel per metric, both axes on a log scale (y linear where a value
    is zero), atoll and the reference."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("  matplotlib missing: no plots (pip install matplotlib)", flush=True)
        return
    xlabel = {"startup": "store size factor p (1k p repositories, 10k p blobs)",
              "latency": "store size factor p", "clients": "concurrent clients",
              "large": "layer size (GB)"}
    for curve in dict.fromkeys(r["curve"] for r in rows):
        metrics = list(dict.fromkeys(r["metric"] for r in rows if r["curve"] == curve))
        cols = 2 if len(metrics) > 1 else 1
        nrows = -(-len(metrics) // cols)
        fig, axes = plt.subplots(nrows, cols, figsize=(6 * cols, 3 * nrows), squeeze=False)
        for ax, metric in zip(axes.flat, metrics):
            values = [r["value"] for r in rows if r["curve"] == curve and r["metric"] == metric]
            # Log-log: a cost that grows with the store is a slope, a flat one a level line.
            ax.set_yscale("log" if values and min(values) > 0 else "linear")
            for reg, style in (("atoll", "o-"), ("reference", "s--")):
                pts = {}
                for r in rows:
                    if r["curve"] == curve and r["metric"] == metric and r["registry"] == reg:
                        pts.setdefault(r["x"], []).append(r["value"])
                if pts:
                    xs = sorted(pts)
                    ax.plot(xs, [_median(pts[x]) for x in xs], style, label=reg)
            ax.set_xscale("log")
            ax.set_title(metric, fontsize=9)
            ax.set_xlabel(xlabel.get(curve, "blobs held") if curve[:2] != "gc" else
                          "blobs held (half garbage)", fontsize=8)
            ax.legend(fontsize=7)
            ax.grid(True, alpha=0.3)
        for ax in list(axes.flat)[len(metrics):]:
            ax.axis("off")
        fig.tight_layout()
        fig.savefig(out / f"{curve}.png", dpi=80)
        plt.close(fig)


def main(argv):
    cfg = parse_args(argv)
    work = BENCH / "work"
    (work / "curves").mkdir(parents=True, exist_ok=True)
    cfg.out.mkdir(parents=True, exist_ok=True)
    pids = Pids(work / "pids")
    cur = Curves(cfg, work, pids)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # 5,000 sockets, both ends
    info = report.machine(cfg.bin, REPO)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()

    def attempt(label, fn, *a):
        print(f"{label}:", flush=True)
        try:
            fn(*a)
        except Exception as e:  # a broken point is reported; the others still run
            cur.errors[label] = str(e).splitlines()[0][:300] if str(e) else repr(e)
            print(f"  {label} FAILED: {e}", flush=True)
            traceback.print_exc()

    try:
        for p in cfg.points:
            if {"startup", "latency", "clients"} & set(cfg.only):
                base, probe = cur.store(p)
                if "startup" in cfg.only:
                    attempt(f"startup p={pstr(p)}", cur.startup, p, base)
                if "latency" in cfg.only:
                    attempt(f"latency p={pstr(p)}", cur.latency, p, base, probe)
        if "clients" in cfg.only:
            base, probe = cur.store(cfg.points[0])
            for n in cfg.clients:
                attempt(f"clients {n}", cur.clients, n, base, probe)
        if "gc" in cfg.only:
            for medium in cfg.gc_media:
                for repos in cfg.gc_points:
                    attempt(f"gc {repos * 1000} blobs on {medium}", cur.gc, repos, medium)
        if "large" in cfg.only:
            for gb in cfg.large_gb:
                attempt(f"large {gb:g} GB", cur.large, gb)
    finally:
        for reg in (cur.atoll, cur.reference):
            reg.stop()
        measures.cleanup()
    info["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    info["seconds"] = round(time.monotonic() - started)
    runs, rows = [info], cur.rows
    previous = cfg.out / "curves.json"
    if cfg.append and previous.exists():
        old = json.loads(previous.read_text())
        fresh = {(r["curve"], r["metric"], r["x"]) for r in rows}
        rows = [r for r in old["rows"] if (r["curve"], r["metric"], r["x"]) not in fresh] + rows
        runs = old.get("runs", [old.get("machine")]) + runs
    (cfg.out / "curves.json").write_text(json.dumps({"runs": runs, "rows": rows,
                                                     "errors": cur.errors}, indent=1))
    md = tables(rows)
    dates = ", ".join(f"{r['date']} (atoll {r['atoll_commit']})" for r in runs)
    (cfg.out / "curves.md").write_text(f"# Scale curves\n\nRuns: {dates}.\n\n" + md)
    plots(rows, cfg.out)
    print("\n" + md)
    print(f"wrote {cfg.out}/curves.{{json,md}} and plots ({info['seconds']} s)")
    if cur.errors:
        print(f"BROKEN POINTS: {', '.join(cur.errors)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
