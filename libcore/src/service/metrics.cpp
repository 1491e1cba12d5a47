#include "websmtp/service/metrics.hpp"

namespace websmtp::service {

void Metrics::set_base(const store::Counts& c) {
  {
    std::lock_guard lock(base_mu_);
    base_ = c;
  }
  base_cv_.notify_all();
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

void Metrics::refinished(store::Outcome was, store::Outcome now) {
  if (was == now) return;
  auto gauge = [this](store::Outcome o) -> std::atomic<std::int64_t>& {
    return o == store::Outcome::kDelivered ? completed_ : o == store::Outcome::kFailed ? failed_ : deferred_;
  };
  gauge(was).fetch_sub(1, std::memory_order_relaxed);
  gauge(now).fetch_add(1, std::memory_order_relaxed);
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
  store::Counts base;
  {
    std::unique_lock lock(base_mu_);
    base_cv_.wait_for(lock, std::chrono::seconds(30), [&] { return base_.has_value(); });
    if (base_) base = *base_;
  }
  return {{"queued", base.queued + queued_.load()},
          {"in_flight", f.in_flight},
          {"deferred", base.deferred + deferred_.load()},
          {"completed", base.completed + completed_.load()},
          {"failed", base.failed + failed_.load()},
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
