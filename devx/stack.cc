// SPDX-License-Identifier: AGPL-3.0-or-later
#include "devx/stack.h"

#include <cxxabi.h>
#include <dirent.h>
#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <execinfo.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <utility>

#include "absl/debugging/internal/demangle.h"
#include "absl/debugging/symbolize.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

extern char** environ;

namespace tractor::devx {
namespace {

// The calling thread's task label: read by the thread itself, in the
// sample signal's handler, so it is plain storage of the initial-exec
// model (no lazy allocation on first access from a handler). Other
// threads read the copy it publishes (PublishLabel below).
__attribute__((tls_model("initial-exec"))) thread_local char t_label[256];

pid_t Gettid() { return static_cast<pid_t>(syscall(SYS_gettid)); }

// Every labelled thread's task label, published where the sampler reads it
// without the thread's help: a thread that does not answer the sample
// signal, or blocks it, is still named with its task. A slot belongs to a
// thread while its label is not empty (`TaskLabel` is scoped, so a thread
// has none when it ends). The text is written and read as relaxed atomic
// words under a sequence count (odd while the owner writes), so a reader
// never races the owner and retries a copy it tore. Async-signal-safe on
// both sides.
constexpr int kLabelSlots = 1024;
constexpr int kLabelWords = sizeof t_label / sizeof(uint64_t);

struct PublishedLabel {
  std::atomic<pid_t> tid{0};
  std::atomic<uint32_t> seq{0};
  std::atomic<uint64_t> words[kLabelWords];
};

PublishedLabel g_published[kLabelSlots];
// The calling thread's slot in g_published, or -1.
__attribute__((tls_model("initial-exec"))) thread_local int t_published = -1;

// Publishes the calling thread's t_label (claiming a slot when it becomes
// non-empty, giving it back when it becomes empty). When every slot is
// taken the label is not published; the thread's own handler still
// reports it.
void PublishLabel() {
  if (t_label[0] == '\0') {
    if (t_published < 0) return;
    g_published[t_published].tid.store(0, std::memory_order_release);
    t_published = -1;
    return;
  }
  if (t_published < 0) {
    const pid_t self = Gettid();
    for (int i = 0; i < kLabelSlots; ++i) {
      const int k = (static_cast<int>(self) + i) % kLabelSlots;
      pid_t expected = 0;
      if (g_published[k].tid.compare_exchange_strong(expected, self)) {
        t_published = k;
        break;
      }
    }
    if (t_published < 0) return;
  }
  PublishedLabel& p = g_published[t_published];
  const uint32_t seq = p.seq.load(std::memory_order_relaxed);
  p.seq.store(seq + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  for (int w = 0; w < kLabelWords; ++w) {
    uint64_t word;
    memcpy(&word, t_label + w * sizeof word, sizeof word);
    p.words[w].store(word, std::memory_order_relaxed);
  }
  p.seq.store(seq + 2, std::memory_order_release);
}

// Copies the published label of thread `tid` into `out` (256 bytes; empty
// when it has none). Async-signal-safe.
void ReadPublishedLabel(pid_t tid, char* out) {
  out[0] = '\0';
  for (int i = 0; i < kLabelSlots; ++i) {
    const int k = (static_cast<int>(tid) + i) % kLabelSlots;
    PublishedLabel& p = g_published[k];
    if (p.tid.load(std::memory_order_acquire) != tid) continue;
    // The owner rewrites its label only when it enters or leaves a task: a
    // few tries suffice.
    for (int attempt = 0; attempt < 100; ++attempt) {
      const uint32_t before = p.seq.load(std::memory_order_acquire);
      if (before & 1) continue;
      for (int w = 0; w < kLabelWords; ++w) {
        const uint64_t word = p.words[w].load(std::memory_order_relaxed);
        memcpy(out + w * sizeof word, &word, sizeof word);
      }
      std::atomic_thread_fence(std::memory_order_acquire);
      if (p.tid.load(std::memory_order_relaxed) != tid) break;
      if (p.seq.load(std::memory_order_relaxed) == before) {
        out[sizeof t_label - 1] = '\0';
        return;
      }
    }
    out[0] = '\0';
    return;
  }
}

// One sample request at a time. `state` is `seq << 2 | phase`: the
// requester publishes kRequested for the target `tid`; the target's
// handler moves it to kBusy, fills the slot and sets kDone; a requester
// that gives up moves kRequested back to kIdle (so a late handler writes
// nothing).
enum Phase : uint64_t { kIdle = 0, kRequested = 1, kBusy = 2, kDone = 3 };

struct Slot {
  std::atomic<uint64_t> state{0};
  std::atomic<pid_t> tid{0};
  int depth = 0;
  void* frames[kMaxFrames];
  char label[256];
};

Slot g_slot;
std::atomic<uint64_t> g_seq{0};
// Serializes requesters: an ordinary mutex for SampleThreads, and an atomic
// flag the signal-safe path spins on with a bound.
std::atomic<bool> g_sampling{false};
std::mutex g_sample_mu;
int g_sample_signal = 0;

void OnSample(int, siginfo_t*, void*) {
  const int saved_errno = errno;
  uint64_t s = g_slot.state.load();
  if ((s & 3) == kRequested && g_slot.tid.load() == Gettid() &&
      g_slot.state.compare_exchange_strong(s, (s & ~3ull) | kBusy)) {
    // Skip this handler and the signal trampoline.
    g_slot.depth = CaptureStack(g_slot.frames, kMaxFrames, 2);
    memcpy(g_slot.label, t_label, sizeof g_slot.label);
    g_slot.label[sizeof g_slot.label - 1] = '\0';
    g_slot.state.store((s & ~3ull) | kDone);
  }
  errno = saved_errno;
}

void SleepMs(int ms) {
  struct timespec ts = {0, ms * 1000000L};
  nanosleep(&ts, nullptr);
}

void TaskFilePath(pid_t tid, const char* file, char path[64]);

// Wakes thread `tid` if it sleeps in a futex wait (read from
// /proc/self/task/<tid>/syscall: the system call's number and arguments),
// by a FUTEX_WAKE of every waiter of the word it waits on. Under
// ThreadSanitizer a signal that reaches a thread asleep in a call TSan does
// not intercept (Abseil's Mutex and CondVar wait on a raw futex) is only
// recorded; its handler runs when the thread next enters TSan's runtime,
// which a woken waiter does at once (its next atomic operation), while an
// untimed wait would not end by itself. A spurious wake-up is one every
// futex user already handles: the kernel gives one for a signal, and
// Abseil, glibc and libstdc++ recheck their condition and wait again. The
// other builds run the handler in the wait itself, so this does not happen
// there unless a thread is slow to answer. Raw system calls:
// async-signal-safe.
void WakeIfInFutexWait(pid_t tid) {
  char path[64];
  TaskFilePath(tid, "syscall", path);
  const int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  char buf[256];
  const ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return;
  buf[n] = '\0';
  // "202 0x7f... 0x80 ..." : the number (decimal), then the arguments (hex).
  const char* p = buf;
  long nr = 0;
  if (*p < '0' || *p > '9') return;  // "running" or "-1 ..."
  while (*p >= '0' && *p <= '9') nr = nr * 10 + (*p++ - '0');
  if (nr != SYS_futex) return;
  unsigned long args[2] = {0, 0};
  for (unsigned long& a : args) {
    while (*p == ' ') ++p;
    if (p[0] != '0' || p[1] != 'x') return;
    p += 2;
    for (;; ++p) {
      int v;
      if (*p >= '0' && *p <= '9') {
        v = *p - '0';
      } else if (*p >= 'a' && *p <= 'f') {
        v = *p - 'a' + 10;
      } else {
        break;
      }
      a = a << 4 | v;
    }
  }
  const int op = static_cast<int>(args[1]);
  const int cmd = op & FUTEX_CMD_MASK;
  if (cmd != FUTEX_WAIT && cmd != FUTEX_WAIT_BITSET) return;
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(args[0]),
          FUTEX_WAKE | (op & FUTEX_PRIVATE_FLAG), INT32_MAX, nullptr, nullptr,
          0);
}

// Asks thread `tid` for its stack; on success the slot holds it. Returns
// false when it did not answer within `timeout_ms`. A thread that has not
// answered after 20 ms is woken from a futex wait (WakeIfInFutexWait),
// every 50 ms. The caller holds the sampling right.
bool RequestSample(pid_t tid, int timeout_ms) {
  const uint64_t seq = g_seq.fetch_add(1) + 1;
  g_slot.tid.store(tid);
  g_slot.state.store(seq << 2 | kRequested);
  if (syscall(SYS_tgkill, getpid(), tid, g_sample_signal) != 0) {
    g_slot.state.store(seq << 2 | kIdle);
    return false;
  }
  for (int waited = 0;; ++waited) {
    uint64_t s = g_slot.state.load();
    if (s == (seq << 2 | kDone)) return true;
    if (waited >= timeout_ms) {
      uint64_t expected = seq << 2 | kRequested;
      if (g_slot.state.compare_exchange_strong(expected, seq << 2 | kIdle)) {
        return false;
      }
      // The handler is writing: it finishes in a moment.
      while (g_slot.state.load() != (seq << 2 | kDone)) SleepMs(1);
      return true;
    }
    if (waited >= 20 && waited % 50 == 20) WakeIfInFutexWait(tid);
    SleepMs(1);
  }
}

// Writes "/proc/self/task/<tid>/<file>" into `path` (64 bytes; `file` at
// most 16 characters), without allocating: async-signal-safe.
void TaskFilePath(pid_t tid, const char* file, char path[64]) {
  static constexpr char kPrefix[] = "/proc/self/task/";
  size_t len = sizeof kPrefix - 1;
  memcpy(path, kPrefix, len);
  char digits[16];
  int nd = 0;
  for (pid_t t = tid; t > 0 && nd < 15; t /= 10) digits[nd++] = '0' + t % 10;
  while (nd > 0) path[len++] = digits[--nd];
  path[len++] = '/';
  const size_t flen = strlen(file);
  memcpy(path + len, file, flen + 1);
}

// True when thread `tid` blocks signal `sig` (the SigBlk mask of
// /proc/self/task/<tid>/status; raw system calls): such a thread would never
// run the handler, so it is not asked. The sanitizers' runtime threads are
// such (ThreadSanitizer's background thread blocks every signal).
bool BlocksSignal(pid_t tid, int sig) {
  char path[64];
  TaskFilePath(tid, "status", path);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[4096];
  size_t have = 0;
  for (;;) {
    const ssize_t n = read(fd, buf + have, sizeof buf - 1 - have);
    if (n <= 0) break;
    have += n;
  }
  close(fd);
  buf[have] = '\0';
  const char* line = strstr(buf, "\nSigBlk:");
  if (line == nullptr) return false;
  const char* p = line + strlen("\nSigBlk:");
  while (*p == ' ' || *p == '\t') ++p;
  uint64_t mask = 0;
  for (;; ++p) {
    int v;
    if (*p >= '0' && *p <= '9') {
      v = *p - '0';
    } else if (*p >= 'a' && *p <= 'f') {
      v = *p - 'a' + 10;
    } else {
      break;
    }
    mask = mask << 4 | v;
  }
  return sig >= 1 && sig <= 64 && (mask >> (sig - 1) & 1) != 0;
}

// Lists the thread ids of this process with raw system calls (usable from
// a signal handler). Returns how many were written.
int ListThreads(pid_t* out, int max) {
  int fd = open("/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return 0;
  int n = 0;
  alignas(8) char buf[4096];
  for (;;) {
    long got = syscall(SYS_getdents64, fd, buf, sizeof buf);
    if (got <= 0) break;
    for (long off = 0; off < got;) {
      struct Dirent64 {
        uint64_t ino;
        int64_t off;
        unsigned short reclen;
        unsigned char type;
        char name[1];
      };
      auto* d = reinterpret_cast<Dirent64*>(buf + off);
      off += d->reclen;
      if (d->name[0] < '0' || d->name[0] > '9') continue;
      pid_t tid = 0;
      for (const char* p = d->name; *p >= '0' && *p <= '9'; ++p) {
        tid = tid * 10 + (*p - '0');
      }
      if (n < max) out[n++] = tid;
    }
  }
  close(fd);
  return n;
}

// Reads the name of thread `tid` into `out` (raw system calls).
void ThreadName(pid_t tid, char* out, size_t cap) {
  char path[64];
  TaskFilePath(tid, "comm", path);
  out[0] = '\0';
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  ssize_t n = read(fd, out, cap - 1);
  close(fd);
  if (n <= 0) {
    out[0] = '\0';
    return;
  }
  if (out[n - 1] == '\n') --n;
  out[n] = '\0';
}

// Where one symbol table and its string table lie in a binary's file.
struct SymbolSection {
  uint64_t offset = 0;  // 0 with size 0: the binary has no such table
  uint64_t size = 0;
  uint64_t names_offset = 0;
  uint64_t names_size = 0;
};

// ELF facts about one binary, read once: whether it carries DWARF line
// information, whether it is position-independent, and where its symbol
// tables are (the first SHT_SYMTAB and SHT_DYNSYM, as absl::Symbolize
// picks them).
struct ElfInfo {
  bool debug_info = false;
  bool pie = true;
  SymbolSection symtab;
  SymbolSection dynsym;
};

ElfInfo ReadElfInfo(const std::string& path) {
  ElfInfo info;
  FILE* f = fopen(path.c_str(), "rb");
  if (f == nullptr) return info;
  Elf64_Ehdr eh;
  if (fread(&eh, sizeof eh, 1, f) == 1 &&
      memcmp(eh.e_ident, ELFMAG, SELFMAG) == 0 &&
      eh.e_ident[EI_CLASS] == ELFCLASS64 && eh.e_shentsize == sizeof(Elf64_Shdr)) {
    info.pie = eh.e_type == ET_DYN;
    std::string shdrs(eh.e_shnum * sizeof(Elf64_Shdr), '\0');
    if (fseek(f, eh.e_shoff, SEEK_SET) == 0 &&
        fread(shdrs.data(), shdrs.size(), 1, f) == 1 &&
        eh.e_shstrndx < eh.e_shnum) {
      const auto* sh = reinterpret_cast<const Elf64_Shdr*>(shdrs.data());
      const Elf64_Shdr& strtab = sh[eh.e_shstrndx];
      std::string names(strtab.sh_size, '\0');
      if (fseek(f, strtab.sh_offset, SEEK_SET) == 0 &&
          fread(names.data(), names.size(), 1, f) == 1) {
        for (int i = 0; i < eh.e_shnum; ++i) {
          if (sh[i].sh_name < names.size() &&
              strcmp(names.c_str() + sh[i].sh_name, ".debug_line") == 0) {
            info.debug_info = true;
          }
          SymbolSection* table = sh[i].sh_type == SHT_SYMTAB   ? &info.symtab
                                 : sh[i].sh_type == SHT_DYNSYM ? &info.dynsym
                                                               : nullptr;
          if (table != nullptr && table->size == 0 &&
              sh[i].sh_entsize == sizeof(Elf64_Sym) &&
              sh[i].sh_link < eh.e_shnum) {
            table->offset = sh[i].sh_offset;
            table->size = sh[i].sh_size;
            table->names_offset = sh[sh[i].sh_link].sh_offset;
            table->names_size = sh[sh[i].sh_link].sh_size;
          }
        }
      }
    }
  }
  fclose(f);
  return info;
}

const ElfInfo& CachedElfInfo(const std::string& path) {
  static std::mutex mu;
  static auto* cache = new std::map<std::string, ElfInfo>;
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache->find(path);
  if (it == cache->end()) it = cache->emplace(path, ReadElfInfo(path)).first;
  return it->second;
}

std::string Demangle(const char* name) {
  int status = 0;
  char* out = abi::__cxa_demangle(name, nullptr, nullptr, &status);
  if (status != 0 || out == nullptr) return name;
  std::string s(out);
  std::free(out);
  return s;
}

// The call before return address `pc` (the address to look up), computed
// as an integer: `pc` may be anything a caller passes, even 1, whose
// pointer arithmetic would be undefined.
const void* CallSite(const void* pc) {
  return reinterpret_cast<const void*>(reinterpret_cast<uintptr_t>(pc) - 1);
}

// One frame dladdr could not name, to look up in its object's symbol table.
struct SymbolLookup {
  uintptr_t pc;  // the call's address (the return address - 1)
  size_t index;  // the frame's index in SymbolizeEach
  bool found = false;
  Elf64_Sym best{};
};

// One symbol table of a binary and its names, mapped from the file.
struct MappedTable {
  const Elf64_Sym* syms = nullptr;  // null: not mapped (none, or unreadable)
  size_t count = 0;
  const char* names = nullptr;
  size_t names_size = 0;
};

// The symbol table `section` of the binary at `path`, mapped the first
// time it is asked for and kept: a process that has symbolized once is
// likely to again, and unmapping costs more than the mapping (on this
// project's VMs a munmap was half of a whole traceback's time). What stays
// resident is the pages read, clean and backed by the file; a process that
// never symbolizes maps nothing. Thread-safe.
const MappedTable& MapSymbolTable(const std::string& path,
                                  const SymbolSection& section) {
  static std::mutex mu;
  static auto* cache = new std::map<std::pair<std::string, uint64_t>,
                                    MappedTable>;
  std::lock_guard<std::mutex> lock(mu);
  auto [it, inserted] =
      cache->try_emplace({path, section.offset}, MappedTable{});
  MappedTable& table = it->second;
  if (!inserted || section.size == 0) return table;
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return table;
  struct stat st {};
  const uint64_t file_size =
      fstat(fd, &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
  auto fits = [file_size](uint64_t offset, uint64_t size) {
    return offset <= file_size && size <= file_size - offset;
  };
  if (fits(section.offset, section.size) &&
      fits(section.names_offset, section.names_size)) {
    // One mapping over both tables (they are usually adjacent).
    const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
    const uint64_t begin =
        std::min(section.offset, section.names_offset) / page * page;
    const uint64_t end = std::max(section.offset + section.size,
                                  section.names_offset + section.names_size);
    void* map = mmap(nullptr, end - begin, PROT_READ, MAP_PRIVATE, fd,
                     static_cast<off_t>(begin));
    if (map != MAP_FAILED) {
      const char* base = static_cast<const char*>(map);
      table.syms =
          reinterpret_cast<const Elf64_Sym*>(base + (section.offset - begin));
      table.count = section.size / sizeof(Elf64_Sym);
      table.names = base + (section.names_offset - begin);
      table.names_size = section.names_size;
    }
  }
  close(fd);
  return table;
}

// Names `lookups`, frames of the binary at `path` loaded at `bias` (its
// link map's l_addr), from its .symtab, else its .dynsym, with the rules
// of absl::Symbolize so that the names are the same: a symbol holds the
// address when it has a value and a section and is not thread-local; of
// several, one with a size wins over one without, else the later one.
// absl::Symbolize reads the whole table through lseek and read, 1 KiB at
// a time, for every frame it is asked about: a few hundred system calls
// per frame of a program of 11,000 symbols. Here the tables are mapped
// (MapSymbolTable) and read once for all the frames of the object.
// Returns false when neither table could be read.
bool LookUpSymbols(const std::string& path, const ElfInfo& elf, uintptr_t bias,
                   std::vector<SymbolLookup>& lookups,
                   std::vector<std::string>& names) {
  std::sort(lookups.begin(), lookups.end(),
            [](const SymbolLookup& a, const SymbolLookup& b) {
              return a.pc < b.pc;
            });
  bool read_any = false;
  for (const SymbolSection* section : {&elf.symtab, &elf.dynsym}) {
    // The lookups still unnamed, by address; a table answers only those
    // the table before it did not.
    std::vector<SymbolLookup*> open;
    for (SymbolLookup& l : lookups) {
      if (!l.found) open.push_back(&l);
    }
    if (open.empty()) break;
    const MappedTable& table = MapSymbolTable(path, *section);
    if (table.syms == nullptr) continue;
    read_any = true;
    const uintptr_t lowest = open.front()->pc;
    const uintptr_t highest = open.back()->pc;
    for (size_t i = 0; i < table.count; ++i) {
      const Elf64_Sym& sym = table.syms[i];
      const uintptr_t start = sym.st_value + bias;
      const uintptr_t stop = start + sym.st_size;
      if (start > highest || (stop <= lowest && start != lowest)) continue;
      if (sym.st_value == 0 || sym.st_shndx == SHN_UNDEF ||
          ELF64_ST_TYPE(sym.st_info) == STT_TLS) {
        continue;
      }
      auto it = std::lower_bound(
          open.begin(), open.end(), start,
          [](const SymbolLookup* l, uintptr_t a) { return l->pc < a; });
      for (; it != open.end() && ((*it)->pc < stop ||
                                  ((*it)->pc == start && start == stop));
           ++it) {
        SymbolLookup& l = **it;
        if (!l.found || !(sym.st_size == 0 && l.best.st_size != 0)) {
          l.found = true;
          l.best = sym;
        }
      }
    }
    for (SymbolLookup* l : open) {
      if (!l->found) continue;
      if (l->best.st_name >= table.names_size) {
        l->found = false;
        continue;
      }
      const char* name = table.names + l->best.st_name;
      const std::string mangled(
          name, strnlen(name, table.names_size - l->best.st_name));
      // Abseil's demangler, as absl::Symbolize demangles.
      char demangled[1024];
      names[l->index] =
          absl::debugging_internal::Demangle(mangled.c_str(), demangled,
                                             sizeof demangled)
              ? std::string(demangled)
              : mangled;
    }
  }
  return read_any;
}

// Runs addr2line on `object` for `offsets`; returns its output ("" on any
// failure).
std::string RunAddr2line(const std::string& object,
                         const std::vector<uintptr_t>& offsets) {
  std::vector<std::string> args = {"addr2line", "-a", "-f", "-C", "-i", "-e",
                                    object};
  for (uintptr_t o : offsets) {
    char hex[32];
    snprintf(hex, sizeof hex, "0x%lx", static_cast<unsigned long>(o));
    args.emplace_back(hex);
  }
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) return "";
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  pid_t pid = -1;
  const int rc = posix_spawnp(&pid, "addr2line", &actions, nullptr,
                              argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(out[1]);
  std::string text;
  if (rc == 0) {
    char buf[4096];
    ssize_t n;
    while ((n = read(out[0], buf, sizeof buf)) > 0 ||
           (n < 0 && errno == EINTR)) {
      if (n > 0) text.append(buf, n);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) text.clear();
  }
  close(out[0]);
  return text;
}

// Drops the directories of a build's sandbox or exec root from `file`, so
// "/home/u/.cache/bazel/.../execroot/tractor_cpp/tests/x.cc" reads
// "tests/x.cc".
std::string ShortenPath(const std::string& file) {
  for (const char* marker :
       {"/proc/self/cwd/", "/execroot/tractor_cpp/", "/tractor_cpp/"}) {
    size_t at = file.rfind(marker);
    if (at != std::string::npos) return file.substr(at + strlen(marker));
  }
  return file;
}

// The load address of the main program (its dl_iterate_phdr entry, the
// first, has an empty name).
const void* MainProgramBase() {
  static const void* base = [] {
    const void* found = nullptr;
    dl_iterate_phdr(
        [](struct dl_phdr_info* info, size_t, void* data) {
          *static_cast<const void**>(data) =
              reinterpret_cast<const void*>(info->dlpi_addr);
          return 1;  // the first entry is the main program
        },
        &found);
    return found;
  }();
  return base;
}

}  // namespace

std::string MainProgramPath() {
  char buf[4096];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return "/proc/self/exe";
  return std::string(buf, n);
}

bool BinaryHasDebugInfo(const std::string& path, bool* pie) {
  const ElfInfo& info = CachedElfInfo(path);
  *pie = info.pie;
  return info.debug_info;
}

void InstallSampleHandler() {
  static std::once_flag once;
  std::call_once(once, [] {
    g_sample_signal = SIGRTMIN + 5;
    struct sigaction sa {};
    sa.sa_sigaction = OnSample;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(g_sample_signal, &sa, nullptr);
  });
}

int SampleSignal() {
  InstallSampleHandler();
  return g_sample_signal;
}

void WarmUp() {
  static std::once_flag once;
  std::call_once(once, [] {
    // Loads libgcc_s's unwinder now, not in a handler. A size of 0 loads
    // it and unwinds nothing: unwinding this thread's frames would read
    // the program's own .eh_frame_hdr and .eh_frame, and the kernel keeps
    // 64 KiB around every page read resident (about 0.2 MiB of an idle
    // actor's RSS).
    void* frames[1];
    backtrace(frames, 0);
    absl::InitializeSymbolizer("/proc/self/exe");
    // One lookup sets Abseil's symbolizer up (its arena, the process's
    // mappings). It is asked about libgcc_s's unwinder, whose table is
    // 200 symbols: about a function of the program, it would read the
    // program's whole symbol table, 1 KiB per read (about 260 system calls
    // at every actor's boot for the bench program).
    void* target = dlsym(RTLD_DEFAULT, "_Unwind_Backtrace");
    if (target == nullptr) target = reinterpret_cast<void*>(&WarmUp);
    char name[64];
    absl::Symbolize(target, name, sizeof name);
    InstallSampleHandler();
  });
}

int CaptureStack(void** frames, int max_frames, int skip) {
#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
  // ASan and TSan intercept backtrace(): the interceptor is one more frame.
  ++skip;
#endif
#endif
  void* raw[kMaxFrames + 16];
  const int want = std::min<int>(kMaxFrames + 16, max_frames + skip + 1);
  const int n = backtrace(raw, want);
  int out = 0;
  for (int i = skip + 1; i < n && out < max_frames; ++i) frames[out++] = raw[i];
  return out;
}

std::vector<std::vector<Frame>> SymbolizeEach(
    const std::vector<std::vector<void*>>& stacks) {
  // The stacks' frames end to end: one lookup of each object for them all.
  std::vector<void*> pcs;
  for (const auto& stack : stacks) {
    pcs.insert(pcs.end(), stack.begin(), stack.end());
  }
  struct Pending {
    size_t index;
    uintptr_t offset;
  };
  std::vector<Frame> frames(pcs.size());
  std::map<std::string, std::vector<Pending>> by_object;
  // Frames dladdr could not name (functions a binary does not export), by
  // object: looked up in its symbol table below, all at once.
  struct Unnamed {
    const ElfInfo* elf;
    uintptr_t bias;
    std::vector<SymbolLookup> lookups;
  };
  std::map<std::string, Unnamed> unnamed;
  std::vector<size_t> no_object;  // frames for absl::Symbolize alone
  std::string main_program;       // MainProgramPath(), read once
  for (size_t i = 0; i < pcs.size(); ++i) {
    Frame& f = frames[i];
    f.pc = pcs[i];
    f.function = "??";
    // A return address points after the call: look the call itself up.
    const void* lookup = CallSite(pcs[i]);
    Dl_info info{};
    struct link_map* map = nullptr;
    if (dladdr1(lookup, &info, reinterpret_cast<void**>(&map),
                RTLD_DL_LINKMAP) != 0 &&
        info.dli_fname != nullptr) {
      f.object = info.dli_fname;
      if (info.dli_sname != nullptr) f.function = Demangle(info.dli_sname);
      std::string path = f.object;
      if (path.empty() || info.dli_fbase == MainProgramBase()) {
        if (main_program.empty()) main_program = MainProgramPath();
        path = main_program;
      }
      const ElfInfo& elf = CachedElfInfo(path);
      const uintptr_t pc = reinterpret_cast<uintptr_t>(lookup);
      if (elf.debug_info) {
        const uintptr_t base = reinterpret_cast<uintptr_t>(info.dli_fbase);
        by_object[path].push_back({i, elf.pie ? pc - base : pc});
      }
      if (info.dli_sname == nullptr) {
        Unnamed& u = unnamed[path];
        u.elf = &elf;
        u.bias = map != nullptr ? map->l_addr : 0;
        u.lookups.push_back({pc, i});
      }
    } else {
      no_object.push_back(i);
    }
  }
  std::vector<std::string> names(pcs.size());
  for (auto& entry : unnamed) {
    Unnamed& u = entry.second;
    if (!LookUpSymbols(entry.first, *u.elf, u.bias, u.lookups, names)) {
      // Not readable as its headers say (the vDSO has no file): asked of
      // absl::Symbolize, which reads the process's mappings.
      for (const SymbolLookup& l : u.lookups) no_object.push_back(l.index);
    }
  }
  for (size_t i = 0; i < pcs.size(); ++i) {
    if (!names[i].empty()) frames[i].function = std::move(names[i]);
  }
  // absl::Symbolize needs its initialisation (a no-op after the first).
  if (!no_object.empty()) WarmUp();
  for (size_t i : no_object) {
    char name[1024];
    const void* lookup = CallSite(pcs[i]);
    if (absl::Symbolize(lookup, name, sizeof name)) frames[i].function = name;
  }
  // Inlined calls add frames before the one they were inlined into.
  std::map<size_t, std::vector<Frame>> inlined;
  for (const auto& entry : by_object) {
    // Named references, not a structured binding: clang 14 cannot capture
    // a binding in the lambda below.
    const auto& object = entry.first;
    const auto& pending = entry.second;
    std::vector<uintptr_t> offsets;
    for (const Pending& p : pending) offsets.push_back(p.offset);
    const std::string text = RunAddr2line(object, offsets);
    if (text.empty()) continue;
    std::vector<std::string> lines = absl::StrSplit(text, '\n');
    int which = -1;
    std::vector<Frame> chain;
    auto flush = [&] {
      if (which < 0 || chain.empty()) return;
      const size_t idx = pending[which].index;
      Frame& outer = frames[idx];
      Frame last = chain.back();
      if (last.function != "??") outer.function = last.function;
      outer.file = last.file;
      outer.line = last.line;
      chain.pop_back();
      for (Frame& c : chain) c.pc = outer.pc, c.object = outer.object;
      if (!chain.empty()) inlined[idx] = std::move(chain);
      chain.clear();
    };
    for (size_t l = 0; l < lines.size(); ++l) {
      const std::string& line = lines[l];
      if (line.rfind("0x", 0) == 0) {
        flush();
        ++which;
        if (which >= static_cast<int>(pending.size())) break;
        continue;
      }
      if (which < 0 || l + 1 >= lines.size()) continue;
      Frame c;
      c.function = line;
      const std::string& where = lines[++l];
      const size_t colon = where.rfind(':');
      if (colon != std::string::npos && where.compare(0, 2, "??") != 0) {
        c.file = ShortenPath(where.substr(0, colon));
        c.line = atoi(where.c_str() + colon + 1);
      }
      chain.push_back(std::move(c));
    }
    flush();
  }
  std::vector<std::vector<Frame>> out(stacks.size());
  size_t i = 0;
  for (size_t k = 0; k < stacks.size(); ++k) {
    for (const size_t end = i + stacks[k].size(); i < end; ++i) {
      if (auto it = inlined.find(i); it != inlined.end()) {
        for (Frame& c : it->second) out[k].push_back(std::move(c));
      }
      out[k].push_back(std::move(frames[i]));
    }
  }
  return out;
}

std::vector<Frame> Symbolize(const std::vector<void*>& pcs) {
  return std::move(SymbolizeEach({pcs})[0]);
}

std::string FormatFrames(const std::vector<Frame>& frames,
                         const std::string& indent) {
  std::string text;
  for (size_t i = 0; i < frames.size(); ++i) {
    const Frame& f = frames[i];
    absl::StrAppend(&text, indent, "#", i, " ", f.function);
    if (!f.file.empty()) {
      absl::StrAppend(&text, " at ", f.file, ":", f.line);
    } else if (!f.object.empty()) {
      absl::StrAppend(&text, " in ", f.object);
    }
    absl::StrAppend(&text, "\n");
  }
  return text;
}

std::string FormatStack(const std::vector<void*>& frames,
                        const std::string& indent) {
  return FormatFrames(Symbolize(frames), indent);
}

TaskLabel::TaskLabel(std::initializer_list<absl::string_view> pieces) {
  memcpy(previous_, t_label, sizeof previous_);
  char text[sizeof t_label];
  size_t n = 0;
  for (absl::string_view piece : pieces) {
    const size_t k = std::min(piece.size(), sizeof text - 1 - n);
    memcpy(text + n, piece.data(), k);
    n += k;
  }
  // The handler may read the label at any moment: end it first.
  t_label[0] = '\0';
  if (n == 0) return;
  memcpy(t_label + 1, text + 1, n - 1);
  t_label[n] = '\0';
  t_label[0] = text[0];
  PublishLabel();
}

TaskLabel::~TaskLabel() {
  t_label[0] = '\0';
  memcpy(t_label + 1, previous_ + 1, sizeof t_label - 1);
  t_label[0] = previous_[0];
  PublishLabel();
}

std::vector<ThreadStack> SampleThreads() {
  WarmUp();
  std::lock_guard<std::mutex> lock(g_sample_mu);
  bool expected = false;
  while (!g_sampling.compare_exchange_weak(expected, true)) {
    expected = false;
    SleepMs(1);
  }
  std::vector<ThreadStack> out;
  pid_t tids[1024];
  const int n = ListThreads(tids, 1024);
  const pid_t self = Gettid();
  for (int i = 0; i < n; ++i) {
    ThreadStack t;
    t.tid = tids[i];
    char name[32];
    ThreadName(t.tid, name, sizeof name);
    t.name = name;
    if (t.tid == self) {
      void* frames[kMaxFrames];
      const int depth = CaptureStack(frames, kMaxFrames, 0);
      t.frames.assign(frames, frames + depth);
      t.label = t_label;
      t.answered = true;
    } else {
      t.blocks_signal = BlocksSignal(t.tid, g_sample_signal);
      if (!t.blocks_signal && RequestSample(t.tid, kSampleTimeoutMs)) {
        t.frames.assign(g_slot.frames, g_slot.frames + g_slot.depth);
        t.label = g_slot.label;
        t.answered = true;
      } else {
        // Not sampled: named with the task it published.
        char label[sizeof t_label];
        ReadPublishedLabel(t.tid, label);
        t.label = label;
      }
    }
    out.push_back(std::move(t));
  }
  g_sampling.store(false);
  return out;
}

std::string DumpThreads() {
  std::string text;
  const std::vector<ThreadStack> threads = SampleThreads();
  std::vector<std::vector<void*>> stacks;
  for (const ThreadStack& t : threads) stacks.push_back(t.frames);
  // All threads at once: one addr2line run per object, not one per thread
  // and object (a library with line tables, like the instrumented gRPC of
  // the TSan build, takes seconds to load).
  std::vector<std::vector<Frame>> symbolized = SymbolizeEach(stacks);
  for (size_t k = 0; k < threads.size(); ++k) {
    const ThreadStack& t = threads[k];
    absl::StrAppend(&text, "Thread ", t.tid, " '", t.name, "'");
    if (!t.label.empty()) absl::StrAppend(&text, " (", t.label, ")");
    if (t.blocks_signal) {
      absl::StrAppend(&text, ": not sampled (it blocks the sampling signal)\n");
      continue;
    }
    if (!t.answered) {
      absl::StrAppend(&text, ": not sampled (it did not answer within ",
                      kSampleTimeoutMs, " ms)\n");
      continue;
    }
    absl::StrAppend(&text, ":\n", FormatFrames(symbolized[k], "    "));
  }
  return text;
}

namespace signal_safe {

void Out::Put(const char* s, size_t n) {
  const size_t room = cap_ - len_;
  if (n > room) n = room;
  memcpy(buf_ + len_, s, n);
  len_ += n;
}

void Out::Put(const char* s) { Put(s, strlen(s)); }

void Out::PutNumber(unsigned long long v, bool hex) {
  char digits[32];
  int n = 0;
  const unsigned base = hex ? 16 : 10;
  do {
    digits[n++] = "0123456789abcdef"[v % base];
    v /= base;
  } while (v > 0);
  if (hex) Put("0x", 2);
  while (n > 0) Put(&digits[--n], 1);
}

void WriteAll(int fd, const char* s, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, s, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    s += w;
    n -= w;
  }
}

void PutFrames(Out& out, void* const* frames, int n) {
  for (int i = 0; i < n; ++i) {
    out.Put("    #");
    out.PutNumber(i);
    out.Put(" ");
    char name[512];
    const void* lookup = CallSite(frames[i]);
    if (absl::Symbolize(lookup, name, sizeof name)) {
      out.Put(name);
    } else {
      out.Put("??");
    }
    out.Put(" (");
    out.PutNumber(reinterpret_cast<uintptr_t>(frames[i]), true);
    out.Put(")\n");
  }
}

void PutSignalName(Out& out, int sig) {
  const char* abbrev = sigabbrev_np(sig);
  if (abbrev != nullptr) {
    out.Put("SIG");
    out.Put(abbrev);
  } else {
    out.Put("signal ");
    out.PutNumber(sig);
  }
}

void PutSelfLabel(Out& out) {
  char name[32];
  ThreadName(Gettid(), name, sizeof name);
  out.Put("thread ");
  out.PutNumber(Gettid());
  out.Put(" '");
  out.Put(name);
  out.Put("'");
  if (t_label[0] != '\0') {
    out.Put(" (");
    out.Put(t_label, strnlen(t_label, sizeof t_label));
    out.Put(")");
  }
}

void PutOtherThreads(Out& out, int per_thread_ms) {
  // Another thread may be sampling (a stack dump in progress): wait for it,
  // within a bound, rather than mix requests.
  bool expected = false;
  for (int i = 0; !g_sampling.compare_exchange_weak(expected, true); ++i) {
    expected = false;
    if (i >= 500) {
      out.Put("(other threads not sampled: a stack dump is in progress)\n");
      return;
    }
    SleepMs(1);
  }
  pid_t tids[1024];
  const int n = ListThreads(tids, 1024);
  const pid_t self = Gettid();
  for (int i = 0; i < n; ++i) {
    if (tids[i] == self) continue;
    char name[32];
    ThreadName(tids[i], name, sizeof name);
    out.Put("Thread ");
    out.PutNumber(tids[i]);
    out.Put(" '");
    out.Put(name);
    out.Put("'");
    const bool blocks = BlocksSignal(tids[i], g_sample_signal);
    if (blocks || !RequestSample(tids[i], per_thread_ms)) {
      char label[sizeof t_label];
      ReadPublishedLabel(tids[i], label);
      if (label[0] != '\0') {
        out.Put(" (");
        out.Put(label);
        out.Put(")");
      }
      out.Put(blocks ? ": not sampled (it blocks the sampling signal)\n"
                     : ": not sampled (it did not answer)\n");
      continue;
    }
    if (g_slot.label[0] != '\0') {
      out.Put(" (");
      out.Put(g_slot.label);
      out.Put(")");
    }
    out.Put(":\n");
    PutFrames(out, g_slot.frames, g_slot.depth);
  }
  g_sampling.store(false);
}

}  // namespace signal_safe

}  // namespace tractor::devx
