#!/usr/bin/env bash
# Starts a release binary (built by scripts/release.sh) for any of atoll's targets, under
# qemu-user when it is not this machine's architecture, and drives it with real clients on
# loopback: skopeo pushes and pulls a single and a multi-arch image (digests and bytes compared),
# converts one to Docker v2s2, deletes one; curl reads /healthz, /readyz and a blob; a bundle is
# imported with --import; `--gc --dry-run` names the deleted image's blobs and changes nothing,
# `--gc` frees them; SIGTERM stops it cleanly; `--verify` passes, and fails on a damaged copy;
# a --tls-auto instance serves a skopeo push over HTTPS (the cross-built OpenSSL).
#
#   tests/arm-smoke.sh dist/.../atoll            (or target/<triple>/release/atoll)
#
# Installs what it needs on a Debian machine when missing (qemu-user-static, skopeo, jq, curl,
# file). Ports are chosen by the kernel (--listen 127.0.0.1:0; the address is read from the
# startup line). Everything lives in one temporary directory, removed on exit with the servers
# it started. Ends with "N passed, M failed"; exits 1 if anything failed.
set -euo pipefail

bin=${1:?usage: tests/arm-smoke.sh ATOLL_BINARY}
bin=$(realpath "$bin")
[ -x "$bin" ] || { echo "arm-smoke: $bin is not an executable" >&2; exit 2; }

packages=(skopeo jq curl file ca-certificates)
what=$(LC_ALL=C file -b "$bin" 2>/dev/null || true)
case $what in
  *"ARM aarch64"*) runner=(qemu-aarch64-static); arch=arm64; packages+=(qemu-user-static) ;;
  *"ARM, EABI5"*) runner=(qemu-arm-static); arch=arm; packages+=(qemu-user-static) ;;
  *x86-64*) runner=(); arch=amd64 ;;
  "") runner=(); arch=unknown ;;  # `file` not installed yet: decided again below
  *) echo "arm-smoke: not an atoll target: $what" >&2; exit 2 ;;
esac
# qemu-user-static is needed only for ARM binaries; the rest always.
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ "$arch" = unknown ]; then dpkg -s qemu-user-static >/dev/null 2>&1 || missing+=(qemu-user-static); fi
if ((${#missing[@]})); then
  echo "arm-smoke: installing ${missing[*]}"
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi
if [ "$arch" = unknown ]; then exec "$0" "$@"; fi

started=$(date +%s)
work=$(mktemp -d /tmp/atoll-arm-smoke.XXXXXX)
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do
    kill -0 "$pid" 2>/dev/null || continue  # stopped (and waited for) by a check
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

atoll() { "${runner[@]}" "$bin" "$@"; }

# -- checks -------------------------------------------------------------------------------------
passed=0 failed=0
log_of=""  # the server log shown when a check fails
# check NAME COMMAND...: runs COMMAND in a subshell with errexit on (so any failing step fails
# the check; `if` would turn errexit off inside it); a failure prints its output and the
# server's last lines.
check() {
  local name=$1 rc; shift
  set +e
  (set -e; "$@") >"$work/check.out" 2>&1
  rc=$?
  set -e
  report "$name" "$rc"
}
# check_here NAME COMMAND...: the same in this shell, for a command that must `wait` for a
# server this shell started (written with explicit returns).
check_here() {
  local name=$1 rc=0; shift
  "$@" >"$work/check.out" 2>&1 || rc=$?
  report "$name" "$rc"
}
report() {
  if [ "$2" = 0 ]; then
    passed=$((passed + 1)); echo "ok   $1"
  else
    failed=$((failed + 1)); echo "FAIL $1 (exit $2)"
    tail -30 "$work/check.out" | sed 's/^/     | /'
    if [ -n "$log_of" ]; then echo "     server log:"; tail -15 "$log_of" | sed 's/^/     | /'; fi
  fi
}
# expect WHAT GOT WANT
expect() { [ "$2" = "$3" ] || { echo "$1: got '$2', want '$3'"; return 1; }; }

# -- OCI layouts, made here with no downloads ---------------------------------------------------
# add_blob LAYOUT FILE: moves FILE into the layout's blobs; prints "sha256:HEX SIZE".
add_blob() {
  local d s
  d=$(sha256sum "$2" | cut -d' ' -f1); s=$(stat -c %s "$2")
  mv "$2" "$1/blobs/sha256/$d"
  echo "sha256:$d $s"
}
new_layout() {
  mkdir -p "$1/blobs/sha256"
  echo '{"imageLayoutVersion":"1.0.0"}' >"$1/oci-layout"
  echo '{"schemaVersion":2,"manifests":[]}' >"$1/index.json"
}
# add_image LAYOUT ARCH: a manifest of one gzipped layer of fresh random bytes; prints "DIGEST SIZE".
add_image() {
  local dir=$1 t diff_id ld ls cd cs
  t=$(mktemp -d "$work/layer.XXXXXX")
  head -c 200000 /dev/urandom >"$t/random.bin"
  echo "atoll arm smoke, $2" >"$t/hello.txt"
  tar -C "$t" --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -cf "$t.tar" .
  diff_id=sha256:$(sha256sum "$t.tar" | cut -d' ' -f1)
  gzip -n "$t.tar"
  read -r ld ls < <(add_blob "$dir" "$t.tar.gz")
  jq -cn --arg a "$2" --arg id "$diff_id" \
    '{architecture:$a, os:"linux", config:{Cmd:["/bin/cat","/hello.txt"]},
      rootfs:{type:"layers", diff_ids:[$id]}}' >"$t.config"
  read -r cd cs < <(add_blob "$dir" "$t.config")
  jq -cn --arg cd "$cd" --argjson cs "$cs" --arg ld "$ld" --argjson ls "$ls" \
    '{schemaVersion:2, mediaType:"application/vnd.oci.image.manifest.v1+json",
      config:{mediaType:"application/vnd.oci.image.config.v1+json", digest:$cd, size:$cs},
      layers:[{mediaType:"application/vnd.oci.image.layer.v1.tar+gzip", digest:$ld, size:$ls}]}' \
    >"$t.manifest"
  rm -rf "$t"
  add_blob "$dir" "$t.manifest"
}
# tag LAYOUT MEDIATYPE DIGEST SIZE TAG: names a manifest or index in the layout's index.json.
tag() {
  jq --arg m "$2" --arg d "$3" --argjson s "$4" --arg t "$5" \
    '.manifests += [{mediaType:$m, digest:$d, size:$s,
                     annotations:{"org.opencontainers.image.ref.name":$t}}]' \
    "$1/index.json" >"$1/index.json.new"
  mv "$1/index.json.new" "$1/index.json"
}
oci_manifest=application/vnd.oci.image.manifest.v1+json
oci_index=application/vnd.oci.image.index.v1+json

