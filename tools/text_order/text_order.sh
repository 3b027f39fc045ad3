#!/bin/bash
# SPDX-License-Identifier: AGPL-3.0-or-later
# Regenerates actor/text_order.ld (the order of the runtime's functions in
# every program linking //actor, see actor/BUILD.bazel): builds the bench,
# runs its row 8 (an idle child actor: boot, one call, idle, exit) with the
# children under callgrind (TRACTOR_CHILD_WRAPPER), and lists the functions
# they ran. Needs valgrind. Takes a minute or two.
set -euo pipefail
cd "$(dirname "$0")/../.."
bazel build -c opt //tools/bench:all
bench=bazel-out/k8-opt/bin/tools/bench/bench
dir=$(mktemp -d /tmp/text_order.XXXXXX)
trap 'rm -rf "$dir"' EXIT
cat > "$dir/wrap" <<WRAP
#!/bin/sh
exec valgrind --tool=callgrind --demangle=no \
  --callgrind-out-file=$dir/callgrind.%p "\$1" 2>>$dir/valgrind.log
WRAP
chmod +x "$dir/wrap"
# Children under callgrind run about 50 times slower: scale the runtime's
# timeouts accordingly. No busy wait: valgrind runs one thread at a time,
# so a spinner would take turns with the threads that do the work.
TRACTOR_CHILD_WRAPPER="$dir/wrap" TRACTOR_TIMEOUT_SCALE=40 \
  TRACTOR_BUSY_WAIT_US=0 \
  timeout 600 "$bench" --only 8 --quick > "$dir/bench.log" 2>&1 || {
  cat "$dir/bench.log" >&2
  exit 1
}
python3 tools/text_order/text_order.py "$bench" actor/text_order.ld \
  "$dir"/callgrind.*
