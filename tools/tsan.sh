#!/usr/bin/env bash
# SPDX-License-Identifier: AGPL-3.0-or-later
# Runs the suite under ThreadSanitizer (--config=tsan), by hand; not part of
# CI, against the Abseil and gRPC that tools/tsan_deps.sh builds with
# -fsanitize=thread (it stops here if they are missing). The in-process
# phase runs with no suppression at all; the multi-process phase with
# tools/sanitizers/tsan.supp, which may silence only races whose two stacks
# both run inside libgrpc or libabsl.
# Usage: tools/tsan.sh [in-process|multi-process|all] [bazel flags]
set -uo pipefail
cd "$(dirname "$0")/.."

# Fails, saying to run tools/tsan_deps.sh, unless the instrumented libraries
# are there; (re)writes tsan_deps.bazelrc, which --config=tsan imports.
tools/tsan_deps.sh --check || exit 2

which=${1:-all}
[ $# -gt 0 ] && shift
IN_PROCESS=(
  //tests/actor/internal:busy_wait_test
  //tests/actor/internal:dialog_protocol_test
  //tests/actor/internal:dialog_test
  //tests/actor/internal:error_codec_test
  //tests/actor/internal:gate_test
  //tests/actor/internal:scope_test
  //tests/actor/internal:thread_pool_test
  //tests/actor/internal:thread_pool_exit_test
  //tests/actor:cancel_test
  //tests/actor:payload_test
  //tests/discovery:mutex_test
  //tests/registrar:registrar_service_test
)
# No ignore_noninstrumented_modules: on Linux TSan marks no module as
# instrumented, so that flag turns off the checks of every intercepted call,
# the project's own delete, free and memcpy included (docs/testing.md).
base_options="halt_on_error=1:second_deadlock_stack=1:history_size=4"
supp="suppressions=$PWD/tools/sanitizers/tsan.supp"
rc=0
if [ "$which" = in-process ] || [ "$which" = all ]; then
  bazel test --config=tsan --cache_test_results=no \
    --test_env=TSAN_OPTIONS="$base_options" "$@" "${IN_PROCESS[@]}" || rc=1
fi
if [ "$which" = multi-process ] || [ "$which" = all ]; then
  exclude=$(printf -- ' -%s' "${IN_PROCESS[@]}")
  # shellcheck disable=SC2086
  bazel test --config=tsan --cache_test_results=no \
    --test_tag_filters=-etcd,-debugger,-netns \
    --test_env=TSAN_OPTIONS="$base_options:$supp" \
    "$@" -- //... $exclude || rc=1
fi
exit $rc
