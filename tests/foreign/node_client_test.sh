#!/bin/sh
# SPDX-License-Identifier: AGPL-3.0-or-later
# Runs node_client_test.js (or the script named by the first argument, in
# tests/foreign/) under Node's test runner (`node --test`).
#
# The npm packages (@grpc/grpc-js, @grpc/proto-loader) live in
# tests/foreign/node_modules, installed by tools/setup.sh from package.json
# (the one step of the setup that needs a network: the npm registry).
# Runfiles are symlinks into the source tree, so the real directory of the
# test script is where node_modules is; TRACTOR_NODE_MODULES names another
# directory. Skips (exit 0, with a line starting "SKIPPED:") when node is not
# installed or the packages are absent, so an offline build still passes.
set -eu

if ! command -v node >/dev/null 2>&1; then
  echo "SKIPPED: node is not installed; the Node.js foreign-client test did not run"
  exit 0
fi

runfiles="${TEST_SRCDIR:?TEST_SRCDIR is not set: run with bazel test}/tractor_cpp"
script="$runfiles/tests/foreign/${1:-node_client_test.js}"
if [ ! -f "$script" ]; then
  echo "node_client_test: $script is missing from the runfiles" >&2
  exit 1
fi
src_dir="$(dirname "$(readlink -f "$script")")"
modules="${TRACTOR_NODE_MODULES:-$src_dir/node_modules}"
for pkg in @grpc/grpc-js @grpc/proto-loader; do
  if [ ! -f "$modules/$pkg/package.json" ]; then
    echo "SKIPPED: the npm package $pkg is not installed in $modules; the" \
      "Node.js foreign-client test did not run (./tools/setup.sh installs it" \
      "from the npm registry)"
    exit 0
  fi
done

export NODE_PATH="$modules"
# The echo actor's registry: a unix socket of this test, never the
# well-known 127.0.0.1:1616.
# Under /tmp: a unix socket path must fit 107 bytes.
registry_dir="$(mktemp -d /tmp/reg.XXXXXX)"
trap 'rm -rf "$registry_dir"' EXIT
export TRACTOR_REGISTRY="unix:$registry_dir/registry.sock"
echo "node $(node --version), modules from $modules"
node --test "$script"
