#!/usr/bin/env bash
# A real S3 service for the tests: a private single-node Garage (garagehq.deuxfleurs.fr) on
# loopback, so the S3 blob store is tested against a real object store, not a mock. Sourced by
# tests/run.sh: `garage_start DIR` puts config, data and garage.log in DIR, makes a bucket and a
# key and exports ATOLL_TEST_S3_*; `garage_stop` stops it. A missing garage is installed with cargo.
#
#   source tests/services/garage.sh; garage_start DIR; ...; garage_stop
#   tests/services/garage.sh run -- CMD...     (start Garage, run CMD with ATOLL_TEST_S3_* set, stop)

GARAGE_VERSION=2.5.0 # the version whose CLI this file drives (`cargo install` pins it)

_garage_fail() { # MESSAGE: one clear line, then the tail of the server log, and stop the server
  echo "garage_start: $1" >&2
  if [ -s "$_GARAGE_DIR/garage.log" ]; then
    echo "--- last lines of $_GARAGE_DIR/garage.log:" >&2
    tail -20 "$_GARAGE_DIR/garage.log" >&2
  fi
  garage_stop
  return 1
}

_garage() { "$_GARAGE_BIN" -c "$_GARAGE_DIR/garage.toml" "$@"; }

garage_start() {
  local dir=${1:?usage: garage_start DIR}
  mkdir -p "$dir" && _GARAGE_DIR=$(cd "$dir" && pwd) || return 1

  _GARAGE_BIN=$(command -v garage || true)
  [ -n "$_GARAGE_BIN" ] || [ ! -x "$HOME/.cargo/bin/garage" ] || _GARAGE_BIN=$HOME/.cargo/bin/garage
  if [ -z "$_GARAGE_BIN" ]; then
    echo "garage_start: garage not found; running 'cargo install garage --version $GARAGE_VERSION" \
      "--locked' (8-12 minutes, log in $_GARAGE_DIR/garage-install.log)" >&2
    if ! cargo install garage --version "$GARAGE_VERSION" --locked >"$_GARAGE_DIR/garage-install.log" 2>&1; then
      echo "garage_start: cargo install garage failed:" >&2
      tail -20 "$_GARAGE_DIR/garage-install.log" >&2
      return 1
    fi
    _GARAGE_BIN=$HOME/.cargo/bin/garage
  fi

  # Two free loopback ports from the kernel (RPC, S3), and a fresh RPC secret.
  local ports rpc_port s3_port secret
  ports=$(python3 -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))') || { echo "garage_start: could not pick free ports" >&2; return 1; }
  read -r rpc_port s3_port <<<"$ports"
  secret=$(python3 -c 'import secrets; print(secrets.token_hex(32))') || return 1

  # No [admin] api_bind_addr: the admin HTTP API stays off; the CLI talks to the node over RPC.
  cat >"$_GARAGE_DIR/garage.toml" <<EOF
metadata_dir = "$_GARAGE_DIR/meta"
data_dir = "$_GARAGE_DIR/data"
db_engine = "sqlite"
replication_factor = 1

rpc_bind_addr = "127.0.0.1:$rpc_port"
rpc_public_addr = "127.0.0.1:$rpc_port"
rpc_secret = "$secret"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$s3_port"
EOF

  # Not through _garage: $! must be garage's own pid, not that of a subshell running a function.
  NO_COLOR=1 "$_GARAGE_BIN" -c "$_GARAGE_DIR/garage.toml" server </dev/null >"$_GARAGE_DIR/garage.log" 2>&1 &
  _GARAGE_PID=$!
  echo "$_GARAGE_PID" >"$_GARAGE_DIR/garage.pid"

  # Up to ~20 s for the node to answer over RPC.
  local deadline=$((SECONDS + 20))
  until _garage status >/dev/null 2>&1; do
    kill -0 "$_GARAGE_PID" 2>/dev/null || { _garage_fail "garage server exited during startup"; return 1; }
    ((SECONDS < deadline)) || { _garage_fail "garage did not answer on 127.0.0.1:$rpc_port within 20 s"; return 1; }
    sleep 0.1
  done

  # Single-node layout, the bucket and a key allowed on it.
  local node_id key_id secret_key step
  node_id=$(_garage node id -q 2>/dev/null) && node_id=${node_id%%@*} && [ -n "$node_id" ] ||
    { _garage_fail "'garage node id' failed"; return 1; }
  for step in "layout assign -z dc1 -c 10G $node_id" "layout apply --version 1" \
    "bucket create atoll-tests" "key create atoll-tests"; do
    # shellcheck disable=SC2086 # the words of $step are the arguments
    _garage $step >>"$_GARAGE_DIR/setup.log" 2>&1 ||
      { _garage_fail "'garage $step' failed (see $_GARAGE_DIR/setup.log)"; return 1; }
  done
  key_id=$(_garage key info atoll-tests --key-id 2>>"$_GARAGE_DIR/setup.log") &&
    secret_key=$(_garage key info atoll-tests --secret-key 2>>"$_GARAGE_DIR/setup.log") &&
    [ -n "$key_id" ] && [ -n "$secret_key" ] || { _garage_fail "'garage key info' failed"; return 1; }
  _garage bucket allow --read --write --owner atoll-tests --key "$key_id" >>"$_GARAGE_DIR/setup.log" 2>&1 ||
    { _garage_fail "'garage bucket allow' failed (see $_GARAGE_DIR/setup.log)"; return 1; }

  export ATOLL_TEST_S3_ENDPOINT="http://127.0.0.1:$s3_port"
  export ATOLL_TEST_S3_BUCKET=atoll-tests
  export ATOLL_TEST_S3_REGION=garage
  export ATOLL_TEST_S3_ACCESS_KEY_ID=$key_id
  export ATOLL_TEST_S3_SECRET_ACCESS_KEY=$secret_key

  # Usable means a signed, path-style ListObjectsV2 on the bucket answers 200. Garage refuses a
  # request without x-amz-content-sha256, which curl 7.88's --aws-sigv4 does not add by itself.
  until curl -fsS --noproxy '*' -o /dev/null --aws-sigv4 "aws:amz:garage:s3" --user "$key_id:$secret_key" \
    -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" \
    "$ATOLL_TEST_S3_ENDPOINT/atoll-tests?list-type=2&max-keys=1" 2>/dev/null; do
    ((SECONDS < deadline)) || { _garage_fail "the bucket at $ATOLL_TEST_S3_ENDPOINT/atoll-tests was not usable within 20 s"; return 1; }
    sleep 0.1
  done
}

garage_stop() { # SIGTERM, up to 10 s for a clean exit, then SIGKILL; idempotent
  local pid=${_GARAGE_PID:-}
  [ -n "$pid" ] || pid=$(cat "${_GARAGE_DIR:-/nonexistent}/garage.pid" 2>/dev/null) || return 0
  if kill "$pid" 2>/dev/null; then
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
  rm -f "${_GARAGE_DIR:-/nonexistent}/garage.pid"
  _GARAGE_PID=
  return 0
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  [ "${1:-}" = run ] && [ "${2:-}" = -- ] && [ $# -ge 3 ] ||
    { echo "usage: $0 run -- CMD [ARGS...]" >&2; exit 2; }
  shift 2
  _garage_run_dir=$(mktemp -d /tmp/atoll-garage.XXXXXX)
  trap 'garage_stop; rm -rf "$_garage_run_dir"' EXIT
  garage_start "$_garage_run_dir"
  status=0
  "$@" || status=$?
  exit "$status"
fi
