#!/usr/bin/env bash
# Fuzzes each parser of untrusted input for a bounded time (cargo-fuzz, nightly; libfuzzer-sys
# comes from crates.io). Each run starts from fuzz/regressions/<target>/ (seeds and every crash
# found so far) and keeps its corpus in fuzz/corpus/<target>/. A crash stops the run and leaves
# the input in fuzz/artifacts/<target>/: copy it into fuzz/regressions/<target>/, where
# tests/it/fuzz_regressions.rs replays it on stable in the normal test suite.
#
#   reliability/fuzz.sh [seconds per target, default 60] [targets...]
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${1:-60}; shift || true
targets=("$@"); ((${#targets[@]})) || targets=(manifest reference range htpasswd bundle)
cargo +nightly fuzz build -O >/dev/null
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  log=$(mktemp)
  if ! cargo +nightly fuzz run -O "$t" "corpus/$t" "regressions/$t" -- \
      -max_total_time="$secs" -rss_limit_mb=1024 -max_len=65536 -timeout=10 -print_final_stats=1 \
      >"$log" 2>&1; then
    tail -40 "$log"; echo "fuzz: $t FAILED (input in fuzz/artifacts/$t/)"; exit 1
  fi
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo '?')
  echo "fuzz: $t: $runs executions in ${secs}s, coverage $cov edges, no crash"
  rm -f "$log"
done
