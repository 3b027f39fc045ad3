#!/bin/sh
# SPDX-License-Identifier: AGPL-3.0-or-later
# Builds and tests this workspace with its own Bazel server (it is not part
# of tractor-cpp's `bazel test //...`): run it from anywhere in the checkout,
#
#   examples/external/run_test.sh
#
# The first run compiles tractor-cpp again as an external repository (several
# minutes on two cores). Exits with bazel's status; shuts its server down.
set -u
cd "$(dirname "$0")" || exit 1
timeout 3600 bazel test //... --test_output=errors
rc=$?
bazel shutdown
exit $rc
