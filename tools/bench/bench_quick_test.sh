#!/bin/bash
# SPDX-License-Identifier: AGPL-3.0-or-later
# Runs //tools/bench in --quick mode and checks only that every row produced
# a number or an explicit n/a reason, and that no process outlives the run.
# It never asserts a timing: the numbers depend on the machine.
set -u

RUNFILES="${TEST_SRCDIR:-$0.runfiles}/tractor_cpp"
BENCH="$RUNFILES/tools/bench/bench"
RAW="$RUNFILES/tools/bench/raw_server"
OUT="${TEST_TMPDIR:-/tmp}/bench.json"
# Marks every process of this run (children inherit the environment), so
# that leftovers can be found afterwards. Only the bench gets it, not the
# helpers below, which would otherwise find themselves.
TAG="bench_quick_test_$$_${RANDOM}${RANDOM}"

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# 55 s for the whole run, stretched like the runtime's own timeouts under
# the sanitizer configurations (TRACTOR_TIMEOUT_SCALE, 1 elsewhere).
LIMIT=$(awk -v s="${TRACTOR_TIMEOUT_SCALE:-1}" \
  'BEGIN { if (!(s > 0)) s = 1; printf "%d", 55 * s }')

start=$(date +%s)
BENCH_QUICK_TEST_TAG="$TAG" timeout -k 2 "$LIMIT" \
  "$BENCH" --quick --json "$OUT" --raw_server "$RAW"
rc=$?
elapsed=$(( $(date +%s) - start ))
echo "bench --quick exited with $rc after ${elapsed} s"

# Leftover processes: anything still carrying the tag, after a short grace
# for processes that are already exiting.
leftovers() {
  local p pid
  for p in /proc/[0-9]*; do
    pid=${p#/proc/}
    [ "$pid" = "$$" ] && continue
    if { tr '\0' '\n' < "$p/environ"; } 2>/dev/null |
        grep -qx "BENCH_QUICK_TEST_TAG=$TAG"; then
      echo "$pid"
    fi
  done
}
left=""
for _ in $(seq 50); do
  left=$(leftovers)
  [ -z "$left" ] && break
  sleep 0.1
done
if [ -n "$left" ]; then
  for pid in $left; do
    echo "left behind: pid $pid: $(tr '\0' ' ' < /proc/$pid/cmdline 2>/dev/null)" >&2
    kill -9 "$pid" 2>/dev/null
  done
  fail "the bench left processes behind"
fi

[ "$rc" -eq 0 ] || fail "the bench exited with $rc"
[ -s "$OUT" ] || fail "no JSON written to $OUT"

PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3) || fail "python3 is needed to read the JSON"
"$PY" - "$OUT" <<'PYEOF' || fail "the JSON does not have a result for every row"
import json, math, sys

with open(sys.argv[1]) as f:
    doc = json.load(f)
rows = doc["rows"]
ids = [r["id"] for r in rows]
expected = ["1", "1.uds", "2", "2.uds", "3.64.bp", "3.64.err", "3.64.unb",
            "3.4096.bp", "3.4096.err", "3.4096.unb", "4", "5", "6", "6b", "7a",
            "7b", "8", "9"]
# Rows whose raw side is the faster of gRPC's sync and callback APIs.
best_raw = ["1", "1.uds", "2", "2.uds", "3.64.bp", "3.4096.bp", "4"]
errors = []
for e in expected:
    if e not in ids:
        errors.append("row %s is missing" % e)

def number(x):
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0

for r in rows:
    if "na" in r:
        if not r["na"].strip():
            errors.append("row %s: empty n/a reason" % r["id"])
        continue
    ours = r.get("ours")
    if not ours or not number(ours.get("median")):
        errors.append("row %s: no number for ours: %r" % (r["id"], r))
    if r["target"].startswith(("<=", ">=")):
        raw = r.get("raw")
        if not raw or not number(raw.get("median")):
            errors.append("row %s: no raw baseline: %r" % (r["id"], r))
        if not number(r.get("ratio")):
            errors.append("row %s: no ratio: %r" % (r["id"], r))
    if r["id"] in best_raw and (not r.get("raw_best") or
                                r.get("raw_api") not in ("sync", "callback")):
        errors.append("row %s: does not name the winning raw API: %r" %
                      (r["id"], r))
# Row 3 says where its processes ran (--throughput_cpus): split between
# the client's CPUs and the servers', or left to the scheduler, and why.
for r in rows:
    if r["id"].startswith("3.") and r["id"].endswith(".bp") and "na" not in r:
        note = r.get("note", "")
        if "client process on CPU" not in note and \
                "placed by the scheduler" not in note:
            errors.append("row %s: the note does not say where the processes "
                          "ran: %r" % (r["id"], note))
for e in errors:
    print("ERROR:", e)
print("%d rows checked, %d with n/a" % (len(rows), sum("na" in r for r in rows)))
sys.exit(1 if errors else 0)
PYEOF
# A bad --throughput_cpus is refused with a message, before anything starts.
err=$(timeout -k 2 20 "$BENCH" --throughput_cpus=bogus --raw_server "$RAW" 2>&1 >/dev/null)
rc=$?
[ "$rc" -eq 2 ] || fail "--throughput_cpus=bogus exited with $rc, not 2"
echo "$err" | grep -q -- "--throughput_cpus must be split or any" ||
  fail "--throughput_cpus=bogus did not say why: $err"

echo "PASS"
