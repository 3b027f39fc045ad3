// SPDX-License-Identifier: AGPL-3.0-or-later
// A program for the daemon tests: run with --daemon, tractor::Main serves
// its exported function; without it, its main prints the arguments the
// runtime left to it and the name of the root actor it opens:
//
//   args: <arg>|<arg>|...
//   name <root actor name>
#include <cstdio>
#include <string>

#include "actor/runtime.h"
#include "actor/export.h"

namespace {

std::string Hello(const std::string& who) { return "hello " + who; }
TRACTOR_EXPORT("greet:hello", Hello);

}  // namespace

int main(int argc, char** argv) {
  return tractor::Main(argc, argv, [&] {
    std::string args;
    for (int i = 1; i < argc; ++i) {
      if (i > 1) args += "|";
      args += argv[i];
    }
    printf("args: %s\n", args.c_str());
    tractor::OpenRootActor({.name = "main"}, [] {
      printf("name %s\n", tractor::CurrentActor().name().c_str());
    });
    return 0;
  });
}
