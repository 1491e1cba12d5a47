#include "websmtp/service/metrics.hpp"

namespace websmtp::service {

void Metrics::start(const store::Counts& c, std::int64_t now_ms) {
  started_ms_ = now_ms;
  queued_ = c.queued;
  deferred_ = c.deferred;
  completed_ = c.completed;
  failed_ = c.failed;
}

void Metrics::submitted(std::int64_t jobs) {
  queued_.fetch_add(jobs, std::memory_order_relaxed);
  submitted_total_.fetch_add(jobs, std::memory_order_relaxed);
}

void Metrics::outcome_committed(bool first_attempt, store::Outcome outcome) {
  (first_attempt ? queued_ : deferred_).fetch_sub(1, std::memory_order_relaxed);
  switch (outcome) {
    case store::Outcome::kDelivered:
      completed_.fetch_add(1, std::memory_order_relaxed);
      break;
    case store::Outcome::kFailed:
      failed_.fetch_add(1, std::memory_order_relaxed);
      break;
    case store::Outcome::kPending:
      deferred_.fetch_add(1, std::memory_order_relaxed);
      break;
  }
}

void Metrics::recipient_result(job::RecipientState state) {
  if (state == job::RecipientState::kDelivered)
    delivered_total_.fetch_add(1, std::memory_order_relaxed);
  else if (state == job::RecipientState::kFailed)
    failed_total_.fetch_add(1, std::memory_order_relaxed);
}

void Metrics::purged(const store::Counts& removed) {
  completed_.fetch_sub(removed.completed, std::memory_order_relaxed);
  failed_.fetch_sub(removed.failed, std::memory_order_relaxed);
}

nlohmann::json Metrics::queue_json(const Figures& f, std::int64_t now_ms) const {
  return {{"queued", queued_.load()},
          {"in_flight", f.in_flight},
          {"deferred", deferred_.load()},
          {"completed", completed_.load()},
          {"failed", failed_.load()},
          {"workers", f.workers},
          {"workers_busy", f.workers_busy},
          {"oldest_queued_age_s", f.oldest_queued_age_s},
          {"submitted_total", submitted_total_.load()},
          {"delivered_total", delivered_total_.load()},
          {"failed_total", failed_total_.load()},
          {"uptime_s", (now_ms - started_ms_) / 1000},
          {"paused", f.paused}};
}

}  // namespace websmtp::service