# A single-platform image (tag 1), a multi-arch index (amd64 + arm64 + arm/v7, tag multi), a
# throwaway image to delete (tag gone), and a bundle to import.
layout=$work/layout
new_layout "$layout"
read -r img_d img_s < <(add_image "$layout" "$arch")
tag "$layout" $oci_manifest "$img_d" "$img_s" 1
read -r gone_d gone_s < <(add_image "$layout" "$arch")
tag "$layout" $oci_manifest "$gone_d" "$gone_s" gone
children=()
for plat in amd64 arm64 arm/v7; do
  read -r d s < <(add_image "$layout" "${plat%/*}")
  children+=("$(jq -cn --arg m $oci_manifest --arg d "$d" --argjson s "$s" --arg p "$plat" \
    '{mediaType:$m, digest:$d, size:$s,
      platform:({architecture:($p|split("/")[0]), os:"linux"}
                + (if ($p|contains("/")) then {variant:($p|split("/")[1])} else {} end))}')")
done
printf '%s\n' "${children[@]}" |
  jq -cs --arg m $oci_index '{schemaVersion:2, mediaType:$m, manifests:.}' >"$work/index.blob"
read -r multi_d multi_s < <(add_blob "$layout" "$work/index.blob")
tag "$layout" $oci_index "$multi_d" "$multi_s" multi
gone_layer=$(jq -r '.layers[0].digest' "$layout/blobs/sha256/${gone_d#sha256:}")

bundle_dir=$work/bundle
new_layout "$bundle_dir"
read -r bun_d bun_s < <(add_image "$bundle_dir" "$arch")
tag "$bundle_dir" $oci_manifest "$bun_d" "$bun_s" 1
tar -C "$bundle_dir" --sort=name -cf - . | gzip -n >"$work/bundle.tar.gz"

