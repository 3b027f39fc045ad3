#!/usr/bin/python3
# SPDX-License-Identifier: AGPL-3.0-or-later
"""Checks the project's licence: LICENSE holds the GNU AGPL v3 text
unaltered, and every tracked file that takes comments states
`SPDX-License-Identifier: AGPL-3.0-or-later` in its first lines.

Runfiles are symlinks into the source tree, so the real path of this script
leads to the checkout; the tracked files are those `git ls-files` lists
there (without git, every file of the tree outside bazel-*, .git and
node_modules).
"""
import hashlib
import os
import subprocess
import sys

SPDX = "SPDX-License-Identifier: AGPL-3.0-or-later"
# SHA-256 of the GNU AGPL v3 text as published on 19 November 2007
# (http:// links) and as gnu.org serves it today (the same text with
# https:// links).
AGPL_3_SHA256 = {
    "57c8ff33c9c0cfc3ef00e650a1cc910d7ee479a8bc509f6c9209a7c2a11399d6",
    "0d96a4ff68ad6d4b6f1f30f713b18d5184912ba8dd389f86aa7710db079abcb0",
}
# How many lines from the top the SPDX line may sit (after a shebang).
HEAD_LINES = 3


def repo_root():
    runfiles = os.environ.get("TEST_SRCDIR")
    script = os.path.abspath(__file__)
    if runfiles:
        candidate = os.path.join(runfiles, "tractor_cpp", "tests",
                                 "license_test.py")
        if os.path.exists(candidate):
            script = candidate
    return os.path.dirname(os.path.dirname(os.path.realpath(script)))


def tracked_files(root):
    try:
        out = subprocess.run(["git", "-C", root, "ls-files", "-z"],
                             check=True, capture_output=True).stdout
        return [f for f in out.decode().split("\0") if f]
    except (OSError, subprocess.CalledProcessError):
        files = []
        for d, dirs, names in os.walk(root):
            dirs[:] = [x for x in dirs if not x.startswith("bazel-")
                       and x not in (".git", "node_modules", "__pycache__")]
            files += [os.path.relpath(os.path.join(d, n), root) for n in names]
        return files


def takes_comments(root, path):
    """True for C++, proto, Starlark/BUILD/WORKSPACE/.bazelrc, shell,
    Python and JavaScript files."""
    base = os.path.basename(path)
    if path.endswith((".cc", ".h", ".proto", ".js", ".bzl", ".BUILD", ".sh",
                      ".py")):
        return True
    if base in ("BUILD", "BUILD.bazel", "WORKSPACE", ".bazelrc"):
        return True
    try:
        with open(os.path.join(root, path), "rb") as f:
            first = f.readline()
    except OSError:
        return False
    return first.startswith(b"#!") and (b"sh" in first or b"python" in first)


def main():
    root = repo_root()
    failures = []
    license_path = os.path.join(root, "LICENSE")
    if not os.path.isfile(license_path):
        failures.append("LICENSE is missing at the top of the tree")
    else:
        with open(license_path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        if digest not in AGPL_3_SHA256:
            failures.append("LICENSE is not the unaltered GNU AGPL v3 text "
                            f"(sha256 {digest})")
    files = tracked_files(root)
    checked = 0
    for path in sorted(files):
        if not takes_comments(root, path):
            continue
        checked += 1
        with open(os.path.join(root, path), encoding="utf-8",
                  errors="replace") as f:
            head = [f.readline() for _ in range(HEAD_LINES)]
        if not any(SPDX in line for line in head):
            failures.append(f"{path}: no '{SPDX}' in its first {HEAD_LINES} "
                            "lines")
    if checked < 50:
        failures.append(f"only {checked} files checked in {root}: the tree "
                        "was not found")
    for f in failures:
        print("FAIL:", f)
    print(f"license_test: {checked} files checked, {len(failures)} problems")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
