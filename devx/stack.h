// SPDX-License-Identifier: AGPL-3.0-or-later
// Stack capture and symbolization, and the stacks of every thread of the
// process (docs/debugging.md).
//
// Two kinds of functions live here. Those marked "async-signal-safe" may run
// in a signal handler (the crash handler uses them): they take no lock,
// allocate nothing and call only async-signal-safe system calls, once
// `WarmUp()` has run. The others (`Symbolize`, `FormatStack`, `DumpThreads`)
// allocate and may start `addr2line`; they run on ordinary threads.
#ifndef TRACTOR_DEVX_STACK_H_
#define TRACTOR_DEVX_STACK_H_

#include <sys/types.h>

#include <initializer_list>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace tractor::devx {

// Most frames kept of one stack.
inline constexpr int kMaxFrames = 64;

// Loads what stack capture and the signal-safe symbolizer need (libgcc's
// unwinder, Abseil's symbolizer) so that later calls from a signal handler
// do not. Idempotent and thread-safe; every entry point that installs a
// handler calls it.
void WarmUp();

// Captures the calling thread's return addresses, innermost first, after
// skipping `skip` frames of its own callers. Returns how many were written.
// Async-signal-safe after WarmUp().
int CaptureStack(void** frames, int max_frames, int skip);

// One symbolized frame.
struct Frame {
  const void* pc = nullptr;
  std::string function;  // demangled; "??" when unknown
  std::string object;    // the binary or shared library holding `pc`
  std::string file;      // source file, when the binary has debug info
  int line = 0;          // 0 when unknown
};

// Symbolizes `frames` (return addresses, as CaptureStack gives them):
// function names through dladdr and the demangler, or, for a function its
// binary does not export, from the binary's symbol table (.symtab, else
// .dynsym, mapped on first use and kept, read in one pass per call for all
// the frames in it; the names absl::Symbolize would give), file:line through
// `addr2line` for binaries that carry debug information (one addr2line run
// per binary; a binary without debug info, or no addr2line, gives names
// only). Thread-safe; not for signal handlers.
std::vector<Frame> Symbolize(const std::vector<void*>& frames);

// Symbolizes several stacks as Symbolize does each, with one addr2line run
// per binary for them all.
std::vector<std::vector<Frame>> SymbolizeEach(
    const std::vector<std::vector<void*>>& stacks);

// The path of this process's program (what /proc/self/exe links to, which
// another process cannot open as "/proc/self/exe").
std::string MainProgramPath();

// True when the ELF binary at `path` carries DWARF line information;
// `*pie` tells whether it is position-independent (its addresses are
// offsets from its load address). Cached per path; thread-safe.
bool BinaryHasDebugInfo(const std::string& path, bool* pie);

// Formats frames one per line, "    #3 Level3(int) at tests/x.cc:25", with
// `indent` before each line.
std::string FormatFrames(const std::vector<Frame>& frames,
                         const std::string& indent = "    ");

// Symbolizes and formats `frames` (Symbolize + FormatFrames).
std::string FormatStack(const std::vector<void*>& frames,
                        const std::string& indent = "    ");

// The task label of the calling thread, shown in stack dumps: which remote
// task it runs ("task 'ns:f' cid ... for 'caller' ..."). Set for the
// lifetime of a `TaskLabel` object; the previous label comes back when it
// is destroyed. Bound to the creating thread. The label is also published
// (a slot per labelled thread, up to 1024 at once) where the stack sampler
// reads it without the thread's help. Text beyond 255 bytes is cut.
class TaskLabel {
 public:
  explicit TaskLabel(absl::string_view text) : TaskLabel({text}) {}
  // The label is the pieces one after the other (no string is built).
  TaskLabel(std::initializer_list<absl::string_view> pieces);
  ~TaskLabel();
  TaskLabel(const TaskLabel&) = delete;
  TaskLabel& operator=(const TaskLabel&) = delete;

 private:
  char previous_[256];
};

// How long `SampleThreads` waits for one thread to answer.
inline constexpr int kSampleTimeoutMs = 200;

// The stack of one thread, captured by `SampleThreads`.
struct ThreadStack {
  pid_t tid = 0;
  std::string name;   // the thread's name (/proc/self/task/<tid>/comm)
  // Its TaskLabel, or empty; known whether or not the thread answered (a
  // thread publishes its label where the sampler reads it).
  std::string label;
  bool answered = false;  // false: the thread did not answer in time
  // The thread blocks the sampling signal, so it was not asked (and
  // `answered` is false): a sanitizer's runtime thread, for one.
  bool blocks_signal = false;
  std::vector<void*> frames;
};

// Captures the stack of every thread of this process (the caller's own
// included), each thread capturing its own in a signal handler
// (`SampleSignal()`). A thread that does not answer within
// `kSampleTimeoutMs` is listed with `answered == false` and no frames, still
// named with its task; one asleep in a futex wait that has not answered
// after 20 ms is woken (a spurious wake-up, which every futex user
// tolerates), because under ThreadSanitizer the handler of a signal that
// reaches a thread in a wait TSan does not intercept runs only when the
// thread wakes. A thread that blocks the signal is not asked, and is listed
// with `blocks_signal` too. Thread-safe: concurrent calls are serialized.
std::vector<ThreadStack> SampleThreads();

// Formats every thread's stack, symbolized, labelled with its task:
//   Thread 12345 'tr-task' (task 'ns:f' cid 7 for 'root' 1a2b3c4d):
//       #0 ...
// A thread not sampled is listed on one line, with its task:
//   Thread 12346 'tr-task' (task 'ns:g' ...): not sampled (it did not
//   answer within 200 ms)
std::string DumpThreads();

// The realtime signal the runtime uses to ask a thread for its stack.
int SampleSignal();

// Installs the handler of SampleSignal() (idempotent). Called by WarmUp().
void InstallSampleHandler();

// Async-signal-safe output, for the crash handler.
namespace signal_safe {

// Text gathered into a caller-owned fixed buffer (nothing is allocated);
// what does not fit is dropped. Thread-compatible.
class Out {
 public:
  Out(char* buf, size_t cap) : buf_(buf), cap_(cap) {}
  void Put(const char* s, size_t n);
  void Put(const char* s);
  // `v` in decimal or (with `hex`) as 0x-prefixed hex.
  void PutNumber(unsigned long long v, bool hex = false);
  const char* data() const { return buf_; }
  size_t size() const { return len_; }

 private:
  char* buf_;
  size_t cap_;
  size_t len_ = 0;
};

// Writes `n` bytes to `fd`, retrying on EINTR and partial writes; gives up
// on any other error (a full non-blocking pipe).
void WriteAll(int fd, const char* s, size_t n);

// Puts the frames of one stack, one per line, symbolized with Abseil's
// signal-safe symbolizer (names, no file:line).
void PutFrames(Out& out, void* const* frames, int n);

// Puts the name of signal `sig` ("SIGSEGV"), or its number.
void PutSignalName(Out& out, int sig);

// Captures every thread's stack but the caller's (as SampleThreads, with
// raw system calls) and puts each with its name and task label; each thread
// is given up to `per_thread_ms` to answer.
void PutOtherThreads(Out& out, int per_thread_ms);

// Puts the calling thread's task label and name.
void PutSelfLabel(Out& out);

}  // namespace signal_safe

}  // namespace tractor::devx

#endif  // TRACTOR_DEVX_STACK_H_
