#!/usr/bin/env python3
"""The benchmark's orchestrator: atoll side by side with the reference registry (CNCF
distribution 2.8), on loopback, in one run, so that ratios mean something on a noisy machine.

Called by bench/run.sh (which builds atoll first and keeps a trap that stops stray processes):

    bench.py --bin target/release/atoll [--smoke] [--reps N] [--size MB] [--duration S]
             [--connections C] [--threads T] [--only NAME,NAME] [--out DIR] [--against BIN]
             [--store disk|s3] [--index sqlite|postgres] [--against-index sqlite|postgres]

With --store s3, both registries keep their blobs in the object store: a private Garage
(tests/services/garage.sh) under bench/work/, atoll with --blob-store s3://BUCKET/atoll-bench-RUN,
the reference with its s3 driver on the same bucket under reference-bench-RUN; only the measures
that have an object-store variant run, and results go to latest-s3.* (smoke: smoke-s3.*).

With --index postgres, atoll keeps its index in a private PostgreSQL started for the run
(tests/services/postgres.sh) under bench/work/, a fresh database for every data directory an
atoll is started on; results go to latest[-s3]-pg.*.

With --against, a second atoll binary takes the reference's place (its column is "reference"):
two builds of atoll side by side in one run, e.g. the musl release build against the glibc one.
With --against-index, the second atoll's index is that engine (default: --index's); given
without --against, the second atoll is the same binary, so the run compares the two index
engines on the same store (e.g. --index postgres --against-index sqlite: cluster mode / embedded
mode), and is kept in results/ as latest[-s3]-pg-vs-sqlite.*.

Order of work: start a private dockerd (in the background), start both registries on fresh
data directories under bench/work/, push a seed image of --size MB to both, then run each
measure of measures.py for --reps repetitions, alternating which registry goes first. Prints
the table and writes <out>/latest.json and latest.md (smoke: bench/work/smoke.*).

Exit status: 0 when every measure ran (whether or not goals are met), 1 when a measure broke,
2 on bad arguments. Goals never fail the run: they are reported.
"""

import argparse
import json
import os
import shutil
import signal
import sys
import time
import traceback
from pathlib import Path

import measures
import report
from registries import Atoll, Dockerd, Garage, OtherAtoll, Pids, Postgres, Reference

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
# The GC store on S3, in repositories (100 manifests, 1,000 blobs each): README "Object store"
# says why it is smaller than on disk.
S3_GC_REPOS = 10
AGAINST_MEASURES = ("cold_start", "push", "pull_skopeo", "pull_docker", "blob_get",
                    "small_requests", "api_base", "tag_put")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bin", required=True, help="the atoll binary to measure")
    p.add_argument("--smoke", action="store_true",
                   help="tiny sizes, 1 repetition, short loads: checks the harness works")
    p.add_argument("--reps", type=int, help="repetitions per measure (default 5)")
    p.add_argument("--size", dest="size_mb", type=int, help="layer size in MB (default 200)")
    p.add_argument("--duration", type=int, help="seconds per wrk run (default 10)")
    p.add_argument("--connections", type=int, default=50, help="wrk connections (default 50)")
    p.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    p.add_argument("--only", help="comma-separated measure names (default: all)")
    p.add_argument("--out", type=Path, help="where to write the results")
    p.add_argument("--against", type=Path,
                   help="another atoll binary, measured in the reference's place (default out: "
                        "bench/work/against)")
    p.add_argument("--store", choices=("disk", "s3"), default="disk",
                   help="where both registries keep blobs: local disk (default) or an S3 "
                        "bucket of a private Garage started for the run")
    p.add_argument("--index", choices=("sqlite", "postgres"), default="sqlite",
                   help="where atoll keeps its index: SQLite in its data directory (default) or "
                        "a private PostgreSQL started for the run, a database per data directory")
    p.add_argument("--against-index", choices=("sqlite", "postgres"),
                   help="the --against atoll's index (default: --index's); without --against, "
                        "the --bin binary against itself with only the index differing")
    p.add_argument("--commit",
                   help="the commit --bin was built from, for the record (default: this working "
                        "tree's HEAD, marked when src/ has uncommitted changes)")
    p.add_argument("--gc-repos", type=int,
                   help="GC store size in repositories of 100 manifests and 1,000 blobs each "
                        "(default: 100 on disk, %d on S3; smoke: a tiny store)" % S3_GC_REPOS)
    cfg = p.parse_args(argv)
    if cfg.against_index and not cfg.against:
        cfg.against = Path(cfg.bin)
    cfg.against_index = cfg.against_index or cfg.index
    # The same binary with another index engine: a figure of atoll's own modes, kept in
    # results/ like a run against the reference (two different builds are an experiment).
    cfg.engines = bool(cfg.against) and cfg.against_index != cfg.index and \
        Path(cfg.against).resolve() == Path(cfg.bin).resolve()
    small = cfg.smoke
    cfg.reps = cfg.reps or (1 if small else 5)
    cfg.size_mb = cfg.size_mb or (1 if small else 200)
    cfg.duration = cfg.duration or (1 if small else 10)
    cfg.clients = 50  # proxy fan-out
    # cluster_scale: the load spread over the nodes, a wrk of a third of the connections each
    cfg.node_conns = max(1, round(cfg.connections / measures.CLUSTER_NODES))
    cfg.import_layers = 2 if small else 5  # bundle import: layers of --size MB
    cfg.warmup = 1 if small else 3  # seconds of wrk before measured load runs
    cfg.settle = 0.3 if small else 2.0  # seconds of idleness before reading idle RSS
    cfg.gc_repos = cfg.gc_repos or (S3_GC_REPOS if cfg.store == "s3" else 100)
    cfg.big_mb = 40 if small else 1024  # the object store's memory measure: one layer of MiB
    if cfg.out is None:
        cfg.out = (BENCH / "work" if small else
                   BENCH / "work" / "against" if cfg.against and not cfg.engines else
                   BENCH / "results")
    names = [m.name for m in measures.all_measures(cfg.store, cfg.index)]
    if cfg.against:  # the measures that do not tell atoll's setup from the reference's
        names = [n for n in names if n in AGAINST_MEASURES]
    cfg.only = cfg.only.split(",") if cfg.only else names
    unknown = set(cfg.only) - set(names)
    if unknown:
        p.error(f"unknown measure {sorted(unknown)}; known: {', '.join(names)}")
    if cfg.reps < 1 or cfg.size_mb < 1 or cfg.duration < 1:
        p.error("--reps, --size and --duration must be at least 1")
    return cfg


