// SPDX-License-Identifier: AGPL-3.0-or-later
// The same-host socket files of actors (/tmp/tractor-<uid>/<uuid>.sock):
// every exit the runtime controls removes its own; a child's that could
// not (kill -9) is removed by its parent once reaped; and a file whose
// owner is gone with nobody to reap it (a root killed with kill -9) is swept
// by the next actor that binds its own, while a live actor's is kept.
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "actor/errors.h"
#include "actor/export.h"
#include "actor/nursery.h"
#include "actor/portal.h"
#include "actor/runtime.h"
#include "discovery/listen.h"
#include "gtest/gtest.h"
#include "tests/discovery/test_procs.h"
#include "tests/process_fixture.h"

namespace tractor {
namespace {

using testing::Proc;

int64_t Pid() { return getpid(); }
TRACTOR_EXPORT("sock:pid", Pid);

int64_t Square(int64_t x) { return x * x; }
TRACTOR_EXPORT("sock:square", Square);

void Fail() { throw std::logic_error("sock:fail failed"); }
TRACTOR_EXPORT("sock:fail", Fail);

const ActorOptions kOpts = {.enable_modules = {"sock"}};

std::string SocketFileOf(const std::string& uuid) {
  return absl::StrCat(discovery::PrivateSocketDir(), "/", uuid, ".sock");
}

bool Exists(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

// Sets the modification time of `path` (not following a symbolic link) an
// hour back: the sweep leaves files younger than
// discovery::kStaleSocketMinAge alone (a server binds its socket a moment
// before it listens), so a file made by this test would be spared for its
// age rather than judged on its owner.
void Backdate(const std::string& path) {
  struct timespec times[2];
  times[0].tv_sec = times[1].tv_sec = time(nullptr) - 3600;
  times[0].tv_nsec = times[1].tv_nsec = 0;
  ASSERT_EQ(utimensat(AT_FDCWD, path.c_str(), times, AT_SYMLINK_NOFOLLOW), 0)
      << path << ": " << std::strerror(errno);
}

std::string HelperBinary() {
  return std::string(getenv("TEST_SRCDIR")) +
         "/tractor_cpp/tests/actor/socket_files_actor";
}

absl::Duration Scaled(absl::Duration d) { return discovery::ScaleTimeout(d); }

class SocketFilesTest : public testing::ProcessTest {
 protected:
  absl::Duration TestTimeout() const override {
    return Scaled(absl::Seconds(90));
  }
};

// Children: cancelled, returning from RunInActor, raising from it, exiting
// on SIGTERM, killed by kill -9, killed by a hard cancel. Each child's
// socket file is there while it lives and gone once its nursery is done.
TEST_F(SocketFilesTest, NoChildLeavesItsSocketFileWhicheverWayItExits) {
  std::vector<std::pair<std::string, std::string>> files;  // what, path
  OpenRootActor({}, [&] {
    // Cancelled with its nursery.
    OpenNursery([&](ActorNursery& an) {
      Portal p = an.StartActor("cancelled", kOpts);
      const std::string f = SocketFileOf(p.aid().uuid());
      EXPECT_TRUE(Exists(f)) << "a live child has no socket file at " << f;
      files.emplace_back("cancelled child", f);
      an.Cancel();
    });
    // Returns its result and exits.
    OpenNursery([&](ActorNursery& an) {
      Portal p = an.RunInActor("clean", "sock:square", int64_t{3});
      files.emplace_back("child that returned", SocketFileOf(p.aid().uuid()));
    });
    // Raises: the error exit.
    try {
      OpenNursery([&](ActorNursery& an) {
        Portal p = an.RunInActor("failing", "sock:fail");
        files.emplace_back("child that raised", SocketFileOf(p.aid().uuid()));
      });
      ADD_FAILURE() << "the failing child's error did not propagate";
    } catch (const RemoteActorError&) {
    }
    // SIGTERM: a request to exit, gracefully (status 0, no error).
    try {
      OpenNursery([&](ActorNursery& an) {
        Portal p = an.StartActor("termed", kOpts);
        files.emplace_back("child exited on SIGTERM",
                           SocketFileOf(p.aid().uuid()));
        const pid_t pid = p.Run("sock:pid").AsInt();
        ASSERT_EQ(kill(pid, SIGTERM), 0);
        // Not cancelled: a child that died of the signal, rather than
        // exiting on it, is then an error of this nursery.
        if (!testing::WaitFor([&] { return !testing::Alive(pid); },
                              Scaled(absl::Seconds(10)))) {
          ADD_FAILURE() << "the child did not exit on SIGTERM";
          an.Cancel();
        }
      });
    } catch (const std::exception& e) {
      ADD_FAILURE() << "the child did not exit gracefully on SIGTERM: "
                    << e.what();
    }
    // kill -9: the child cannot clean up; its parent does once reaped.
    try {
      OpenNursery([&](ActorNursery& an) {
        Portal p = an.StartActor("killed", kOpts);
        const std::string f = SocketFileOf(p.aid().uuid());
        files.emplace_back("child killed with kill -9", f);
        const pid_t pid = p.Run("sock:pid").AsInt();
        ASSERT_EQ(kill(pid, SIGKILL), 0);
        EXPECT_TRUE(testing::WaitFor([&] { return !testing::Alive(pid); },
                                     Scaled(absl::Seconds(10))));
        an.Cancel();
      });
    } catch (const ActorFailure& e) {
      printf("nursery of the killed child: %s\n", e.what());
    }
    // A hard cancel (SIGKILL from the nursery).
    OpenNursery([&](ActorNursery& an) {
      Portal p = an.StartActor("hard", kOpts);
      files.emplace_back("child of a hard cancel", SocketFileOf(p.aid().uuid()));
      an.Cancel(/*hard_kill=*/true);
    });
  });
  ASSERT_EQ(files.size(), 6u);
  for (const auto& [what, path] : files) {
    EXPECT_FALSE(Exists(path)) << "the " << what << " left " << path;
  }
}

// Roots in processes of their own, registered with this test's root (the
// registrar): one whose block returns, one whose block throws (status 1),
// and a --daemon root ended by SIGTERM. Each root's file, and its child's,
// is gone once the process has exited.
TEST_F(SocketFilesTest, NoRootLeavesItsSocketFileWhenItsBlockEndsOrOnSigterm) {
  OpenRootActor({}, [&] {
    for (const std::string mode : {"return", "throw"}) {
      std::unique_ptr<Proc> proc = Proc::Spawn({HelperBinary(), mode});
      ASSERT_NE(proc, nullptr);
      std::optional<std::string> line =
          proc->ReadLineStartingWith("uuids ", Scaled(absl::Seconds(20)));
      ASSERT_TRUE(line.has_value()) << mode << ": no uuids line";
      std::optional<int> status = proc->Wait(Scaled(absl::Seconds(20)));
      ASSERT_TRUE(status.has_value()) << mode << ": the root did not exit";
      EXPECT_TRUE(WIFEXITED(*status) &&
                  WEXITSTATUS(*status) == (mode == "throw" ? 1 : 0))
          << mode << ": wait status " << *status;
      std::vector<std::string> words = absl::StrSplit(*line, ' ');
      ASSERT_EQ(words.size(), 3u) << *line;
      EXPECT_FALSE(Exists(SocketFileOf(words[1])))
          << "the root whose block ended (" << mode << ") left its file";
      EXPECT_FALSE(Exists(SocketFileOf(words[2])))
          << "the child of the root whose block ended (" << mode
          << ") left its file";
    }
    std::unique_ptr<Proc> daemon =
        Proc::Spawn({HelperBinary(), "--daemon", "--name=sockd"});
    ASSERT_NE(daemon, nullptr);
    std::optional<std::string> ready =
        daemon->ReadLineStartingWith("sockd ", Scaled(absl::Seconds(20)));
    ASSERT_TRUE(ready.has_value()) << "the daemon did not say it is ready";
    std::vector<std::string> words = absl::StrSplit(*ready, ' ');
    ASSERT_GE(words.size(), 2u);
    const std::string file = SocketFileOf(words[1]);
    EXPECT_TRUE(Exists(file)) << "the daemon has no socket file at " << file;
    daemon->Signal(SIGTERM);
    std::optional<int> status = daemon->Wait(Scaled(absl::Seconds(20)));
    ASSERT_TRUE(status.has_value()) << "the daemon did not exit on SIGTERM";
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0)
        << "wait status " << *status;
    EXPECT_FALSE(Exists(file)) << "the daemon ended by SIGTERM left " << file;
  });
}

// A root killed with kill -9 leaves its file, with nobody to reap it. The
// next actor to bind its own socket on this host sweeps it; a live actor's
// file, a symbolic link and a file that is not a socket are kept.
TEST_F(SocketFilesTest, AStaleFileOfAKilledRootIsSweptAndALiveActorsIsKept) {
  const std::string dir = discovery::PrivateSocketDir();
  // Two daemons: one killed, one live.
  auto start_daemon = [&](const std::string& name, std::unique_ptr<Proc>* out,
                          std::string* file) {
    *out = Proc::Spawn({HelperBinary(), "--daemon", "--name=" + name});
    ASSERT_NE(*out, nullptr);
    std::optional<std::string> ready =
        (*out)->ReadLineStartingWith(name + " ", Scaled(absl::Seconds(20)));
    ASSERT_TRUE(ready.has_value()) << name << " did not say it is ready";
    std::vector<std::string> words = absl::StrSplit(*ready, ' ');
    ASSERT_GE(words.size(), 2u);
    *file = SocketFileOf(words[1]);
    ASSERT_TRUE(Exists(*file)) << name << " has no socket file";
  };
  OpenRootActor({}, [&] {
    std::unique_ptr<Proc> killed, live;
    std::string killed_file, live_file;
    start_daemon("killedroot", &killed, &killed_file);
    start_daemon("liveroot", &live, &live_file);
    killed->Signal(SIGKILL);
    ASSERT_TRUE(killed->Wait(Scaled(absl::Seconds(10))).has_value());
    ASSERT_TRUE(Exists(killed_file))
        << "the killed root's file is gone before any sweep";
    Backdate(killed_file);
    Backdate(live_file);
    // A dead socket file outside the directory, and a symbolic link to it
    // inside; a regular file named like a socket.
    char tmpl[] = "/tmp/sockfiles.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    const std::string outside = absl::StrCat(tmpl, "/dead.sock");
    {
      int fd = socket(AF_UNIX, SOCK_STREAM, 0);
      ASSERT_GE(fd, 0);
      sockaddr_un sun{};
      sun.sun_family = AF_UNIX;
      std::strncpy(sun.sun_path, outside.c_str(), sizeof(sun.sun_path) - 1);
      ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&sun), sizeof(sun)), 0);
      close(fd);  // the file stays: a dead socket
    }
    const std::string link =
        absl::StrCat(dir, "/link-", getpid(), "-", absl::ToUnixNanos(absl::Now()),
                     ".sock");
    const std::string plain =
        absl::StrCat(dir, "/plain-", getpid(), "-",
                     absl::ToUnixNanos(absl::Now()), ".sock");
    ASSERT_EQ(symlink(outside.c_str(), link.c_str()), 0);
    { std::ofstream(plain) << "not a socket"; }
    Backdate(outside);
    Backdate(link);
    Backdate(plain);

