"""The benchmark's report: rows of (measure, atoll, reference, ratio, goal, met?) from the
samples, printed as a table and written as JSON and Markdown with a description of the machine.

Pure functions of their inputs except `machine()` (reads /proc and runs --version commands) and
`write()`. A ratio is atoll / reference, each the median of its repetitions; a goal is a ratio.
"""

import json
import os
import platform
import statistics
import subprocess
from datetime import datetime, timezone

from measures import CLUSTER_NODES, HIGHER


def machine(atoll_bin, repo, against=None, commit=None):
    """CPU, cores, kernel, RAM, date, load, and the versions of everything compared or used
    (`against`: the atoll binary in the reference's place, if any; `commit`: the one atoll was
    built from, when it was not built from `repo`'s working tree)."""
    def first(cmd):
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
            return (out.stdout or out.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "unknown"

    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kb = int(next(ln for ln in f if ln.startswith("MemTotal:")).split()[1])
    dirty = first(["git", "-C", str(repo), "status", "--porcelain", "--", "src", "Cargo.toml",
                   "Cargo.lock"])
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "ram_gib": round(mem_kb / 1024 / 1024, 1),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "atoll_commit": commit or (
            first(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"])
            + ("" if dirty in ("", "unknown") else " (+ uncommitted changes)")),
        "atoll": first([str(atoll_bin), "--version"]),
        "reference": first([str(against), "--version"] if against
                           else ["/usr/bin/docker-registry", "--version"]),
        "skopeo": first(["skopeo", "--version"]),
        "docker": first(["docker", "--version"]),
        "wrk": first(["wrk", "-v"]),
        "curl": first(["curl", "--version"]),
    }


def rows(measures, samples, errors, cfg):
    """One row per metric. `errors` maps a measure's name to why it failed."""
    out = []
    fmt = {"size": cfg.size_mb, "connections": cfg.connections, "clients": cfg.clients,
           "import_mb": cfg.size_mb * cfg.import_layers, "import_layers": cfg.import_layers,
           "gc_store": getattr(cfg, "gc_store", "?"), "gc_garbage": getattr(cfg, "gc_garbage", "?"),
           "big_mb": getattr(cfg, "big_mb", "?"), "nodes": CLUSTER_NODES,
           "node_conns": getattr(cfg, "node_conns", "?")}
    engines = {getattr(cfg, "index", "sqlite")}
    if getattr(cfg, "against", None):
        engines.add(cfg.against_index)
    for m in measures:
        for metric in m.metrics:
            if metric.only_index and metric.only_index not in engines:
                continue  # e.g. PostgreSQL's CPU time, in a run without PostgreSQL
            title = metric.title.format(**fmt)
            # Two atolls side by side (--against): the goals, made for the reference, say nothing.
            goal = None if getattr(cfg, "against", None) else metric.goal
            row = {"measure": m.name, "key": metric.key, "title": title, "unit": metric.unit,
                   "better": metric.better, "goal": goal, "atoll": None,
                   "reference": None, "ratio": None, "met": None, "samples": {}, "note": None}
            if metric.placeholder:
                row["note"] = "not yet measured: " + metric.placeholder
            elif m.name in errors:
                row["note"] = "failed: " + errors[m.name]
            elif metric.note:
                row["note"] = metric.note.format(**fmt)
            per_reg = samples.values.get(metric.key, {})
            row["samples"] = {r: [round(v, 4) for v in vs] for r, vs in per_reg.items()}
            if per_reg.get("atoll"):
                row["atoll"] = statistics.median(per_reg["atoll"])
            if per_reg.get("reference"):
                row["reference"] = statistics.median(per_reg["reference"])
            row["goal_on"] = metric.goal_on
            if row["atoll"] is not None and metric.goal_on == "atoll":
                if per_reg.get("reference") and row["reference"]:
                    row["ratio"] = row["atoll"] / row["reference"]
                if goal is not None:
                    row["met"] = (row["atoll"] >= goal if metric.better == HIGHER
                                  else row["atoll"] <= goal)
            elif row["atoll"] is not None and row["reference"]:
                row["ratio"] = row["atoll"] / row["reference"]
                if goal is not None:
                    row["met"] = (row["ratio"] >= goal if metric.better == HIGHER
                                  else row["ratio"] <= goal)
            out.append(row)
    return out


def _num(v):
    if v is None:
        return "-"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def _goal(row):
    if row["goal"] is None:
        return "-"
    if row.get("goal_on") == "atoll":  # a goal on atoll's own figure, not on the ratio
        return f"atoll {'>=' if row['better'] == HIGHER else '<='} {row['goal']:g}"
    return f"{'>=' if row['better'] == HIGHER else '<='} {row['goal']:g}x"


def _met(row):
    if row["note"] and row["note"].startswith(("failed:", "not yet measured:")):
        return row["note"].split(":")[0]
    return {True: "yes", False: "NO", None: "-"}[row["met"]]


def table_cells(rows_):
    head = ["measure", "unit", "atoll", "reference", "ratio", "goal", "met?"]
    body = [[r["title"], r["unit"], _num(r["atoll"]), _num(r["reference"]),
             "-" if r["ratio"] is None else f"{r['ratio']:.2f}x", _goal(r), _met(r)]
            for r in rows_]
    return head, body


def text_table(rows_):
    head, body = table_cells(rows_)
    widths = [max(len(c[i]) for c in [head] + body) for i in range(len(head))]
    line = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w)  # noqa: E731
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(b) for b in body])


