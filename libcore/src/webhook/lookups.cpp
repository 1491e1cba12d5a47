#include "websmtp/webhook/lookups.hpp"

#include <algorithm>

#include "websmtp/common/thread.hpp"

namespace websmtp::webhook {

namespace {
thread_local bool t_lookup_thread = false;
}

bool Lookups::on_this_thread() { return t_lookup_thread; }

Lookups::Lookups(int threads, std::size_t max_pending) : max_pending_(max_pending) {
  for (int i = 0; i < std::max(1, threads); ++i)
    threads_.emplace_back([this] {
      name_this_thread("ws-lookup");
      t_lookup_thread = true;
      run();
    });
}

Lookups::~Lookups() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
}

bool Lookups::post(std::function<void()> task) {
  {
    std::lock_guard lock(mu_);
    if (tasks_.size() >= max_pending_) return false;
    tasks_.push_back(std::move(task));
  }
  cv_.notify_one();
  return true;
}

void Lookups::run() {
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return stopping_ || !tasks_.empty(); });
    if (tasks_.empty()) return;  // stopping, and nothing left to run
    auto task = std::move(tasks_.front());
    tasks_.pop_front();
    lock.unlock();
    task();
    lock.lock();
  }
}

}  // namespace websmtp::webhook
