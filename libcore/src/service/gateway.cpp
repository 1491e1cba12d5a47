#include "websmtp/service/gateway.hpp"

#include <spdlog/spdlog.h>

#include <filesystem>

#include "websmtp/job/json.hpp"

namespace websmtp::service {

namespace {
queue::RetryOptions retry_options(const config::Config& c) {
  return {c.retry_min_s, c.retry_max_s, c.max_lifetime_s, c.after_data_timeout == config::AfterDataTimeout::kFail};
}
}  // namespace

Gateway::Gateway(const config::Config& config, std::unique_ptr<store::Store> store, TransportFactory transports,
                 const Clock& clock)
    : config_(config),
      store_(std::move(store)),
      transports_(std::move(transports)),
      clock_(clock),
      status_(*store_, clock, config.status_ttl_s, static_cast<std::size_t>(config.status_cache_size)),
      longpolls_(status_) {}

Gateway::~Gateway() { stop(std::chrono::milliseconds(0)); }

void Gateway::start() {
  std::filesystem::create_directories(config_.data_dir);
  // First: a key file that cannot be used stops the start before anything runs.
  access_ = std::make_unique<Access>(config_, *store_, clock_);
  status_.set_status_tokens(access_->status_tokens());
  dkim_ = message::dkim::load_signer(config_);  // likewise an unusable DKIM key
  journal_ = std::make_unique<queue::InflightJournal>(config_.data_dir + "/inflight.journal");
  recover_interrupted_attempts(*store_, *journal_, retry_options(config_), clock_);
  metrics_.start(clock_.now_ms());
  // Counting reads every row (seconds with a million queued jobs): delivery need not wait.
  std::function<store::Counts()> count;
  try {
    count = store_->counts_as_of_now();  // pinned now, before any submit: the base is exact
  } catch (const store::StoreError& e) {
    spdlog::warn("cannot count the stored jobs; the queue figures start from zero: {}", e.what());
  }
  counting_ = std::thread([this, count = std::move(count)] {
    store::Counts counts;
    try {
      if (count) counts = count();
    } catch (const store::StoreError& e) {
      spdlog::warn("cannot count the stored jobs; the queue figures start from zero: {}", e.what());
    }
    metrics_.set_base(counts);
    if (counts.queued + counts.deferred > 0)
      spdlog::info("resuming {} unfinished jobs ({} not started, {} deferred)", counts.queued + counts.deferred,
                   counts.queued, counts.deferred);
  });

  // Before the group commit, whose outcomes wake it; it sends what the outbox kept over a restart.
  if (!config_.webhook_secret.empty()) {
    if (!store_->has_webhook_outbox())
      throw store::StoreError("WEBHOOK_SECRET is set but this store keeps no webhook outbox: unset it");
    webhook::SenderOptions wo{.secret = config_.webhook_secret,
                              .retry_min_ms = config_.webhook_retry_min_s * 1000,
                              .retry_max_ms = config_.webhook_retry_max_s * 1000,
                              .allow_private = config_.webhook_allow_private,
                              .ca_file = config_.smtp_ca_file};
    auto http = webhook::http_poster(wo);
    webhooks_ = std::make_unique<webhook::Sender>(*store_, clock_, wo, std::move(http.post), std::move(http.cancel));
    webhooks_->start();
  }
  store::WriteBatcher::Options bo;
  bo.status_ttl_s = config_.status_ttl_s;
  bo.outcome_linger_ms = 2;
  batcher_ = std::make_unique<store::WriteBatcher>(
      *store_, clock_, bo, [this](const store::JobUpdate& u) { outcome_committed(u); },
      [this](const store::Counts& removed) { metrics_.purged(removed); },
      // A deferral the store could not commit (full disk) is still attempted at its retry time.
      [this](store::JobUpdate& u) { return dispatcher_->requeue(u); });
  dispatcher_ = std::make_unique<queue::Dispatcher>(*store_, clock_, queue::Dispatcher::Options{});
  // An operator who paused delivery (during a relay outage, say) does not want a restart to
  // resume it.
  if (AdminService::stored_pause(*store_)) {
    dispatcher_->set_paused(true);
    spdlog::warn("delivery is paused (by the admin API before the last stop); POST /admin/resume starts it");
  }
  suppressions_ = std::make_unique<Suppressions>(*store_);
  admin_ = std::make_unique<AdminService>(*store_, *batcher_, *dispatcher_, *suppressions_, clock_,
                                          [this](const store::JobUpdate& u) { return edit_committed(u); });
  dispatcher_->start();
  submit_ = std::make_unique<SubmitService>(
      SubmitService::Options{config_.max_recipients, config_.message_id_domain, 100, access_->status_tokens(),
                             dkim_.empty() ? nullptr : &dkim_, !config_.webhook_secret.empty(),
                             config_.webhook_allow_private},
      *store_, *batcher_, *dispatcher_, metrics_, clock_);
  workers_ = std::make_unique<DeliveryWorkers>(
      DeliveryWorkers::Options{config_.threads, config_.worker_nice, retry_options(config_)}, transports_, *dispatcher_,
      *batcher_, *journal_, metrics_, clock_, suppressions_.get());
  workers_->start();
  longpolls_.start();
}

// Runs on the commit thread after an attempt's outcome is durable.
void Gateway::outcome_committed(const store::JobUpdate& u) {
  journal_->end(u.seq);
  if (u.refinish)
    metrics_.refinished(u.was, u.outcome);
  else
    metrics_.outcome_committed(u.first_attempt, u.outcome);
  status_.outcome_committed(u);
  dispatcher_->release(u.seq, u.next_at_ms);
  status_changed(u);
}

bool Gateway::edit_committed(const store::JobUpdate& u) {
  metrics_.outcome_committed(u.first_attempt, u.outcome);
  // The edit that finishes a job is a cancel: its cancelled recipients fail here, counted as a
  // suppressed one is (no SMTP attempt).
  if (u.outcome != store::Outcome::kPending)
    for (const auto& r : u.recipients)
      if (r.reason == "cancelled") metrics_.recipient_failed_unattempted(r);
  status_.outcome_committed(u);
  status_changed(u);
  if (u.outcome != store::Outcome::kPending) return dispatcher_->finished_by_edit(u.seq);
  if (u.next_at_ms) dispatcher_->wake(*u.next_at_ms);
  return false;
}

void Gateway::status_changed(const store::JobUpdate& u) {
  if (webhooks_ && u.outcome != store::Outcome::kPending) webhooks_->wake();  // its event, if any, is committed
  // Long-polls waiting on this job: its word is now "completed" or "processing".
  longpolls_.status_changed(u.ref, u.outcome == store::Outcome::kPending ? "processing" : "completed",
                            [&] { return status_text(store::job_after(u)); });
}

Metrics::Figures Gateway::figures(std::int64_t now) const {
  Metrics::Figures f;
  // A job out with a worker is in flight only: neither queued nor the oldest queued one.
  std::vector<std::int64_t> attempting;
  if (dispatcher_) {
    attempting = dispatcher_->in_flight_seqs();
    f.in_flight_first = static_cast<std::int64_t>(dispatcher_->in_flight_first_attempts());
  }
  try {
    if (auto oldest = store_->oldest_queued_submitted(attempting))
      f.oldest_queued_age_s = std::max<std::int64_t>(0, now / 1000 - *oldest);
  } catch (const store::StoreError&) {
  }
  f.in_flight = static_cast<std::int64_t>(attempting.size());
  f.workers = config_.threads;
  f.workers_busy = workers_ ? workers_->busy() : 0;
  f.paused = dispatcher_ && dispatcher_->paused();
  return f;
}

nlohmann::json Gateway::queue_stats() const {
  std::int64_t now = clock_.now_ms();
  return metrics_.queue_json(figures(now), now);
}

std::string Gateway::metrics_text() const {
  std::int64_t now = clock_.now_ms();
  return metrics_.prometheus_text(figures(now), now);
}

bool Gateway::stop(std::chrono::milliseconds grace) {
  if (stopped_) return true;
  stopped_ = true;
  if (counting_.joinable()) counting_.join();
  if (submit_) submit_->stop();
  longpolls_.stop();
  if (dispatcher_) dispatcher_->stop();
  bool clean = workers_ ? workers_->stop(grace) : true;
  if (batcher_) batcher_->stop();
  if (webhooks_) webhooks_->stop();
  return clean;
}

}  // namespace websmtp::service
