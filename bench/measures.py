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

import http.client
import json
import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import gcstore
from registries import (LOOPBACK, Atoll, Garage, Reference, cpu_seconds, free_port,
                        proc_status, reference_storage, stop_pid)

HIGHER, LOWER = "higher", "lower"
MB = 1_000_000  # throughput and memory figures are in decimal megabytes
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"  # make-image.sh's manifests
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
    goal_on: str = "ratio"  # "atoll": the goal bounds atoll's own figure, not atoll/reference
    note: str | None = None  # shown under the table
    only_index: str | None = None  # a row only when a registry's index is this engine


@dataclass
class Measure:
    name: str
    fn: object
    metrics: list
    restart: bool = False  # restart both registries (same data) before this measure
    before: object = None  # before(ctx, reg): once per registry before the repetitions
    needs_docker: bool = False
    after: object = None  # after(ctx): once after the repetitions, also when one failed
    stores: tuple = ("disk",)  # the --store modes it runs in
    atoll_only: bool = False  # called for atoll alone (its figures compare atoll with itself)
    indexes: tuple = ("sqlite", "postgres")  # the --index engines it runs with


MEASURES = []
SCRATCH = []  # directories outside bench/work (tmpfs) that bench.py removes on exit
SERVICES = []  # processes a measure started for itself (a Garage): stopped on exit


def measure(*metrics, restart=False, before=None, needs_docker=False, after=None,
            stores=("disk",), name=None, atoll_only=False, indexes=("sqlite", "postgres")):
    """Registers a measure. `stores`: the --store modes it runs in ("disk", "s3"); `indexes`:
    the --index engines it runs with; `name`: its name for --only when not the function's (a
    measure of each mode may share one)."""
    def register(fn):
        MEASURES.append(Measure(name or fn.__name__, fn, list(metrics), restart, before,
                                needs_docker, after, tuple(stores), atoll_only, tuple(indexes)))
        return fn
    return register


def cleanup():
    while SERVICES:
        SERVICES.pop().stop()
    while SCRATCH:
        shutil.rmtree(SCRATCH.pop(), ignore_errors=True)


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
    """Samples a process's VmRSS every `interval` seconds in a thread; `peak` is the largest.
    `cpu` is the CPU time (user + system, every thread) the process used inside the block: on a
    shared machine, CPU per request moves less than requests per second. `index_cpu` is the
    same of the registry's index server (`reg`'s PostgreSQL; 0 for SQLite or the reference)."""

    def __init__(self, pid, interval=0.02, reg=None):
        self.path, self.interval, self.peak = f"/proc/{pid}/status", interval, 0
        self.pid, self.cpu, self.index_cpu = pid, 0.0, 0.0
        self._index_cpu = getattr(reg, "index_cpu_seconds", lambda: 0.0)
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
        self._cpu_start, self._index_start = cpu_seconds(self.pid), self._index_cpu()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.cpu = cpu_seconds(self.pid) - self._cpu_start
        self.index_cpu = self._index_cpu() - self._index_start


def wrk_command(ctx, host, path, method="GET", accept="", seconds=None, threads=None,
                connections=None, body=None, unique=False):
    """wrk's command line and environment for a load on `path` (wrk-report.lua: `body`, a file
    sent with each request; `unique`, a suffix that makes each request's path its own)."""
    cfg = ctx.cfg
    env = {**os.environ, "WRK_METHOD": method, "WRK_ACCEPT": accept,
           "WRK_BODY_FILE": str(body or ""), "WRK_CONTENT_TYPE": MANIFEST_TYPE if body else "",
           "WRK_UNIQUE": "1" if unique else ""}
    cmd = ["wrk", f"-t{threads or cfg.threads}", f"-c{connections or cfg.connections}",
           f"-d{seconds or cfg.duration}s", "-s", str(ctx.bench_dir / "wrk-report.lua"),
           f"http://{host}{path}"]
    return cmd, env


def wrk_report(out, what):
    """wrk-report.lua's JSON line from wrk's output, checked: no errors, some requests."""
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    if not lines:
        raise RuntimeError(f"wrk printed no report: {out[-500:]}")
    report = json.loads(lines[-1])
    errors = report["errors"]
    if errors["status"] or errors["connect"] or report["requests"] == 0:
        raise RuntimeError(f"{what}: {report['requests']} requests, errors {errors} (wrong URL "
                           f"or headers?)")
    return report


def wrk(ctx, reg, path, method="GET", accept="", seconds=None, **load):
    """Runs wrk against `path` with the configured connections and threads; returns its JSON
    report (see wrk-report.lua) plus `peak_rss` sampled during the run, and the CPU time of the
    server (`cpu_s`) and of its index server (`index_cpu_s`, PostgreSQL) meanwhile."""
    cmd, env = wrk_command(ctx, reg.host, path, method, accept, seconds, **load)
    with RssSampler(reg.proc.pid, reg=reg) as rss:
        out = run(cmd, env=env, capture=True)
    report = wrk_report(out, f"{reg.name} {method} {path}")
    report["peak_rss"], report["cpu_s"], report["index_cpu_s"] = rss.peak, rss.cpu, rss.index_cpu
    return report


def hey(ctx, reg, path, method="GET", seconds=None):
    """The same as `wrk` with hey, for HEAD: wrk cannot load HEAD (its parser waits for the
    body that Content-Length announces; wg/wrk#198). Returns wrk's report shape."""
    cfg = ctx.cfg
    seconds = seconds or cfg.duration
    cmd = ["hey", "-z", f"{seconds}s", "-c", str(cfg.connections), "-m", method,
           "-cpus", str(cfg.threads), f"http://{reg.host}{path}"]
    with RssSampler(reg.proc.pid, reg=reg) as rss:
        out = run(cmd, capture=True)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    codes = dict(re.findall(r"\[(\d{3})\]\s+(\d+) responses", out))
    pct = {int(p): float(v) for p, v in re.findall(r"(\d+)%+ in ([\d.]+) secs", out)}
    if not rps or set(codes) - {"200"} or "200" not in codes or "Error distribution" in out:
        raise RuntimeError(f"{reg.name} {method} {path}: hey says {out[-600:]}")
    return {"rps": float(rps.group(1)), "requests": int(codes["200"]), "peak_rss": rss.peak,
            "cpu_s": rss.cpu, "index_cpu_s": rss.index_cpu,
            "latency_us": {"p50": pct[50] * 1e6, "p90": pct[90] * 1e6, "p99": pct[99] * 1e6}}


# ---- cold start and idle memory ------------------------------------------------------------

@measure(
    Metric("cold_start_ms", "cold start to first 200 on /v2/", "ms", LOWER, goal=0.5),
    Metric("idle_rss_start_mb", "idle RSS after startup", "MB", LOWER, goal=0.25),
    Metric("idle_anon_start_mb", "of which private (RssAnon: heap, stacks, written pages)", "MB",
           LOWER, note="the rest of RSS is the binary's own file pages, shared with the page "
                       "cache and reclaimable"),
)
def cold_start(ctx, reg, rep):
    """Exec to the first 200 on /v2/ with a fresh data directory, polled every millisecond;
    then `settle` seconds of idleness and one reading of VmRSS and RssAnon."""
    data = ctx.work / f"cold-{reg.name}-{rep}"
    shutil.rmtree(data, ignore_errors=True)
    proc, seconds = reg.spawn(data, free_port(), ctx.work / f"cold-{reg.name}.log")
    try:
        time.sleep(ctx.cfg.settle)
        memory = proc_status(proc.pid)
    finally:
        stop_pid(proc.pid)
        shutil.rmtree(data, ignore_errors=True)
    return {"cold_start_ms": seconds * 1000, "idle_rss_start_mb": memory["VmRSS"] / MB,
            "idle_anon_start_mb": memory["RssAnon"] / MB}


