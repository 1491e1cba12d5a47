#include "websmtp/service/gateway.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>

#include "websmtp/job/json.hpp"
#include "websmtp/store/postgres_store.hpp"

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
  shared_ = dynamic_cast<store::SharedStore*>(store_.get());
  // A shared store keeps that note in the job's row instead (on_wire, below): the node that
  // claims the job next flags it, whichever node that is.
  if (shared_)
    journal_->reset();
  else
    recover_interrupted_attempts(*store_, *journal_, retry_options(config_), clock_);
  started_ms_ = clock_.now_ms();
  metrics_.start(started_ms_);
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
    // Then, with several nodes, this thread keeps the node's row up to date (the only periodic
    // work outside the submit and delivery paths: it never slows them).
    if (shared_) report_node_loop();
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
    // Several nodes: the node that sends an event claims it for LEASE_TIMEOUT (a dead node's
    // events come back after it, as its jobs do), and a send (the lookup and every POST: one
    // deadline, Sender::post) ends within half of its claim.
    if (shared_) {
      wo.claim_ms = config_.lease_timeout_s * 1000;
      wo.total_timeout_ms = std::min(wo.total_timeout_ms, wo.claim_ms / 2);
    }
    auto http = webhook::http_poster(wo);
    webhooks_ = std::make_unique<webhook::Sender>(*store_, clock_, wo, std::move(http.post), std::move(http.cancel));
    webhooks_->start();
  }
  store::WriteBatcher::Options bo;
  bo.status_ttl_s = config_.status_ttl_s;
  bo.outcome_linger_ms = 2;
  // Several nodes on one database (STORE=postgres): claims name this node and expire.
  auto* shared = shared_;
  queue::Dispatcher::Options dopt;
  if (shared) {
    bo.owner = dopt.owner = config_.node_id;
    dopt.release_inline = false;  // a release is a round trip: batched on the dispatcher's thread
    // A node holds (claims) only what its workers take next (64, or 16 per worker): the rest of
    // its submits are given back at once for any node to claim, so a node whose workers are
    // stuck (a hung peer) does not keep a backlog of up to 1024 from idle nodes until its SMTP
    // timeouts run out. (It costs one node's drain some claims from the store instead of memory:
    // bench/README.)
    dopt.buffer = std::max<std::size_t>(64, 16 * static_cast<std::size_t>(config_.threads));
    bo.lease_ms = dopt.lease_ms = config_.lease_timeout_s * 1000;
    // Each commit of outcomes is heard by every node (its notification wakes each node's LISTEN
    // connection): fewer, larger outcome commits keep that cost from growing with the gateway's
    // delivery rate times its nodes. Submits still never wait.
    bo.outcome_linger_ms = 20;
  }
  batcher_ = std::make_unique<store::WriteBatcher>(
      *store_, clock_, bo, [this](const store::JobUpdate& u) { outcome_committed(u); },
      [this](const store::Counts& removed) { metrics_.purged(removed); },
      // A deferral the store could not commit (full disk) is still attempted at its retry time.
      [this](store::JobUpdate& u) { return dispatcher_->requeue(u); });
  dispatcher_ = std::make_unique<queue::Dispatcher>(*store_, clock_, dopt);
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
  DeliveryWorkers::Options wopt{config_.threads, config_.worker_nice, retry_options(config_), {}};
  if (shared)
    wopt.on_wire = [shared, owner = config_.node_id](std::int64_t seq) {
      try {
        shared->note_on_wire(seq, owner);
      } catch (const store::StoreError& e) {
        // Only weakens duplicate flagging if this node dies during this very transaction.
        spdlog::warn("cannot note job seq {} as on the wire: {}", seq, e.what());
      }
    };
  workers_ = std::make_unique<DeliveryWorkers>(wopt, transports_, *dispatcher_, *batcher_, *journal_, metrics_, clock_,
                                               suppressions_.get());
  workers_->start();
  longpolls_.start();
  if (shared) {
    shared->start_listening([this](const std::string& ref) { remote_change(ref); });
    remote_change("=paused");  // a pause set between the read above and the LISTEN
    {
      std::lock_guard lock(node_mu_);
      node_reporting_ = true;
    }
    node_cv_.notify_all();
  }
}

void Gateway::report_node_loop() {
  std::unique_lock lock(node_mu_);
  node_cv_.wait(lock, [&] { return node_reporting_ || node_stop_; });
  bool failing = false;
  while (!node_stop_) {
    bool known = node_base_.has_value();
    lock.unlock();
    try {
      if (!known) {
        // Before the first report: the counters go on from the row a previous process of this
        // NODE_ID left, so the gateway's sums never go down.
        store::NodeFigures base;
        for (auto& row : shared_->nodes())
          if (row.node_id == config_.node_id) base = std::move(row);
        if (base.submitted + base.delivered + base.failed > 0)
          spdlog::info("node {}: its figures go on from a previous process ({} submitted, {} delivered, {} failed)",
                       config_.node_id, base.submitted, base.delivered, base.failed);
        std::lock_guard base_lock(node_mu_);
        node_base_ = std::move(base);
      }
      shared_->report_node(own_node_figures());
      if (failing) spdlog::info("node {}: its figures are reported again", config_.node_id);
      failing = false;
    } catch (const store::StoreError& e) {
      if (!failing) spdlog::warn("node {}: cannot report its figures (retrying): {}", config_.node_id, e.what());
      failing = true;
    }
    lock.lock();
    std::int64_t next = clock_.now_ms() + kNodeReportIntervalMs;
    while (!node_stop_ && clock_.now_ms() < next) clock_.wait_until(node_cv_, lock, next);
  }
}

