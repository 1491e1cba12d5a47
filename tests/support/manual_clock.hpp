#pragma once
// A clock the test moves by hand. Code waiting through Clock::wait_until wakes when the test
// advances the clock past its deadline, so dispatcher and group-commit tests never sleep.
#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <vector>

#include "websmtp/common/clock.hpp"

namespace websmtp::testing {

class ManualClock final : public Clock {
 public:
  explicit ManualClock(std::int64_t start_ms = 1'700'000'000'000) : now_(start_ms) {}

  std::int64_t now_ms() const override {
    std::lock_guard lock(mu_);
    return now_;
  }
  void advance_ms(std::int64_t d) { set_ms(now_ms() + d); }
  void set_ms(std::int64_t t) {
    std::vector<Waiter> waiters;
    {
      std::lock_guard lock(mu_);
      now_ = t;
      waiters = waiters_;
    }
    // Taking each waiter's own mutex before notifying closes the gap between its deadline
    // check and its wait: it is either waiting already or will see the new time.
    for (const auto& w : waiters) {
      { std::lock_guard wl(*w.mu); }
      w.cv->notify_all();
    }
  }

  void wait_until(std::condition_variable& cv, std::unique_lock<std::mutex>& lock,
                  std::int64_t deadline_ms) const override {
    {
      std::lock_guard l(mu_);
      if (now_ >= deadline_ms) return;
      waiters_.push_back({&cv, lock.mutex()});
    }
    cv.wait(lock);
    std::lock_guard l(mu_);
    auto it = std::find_if(waiters_.begin(), waiters_.end(), [&](const Waiter& w) { return w.cv == &cv; });
    if (it != waiters_.end()) waiters_.erase(it);
  }

 private:
  struct Waiter {
    std::condition_variable* cv;
    std::mutex* mu;
  };
  mutable std::mutex mu_;
  mutable std::vector<Waiter> waiters_;
  std::int64_t now_;
};

}  // namespace websmtp::testing
