#include "websmtp/smtp/session_pool.hpp"

#include <algorithm>
#include <vector>

#include "websmtp/common/thread.hpp"
#include "websmtp/smtp/session_reuse.hpp"

namespace websmtp::smtp {

SessionPool::SessionPool(SessionOptions options, PoolLimits limits)
    : options_(std::move(options)), limits_(limits), expiry_([this] {
        name_this_thread("ws-mx-idle");
        expire_idle();
      }) {}

SessionPool::~SessionPool() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  idle_added_.notify_all();
  expiry_.join();
  for (auto& [key, idle] : idle_) idle.session->quit();
}

std::vector<std::unique_ptr<Session>> SessionPool::take_expired(std::chrono::steady_clock::time_point cutoff) {
  std::vector<std::unique_ptr<Session>> expired;
  for (auto it = idle_.begin(); it != idle_.end();) {
    if (it->second.since > cutoff) {
      ++it;
      continue;
    }
    expired.push_back(std::move(it->second.session));
    if (--per_host_[it->first.host] <= 0) per_host_.erase(it->first.host);
    it = idle_.erase(it);
  }
  return expired;
}

// Sleeps until the earliest idle session's time is up (or until one is kept when none is),
// then ends those whose time is up. Every idle session has the same bound, so a session
// kept later never expires earlier: release() wakes this thread only when the pool had none.
void SessionPool::expire_idle() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    if (idle_.empty()) {
      idle_added_.wait(lock);
      continue;
    }
    auto earliest = std::min_element(idle_.begin(), idle_.end(), [](const auto& a, const auto& b) {
                      return a.second.since < b.second.since;
                    })->second.since;
    if (idle_added_.wait_until(lock, earliest + limits_.idle_timeout) == std::cv_status::no_timeout) continue;
    auto expired = take_expired(std::chrono::steady_clock::now() - limits_.idle_timeout);
    if (expired.empty()) continue;
    lock.unlock();
    freed_.notify_all();
    for (auto& s : expired) s->quit();  // outside the lock: QUIT waits for the peer
    lock.lock();
  }
}

std::unique_ptr<Session> SessionPool::acquire(const SessionKey& key, std::chrono::milliseconds wait) {
  std::vector<std::unique_ptr<Session>> expired;  // ended outside the lock (QUIT waits for the peer)
  std::unique_ptr<Session> out;
  {
    std::unique_lock lock(mu_);
    auto now = std::chrono::steady_clock::now();
    auto deadline = now + wait;
    for (;;) {
      // Sessions idle too long are ended (the peer would close them soon anyway), whatever
      // their host, should the expiry thread not have come to them yet.
      for (auto& s : take_expired(now - limits_.idle_timeout)) expired.push_back(std::move(s));
      if (auto it = idle_.find(key); it != idle_.end()) {
        out = std::move(it->second.session);
        idle_.erase(it);
      }
      if (out) break;
      if (per_host_[key.host] < limits_.max_per_host) {
        ++per_host_[key.host];
        out = std::make_unique<Session>(options_);
        break;
      }
      if (freed_.wait_until(lock, deadline) == std::cv_status::timeout) break;
      now = std::chrono::steady_clock::now();
    }
    if (out) ++in_use_;
    for (std::size_t i = 0; i < expired.size(); ++i) freed_.notify_one();
  }
  for (auto& s : expired) s->quit();
  return out;
}

void SessionPool::release(const SessionKey& key, std::unique_ptr<Session> session) {
  if (!session) return;
  bool keep = before_use(session->state()) != BeforeUse::kOpen;
  {
    std::lock_guard lock(mu_);
    --in_use_;
    if (keep && static_cast<int>(idle_.size()) < limits_.max_idle) {
      if (idle_.empty()) idle_added_.notify_one();  // the expiry thread sleeps until one is kept
      idle_.emplace(key, Idle{std::move(session), std::chrono::steady_clock::now()});
    } else {
      --per_host_[key.host];
      if (per_host_[key.host] <= 0) per_host_.erase(key.host);
    }
  }
  freed_.notify_all();
  if (session) session->quit();
}

int SessionPool::idle() const {
  std::lock_guard lock(mu_);
  return static_cast<int>(idle_.size());
}

int SessionPool::in_use() const {
  std::lock_guard lock(mu_);
  return in_use_;
}

}  // namespace websmtp::smtp
