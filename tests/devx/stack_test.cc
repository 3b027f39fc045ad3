// SPDX-License-Identifier: AGPL-3.0-or-later
#include "devx/stack.h"

#include <fcntl.h>
#include <linux/futex.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <fstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "devx/crash_handler.h"
#include "devx/throw_trace.h"
#include "gtest/gtest.h"

namespace tractor::devx {
namespace {

// Three calls deep, the innermost throws std::out_of_range from inside
// libstdc++ (vector::at).
__attribute__((noinline)) int DeepAt(const std::vector<int>& v) {
  return v.at(7);  // kDeepAtLine
}
constexpr int kDeepAtLine = __LINE__ - 2;
__attribute__((noinline)) int DeepMiddle(const std::vector<int>& v) {
  return DeepAt(v) + 1;
}
__attribute__((noinline)) int DeepOuter() {
  std::vector<int> v(3);
  return DeepMiddle(v) + 1;
}

struct Plain {
  int code;
};

__attribute__((noinline)) void ThrowPlain() { throw Plain{7}; }

std::exception_ptr Catch(void (*fn)()) {
  try {
    fn();
  } catch (...) {
    return std::current_exception();
  }
  return nullptr;
}

TEST(ThrowTraceTest, LibraryThrowRecordsTheUserFramesWithFileAndLine) {
  std::exception_ptr e = Catch([] { DeepOuter(); });
  ASSERT_TRUE(e);
  const std::string trace = ThrowSiteTrace(e);
  EXPECT_TRUE(absl::StrContains(trace, "DeepAt(")) << trace;
  EXPECT_TRUE(absl::StrContains(trace, "DeepMiddle(")) << trace;
  EXPECT_TRUE(absl::StrContains(trace, "DeepOuter(")) << trace;
  EXPECT_TRUE(absl::StrContains(
      trace, "tests/devx/stack_test.cc:" + std::to_string(kDeepAtLine)))
      << trace;
  // DeepAt is listed before (inside of) DeepOuter: innermost first.
  EXPECT_LT(trace.find("DeepAt("), trace.find("DeepOuter("));
}

TEST(ThrowTraceTest, AnyThrownTypeIsRecordedAndForgottenWhenDestroyed) {
  const int before = TrackedThrows();
  {
    std::exception_ptr e = Catch(ThrowPlain);
    ASSERT_TRUE(e);
    EXPECT_EQ(TrackedThrows(), before + 1);
    EXPECT_TRUE(absl::StrContains(ThrowSiteTrace(e), "ThrowPlain"))
        << ThrowSiteTrace(e);
    // Rethrowing keeps the original throw site.
    std::exception_ptr again;
    try {
      std::rethrow_exception(e);
    } catch (const Plain& p) {
      EXPECT_EQ(p.code, 7);
      again = std::current_exception();
    }
    EXPECT_TRUE(absl::StrContains(ThrowSiteTrace(again), "ThrowPlain"));
  }
  EXPECT_EQ(TrackedThrows(), before);
}

TEST(ThrowTraceTest, MadeExceptionPtrHasNoThrowSite) {
  std::exception_ptr e = std::make_exception_ptr(std::runtime_error("x"));
  EXPECT_EQ(ThrowSiteTrace(e), "");
}

TEST(ThrowTraceTest, CaptureCanBeTurnedOff) {
  SetThrowCapture(false);
  std::exception_ptr e = Catch(ThrowPlain);
  SetThrowCapture(true);
  EXPECT_EQ(ThrowSiteTrace(e), "");
  std::exception_ptr f = Catch(ThrowPlain);
  EXPECT_NE(ThrowSiteTrace(f), "");
}

__attribute__((noinline)) void ParkedInLabelledTask(std::atomic<int>* state) {
  TaskLabel label("task 'demo:park' cid 42 for 'root'");
  state->store(1);
  while (state->load() == 1) usleep(1000);
}

TEST(SampleThreadsTest, EveryThreadIsListedWithItsTaskLabel) {
  std::atomic<int> state{0};
  std::thread t([&] { ParkedInLabelledTask(&state); });
  while (state.load() == 0) usleep(1000);
  const std::string dump = DumpThreads();
  state.store(2);
  t.join();
  EXPECT_TRUE(absl::StrContains(dump, "(task 'demo:park' cid 42 for 'root')"))
      << dump;
  EXPECT_TRUE(absl::StrContains(dump, "ParkedInLabelledTask")) << dump;
  // The calling thread is listed too.
  EXPECT_TRUE(absl::StrContains(dump, "DumpThreads")) << dump;
  EXPECT_FALSE(absl::StrContains(dump, "did not answer")) << dump;
}

TEST(SampleThreadsTest, AThreadThatBlocksTheSignalIsListedAndNotAsked) {
  std::atomic<int> state{0};
  std::atomic<pid_t> tid{0};
  std::thread t([&] {
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, nullptr);
    tid.store(static_cast<pid_t>(syscall(SYS_gettid)));
    state.store(1);
    while (state.load() == 1) usleep(1000);
  });
  while (state.load() == 0) usleep(1000);
  const std::vector<ThreadStack> threads = SampleThreads();
  state.store(2);
  t.join();
  int listed = 0;
  for (const ThreadStack& s : threads) {
    if (s.tid != tid.load()) continue;
    ++listed;
    EXPECT_TRUE(s.blocks_signal);
    EXPECT_FALSE(s.answered);
  }
  EXPECT_EQ(listed, 1);
}

// A thread that cannot answer is still named with its task: it published
// its label when it set it.
TEST(SampleThreadsTest, AThreadNotSampledIsNamedWithItsTask) {
  std::atomic<int> state{0};
  std::atomic<pid_t> tid{0};
  std::thread t([&] {
    TaskLabel label("task 'demo:deaf' cid 5 for 'root'");
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, nullptr);
    tid.store(static_cast<pid_t>(syscall(SYS_gettid)));
    state.store(1);
    while (state.load() == 1) usleep(1000);
  });
  while (state.load() == 0) usleep(1000);
  const std::vector<ThreadStack> threads = SampleThreads();
  const std::string dump = DumpThreads();
  state.store(2);
  t.join();
  int listed = 0;
  for (const ThreadStack& s : threads) {
    if (s.tid != tid.load()) continue;
    ++listed;
    EXPECT_FALSE(s.answered);
    EXPECT_TRUE(s.frames.empty());
    EXPECT_EQ(s.label, "task 'demo:deaf' cid 5 for 'root'");
  }
  EXPECT_EQ(listed, 1);
  EXPECT_TRUE(absl::StrContains(
      dump,
      "(task 'demo:deaf' cid 5 for 'root'): not sampled (it blocks the "
      "sampling signal)"))
      << dump;
  // Once the task is over, the thread has no label any more.
  bool unlabelled = false;
  std::thread([&] {
    { TaskLabel label("task 'demo:brief' cid 6 for 'root'"); }
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, nullptr);
    const pid_t self = static_cast<pid_t>(syscall(SYS_gettid));
    for (const ThreadStack& s : SampleThreads()) {
      if (s.tid == self) unlabelled = s.label.empty();
    }
  }).join();
  EXPECT_TRUE(unlabelled);
}

