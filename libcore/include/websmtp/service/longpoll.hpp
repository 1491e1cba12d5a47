#pragma once
// Long-poll status requests (?wait=N&since=): each waits for its job's status word to differ
// from the one it names, or for its deadline. A status change answers the waiters it concerns
// at once, from the thread that committed it; one thread answers the deadlines.
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "websmtp/common/error.hpp"
#include "websmtp/service/status.hpp"

namespace websmtp::service {

class LongPollRegistry {
 public:
  using Done = std::function<void(Result<std::string>)>;

  explicit LongPollRegistry(StatusService& status);
  ~LongPollRegistry();
  LongPollRegistry(const LongPollRegistry&) = delete;
  LongPollRegistry& operator=(const LongPollRegistry&) = delete;

  // MAX_LONGPOLLS: at most this many waiters at once; over it a request answers at once with the
  // current status, as a zero wait would (a client that polls again is served, never refused).
  void set_max_waiters(std::size_t max);
  // Waiters pending now.
  std::size_t waiting() const;
  // Whether a waiter is pending on `ref` now.
  bool watching(const std::string& ref) const;

  void start();
  // Answers every waiter with the current status and stops the deadline thread.
  void stop();

  // Answers (once, from any thread) as soon as the job's status word differs from `since`
  // (empty: the current one), or after `wait`. A finished job, a zero wait or a stopped
  // registry answers at once. Returns an id for release() while the answer is pending, else 0.
  std::uint64_t watch(const Caller& caller, std::string_view ref, std::string since, std::chrono::milliseconds wait,
                      Done done);
  // Answers one pending waiter now with the current status (no-op once answered).
  void release(const std::string& ref, std::uint64_t id);
  // Answers every pending waiter now (shutdown).
  void release_all();
  // The job's status word is now `word`; `body` renders the new status document (called
  // only when a waiter is answered).
  void status_changed(const std::string& ref, std::string_view word, const std::function<std::string()>& body);

 private:
  struct Waiter {
    std::uint64_t id;
    std::string since;
    Caller caller;
    Done done;
  };
  // Removes and returns the waiters on `ref` that wait for a word other than `word`.
  std::vector<Waiter> take_changed(const std::string& ref, std::string_view word);
  // Removes and returns waiter `id` on `ref`, if still pending. Needs mu_.
  std::optional<Waiter> take_locked(const std::string& ref, std::uint64_t id);
  void deadline_loop();

  StatusService& status_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::unordered_map<std::string, std::vector<Waiter>> waiters_;  // by ref
  std::multimap<std::chrono::steady_clock::time_point, std::pair<std::string, std::uint64_t>> deadlines_;
  std::uint64_t next_id_ = 0;
  std::size_t waiting_ = 0;  // waiters in waiters_
  std::size_t max_waiters_ = SIZE_MAX;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace websmtp::service
