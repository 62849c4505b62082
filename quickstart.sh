#!/usr/bin/env bash
# Installs what rkt needs on Debian (as root), builds it, and runs the main job on the embedded
# default image: a busybox ACI made from Debian's busybox-static is fetched, listed and run.
set -euo pipefail
cd "$(dirname "$0")"
# nettle-dev and libclang-dev build sequoia-openpgp, libssl-dev links the system libcrypto (the
# SHA-512 of image IDs); the rest runs pods.
if ! command -v busybox >/dev/null || ! command -v cc >/dev/null || [ ! -x /usr/lib/cni/ptp ] || ! command -v iptables >/dev/null \
  || ! dpkg -s nettle-dev >/dev/null 2>&1 || ! dpkg -s libclang-dev >/dev/null 2>&1 \
  || ! dpkg -s libssl-dev >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq build-essential pkg-config nettle-dev libclang-dev libssl-dev busybox-static containernetworking-plugins iptables >/dev/null
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
echo "+ rkt run rkt.local/busybox"
"$rkt" run rkt.local/busybox
echo "+ rkt run --net=none rkt.local/busybox --exec=/bin/sh -- -c 'hostname; ls /sys/class/net'"
"$rkt" run --net=none rkt.local/busybox --exec=/bin/sh -- -c 'hostname; ls /sys/class/net'
echo "+ rkt list"
"$rkt" list
