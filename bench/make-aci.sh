#!/usr/bin/env bash
# make-aci.sh OUT SIZE_MB: a gzip ACI (pigz -6) of SIZE_MB MiB in 8 MiB files, every other one
# random (incompressible), the others repetitive text; the benchmarks' common image.
set -euo pipefail
out=$1
size_mb=$2
src=$(mktemp -d "$(dirname "$out")/aci-src.XXXXXX")
mkdir -p "$src/rootfs/data"
for i in $(seq 1 $((size_mb / 8))); do
  if [ $((i % 2)) = 0 ]; then
    head -c 8M /dev/urandom >"$src/rootfs/data/random-$i"
  else
    # yes ends by SIGPIPE when head has enough, which pipefail reports as a failure.
    yes "line $i of a compressible file in the benchmark image" | head -c 8M >"$src/rootfs/data/text-$i" || true
  fi
done
printf '{"acKind":"ImageManifest","acVersion":"0.8.11","name":"bench.local/big"}' >"$src/manifest"
tar -C "$src" -cf - manifest rootfs | pigz -6 >"$out"
rm -rf "$src"
