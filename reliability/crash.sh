#!/usr/bin/env bash
# The full crash run: SIGKILL atoll 60 times while 4 clients push (tests/it/crash.rs).
#   reliability/crash.sh [kills, default 60]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked >/dev/null
ATOLL_RELEASE_BIN=$PWD/target/release/atoll ATOLL_CRASH_KILLS=${1:-60} \
  cargo test --locked --test it crash:: -- --nocapture 2>&1 | grep -E '^crash:|panicked|test result'
