#!/usr/bin/env bash
# Runs every test: formatting, lints, unit and command-line tests. Installs what the tests need
# on Debian (as root) first. Tests that need root skip with a printed reason when not root.
set -euo pipefail
cd "$(dirname "$0")"
# busybox-static: the test image; containernetworking-plugins and iptables: --net=default;
# skopeo, umoci and docker-registry: Docker and OCI images, and a real registry on 127.0.0.1;
# gnupg: test keys; apache2-utils: htpasswd for a registry behind basic auth; openssl: test CAs
# and the registry's token signing key; podman: an image built by a real builder (buildah);
# strace: rkt run traced, to see that no code from the image is loaded outside the app;
# nettle-dev and libclang-dev: building sequoia-openpgp (crypto-nettle);
# libssl-dev: building against the system libcrypto (the SHA-512 of image IDs).
if [ "$(id -u)" = 0 ]; then
  missing=""
  command -v busybox >/dev/null || missing="$missing busybox-static"
  [ -x /usr/lib/cni/ptp ] || missing="$missing containernetworking-plugins"
  command -v iptables >/dev/null || missing="$missing iptables"
  command -v skopeo >/dev/null || missing="$missing skopeo"
  command -v umoci >/dev/null || missing="$missing umoci"
  command -v podman >/dev/null || missing="$missing podman"
  command -v strace >/dev/null || missing="$missing strace"
  command -v docker-registry >/dev/null || missing="$missing docker-registry"
  command -v gpg >/dev/null || missing="$missing gnupg"
  command -v htpasswd >/dev/null || missing="$missing apache2-utils"
  command -v openssl >/dev/null || missing="$missing openssl"
  dpkg -s nettle-dev >/dev/null 2>&1 || missing="$missing nettle-dev"
  dpkg -s libclang-dev >/dev/null 2>&1 || missing="$missing libclang-dev"
  dpkg -s libssl-dev >/dev/null 2>&1 || missing="$missing libssl-dev"
  if [ -n "$missing" ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq build-essential pkg-config $missing >/dev/null
  fi
fi
cargo fmt --check
cargo clippy --all-targets --quiet -- -D warnings
cargo test --quiet 2>&1