// A thread asleep in an untimed futex wait (as in Abseil's Mutex and
// CondVar) answers: under ThreadSanitizer its handler would run only once
// it woke, so the sampler wakes it.
__attribute__((noinline)) void ParkedInFutexWait(std::atomic<uint32_t>* word,
                                                 std::atomic<pid_t>* tid) {
  TaskLabel label("task 'demo:futex' cid 8 for 'root'");
  tid->store(static_cast<pid_t>(syscall(SYS_gettid)));
  while (word->load() == 0) {
    syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT_PRIVATE,
            0, nullptr, nullptr, 0);
  }
  asm volatile("");  // keeps the frame (no tail call)
}

TEST(SampleThreadsTest, AThreadParkedInAFutexWaitIsSampled) {
  std::atomic<uint32_t> word{0};
  std::atomic<pid_t> tid{0};
  std::thread t([&] { ParkedInFutexWait(&word, &tid); });
  while (tid.load() == 0) usleep(1000);
  // Until it sleeps in the wait: the kernel shows the system call the
  // thread is blocked in (its number first), "running" otherwise.
  const std::string path =
      "/proc/self/task/" + std::to_string(tid.load()) + "/syscall";
  const std::string futex_nr = std::to_string(SYS_futex);
  bool waiting = false;
  for (int i = 0; i < 10000 && !waiting; ++i) {
    std::ifstream f(path);
    std::string nr;
    f >> nr;
    waiting = nr == futex_nr;
    if (!waiting) usleep(1000);
  }
  EXPECT_TRUE(waiting);
  const std::vector<ThreadStack> threads = SampleThreads();
  word.store(1);
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word), FUTEX_WAKE_PRIVATE,
          1, nullptr, nullptr, 0);
  t.join();
  int listed = 0;
  for (const ThreadStack& s : threads) {
    if (s.tid != tid.load()) continue;
    ++listed;
    EXPECT_TRUE(s.answered);
    EXPECT_EQ(s.label, "task 'demo:futex' cid 8 for 'root'");
    EXPECT_TRUE(absl::StrContains(FormatStack(s.frames), "ParkedInFutexWait"))
        << FormatStack(s.frames);
  }
  EXPECT_EQ(listed, 1);
}

// UBSan (--config=asan) would stop the write before it faults: the crash
// handler is what is tested here, so the null check is off for this one.
#if defined(__clang__)
__attribute__((no_sanitize("null")))
#endif
__attribute__((noinline)) void WriteThroughNull(int* volatile p) {
  *p = 1;  // kSegvLine
}
constexpr int kSegvLine = __LINE__ - 2;

