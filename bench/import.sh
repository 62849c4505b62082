#!/usr/bin/env bash
# Import benchmark (issue: foundation). Builds a gzip ACI of SIZE_MB MiB (default 1024) with a mix
# of incompressible and compressible files, then measures in the same run:
#   peer:   gzip -dc FILE | sha512sum           (the target: import <= 1.5x this)
#   import: the store's import alone             (examples/import.rs; peak RSS target < 64 MiB)
#   fetch:  rkt fetch (import, render into the tree store, tree hash), for context
#   tar:    GNU tar -xzf of the same file, the peer of the render half
# Each is run RUNS times (default 3) and the median wall time is reported, with peak RSS from
# GNU time. Outputs go to fresh directories under BENCH_DIR (default /var/tmp/rkt-bench, ext4 here)
# and are deleted only after all measurements, so that no run pays for another's deletions.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MB=${SIZE_MB:-1024}
RUNS=${RUNS:-3}
BENCH_DIR=${BENCH_DIR:-/var/tmp/rkt-bench}
command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
command -v pigz >/dev/null || { apt-get update -qq && apt-get install -y -qq pigz >/dev/null; }
cargo build --release --quiet --bin rkt --example import
rkt=$PWD/target/release/rkt
import=$PWD/target/release/examples/import
rm -rf "$BENCH_DIR"
mkdir -p "$BENCH_DIR/out"
aci=$BENCH_DIR/image.aci
echo "building a ${SIZE_MB} MiB ACI..." >&2
bash bench/make-aci.sh "$aci" "$SIZE_MB"
echo "ACI: $(du -h "$aci" | cut -f1) compressed, filesystem: $(df -T "$BENCH_DIR" | awk 'NR==2{print $2}')" >&2

# time_cmd NAME CMD...: appends "NAME seconds maxrss_kib" to $BENCH_DIR/results
time_cmd() {
  local name=$1; shift
  /usr/bin/time -f "$name %e %M" -a -o "$BENCH_DIR/results" "$@" >/dev/null
}
: >"$BENCH_DIR/results"
sync
for run in $(seq 1 "$RUNS"); do
  time_cmd peer bash -c "gzip -dc '$aci' | sha512sum"
  time_cmd import "$import" "$BENCH_DIR/out/import-$run" "$aci"
  time_cmd fetch "$rkt" --dir "$BENCH_DIR/out/fetch-$run" --insecure-options=image fetch "$aci"
  mkdir -p "$BENCH_DIR/out/tar-$run"
  time_cmd tar tar -C "$BENCH_DIR/out/tar-$run" -xzf "$aci"
done
median() { sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
report() {
  local name=$1
  local t m
  t=$(awk -v n="$name" '$1==n{print $2}' "$BENCH_DIR/results" | median)
  m=$(awk -v n="$name" '$1==n{print $3}' "$BENCH_DIR/results" | median)
  echo "$name $t $m"
}
peer=$(report peer | cut -d' ' -f2)
echo "size_mb=$SIZE_MB runs=$RUNS (median wall seconds, median peak RSS)"
for name in peer import fetch tar; do
  read -r n t m < <(report "$name")
  printf '%-7s %7.2f s  %6d MiB RSS  %5.2fx peer\n' "$n" "$t" $((m / 1024)) "$(echo "$t / $peer" | bc -l)"
done
rm -rf "$BENCH_DIR"
