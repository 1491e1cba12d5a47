#pragma once
// The gateway's use cases, free of any HTTP framework: submit a job, read a status, read
// the queue figures. It wires the store, the group-commit writer, the dispatcher, the
// delivery workers and the status cache together.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "websmtp/common/error.hpp"
#include "websmtp/common/clock.hpp"
#include "websmtp/config/config.hpp"
#include "websmtp/queue/dispatcher.hpp"
#include "websmtp/queue/inflight_journal.hpp"
#include "websmtp/queue/retry_policy.hpp"
#include "websmtp/service/status_cache.hpp"
#include "websmtp/service/transport_factory.hpp"
#include "websmtp/smtp/transport.hpp"
#include "websmtp/store/store.hpp"
#include "websmtp/store/write_batcher.hpp"

namespace websmtp::service {

struct Accepted {
  int status = 202;  // 200 when an Idempotency-Key replays an earlier job
  std::string ref;
};
using SubmitDone = std::function<void(Result<Accepted>)>;
using StatusDone = std::function<void(Result<std::string>)>;

class Gateway {
 public:
  Gateway(const config::Config& config, std::unique_ptr<store::Store> store, TransportFactory transports,
          const Clock& clock);
  ~Gateway();
  Gateway(const Gateway&) = delete;
  Gateway& operator=(const Gateway&) = delete;

  void start();

  // Validates and stores a job. `done` runs exactly once, on this thread for a refused
  // request, otherwise on the store's writer thread after the commit (never before it).
  void submit(std::string_view body, std::string_view idempotency_key, SubmitDone done);

  // The status document of a job as JSON text.
  Result<std::string> status(std::string_view ref);

  // Long-poll: answers (once, from any thread) as soon as the job's status word differs
  // from `since` (empty: the current one), or after `wait`. A finished job answers at once.
  // Returns an id for release_watch() while the answer is still pending, else 0.
  std::uint64_t watch_status(std::string_view ref, std::string since, std::chrono::milliseconds wait, StatusDone done);
  // Answers one pending long-poll now with the current status (no-op once answered).
  void release_watch(const std::string& ref, std::uint64_t id);
  // Answers every pending long-poll now (shutdown).
  void release_watchers();

  nlohmann::json queue_stats() const;

  // Stops taking jobs, lets in-flight SMTP transactions finish for up to `grace`, then
  // commits their outcomes. Returns false when a transaction was still running at the end.
  bool stop(std::chrono::milliseconds grace);

 private:
  void worker_loop();
  void recover_interrupted_attempts();
  void attempt(job::Job& job, smtp::Transport& transport);
  void on_committed_update(const store::JobUpdate& u);
  void watcher_loop();
  Result<job::Job> lookup(std::string_view ref);
  std::int64_t cache_expiry(std::int64_t completed_s) const;

  config::Config config_;
  std::unique_ptr<store::Store> store_;
  TransportFactory transports_;
  const Clock& clock_;
  queue::RetryOptions retry_;
  StatusCache cache_;
  std::unique_ptr<store::WriteBatcher> batcher_;
  std::unique_ptr<queue::Dispatcher> dispatcher_;
  std::unique_ptr<queue::InflightJournal> journal_;
  std::vector<std::thread> workers_;
  std::int64_t started_ms_ = 0;

  std::atomic<bool> stopping_{false};
  std::atomic<int> busy_{0};
  std::mutex busy_mu_;
  std::condition_variable busy_cv_;

  struct Watcher {
    std::uint64_t id;
    std::string since;
    std::chrono::steady_clock::time_point deadline;
    StatusDone done;
  };
  // Removes and returns the long-polls on `ref` waiting for a word other than `word`.
  std::vector<Watcher> take_changed_watchers(const std::string& ref, std::string_view word);
  std::mutex watch_mu_;
  std::condition_variable watch_cv_;
  std::unordered_map<std::string, std::vector<Watcher>> watchers_;  // by ref
  std::multimap<std::chrono::steady_clock::time_point, std::pair<std::string, std::uint64_t>> deadlines_;
  std::uint64_t next_watch_id_ = 0;
  bool watch_stopping_ = false;
  std::thread watch_thread_;

  std::mutex idem_mu_;
  std::set<std::string, std::less<>> pending_keys_;

  // Gauges (jobs) and totals (since start), kept as counters so /admin/queue is O(1).
  std::atomic<std::int64_t> queued_{0}, deferred_{0}, completed_{0}, failed_{0};
  std::atomic<std::int64_t> submitted_total_{0}, delivered_total_{0}, failed_total_{0};
};

}  // namespace websmtp::service
