#!/usr/bin/env bash
# The release: static, stripped atoll binaries for the boxes it runs on, built on this machine
# with Debian's cross compilers (no container engine), packed with the README, the LICENSE and
# the systemd units, and checksummed.
#
#   scripts/release.sh                       every target below
#   scripts/release.sh aarch64-unknown-linux-musl [...]   only those
#
#   -> dist/atoll-VERSION-TARGET.tar.gz      atoll-VERSION-TARGET/{atoll,README.md,LICENSE,systemd/}
#      dist/SHA256SUMS                       of every dist/atoll-VERSION-*.tar.gz present
#
# Targets:
#   x86_64-unknown-linux-musl       x86_64 boxes
#   aarch64-unknown-linux-musl      64-bit ARM boxes (most edge boxes)
#   armv7-unknown-linux-gnueabihf   32-bit ARMv7 boxes: glibc linked in with crt-static, because
#                                   rustup does not serve armv7-unknown-linux-musleabihf here
#
# OpenSSL (vendored), SQLite (bundled), blake3 and mimalloc are C compiled by the cc crate, which
# reads CC_<target> and AR_<target>; rustc links with CARGO_TARGET_<TRIPLE>_LINKER. Those are
# set here, per target, rather than in .cargo/config.toml: the compilers' names are those of
# Debian's cross packages on the build machine, not a property of the project, and the default
# x86_64 build (tests, scripts/build-static.sh) must not change.
#
# The C code of a musl target is compiled against musl's headers, with the compilers Debian
# provides: musl-gcc and aarch64-linux-musl-gcc (from musl-dev and musl-dev:arm64) are wrappers
# that put the Debian gcc (native, or the aarch64 cross gcc) on musl's headers. Debian's glibc
# cross gcc alone does not do: glibc's headers turn open(), fopen(), stat()... into open64(),
# fopen64(), stat64()... (SQLite and OpenSSL ask for 64-bit file offsets), which musl 1.2.4+ no
# longer has, and they may inline glibc's own structures. rustc links with the plain gcc
# driver and rustup's musl crt objects and libc.a ("self-contained", musl 1.2.5).
#
# Installs what it needs on a Debian machine (cross gcc, musl-tools, musl-dev:arm64, perl, make,
# file; rustup targets) when missing; musl-dev:arm64 needs dpkg's arm64 architecture, added then.
set -euo pipefail
cd "$(dirname "$0")/.."

all_targets=(x86_64-unknown-linux-musl aarch64-unknown-linux-musl armv7-unknown-linux-gnueabihf)
targets=("$@")
((${#targets[@]})) || targets=("${all_targets[@]}")

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
[ -n "$version" ] || { echo "release.sh: no version in Cargo.toml" >&2; exit 1; }
target_dir=${CARGO_TARGET_DIR:-$PWD/target}
dist=$PWD/dist

# Per target: Debian packages, C compiler, archiver, linker, what `file` must say, extra flags.
# DT_RELR (pack-relative-relocs; musl >= 1.2.4 and glibc >= 2.36 apply it): the static-pie's
# relocations take kilobytes instead of hundreds, read at every start (scripts/build-static.sh
# says more). Debian 12's x86_64 ld has it; its aarch64 and arm cross ld (binutils 2.40) ignore
# it with a warning, so those builds go without.
relr="-C link-arg=-Wl,-z,pack-relative-relocs"
setup() {
  case $1 in
    x86_64-unknown-linux-musl)
      pkgs="musl-tools"; cc=musl-gcc; ar=ar; linker=cc; arch="x86-64"; flags="$relr" ;;
    aarch64-unknown-linux-musl)
      pkgs="gcc-aarch64-linux-gnu musl-dev:arm64"; cc=aarch64-linux-musl-gcc
      ar=aarch64-linux-gnu-ar; linker=aarch64-linux-gnu-gcc; arch="ARM aarch64"; flags="" ;;
    armv7-unknown-linux-gnueabihf)
      pkgs="gcc-arm-linux-gnueabihf libc6-dev-armhf-cross"; cc=arm-linux-gnueabihf-gcc
      ar=arm-linux-gnueabihf-ar; linker=$cc; arch="ARM, EABI5"
      flags="-C target-feature=+crt-static" ;;
    *) echo "release.sh: unknown target $1 (known: ${all_targets[*]})" >&2; exit 2 ;;
  esac
}

# Packages and rustup targets, installed only when missing.
need=(perl make file)
for t in "${targets[@]}"; do setup "$t"; read -ra more <<<"$pkgs"; need+=("${more[@]}"); done
missing=()
for p in "${need[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  echo "release.sh: installing ${missing[*]}"
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  if [[ " ${missing[*]}" == *:arm64* ]] && ! dpkg --print-foreign-architectures | grep -qx arm64; then
    $sudo dpkg --add-architecture arm64
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi
installed=$(rustup target list --installed)
for t in "${targets[@]}"; do
  grep -qx "$t" <<<"$installed" || rustup target add "$t"
done

# Reproducible archives: every file's time is the last commit's, owners are 0.
epoch=$(git log -1 --format=%ct 2>/dev/null || date +%s)
mkdir -p "$dist"
for t in "${targets[@]}"; do
  setup "$t"
  tu=${t//-/_}
  TU=${tu^^}
  echo "release.sh: building $t"
  # --target makes the flags apply to atoll only, not to the build scripts built for the host.
  env "CC_$tu=$cc" "AR_$tu=$ar" "CARGO_TARGET_${TU}_LINKER=$linker" \
    "CARGO_TARGET_${TU}_RUSTFLAGS=$flags" \
    cargo build --locked --release --target "$t"
  bin=$target_dir/$t/release/atoll
  what=$(file -b "$bin")
  case $what in
    *"$arch"*) ;;
    *) echo "release.sh: $bin is not for $arch: $what" >&2; exit 1 ;;
  esac
  case $what in
    *"statically linked"* | *"static-pie linked"*) ;;
    *) echo "release.sh: $bin is not statically linked: $what" >&2; exit 1 ;;
  esac
  case $what in
    *", stripped"*) ;;
    *) echo "release.sh: $bin is not stripped: $what" >&2; exit 1 ;;
  esac

  name=atoll-$version-$t
  stage=$(mktemp -d)
  mkdir -p "$stage/$name/systemd"
  install -m 0755 "$bin" "$stage/$name/atoll"
  install -m 0644 README.md LICENSE "$stage/$name/"
  install -m 0644 systemd/* "$stage/$name/systemd/"
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$epoch" -C "$stage" -cf - "$name" |
    gzip -9n >"$dist/$name.tar.gz"
  rm -rf "$stage"
  printf '%s\n  %s bytes: %s\n' "dist/$name.tar.gz" "$(stat -c %s "$bin")" "$what"
done

(cd "$dist" && sha256sum "atoll-$version-"*.tar.gz >SHA256SUMS && cat SHA256SUMS)
