#include "websmtp/service/metrics.hpp"

#include <algorithm>

#include "websmtp/common/uuid.hpp"

namespace websmtp::service {

namespace {

// The submit's Unix milliseconds: the first 48 bits of a UUIDv7 ref.
std::int64_t submitted_ms(std::string_view ref, std::int64_t submitted_s) {
  if (!is_uuid(ref) || ref[14] != '7') return submitted_s * 1000;
  std::int64_t ms = 0;
  for (char c : ref.substr(0, 13)) {
    if (c == '-') continue;
    ms = ms * 16 + (c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
  }
  return ms;
}

std::size_t reply_class(int code) {
  switch (code / 100) {
    case 2:
      return 0;
    case 4:
      return 1;
    case 5:
      return 2;
    default:
      return 3;  // no SMTP reply (connection failure, timeout), or none sought
  }
}

constexpr std::array<std::string_view, 3> kOutcomeNames = {"delivered", "deferred", "failed"};
constexpr std::array<std::string_view, 4> kClassNames = {"2xx", "4xx", "5xx", "none"};

}  // namespace

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

void Metrics::recipient_result(const job::Recipient& r, std::string_view ref, std::int64_t submitted_s,
                               std::int64_t now_ms) {
  std::size_t outcome;
  switch (r.state) {
    case job::RecipientState::kDelivered:
      outcome = 0;
      delivered_total_.fetch_add(1, std::memory_order_relaxed);
      delivery_latency_.observe(static_cast<double>(std::max<std::int64_t>(0, now_ms - submitted_ms(ref, submitted_s))) /
                                1000.0);
      break;
    case job::RecipientState::kDeferred:
      outcome = 1;
      break;
    case job::RecipientState::kFailed:
      outcome = 2;
      failed_total_.fetch_add(1, std::memory_order_relaxed);
      break;
    default:
      return;
  }
  deliveries_[outcome][reply_class(r.smtp_code)].inc();
  if (outcome != 1) attempts_.observe(static_cast<double>(r.attempts));
}

void Metrics::recipient_failed_unattempted(const job::Recipient& r) {
  failed_total_.fetch_add(1, std::memory_order_relaxed);
  deliveries_[2][3].inc();
  attempts_.observe(static_cast<double>(r.attempts));
}

void Metrics::refinished(store::Outcome was, store::Outcome now) {
  if (was == now) return;
  auto gauge = [this](store::Outcome o) -> std::atomic<std::int64_t>& {
    return o == store::Outcome::kDelivered ? completed_ : o == store::Outcome::kFailed ? failed_ : deferred_;
  };
  gauge(was).fetch_sub(1, std::memory_order_relaxed);
  gauge(now).fetch_add(1, std::memory_order_relaxed);
}

void Metrics::submit_refused(std::string_view code) { refused_[error_code_index(code)].inc(); }

void Metrics::purged(const store::Counts& removed) {
  completed_.fetch_sub(removed.completed, std::memory_order_relaxed);
  failed_.fetch_sub(removed.failed, std::memory_order_relaxed);
}

Metrics::Depth Metrics::depth() const {
  store::Counts base;
  {
    std::unique_lock lock(base_mu_);
    base_cv_.wait_for(lock, std::chrono::seconds(30), [&] { return base_.has_value(); });
    if (base_) base = *base_;
  }
  return {base.queued + queued_.load(), base.deferred + deferred_.load(), base.completed + completed_.load(),
          base.failed + failed_.load()};
}

Metrics::Depth Metrics::depth(const Figures& f) const {
  if (!f.shared_depth) return depth();
  const auto& c = *f.shared_depth;
  return {c.queued, c.deferred, c.completed, c.failed};
}

Metrics::Depth Metrics::depth_apart_from(const Figures& f) const {
  Depth d = depth(f);
  // Clamped: an outcome leaves the gauge a moment before the dispatcher lets the job go.
  d.queued = std::max<std::int64_t>(0, d.queued - f.in_flight_first);
  d.deferred = std::max<std::int64_t>(0, d.deferred - (f.in_flight - f.in_flight_first));
  return d;
}

GatewayFigures gateway_figures(std::vector<store::NodeFigures> rows, const store::NodeFigures& self,
                               std::int64_t live_window_ms) {
  auto at = std::find_if(rows.begin(), rows.end(), [&](const auto& r) { return r.node_id == self.node_id; });
  store::NodeFigures own = self;
  own.age_ms = 0;
  if (at != rows.end()) {
    own.submitted = std::max(own.submitted, at->submitted);
    own.delivered = std::max(own.delivered, at->delivered);
    own.failed = std::max(own.failed, at->failed);
    *at = own;
  } else {
    rows.insert(std::upper_bound(rows.begin(), rows.end(), own,
                                 [](const auto& a, const auto& b) { return a.node_id < b.node_id; }),
                own);
  }
  GatewayFigures g;
  for (auto& r : rows) {
    bool live = r.stopped_ms == 0 && r.age_ms <= live_window_ms;
    g.submitted += r.submitted;
    g.delivered += r.delivered;
    g.failed += r.failed;
    if (live) {
      g.workers += r.workers;
      g.workers_busy += r.workers_busy;
      g.in_flight += r.in_flight;
      g.in_flight_first += r.in_flight_first;
    }
    bool is_self = r.node_id == self.node_id;
    g.nodes.push_back({std::move(r), live, is_self});
  }
  return g;
}

namespace {
nlohmann::json nodes_json(const GatewayFigures& g) {
  nlohmann::json nodes = nlohmann::json::array();
  for (const auto& n : g.nodes) {
    const auto& r = n.figures;
    nodes.push_back({{"node_id", r.node_id},
                     {"self", n.self},
                     {"live", n.live},
                     {"stopped", r.stopped_ms != 0},
                     {"started", r.started_ms / 1000},
                     {"seen", r.seen_ms / 1000},
                     {"workers", r.workers},
                     {"workers_busy", r.workers_busy},
                     {"in_flight", r.in_flight},
                     {"submitted_total", r.submitted},
                     {"delivered_total", r.delivered},
                     {"failed_total", r.failed}});
  }
  return nodes;
}
}  // namespace

nlohmann::json Metrics::queue_json(const Figures& f, std::int64_t now_ms) const {
  // On a shared store the gateway's figures stand in for this node's; the store counts every
  // node's jobs in flight as queued or deferred, so all of them come out of those.
  const GatewayFigures* g = f.gateway ? &*f.gateway : nullptr;
  Figures apart = f;
  if (g) {
    apart.in_flight = g->in_flight;
    apart.in_flight_first = g->in_flight_first;
  }
  Depth d = depth_apart_from(apart);
  nlohmann::json out = {{"queued", d.queued},
                        {"in_flight", apart.in_flight},
                        {"deferred", d.deferred},
                        {"completed", d.completed},
                        {"failed", d.failed},
                        {"workers", g ? g->workers : std::int64_t{f.workers}},
                        {"workers_busy", g ? g->workers_busy : std::int64_t{f.workers_busy}},
                        {"oldest_queued_age_s", f.oldest_queued_age_s},
                        {"submitted_total", g ? g->submitted : submitted_total_.load()},
                        {"delivered_total", g ? g->delivered : delivered_total_.load()},
                        {"failed_total", g ? g->failed : failed_total_.load()},
                        {"uptime_s", (now_ms - started_ms_) / 1000},
                        {"paused", f.paused}};
  if (g) out["nodes"] = nodes_json(*g);
  return out;
}

std::string Metrics::prometheus_text(const Figures& f, std::int64_t now_ms) const {
  using metrics::escape_label_value;
  metrics::TextWriter w;
  w.family("websmtp_submits_total", "counter",
           "Jobs accepted (one per job of a batch), and submit requests refused, by error code.");
  w.sample("websmtp_submits_total", "result=\"accepted\"", static_cast<std::uint64_t>(submitted_total_.load()));
  for (std::size_t i = 0; i < refused_.size(); ++i) {
    std::uint64_t n = refused_[i].value();
    if (n == 0) continue;
    std::string_view code = i < kErrorCodes.size() ? kErrorCodes[i] : "other";
    w.sample("websmtp_submits_total", "result=\"rejected\",code=\"" + escape_label_value(code) + "\"", n);
  }

  w.family("websmtp_deliveries_total", "counter",
           "Recipient delivery attempts by outcome and the class of the SMTP reply that decided it "
           "(none: no reply, e.g. a connection failure).");
  for (std::size_t o = 0; o < kOutcomes; ++o)
    for (std::size_t c = 0; c < kClasses; ++c)
      w.sample("websmtp_deliveries_total",
               "outcome=\"" + std::string(kOutcomeNames[o]) + "\",class=\"" + std::string(kClassNames[c]) + "\"",
               deliveries_[o][c].value());

  Depth d = depth_apart_from(f);
  w.family("websmtp_queue_jobs", "gauge", "Jobs by state, as GET /admin/queue counts them.");
  w.sample("websmtp_queue_jobs", "state=\"queued\"", d.queued);
  w.sample("websmtp_queue_jobs", "state=\"in_flight\"", f.in_flight);
  w.sample("websmtp_queue_jobs", "state=\"deferred\"", d.deferred);
  w.sample("websmtp_queue_jobs", "state=\"completed\"", d.completed);
  w.sample("websmtp_queue_jobs", "state=\"failed\"", d.failed);
  w.family("websmtp_queue_oldest_queued_age_seconds", "gauge", "Age of the oldest job not attempted yet.");
  w.sample("websmtp_queue_oldest_queued_age_seconds", "", f.oldest_queued_age_s);
  w.family("websmtp_paused", "gauge", "1 while delivery is paused.");
  w.sample("websmtp_paused", "", static_cast<std::int64_t>(f.paused));
  w.family("websmtp_workers", "gauge", "Delivery workers.");
  w.sample("websmtp_workers", "", static_cast<std::int64_t>(f.workers));
  w.family("websmtp_workers_busy", "gauge", "Delivery workers in an SMTP transaction.");
  w.sample("websmtp_workers_busy", "", static_cast<std::int64_t>(f.workers_busy));
  w.family("websmtp_long_polls_waiting", "gauge",
           "Status long-polls (?wait=) waiting on this node for a change or their deadline.");
  w.sample("websmtp_long_polls_waiting", "", f.long_polls_waiting);

  w.family("websmtp_delivery_latency_seconds", "histogram", "Time from the submit to a recipient's delivery.");
  w.histogram("websmtp_delivery_latency_seconds", "", delivery_latency_);
  w.family("websmtp_delivery_attempts", "histogram", "Attempts a recipient took to be delivered or to fail.");
  w.histogram("websmtp_delivery_attempts", "", attempts_);

  const metrics::Process& p = metrics::process();
  w.family("websmtp_smtp_sessions_total", "counter",
           "SMTP transactions by session: on a newly opened connection, or on one kept from an earlier job.");
  w.sample("websmtp_smtp_sessions_total", "event=\"opened\"", p.smtp_sessions_opened.value());
  w.sample("websmtp_smtp_sessions_total", "event=\"reused\"", p.smtp_sessions_reused.value());
  w.family("websmtp_store_commit_duration_seconds", "histogram",
           "Time of one group commit to the store (new jobs and attempt outcomes together).");
  w.histogram("websmtp_store_commit_duration_seconds", "", p.store_commit_seconds);

  w.family("websmtp_process_start_time_seconds", "gauge", "Start time of the daemon, Unix seconds.");
  w.sample("websmtp_process_start_time_seconds", "", static_cast<double>(started_ms_) / 1000.0);
  w.family("websmtp_uptime_seconds", "gauge", "Seconds since the daemon started.");
  w.sample("websmtp_uptime_seconds", "", static_cast<double>(now_ms - started_ms_) / 1000.0);
  return w.take();
}

}  // namespace websmtp::service
