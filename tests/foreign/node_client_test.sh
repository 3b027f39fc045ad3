#!/bin/sh
# Runs node_client_test.js under Node's test runner (`node --test`).
#
# The npm packages (@grpc/grpc-js, @grpc/proto-loader) live in
# tests/foreign/node_modules, installed by tools/setup.sh from package.json.
# Runfiles are symlinks into the source tree, so the real directory of the
# test script is where node_modules is. Skips (exit 0) only when node is
# not installed.
set -eu

if ! command -v node >/dev/null 2>&1; then
  echo "SKIPPED: node is not installed; the Node.js foreign-client test did not run"
  exit 0
fi

runfiles="${TEST_SRCDIR:?TEST_SRCDIR is not set: run with bazel test}/tractor_cpp"
script="$runfiles/tests/foreign/node_client_test.js"
if [ ! -f "$script" ]; then
  echo "node_client_test: $script is missing from the runfiles" >&2
  exit 1
fi
src_dir="$(dirname "$(readlink -f "$script")")"
modules="$src_dir/node_modules"
for pkg in @grpc/grpc-js @grpc/proto-loader; do
  if [ ! -f "$modules/$pkg/package.json" ]; then
    echo "node_client_test: $pkg is not installed in $modules; run ./tools/setup.sh" >&2
    exit 1
  fi
done

export NODE_PATH="$modules"
echo "node $(node --version), modules from $modules"
exec node --test "$script"