def markdown(rows_, info, cfg):
    head, body = table_cells(rows_)
    title = ("atoll vs atoll: the binary measured, and in the reference's column "
             f"{cfg.against}" if getattr(cfg, "against", None)
             else "atoll vs reference registry (CNCF distribution 2.8)")
    md = [f"# {title}", "",
          f"Run {info['date']} on {info['cpu']}, {info['cores']} cores, {info['ram_gib']} GiB, "
          f"kernel {info['kernel']}; load average at start {info['load_average_at_start']}.",
          f"atoll {info['atoll']} at commit {info['atoll_commit']}; reference "
          f"{info['reference']}.",
          f"{cfg.reps} repetitions per measure (median shown), {cfg.size_mb} MB layer, wrk "
          f"{cfg.threads} threads x {cfg.connections} connections for {cfg.duration} s.",
          "Ratio = atoll / reference from the same run; the goal is a ratio, except where it "
          "says `atoll <= N`: a goal on atoll's own figure."]
    if getattr(cfg, "store", "disk") == "s3" and getattr(cfg, "against", None):
        md += ["Blob store: S3, both atolls on one private Garage on loopback "
               f"({info.get('garage', '?')}), each with `--blob-store s3://BUCKET/PREFIX` on a "
               "prefix of its own. See bench/README.md, \"Object store\"."]
    elif getattr(cfg, "store", "disk") == "s3":
        md += ["Blob store: S3, both registries on one private Garage on loopback "
               f"({info.get('garage', '?')}): atoll with `--blob-store s3://BUCKET/PREFIX`, the "
               "reference with its `s3` driver (blob GETs streamed through it, "
               "`redirect: disable: true`, except in the redirect row). See bench/README.md, "
               "\"Object store\"."]
    if getattr(cfg, "index", "sqlite") == "postgres" or getattr(cfg, "against", None):
        md += [f"Index: atoll's in {_engine(cfg.index, info)}"
               + (f"; the reference column is atoll too ({cfg.against}), its index in "
                  f"{_engine(cfg.against_index, info)}" if cfg.against else "")
               + ". See bench/README.md, \"Index in PostgreSQL\"."]
    md += ["",
          "| " + " | ".join(head) + " |",
          "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    md += ["| " + " | ".join(b) + " |" for b in body]
    notes = [f"- {r['title']}: {r['note']}" for r in rows_ if r["note"]]
    if notes:
        md += ["", "Notes:"] + notes
    md += ["", "Machine and tools:", ""] + [f"- {k}: {v}" for k, v in info.items()]
    return "\n".join(md) + "\n"


def _engine(index, info):
    if index == "postgres":
        return (f"PostgreSQL ({info.get('postgres', '?')}, a private server on loopback, a "
                "database of its own per data directory)")
    return "SQLite (DATA_DIR/index.db)"


def write(out_dir, stem, rows_, info, cfg):
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = {"machine": info, "config": vars(cfg), "rows": rows_}
    (out_dir / f"{stem}.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
    (out_dir / f"{stem}.md").write_text(markdown(rows_, info, cfg))
    return out_dir / f"{stem}.json", out_dir / f"{stem}.md"