# ---- push and pull of the big image --------------------------------------------------------

@measure(Metric("push_s", "push {size} MB image (skopeo)", "s", LOWER, goal=0.8),
         stores=("disk", "s3"))
def push(ctx, reg, rep):
    """skopeo copy of a one-layer image from an OCI layout. The image is built fresh (random
    bytes) for each repetition and pushed to both registries, so each push is a real upload."""
    layout = ctx.fresh_image(rep)
    return {"push_s": timed(["skopeo", "copy", "-q", "--dest-tls-verify=false",
                             f"oci:{layout}:big", f"docker://{reg.host}/bench/push:{rep}"])}


@measure(Metric("pull_skopeo_s", "pull {size} MB image (skopeo, to dir:)", "s", LOWER, goal=1.0),
         stores=("disk", "s3"))
def pull_skopeo(ctx, reg, rep):
    out = ctx.work / f"pulled-{reg.name}"
    shutil.rmtree(out, ignore_errors=True)
    seconds = timed(["skopeo", "copy", "-q", "--src-tls-verify=false",
                     f"docker://{reg.host}/bench/seed:1", f"dir:{out}"])
    shutil.rmtree(out, ignore_errors=True)
    return {"pull_skopeo_s": seconds}


@measure(Metric("pull_docker_s", "pull {size} MB image (docker)", "s", LOWER, goal=1.0),
         needs_docker=True, stores=("disk", "s3"))
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
         before=lambda ctx, reg: _curl_blob(ctx, reg), stores=("disk", "s3"))
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
    Metric("manifest_cpu_us", "manifest GET: server CPU per request", "us", LOWER),
    Metric("manifest_index_cpu_us", "manifest GET: PostgreSQL's CPU per request", "us", LOWER,
           only_index="postgres",
           note="every process of the PostgreSQL server (its backends, checkpointer, "
                "autovacuum) during the load; 0 for an index in SQLite, whose work is in the "
                "server's own figure"),
    Metric("manifest_all_cpu_us", "manifest GET: server + PostgreSQL CPU per request", "us",
           LOWER, only_index="postgres"),
    Metric("head_rps", "blob HEAD, {connections} conns", "req/s", HIGHER, goal=10),
    Metric("head_p50_ms", "blob HEAD p50 latency", "ms", LOWER),
    Metric("head_p99_ms", "blob HEAD p99 latency", "ms", LOWER),
    Metric("head_cpu_us", "blob HEAD: server CPU per request", "us", LOWER),
    Metric("head_index_cpu_us", "blob HEAD: PostgreSQL's CPU per request", "us", LOWER,
           only_index="postgres"),
    Metric("head_all_cpu_us", "blob HEAD: server + PostgreSQL CPU per request", "us", LOWER,
           only_index="postgres"),
    Metric("peak_rss_mb", "peak RSS under load", "MB", LOWER, goal=0.5),
    Metric("idle_rss_after_mb", "idle RSS after the load settles", "MB", LOWER, goal=0.25),
    Metric("threads_after", "threads after the load", "-", LOWER),
    restart=True, before=_warm_up, stores=("disk", "s3"),
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
    if isinstance(reg, Atoll):  # PostgreSQL's share (0 on SQLite); the reference has no index
        out = {"manifest_index_cpu_us": m["index_cpu_s"] / m["requests"] * 1e6,
               "head_index_cpu_us": h["index_cpu_s"] / h["requests"] * 1e6}
    else:
        out = {}
    return out | {
        "manifest_rps": m["rps"],
        "manifest_p50_ms": m["latency_us"]["p50"] * ms,
        "manifest_p99_ms": m["latency_us"]["p99"] * ms,
        "manifest_cpu_us": m["cpu_s"] / m["requests"] * 1e6,
        "manifest_all_cpu_us": (m["cpu_s"] + m["index_cpu_s"]) / m["requests"] * 1e6,
        "head_rps": h["rps"],
        "head_p50_ms": h["latency_us"]["p50"] * ms,
        "head_p99_ms": h["latency_us"]["p99"] * ms,
        "head_cpu_us": h["cpu_s"] / h["requests"] * 1e6,
        "head_all_cpu_us": (h["cpu_s"] + h["index_cpu_s"]) / h["requests"] * 1e6,
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


def _seed_manifest(ctx):
    """The file of the seed's manifest (in its OCI layout), the body of the tag PUT loads."""
    return ctx.work / "oci" / "seed" / "blobs" / "sha256" / ctx.seed["manifest"].split(":")[1]


def _write_seconds(ctx):
    """A write load lasts `duration`, at least 3 s: a 1 s smoke load can end before the first
    of 50 queued writes is answered."""
    return max(ctx.cfg.duration, 3)


@measure(
    Metric("tag_put_rps", "tag PUT (the seed's manifest under a new tag each), {connections} "
           "conns", "req/s", HIGHER,
           note="information, no goal: every request is one write transaction of the index "
                "(and, on S3, a PUT of the manifest's bytes and a HEAD inside the transaction); "
                "writes run one at a time in SQLite and across a PostgreSQL cluster alike"),
    Metric("tag_put_p50_ms", "tag PUT p50 latency", "ms", LOWER),
    Metric("tag_put_p99_ms", "tag PUT p99 latency", "ms", LOWER),
    Metric("tag_put_cpu_us", "tag PUT: server CPU per request", "us", LOWER),
    Metric("tag_put_all_cpu_us", "tag PUT: server + PostgreSQL CPU per request", "us", LOWER,
           only_index="postgres"),
    stores=("disk", "s3"))
def tag_put(ctx, reg, rep):
    """wrk PUTs the seed's manifest to bench/seed under a tag of its own each time
    (wrk-report.lua's WRK_UNIQUE): the write path's ceiling. The tags stay (measures after this
    one read other names)."""
    w = wrk(ctx, reg, f"/v2/bench/seed/manifests/put{rep}", method="PUT",
            seconds=_write_seconds(ctx), body=_seed_manifest(ctx), unique=True)
    return {"tag_put_rps": w["rps"], "tag_put_p50_ms": w["latency_us"]["p50"] / 1000,
            "tag_put_p99_ms": w["latency_us"]["p99"] / 1000,
            "tag_put_cpu_us": w["cpu_s"] / w["requests"] * 1e6,
            "tag_put_all_cpu_us": (w["cpu_s"] + w["index_cpu_s"]) / w["requests"] * 1e6}


# ---- garbage collection ----------------------------------------------------------------------

def _scratch(ctx, name, need_bytes):
    """A directory for a measure's stores: on tmpfs (/dev/shm) when it has room, so that the
    figure is the collector's work and not the shared disk's queue; else under bench/work."""
    base = Path("/dev/shm")
    if base.is_dir() and shutil.disk_usage(base).free > 2 * need_bytes:
        path = Path(tempfile.mkdtemp(prefix=f"atoll-bench-{name}-", dir=base))
    else:
        path = ctx.work / name
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
    SCRATCH.append(path)
    return path


def _delete_manifests(proc, port, content, timeout):
    """DELETEs through atoll's API each manifest the GC store means to delete, then stops the
    atoll `proc` serving on `port` and lets the deletions age past a one-second grace cutoff."""
    try:
        conn = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout)
        for repo, digest in content.deletions():
            conn.request("DELETE", f"/v2/{repo}/manifests/{digest}")
            r = conn.getresponse()
            r.read()
            if r.status != 202:
                raise RuntimeError(f"atoll: DELETE {repo}@{digest} answered {r.status}")
        conn.close()
    finally:
        stop_pid(proc.pid)
    time.sleep(1.1)  # the grace cutoff has a resolution of a second


