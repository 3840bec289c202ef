"""What the benchmark measures: one function per measure, each registered with `@measure`.

A measure function is called once per repetition and per registry, as `fn(ctx, reg, rep)`, and
returns {metric key: value} for the metrics it declared. The harness (bench.py) alternates which
registry goes first from one repetition to the next, takes the median of each metric, and
compares atoll with the reference. To add a measure, write one function here:

    @measure(Metric("thing_s", "thing time", "s", LOWER, goal=0.5))
    def thing(ctx, reg, rep):
        return {"thing_s": timed(["some", "command", reg.host])}

A metric with `placeholder=` is a row of the table that is not measured yet (the feature it
needs does not exist); give it a function that returns {} until it does.

`ctx` (a bench.Context) carries the configuration (`ctx.cfg`), the work directory, the private
dockerd, and the seed image that every registry holds as bench/seed:1 before measures run.
"""

import json
import os
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field

from registries import free_port, stop_pid

HIGHER, LOWER = "higher", "lower"
MB = 1_000_000  # throughput and memory figures are in decimal megabytes
MANIFEST_ACCEPT = ", ".join([
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
])


@dataclass
class Metric:
    key: str
    title: str
    unit: str
    better: str  # HIGHER or LOWER
    goal: float | None = None  # wanted ratio atoll/reference: >= goal if HIGHER, <= if LOWER
    placeholder: str | None = None  # why it is not measured yet


@dataclass
class Measure:
    name: str
    fn: object
    metrics: list
    restart: bool = False  # restart both registries (same data) before this measure
    before: object = None  # before(ctx, reg): once per registry before the repetitions
    needs_docker: bool = False


MEASURES = []


def measure(*metrics, restart=False, before=None, needs_docker=False):
    def register(fn):
        MEASURES.append(Measure(fn.__name__, fn, list(metrics), restart, before, needs_docker))
        return fn
    return register


# ---- helpers -------------------------------------------------------------------------------

def run(cmd, env=None, capture=False):
    """Runs a command; raises with its output if it fails."""
    r = subprocess.run(cmd, env=env, stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({r.returncode}): "
                           f"{r.stderr.strip()[-500:]}")
    return r.stdout


def timed(cmd, env=None):
    """Wall-clock seconds that a command takes (it must succeed)."""
    start = time.perf_counter()
    run(cmd, env=env)
    return time.perf_counter() - start


class RssSampler:
    """Samples a process's VmRSS every `interval` seconds in a thread; `peak` is the largest."""

    def __init__(self, pid, interval=0.02):
        self.path, self.interval, self.peak = f"/proc/{pid}/status", interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        while not self._stop.is_set():
            try:
                with open(self.path) as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            self.peak = max(self.peak, int(line.split()[1]) * 1024)
                            break
            except OSError:
                return
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def wrk(ctx, reg, path, method="GET", accept="", seconds=None):
    """Runs wrk against `path` with the configured connections and threads; returns its JSON
    report (see wrk-report.lua) plus `peak_rss` sampled during the run."""
    cfg = ctx.cfg
    seconds = seconds or cfg.duration
    env = {**os.environ, "WRK_METHOD": method, "WRK_ACCEPT": accept}
    cmd = ["wrk", f"-t{cfg.threads}", f"-c{cfg.connections}", f"-d{seconds}s",
           "-s", str(ctx.bench_dir / "wrk-report.lua"), f"http://{reg.host}{path}"]
    with RssSampler(reg.proc.pid) as rss:
        out = run(cmd, env=env, capture=True)
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    if not lines:
        raise RuntimeError(f"wrk printed no report: {out[-500:]}")
    report = json.loads(lines[-1])
    errors = report["errors"]
    if errors["status"] or errors["connect"] or report["requests"] == 0:
        raise RuntimeError(f"{reg.name} {method} {path}: {report['requests']} requests, "
                           f"errors {errors} (wrong URL or headers?)")
    report["peak_rss"] = rss.peak
    return report


