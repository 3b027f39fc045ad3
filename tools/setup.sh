#!/usr/bin/env bash
# SPDX-License-Identifier: AGPL-3.0-or-later
# Installs what tractor-cpp needs to build and test, from Debian packages.
# Idempotent and quiet when everything is already installed.
set -euo pipefail

PACKAGES=(
  bazel-bootstrap
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libgoogle-glog-dev libgtest-dev libgmock-dev libbenchmark-dev
  python3-grpcio python3-protobuf
  libssl-dev openssl
  iproute2 procps
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

# Node.js runs the Node foreign-client test; any Node >= 18 will do.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  missing+=(nodejs npm)
fi

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Node client libraries for the foreign-client tests (tests/foreign/).
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -f "$here/tests/foreign/package.json" ] && command -v npm >/dev/null 2>&1; then
  if [ ! -d "$here/tests/foreign/node_modules/@grpc/grpc-js" ]; then
    echo "setup: installing Node gRPC client libraries"
    # The one step that needs a network (the npm registry). Without it the
    # Node client test skips, saying so; nothing else needs the packages.
    if ! (cd "$here/tests/foreign" && npm ci --silent --no-audit --no-fund >/dev/null); then
      echo "setup: could not install the Node gRPC client libraries (npm registry unreachable?);" \
        "//tests/foreign:node_client_test will be skipped"
    fi
  fi
fi