store::NodeFigures Gateway::own_node_figures(std::int64_t stopped_ms) const {
  store::NodeFigures f;
  {
    std::lock_guard lock(node_mu_);
    if (node_base_) f = *node_base_;
  }
  f.node_id = config_.node_id;
  f.started_ms = started_ms_;
  f.seen_ms = clock_.now_ms();
  f.stopped_ms = stopped_ms;
  f.age_ms = 0;
  f.submitted += metrics_.submitted_total();
  f.delivered += metrics_.delivered_total();
  f.failed += metrics_.failed_total();
  f.workers = config_.threads;
  f.workers_busy = workers_ ? workers_->busy() : 0;
  if (dispatcher_) {
    f.in_flight = static_cast<std::int64_t>(dispatcher_->in_flight_seqs().size());
    f.in_flight_first = static_cast<std::int64_t>(dispatcher_->in_flight_first_attempts());
  }
  return f;
}

// Another node committed something (a shared store's LISTEN thread): new or released jobs
// (ref empty) wake the dispatcher; a job's change drops its cached status and answers the
// long-polls waiting on it.
void Gateway::remote_change(const std::string& item) {
  if (item.empty() || item == "*") {
    dispatcher_->wake(clock_.now_ms());
    if (item.empty()) return;
    status_.remote_change_all();
  }
  // Webhook events another node's commit wrote, or handed back: any node's sender may claim them.
  if ((item == "!" || item == "*") && webhooks_) webhooks_->wake();
  if (item == "!") return;
  if (item == "=paused" || item == "*") {  // POST /admin/pause or /admin/resume on another node
    try {
      bool paused = AdminService::stored_pause(*store_);
      if (paused != dispatcher_->paused())
        spdlog::info("delivery {} by the admin API of another node", paused ? "paused" : "resumed");
      dispatcher_->set_paused(paused);
    } catch (const store::StoreError& e) {
      spdlog::warn("cannot read the pause set by another node: {}", e.what());
    }
    return;
  }
  if (item.front() == '=') return;
  // "~<ref>": an operator's edit (which may finish a job this node holds); "<ref>": the outcome
  // of the claim holder's attempt. The job is read only when something here needs it: a commit
  // on another node must not cost every node a query.
  bool edit = item.front() == '~';
  std::string ref = edit ? item.substr(1) : item;
  status_.remote_change(ref);
  if (!edit && !longpolls_.watching(ref)) return;  // (a waiter registered after this re-reads)
  std::optional<job::Job> j;
  try {
    j = store_->find(ref);
  } catch (const store::StoreError& e) {
    spdlog::warn("cannot read job {} changed by another node: {}", ref, e.what());
    return;
  }
  if (!j) return;
  // Finished by another node's edit (a cancel): a copy this node holds is not attempted.
  if (edit && j->completed) dispatcher_->finished_by_edit(j->seq);
  longpolls_.status_changed(ref, job::job_status(*j), [&] { return status_text(*j); });
}

// Runs on the commit thread after an attempt's outcome is durable.
void Gateway::outcome_committed(const store::JobUpdate& u) {
  journal_->end(u.seq);
  if (u.refinish)
    metrics_.refinished(u.was, u.outcome);
  else
    metrics_.outcome_committed(u.first_attempt, u.outcome);
  // A shared store writes an outcome only while this node still holds the claim: the cache is
  // refreshed from the store rather than from what may not have been written.
  if (shared_)
    status_.remote_change(u.ref);
  else
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

// The node's last report, after its last outcomes: its row says it stopped (not live, so its
// workers leave the gateway's figures at once rather than after the liveness window).
void Gateway::report_stopped() {
  if (!shared_) return;
  {
    std::lock_guard lock(node_mu_);
    if (!node_reporting_ || !node_base_) return;  // never reported: nothing to mark
  }
  try {
    shared_->report_node(own_node_figures(clock_.now_ms()));
  } catch (const store::StoreError& e) {
    spdlog::warn("node {}: cannot report that it stopped: {}", config_.node_id, e.what());
  }
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
  f.long_polls_waiting = static_cast<std::int64_t>(longpolls_.waiting());
  if (shared_) {
    try {
      f.shared_depth = store_->counts();
    } catch (const store::StoreError&) {
    }
  }
  return f;
}

nlohmann::json Gateway::queue_stats() const {
  std::int64_t now = clock_.now_ms();
  Metrics::Figures f = figures(now);
  if (shared_) {
    try {
      f.gateway = gateway_figures(shared_->nodes(), own_node_figures());
    } catch (const store::StoreError&) {
      // This node's figures alone, as when the store cannot count the queue.
    }
  }
  return metrics_.queue_json(f, now);
}

std::string Gateway::metrics_text() const {
  std::int64_t now = clock_.now_ms();
  return metrics_.prometheus_text(figures(now), now);
}

bool Gateway::stop(std::chrono::milliseconds grace) {
  if (stopped_) return true;
  stopped_ = true;
  if (shared_) shared_->stop_listening();
  {
    std::lock_guard lock(node_mu_);
    node_stop_ = true;
  }
  node_cv_.notify_all();
  if (counting_.joinable()) counting_.join();
  if (submit_) submit_->stop();
  longpolls_.stop();
  if (dispatcher_) dispatcher_->stop();
  bool clean = workers_ ? workers_->stop(grace) : true;
  if (batcher_) batcher_->stop();
  if (webhooks_) webhooks_->stop();
  report_stopped();
  return clean;
}

}  // namespace websmtp::service