// How CrashInChild's process prepares its crash handler.
enum class Prep {
  kAtInstall,       // InstallCrashHandler(fd) prepares before returning
  kOnThread,        // kByCaller, then PrepareCrashHandler on another thread
  kNever,           // kByCaller, and nobody prepares
};

// Forks a process that installs the crash handler with a crash pipe and
// then runs `crash`; returns what the pipe received and the wait status.
std::string CrashInChild(void (*crash)(), int* status,
                         Prep prep = Prep::kAtInstall) {
  int fds[2];
  EXPECT_EQ(pipe(fds), 0);
  pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    int devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, 2);  // keep the test's output readable
    if (prep == Prep::kAtInstall) {
      InstallCrashHandler(fds[1]);
    } else {
      InstallCrashHandler(fds[1], CrashHandlerPreparation::kByCaller);
    }
    if (prep == Prep::kOnThread) std::thread(PrepareCrashHandler).join();
    SetProcessLabel("actor 'crasher' 0123abcd");
    std::thread other([] {
      TaskLabel label("task 'demo:idle' cid 9 for 'root'");
      pause();
    });
    other.detach();
    usleep(20000);
    crash();
    _exit(0);
  }
  close(fds[1]);
  std::string text;
  char buf[4096];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof buf)) > 0) text.append(buf, n);
  close(fds[0]);
  waitpid(pid, status, 0);
  return text;
}

// The child died of SIGSEGV, and its report names the signal and the
// actor and has its end line.
void ExpectSegvReport(int status, const std::string& report) {
  ASSERT_TRUE(WIFSIGNALED(status)) << status;
  EXPECT_EQ(WTERMSIG(status), SIGSEGV);
  EXPECT_TRUE(absl::StrContains(report, "fatal signal SIGSEGV (11) in actor "
                                        "'crasher' 0123abcd"))
      << report;
  EXPECT_TRUE(absl::StrContains(report, "*** end of crash report")) << report;
}

TEST(CrashHandlerTest, SegfaultWritesSignalStacksAndSourceLineThenDies) {
  int status = 0;
  const std::string report =
      CrashInChild([] { WriteThroughNull(nullptr); }, &status);
  ExpectSegvReport(status, report);
  EXPECT_TRUE(absl::StrContains(report, "WriteThroughNull")) << report;
  EXPECT_TRUE(absl::StrContains(
      report, "tests/devx/stack_test.cc:" + std::to_string(kSegvLine)))
      << report;
  // The other thread, with its task label.
  EXPECT_TRUE(absl::StrContains(report, "(task 'demo:idle' cid 9 for 'root')"))
      << report;
}

// A handler installed first and prepared by another thread afterwards (a
// child actor's boot) reports like one prepared at install.
TEST(CrashHandlerTest, HandlerPreparedOnAnotherThreadReportsTheSourceLine) {
  int status = 0;
  const std::string report = CrashInChild([] { WriteThroughNull(nullptr); },
                                          &status, Prep::kOnThread);
  ExpectSegvReport(status, report);
  EXPECT_TRUE(absl::StrContains(
      report, "tests/devx/stack_test.cc:" + std::to_string(kSegvLine)))
      << report;
}

// A crash before any preparation still gets a report (without waiting:
// nobody is preparing) and the process still dies by its signal.
TEST(CrashHandlerTest, HandlerNeverPreparedStillReportsAndDies) {
  int status = 0;
  const std::string report = CrashInChild([] { WriteThroughNull(nullptr); },
                                          &status, Prep::kNever);
  ExpectSegvReport(status, report);
  EXPECT_TRUE(absl::StrContains(report, "WriteThroughNull")) << report;
}

TEST(CrashHandlerTest, AbortIsReportedAsSigabrt) {
  int status = 0;
  const std::string report = CrashInChild([] { abort(); }, &status);
  ASSERT_TRUE(WIFSIGNALED(status)) << status;
  EXPECT_EQ(WTERMSIG(status), SIGABRT);
  EXPECT_TRUE(absl::StrContains(report, "fatal signal SIGABRT (6)")) << report;
}

TEST(OpenCrashHandlerTest, EscapingExceptionIsReportedWithItsThrowSiteAndRethrown) {
  testing::internal::CaptureStderr();
  bool caught = false;
  try {
    OpenCrashHandler([] { return DeepOuter(); });
  } catch (const std::out_of_range&) {
    caught = true;
  }
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_TRUE(caught);
  EXPECT_TRUE(absl::StrContains(err, "exception escaping OpenCrashHandler: "
                                     "std::out_of_range"))
      << err;
  EXPECT_TRUE(absl::StrContains(err, "DeepAt(")) << err;
  EXPECT_EQ(OpenCrashHandler([] { return 5; }), 5);
}

}  // namespace
}  // namespace tractor::devx
