#!/usr/bin/env bash
# SPDX-License-Identifier: AGPL-3.0-or-later
# Builds one fuzz target under --config=fuzz and runs it for SECONDS on its
# seed corpus (tests/fuzz/corpus/<name>/, read only; new inputs go to a
# scratch directory). Usage: tools/fuzz.sh TARGET SECONDS [libFuzzer flags]
# where TARGET is "address", "payload", "dialog" or "registrar" (or the
# test's full name, "address_fuzz_test"). A crash leaves its input in
# $FUZZ_ARTIFACTS (default: a scratch directory, printed) and exits non-zero;
# add it to the seed corpus once fixed. Prints libFuzzer's final stats
# (exec/s, corpus size). BAZEL overrides the bazel command, e.g.
# BAZEL="bazel --output_base=/tmp/fuzz-ob" to build beside another build.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -lt 2 ]; then
  echo "usage: $0 TARGET SECONDS [libFuzzer flags]" >&2
  exit 2
fi
name=${1%_fuzz_test}
seconds=$2
shift 2
case "$seconds" in
  '' | *[!0-9]*) echo "fuzz: SECONDS must be a whole number, got '$seconds'" >&2; exit 2 ;;
esac
seeds="tests/fuzz/corpus/$name"
if [ ! -d "$seeds" ]; then
  echo "fuzz: no target '$name' (no $seeds)" >&2
  exit 2
fi

BAZEL=${BAZEL:-bazel}  # e.g. "bazel --output_base=DIR"
$BAZEL build --config=fuzz "//tests/fuzz:${name}_fuzz_test" >&2
bin="$($BAZEL info --config=fuzz bazel-bin 2>/dev/null)/tests/fuzz/${name}_fuzz_test"

scratch=$(mktemp -d "/tmp/fuzz-${name}.XXXXXX")
artifacts=${FUZZ_ARTIFACTS:-$scratch/artifacts}
mkdir -p "$scratch/corpus" "$artifacts"
echo "fuzz: $name for ${seconds} s; new inputs in $scratch/corpus, crashes in $artifacts"
# Leak checking stays on: a leak is a finding like any other.
set +e
"$bin" -max_total_time="$seconds" -print_final_stats=1 \
  -timeout=20 -rss_limit_mb=4096 -artifact_prefix="$artifacts/" "$@" \
  "$scratch/corpus" "$seeds" >"$scratch/log" 2>&1
status=$?
set -e
grep -aE '^(#[0-9]+[[:space:]]+(INITED|DONE)|stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)|==[0-9]+==|SUMMARY|.*fuzz: )' \
  "$scratch/log" || true
units=$(find "$scratch/corpus" "$seeds" -type f | wc -l)
echo "fuzz: $name exit $status; corpus $units inputs ($(ls "$seeds" | wc -l) seeds)"
if [ "$status" -ne 0 ]; then
  echo "fuzz: finding; full log in $scratch/log" >&2
  exit "$status"
fi
rm -rf "$scratch"