def hey(ctx, reg, path, method="GET", seconds=None):
    """The same as `wrk` with hey, for HEAD: wrk cannot load HEAD (its parser waits for the
    body that Content-Length announces; wg/wrk#198). Returns wrk's report shape."""
    cfg = ctx.cfg
    seconds = seconds or cfg.duration
    cmd = ["hey", "-z", f"{seconds}s", "-c", str(cfg.connections), "-m", method,
           "-cpus", str(cfg.threads), f"http://{reg.host}{path}"]
    with RssSampler(reg.proc.pid) as rss:
        out = run(cmd, capture=True)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    codes = dict(re.findall(r"\[(\d{3})\]\s+(\d+) responses", out))
    pct = {int(p): float(v) for p, v in re.findall(r"(\d+)%+ in ([\d.]+) secs", out)}
    if not rps or set(codes) - {"200"} or "200" not in codes or "Error distribution" in out:
        raise RuntimeError(f"{reg.name} {method} {path}: hey says {out[-600:]}")
    return {"rps": float(rps.group(1)), "requests": int(codes["200"]), "peak_rss": rss.peak,
            "latency_us": {"p50": pct[50] * 1e6, "p90": pct[90] * 1e6, "p99": pct[99] * 1e6}}


# ---- cold start and idle memory ------------------------------------------------------------

@measure(
    Metric("cold_start_ms", "cold start to first 200 on /v2/", "ms", LOWER, goal=0.5),
    Metric("idle_rss_start_mb", "idle RSS after startup", "MB", LOWER, goal=0.25),
)
def cold_start(ctx, reg, rep):
    """Exec to the first 200 on /v2/ with a fresh data directory, polled every millisecond;
    then `settle` seconds of idleness and one VmRSS reading."""
    data = ctx.work / f"cold-{reg.name}-{rep}"
    shutil.rmtree(data, ignore_errors=True)
    proc, seconds = reg.spawn(data, free_port(), ctx.work / f"cold-{reg.name}.log")
    try:
        time.sleep(ctx.cfg.settle)
        with open(f"/proc/{proc.pid}/status") as f:
            rss = next(int(ln.split()[1]) * 1024 for ln in f if ln.startswith("VmRSS:"))
    finally:
        stop_pid(proc.pid)
        shutil.rmtree(data, ignore_errors=True)
    return {"cold_start_ms": seconds * 1000, "idle_rss_start_mb": rss / MB}


# ---- push and pull of the big image --------------------------------------------------------

@measure(Metric("push_s", "push {size} MB image (skopeo)", "s", LOWER, goal=0.8))
def push(ctx, reg, rep):
    """skopeo copy of a one-layer image from an OCI layout. The image is built fresh (random
    bytes) for each repetition and pushed to both registries, so each push is a real upload."""
    layout = ctx.fresh_image(rep)
    return {"push_s": timed(["skopeo", "copy", "-q", "--dest-tls-verify=false",
                             f"oci:{layout}:big", f"docker://{reg.host}/bench/push:{rep}"])}


@measure(Metric("pull_skopeo_s", "pull {size} MB image (skopeo, to dir:)", "s", LOWER, goal=1.0))
def pull_skopeo(ctx, reg, rep):
    out = ctx.work / f"pulled-{reg.name}"
    shutil.rmtree(out, ignore_errors=True)
    seconds = timed(["skopeo", "copy", "-q", "--src-tls-verify=false",
                     f"docker://{reg.host}/bench/seed:1", f"dir:{out}"])
    shutil.rmtree(out, ignore_errors=True)
    return {"pull_skopeo_s": seconds}


@measure(Metric("pull_docker_s", "pull {size} MB image (docker)", "s", LOWER, goal=1.0),
         needs_docker=True)
def pull_docker(ctx, reg, rep):
    """docker pull through the private dockerd (download, verify, extract to vfs); the image
    is removed after each pull so the next one downloads it again."""
    ref = f"{reg.host}/bench/seed:1"
    env = ctx.dockerd.env
    subprocess.run(["docker", "rmi", "-f", ref], env=env, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    seconds = timed(["docker", "pull", "-q", ref], env=env)
    run(["docker", "rmi", "-f", ref], env=env)
    return {"pull_docker_s": seconds}


def _curl_blob(ctx, reg):
    url = f"http://{reg.host}/v2/bench/seed/blobs/{ctx.seed['layer']}"
    out = run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{size_download} "
               "%{time_total}", url], capture=True).split()
    code, size, seconds = int(out[0]), int(out[1]), float(out[2])
    if code != 200 or size != ctx.seed["layer_size"]:
        raise RuntimeError(f"{reg.name}: GET blob answered {code} with {size} bytes")
    return size / seconds / MB


@measure(Metric("blob_get_mbps", "blob GET {size} MB (curl)", "MB/s", HIGHER, goal=1.0),
         before=lambda ctx, reg: _curl_blob(ctx, reg))
