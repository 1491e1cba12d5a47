#pragma once
// The gateway's figures: job gauges by state and totals since start, kept as atomics so that
// reading them (GET /admin/queue, GET /metrics) costs nothing on the hot paths; and the
// counters and histograms that only /metrics shows (relaxed atomics, fixed bucket arrays).
#include <algorithm>
#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "websmtp/common/error_codes.hpp"
#include "websmtp/common/metrics.hpp"
#include "websmtp/job/model.hpp"
#include "websmtp/store/postgres_store.hpp"
#include "websmtp/store/store.hpp"

namespace websmtp::service {

// The whole gateway's figures on a shared store (STORE=postgres), from every node's row of the
// nodes table: what GET /admin/queue shows on any node.
struct GatewayFigures {
  // Over every row, live or not: a dead node's deliveries still happened.
  std::int64_t submitted = 0, delivered = 0, failed = 0;
  // Over the live nodes only: a dead node's workers deliver nothing.
  std::int64_t workers = 0, workers_busy = 0, in_flight = 0, in_flight_first = 0;
  struct Node {
    store::NodeFigures figures;
    bool live = false;
    bool self = false;
  };
  std::vector<Node> nodes;  // by node_id
};

// How often a node writes its row, and how long after its last report a node still counts as
// live: max(3 s, 3 report intervals), so that one late report does not drop it.
constexpr std::int64_t kNodeReportIntervalMs = 1000;
constexpr std::int64_t kNodeLiveWindowMs = std::max<std::int64_t>(3000, 3 * kNodeReportIntervalMs);

// Sums `rows` (as nodes() read them) with `self`, this node's figures taken from memory (its
// age 0): self replaces the row of its node_id, or is added when it has none yet; its counters
// are never taken below that row's (a row written before this process read its base). A node is
// live when it has not stopped and its row is at most `live_window_ms` old.
GatewayFigures gateway_figures(std::vector<store::NodeFigures> rows, const store::NodeFigures& self,
                               std::int64_t live_window_ms = kNodeLiveWindowMs);

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
  // One recipient's result of an attempt: delivered_total / failed_total, the deliveries by
  // outcome and reply class, and once final its attempts and (delivered) its latency since the
  // submit (the ref, a UUIDv7, holds the submit's millisecond; `submitted_s` when it does not).
  void recipient_result(const job::Recipient& r, std::string_view ref, std::int64_t submitted_s, std::int64_t now_ms);
  // A recipient failed without an SMTP attempt now (suppressed, cancelled): failed_total, the
  // failed deliveries of class "none", and its attempts so far.
  void recipient_failed_unattempted(const job::Recipient& r);
  // A submit request refused with this error code (accepted jobs are counted by submitted()).
  void submit_refused(std::string_view code);
  // A job an operator had finished (cancelled) got its in-flight attempt's outcome: it moves
  // from the outcome the edit wrote to this one.
  void refinished(store::Outcome was, store::Outcome now);
  void purged(const store::Counts& removed);

  // What the queue endpoint shows; the caller adds what others own (in flight, workers busy,
  // oldest queued age, paused).
  struct Figures {
    std::int64_t in_flight = 0;
    // Of those, the jobs on their first attempt: the store still counts them queued (the rest
    // deferred) until the outcome is committed; the figures show each job in one state.
    std::int64_t in_flight_first = 0;
    int workers = 0;
    int workers_busy = 0;
    std::int64_t oldest_queued_age_s = 0;
    bool paused = false;
    // A store shared by several nodes: the whole gateway's queue depth, counted in the store
    // (this node's gauges only see its own submits and outcomes).
    std::optional<store::Counts> shared_depth;
    // A shared store: every node's figures. queue_json() then shows the gateway's totals,
    // workers and jobs in flight (the fields above being this node's), and the nodes.
    std::optional<GatewayFigures> gateway;
    // Long-polls (?wait=) parked on this node now (/metrics only: not one of the queue's figures).
    std::int64_t long_polls_waiting = 0;
  };
  nlohmann::json queue_json(const Figures& f, std::int64_t now_ms) const;
  // Every figure in the Prometheus text format (0.0.4), the process-wide ones included.
  std::string prometheus_text(const Figures& f, std::int64_t now_ms) const;

  std::int64_t submitted_total() const { return submitted_total_.load(std::memory_order_relaxed); }
  std::int64_t delivered_total() const { return delivered_total_.load(std::memory_order_relaxed); }
  std::int64_t failed_total() const { return failed_total_.load(std::memory_order_relaxed); }

 private:
  struct Depth {
    std::int64_t queued, deferred, completed, failed;
  };
  Depth depth() const;  // the gauges over their base (waits briefly for it)
  Depth depth(const Figures& f) const;  // shared_depth when given, else depth()
  // depth() with the jobs in flight taken out of queued and deferred (they are in flight only).
  Depth depth_apart_from(const Figures& f) const;

  static constexpr std::array<double, 12> kAttemptBounds = {1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 50};
  static constexpr std::size_t kOutcomes = 3;  // delivered, deferred, failed
  static constexpr std::size_t kClasses = 4;   // 2xx, 4xx, 5xx, none

  std::int64_t started_ms_ = 0;
  mutable std::mutex base_mu_;
  mutable std::condition_variable base_cv_;
  std::optional<store::Counts> base_;
  std::atomic<std::int64_t> queued_{0}, deferred_{0}, completed_{0}, failed_{0};
  std::atomic<std::int64_t> submitted_total_{0}, delivered_total_{0}, failed_total_{0};
  std::array<metrics::Counter, kErrorCodes.size() + 1> refused_;  // the last: a code not in kErrorCodes
  std::array<std::array<metrics::Counter, kClasses>, kOutcomes> deliveries_;
  metrics::LatencyHistogram delivery_latency_{metrics::kLatencyBounds};
  metrics::Histogram<kAttemptBounds.size()> attempts_{kAttemptBounds};
};

}  // namespace websmtp::service
