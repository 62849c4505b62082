#!/usr/bin/env bash
# Installs what rkt needs on Debian (as root), builds it, and runs the main job on the embedded
# default image: a busybox ACI made from Debian's busybox-static is fetched, listed and rendered.
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v busybox >/dev/null || ! command -v cc >/dev/null || ! command -v cargo >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq build-essential busybox-static >/dev/null
fi
command -v cargo >/dev/null || { echo "quickstart: Rust (cargo) is needed: https://rustup.rs" >&2; exit 1; }
cargo build --release --quiet
rkt=$PWD/target/release/rkt
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
testdata/make-busybox-aci.sh "$work/busybox.aci" >/dev/null
echo "+ rkt --insecure-options=image fetch busybox.aci"
"$rkt" --insecure-options=image fetch "$work/busybox.aci"
echo "+ rkt image list"
"$rkt" image list
echo "+ rkt image render --rootfs-only rkt.local/busybox $work/rootfs"
"$rkt" image render --rootfs-only rkt.local/busybox "$work/rootfs"
echo "+ rkt image cat-manifest --pretty-print rkt.local/busybox"
"$rkt" image cat-manifest --pretty-print rkt.local/busybox
echo "rendered: $(ls "$work/rootfs/bin" | wc -l) entries in /bin; $("$work/rootfs/bin/busybox" 2>&1 | sed -n 1p)"
