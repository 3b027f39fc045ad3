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
  clang-14
  binutils  # addr2line: file:line in tracebacks and crash reports
  etcd-server etcd-client
  gdb python3-pexpect  # the debugger of debug mode, and its tests
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

# etcd-server enables its own etcd service (on 2379/2380). The etcd tests
# start clusters of their own on free ports; the packaged service is neither
# used nor left running.
if dpkg-query -W -f='${Status}' etcd-server 2>/dev/null | grep -q "install ok installed"; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  if [ -d /run/systemd/system ]; then
    $SUDO systemctl disable --now etcd.service >/dev/null 2>&1 || true
  else
    $SUDO service etcd stop >/dev/null 2>&1 || true
    $SUDO update-rc.d etcd disable >/dev/null 2>&1 || true
  fi
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
