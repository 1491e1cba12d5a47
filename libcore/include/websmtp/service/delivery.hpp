#pragma once
// The delivery side: THREADS workers, each with its own transport, take jobs from the
// dispatcher, attempt them, and hand the outcome to the group commit. Also what a previous
// run left half-done: attempts interrupted while their message was on the wire.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "websmtp/common/clock.hpp"
#include "websmtp/queue/dispatcher.hpp"
#include "websmtp/queue/inflight_journal.hpp"
#include "websmtp/queue/retry_policy.hpp"
#include "websmtp/service/metrics.hpp"
#include "websmtp/service/suppressions.hpp"
#include "websmtp/service/transport_factory.hpp"
#include "websmtp/smtp/transport.hpp"
#include "websmtp/store/store.hpp"
#include "websmtp/store/write_batcher.hpp"

namespace websmtp::service {

// The store update after an attempt: finished (with its outcome), or due again at the
// earliest retry time among its deferred recipients. Pure.
store::JobUpdate update_after_attempt(job::Job&& job, std::int64_t now_ms);

// A recipient that fails without an attempt (suppressed, cancelled).
void fail_unattempted(job::Recipient& r, const char* reason, std::int64_t now_s);

// A previous run died while these jobs' messages were on the wire and before their outcome
// was committed: the peer may have them. They are recorded as attempts whose reply to DATA
// was lost (flagged possible_duplicate, or failed with AFTER_DATA_TIMEOUT=fail) and are due
// now. Throws StoreError (start-up fails with the journal intact).
void recover_interrupted_attempts(store::Store& store, queue::InflightJournal& journal,
                                  const queue::RetryOptions& retry, const Clock& clock);
// Records on `j` the attempt that was interrupted with its message on the wire (its outcome is
// unknown): each pending recipient gets the lost reply (possible_duplicate, or failed with
// AFTER_DATA_TIMEOUT=fail) and is due now. Returns the history records of that attempt.
std::vector<store::AttemptRecord> apply_interrupted_attempt(job::Job& j, const queue::RetryOptions& retry,
                                                            std::int64_t now_ms);

class DeliveryWorkers {
 public:
  struct Options {
    int threads = 1;
    int nice = 10;
    queue::RetryOptions retry;
    // A shared store's note that a job's message is about to go on the wire (a node that
    // takes the job over then flags the retry possible_duplicate); empty: none.
    std::function<void(std::int64_t seq)> on_wire;
  };
  DeliveryWorkers(Options options, TransportFactory transports, queue::Dispatcher& dispatcher,
                  store::WriteBatcher& batcher, queue::InflightJournal& journal, Metrics& metrics, const Clock& clock,
                  Suppressions* suppressions = nullptr);
  ~DeliveryWorkers();
  DeliveryWorkers(const DeliveryWorkers&) = delete;
  DeliveryWorkers& operator=(const DeliveryWorkers&) = delete;

  void start();
  // Waits up to `grace` for transactions in flight (the dispatcher must be stopped first).
  // Returns false when some were still running; their threads are then left behind.
  bool stop(std::chrono::milliseconds grace);
  int busy() const { return busy_.load(std::memory_order_relaxed); }
  int threads() const { return options_.threads; }

 private:
  void run();
  void attempt(job::Job& job, smtp::Transport& transport);

  Options options_;
  TransportFactory transports_;
  queue::Dispatcher& dispatcher_;
  store::WriteBatcher& batcher_;
  queue::InflightJournal& journal_;
  Metrics& metrics_;
  const Clock& clock_;
  Suppressions* suppressions_;  // null: none
  std::vector<std::thread> threads_;
  std::atomic<int> busy_{0};
  std::mutex busy_mu_;
  std::condition_variable busy_cv_;
};

}  // namespace websmtp::service
