#!/usr/bin/env bash
# The benchmark: atoll against the reference registry (CNCF distribution 2.8, Debian's
# docker-registry), side by side on loopback, in one run. See bench/README.md.
#
#   bench/run.sh                 full run: 5 repetitions, 200 MB image, 10 s loads (~17 min);
#                                writes bench/results/latest.json and latest.md
#   bench/run.sh --smoke         every measure, tiny sizes, 1 repetition (well under a minute
#                                once atoll is built); writes bench/work/smoke.*; for CI
#   bench/run.sh --reps 3 --size 100 --duration 5 --only push,small_requests
#   bench/run.sh --store s3      both registries on one S3 bucket (a private Garage started by
#                                tests/services/garage.sh): the object-store measures; writes
#                                bench/results/latest-s3.* (with --smoke: bench/work/smoke-s3.*)
#   bench/run.sh --store s3 --index postgres
#                                atoll's index in a private PostgreSQL (tests/services/postgres.sh),
#                                a database per data directory: cluster mode; latest-s3-pg.*
#   bench/run.sh --store s3 --index postgres --against-index sqlite --only push,small_requests
#                                the same binary in both columns, only the index differing:
#                                cluster mode / embedded mode; latest-s3-pg-vs-sqlite.*
#   bench/run.sh --curves        the scale curves (bench/curves.py): startup, small requests,
#                                GC, many clients and large blobs against the store's size, both
#                                registries at every point; bench/results/curves/ (tables, PNGs)
#   bench/run.sh --curves --smoke   the same at tiny points (~1 min + build): for CI
#   bench/run.sh --bin BIN --commit REV ...
#                                measure BIN (built from REV) instead of building the working tree
#
# Builds atoll's release binary (scripts/build-static.sh) unless --bin is given, installs
# missing clients with apt, then hands over to bench/bench.py. Everything it starts (the
# registries, a private dockerd, Garage, PostgreSQL) keeps its state under bench/work/
# (gitignored) and is stopped on exit, by PID.
# Exit status: non-zero only if the harness broke, never because a goal was missed.
set -euo pipefail
bench=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$bench")
work=$bench/work
mkdir -p "$work"

# command:Debian package for every client the measures use.
needs=(skopeo:skopeo docker:docker.io dockerd:docker.io docker-registry:docker-registry
  jq:jq wrk:wrk hey:hey curl:curl python3:python3)
missing=()
for n in "${needs[@]}"; do
  command -v "${n%%:*}" >/dev/null || [ -x "/usr/sbin/${n%%:*}" ] || missing+=("${n#*:}")
done
script=bench.py
if [ "${1:-}" = --curves ]; then
  script=curves.py
  shift
  python3 -c 'import matplotlib' 2>/dev/null || pip install -q matplotlib ||
    echo "bench/run.sh: no matplotlib: tables only, no plots"
fi
if ((${#missing[@]})); then
  echo "bench/run.sh: installing ${missing[*]}"
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    $(printf '%s\n' "${missing[@]}" | sort -u) >/dev/null
fi

# bench.py records the PID of every process it starts in work/pids and stops them itself; if
# it was killed, this stops what it left: only processes still running with a command line
# under bench/work (so never a PID the system has since reused for something else).
: >"$work/pids"
stop_leftovers() {
  local pid
  while read -r pid; do
    [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || continue
    if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "$work"; then
      kill "$pid" 2>/dev/null || true
    fi
  done <"$work/pids"
}
trap stop_leftovers EXIT

# The binary that ships: static, whole-program LTO (tests/run.sh builds the same one, so CI
# builds it once). An explicit --bin (a build of another commit) is measured as it is.
args=("$@")
if [[ " $* " != *" --bin "* ]]; then
  (cd "$root" && scripts/build-static.sh >/dev/null)
  args=(--bin "${CARGO_TARGET_DIR:-$root/target}/x86_64-unknown-linux-gnu/release/atoll" "$@")
fi
python3 "$bench/$script" "${args[@]}" &
py=$!
# A signal to this script is passed on; bench.py stops its processes and then exits.
trap 'kill -TERM "$py" 2>/dev/null || true' INT TERM
status=0
wait "$py" || status=$?
while kill -0 "$py" 2>/dev/null; do wait "$py" || status=$?; done
exit "$status"
