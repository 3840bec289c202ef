#!/usr/bin/env bash
# Writes scripts/startup-order.txt: the functions atoll runs from exec to serving /v2/ on a
# fresh data directory, in the order they first run, for the linker to place side by side
# (scripts/build-static.sh passes the file to lld as --symbol-ordering-file).
#
# Why: the kernel maps a binary's code into a process 64 KB at a time around each page that
# runs (fault-around), so startup code spread across the 8 MB of code made most of the idle
# RSS. Packed together it is a few hundred KB. The file only orders: a function it names that
# no longer exists is skipped, one it misses is placed as before, so a stale file costs memory,
# never correctness. Run this again after large changes to startup; it needs valgrind.
#   scripts/startup-order.sh
set -euo pipefail
cd "$(dirname "$0")/.."
target=x86_64-unknown-linux-gnu
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The shipping build before scripts/build-static.sh strips it: the same profile, so the same
# symbol names (the ordering flags change no name).
CARGO_PROFILE_RELEASE_STRIP=none \
RUSTFLAGS="-C target-feature=+crt-static -C link-arg=-Wl,-z,pack-relative-relocs" \
    cargo build --locked --release --target "$target" --target-dir "$work/target"
bin=$work/target/$target/release/atoll

# Startup, the polling of /v2/ that a cold start does, a few more requests, a clean stop.
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
valgrind --tool=callgrind --demangle=no --dump-instr=no --compress-strings=no \
    --callgrind-out-file="$work/callgrind.out" \
    "$bin" --data-dir "$work/data" --listen "127.0.0.1:$port" --log-level error &
pid=$!
for _ in $(seq 600); do
    curl -fsS -o /dev/null "http://127.0.0.1:$port/v2/" 2>/dev/null && break
    sleep 0.1
done
for _ in 1 2 3; do curl -fsS -o /dev/null "http://127.0.0.1:$port/v2/"; done
sleep 1
kill -INT "$pid"
wait "$pid" || true

# Every function that ran, in the order callgrind first names it (close to the order of first
# execution), without duplicates; code without a symbol (shown as an address) cannot be named.
grep -E '^c?fn=' "$work/callgrind.out" |
    sed -E 's/^c?fn=(\([0-9]+\) ?)?//' |
    grep -v -e '^$' -e '^0x' |
    awk '!seen[$0]++' >scripts/startup-order.txt
echo "scripts/startup-order.txt: $(wc -l <scripts/startup-order.txt) functions"
