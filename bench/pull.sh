#!/usr/bin/env bash
# Pull benchmark (issue: Docker and OCI images). Images of LAYERS (8) gzip layers, SIZE_MB (200)
# MiB uncompressed, in Debian's docker-registry on 127.0.0.1, one per KIND (bench/make-image.py):
#   files: a tree like a distribution's (about 16,000 entries, word text and random bytes): the
#          shape of the images users pull
#   big:   48 files of 4 MiB: nothing per file, only bytes to hash and decompress (rkt's worst
#          case: it hashes every byte three times, SHA-256 twice and the SHA-512 of appc IDs)
#   debian: a real Debian 12 minbase root filesystem in one layer and a small second one
#          (bench/make-debian.sh; debootstrap needs Debian's mirror the first time): the shape
#          of base images, where one layer holds nearly everything
# Then, for each, RUNS (5) times each command, medians:
#   rkt cold:    rkt fetch docker://… into an empty store, as root (converted and rendered: ready to run)
#   podman cold: podman pull into empty storage, with podman's default storage driver (overlay)
#   podman vfs:  the same with --storage-driver vfs (slower: each layer copies the one below);
#                shown for reference: the batches up to 2026-11-29's eighth were measured against it
#   skopeo:      skopeo copy docker://… oci:DIR (no decompression, no unpacking)
#   rkt warm / podman warm: the same pull again, nothing changed
# The cold runs come in ROUNDS (3) rounds, each running every command in turn, so that the
# machine's slow and fast spells fall on every command alike; medians are over all rounds.
# Stores and podman's storage live on tmpfs (/dev/shm), so no run pays for another's deletions.
set -euo pipefail
cd "$(dirname "$0")/.."
LAYERS=${LAYERS:-8}
SIZE_MB=${SIZE_MB:-200}
RUNS=${RUNS:-5}
KINDS=${KINDS:-files big debian}
ROUNDS=${ROUNDS:-3}
need=""
for tool in hyperfine podman skopeo docker-registry pigz; do command -v $tool >/dev/null || need="$need $tool"; done
[ -z "$need" ] || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need >/dev/null; }
cargo build --release --quiet
rkt=$PWD/target/release/rkt
work=$(mktemp -d /dev/shm/rkt-pull-bench.XXXXXX)
cleanup() {
  kill "${registry_pid:-0}" 2>/dev/null || true
  "${podman[@]}" rmi -af >/dev/null 2>&1 || true
  "${podman_vfs[@]}" rmi -af >/dev/null 2>&1 || true
  rm -rf "$work"
}
podman=(podman --root "$work/podman" --runroot "$work/podman-run")
podman_vfs=(podman --root "$work/podman-vfs" --runroot "$work/podman-vfs-run" --storage-driver vfs)
trap cleanup EXIT
source bench/lib/registry.sh
start_registry "$work"

measure() {
local kind=$1
if [ "$kind" = debian ]; then
  bash bench/make-debian.sh "$work/layout-$kind" || { echo "== image kind: debian skipped: no Debian root filesystem (above)"; return; }
else
  python3 bench/make-image.py "$work/layout-$kind" "$LAYERS" "$SIZE_MB" "$kind"
fi
skopeo copy -q --dest-tls-verify=false "oci:$work/layout-$kind:v1" "docker://127.0.0.1:$port/bench/$kind:v1"
local image="127.0.0.1:$port/bench/$kind:v1"
rm -rf "$work/rss-store"
/usr/bin/time -f "%M" -o "$work/rss" "$rkt" --dir "$work/rss-store" --insecure-options=image,http --quiet fetch "docker://$image" >/dev/null
for round in $(seq "$ROUNDS"); do
hyperfine -r "$RUNS" --export-json "$work/cold-$kind-$round.json" \
  -n "rkt cold" -p "rm -rf $work/store" "$rkt --dir $work/store --insecure-options=image,http --quiet fetch docker://$image" \
  -n "podman cold" -p "${podman[*]} rmi -af >/dev/null 2>&1 || true" "${podman[*]} pull -q --tls-verify=false $image" \
  -n "podman vfs" -p "${podman_vfs[*]} rmi -af >/dev/null 2>&1 || true" "${podman_vfs[*]} pull -q --tls-verify=false $image" \
  -n "skopeo copy" -p "rm -rf $work/oci" "skopeo copy -q --src-tls-verify=false docker://$image oci:$work/oci:v1" >/dev/null
done
"${podman[@]}" pull -q --tls-verify=false "$image" >/dev/null
hyperfine -r "$((RUNS * 3))" --export-json "$work/warm-$kind.json" \
  -n "rkt warm" "$rkt --dir $work/store --insecure-options=image,http --quiet fetch docker://$image" \
  -n "podman warm" "${podman[*]} pull -q --tls-verify=false $image" >/dev/null
"${podman[@]}" rmi -af >/dev/null 2>&1 || true
"${podman_vfs[@]}" rmi -af >/dev/null 2>&1 || true
rm -rf "$work/store" "$work/rss-store" "$work/oci"
python3 - "$kind" "$(cat "$work/rss")" "$work"/cold-"$kind"-*.json "$work/warm-$kind.json" <<'PY'
import json, statistics, sys
times = {}
for f in sys.argv[3:]:
    for x in json.load(open(f))["results"]:
        times.setdefault(x["command"], []).extend(x["times"])
r = {name: statistics.median(t) for name, t in times.items()}
rounds = []
for f in sys.argv[3:-1]:
    one = {x["command"]: x["median"] for x in json.load(open(f))["results"]}
    rounds.append(f"{one['rkt cold'] / one['podman cold']:.2f}")
print(f"== image kind: {sys.argv[1]}")
print(f"rkt fetch peak RSS: {int(sys.argv[2]) // 1024} MiB")
for name, t in r.items():
    print(f"{name:12s} median {t * 1000:9.1f} ms over {len(times[name])} runs")
print(f"rkt cold / podman cold = {r['rkt cold'] / r['podman cold']:.2f} (target <= 0.35; by round: {', '.join(rounds)})")
print(f"rkt cold / podman vfs  = {r['rkt cold'] / r['podman vfs']:.2f} (reference)")
print(f"rkt cold / skopeo copy = {r['rkt cold'] / r['skopeo copy']:.2f} (target <= 2.5)")
print(f"rkt warm / podman warm = {r['rkt warm'] / r['podman warm']:.2f} (target <= 0.25)")
PY
}

for kind in $KINDS; do measure "$kind"; done
