#!/usr/bin/env bash
# Builds a one-layer OCI image layout whose layer is a tar of SIZE_MB of fresh random bytes, so
# every push of it is a real upload (never deduplicated). No downloads: needs only coreutils,
# tar, sha256sum, jq and python3. Adapted from the lab's make-big-image.sh.
#
# The layer is gzipped (at level 0: stored blocks, since random bytes do not compress) because
# skopeo gzips an uncompressed layer on its way to a registry: a push would then time skopeo's
# compressor, not the registry.
#
#   bench/make-image.sh LAYOUT_DIR SIZE_MB [TAG [LAYERS]]   (TAG defaults to "big", LAYERS to 1)
#
# With LAYERS > 1 the image has that many layers of SIZE_MB each (the bundle import measure).
# Prints one line of JSON: {"layer": "sha256:...", "layer_size": N, "manifest": "sha256:..."}
# (the last layer's digest and size).
set -euo pipefail
dir=${1:?usage: make-image.sh LAYOUT_DIR SIZE_MB [TAG [LAYERS]]}
mb=${2:?usage: make-image.sh LAYOUT_DIR SIZE_MB [TAG [LAYERS]]}
tag=${3:-big}
layers=${4:-1}

rm -rf "$dir"
mkdir -p "$dir/blobs/sha256"
work=$(mktemp -d "$dir.tmp.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Moves a file into the layout under its sha256 and prints the hex digest.
put() {
  local d
  d=$(sha256sum "$1" | cut -d' ' -f1)
  mv "$1" "$dir/blobs/sha256/$d"
  echo "$d"
}

diff_ids=() descs=()
for i in $(seq "$layers"); do
  head -c $((mb * 1024 * 1024)) /dev/urandom >"$work/random$i.bin"
  tar -C "$work" --owner=0 --group=0 --numeric-owner --mtime=@0 -cf "$work/layer.tar" "random$i.bin"
  rm "$work/random$i.bin"
  diff_ids+=("sha256:$(sha256sum "$work/layer.tar" | cut -d' ' -f1)")
  python3 -c 'import gzip, shutil, sys
with open(sys.argv[1], "rb") as i, gzip.GzipFile(sys.argv[2], "wb", compresslevel=0, mtime=0) as o:
    shutil.copyfileobj(i, o, 1 << 20)' "$work/layer.tar" "$work/layer.tar.gz"
  rm "$work/layer.tar"
  ls=$(stat -c %s "$work/layer.tar.gz")
  ld=$(put "$work/layer.tar.gz")
  descs+=("$(jq -cn --arg l "sha256:$ld" --argjson ls "$ls" \
    '{mediaType:"application/vnd.oci.image.layer.v1.tar+gzip",digest:$l,size:$ls}')")
done
printf '%s\n' "${diff_ids[@]}" | jq -cR . | jq -cs \
  '{architecture:"amd64",os:"linux",config:{},rootfs:{type:"layers",diff_ids:.}}' >"$work/config.json"
cs=$(stat -c %s "$work/config.json")
cd_=$(put "$work/config.json")
printf '%s\n' "${descs[@]}" | jq -cs --arg c "sha256:$cd_" --argjson cs "$cs" \
  '{schemaVersion:2,mediaType:"application/vnd.oci.image.manifest.v1+json",
    config:{mediaType:"application/vnd.oci.image.config.v1+json",digest:$c,size:$cs},
    layers:.}' >"$work/manifest.json"
ms=$(stat -c %s "$work/manifest.json")
md=$(put "$work/manifest.json")
echo '{"imageLayoutVersion":"1.0.0"}' >"$dir/oci-layout"
jq -cn --arg d "sha256:$md" --argjson s "$ms" --arg t "$tag" \
  '{schemaVersion:2,manifests:[{mediaType:"application/vnd.oci.image.manifest.v1+json",digest:$d,size:$s,annotations:{"org.opencontainers.image.ref.name":$t}}]}' \
  >"$dir/index.json"
jq -cn --arg l "sha256:$ld" --argjson ls "$ls" --arg m "sha256:$md" \
  '{layer:$l,layer_size:$ls,manifest:$m}'
