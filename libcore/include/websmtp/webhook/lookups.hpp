#pragma once
// Threads for the submits whose callback_url names a host that must be resolved before the job
// is accepted (destination.hpp): a DNS lookup can take seconds, and the HTTP threads that parse
// requests must not wait for it. Tasks run in order on a few threads; at most `max_pending`
// wait, so a flood of slow names cannot grow the queue without bound.
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace websmtp::webhook {

class Lookups {
 public:
  explicit Lookups(int threads = 2, std::size_t max_pending = 1024);
  ~Lookups();  // runs what is queued, then joins
  Lookups(const Lookups&) = delete;
  Lookups& operator=(const Lookups&) = delete;

  // False (and `task` dropped) when max_pending tasks already wait.
  bool post(std::function<void()> task);
  // True on a thread of a Lookups, running a task.
  static bool on_this_thread();

 private:
  void run();

  std::size_t max_pending_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace websmtp::webhook
