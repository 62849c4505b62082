#!/usr/bin/env bash
# Builds the embedded default image: an ACI of Debian's static busybox, with one symlink per
# applet, a minimal /etc and an app that greets. Usage: make-busybox-aci.sh OUTPUT.aci
# The archive is reproducible: the same busybox gives the same image ID.
set -euo pipefail
out=${1:?usage: $0 OUTPUT.aci}
busybox=${BUSYBOX:-/bin/busybox}
[ -x "$busybox" ] || { echo "$0: $busybox not found (apt-get install busybox-static)" >&2; exit 1; }
# Whole output first: with pipefail, `busybox | head` fails whenever head closes the pipe early.
banner=$("$busybox" 2>&1 || true)
version=$(printf '%s\n' "$banner" | sed -n '1s/^BusyBox v\([0-9.]*\).*/\1/p')
[ -n "$version" ] || version=0.0.0
case "$(uname -m)" in
  x86_64) arch=amd64 ;; aarch64) arch=aarch64 ;; i?86) arch=i386 ;; *) arch=$(uname -m) ;;
esac
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
mkdir -p "$root"/{bin,sbin,etc,root,tmp,proc,sys,dev,usr/bin,usr/sbin,var}
chmod 1777 "$root/tmp"
cp "$busybox" "$root/bin/busybox"
for applet in $("$busybox" --list); do
  [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
cat >"$work/manifest" <<JSON
{
  "acKind": "ImageManifest",
  "acVersion": "0.8.11",
  "name": "rkt.local/busybox",
  "labels": [
    {"name": "version", "value": "$version"},
    {"name": "os", "value": "linux"},
    {"name": "arch", "value": "$arch"}
  ],
  "app": {
    "exec": ["/bin/sh", "-c", "echo Hello from busybox \$(busybox | head -n1 | cut -d' ' -f2) in an App Container"],
    "user": "0",
    "group": "0",
    "workingDirectory": "/",
    "environment": [{"name": "PATH", "value": "/bin:/sbin:/usr/bin:/usr/sbin"}]
  },
  "annotations": [{"name": "description", "value": "Debian's busybox-static as an ACI"}]
}
JSON
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$work" -cf - manifest rootfs | gzip -n -9 >"$out"
echo "$out"
