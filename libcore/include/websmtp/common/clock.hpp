#pragma once
// The time source of everything that schedules (retry policy, dispatcher, group commit,
// status expiry). Injected, so tests drive time themselves and never sleep: waits go through
// the clock too, and a test clock wakes its waiters when it is advanced.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>

namespace websmtp {

class Clock {
 public:
  virtual ~Clock() = default;
  // Unix milliseconds.
  virtual std::int64_t now_ms() const = 0;
  std::int64_t now_s() const { return now_ms() / 1000; }

  // Blocks on `cv` (with `lock` held on entry and exit) until it is notified or this clock
  // reaches `deadline_ms`. Spurious returns are allowed: callers re-check their condition.
  virtual void wait_until(std::condition_variable& cv, std::unique_lock<std::mutex>& lock,
                          std::int64_t deadline_ms) const = 0;
};

class SystemClock final : public Clock {
 public:
  std::int64_t now_ms() const override {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
  void wait_until(std::condition_variable& cv, std::unique_lock<std::mutex>& lock,
                  std::int64_t deadline_ms) const override {
    std::int64_t left = deadline_ms - now_ms();
    if (left <= 0) return;
    // Measured against the steady clock: a wall-clock step must not stretch the wait.
    cv.wait_for(lock, std::chrono::milliseconds(left));
  }
};

}  // namespace websmtp
