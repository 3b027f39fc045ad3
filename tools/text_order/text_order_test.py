#!/usr/bin/python3
# SPDX-License-Identifier: AGPL-3.0-or-later
"""actor/text_order.ld is applied to programs linking //actor: the
runtime's idle-path functions it lists that a program has lie together at
the end of its code, not spread over it (-c opt only, the one mode that
compiles with -ffunction-sections). And the list is not stale: most of the
runtime functions it names exist (every mode)."""
import os
import re
import subprocess
import sys
import unittest

RUNFILES = os.environ.get("TEST_SRCDIR", ".") + "/tractor_cpp"
PROGRAM = os.path.join(RUNFILES, "tools/text_order/linked")
ORDER = os.path.join(RUNFILES, "actor/text_order.ld")


MODE = sys.argv.pop(1) if len(sys.argv) > 1 else "opt"


def listed_names():
    listed = set()
    with open(ORDER) as order:
        for line in order:
            m = re.match(r"^\.text\.(?:hot\.|startup\.|unlikely\.)?(\S+)$",
                         line.strip())
            if m:
                listed.add(m.group(1))
    return listed


def program_text():
    """(address, size, name) of every function of the program, by address."""
    text = []
    for line in subprocess.run(["nm", "-S", "-n", PROGRAM],
                               capture_output=True, text=True,
                               check=True).stdout.splitlines():
        p = line.split()
        if len(p) == 4 and p[2] in "tTwW":
            text.append((int(p[0], 16), int(p[1], 16), p[3]))
    return text


class TextOrderTest(unittest.TestCase):

    def test_list_is_not_stale(self):
        # The runtime's functions it names mostly still exist in a program
        # linking //actor (a program lacks only what it never links), in
        # every compilation mode.
        listed = listed_names()
        text = program_text()
        self.assertGreater(len(text), 1000)
        names = {t[2] for t in text}
        named = {n for n in listed if n.startswith("_ZN7tractor8internal")}
        self.assertGreater(len(named), 100)
        present = named & names
        self.assertGreater(len(present), 0.5 * len(named),
                           "actor/text_order.ld looks stale: run "
                           "tools/text_order/text_order.sh")

    @unittest.skipUnless(MODE == "opt",
                         "only -c opt compiles with -ffunction-sections, "
                         "without which no function can be moved")
    def test_listed_functions_are_together(self):
        listed = listed_names()
        text = program_text()
        # Together: 95% of the listed functions span little more than their
        # own size, where the program's code is several times larger (a few
        # may stay behind, e.g. a libstdc++ template instantiated elsewhere
        # under the same name).
        ours = sorted(t for t in text if t[2] in listed)
        k = int(len(ours) * 0.95)
        span, size = min(
            (ours[i + k - 1][0] + ours[i + k - 1][1] - ours[i][0],
             sum(t[1] for t in ours[i:i + k]))
            for i in range(len(ours) - k + 1))
        whole = text[-1][0] + text[-1][1] - text[0][0]
        print("listed functions: %d, %d KiB in a span of %d KiB; all code "
              "%d KiB" % (len(ours), size >> 10, span >> 10, whole >> 10))
        self.assertLess(span, 1.5 * size + (64 << 10))
        self.assertLess(span, whole / 2)


if __name__ == "__main__":
    unittest.main()
