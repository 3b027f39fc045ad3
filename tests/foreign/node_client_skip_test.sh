#!/bin/sh
# SPDX-License-Identifier: AGPL-3.0-or-later
# Without its npm packages the Node client test skips, saying why, rather
# than failing: the build and the test suite need no network.
set -u
runner="${TEST_SRCDIR:?run with bazel test}/tractor_cpp/tests/foreign/node_client_test.sh"
empty="${TEST_TMPDIR:?run with bazel test}/no_node_modules"
mkdir -p "$empty"
out="$(TRACTOR_NODE_MODULES="$empty" sh "$runner" 2>&1)"
rc=$?
echo "$out"
if [ "$rc" -ne 0 ]; then
  echo "FAIL: node_client_test exited $rc without its npm packages; expected a skip (0)"
  exit 1
fi
case "$out" in
  SKIPPED:*) ;;
  *) echo "FAIL: node_client_test did not say SKIPPED without its npm packages"; exit 1 ;;
esac
echo "PASS"
