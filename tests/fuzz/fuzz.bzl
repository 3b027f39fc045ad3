# SPDX-License-Identifier: AGPL-3.0-or-later
"""A libFuzzer target that is also a test replaying its seed corpus."""

load("@rules_cc//cc:defs.bzl", "cc_test")

def tractor_fuzz_test(name, srcs, deps = [], corpus = None):
    """Declares the fuzz target `name`.

    Under `--config=fuzz` (clang) it links libFuzzer's main: `tools/fuzz.sh`
    runs it. Otherwise it links `replay_main`, and `bazel test` feeds it
    every file of its seed corpus `corpus/<corpus>/` once. Under
    `--config=fuzz`, `bazel test` replays the corpus through libFuzzer
    (`-runs=0`). Tagged `asan`: CI's ASan phase replays the corpus under
    `--config=asan` as well.

    Args:
      name: target name, `<x>_fuzz_test`.
      srcs: sources; one defines `LLVMFuzzerTestOneInput`.
      deps: libraries under test.
      corpus: the corpus directory under `corpus/`; defaults to `name`
        without `_fuzz_test`.
    """
    corpus = corpus or name.replace("_fuzz_test", "")
    corpus_dir = "tests/fuzz/corpus/" + corpus
    cc_test(
        name = name,
        size = "small",
        srcs = srcs,
        args = select({
            "//tests/fuzz:fuzzing": ["-runs=0", corpus_dir],
            "//conditions:default": [corpus_dir],
        }),
        data = native.glob(["corpus/" + corpus + "/*"]),
        linkopts = select({
            "//tests/fuzz:fuzzing": ["-fsanitize=fuzzer"],
            "//conditions:default": [],
        }),
        deps = deps + [":fuzz_input"] + select({
            "//tests/fuzz:fuzzing": [],
            "//conditions:default": [":replay_main"],
        }),
        tags = ["asan"],
    )
