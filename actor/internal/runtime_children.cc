// SPDX-License-Identifier: AGPL-3.0-or-later
// The runtime's children: the link server they open `Link` on, and the
// table of expected and linked children.
#include "actor/internal/runtime.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "actor/errors.h"
#include "actor/internal/actor_service.h"
#include "actor/internal/async_services.h"
#include "discovery/address.h"
#include "discovery/credentials.h"
#include "discovery/listen.h"
#include "glog/logging.h"
#include "grpcpp/ext/health_check_service_server_builder_option.h"

namespace tractor::internal {

void Runtime::StartLinkServer() {
  grpc::ServerBuilder builder;
  discovery::ApplyServerArgs(builder);
  // In debug mode a child stopped in the debugger answers no ping; its
  // heartbeats on the link tell the parent it is alive instead.
  if (!config_.debug_mode) {
    discovery::ApplyServerKeepalive(builder, config_.hang_timeout);
  }
  std::vector<discovery::Address> addrs = {
      *discovery::Address::Parse("127.0.0.1:0")};
  auto ports = discovery::BindAll(builder, std::move(addrs));
  if (!ports.ok()) {
    throw RuntimeFailure(absl::StrCat("actor '", config_.self.name(),
                                      "' link server: ",
                                      ports.status().message()));
  }
  // Async methods only, served by one thread (no callback API, and no
  // health service: the main server has it).
  link_service_ = std::make_unique<LinkService>();
  builder.RegisterService(link_service_.get());
  link_unknown_methods_ = std::make_unique<UnknownMethodService>();
  builder.RegisterAsyncGenericService(link_unknown_methods_.get());
  builder.SetOption(
      std::make_unique<grpc::HealthCheckServiceServerBuilderOption>(nullptr));
  link_queue_ = std::make_unique<ServiceThread>(builder.AddCompletionQueue());
  link_server_ = builder.BuildAndStart();
  if (!link_server_) {
    throw RuntimeFailure(absl::StrCat("actor '", config_.self.name(),
                                      "' could not start its link server"));
  }
  link_queue_->Start("links");
  ServeLinksOf(this, link_queue_.get(), link_service_.get());
  ServeUnknownMethods(config_.self.name(), link_unknown_methods_.get(),
                      link_queue_.get());
  auto resolved = ports->Resolve(link_server_.get());
  if (!resolved.ok() || resolved->empty()) {
    throw RuntimeFailure(absl::StrCat("actor '", config_.self.name(),
                                      "' link server: ",
                                      resolved.status().message()));
  }
  link_addr_ = resolved->front().ToString();
}

std::string Runtime::link_addr() {
  MutexLock lock(&link_mu_);
  if (link_closed_) {
    throw RuntimeFailure(absl::StrCat("actor '", config_.self.name(),
                                      "' is shutting down: no new children"));
  }
  if (!link_server_) StartLinkServer();
  return link_addr_;
}

std::shared_ptr<ChildProc> Runtime::ExpectChild(const std::string& uuid,
                                                std::string link_secret) {
  auto proc = std::make_shared<ChildProc>();
  proc->link_secret = std::move(link_secret);
  MutexLock lock(&mu_);
  children_[uuid] = proc;
  return proc;
}

std::shared_ptr<ChildProc> Runtime::OnChildLinked(const v1::LinkHello& hello,
                                                  grpc::Status* refused) {
  std::shared_ptr<ChildProc> proc;
  {
    MutexLock lock(&mu_);
    auto it = children_.find(hello.aid().uuid());
    if (it == children_.end()) {
      *refused = grpc::Status(
          grpc::StatusCode::FAILED_PRECONDITION,
          absl::StrCat("this actor did not spawn ", hello.aid().uuid()));
      return nullptr;
    }
    if (!discovery::SecretsEqual(hello.link_secret(),
                                 it->second->link_secret)) {
      *refused = grpc::Status(
          grpc::StatusCode::PERMISSION_DENIED,
          absl::StrCat("Link refused: the child ", hello.aid().uuid(),
                       " did not present the per-spawn secret its parent "
                       "gave it"));
      LOG(WARNING) << "actor '" << config_.self.name() << "': "
                   << refused->error_message();
      return nullptr;
    }
    proc = it->second;
    child_aids_[hello.aid().uuid()] = hello.aid();
  }
  std::string portal_addr;
  {
    MutexLock lk(&proc->mu);
    proc->linked = true;
    proc->accept_addrs.assign(hello.accept_addrs().begin(),
                              hello.accept_addrs().end());
    if (hello.host_id() == discovery::HostId()) {
      proc->local_addr = hello.local_addr();
    }
    if (!proc->local_addr.empty()) {
      proc->portal_addr = proc->local_addr;
    } else {
      std::vector<discovery::Address> addrs;
      for (const auto& a : proc->accept_addrs) {
        if (auto p = discovery::Address::Parse(a); p.ok()) addrs.push_back(*p);
      }
      auto pick = discovery::PreferAddress(addrs);
      proc->portal_addr = pick                        ? pick->ToString()
                          : proc->accept_addrs.empty() ? std::string()
                                                       : proc->accept_addrs[0];
    }
    portal_addr = proc->portal_addr;
  }
  // The connection the parent's portal will use is opened now, while
  // `StartActor` wakes up and the link's answer travels, so that the first
  // call does not wait for its TCP and HTTP/2 handshakes.
  if (!portal_addr.empty()) {
    ChannelTo(portal_addr)->GetState(/*try_to_connect=*/true);
  }
  proc->cv.SignalAll();
  return proc;
}

void Runtime::ForgetChild(const std::string& uuid) {
  MutexLock lock(&mu_);
  children_.erase(uuid);
  child_aids_.erase(uuid);
}

std::vector<std::pair<v1::Aid, std::string>> Runtime::ChildLinks() const {
  std::vector<std::pair<v1::Aid, std::shared_ptr<ChildProc>>> linked;
  {
    MutexLock lock(&mu_);
    for (const auto& [uuid, aid] : child_aids_) {
      auto it = children_.find(uuid);
      if (it != children_.end()) linked.emplace_back(aid, it->second);
    }
  }
  std::vector<std::pair<v1::Aid, std::string>> out;
  for (const auto& [aid, proc] : linked) {
    MutexLock lk(&proc->mu);
    if (!proc->local_addr.empty()) {
      out.emplace_back(aid, proc->local_addr);
    } else if (!proc->accept_addrs.empty()) {
      out.emplace_back(aid, proc->accept_addrs.front());
    }
  }
  return out;
}

std::vector<v1::Aid> Runtime::Children() const {
  MutexLock lock(&mu_);
  std::vector<v1::Aid> out;
  for (const auto& [uuid, aid] : child_aids_) out.push_back(aid);
  return out;
}

std::vector<v1::ChildAddrs> Runtime::ChildAddrs() const {
  std::vector<std::pair<v1::Aid, std::shared_ptr<ChildProc>>> linked;
  {
    MutexLock lock(&mu_);
    for (const auto& [uuid, aid] : child_aids_) {
      auto it = children_.find(uuid);
      linked.emplace_back(aid, it == children_.end() ? nullptr : it->second);
    }
  }
  std::vector<v1::ChildAddrs> out;
  for (const auto& [aid, proc] : linked) {
    v1::ChildAddrs& c = out.emplace_back();
    *c.mutable_aid() = aid;
    if (proc == nullptr) continue;
    MutexLock lk(&proc->mu);
    for (const auto& a : proc->accept_addrs) c.add_accept_addrs(a);
  }
  return out;
}

}  // namespace tractor::internal