def _gc_setup(ctx, reg):
    """Once per registry: its pristine store, copied afresh for each repetition. atoll's is
    made by `atoll --import` of the generated OCI layout, then a DELETE through the API of
    each manifest meant to be deleted; the reference's is written directly in its layout
    (gcstore.py says why that is the same as pushing and deleting through its API)."""
    if getattr(ctx, "gc", None) is None:
        content = (gcstore.Content(repos=2, kept=10, deleted=5) if ctx.cfg.smoke
                   else gcstore.Content(repos=ctx.cfg.gc_repos))
        ctx.gc = {"content": content, "root": _scratch(ctx, "gc", 4 << 30)}
        ctx.cfg.gc_store = (f"{content.manifests_present:,} manifests / "
                            f"{content.blob_count:,} blobs")
        ctx.cfg.gc_garbage = f"{content.garbage_blobs:,}"
        print(f"  gc store: {content.describe()}", flush=True)
    content, root = ctx.gc["content"], ctx.gc["root"]
    pristine = root / f"{reg.name}-pristine"
    started = time.perf_counter()
    if reg.name == "atoll":
        layout = root / "oci"
        content.write_oci_layout(layout)
        run([reg.binary, "--data-dir", str(pristine), "--log-level", "error", "--import",
             str(layout)] + reg.index_flags(pristine), env=reg.env())
        shutil.rmtree(layout)
        port = free_port()
        proc, _ = reg.spawn(pristine, port, ctx.work / "gc-atoll.log")
        _delete_manifests(proc, port, content, timeout=30)
    else:
        content.write_reference(pristine)
    print(f"  gc store for {reg.name} built in {time.perf_counter() - started:.0f} s "
          f"(not measured)", flush=True)


def _blob_files(reg, data):
    """The hex digests of the blob files in a data directory."""
    base = data / "blobs" / "sha256" if reg.name == "atoll" else \
        data / "docker" / "registry" / "v2" / "blobs" / "sha256"
    found = set()
    for fan in os.scandir(base):
        for entry in os.scandir(fan.path):
            if reg.name == "atoll" or os.path.exists(os.path.join(entry.path, "data")):
                found.add(entry.name)
    return found


@measure(Metric("gc_s", "GC: {gc_store}, {gc_garbage} garbage blobs", "s", LOWER, goal=0.1,
                note="both keep untagged manifests (atoll --gc --gc-grace 0s; docker-registry "
                     "garbage-collect without --delete-untagged); same store, checked to delete "
                     "the same blobs; stores on tmpfs when /dev/shm has room"),
         before=_gc_setup, after=lambda ctx: cleanup())
def gc(ctx, reg, rep):
    """One offline collection of a fresh copy of the store (the copy is not timed). Both
    registries must leave exactly the blobs of the kept manifests (their manifests' own bytes
    included) and nothing else, or the measure fails."""
    content, root = ctx.gc["content"], ctx.gc["root"]
    data = root / f"{reg.name}-run"
    shutil.rmtree(data, ignore_errors=True)
    run(["cp", "-a", str(root / f"{reg.name}-pristine"), str(data)])
    env = None
    if reg.name == "atoll":
        if reg.index is not None:
            reg.index.copy(root / "atoll-pristine", data)
        cmd = [reg.binary, "--gc", "--gc-grace", "0s", "--log-level", "error",
               "--data-dir", str(data)] + reg.index_flags(data)
        env = reg.env()
    else:
        config = root / "reference-gc.yml"
        config.write_text("version: 0.1\nlog: { level: error }\nstorage:\n"
                          f"  filesystem: {{ rootdirectory: {data} }}\n"
                          "  delete: { enabled: true }\n")
        cmd = ["/usr/bin/docker-registry", "garbage-collect", str(config)]
    os.sync()
    seconds = timed(cmd, env=env)
    left = _blob_files(reg, data)
    kept = content.kept_digests()
    if left != kept:
        raise RuntimeError(f"{reg.name} GC left {len(left)} blobs, expected {len(kept)}: "
                           f"{len(left - kept)} garbage left, {len(kept - left)} kept ones gone")
    if reg.name == "atoll":
        doomed = _doomed_batches(reg, data)
        if doomed:
            raise RuntimeError(f"atoll GC left {doomed} files doomed but not unlinked")
        if reg.index is not None:
            reg.index.drop(data)
    shutil.rmtree(data, ignore_errors=True)
    return {"gc_s": seconds}


def _doomed_batches(reg, data):
    """How many batches of deletions atoll's index (of data directory `data`) still holds."""
    sql = "SELECT count(*) FROM doomed_batches"
    if reg.index is not None:
        return int(reg.index.query(data, sql))
    with sqlite3.connect(data / "index.db") as db:
        return db.execute(sql).fetchone()[0]


# ---- pull-through cache: fan-out --------------------------------------------------------------

class _Upstream(Atoll):
    """An atoll with its access log on: the upstream, whose log counts the bytes it serves."""
    name = "upstream"

    def command(self, data, port):
        cmd = super().command(data, port)
        cmd[cmd.index("--log-level") + 1] = "info"
        return cmd


class _AtollCache(Atoll):
    name = "atoll"

    def __init__(self, work, pids, binary, upstream, index=None):
        super().__init__(work, pids, binary, index=index)
        self.upstream = upstream

    def command(self, data, port):
        return super().command(data, port) + ["--upstream", f"http://{self.upstream}"]


class _ReferenceCache(Reference):
    name = "reference"

    def __init__(self, work, pids, upstream):
        super().__init__(work, pids)
        self.upstream = upstream

    def command(self, data, port):
        cmd = super().command(data, port)
        config = Path(cmd[-1])
        config.write_text(config.read_text() + f"proxy: {{ remoteurl: http://{self.upstream} }}\n")
        return cmd


# One-way latency of the modelled uplink (bench/relay.py): 10 ms, a 20 ms round trip, the near
# end of an edge site's WAN (10-50 ms).
UPLINK_DELAY_MS = 10


