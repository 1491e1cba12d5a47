#pragma once
// Sessions kept across jobs and shared by the workers of direct delivery (Postfix's
// connection cache with the queue manager's per-destination concurrency): at most
// `max_per_host` sessions to one host at a time (in use or idle), at most `max_idle` idle
// sessions in all, each idle for at most `idle_timeout`: a thread of the pool ends (QUIT) each
// idle session when its time is up, sleeping until the earliest such time (no polling). A
// session is used by one worker at a time: acquire() hands it out, release() takes it back.
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "websmtp/smtp/session.hpp"

namespace websmtp::smtp {

struct PoolLimits {
  int max_per_host = 4;
  int max_idle = 32;
  std::chrono::milliseconds idle_timeout{30'000};
};

class SessionPool {
 public:
  SessionPool(SessionOptions options, PoolLimits limits);
  ~SessionPool();  // ends the idle sessions (QUIT) and the thread that times them out
  SessionPool(const SessionPool&) = delete;
  SessionPool& operator=(const SessionPool&) = delete;

  // A kept session for `key` when there is one, else a new one (not connected yet). Waits up
  // to `wait` while `key.host` has max_per_host sessions; nullptr when none came free.
  std::unique_ptr<Session> acquire(const SessionKey& key, std::chrono::milliseconds wait);
  // Takes a session back: kept for the next job when it can still be used and the bounds
  // allow, else ended.
  void release(const SessionKey& key, std::unique_ptr<Session> session);

  int idle() const;
  int in_use() const;

 private:
  struct Idle {
    std::unique_ptr<Session> session;
    std::chrono::steady_clock::time_point since;
  };
  void expire_idle();
  // Takes out the sessions idle since before `cutoff` (mu_ held); the caller ends them.
  std::vector<std::unique_ptr<Session>> take_expired(std::chrono::steady_clock::time_point cutoff);
  SessionOptions options_;
  PoolLimits limits_;
  mutable std::mutex mu_;
  std::condition_variable freed_;
  std::multimap<SessionKey, Idle> idle_;
  std::map<std::string, int> per_host_;  // sessions per host (in use and idle)
  int in_use_ = 0;
  bool stopping_ = false;
  std::condition_variable idle_added_;  // the expiry thread waits here
  std::thread expiry_;
};

}  // namespace websmtp::smtp