class Context:
    """What measures share: configuration, directories, registries, dockerd, the seed image."""

    def __init__(self, cfg, work, pids):
        self.cfg, self.work, self.bench_dir, self.pids = cfg, work, BENCH, pids
        uses_pg = cfg.index == "postgres" or (cfg.against and cfg.against_index == "postgres")
        self.postgres = Postgres(work / "postgres", pids) if uses_pg else None
        pg = lambda engine: self.postgres if engine == "postgres" else None  # noqa: E731
        other = (OtherAtoll(work, pids, cfg.against.resolve(), index=pg(cfg.against_index))
                 if cfg.against else Reference(work, pids))
        self.registries = [Atoll(work, pids, Path(cfg.bin).resolve(), index=pg(cfg.index)),
                           other]
        self.dockerd = Dockerd(work, pids)
        self.garage = Garage(work / "garage", pids) if cfg.store == "s3" else None
        self.run_id = time.strftime("%Y%m%dt%H%M%S").lower()
        self.seed = None
        self._image = (None, None)  # ((measure, rep), layout) of the current fresh image

    def start_object_store(self):
        """--store s3: Garage up, each registry on its own prefix of its bucket."""
        self.garage.start()
        atoll, reference = self.registries
        atoll.bucket = self.garage.bucket.under(f"atoll-bench-{self.run_id}")
        reference.bucket = self.garage.bucket.under(f"reference-bench-{self.run_id}")
        self.cfg.garage = self.garage.version
        print(f"Garage ({self.garage.version}) at {self.garage.bucket.endpoint}, bucket "
              f"{self.garage.bucket.bucket}: atoll under {atoll.bucket.prefix}/, the reference "
              f"under {reference.bucket.prefix}/", flush=True)

    def make_image(self, layout, tag="big", size_mb=None, layers=1):
        size_mb = size_mb or self.cfg.size_mb
        out = measures.run([str(BENCH / "make-image.sh"), str(layout), str(size_mb), tag,
                            str(layers)], capture=True)
        return json.loads(out.strip().splitlines()[-1])

    def fresh_image(self, rep, kind="push", size_mb=None):
        """The OCI layout of repetition `rep` of a measure (`kind`): random content, built once
        and shared by both registries' pushes of that repetition, never by another measure's
        (a registry that holds the layer already would not upload it again); the previous one
        is deleted."""
        if self._image[0] != (kind, rep):
            if self._image[1]:
                shutil.rmtree(self._image[1], ignore_errors=True)
            layout = self.work / "oci" / f"{kind}-{rep}"
            self.make_image(layout, size_mb=size_mb)
            self._image = ((kind, rep), layout)
        return self._image[1]

    def push_seed(self):
        """The image every read measure uses, pushed to each registry as bench/seed:1."""
        layout = self.work / "oci" / "seed"
        self.seed = self.make_image(layout)
        for reg in self.registries:
            measures.run(["skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{layout}:big",
                          f"docker://{reg.host}/bench/seed:1"])


