#!/bin/sh
# SPDX-License-Identifier: AGPL-3.0-or-later
# Runs the two-actor program (with a registry of its own, not the host's
# well-known 127.0.0.1:1616) and checks the worker's answer.
set -eu
# Under /tmp: a unix socket path must fit 107 bytes.
dir="$(mktemp -d /tmp/pair.XXXXXX)"
trap 'rm -rf "$dir"' EXIT
export TRACTOR_REGISTRY="unix:$dir/registry.sock"
out="$(timeout 60 "$TEST_SRCDIR/tractor_external_example/pair")"
echo "$out"
[ "$out" = "worker answered 49" ]
