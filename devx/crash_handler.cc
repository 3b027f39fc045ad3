// SPDX-License-Identifier: AGPL-3.0-or-later
#include "devx/crash_handler.h"

#include <cxxabi.h>
#include <fcntl.h>
#include <link.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "devx/stack.h"
#include "devx/throw_trace.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TRACTOR_UNDER_ASAN 1
#endif
#endif
#ifndef TRACTOR_UNDER_ASAN
#define TRACTOR_UNDER_ASAN 0
#endif

namespace tractor::devx {
namespace {

constexpr int kFatalSignals[] = {SIGSEGV, SIGABRT, SIGBUS, SIGFPE, SIGILL};

// A loaded binary with debug information, recorded at install time so the
// handler can hand its addresses to addr2line without asking the dynamic
// linker (which is not async-signal-safe).
struct DebugObject {
  char path[512];
  uintptr_t base;   // subtracted from an address when `pie`
  uintptr_t start;  // [start, end): its executable segments
  uintptr_t end;
  bool pie;
};

constexpr int kMaxObjects = 64;
DebugObject g_objects[kMaxObjects];
int g_num_objects = 0;
char g_addr2line[64];  // full path, or empty when not installed
std::atomic<int> g_crash_fd{-1};
// Set (release) once PrepareCrashHandler is done: g_objects, g_num_objects
// and g_addr2line are then written for good.
std::atomic<bool> g_prepared{false};
// The thread running PrepareCrashHandler (0: none), which must not wait
// for itself.
std::atomic<long> g_preparing_tid{0};
char g_label[256];
std::atomic<int> g_crashing{0};
// The report is built here: nothing is allocated in the handler.
char g_report[1 << 20];
char g_source[1 << 16];

void RecordDebugObjects() {
  struct Found {
    std::string path;
    uintptr_t base, start, end;
  };
  std::vector<Found> found;
  dl_iterate_phdr(
      [](struct dl_phdr_info* info, size_t, void* data) {
        auto* out = static_cast<std::vector<Found>*>(data);
        Found f;
        f.path = (info->dlpi_name == nullptr || info->dlpi_name[0] == '\0')
                     ? std::string()
                     : info->dlpi_name;
        f.base = info->dlpi_addr;
        f.start = UINTPTR_MAX;
        f.end = 0;
        for (int i = 0; i < info->dlpi_phnum; ++i) {
          const auto& ph = info->dlpi_phdr[i];
          if (ph.p_type != PT_LOAD || !(ph.p_flags & PF_X)) continue;
          f.start = std::min<uintptr_t>(f.start, info->dlpi_addr + ph.p_vaddr);
          f.end = std::max<uintptr_t>(f.end,
                                      info->dlpi_addr + ph.p_vaddr + ph.p_memsz);
        }
        if (f.end > f.start) out->push_back(f);
        return 0;
      },
      &found);
  g_num_objects = 0;
  for (Found& f : found) {
    if (f.path.empty()) f.path = MainProgramPath();
    bool pie = true;
    if (!BinaryHasDebugInfo(f.path, &pie)) continue;
    if (g_num_objects == kMaxObjects || f.path.size() >= sizeof g_objects[0].path) {
      continue;
    }
    DebugObject& o = g_objects[g_num_objects++];
    memcpy(o.path, f.path.c_str(), f.path.size() + 1);
    o.base = f.base;
    o.start = f.start;
    o.end = f.end;
    o.pie = pie;
  }
  for (const char* p : {"/usr/bin/addr2line", "/bin/addr2line"}) {
    if (access(p, X_OK) == 0) {
      snprintf(g_addr2line, sizeof g_addr2line, "%s", p);
      break;
    }
  }
}

const DebugObject* ObjectOf(uintptr_t pc) {
  for (int i = 0; i < g_num_objects; ++i) {
    if (pc >= g_objects[i].start && pc < g_objects[i].end) return &g_objects[i];
  }
  return nullptr;
}

// Runs addr2line (pretty-printed, inlined calls included) on the frames
// of `frames` that lie in `obj`; appends its output to `out`. Uses vfork
// (fork under ASan) and execve only; gives addr2line up to 5 s.
void RunAddr2line(const DebugObject& obj, void* const* frames, int n,
                  signal_safe::Out& out) {
  if (g_addr2line[0] == '\0') return;
  static char hex[kMaxFrames][24];
  static char* argv[kMaxFrames + 10];
  int argc = 0;
  argv[argc++] = const_cast<char*>("addr2line");
  argv[argc++] = const_cast<char*>("-a");
  argv[argc++] = const_cast<char*>("-f");
  argv[argc++] = const_cast<char*>("-C");
  argv[argc++] = const_cast<char*>("-i");
  argv[argc++] = const_cast<char*>("-p");
  argv[argc++] = const_cast<char*>("-e");
  argv[argc++] = const_cast<char*>(obj.path);
  int count = 0;
  for (int i = 0; i < n && count < kMaxFrames; ++i) {
    // Frame #0 is where the signal struck, the faulting instruction itself;
    // the others are return addresses: look their calls up.
    const uintptr_t pc = reinterpret_cast<uintptr_t>(frames[i]) - (i == 0 ? 0 : 1);
    if (ObjectOf(pc) != &obj) continue;
    signal_safe::Out h(hex[count], sizeof hex[count] - 1);
    h.PutNumber(obj.pie ? pc - obj.base : pc, true);
    hex[count][h.size()] = '\0';
    argv[argc++] = hex[count++];
  }
  argv[argc] = nullptr;
  if (count == 0) return;
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return;
  static char* const envp[] = {nullptr};
#if defined(__SANITIZE_ADDRESS__) || TRACTOR_UNDER_ASAN
  // ASan's vfork interceptor unpoisons the stack from the stack pointer to
  // the thread's stack top, which faults when the handler runs on the
  // alternate signal stack: a sanitized build forks instead.
  pid_t pid = fork();
#else
  pid_t pid = vfork();
#endif
  if (pid == 0) {
    dup2(fds[1], 1);
    int devnull = open("/dev/null", O_WRONLY);
    if (devnull >= 0) dup2(devnull, 2);
    execve(g_addr2line, argv, envp);
    _exit(127);
  }
  close(fds[1]);
  if (pid < 0) {
    close(fds[0]);
    return;
  }
  char buf[4096];
  for (int waited = 0; waited < 5000;) {
    struct pollfd p = {fds[0], POLLIN, 0};
    const int r = poll(&p, 1, 100);
    if (r < 0 && errno == EINTR) continue;
    if (r == 0) {
      waited += 100;
      continue;
    }
    const ssize_t got = read(fds[0], buf, sizeof buf);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    out.Put(buf, got);
  }
  close(fds[0]);
  kill(pid, SIGKILL);
  int status;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
}

void OnFatal(int sig, siginfo_t* info, void*) {
  using signal_safe::Out;
  if (g_crashing.exchange(1) != 0) {
    // Another thread is writing the report; let it finish, then die.
    struct timespec ts = {10, 0};
    nanosleep(&ts, nullptr);
  } else {
    Out out(g_report, sizeof g_report);
    out.Put("*** tractor: fatal signal ");
    signal_safe::PutSignalName(out, sig);
    out.Put(" (");
    out.PutNumber(sig);
    out.Put(")");
    if (g_label[0] != '\0') {
      out.Put(" in ");
      out.Put(g_label);
    }
    out.Put(", pid ");
    out.PutNumber(getpid());
    if (sig != SIGABRT && info != nullptr) {
      out.Put(", fault address ");
      out.PutNumber(reinterpret_cast<uintptr_t>(info->si_addr), true);
    }
    out.Put("\nCrashing ");
    signal_safe::PutSelfLabel(out);
    out.Put(":\n");
    // A signal during the preparation waits for it (at most 2 s), except
    // on the thread doing it.
    const long tid = syscall(SYS_gettid);
    for (int waited_ms = 0; waited_ms < 2000; ++waited_ms) {
      const long preparing = g_preparing_tid.load();
      if (g_prepared.load(std::memory_order_acquire) || preparing == 0 ||
          preparing == tid) {
        break;
      }
      struct timespec ms = {0, 1000000};
      nanosleep(&ms, nullptr);
    }
    const bool prepared = g_prepared.load(std::memory_order_acquire);
    void* frames[kMaxFrames];
    // Skip this handler and the signal trampoline: frame #0 is where the
    // signal struck.
    const int n = CaptureStack(frames, kMaxFrames, 2);
    signal_safe::PutFrames(out, frames, n);
    bool any_debug = false;
    for (int i = 0; prepared && i < n; ++i) {
      if (ObjectOf(reinterpret_cast<uintptr_t>(frames[i]) - 1) != nullptr) {
        any_debug = true;
      }
    }
    if (any_debug) {
      out.Put("  source lines (addr2line):\n");
      for (int o = 0; o < g_num_objects; ++o) {
        Out src(g_source, sizeof g_source);
        RunAddr2line(g_objects[o], frames, n, src);
        // Indent each line.
        const char* p = src.data();
        const char* end = p + src.size();
        while (p < end) {
          const char* nl = static_cast<const char*>(memchr(p, '\n', end - p));
          const char* stop = nl ? nl + 1 : end;
          out.Put("    ");
          out.Put(p, stop - p);
          p = stop;
        }
      }
    }
    out.Put("Other threads:\n");
    signal_safe::PutOtherThreads(out, 100);
    out.Put("*** end of crash report\n");
    signal_safe::WriteAll(2, out.data(), out.size());
    const int fd = g_crash_fd.load();
    if (fd >= 0) signal_safe::WriteAll(fd, out.data(), out.size());
  }
  // Die by the signal: the default action, raised again on return (a fault
  // repeats; a raised signal is pending, blocked while this handler runs).
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  sigaction(sig, &dfl, nullptr);
  syscall(SYS_tgkill, getpid(), syscall(SYS_gettid), sig);
}

sem_t g_dump_sem;

void OnDumpSignal(int) {
  const int saved = errno;
  sem_post(&g_dump_sem);
  errno = saved;
}

std::string Demangle(const char* name) {
  int status = 0;
  char* out = abi::__cxa_demangle(name, nullptr, nullptr, &status);
  if (status != 0 || out == nullptr) return name;
  std::string s(out);
  free(out);
  return s;
}

}  // namespace

void PrepareCrashHandler() {
  static std::once_flag once;
  std::call_once(once, [] {
    g_preparing_tid.store(syscall(SYS_gettid));
    WarmUp();
    RecordDebugObjects();
    g_prepared.store(true, std::memory_order_release);
    g_preparing_tid.store(0);
  });
}

void InstallCrashHandler(int crash_fd, CrashHandlerPreparation preparation) {
  if (preparation == CrashHandlerPreparation::kNow) PrepareCrashHandler();
  static std::once_flag once;
  std::call_once(once, [] {
    // The crashing thread may be out of stack (a runaway recursion): the
    // handler of the thread that installs runs on an alternate stack.
    static char alt[1 << 16];
    stack_t ss{};
    ss.ss_sp = alt;
    ss.ss_size = sizeof alt;
    sigaltstack(&ss, nullptr);
    struct sigaction sa {};
    sa.sa_sigaction = OnFatal;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    for (int s : kFatalSignals) sigaction(s, &sa, nullptr);
  });
  if (crash_fd >= 0) {
    // Never block the handler on a full pipe.
    fcntl(crash_fd, F_SETFL, fcntl(crash_fd, F_GETFL) | O_NONBLOCK);
    g_crash_fd.store(crash_fd);
  }
}

void SetProcessLabel(const std::string& label) {
  const size_t n = std::min(label.size(), sizeof g_label - 1);
  g_label[0] = '\0';
  memcpy(g_label + 1, label.data() + (n > 0 ? 1 : 0), n > 0 ? n - 1 : 0);
  g_label[n] = '\0';
  if (n > 0) g_label[0] = label[0];
}

std::string StackReport() {
  std::string text = "*** tractor: stacks of every thread";
  if (g_label[0] != '\0') absl::StrAppend(&text, " of ", g_label);
  absl::StrAppend(&text, ", pid ", getpid(), "\n", DumpThreads(),
                  "*** end of stacks\n");
  return text;
}

void InstallStackDumpOnSignal() {
  static std::once_flag once;
  std::call_once(once, [] {
    sem_init(&g_dump_sem, 0, 0);
    std::thread([] {
      pthread_setname_np(pthread_self(), "tr-stackdump");
      // Here rather than in the caller: the caller may be booting. A
      // SIGUSR1 that comes first is counted and answered after it.
      WarmUp();
      for (;;) {
        while (sem_wait(&g_dump_sem) != 0 && errno == EINTR) {
        }
        const std::string text = StackReport();
        signal_safe::WriteAll(2, text.data(), text.size());
      }
    }).detach();
    struct sigaction sa {};
    sa.sa_handler = OnDumpSignal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, nullptr);
  });
}

std::string ReportEscapingException(const std::exception_ptr& e) {
  std::string type = "unknown";
  std::string what;
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& err) {
    type = Demangle(typeid(err).name());
    what = err.what();
  } catch (...) {
    if (std::type_info* t = abi::__cxa_current_exception_type()) {
      type = Demangle(t->name());
    }
  }
  if (type == "tractor::Cancelled") return "";
  std::string text = absl::StrCat("*** tractor: exception escaping "
                                  "OpenCrashHandler: ",
                                  type);
  if (!what.empty()) absl::StrAppend(&text, ": ", what);
  absl::StrAppend(&text, "\n");
  const std::string site = ThrowSiteTrace(e, "    ");
  if (site.empty()) {
    absl::StrAppend(&text, "  (no throw site recorded)\n");
  } else {
    absl::StrAppend(&text, "  thrown at:\n", site);
  }
  signal_safe::WriteAll(2, text.data(), text.size());
  return text;
}

}  // namespace tractor::devx
