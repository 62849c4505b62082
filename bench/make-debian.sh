#!/usr/bin/env bash
# An OCI image layout (tag v1) of a real Debian 12 root filesystem, as base images are made: one
# gzip layer from `debootstrap --variant=minbase` (about 190 MiB, 5,000 entries), then a small
# layer that removes the documentation (whiteouts) and adds a user. Needs root, debootstrap and
# umoci, and Debian's package mirror (the apt sources). The root filesystem is kept in
# /var/tmp/rkt-bench-debian.tar, so that later runs bench the same bytes without the mirror.
# Usage: bench/make-debian.sh LAYOUT_DIR
set -euo pipefail
layout=$1
cache=/var/tmp/rkt-bench-debian.tar
for tool in debootstrap umoci; do
  command -v $tool >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $tool >/dev/null
done
work=$(mktemp -d /var/tmp/rkt-bench-debian.XXXXXX)
trap 'rm -rf "$work"' EXIT
if [ ! -s "$cache" ]; then
  debootstrap --variant=minbase bookworm "$work/rootfs" http://deb.debian.org/debian >"$work/log" 2>&1 \
    || { tail -5 "$work/log" >&2; exit 1; }
  tar -C "$work/rootfs" --numeric-owner --xattrs -cf "$cache.part" . && mv "$cache.part" "$cache"
  rm -rf "$work/rootfs"
fi
mkdir "$work/rootfs"
tar -C "$work/rootfs" --numeric-owner --xattrs -xpf "$cache"
rm -rf "$layout"
umoci init --layout "$layout"
umoci new --image "$layout:v1"
umoci insert --image "$layout:v1" "$work/rootfs" /
# The second layer: whiteouts for the removed documentation, and a user's files.
umoci unpack --image "$layout:v1" "$work/bundle" >/dev/null
rm -rf "$work/bundle/rootfs/usr/share/doc" "$work/bundle/rootfs/usr/share/man"
chroot "$work/bundle/rootfs" useradd -m -u 1000 app
umoci repack --image "$layout:v1" "$work/bundle" >/dev/null
umoci config --image "$layout:v1" --config.user=app --config.cmd=/bin/sh --config.cmd=-c --config.cmd='id; cat /etc/debian_version'