    // A new actor binds its socket: the sweep runs.
    OpenNursery([&](ActorNursery& an) {
      Portal p = an.StartActor("sweeper", kOpts);
      EXPECT_EQ(p.Run<int64_t>("sock:square", int64_t{4}), 16);
      an.Cancel();
    });
    EXPECT_FALSE(Exists(killed_file))
        << "the stale file of the killed root was not swept";
    EXPECT_TRUE(Exists(live_file)) << "the live daemon's file was removed";
    EXPECT_TRUE(Exists(link)) << "a symbolic link was removed";
    EXPECT_TRUE(Exists(outside)) << "the target of a symbolic link was removed";
    EXPECT_TRUE(Exists(plain)) << "a file that is not a socket was removed";
    // The live daemon still answers on its socket: a portal through it.
    Portal through = Portal::Connect(absl::StrCat("unix:", live_file));
    EXPECT_EQ(through.aid().name(), "liveroot");

    live->Signal(SIGTERM);
    EXPECT_TRUE(live->Wait(Scaled(absl::Seconds(20))).has_value());
    EXPECT_FALSE(Exists(live_file));
    unlink(link.c_str());
    unlink(plain.c_str());
    unlink(outside.c_str());
    rmdir(tmpl);
  });
}

}  // namespace
}  // namespace tractor