class _Uplink:
    """bench/relay.py in front of the upstream: the same upstream as across a WAN."""

    def __init__(self, ctx, pids, upstream):
        self.port = free_port()
        ready = ctx.work / "proxy" / "relay.ready"
        ready.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            ["python3", str(ctx.bench_dir / "relay.py"), "--listen", str(self.port),
             "--to", upstream, "--delay-ms", str(UPLINK_DELAY_MS), "--ready", str(ready)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        pids.add(self.proc.pid)
        deadline = time.monotonic() + 10
        while not ready.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                stop_pid(self.proc.pid)
                raise RuntimeError("bench/relay.py did not start")
            time.sleep(0.01)

    @property
    def host(self):
        return f"{LOOPBACK}:{self.port}"

    def stop(self):
        stop_pid(self.proc.pid)


def _proxy_setup(ctx, reg):
    """Once: an upstream atoll (access log on) holding the seed image, and the relay that
    models an uplink in front of it."""
    if getattr(ctx, "upstream", None) is not None:
        return
    atoll = ctx.registries[0]
    up = _Upstream(ctx.work, atoll.pids, atoll.binary, index=atoll.index)
    up.data = ctx.work / "proxy" / "upstream-data"
    up.start(fresh=True)
    ctx.upstream = up
    run(["skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{ctx.work / 'oci' / 'seed'}:big",
         f"docker://{up.host}/bench/seed:1"])
    ctx.uplink = _Uplink(ctx, atoll.pids, up.host)


def _proxy_teardown(ctx):
    if getattr(ctx, "uplink", None) is not None:
        ctx.uplink.stop()
        ctx.uplink = None
    if getattr(ctx, "upstream", None) is not None:
        ctx.upstream.stop()
        ctx.upstream = None


def _cache(ctx, reg, upstream=None):
    """A cache of the upstream (or of `upstream`, HOST:PORT) on a fresh data directory: atoll
    --upstream, or the reference with `proxy: remoteurl:`."""
    up, data = upstream or ctx.upstream.host, ctx.work / "proxy" / f"{reg.name}-cache"
    shutil.rmtree(data, ignore_errors=True)
    cache = (_AtollCache(ctx.work, reg.pids, reg.binary, up, index=reg.index)
             if reg.name == "atoll"
             else _ReferenceCache(ctx.work, reg.pids, up))
    cache.data = data
    cache.start(fresh=True)
    return cache


def _stop_cache(cache):
    cache.stop()
    shutil.rmtree(cache.data, ignore_errors=True)


CURL_FMT = "%{http_code} %{size_download} %{time_starttransfer} %{time_total}\n"


def _pull(host, ctx):
    """The command of one client's pull: the seed's manifest by tag, then its layer, on one
    connection; curl prints one line per transfer."""
    base = f"http://{host}/v2/bench/seed"
    return ["curl", "-sS", "-H", f"Accept: {MANIFEST_ACCEPT}", "-w", CURL_FMT,
            "-o", "/dev/null", f"{base}/manifests/1",
            "-o", "/dev/null", f"{base}/blobs/{ctx.seed['layer']}"]


def _pulled(out, what, ctx):
    """(bytes, seconds from the start to the layer's first byte, the layer GET's own time to
    first byte) of one client's pull, checked."""
    lines = [ln.split() for ln in out.strip().splitlines()]
    if len(lines) != 2 or lines[0][0] != "200" or lines[1][0] != "200" \
            or int(lines[1][1]) != ctx.seed["layer_size"]:
        raise RuntimeError(f"{what}: a client got {out!r}")
    return (int(lines[0][1]) + int(lines[1][1]),
            float(lines[0][3]) + float(lines[1][2]), float(lines[1][2]))


def _layer_first_byte(host, ctx, what, start=None):
    """A client's pull of the seed up to the layer's first byte, on one new connection: the
    manifest by tag, then the layer GET; seconds from sending the layer GET to the first byte
    of the layer itself. It hangs up then: across the modelled uplink the rest of the layer
    would only cost time. With `start` (a threading.Barrier), it connects, waits for the other
    clients, and counts from the barrier's release (the manifest GET included)."""
    name, port = host.rsplit(":", 1)
    c = http.client.HTTPConnection(name, int(port), timeout=60)
    try:
        if start is not None:
            c.connect()
            start.wait()
            released = time.perf_counter()
        c.request("GET", "/v2/bench/seed/manifests/1", headers={"Accept": MANIFEST_ACCEPT})
        r = c.getresponse()
        r.read()
        if r.status != 200:
            raise RuntimeError(f"{what}: the manifest GET answered {r.status}")
        started = time.perf_counter()
        c.request("GET", f"/v2/bench/seed/blobs/{ctx.seed['layer']}")
        r = c.getresponse()
        first = r.read(1)
        seconds = time.perf_counter() - (started if start is None else released)
        if r.status != 200 or len(first) != 1:
            raise RuntimeError(f"{what}: the layer GET answered {r.status} ({len(first)} bytes)")
        return seconds
    finally:
        c.close()


def _log_bytes(path, offset):
    """Bytes of response bodies in an atoll access log from `offset` on."""
    with open(path, "rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
    return sum(int(n) for n in re.findall(r'" \d{3} (\d+)B ', text))


@measure(
    Metric("proxy_total_s", "proxy fan-out: {clients} clients pull the uncached {size} MB image",
           "s", LOWER),
    Metric("proxy_upstream_x", "proxy fan-out: bytes the upstream served / one pull", "x", LOWER,
           goal=1.01, goal_on="atoll",
           note="1.01, not 1: clients that ask before the manifest is cached each fetch it "
                "(a few hundred bytes); the layer must be fetched once"),
    Metric("proxy_ttfb_ms", "proxy fan-out: first client's time to the layer's first byte", "ms",
           LOWER),
    Metric("proxy_ttfb_direct_ms", "the same {clients} clients straight from the upstream", "ms",
           LOWER),
    Metric("proxy_ttfb_x", "fan-out first byte, uncached through the cache / straight from upstream",
           "x", LOWER, note="information: the first client's clock runs while the other "
                            "curl processes are being started (50 take ~180 ms on this 2-core "
                            "machine); straight from the upstream its answer comes in ~1 ms, "
                            "before most of them, while the cache's cold work (~5 ms alone) "
                            "shares the cores with them. The uplink fan-out rows below release "
                            "{clients} clients together instead"),
    Metric("proxy_solo_ms", "one client alone, cold cache: time to the layer's first byte", "ms",
           LOWER),
    Metric("proxy_direct_ms", "the same straight from the upstream, no cache", "ms", LOWER),
    Metric("proxy_solo_x", "cold pull through the cache / straight from upstream (first byte)",
           "x", LOWER,
           note="on loopback the direct figure is about a millisecond, so this ratio is the "
                "cache's fixed cost per cold pull (manifest fetch and upstream round trips)"),
    Metric("proxy_layer_ms", "that cold pull: the layer GET's time to first byte", "ms", LOWER),
    Metric("proxy_layer_direct_ms", "the same layer GET straight from the upstream", "ms", LOWER),
    Metric("proxy_layer_x", "layer GET's first byte, cold cache / straight from upstream", "x",
           LOWER,
           note="information: on loopback the upstream answers in 0.2-0.4 ms, so this ratio "
                "is the cache's fixed cost per cold blob (route lookup, temporary file, the "
                "upstream exchange) as a multiple of almost nothing; the goal is judged over "
                "the modelled uplink below"),
    Metric("proxy_uplink_layer_ms", f"over a {2 * UPLINK_DELAY_MS} ms RTT uplink, cold cache: "
           "layer GET to the layer's first byte", "ms", LOWER),
    Metric("proxy_uplink_direct_ms", "the same straight from the upstream across the uplink",
           "ms", LOWER),
    Metric("proxy_uplink_layer_x", "layer's first byte over the uplink, cold cache / straight "
           "from upstream", "x", LOWER, goal=1.2, goal_on="atoll",
           note="the goal row: the upstream behind bench/relay.py, which delays every piece "
                f"by {UPLINK_DELAY_MS} ms each way and a new connection by one more round "
                "trip (a TCP handshake); the client asks for the manifest, then the layer, on "
                "one connection, both ways. A cache that streams its fill and reuses its "
                "upstream connection answers about when the upstream does"),
    Metric("proxy_uplink_fan_ms", "over the uplink, {clients} clients at once, cold cache: median "
           "time to the layer's first byte", "ms", LOWER),
    Metric("proxy_uplink_fan_direct_ms", "the same {clients} clients straight from the upstream "
           "across the uplink", "ms", LOWER),
    Metric("proxy_uplink_fan_x", "{clients} clients' first byte over the uplink, cold cache / "
           "straight from upstream", "x", LOWER, goal=1.2, goal_on="atoll",
           note="the fan-out goal row: {clients} threads, each on its own new connection, "
                "released together; each asks for the manifest and then the layer and hangs up "
                "at the layer's first byte; time from the release, median of the clients"),
    before=_proxy_setup, after=_proxy_teardown)
def proxy_fanout(ctx, reg, rep):
    """A fresh cache in front of the upstream atoll: atoll --upstream, or the reference with
    `proxy: remoteurl:`. `clients` curls are started at once, each pulling bench/seed:1 (the
    manifest by tag, then the layer, on one connection), which the cache does not hold; total
    is from the first start to the last exit. The upstream's access log gives the bytes it
    served, compared with one pull's (manifest + layer). The first client is the first
    started: its time from start to the layer's first byte (manifest total + layer
    time_starttransfer) is compared with the same pull straight from the upstream just before
    (median of 3). The same time is also taken for one client alone on another fresh cache:
    what a cold pull costs when nothing else runs. Then the goal's variant, across the modelled
    uplink (bench/relay.py in front of the upstream): the layer's first byte straight through
    the relay and through a fresh cache of the relay (`_cold_over_uplink`)."""
    up = ctx.upstream
    directs = [_pulled(run(_pull(up.host, ctx), capture=True), "direct", ctx) for _ in range(3)]
    image = directs[0][0]
    direct = statistics.median(d[1] for d in directs)
    direct_layer = statistics.median(d[2] for d in directs)
    solo = _cache(ctx, reg)
    try:
        _, solo_s, solo_layer = _pulled(run(_pull(solo.host, ctx), capture=True),
                                        f"{reg.name} solo", ctx)
    finally:
        _stop_cache(solo)
    uplink = _cold_over_uplink(ctx, reg)
    _, direct_pulls = _fan_out(up.host, ctx, "direct")
    cache = _cache(ctx, reg)
    try:
        log = ctx.work / "upstream.log"
        offset = log.stat().st_size
        total, pulls = _fan_out(cache.host, ctx, f"{reg.name} cache")
        # The upstream logs a response once it is sent: wait for the log to settle.
        upstream_bytes, still = _log_bytes(log, offset), 0
        while still < 5:
            time.sleep(0.1)
            now = _log_bytes(log, offset)
            still = still + 1 if now == upstream_bytes else 0
            upstream_bytes = now
    finally:
        _stop_cache(cache)
    return {"proxy_total_s": total, "proxy_upstream_x": upstream_bytes / image,
            "proxy_ttfb_ms": pulls[0][1] * 1000,
            "proxy_ttfb_direct_ms": direct_pulls[0][1] * 1000,
            "proxy_ttfb_x": pulls[0][1] / direct_pulls[0][1], "proxy_solo_ms": solo_s * 1000,
            "proxy_direct_ms": direct * 1000, "proxy_solo_x": solo_s / direct,
            "proxy_layer_ms": solo_layer * 1000, "proxy_layer_direct_ms": direct_layer * 1000,
            "proxy_layer_x": solo_layer / direct_layer, **uplink}


def _fan_out(host, ctx, what):
    """`clients` curls started at once, each pulling bench/seed:1 from `host`: (seconds from
    the first start to the last exit, each client's `_pulled` figures in start order)."""
    started = time.perf_counter()
    procs = [subprocess.Popen(_pull(host, ctx), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
             for _ in range(ctx.cfg.clients)]
    outs = [p.communicate() for p in procs]
    total = time.perf_counter() - started
    return total, [_pulled(out, f"{what} ({err.strip()})", ctx) for out, err in outs]


def _cold_over_uplink(ctx, reg):
    """The layer's first byte across the modelled uplink: straight from the upstream through
    the relay (median of 3, each on a new connection), then through a fresh cache whose
    upstream is the relay."""
    relay = ctx.uplink.host
    direct = statistics.median(_layer_first_byte(relay, ctx, "through the relay")
                               for _ in range(3))
    cache = _cache(ctx, reg, upstream=relay)
    try:
        cold = _layer_first_byte(cache.host, ctx, f"{reg.name} cache over the relay")
    finally:
        _stop_cache(cache)
    fan_direct = _fan_out_first_bytes(relay, ctx, "through the relay")
    cache = _cache(ctx, reg, upstream=relay)
    try:
        fan_cold = _fan_out_first_bytes(cache.host, ctx, f"{reg.name} cache over the relay")
    finally:
        _stop_cache(cache)
    return {"proxy_uplink_layer_ms": cold * 1000, "proxy_uplink_direct_ms": direct * 1000,
            "proxy_uplink_layer_x": cold / direct,
            "proxy_uplink_fan_ms": fan_cold * 1000, "proxy_uplink_fan_direct_ms": fan_direct * 1000,
            "proxy_uplink_fan_x": fan_cold / fan_direct}


def _fan_out_first_bytes(host, ctx, what):
    """`clients` threads, each on its own connection, released together: the median of their
    times from the release to the layer's first byte (manifest GET included)."""
    start = threading.Barrier(ctx.cfg.clients)
    times, errors = [], []

    def client():
        try:
            times.append(_layer_first_byte(host, ctx, what, start))
        except Exception as e:  # noqa: BLE001 - reported below, with the others
            errors.append(e)
            start.abort()

    threads = [threading.Thread(target=client) for _ in range(ctx.cfg.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"{what}: {len(errors)} of {ctx.cfg.clients} clients failed: "
                           f"{errors[0]!r}")
    return statistics.median(times)



# ---- bundle import ----------------------------------------------------------------------------

def _bundle_setup(ctx, reg):
    """Once: an OCI archive (a tar of an OCI layout, what `skopeo copy ... oci-archive:`
    writes) of an image of `import_layers` layers of `size` MB of random bytes, tag `big`."""
    if getattr(ctx, "bundle", None) is not None:
        return
    base = ctx.work / "import"
    shutil.rmtree(base, ignore_errors=True)
    layout = base / "layout"
    ctx.make_image(layout, layers=ctx.cfg.import_layers)
    archive = base / "bundle.tar"
    run(["tar", "-C", str(layout), "-cf", str(archive), "oci-layout", "index.json", "blobs"])
    shutil.rmtree(layout)
    ctx.bundle = archive


def _bundle_teardown(ctx):
    shutil.rmtree(ctx.work / "import", ignore_errors=True)
    ctx.bundle = None


@measure(Metric("bundle_import_s", "bundle import: OCI archive of {import_mb} MB "
                "({import_layers} layers)", "s", LOWER, goal=1.0,
                note="atoll --import into an empty data directory vs skopeo copy oci-archive: "
                     "to a fresh reference; atoll fsyncs what it writes, the reference does not"),
         before=_bundle_setup, after=_bundle_teardown)
def bundle_import(ctx, reg, rep):
    """The archive into an empty registry: `atoll --import FILE --import-name bench/import`
    (exec to exit) against `skopeo copy oci-archive:FILE:big docker://REF/bench/import:big`
    into a reference started on an empty data directory for the repetition (so no layer is
    already there). Both from the same file on disk, page cache warm."""
    data = ctx.work / "import" / f"{reg.name}-data"
    shutil.rmtree(data, ignore_errors=True)
    os.sync()
    if reg.name == "atoll":
        seconds = timed([reg.binary, "--data-dir", str(data), "--log-level", "error",
                         "--import", str(ctx.bundle), "--import-name", "bench/import"]
                        + reg.index_flags(data), env=reg.env())
    else:
        port = free_port()
        proc, _ = reg.spawn(data, port, ctx.work / "import-reference.log")
        try:
            seconds = timed(["skopeo", "copy", "-q", "--dest-tls-verify=false",
                             f"oci-archive:{ctx.bundle}:big",
                             f"docker://{LOOPBACK}:{port}/bench/import:big"])
        finally:
            stop_pid(proc.pid)
    shutil.rmtree(data, ignore_errors=True)
    return {"bundle_import_s": seconds}


# ---- the object store (--store s3) ------------------------------------------------------------

def _set_redirect(ctx, on):
    """Both registries restarted (same data, same bucket) with blob GETs answered by a
    presigned URL of the bucket (`on`) or streamed through the registry."""
    for reg in ctx.registries:
        reg.redirect = on
        reg.start()


@measure(Metric("pull_redirect_s", "pull {size} MB image, blob GETs redirected to the bucket "
                "(skopeo)", "s", LOWER,
                note="information: atoll --blob-redirect vs the reference's s3 driver with "
                     "redirects on (its default); skopeo follows the presigned URL to Garage"),
         before=lambda ctx, reg: _set_redirect(ctx, True) if reg is ctx.registries[0] else None,
         after=lambda ctx: _set_redirect(ctx, False), stores=("s3",))
def pull_redirect(ctx, reg, rep):
    """The skopeo pull of the seed with both registries answering blob GETs with a 307 to a
    presigned URL: the layer comes from Garage itself."""
    return {"pull_redirect_s": pull_skopeo(ctx, reg, rep)["pull_skopeo_s"]}


class _DiskAtoll(Atoll):
    """atoll on local disk beside the one on the bucket (its own data directory and log)."""
    name = "atoll-disk"


def _disk_atoll_setup(ctx, reg):
    atoll = ctx.registries[0]
    disk = _DiskAtoll(ctx.work, atoll.pids, atoll.binary, index=atoll.index)
    disk.start(fresh=True)
    SERVICES.append(disk)
    ctx.disk_atoll = disk
    run(["skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{ctx.work / 'oci' / 'seed'}:big",
         f"docker://{disk.host}/bench/seed:1"])


def _disk_atoll_teardown(ctx):
    disk = getattr(ctx, "disk_atoll", None)
    if disk is not None:
        disk.stop()
        SERVICES.remove(disk)
        shutil.rmtree(disk.data, ignore_errors=True)
        ctx.disk_atoll = None


@measure(
    Metric("s3_push_s", "atoll on S3: push {size} MB image (skopeo)", "s", LOWER),
    Metric("disk_push_s", "atoll on disk: the same push", "s", LOWER),
    Metric("s3_disk_push_x", "push, atoll on S3 / atoll on disk", "x", LOWER,
           note="information, no goal: atoll against itself, the same image pushed to each"),
    Metric("s3_pull_s", "atoll on S3: pull {size} MB image (skopeo, to dir:)", "s", LOWER),
    Metric("disk_pull_s", "atoll on disk: the same pull", "s", LOWER),
    Metric("s3_disk_pull_x", "pull, atoll on S3 / atoll on disk", "x", LOWER),
    before=_disk_atoll_setup, after=_disk_atoll_teardown, stores=("s3",), atoll_only=True)
def s3_vs_disk(ctx, reg, rep):
    """atoll on the bucket against atoll on a local data directory (started for this measure,
    seed pushed to it too): a fresh image pushed to both, the seed pulled from both, which goes
    first alternating by repetition. Only atoll's column is filled: the ratio is S3 / disk."""
    layout = ctx.fresh_image(rep, kind="s3-vs-disk")
    order = [reg, ctx.disk_atoll] if rep % 2 == 0 else [ctx.disk_atoll, reg]
    push, pull = {}, {}
    for r in order:
        os.sync()
        push[r.name] = timed(["skopeo", "copy", "-q", "--dest-tls-verify=false",
                              f"oci:{layout}:big", f"docker://{r.host}/bench/vs-disk:{rep}"])
    for r in order:
        pull[r.name] = pull_skopeo(ctx, r, rep)["pull_skopeo_s"]
    s3, disk = reg.name, ctx.disk_atoll.name
    return {"s3_push_s": push[s3], "disk_push_s": push[disk],
            "s3_disk_push_x": push[s3] / push[disk], "s3_pull_s": pull[s3],
            "disk_pull_s": pull[disk], "s3_disk_pull_x": pull[s3] / pull[disk]}


def _big_mb(ctx):
    """The layer size of the memory measure: 1 GiB (smoke: 40 MiB, still more than one
    16 MiB multipart part)."""
    return ctx.cfg.big_mb


@measure(
    Metric("mem_idle_mb", "memory: RSS just after a restart", "MB", LOWER),
    Metric("mem_push_peak_mb", "memory: peak RSS while one {big_mb} MiB layer is pushed "
           "(skopeo)", "MB", LOWER,
           note="information, no goal: a bounded figure does not grow with the layer; atoll "
                "sends an upload to the bucket in 16 MiB multipart parts"),
    Metric("mem_pull_peak_mb", "memory: peak RSS while that layer is pulled (curl)", "MB",
           LOWER),
    Metric("mem_push_s", "that push's time", "s", LOWER),
    Metric("mem_pull_mbps", "that blob GET's throughput", "MB/s", HIGHER),
    restart=True, stores=("s3",))
def s3_memory(ctx, reg, rep):
    """The registry restarted on its data; a fresh image of one `big_mb` MiB layer pushed with
    skopeo, then its layer fetched with one curl to /dev/null, VmRSS sampled every 20 ms during
    each; the registry is restarted between the two (so the pull's peak is its own) and after
    them (so the next repetition starts as low). The push's figure is the larger of the sampled
    peak and the kernel's high-water mark (VmHWM), exact since the restart."""
    layout = ctx.fresh_image(rep, kind="memory", size_mb=_big_mb(ctx))
    with open(layout / "index.json") as f:
        manifest_digest = json.load(f)["manifests"][0]["digest"]
    with open(layout / "blobs" / "sha256" / manifest_digest.split(":")[1]) as f:
        layer = json.load(f)["layers"][0]
    idle = reg.memory().get("VmRSS", 0)
    with RssSampler(reg.proc.pid) as during_push:
        push_s = timed(["skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{layout}:big",
                        f"docker://{reg.host}/bench/memory:{rep}"])
    pushed_hwm = reg.memory().get("VmHWM", 0)
    reg.start()  # the pull's peak is its own, not the push's memory kept by the allocator
    url = f"http://{reg.host}/v2/bench/memory/blobs/{layer['digest']}"
    with RssSampler(reg.proc.pid) as during_pull:
        out = run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{size_download} "
                   "%{time_total}", url], capture=True).split()
    if int(out[0]) != 200 or int(out[1]) != layer["size"]:
        raise RuntimeError(f"{reg.name}: GET of the {_big_mb(ctx)} MiB blob answered {out[0]} "
                           f"with {out[1]} bytes")
    reg.start()
    return {"mem_idle_mb": idle / MB, "mem_push_peak_mb": max(during_push.peak, pushed_hwm) / MB,
            "mem_pull_peak_mb": during_pull.peak / MB, "mem_push_s": push_s,
            "mem_pull_mbps": int(out[1]) / float(out[2]) / MB}


# GC on the object store: both stores are built once in a Garage of their own (not the one the
# other measures use), which is then stopped and its metadata and data directories copied; each
# repetition puts that copy back (not timed) and collects it.

def _gc_s3_setup(ctx, reg):
    if getattr(ctx, "gc_s3", None) is not None:
        return
    repos = ctx.cfg.gc_repos
    content = (gcstore.Content(repos=2, kept=10, deleted=5) if ctx.cfg.smoke
               else gcstore.Content(repos=repos))
    ctx.cfg.gc_store = f"{content.manifests_present:,} manifests / {content.blob_count:,} blobs"
    ctx.cfg.gc_garbage = f"{content.garbage_blobs:,}"
    print(f"  gc store: {content.describe()}", flush=True)
    garage = Garage(ctx.work / "garage-gc", reg.pids)
    SERVICES.append(garage)
    garage.start()
    root = _scratch(ctx, "gc-s3", 1 << 30)
    atoll, reference = ctx.registries
    buckets = {"atoll": garage.bucket.under(f"atoll-bench-{ctx.run_id}-gc"),
               "reference": garage.bucket.under(f"reference-bench-{ctx.run_id}-gc")}
    ctx.gc_s3 = {"content": content, "garage": garage, "root": root, "buckets": buckets,
                 "setup_s": {}}
    # atoll: the OCI layout imported into an index whose blobs go to the bucket, then a DELETE
    # through the API of each manifest meant to be deleted.
    started = time.perf_counter()
    gc_atoll = Atoll(ctx.work, reg.pids, atoll.binary, bucket=buckets["atoll"],
                     index=atoll.index)
    layout = root / "oci"
    content.write_oci_layout(layout)
    pristine = root / "atoll-pristine"
    run([atoll.binary, "--data-dir", str(pristine), "--log-level", "error", "--import",
         str(layout)] + gc_atoll.store_flags() + gc_atoll.index_flags(pristine),
        env=gc_atoll.env())
    imported = time.perf_counter() - started
    shutil.rmtree(layout)
    port = free_port()
    proc, _ = gc_atoll.spawn(pristine, port, ctx.work / "gc-atoll.log")
    _delete_manifests(proc, port, content, timeout=60)
    ctx.gc_s3["setup_s"]["atoll"] = time.perf_counter() - started
    print(f"  gc store for atoll built in {time.perf_counter() - started:.0f} s (import "
          f"{imported:.0f} s; not measured)", flush=True)
    # The reference: its storage's files written as objects under its rootdirectory, 16 PUTs
    # at a time.
    started = time.perf_counter()
    prefix = buckets["reference"].prefix
    count = buckets["reference"].client().put_many(
        ((f"{prefix}/{rel}", data) for rel, data in content.reference_files()), threads=16)
    ctx.gc_s3["setup_s"]["reference"] = time.perf_counter() - started
    ctx.gc_s3["reference_objects"] = count
    print(f"  gc store for the reference built in {time.perf_counter() - started:.0f} s "
          f"({count:,} objects; not measured)", flush=True)
    started = time.perf_counter()
    garage.snapshot("gc")
    print(f"  Garage's state copied aside in {time.perf_counter() - started:.0f} s", flush=True)


def _gc_s3_teardown(ctx):
    state = getattr(ctx, "gc_s3", None)
    if state is not None:
        state["garage"].stop()
        if state["garage"] in SERVICES:
            SERVICES.remove(state["garage"])
        shutil.rmtree(state["garage"].root, ignore_errors=True)
        ctx.gc_s3 = None
    cleanup_scratch = [p for p in SCRATCH if "gc-s3" in p.name]
    for p in cleanup_scratch:
        SCRATCH.remove(p)
        shutil.rmtree(p, ignore_errors=True)


@measure(Metric("gc_s", "GC on S3: {gc_store}, {gc_garbage} garbage blobs", "s", LOWER,
                goal=0.2,
                note="both keep untagged manifests (atoll --gc --gc-grace 0s on its index and "
                     "the bucket; docker-registry garbage-collect with its s3 driver); the same "
                     "content, in a Garage of their own, put back from a copy before each "
                     "collection; checked to leave exactly the kept manifests' blobs"),
         before=_gc_s3_setup, after=_gc_s3_teardown, stores=("s3",), name="gc")
def gc_s3(ctx, reg, rep):
    """One offline collection of the store on the bucket: Garage's state put back as it was
    after the stores were built, atoll's index copied afresh (neither timed), then the
    collection, timed; then the bucket is listed and must hold exactly the kept manifests'
    blobs."""
    state = ctx.gc_s3
    content, garage, root = state["content"], state["garage"], state["root"]
    bucket = state["buckets"][reg.name]
    garage.restore("gc")
    if reg.name == "atoll":
        data = root / "atoll-run"
        shutil.rmtree(data, ignore_errors=True)
        run(["cp", "-a", str(root / "atoll-pristine"), str(data)])
        gc_atoll = Atoll(ctx.work, reg.pids, reg.binary, bucket=bucket, index=reg.index)
        if reg.index is not None:
            reg.index.copy(root / "atoll-pristine", data)
        cmd = [reg.binary, "--gc", "--gc-grace", "0s", "--log-level", "error",
               "--data-dir", str(data)] + gc_atoll.store_flags() + gc_atoll.index_flags(data)
        env = gc_atoll.env()
    else:
        config = root / "reference-gc.yml"
        config.write_text("version: 0.1\nlog: { level: error }\nstorage:\n"
                          + reference_storage(None, bucket) + "  delete: { enabled: true }\n")
        cmd = ["/usr/bin/docker-registry", "garbage-collect", str(config)]
        env = reg.env()
    os.sync()
    seconds = timed(cmd, env=env)
    s3 = bucket.client()
    if reg.name == "atoll":
        left = {k.rsplit("/", 1)[1] for k in s3.list(f"{bucket.prefix}/blobs/sha256/")}
    else:
        left = {k.split("/")[-2] for k in
                s3.list(f"{bucket.prefix}/docker/registry/v2/blobs/sha256/")
                if k.endswith("/data")}
    kept = content.kept_digests()
    if left != kept:
        raise RuntimeError(f"{reg.name} GC on S3 left {len(left)} blobs, expected {len(kept)}: "
                           f"{len(left - kept)} garbage left, {len(kept - left)} kept ones gone")
    if reg.name == "atoll":
        doomed = _doomed_batches(reg, data)
        if doomed:
            raise RuntimeError(f"atoll GC left {doomed} blobs doomed but not deleted")
        if reg.index is not None:
            reg.index.drop(data)
        shutil.rmtree(data, ignore_errors=True)
    return {"gc_s": seconds}

# ---- more than one node (--index postgres) ---------------------------------------------------

CLUSTER_NODES = 3


class _Node(Atoll):
    """Another node of the measured atoll's cluster: its binary, bucket prefix and database, a
    data directory of its own (for tmp/), a port and log of its own."""

    def __init__(self, atoll, n):
        super().__init__(atoll.work, atoll.pids, atoll.binary, bucket=atoll.bucket,
                         index=atoll.index)
        self.name = f"atoll-node{n}"
        self.data = atoll.work / "cluster" / f"node{n}-data"


def _cluster_setup(ctx, reg):
    """Nodes 2 and 3 beside the measured atoll (node 1), on its database and prefix, each warmed
    up with manifest GETs (each fills its own small-blob cache from the bucket)."""
    ctx.cluster = [reg]
    for n in range(2, CLUSTER_NODES + 1):
        node = _Node(reg, n)
        shutil.rmtree(node.data, ignore_errors=True)
        reg.index.share(reg.data, node.data)
        SERVICES.append(node)
        node.start()
        ctx.cluster.append(node)
    for node in ctx.cluster:
        wrk(ctx, node, _manifest_path(ctx), accept=MANIFEST_ACCEPT, seconds=ctx.cfg.warmup)


def _cluster_teardown(ctx):
    for node in getattr(ctx, "cluster", [])[1:]:
        node.stop()
        SERVICES.remove(node)
        shutil.rmtree(node.data, ignore_errors=True)
    ctx.cluster = []


def _spread(ctx, nodes, path, **load):
    """One wrk per node, all at once (wrk has one target): on one node the configured load,
    on several `node_conns` connections and one thread each (with `unique` paths, each wrk's
    path ends in its node's number). Returns (req/s summed, the worst node's p50 and p99 in ms,
    CPU per request in us of every node and PostgreSQL together)."""
    cfg = ctx.cfg
    spread = {} if len(nodes) == 1 else {"threads": 1, "connections": cfg.node_conns}
    cmds = [wrk_command(ctx, node.host, f"{path}-{i}" if load.get("unique") else path,
                        **spread, **load)
            for i, node in enumerate(nodes, 1)]
    every = ctx.cluster  # the idle nodes' CPU counts too: a node costs something even idle
    cpu = sum(cpu_seconds(n.proc.pid) for n in every) + every[0].index_cpu_seconds()
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for cmd, env in cmds]
    outs = [p.communicate() for p in procs]
    cpu = sum(cpu_seconds(n.proc.pid) for n in every) + every[0].index_cpu_seconds() - cpu
    for p, (out, err) in zip(procs, outs):
        if p.returncode != 0:
            raise RuntimeError(f"wrk failed ({p.returncode}): {err.strip()[-500:]}")
    reports = [wrk_report(out, f"{node.name} {load.get('method', 'GET')} {path}")
               for node, (out, _) in zip(nodes, outs)]
    requests = sum(r["requests"] for r in reports)
    return (sum(r["rps"] for r in reports),
            max(r["latency_us"]["p50"] for r in reports) / 1000,
            max(r["latency_us"]["p99"] for r in reports) / 1000,
            cpu / requests * 1e6)


@measure(
    Metric("cl_get1_rps", "manifest GET by tag, one node, {connections} conns", "req/s", HIGHER,
           note="information, no goal: three atoll nodes on one PostgreSQL database and one "
                "bucket prefix, all on this machine's cores with PostgreSQL, Garage and the "
                "load clients: the cost of coordination, not scaling"),
    Metric("cl_get3_rps", "the same over {nodes} nodes at once ({nodes} wrk, -c{node_conns} "
           "each), summed", "req/s", HIGHER),
    Metric("cl_get_x", "manifest GET req/s, {nodes} nodes / one", "x", HIGHER),
    Metric("cl_get1_p99_ms", "manifest GET p99, one node", "ms", LOWER),
    Metric("cl_get3_p99_ms", "manifest GET p99, {nodes} nodes (the worst node's)", "ms", LOWER),
    Metric("cl_get1_cpu_us", "manifest GET, one node: CPU per request, every node + PostgreSQL",
           "us", LOWER),
    Metric("cl_get3_cpu_us", "manifest GET, {nodes} nodes: CPU per request, every node + "
           "PostgreSQL", "us", LOWER),
    Metric("cl_put1_rps", "tag PUT (as tag_put), one node, {connections} conns", "req/s", HIGHER,
           note="every index write takes one advisory lock of the database: writes from all "
                "nodes run one at a time, and a node more adds none"),
    Metric("cl_put3_rps", "the same over {nodes} nodes at once, summed", "req/s", HIGHER),
    Metric("cl_put_x", "tag PUT req/s, {nodes} nodes / one", "x", HIGHER),
    Metric("cl_put1_p50_ms", "tag PUT p50, one node", "ms", LOWER),
    Metric("cl_put3_p50_ms", "tag PUT p50, {nodes} nodes (the worst node's)", "ms", LOWER),
    Metric("cl_put1_cpu_us", "tag PUT, one node: CPU per request, every node + PostgreSQL",
           "us", LOWER),
    Metric("cl_put3_cpu_us", "tag PUT, {nodes} nodes: CPU per request, every node + "
           "PostgreSQL", "us", LOWER),
    before=_cluster_setup, after=_cluster_teardown, stores=("s3",), indexes=("postgres",),
    atoll_only=True)
def cluster_scale(ctx, reg, rep):
    """One node against three (the measured atoll and two more on its database and prefix),
    which goes first alternating by repetition. Manifest GET by tag: one wrk of the configured
    load on node 1, then one wrk per node at once with a third of the connections each. Tag
    PUT: the seed's manifest PUT under a new tag each time (wrk-report.lua's WRK_UNIQUE), so
    each request is one write transaction of the index, the same two ways."""
    out = {}
    for n in ((1, CLUSTER_NODES) if rep % 2 == 0 else (CLUSTER_NODES, 1)):
        nodes = ctx.cluster[:n]
        rps, _, p99, cpu = _spread(ctx, nodes, _manifest_path(ctx), accept=MANIFEST_ACCEPT)
        out.update({f"cl_get{n}_rps": rps, f"cl_get{n}_p99_ms": p99, f"cl_get{n}_cpu_us": cpu})
    for n in ((1, CLUSTER_NODES) if rep % 2 == 0 else (CLUSTER_NODES, 1)):
        nodes = ctx.cluster[:n]
        rps, p50, _, cpu = _spread(ctx, nodes, f"/v2/bench/seed/manifests/w{rep}-{n}",
                                   method="PUT", seconds=_write_seconds(ctx),
                                   body=_seed_manifest(ctx), unique=True)
        out.update({f"cl_put{n}_rps": rps, f"cl_put{n}_p50_ms": p50, f"cl_put{n}_cpu_us": cpu})
    out["cl_get_x"] = out[f"cl_get{CLUSTER_NODES}_rps"] / out["cl_get1_rps"]
    out["cl_put_x"] = out[f"cl_put{CLUSTER_NODES}_rps"] / out["cl_put1_rps"]
    return out



def all_measures(store="disk", index="sqlite"):
    return [m for m in MEASURES if store in m.stores and index in m.indexes]


@dataclass
class Samples:
    """Per metric key, per registry name: the values of each repetition."""
    values: dict = field(default_factory=dict)

    def add(self, reg, results):
        for key, value in results.items():
            self.values.setdefault(key, {}).setdefault(reg, []).append(value)
