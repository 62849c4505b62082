#!/usr/bin/env bash
# The least CPU a cold `rkt fetch docker://…` of the pull benchmark's image must spend on the work
# the Docker-image issue requires, against 0.35 of `podman pull` of the same image, measured in
# the same run. Required, per pull (each counted at its cheapest, so the sum is a lower bound):
#   SHA-256 of each compressed layer (its digest) and of its uncompressed stream (its diff_id),
#   SHA-512 of each converted layer (its appc image ID): openssl's user time over the bytes in
#   memory-cached files (the reads' system time is left out);
#   writing the layers' bytes into the store's filesystem twice, the rendered tree and the layer
#   ACI blob (CPU time of plain 1 MiB writes from memory);
#   inflating the layers and the BLAKE3 digests the tree hash takes of the files, with rkt's own
#   decoder and hasher on bytes in memory (store/examples/inflate_cpu.rs);
#   the registry's CPU for serving the image once (it shares the two cores with the puller).
# Left out of the floor though each pull pays for them: reading the sockets, parsing the tars,
# SQLite, starting the process (the script shows how much CPU rkt spends beyond its share of the
# floor on all of these).
# The floor's wall time is that CPU spread over the cores with nothing idle at any moment.
# Usage: bench/floor.sh (KIND=big|files, LAYERS, SIZE_MB, RUNS as in bench/pull.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
KIND=${KIND:-big}
LAYERS=${LAYERS:-8}
SIZE_MB=${SIZE_MB:-200}
RUNS=${RUNS:-5}
need=""
for tool in hyperfine podman skopeo docker-registry pigz openssl; do command -v $tool >/dev/null || need="$need $tool"; done
[ -z "$need" ] || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need >/dev/null; }
cargo build --release --quiet
cargo build --release --quiet -p rkt-store --example inflate_cpu
rkt=$PWD/target/release/rkt
work=$(mktemp -d /dev/shm/rkt-floor.XXXXXX)
podman=(podman --root "$work/podman" --runroot "$work/podman-run")
cleanup() {
  kill "${registry_pid:-0}" 2>/dev/null || true
  "${podman[@]}" rmi -af >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
source bench/lib/registry.sh
start_registry "$work"

python3 bench/make-image.py "$work/layout" "$LAYERS" "$SIZE_MB" "$KIND"
image="127.0.0.1:$port/bench/$KIND:v1"
skopeo copy -q --dest-tls-verify=false "oci:$work/layout:v1" "docker://$image"
mapfile -t layers < <(python3 - "$work/layout" <<'PY'
import json, sys
d = sys.argv[1]
top = json.load(open(f"{d}/index.json"))["manifests"][0]["digest"].split(":")[1]
for layer in json.load(open(f"{d}/blobs/sha256/{top}"))["layers"]:
    print(f"{d}/blobs/sha256/{layer['digest'].split(':')[1]}")
PY
)
mkdir "$work/raw"
for i in "${!layers[@]}"; do pigz -dc "${layers[$i]}" >"$work/raw/$i.tar"; done

# The median over three runs of a command's CPU seconds (user, or user + system); $BEFORE, when
# set, runs before each.
cpu() {
  local which=$1; shift
  for _ in 1 2 3; do
    [ -z "${BEFORE:-}" ] || eval "$BEFORE"
    /usr/bin/time -f "%U %S" -o "$work/t" "$@" >/dev/null
    awk -v w="$which" '{print (w == "user") ? $1 : $1 + $2}' "$work/t"
  done | sort -n | sed -n 2p
}
sha256_gz=$(cpu user openssl dgst -sha256 "${layers[@]}")
sha256_raw=$(cpu user openssl dgst -sha256 "$work"/raw/*)
sha512_raw=$(cpu user openssl dgst -sha512 "$work"/raw/*)
writes=$(python3 - "$work" <<'PY'
import glob, os, statistics, sys, time
work = sys.argv[1]
data = b"".join(open(f, "rb").read() for f in sorted(glob.glob(f"{work}/raw/*")))
writes = []
for _ in range(3):
    start = time.process_time()
    for name in ("tree", "blob"):
        fd = os.open(f"{work}/{name}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        view = memoryview(data)
        for at in range(0, len(data), 1 << 20):
            os.write(fd, view[at:at + (1 << 20)])
        os.close(fd)
    writes.append(time.process_time() - start)
    for name in ("tree", "blob"):
        os.unlink(f"{work}/{name}")
print(f"{statistics.median(writes):.3f}")
PY
)
read -r inflate blake3 < <(target/release/examples/inflate_cpu "${layers[@]}")
ticks() { awk '{print $14 + $15}' "/proc/$registry_pid/stat"; }
before=$(ticks)
for _ in 1 2 3; do
  rm -rf "$work/oci"
  skopeo copy -q --src-tls-verify=false "docker://$image" "oci:$work/oci:v1"
done
registry=$(echo "$before $(ticks) $(getconf CLK_TCK)" | awk '{printf "%.3f", ($2 - $1) / 3 / $3}')
rm -rf "$work/oci"

hyperfine -r "$RUNS" --export-json "$work/cold.json" \
  -n "rkt cold" -p "rm -rf $work/store" "$rkt --dir $work/store --insecure-options=image,http --quiet fetch docker://$image" \
  -n "podman cold" -p "${podman[*]} rmi -af >/dev/null 2>&1 || true" "${podman[*]} pull -q --tls-verify=false $image" >/dev/null
rkt_cpu=$(BEFORE='rm -rf "$work/store"' cpu all "$rkt" --dir "$work/store" --insecure-options=image,http --quiet fetch "docker://$image")

python3 - "$work/cold.json" "$(nproc)" "$sha256_gz" "$sha256_raw" "$sha512_raw" "$writes" "$inflate" "$blake3" "$registry" "$rkt_cpu" <<'PY'
import json, sys
times = {x["command"]: x["median"] for x in json.load(open(sys.argv[1]))["results"]}
cores = int(sys.argv[2])
sha256_gz, sha256_raw, sha512_raw, writes, inflate, blake3, registry, rkt_cpu = map(float, sys.argv[3:])
parts = [("SHA-256 of the compressed layers", sha256_gz), ("SHA-256 of the uncompressed layers", sha256_raw),
         ("SHA-512 of the converted layers", sha512_raw), ("two copies written to tmpfs", writes),
         ("inflating the layers (zlib-rs)", inflate), ("BLAKE3 of the tree's files", blake3),
         ("the registry serving the image", registry)]
for name, seconds in parts:
    print(f"{name:40s} {seconds * 1000:6.0f} ms CPU")
floor = sum(s for _, s in parts)
target = 0.35 * times["podman cold"]
print(f"{'floor: required CPU':40s} {floor * 1000:6.0f} ms, over {cores} cores {floor / cores * 1000:.0f} ms of wall")
print(f"rkt cold {times['rkt cold'] * 1000:.0f} ms, podman cold {times['podman cold'] * 1000:.0f} ms")
print(f"rkt's CPU {rkt_cpu * 1000:.0f} ms: {(rkt_cpu - floor + registry) * 1000:.0f} ms beyond its share of the floor"
      " (sockets, tar parsing, SQLite, start-up)")
print(f"0.35 of podman: {target * 1000:.0f} ms; the floor is {floor / cores / target:.2f} of it")
PY
