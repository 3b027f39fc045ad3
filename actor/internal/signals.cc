// SPDX-License-Identifier: AGPL-3.0-or-later
#include "actor/internal/signals.h"

#include <pthread.h>
#include <semaphore.h>

#include <cerrno>
#include <utility>

#include "discovery/log_level.h"
#include "glog/logging.h"
#include "discovery/thread_name.h"

namespace tractor::internal {
namespace {

sem_t g_sigint_sem;
std::atomic<bool> g_sigint_ready{false};

void OnSigint(int) { sem_post(&g_sigint_sem); }

}  // namespace

void BlockSignals(std::initializer_list<int> sigs) {
  sigset_t set;
  sigemptyset(&set);
  for (int s : sigs) sigaddset(&set, s);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

SigintWatch::SigintWatch(std::shared_ptr<ScopeState> scope,
                         std::function<bool()> ignore_now)
    : scope_(std::move(scope)), ignore_now_(std::move(ignore_now)) {
  if (!g_sigint_ready.exchange(true)) sem_init(&g_sigint_sem, 0, 0);
  struct sigaction sa {};
  sa.sa_handler = OnSigint;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &previous_);
  thread_ = std::thread([this] {
    discovery::NameThisThread("sigint");
    while (true) {
      while (sem_wait(&g_sigint_sem) != 0 && errno == EINTR) {
      }
      if (stop_.load()) return;
      if (!ignore_now_ || !ignore_now_()) break;
      TRACTOR_LOG(cancel) << "SIGINT ignored: a debugger holds the terminal";
    }
    LOG(WARNING) << "SIGINT: cancelling the actor tree";
    TRACTOR_LOG(cancel) << "SIGINT cancels the root actor's block";
    fired_.store(true);
    scope_->Cancel();
  });
}

SigintWatch::~SigintWatch() {
  stop_.store(true);
  sem_post(&g_sigint_sem);
  thread_.join();
  sigaction(SIGINT, &previous_, nullptr);
}

SigtermWatch::SigtermWatch(std::function<void()> on_term)
    : thread_([stop = stop_, on_term = std::move(on_term)] {
        discovery::NameThisThread("sigterm");
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        int sig = 0;
        while (sigwait(&set, &sig) != 0) {
        }
        if (!stop->load()) on_term();
      }) {}

SigtermWatch::~SigtermWatch() { Stop(); }

void SigtermWatch::Stop() {
  if (!thread_.joinable()) return;
  stop_->store(true);
  // A SIGTERM aimed at the watcher's thread (blocked everywhere, so it stays
  // pending there) ends its sigwait.
  pthread_kill(thread_.native_handle(), SIGTERM);
  thread_.join();
}

void SigtermWatch::LeaveForExit() {
  if (!thread_.joinable()) return;
  stop_->store(true);
  thread_.detach();
}

}  // namespace tractor::internal
