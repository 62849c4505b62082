#!/usr/bin/env bash
# URL fetch benchmark (issue: fetching over the network). A gzip ACI of SIZE_MB (200) MiB, half
# incompressible, served by testdata/http_server.py on 127.0.0.1 with an ETag; hyperfine
# medians, all in the same run:
#   peer:        curl -s URL | gzip -dc | sha512sum   (the target: rkt cold <= 1.2x this)
#   rkt cold:    rkt fetch URL into an empty store (as root it also renders and hashes the tree)
#   rkt fresh:   the same URL again within its Cache-Control max-age: no request (target < 10 ms)
#   rkt revalid: an URL served with no-cache: one conditional request, answered 304
# Stores live on tmpfs (/dev/shm), so that no run pays for another's deletions.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MB=${SIZE_MB:-200}
RUNS=${RUNS:-5}
need=""
for tool in hyperfine curl pigz; do command -v $tool >/dev/null || need="$need $tool"; done
[ -z "$need" ] || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need >/dev/null; }
cargo build --release --quiet --bin rkt
rkt=$PWD/target/release/rkt
work=$(mktemp -d /dev/shm/rkt-url-bench.XXXXXX)
cleanup() { kill "${server_pid:-0}" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
bash bench/make-aci.sh "$work/image.aci" "$SIZE_MB"
cat >"$work/routes.json" <<JSON
{"/image.aci": {"file": "$work/image.aci", "etag": "\"v1\"", "headers": {"Cache-Control": "max-age=3600"}},
 "/revalidate.aci": {"file": "$work/image.aci", "etag": "\"v1\"", "headers": {"Cache-Control": "no-cache"}}}
JSON
python3 testdata/http_server.py "$work/routes.json" "$work/requests.log" "$work/port" &
server_pid=$!
for i in $(seq 50); do [ -s "$work/port" ] && break; sleep 0.1; done
url="http://127.0.0.1:$(cat "$work/port")"
flags=(--insecure-options=image,http --quiet)
hyperfine -w 1 -r "$RUNS" --export-json "$work/cold.json" \
  -n "peer" "curl -s $url/image.aci | gzip -dc | sha512sum" \
  -n "rkt cold" -p "rm -rf $work/store" "$rkt --dir $work/store ${flags[*]} fetch $url/image.aci" >/dev/null
"$rkt" --dir "$work/warm" "${flags[@]}" fetch "$url/image.aci" "$url/revalidate.aci" >/dev/null
before=$(wc -l <"$work/requests.log")
hyperfine -N -w 3 -r "$((RUNS * 6))" --export-json "$work/warm.json" \
  -n "rkt fresh" "$rkt --dir $work/warm ${flags[*]} fetch $url/image.aci" \
  -n "rkt revalid" "$rkt --dir $work/warm ${flags[*]} fetch $url/revalidate.aci" >/dev/null
after=$(wc -l <"$work/requests.log")
fresh_requests=$(tail -n +"$((before + 1))" "$work/requests.log" | grep -c '"/image.aci"' || true)
reval_requests=$(tail -n +"$((before + 1))" "$work/requests.log" | grep -c '"/revalidate.aci"' || true)
/usr/bin/time -f "%M" -o "$work/rss" "$rkt" --dir "$work/rss-store" "${flags[@]}" fetch "$url/image.aci" >/dev/null
python3 - "$work/cold.json" "$work/warm.json" "$(cat "$work/rss")" "$fresh_requests" "$reval_requests" "$((RUNS * 6 + 3))" <<'PY'
import json, sys
r = {x["command"]: x["median"] for f in sys.argv[1:3] for x in json.load(open(f))["results"]}
for name, t in r.items():
    print(f"{name:12s} median {t * 1000:9.1f} ms")
print(f"rkt cold / peer = {r['rkt cold'] / r['peer']:.2f} (target <= 1.2)")
print(f"rkt fresh: {r['rkt fresh'] * 1000:.1f} ms (target < 10 ms), requests made: {sys.argv[4]}")
print(f"rkt revalid: {sys.argv[5]} requests in {sys.argv[6]} runs (target: one each)")
print(f"rkt fetch peak RSS: {int(sys.argv[3]) // 1024} MiB")
PY
