// SPDX-License-Identifier: AGPL-3.0-or-later
// A program for the daemon tests: run with --daemon, tractor::Main serves
// its exported function; without it, its main prints the arguments the
// runtime left to it and the name of the root actor it opens:
//
//   args: <arg>|<arg>|...
//   name <root actor name>
//
// and, given the argument "spawn", spawns a child actor and prints its
// command line (NUL bytes shown as '|') and what it reports about itself:
//
//   child cmdline <path>|
//   child <name> <log level>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>

#include "absl/strings/str_replace.h"
#include "actor/nursery.h"

#include "actor/runtime.h"
#include "actor/export.h"

namespace {

std::string Hello(const std::string& who) { return "hello " + who; }
TRACTOR_EXPORT("greet:hello", Hello);

std::string WhoAmI() {
  return tractor::CurrentActor().name() + " " + tractor::CurrentLogLevel();
}
TRACTOR_EXPORT("greet:whoami", WhoAmI);

}  // namespace

int main(int argc, char** argv) {
  return tractor::Main(argc, argv, [&] {
    std::string args;
    bool spawn = false;
    for (int i = 1; i < argc; ++i) {
      if (i > 1) args += "|";
      args += argv[i];
      spawn = spawn || std::string(argv[i]) == "spawn";
    }
    printf("args: %s\n", args.c_str());
    tractor::OpenRootActor({.name = "main"}, [&] {
      printf("name %s\n", tractor::CurrentActor().name().c_str());
      if (!spawn) return;
      tractor::OpenNursery([](tractor::ActorNursery& an) {
        tractor::Portal kid = an.StartActor("kid", {.enable_modules = {"greet"}});
        std::ifstream in("/proc/" + std::to_string(kid.aid().pid()) +
                         "/cmdline");
        std::string cmdline((std::istreambuf_iterator<char>(in)),
                            std::istreambuf_iterator<char>());
        printf("child cmdline %s\n",
               absl::StrReplaceAll(cmdline, {{std::string(1, '\0'), "|"}})
                   .c_str());
        printf("child %s\n", kid.Run("greet:whoami").AsString().c_str());
        an.Cancel();
      });
    });
    return 0;
  });
}