# -- the server ---------------------------------------------------------------------------------
# start NAME ARGS...: starts atoll on 127.0.0.1:0 in the background; sets $addr from its
# "listening on" line (up to 60 s: qemu is slow to start a large binary) and $pid.
start() {
  local name=$1; shift
  log_of=$work/$name.log
  # Not through the atoll function: $! must be the server's own pid (qemu's, which passes
  # signals on to the program it runs).
  "${runner[@]}" "$bin" --listen 127.0.0.1:0 --log-level info "$@" >"$log_of" 2>&1 &
  pid=$!
  pids+=("$pid")
  addr=""
  for _ in $(seq 600); do
    addr=$(sed -n 's|.*listening on https\{0,1\}://\([0-9.:]*\).*|\1|p' "$log_of" | head -1 || true)
    [ -n "$addr" ] && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "arm-smoke: atoll ($name) did not start:" >&2
  cat "$log_of" >&2
  exit 1
}
# stop PID: SIGTERM, and the exit status must be 0 (a clean stop) within 30 s.
stop() {
  local pid=$1 rc=0
  kill -TERM "$pid" || return 1
  for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then echo "still running 30 s after SIGTERM"; return 1; fi
  wait "$pid" || rc=$?
  [ "$rc" = 0 ] || { echo "exit status $rc"; return 1; }
}

echo "arm-smoke: $what"
echo "arm-smoke: runner: ${runner[*]:-native}; $(atoll --version)"
version() { local v; v=$(atoll --version); echo "$v"; grep -Eq '\((x86_64|aarch64|armv7)-unknown-linux-' <<<"$v"; }
check "--version names the target" version

data=$work/data
start plain --data-dir "$data"
reg=$addr
pid_plain=$pid
tls=(--src-tls-verify=false --dest-tls-verify=false)

http_code() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
check "GET /healthz is 200" expect healthz "$(http_code "http://$reg/healthz")" 200
check "GET /readyz is 200" expect readyz "$(http_code "http://$reg/readyz")" 200
check "GET /v2/ is 200" expect v2 "$(http_code "http://$reg/v2/")" 200

raw_digest() { skopeo inspect --raw --tls-verify=false "$1" | sha256sum | sed 's/^/sha256:/; s/ .*//'; }
push_single() {
  skopeo copy -q --preserve-digests "${tls[@]}" "oci:$layout:1" "docker://$reg/smoke/img:1"
  expect "manifest digest" "$(raw_digest "docker://$reg/smoke/img:1")" "$img_d"
}
check "skopeo push, single image (digest kept)" push_single

# blobs_same A B: every blob file of layout A is in layout B with the same bytes.
blobs_same() {
  local f
  for f in "$1"/blobs/sha256/*; do cmp "$f" "$2/blobs/sha256/${f##*/}" || return 1; done
}
pull_single() {
  skopeo copy -q "${tls[@]}" "docker://$reg/smoke/img:1" "oci:$work/pulled:1"
  expect "pulled manifest" "$(jq -r '.manifests[0].digest' "$work/pulled/index.json")" "$img_d"
  blobs_same "$work/pulled" "$layout"
}
check "skopeo pull, single image (same bytes)" pull_single

push_multi() {
  skopeo copy -q --all --preserve-digests "${tls[@]}" "oci:$layout:multi" \
    "docker://$reg/smoke/multi:1"
  expect "index digest" "$(raw_digest "docker://$reg/smoke/multi:1")" "$multi_d"
  expect "platforms" "$(skopeo inspect --raw --tls-verify=false "docker://$reg/smoke/multi:1" |
    jq -c '[.manifests[].platform | .architecture + (.variant // "")]')" '["amd64","arm64","armv7"]'
}
check "skopeo push --all, multi-arch index (digest kept)" push_multi

pull_multi() {
  skopeo copy -q --all "${tls[@]}" "docker://$reg/smoke/multi:1" "oci:$work/pulled-multi:1"
  blobs_same "$work/pulled-multi" "$layout"
  expect "blobs pulled" "$(ls "$work/pulled-multi/blobs/sha256" | wc -l)" 10
  # What a box pulls: its own platform.
  skopeo copy -q "${tls[@]}" --override-arch arm64 "docker://$reg/smoke/multi:1" \
    "oci:$work/pulled-arm64:1"
  local blobs=$work/pulled-arm64/blobs/sha256 m c
  m=$(jq -r '.manifests[0].digest' "$work/pulled-arm64/index.json")
  c=$(jq -r .config.digest "$blobs/${m#sha256:}")
  expect "arm64 config" "$(jq -r .architecture "$blobs/${c#sha256:}")" arm64
}
check "skopeo pull --all and --override-arch arm64, multi-arch" pull_multi

convert_v2s2() {
  skopeo copy -q --format v2s2 "${tls[@]}" "oci:$layout:1" "docker://$reg/smoke/img:v2s2"
  expect "media type" "$(skopeo inspect --raw --tls-verify=false "docker://$reg/smoke/img:v2s2" |
    jq -r .mediaType)" application/vnd.docker.distribution.manifest.v2+json
  expect "tags" "$(skopeo list-tags --tls-verify=false "docker://$reg/smoke/img" |
    jq -c '.Tags | sort')" '["1","v2s2"]'
}
check "skopeo push --format v2s2 and list-tags" convert_v2s2

