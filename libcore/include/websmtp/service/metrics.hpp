#pragma once
// The gateway's figures: job gauges by state and totals since start, kept as atomics so that
// reading them (GET /admin/queue, later /metrics) costs nothing on the hot paths.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>

#include <nlohmann/json.hpp>

#include "websmtp/job/model.hpp"
#include "websmtp/store/store.hpp"

namespace websmtp::service {

class Metrics {
 public:
  void start(std::int64_t now_ms) { started_ms_ = now_ms; }
  // The gauges as the store counted them at start. Counting reads every row, so it runs
  // beside start-up; the gauges below are changes since start, and queue_json() waits
  // (briefly) for the base to add them to.
  void set_base(const store::Counts& counts);

  void submitted(std::int64_t jobs);
  // A committed attempt outcome for one job: it leaves "queued" (first attempt) or "deferred",
  // and enters "deferred", "completed" or "failed".
  void outcome_committed(bool first_attempt, store::Outcome outcome);
  // A job an operator had finished (cancelled) got its in-flight attempt's outcome: it moves
  // from the outcome the edit wrote to this one.
  void refinished(store::Outcome was, store::Outcome now);
  // One recipient's result of an attempt (delivered_total / failed_total).
  void recipient_result(job::RecipientState state);
  void purged(const store::Counts& removed);

  // What the queue endpoint shows; the caller adds what others own (in flight, workers busy,
  // oldest queued age, paused).
  struct Figures {
    std::int64_t in_flight = 0;
    int workers = 0;
    int workers_busy = 0;
    std::int64_t oldest_queued_age_s = 0;
    bool paused = false;
  };
  nlohmann::json queue_json(const Figures& f, std::int64_t now_ms) const;

  std::int64_t submitted_total() const { return submitted_total_.load(std::memory_order_relaxed); }

 private:
  std::int64_t started_ms_ = 0;
  mutable std::mutex base_mu_;
  mutable std::condition_variable base_cv_;
  std::optional<store::Counts> base_;
  std::atomic<std::int64_t> queued_{0}, deferred_{0}, completed_{0}, failed_{0};
  std::atomic<std::int64_t> submitted_total_{0}, delivered_total_{0}, failed_total_{0};
};

}  // namespace websmtp::service
