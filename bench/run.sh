#!/usr/bin/env bash
# Start-up benchmark of the runner (issue: the runner). Runs /bin/true from the busybox ACI:
#   rkt:   rkt run --net=host IMAGE --exec=/bin/true   (image already in the store and rendered)
#   crun:  crun run of the same rendered root filesystem as an OCI bundle (no cgroups)
#   runc:  runc run of the same bundle
#   podman: podman run --rm --net=host of the same root filesystem, imported as an image
# all with hyperfine in one mount namespace where the cgroup v2 mount of this machine's hybrid
# layout is hidden, since crun refuses the hybrid layout; podman gets rlimits this machine allows
# (its defaults exceed the hard limits here). Also reports rkt run's peak RSS.
# Needs root. RUNS (default 30) runs each.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-30}
need=""
for tool in hyperfine crun runc podman busybox; do command -v $tool >/dev/null || need="$need $tool"; done
command -v /usr/bin/time >/dev/null || need="$need time"
if [ -n "$need" ]; then
  need=${need/busybox/busybox-static}
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need >/dev/null
fi
cargo build --release --quiet
rkt=$PWD/target/release/rkt
work=$(mktemp -d /var/tmp/rkt-run-bench.XXXXXX)
store=$work/store
trap 'rm -rf "$work"' EXIT
testdata/make-busybox-aci.sh "$work/busybox.aci" >/dev/null
id=$("$rkt" --dir "$store" --insecure-options=image fetch --full "$work/busybox.aci")
"$rkt" --dir "$store" run --net=host "$id" --exec=/bin/true
tree=$(grep -l "$id" "$store"/cas/tree/*/image | head -n1 | xargs dirname)
mkdir -p "$work/bundle"
cp -a "$tree/rootfs" "$work/bundle/rootfs"
(cd "$work/bundle" && crun spec)
python3 - "$work/bundle/config.json" <<'PY'
import json, sys
path = sys.argv[1]
c = json.load(open(path))
c["process"]["args"] = ["/bin/true"]
c["process"]["terminal"] = False
c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "network"]
c["linux"].pop("resources", None)
json.dump(c, open(path, "w"))
PY
tar -C "$work/bundle/rootfs" -cf - . | podman import -q - localhost/rkt-bench-busybox:latest >/dev/null
/usr/bin/time -f "%M" -o "$work/rss" "$rkt" --dir "$store" run --net=host "$id" --exec=/bin/true
unshare -m sh -c "
  umount /sys/fs/cgroup/unified 2>/dev/null || true
  hyperfine -N -w 5 -r $RUNS --export-json '$work/results.json' \
    -n rkt '$rkt --dir $store run --net=host $id --exec=/bin/true' \
    -n crun 'crun --cgroup-manager=disabled run -b $work/bundle rkt-bench-\$RANDOM' \
    -n runc 'runc run -b $work/bundle rkt-bench-runc' \
    -n podman 'podman run --rm --net=host --cgroup-manager=cgroupfs --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 localhost/rkt-bench-busybox:latest /bin/true'
" >/dev/null
"$rkt" --dir "$store" gc --grace-period=0s >/dev/null 2>&1 || true
python3 - "$work/results.json" "$(cat "$work/rss")" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
rkt = r["rkt"]["median"]
print(f"rkt run peak RSS: {int(sys.argv[2]) // 1024} MiB")
for name in ["rkt", "crun", "runc", "podman"]:
    m = r[name]["median"] * 1000
    print(f"{name:7s} median {m:7.2f} ms   rkt/{name} = {rkt / r[name]['median']:.2f}")
PY
podman rmi -f localhost/rkt-bench-busybox:latest >/dev/null 2>&1 || true