blob_get() {
  local layer
  layer=$(jq -r '.layers[0].digest' "$layout/blobs/sha256/${img_d#sha256:}")
  curl -fsS "http://$reg/v2/smoke/img/blobs/$layer" -o "$work/blob"
  cmp "$work/blob" "$layout/blobs/sha256/${layer#sha256:}"
  expect "range" "$(curl -fsS -r 100-199 "http://$reg/v2/smoke/img/blobs/$layer" | sha256sum)" \
    "$(tail -c +101 "$work/blob" | head -c 100 | sha256sum)"
}
check "GET a blob, whole and a Range" blob_get

delete_gone() {
  skopeo copy -q --preserve-digests "${tls[@]}" "oci:$layout:gone" "docker://$reg/smoke/gone:1"
  skopeo delete --tls-verify=false "docker://$reg/smoke/gone:1"
  expect "deleted manifest" "$(http_code "http://$reg/v2/smoke/gone/manifests/1")" 404
  # The index keeps times in whole seconds and the collector keeps what was used at or after
  # now - grace: with --gc-grace 0s, what was pushed in this very second stays.
  sleep 2
}
check "skopeo push and delete an image" delete_gone

gc_dry_run() {
  local before after
  before=$(cd "$data" && find blobs -type f | sort | xargs sha256sum | sha256sum)
  atoll --gc --dry-run --gc-grace 0s --data-dir "$data" | tee "$work/gc.out"
  grep -q "would delete blob $gone_layer" "$work/gc.out"
  grep -q "dry run: nothing changed" "$work/gc.out"
  after=$(cd "$data" && find blobs -type f | sort | xargs sha256sum | sha256sum)
  expect "blobs after the dry run" "$after" "$before"
}
check "--gc --dry-run names the deleted image's layer, changes nothing" gc_dry_run

gc_run() {
  atoll --gc --gc-grace 0s --data-dir "$data"
  expect "deleted layer" "$(http_code "http://$reg/v2/smoke/gone/blobs/$gone_layer")" 404
  expect "kept image" "$(raw_digest "docker://$reg/smoke/img:1")" "$img_d"
}
check "--gc beside the server frees it, keeps the rest" gc_run

import_bundle() {
  atoll --data-dir "$data" --import "$work/bundle.tar.gz" --import-name smoke/imported
  expect "imported digest" "$(raw_digest "docker://$reg/smoke/imported:1")" "$bun_d"
  skopeo copy -q "${tls[@]}" "docker://$reg/smoke/imported:1" "oci:$work/pulled-import:1"
  blobs_same "$work/pulled-import" "$bundle_dir"
}
check "--import of a gzipped OCI layout bundle beside the server, pulled back" import_bundle

check_here "SIGTERM stops the server cleanly (exit 0)" stop "$pid_plain"
log_of=""

check "--verify on the data directory passes" atoll --verify --data-dir "$data"
damaged() {
  cp -a "$data" "$work/damaged"
  local layer
  layer=$(jq -r '.layers[0].digest' "$layout/blobs/sha256/${img_d#sha256:}")
  f=$(find "$work/damaged/blobs" -name "${layer#sha256:}")
  printf 'X' | dd of="$f" bs=1 seek=1000 conv=notrunc status=none
  if atoll --verify --data-dir "$work/damaged" >"$work/verify.out" 2>&1; then
    cat "$work/verify.out"; echo "--verify passed a damaged blob"; return 1
  fi
  grep -q "${layer#sha256:}" "$work/verify.out" || { cat "$work/verify.out"; return 1; }
}
check "--verify names a damaged blob and exits 1" damaged

start tls --data-dir "$work/data-tls" --tls-auto
mkdir -p "$work/certs" && cp "$work/data-tls/tls/ca.crt" "$work/certs/ca.crt"
tls_push() {
  expect "https healthz" "$(http_code --cacert "$work/certs/ca.crt" "https://$addr/healthz")" 200
  skopeo copy -q --preserve-digests --dest-cert-dir "$work/certs" "oci:$layout:1" \
    "docker://$addr/smoke/img:1"
  expect "manifest over TLS" "$(skopeo inspect --raw --cert-dir "$work/certs" \
    "docker://$addr/smoke/img:1" | sha256sum | sed 's/^/sha256:/; s/ .*//')" "$img_d"
}
check "--tls-auto: skopeo push and inspect over HTTPS, CA verified" tls_push
check_here "SIGTERM stops the TLS server cleanly (exit 0)" stop "$pid"
log_of=""

echo "arm-smoke: $(basename "$bin") ($arch) in $(($(date +%s) - started)) s"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
