#!/usr/bin/env bash
# The full load run: 200 keep-alive connections pushing and pulling (tests/it/load.rs).
#   reliability/load.sh [seconds, default 60]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked >/dev/null
ATOLL_RELEASE_BIN=$PWD/target/release/atoll ATOLL_LOAD_SECS=${1:-60} \
  cargo test --locked --test it load:: -- --nocapture 2>&1 | grep -E '^load:|panicked|test result'
