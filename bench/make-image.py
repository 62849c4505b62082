#!/usr/bin/env python3
"""Writes an OCI image layout for the pull benchmark: LAYERS gzip layers of about SIZE_MB MiB in
all, half random bytes, half text, so that gzip has both kinds of work.

Usage: make-image.py OUTDIR [LAYERS] [SIZE_MB]
"""
import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile

out = sys.argv[1]
layers = int(sys.argv[2]) if len(sys.argv) > 2 else 8
size_mb = int(sys.argv[3]) if len(sys.argv) > 3 else 200
per_layer = size_mb * 1024 * 1024 // layers
os.makedirs(os.path.join(out, "blobs", "sha256"), exist_ok=True)


def blob(data):
    digest = hashlib.sha256(data).hexdigest()
    with open(os.path.join(out, "blobs", "sha256", digest), "wb") as f:
        f.write(data)
    return "sha256:" + digest, len(data)


descs, diff_ids = [], []
for n in range(layers):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        chunk = 4 * 1024 * 1024
        for i in range(max(1, per_layer // chunk)):
            data = os.urandom(chunk) if i % 2 == 0 else (b"layer %d line %d of a text file\n" % (n, i)) * (chunk // 32)
            data = data[:chunk]
            info = tarfile.TarInfo("layer%d/file%d" % (n, i))
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    diff_ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
    compressed = subprocess.run(["pigz", "-6", "-c"], input=raw, capture_output=True, check=True).stdout
    digest, size = blob(compressed)
    descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest, "size": size})
config = {"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/true"]},
          "rootfs": {"type": "layers", "diff_ids": diff_ids}}
cdigest, csize = blob(json.dumps(config).encode())
manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cdigest, "size": csize},
            "layers": descs}
mdigest, msize = blob(json.dumps(manifest).encode())
with open(os.path.join(out, "index.json"), "w") as f:
    json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
               "digest": mdigest, "size": msize, "annotations": {"org.opencontainers.image.ref.name": "v1"}}]}, f)
with open(os.path.join(out, "oci-layout"), "w") as f:
    f.write('{"imageLayoutVersion":"1.0.0"}')