def blob_get(ctx, reg, rep):
    """One curl download of the seed layer to /dev/null (the file is in the page cache: the
    `before` download warms it), as bytes / curl's time_total."""
    return {"blob_get_mbps": _curl_blob(ctx, reg)}


# ---- small requests under load -------------------------------------------------------------

def _manifest_path(ctx):
    return "/v2/bench/seed/manifests/1"


def _blob_path(ctx):
    return f"/v2/bench/seed/blobs/{ctx.seed['layer']}"


def _warm_up(ctx, reg):
    wrk(ctx, reg, _manifest_path(ctx), accept=MANIFEST_ACCEPT, seconds=ctx.cfg.warmup)
    hey(ctx, reg, _blob_path(ctx), method="HEAD", seconds=ctx.cfg.warmup)


@measure(
    Metric("manifest_rps", "manifest GET by tag, {connections} conns", "req/s", HIGHER, goal=10),
    Metric("manifest_p50_ms", "manifest GET p50 latency", "ms", LOWER),
    Metric("manifest_p99_ms", "manifest GET p99 latency", "ms", LOWER, goal=0.2),
    Metric("head_rps", "blob HEAD, {connections} conns", "req/s", HIGHER, goal=10),
    Metric("head_p50_ms", "blob HEAD p50 latency", "ms", LOWER),
    Metric("head_p99_ms", "blob HEAD p99 latency", "ms", LOWER),
    Metric("peak_rss_mb", "peak RSS under load", "MB", LOWER, goal=0.5),
    Metric("idle_rss_after_mb", "idle RSS after the load settles", "MB", LOWER, goal=0.25),
    Metric("threads_after", "threads after the load", "-", LOWER),
    restart=True, before=_warm_up,
)
def small_requests(ctx, reg, rep):
    """`connections` keep-alive connections: manifest GET by tag (wrk), then blob HEAD (hey,
    since wrk cannot do HEAD), each for `duration` seconds. Both registries are restarted (same data) before this measure so
    its memory figures are those of serving small requests, not of the pushes before it. Peak
    RSS is the largest VmRSS sampled (every 20 ms) during the two runs; idle RSS is read
    `settle` seconds after them."""
    m = wrk(ctx, reg, _manifest_path(ctx), accept=MANIFEST_ACCEPT)
    h = hey(ctx, reg, _blob_path(ctx), method="HEAD")
    time.sleep(ctx.cfg.settle)
    ms = 1 / 1000
    return {
        "manifest_rps": m["rps"],
        "manifest_p50_ms": m["latency_us"]["p50"] * ms,
        "manifest_p99_ms": m["latency_us"]["p99"] * ms,
        "head_rps": h["rps"],
        "head_p50_ms": h["latency_us"]["p50"] * ms,
        "head_p99_ms": h["latency_us"]["p99"] * ms,
        "peak_rss_mb": max(m["peak_rss"], h["peak_rss"]) / MB,
        "idle_rss_after_mb": reg.memory().get("VmRSS", 0) / MB,
        "threads_after": reg.memory().get("Threads", 0),
    }


@measure(Metric("api_base_rps", "GET /v2/ (HTTP stack alone), {connections} conns", "req/s",
                HIGHER))
def api_base(ctx, reg, rep):
    """No goal: the ceiling of each server's HTTP layer (no index, no files) on this machine
    with this load client, to tell the cost of the storage path from the cost of HTTP."""
    return {"api_base_rps": wrk(ctx, reg, "/v2/")["rps"]}


# ---- not measured yet: the features do not exist ---------------------------------------------

@measure(Metric("gc_s", "GC over 10,000 manifests / 100,000 blobs", "s", LOWER, goal=0.1,
                placeholder="atoll --gc does not exist yet (reference: docker-registry "
                            "garbage-collect)"))
def gc(ctx, reg, rep):
    return {}


@measure(Metric("proxy_fanout", "proxy fan-out", "-", HIGHER,
                placeholder="pull-through proxy does not exist yet"))
def proxy_fanout(ctx, reg, rep):
    return {}


@measure(Metric("bundle_import_s", "bundle import", "s", LOWER,
                placeholder="bundle import does not exist yet"))
def bundle_import(ctx, reg, rep):
    return {}


def all_measures():
    return list(MEASURES)


@dataclass
class Samples:
    """Per metric key, per registry name: the values of each repetition."""
    values: dict = field(default_factory=dict)

    def add(self, reg, results):
        for key, value in results.items():
            self.values.setdefault(key, {}).setdefault(reg, []).append(value)