def run_measure(ctx, m, samples):
    """All repetitions of one measure, alternating which registry goes first. Dirty pages are
    flushed (sync) before each run, so neither registry pays for the other's writeback."""
    regs = ctx.registries[:1] if m.atoll_only else ctx.registries
    if m.restart:
        for reg in regs:
            reg.start()
    try:
        if m.before:
            for reg in regs:
                m.before(ctx, reg)
        for rep in range(ctx.cfg.reps):
            for reg in (regs if rep % 2 == 0 else regs[::-1]):
                os.sync()
                results = m.fn(ctx, reg, rep)
                samples.add(reg.name, results)
                shown = ", ".join(f"{k}={v:.4g}" for k, v in results.items())
                print(f"  {m.name} rep {rep + 1}/{ctx.cfg.reps} {reg.name}: {shown}",
                      flush=True)
    finally:
        if m.after:
            m.after(ctx)


def main(argv):
    cfg = parse_args(argv)
    work = BENCH / "work"
    for stale in ("atoll-data", "reference-data", "atoll-disk-data", "oci", "docker", "gc", "proxy", "import",
                  "garage", "garage-gc", "s3", "postgres", "cluster"):
        shutil.rmtree(work / stale, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    pids = Pids(work / "pids")
    ctx = Context(cfg, work, pids)
    info = report.machine(cfg.bin, REPO, cfg.against, cfg.commit)
    chosen = [m for m in measures.all_measures(cfg.store, cfg.index) if m.name in cfg.only]
    samples, errors = measures.Samples(), {}
    # SIGTERM (run.sh's trap, CI's timeout) unwinds through the `finally` below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    try:
        if any(m.needs_docker for m in chosen):
            ctx.dockerd.start()
        if ctx.garage:
            ctx.start_object_store()
            info["garage"] = ctx.garage.version
        if ctx.postgres:
            ctx.postgres.start()
            info["postgres"] = ctx.postgres.version
            print(f"{ctx.postgres.version} on {ctx.postgres.host}:{ctx.postgres.port}: a "
                  f"database per atoll data directory", flush=True)
        for reg in ctx.registries:
            reg.start(fresh=True)
        print(f"atoll on {ctx.registries[0].host}, reference on {ctx.registries[1].host}; "
              f"pushing a {cfg.size_mb} MB seed image to both", flush=True)
        ctx.push_seed()
        for m in chosen:
            if all(metric.placeholder for metric in m.metrics):
                continue
            print(f"{m.name}:", flush=True)
            try:
                if m.needs_docker:
                    ctx.dockerd.wait()
                run_measure(ctx, m, samples)
            except Exception as e:  # a broken measure is reported; the others still run
                errors[m.name] = str(e).splitlines()[0][:300] if str(e) else repr(e)
                print(f"  {m.name} FAILED: {e}", flush=True)
                traceback.print_exc()
    finally:
        for reg in ctx.registries:
            reg.stop()
        ctx.dockerd.stop()
        if ctx.garage:
            ctx.garage.stop()
        measures.cleanup()
        if ctx.postgres:
            ctx.postgres.stop()
        shutil.rmtree(work / "oci", ignore_errors=True)
    info["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    rows = report.rows(chosen, samples, errors, cfg)
    print()
    print(report.text_table(rows))
    suffix = "" if cfg.store == "disk" else f"-{cfg.store}"
    suffix += "-pg" if cfg.index == "postgres" else ""
    suffix += ("-vs-" + ("pg" if cfg.against_index == "postgres" else "sqlite")
               if cfg.engines else "")
    json_path, md_path = report.write(cfg.out, ("smoke" if cfg.smoke else "latest") + suffix,
                                      rows, info, cfg)
    # Every full run is also kept, to see how much figures drift (two builds: an experiment).
    if not cfg.smoke and (not cfg.against or cfg.engines):
        stamp = info["date"].replace(":", "").replace("-", "")
        report.write(cfg.out / "runs", stamp + suffix, rows, info, cfg)
    print(f"\nwrote {json_path} and {md_path} ({time.monotonic() - started:.0f} s)")
    if errors:
        print(f"BROKEN MEASURES: {', '.join(errors)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
