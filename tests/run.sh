#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine: installs the real clients the end-to-end
# tests drive (skopeo, docker.io, busybox-static for a runnable test image, systemd for
# systemd-analyze, chromium and a font for the web page's browser tests), builds the static
# release binary (its linking is tested), starts a private dockerd, a single-node Garage (a
# real S3 store, tests/services/garage.sh) and a private PostgreSQL (tests/services/postgres.sh)
# for the duration, and runs `cargo test` with ATOLL_E2E=require, so a missing client fails the
# run instead of skipping quietly. Everything listens on loopback only.
#
#   tests/run.sh [cargo test arguments...]
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(skopeo docker.io busybox-static ca-certificates curl systemd file chromium fonts-dejavu-core)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  echo "tests/run.sh: installing ${missing[*]}"
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# A private dockerd: its own socket and state, no iptables, no bridge, vfs storage. Docker
# treats 127.0.0.0/8 registries as insecure, so it talks plain HTTP to a loopback atoll.
state=$(mktemp -d /tmp/atoll-tests.XXXXXX)
# mktemp makes it 700: as root, PostgreSQL runs as the postgres user, which must reach
# $state/postgres (711: through, not list).
chmod 711 "$state"
source tests/services/garage.sh
source tests/services/postgres.sh
stop_services() {
  local pid
  garage_stop
  postgres_stop
  # dockerd removes its pid file as it exits: read it once.
  if pid=$(cat "$state/dockerd.pid" 2>/dev/null); then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -rf "$state" 2>/dev/null || true
}
trap stop_services EXIT
dockerd=$(command -v dockerd || echo /usr/sbin/dockerd)
nohup "$dockerd" --iptables=false --ip6tables=false --bridge=none --storage-driver=vfs \
  --data-root "$state/docker" --exec-root "$state/exec" --pidfile "$state/dockerd.pid" \
  -H "unix://$state/docker.sock" >"$state/dockerd.log" 2>&1 &
export DOCKER_HOST="unix://$state/docker.sock"
for _ in $(seq 1 150); do docker info >/dev/null 2>&1 && break; sleep 0.2; done
docker info >/dev/null 2>&1 || { echo "dockerd did not start:"; tail -20 "$state/dockerd.log"; exit 1; }

# A private single-node Garage for the S3 blob store's tests (tests/services/garage.sh): exports
# ATOLL_TEST_S3_ENDPOINT, _BUCKET, _REGION, _ACCESS_KEY_ID and _SECRET_ACCESS_KEY.
garage_start "$state/garage"
# A private PostgreSQL for the PostgreSQL index's tests (tests/services/postgres.sh): exports
# ATOLL_TEST_PG_HOST, _PORT, _PASSWORD (role atoll, which may create databases) and _BIN.
postgres_start "$state/postgres"

scripts/build-static.sh >/dev/null
export ATOLL_RELEASE_BIN=$PWD/target/x86_64-unknown-linux-gnu/release/atoll
export ATOLL_E2E=require
if (($# > 0)); then
  cargo test --locked "$@"
  exit
fi
# The object store's own tests (object_store.rs) need the bucket: they run in the second pass;
# the cluster's (cluster.rs) need the bucket and PostgreSQL: they run in the last pass.
cargo test --locked -- --skip object_store:: --skip cluster::
# The registry's tests again with every blob in Garage's bucket (README "Object storage"): the
# same tests, each registry under a prefix of its own, and the object store's own. Left out:
# tests of the disk engine's own files (an older atoll's trash/ directory).
ATOLL_TEST_BLOB_STORE=s3 cargo test --locked --test it -- \
  uploads:: blobs:: manifests:: gc:: proxy:: bundles:: bundle_limits:: crash:: conformance:: \
  ui:: appliance::verify appliance::health e2e_skopeo:: e2e_docker:: e2e_bundles:: \
  object_store:: \
  --skip gc::a_blob_an_older_collection_left_in_trash_is_put_back_at_start
# The same tests with the index in PostgreSQL (ATOLL_TEST_INDEX=postgres: a database of its own
# for each registry, tests/it/support/index.rs) and the blobs on the disk: the index engine is
# the only difference from the first pass, so a failure here is the PostgreSQL engine's.
ATOLL_TEST_INDEX=postgres cargo test --locked --test it -- \
  uploads:: blobs:: manifests:: gc:: proxy:: bundles:: bundle_limits:: crash:: conformance:: \
  ui:: appliance::verify appliance::health e2e_skopeo:: e2e_docker:: e2e_bundles::
# The shape a cluster runs: nodes sharing the index in PostgreSQL and the blobs in one bucket.
# Fewer tests: the push, pull, delete and collection paths where the two engines meet. Left out
# as in the second pass: the disk engine's own trash/.
ATOLL_TEST_INDEX=postgres ATOLL_TEST_BLOB_STORE=s3 cargo test --locked --test it -- \
  uploads:: blobs:: manifests:: gc:: conformance:: e2e_docker:: \
  --skip gc::a_blob_an_older_collection_left_in_trash_is_put_back_at_start
# The cluster's own tests (tests/it/cluster.rs, issue 20): three nodes on one PostgreSQL database
# and one bucket prefix (a fresh pair for each test), a push split across nodes, listings and
# tokens the same on every node, two collections and two writers at once, PostgreSQL restarted
# under the nodes, and nodes SIGKILLed while clients push (--nocapture: its figures are printed).
# They need both services, so only this pass says ATOLL_TEST_CLUSTER=1 (without it they fail
# rather than pass unrun). One test at a time: `outage` restarts the PostgreSQL all clusters use.
ATOLL_TEST_CLUSTER=1 cargo test --locked --test it -- cluster:: --test-threads 1 --nocapture
