#!/usr/bin/env python3
"""Writes an OCI image layout for the pull benchmark: LAYERS gzip layers of about SIZE_MB MiB in
all, made reproducibly (fixed seed). KIND says what the layers hold:

  files  a tree like a distribution's: nested directories of files whose sizes spread as in a
         Debian root filesystem (half under 4 KiB, a few of several MiB; about 14 KiB on
         average), some symlinks and hard links; half the bytes random (binaries, compressed
         data), half text made of words
  big    six 4 MiB files per layer, half random bytes, half one repeated line: almost all the
         work is hashing and decompressing bytes, nothing is per file

Usage: make-image.py OUTDIR [LAYERS] [SIZE_MB] [KIND]
"""
import hashlib
import io
import itertools
import json
import math
import os
import random
import subprocess
import sys
import tarfile

out = sys.argv[1]
layers = int(sys.argv[2]) if len(sys.argv) > 2 else 8
size_mb = int(sys.argv[3]) if len(sys.argv) > 3 else 200
kind = sys.argv[4] if len(sys.argv) > 4 else "files"
if kind not in ("files", "big"):
    sys.exit(f"unknown KIND {kind!r}: files or big")
per_layer = size_mb * 1024 * 1024 // layers
rng = random.Random(20261129)
os.makedirs(os.path.join(out, "blobs", "sha256"), exist_ok=True)

WORDS = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 10))) for _ in range(4000)]
TEXT = b" ".join(rng.choice(WORDS) + (b"\n" if rng.random() < 0.1 else b"") for _ in range(400_000))


def blob(data):
    digest = hashlib.sha256(data).hexdigest()
    with open(os.path.join(out, "blobs", "sha256", digest), "wb") as f:
        f.write(data)
    return "sha256:" + digest, len(data)


def add_file(tar, path, data, mode=0o644):
    info = tarfile.TarInfo(path)
    info.size = len(data)
    info.mode = mode
    info.mtime = 1700000000
    tar.addfile(info, io.BytesIO(data))


def add_dir(tar, path):
    info = tarfile.TarInfo(path)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    info.mtime = 1700000000
    tar.addfile(info)


def file_size():
    # Log-normal around 3 KiB, capped at 8 MiB: a Debian rootfs has half its files under 4 KiB
    # and a few libraries of several MiB.
    return min(8 << 20, max(0, int(math.exp(rng.gauss(math.log(3000), 1.8)))))


def content(size):
    if rng.random() < 0.5:
        return rng.randbytes(size)
    start = rng.randrange(len(TEXT))
    data = (TEXT[start:] + TEXT) * (size // len(TEXT) + 1)
    return data[:size]


def files_layer(tar, n):
    # Drawn at random, then written in path order: a tar of a tree lists each directory's
    # entries together, as `tar` and image builders walk it.
    written, dirs, entries, serial = 0, [], {}, itertools.count()
    top = f"usr/share/l{n}"
    for prefix in ("usr", "usr/share", top) if n == 0 else (top,):
        entries[prefix] = ("dir", None)
    while written < per_layer:
        if not dirs or rng.random() < 0.08:
            parent = rng.choice(dirs) if dirs and rng.random() < 0.6 else top
            d = f"{parent}/d{next(serial)}"
            entries[d] = ("dir", None)
            dirs.append(d)
        d = rng.choice(dirs)
        roll = rng.random()
        if roll < 0.08:
            entries[f"{d}/s{next(serial)}"] = ("symlink", None)
        elif roll < 0.09:
            entries[f"{d}/h{next(serial)}"] = ("hardlink", None)
        else:
            data = content(file_size())
            entries[f"{d}/f{next(serial)}"] = ("file", data)
            written += len(data)
    files = []
    for path in sorted(entries):
        kind, data = entries[path]
        if kind == "dir":
            add_dir(tar, path)
        elif kind == "file":
            add_file(tar, path, data, 0o755 if rng.random() < 0.1 else 0o644)
            files.append(path)
        elif files:
            info = tarfile.TarInfo(path)
            info.type = tarfile.SYMTYPE if kind == "symlink" else tarfile.LNKTYPE
            info.linkname = ("/" if kind == "symlink" else "") + rng.choice(files)
            info.mtime = 1700000000
            tar.addfile(info)


def big_layer(tar, n):
    chunk = 4 * 1024 * 1024
    for i in range(max(1, per_layer // chunk)):
        data = os.urandom(chunk) if i % 2 == 0 else (b"layer %d line %d of a text file\n" % (n, i)) * (chunk // 32)
        add_file(tar, "layer%d/file%d" % (n, i), data[:chunk])


descs, diff_ids = [], []
for n in range(layers):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        (files_layer if kind == "files" else big_layer)(tar, n)
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
