#include "websmtp/service/gateway.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>

#include "websmtp/common/hash.hpp"
#include "websmtp/common/thread.hpp"
#include "websmtp/common/uuid.hpp"
#include "websmtp/job/json.hpp"
#include "websmtp/job/validation.hpp"
#include "websmtp/message/mime.hpp"

namespace websmtp::service {

TransportFactory transport_factory(const config::Config& c) {
  if (c.delivery == config::Delivery::kSandbox) {
    std::string dir = c.data_dir + "/sandbox";
    return [dir] { return smtp::make_sandbox(dir); };
  }
  smtp::RelayOptions o;
  o.host = c.smtp_server;
  o.port = static_cast<std::uint16_t>(c.smtp_port);
  o.helo = c.smtp_helo;
  o.user = c.smtp_user;
  o.password = c.smtp_pwd;
  o.tls = c.smtp_tls == config::TlsMode::kNone       ? smtp::Tls::kNone
          : c.smtp_tls == config::TlsMode::kStartTls ? smtp::Tls::kStartTls
          : c.smtp_tls == config::TlsMode::kTls      ? smtp::Tls::kImplicit
                                                     : smtp::Tls::kOpportunistic;
  o.verify_tls = c.smtp_tls_verify;
  o.connect_timeout_ms = c.smtp_connect_timeout_s * 1000;
  o.command_timeout_ms = c.smtp_command_timeout_s * 1000;
  o.data_timeout_ms = c.smtp_data_timeout_s * 1000;
  return [o] { return smtp::make_relay(o); };
}

namespace {
bool valid_idempotency_key(std::string_view k) {
  return !k.empty() && k.size() <= 255 && std::all_of(k.begin(), k.end(), [](char c) { return c >= 0x20 && c < 0x7F; });
}
constexpr std::int64_t kNever = INT64_MAX;

// The store update after an attempt: finished (with its outcome), or due again at the
// earliest retry time among its deferred recipients.
store::JobUpdate update_after_attempt(job::Job&& j, std::int64_t now_ms) {
  store::JobUpdate u;
  u.seq = j.seq;
  u.ref = std::move(j.ref);
  u.submitted = j.submitted;
  u.first_attempt = !j.started;
  u.started = true;
  u.recipients = std::move(j.recipients);
  if (std::all_of(u.recipients.begin(), u.recipients.end(),
                  [](const job::Recipient& r) { return job::is_final(r.state); })) {
    u.completed = now_ms / 1000;
    bool any_failed = std::any_of(u.recipients.begin(), u.recipients.end(),
                                  [](const job::Recipient& r) { return r.state == job::RecipientState::kFailed; });
    u.outcome = any_failed ? store::Outcome::kFailed : store::Outcome::kDelivered;
  } else {
    std::int64_t next = INT64_MAX;
    for (const auto& r : u.recipients)
      if (r.state == job::RecipientState::kDeferred) next = std::min(next, r.next_attempt);
    u.next_at_ms = next * 1000 + now_ms % 1000;  // whole-second backoff, measured from now
  }
  return u;
}
}  // namespace

Gateway::Gateway(const config::Config& config, std::unique_ptr<store::Store> store, TransportFactory transports,
                 const Clock& clock)
    : config_(config),
      store_(std::move(store)),
      transports_(std::move(transports)),
      clock_(clock),
      retry_{config.retry_min_s, config.retry_max_s, config.max_lifetime_s,
             config.after_data_timeout == config::AfterDataTimeout::kFail},
      cache_(static_cast<std::size_t>(config.status_cache_size)) {}

Gateway::~Gateway() { stop(std::chrono::milliseconds(0)); }

void Gateway::start() {
  started_ms_ = clock_.now_ms();
  std::filesystem::create_directories(config_.data_dir);
  journal_ = std::make_unique<queue::InflightJournal>(config_.data_dir + "/inflight.journal");
  recover_interrupted_attempts();
  auto counts = store_->counts();
  queued_ = counts.queued;
  deferred_ = counts.deferred;
  completed_ = counts.completed;
  failed_ = counts.failed;
  if (counts.queued + counts.deferred > 0)
    spdlog::info("resuming {} unfinished jobs ({} not started, {} deferred)", counts.queued + counts.deferred,
                 counts.queued, counts.deferred);

  store::WriteBatcher::Options bo;
  bo.status_ttl_s = config_.status_ttl_s;
  batcher_ = std::make_unique<store::WriteBatcher>(
      *store_, clock_, bo, [this](const store::JobUpdate& u) { on_committed_update(u); },
      [this](const store::Counts& removed) {
        completed_ -= removed.completed;
        failed_ -= removed.failed;
      },
      // A deferral the store could not commit (full disk) is still attempted at its retry time.
      [this](store::JobUpdate& u) { return dispatcher_->requeue(u); });
  dispatcher_ = std::make_unique<queue::Dispatcher>(*store_, clock_, queue::Dispatcher::Options{});
  dispatcher_->start();
  for (int i = 0; i < config_.threads; ++i)
    workers_.emplace_back([this] {
      name_this_thread("ws-worker");
      // Delivery is throughput work on a durable queue; a 202 is what a client waits for. On
      // a busy CPU the workers yield to the HTTP and commit threads (the backlog drains when
      // the burst ends); on an idle one, nice changes nothing.
      set_this_thread_nice(config_.worker_nice);
      worker_loop();
    });
  watch_thread_ = std::thread([this] {
    name_this_thread("ws-longpoll");
    watcher_loop();
  });
}

// A previous run died while these jobs' messages were on the wire and before their outcome
// was committed: the peer may have them. They are retried as an attempt whose reply to DATA
// was lost: flagged possible_duplicate (or failed, with AFTER_DATA_TIMEOUT=fail).
void Gateway::recover_interrupted_attempts() {
  std::vector<store::JobUpdate> updates;
  std::int64_t now_ms = clock_.now_ms();
  for (const auto& e : journal_->recover()) {
    auto j = store_->find_seq(e.seq);
    if (!j || j->completed) continue;
    std::int64_t attempts = 0;
    for (const auto& r : j->recipients)
      if (!job::is_final(r.state)) attempts = std::max<std::int64_t>(attempts, r.attempts);
    if (attempts != e.attempts_before) continue;  // that attempt's outcome was committed
    queue::AttemptReply lost{0, "websmtpd stopped while the message was being sent; the outcome is unknown", true};
    for (auto& r : j->recipients) {
      if (job::is_final(r.state)) continue;
      queue::apply_attempt(r, lost, j->submitted, now_ms / 1000, fnv1a64(j->ref), retry_);
      if (r.state == job::RecipientState::kDeferred) r.next_attempt = now_ms / 1000;  // ours, not the peer's: retry now
    }
    spdlog::warn("job {}: interrupted while its message was on the wire; flagged as a possible duplicate", j->ref);
    updates.push_back(update_after_attempt(std::move(*j), now_ms));
  }
  if (!updates.empty()) store_->update(updates);  // throws (and start fails) with the journal intact
  journal_->reset();
}

void Gateway::submit(std::string_view body, std::string_view idempotency_key, SubmitDone done) {
  if (stopping_) return done(fail(503, "shutting_down", "the server is shutting down; retry shortly"));
  auto req = job::parse_request(body, job::Limits{config_.max_recipients});
  if (!req) return done(tl::unexpected(req.error()));

  job::Job j;
  std::int64_t now_ms = clock_.now_ms();
  j.ref = new_uuid_v7(now_ms);
  j.submitted = now_ms / 1000;
  j.sender = req->from.address;
  auto add = [&](const std::vector<job::Mailbox>& list, job::RecipientKind kind) {
    for (const auto& m : list) {
      job::Recipient r;
      r.address = m.address;
      r.kind = kind;
      j.recipients.push_back(std::move(r));
    }
  };
  add(req->to, job::RecipientKind::kTo);
  add(req->cc, job::RecipientKind::kCc);
  add(req->bcc, job::RecipientKind::kBcc);

  if (!idempotency_key.empty()) {
    if (!valid_idempotency_key(idempotency_key))
      return done(fail(400, "invalid_idempotency_key", "Idempotency-Key must be 1 to 255 printable ASCII characters",
                       "Idempotency-Key"));
    j.idempotency_key = std::string(idempotency_key);
    j.request_hash = hex64(fnv1a64(body));
    std::lock_guard lock(idem_mu_);
    if (pending_keys_.contains(idempotency_key))
      return done(fail(409, "idempotency_key_in_use", "a request with this Idempotency-Key is being processed",
                       "Idempotency-Key"));
    std::optional<store::IdempotencyHit> hit;
    try {
      hit = store_->find_idempotency(idempotency_key);
    } catch (const store::StoreError& e) {
      return done(fail(503, "store_unavailable", "the job store cannot be read; retry shortly"));
    }
    if (hit && hit->submitted >= j.submitted - store::kIdempotencyWindowS) {
      if (hit->request_hash == j.request_hash) return done(Accepted{200, hit->ref});
      return done(fail(409, "idempotency_conflict",
                       "this Idempotency-Key was used with a different request body within 24 hours",
                       "Idempotency-Key"));
    }
    pending_keys_.insert(j.idempotency_key);
  }

  message::BuildOptions mo;
  mo.message_id_domain = config_.message_id_domain;
  mo.date_unix = j.submitted;
  j.message = message::build_message(*req, mo);

  batcher_->insert(std::move(j), [this, done = std::move(done)](job::Job&& stored, bool ok, const std::string& error) {
    if (!stored.idempotency_key.empty()) {
      std::lock_guard lock(idem_mu_);
      pending_keys_.erase(stored.idempotency_key);
    }
    if (!ok) {
      done(fail(503, "store_unavailable", "the job could not be stored; nothing was queued, retry shortly"));
      return;
    }
    ++queued_;
    ++submitted_total_;
    spdlog::info("job {} accepted: {} recipient(s), {} bytes", stored.ref, stored.recipients.size(),
                 stored.message.size());
    std::string ref = stored.ref;
    dispatcher_->offer(std::move(stored));
    done(Accepted{202, std::move(ref)});
  });
}

Result<job::Job> Gateway::lookup(std::string_view ref_view) {
  if (!is_uuid(ref_view))
    return fail(400, "invalid_ref", "a job ref is a UUID like f683a80c-ba2d-4285-8e1d-4aeaeb37a729", "ref");
  std::string ref(ref_view);
  std::transform(ref.begin(), ref.end(), ref.begin(), [](unsigned char c) { return std::tolower(c); });
  std::int64_t now = clock_.now_ms();
  auto expired = [&](const job::Job& j) { return j.completed && j.completed + config_.status_ttl_s <= now / 1000; };
  std::optional<job::Job> j = cache_.get(ref, now);
  if (!j) {
    std::uint64_t generation = cache_.generation(ref);
    try {
      j = store_->find(ref);
    } catch (const store::StoreError& e) {
      return fail(503, "store_unavailable", "the job store cannot be read; retry shortly");
    }
    if (j && !expired(*j)) cache_.put(*j, cache_expiry(j->completed), generation);
  }
  if (!j || expired(*j))
    return fail(404, "unknown_ref", "no job with this ref (never issued, or its status expired)", "ref");
  return std::move(*j);
}

Result<std::string> Gateway::status(std::string_view ref) {
  auto j = lookup(ref);
  if (!j) return tl::unexpected(j.error());
  return job::status_json(*j).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::uint64_t Gateway::watch_status(std::string_view ref, std::string since, std::chrono::milliseconds wait,
                                    StatusDone done) {
  auto j = lookup(ref);
  if (!j) {
    done(tl::unexpected(j.error()));
    return 0;
  }
  std::string word = job::job_status(*j);
  if (since.empty()) since = word;
  if (word != since || word == "completed" || wait.count() <= 0 || stopping_) {
    done(job::status_json(*j).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    return 0;
  }
  std::uint64_t id;
  {
    std::lock_guard lock(watch_mu_);
    auto deadline = std::chrono::steady_clock::now() + wait;
    id = ++next_watch_id_;
    watchers_[j->ref].push_back(Watcher{id, since, deadline, std::move(done)});
    deadlines_.emplace(deadline, std::make_pair(j->ref, id));
    watch_cv_.notify_one();
  }
  // The status may have moved on between the read above and the registration.
  auto again = lookup(ref);
  if (again && job::job_status(*again) != since) {
    for (auto& w : take_changed_watchers(again->ref, job::job_status(*again))) w.done(status(again->ref));
  }
  return id;
}

std::vector<Gateway::Watcher> Gateway::take_changed_watchers(const std::string& ref, std::string_view word) {
  std::vector<Watcher> out;
  std::lock_guard lock(watch_mu_);
  auto it = watchers_.find(ref);
  if (it == watchers_.end()) return out;
  auto& list = it->second;
  for (auto w = list.begin(); w != list.end();) {
    if (w->since != word) {
      out.push_back(std::move(*w));
      w = list.erase(w);
    } else {
      ++w;
    }
  }
  if (list.empty()) watchers_.erase(it);
  return out;
}

void Gateway::release_watch(const std::string& ref_in, std::uint64_t id) {
  std::string ref = ref_in;
  std::transform(ref.begin(), ref.end(), ref.begin(), [](unsigned char c) { return std::tolower(c); });
  std::optional<Watcher> fire;
  {
    std::lock_guard lock(watch_mu_);
    auto it = watchers_.find(ref);
    if (it == watchers_.end()) return;
    auto& list = it->second;
    for (auto w = list.begin(); w != list.end(); ++w) {
      if (w->id != id) continue;
      fire = std::move(*w);
      list.erase(w);
      break;
    }
    if (list.empty()) watchers_.erase(it);
  }
  if (fire) fire->done(status(ref));  // its deadline entry finds nothing later and is dropped
}

void Gateway::watcher_loop() {
  std::unique_lock lock(watch_mu_);
  while (!watch_stopping_) {
    if (deadlines_.empty()) {
      watch_cv_.wait(lock);
      continue;
    }
    auto first = deadlines_.begin()->first;
    if (std::chrono::steady_clock::now() < first) {
      watch_cv_.wait_until(lock, first);
      continue;
    }
    std::vector<std::pair<std::string, Watcher>> fire;
    auto now = std::chrono::steady_clock::now();
    while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
      auto [ref, id] = deadlines_.begin()->second;
      deadlines_.erase(deadlines_.begin());
      auto it = watchers_.find(ref);
      if (it == watchers_.end()) continue;
      auto& list = it->second;
      for (auto w = list.begin(); w != list.end(); ++w) {
        if (w->id != id) continue;
        fire.emplace_back(ref, std::move(*w));
        list.erase(w);
        break;
      }
      if (list.empty()) watchers_.erase(it);
    }
    lock.unlock();
    for (auto& [ref, w] : fire) w.done(status(ref));  // a purged ref answers 404, as a plain read would
    lock.lock();
  }
}

void Gateway::release_watchers() {
  std::unordered_map<std::string, std::vector<Watcher>> all;
  {
    std::lock_guard lock(watch_mu_);
    all.swap(watchers_);
    deadlines_.clear();
  }
  for (auto& [ref, list] : all)
    for (auto& w : list) w.done(status(ref));
}

std::int64_t Gateway::cache_expiry(std::int64_t completed_s) const {
  return completed_s ? (completed_s + config_.status_ttl_s) * 1000 : kNever;
}

nlohmann::json Gateway::queue_stats() const {
  std::int64_t now = clock_.now_ms();
  std::int64_t oldest_age = 0;
  try {
    if (auto oldest = store_->oldest_queued_submitted()) oldest_age = std::max<std::int64_t>(0, now / 1000 - *oldest);
  } catch (const store::StoreError&) {
  }
  return {{"queued", queued_.load()},
          {"in_flight", dispatcher_ ? dispatcher_->in_flight() : 0},
          {"deferred", deferred_.load()},
          {"completed", completed_.load()},
          {"failed", failed_.load()},
          {"workers", config_.threads},
          {"workers_busy", busy_.load()},
          {"oldest_queued_age_s", oldest_age},
          {"submitted_total", submitted_total_.load()},
          {"delivered_total", delivered_total_.load()},
          {"failed_total", failed_total_.load()},
          {"uptime_s", (now - started_ms_) / 1000},
          {"paused", false}};
}

void Gateway::worker_loop() {
  std::unique_ptr<smtp::Transport> transport = transports_();
  while (auto job = dispatcher_->take()) {
    ++busy_;
    attempt(*job, *transport);
    if (--busy_ == 0) {
      std::lock_guard lock(busy_mu_);
      busy_cv_.notify_all();
    }
  }
}

void Gateway::attempt(job::Job& j, smtp::Transport& transport) {
  smtp::Envelope env{j.ref, j.sender, {}};
  std::vector<std::size_t> pending;
  for (std::size_t i = 0; i < j.recipients.size(); ++i) {
    if (job::is_final(j.recipients[i].state)) continue;
    pending.push_back(i);
    env.recipients.push_back(j.recipients[i].address);
  }
  std::int64_t attempts_before = 0;
  for (auto i : pending) attempts_before = std::max<std::int64_t>(attempts_before, j.recipients[i].attempts);
  env.before_data = [&] { journal_->begin(j.seq, attempts_before); };
  std::vector<queue::AttemptReply> replies;
  if (!pending.empty()) replies = transport.deliver(env, j.message);

  std::int64_t now_ms = clock_.now_ms();
  std::int64_t now = now_ms / 1000;
  std::uint64_t seed = fnv1a64(j.ref);
  for (std::size_t k = 0; k < pending.size(); ++k) {
    auto& r = j.recipients[pending[k]];
    queue::apply_attempt(r, replies[k], j.submitted, now, seed, retry_);
    switch (r.state) {
      case job::RecipientState::kDelivered:
        ++delivered_total_;
        spdlog::info("job {} {} delivered: {} {}", j.ref, r.address, r.smtp_code, r.smtp_reply);
        break;
      case job::RecipientState::kFailed:
        ++failed_total_;
        spdlog::warn("job {} {} failed ({}): {} {}", j.ref, r.address, r.reason, r.smtp_code, r.smtp_reply);
        break;
      default:
        spdlog::info("job {} {} deferred (attempt {}, next in {}s): {} {}", j.ref, r.address, r.attempts,
                     r.next_attempt - now, r.smtp_code, r.smtp_reply);
    }
  }

  batcher_->update(update_after_attempt(std::move(j), now_ms));
}

void Gateway::on_committed_update(const store::JobUpdate& u) {
  journal_->end(u.seq);
  (u.first_attempt ? queued_ : deferred_) -= 1;
  if (u.outcome == store::Outcome::kDelivered)
    ++completed_;
  else if (u.outcome == store::Outcome::kFailed)
    ++failed_;
  else
    ++deferred_;
  cache_.update_if_present(u.ref, u.recipients, true, u.completed, cache_expiry(u.completed));
  dispatcher_->release(u.seq, u.next_at_ms);
  // Long-polls waiting on this job: its word is now "completed" or "processing".
  auto fire = take_changed_watchers(u.ref, u.outcome == store::Outcome::kPending ? "processing" : "completed");
  if (!fire.empty()) {
    job::Job j;
    j.ref = u.ref;
    j.submitted = u.submitted;
    j.started = true;
    j.completed = u.completed;
    j.recipients = u.recipients;
    std::string body = job::status_json(j).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    for (auto& w : fire) w.done(body);
  }
}

bool Gateway::stop(std::chrono::milliseconds grace) {
  if (stopping_.exchange(true)) return true;
  if (!dispatcher_) return true;
  release_watchers();
  {
    std::lock_guard lock(watch_mu_);
    watch_stopping_ = true;
    watch_cv_.notify_one();
  }
  watch_thread_.join();
  dispatcher_->stop();
  bool clean;
  {
    std::unique_lock lock(busy_mu_);
    clean = busy_cv_.wait_for(lock, grace, [&] { return busy_ == 0; });
  }
  if (clean) {
    for (auto& t : workers_) t.join();
  } else {
    spdlog::warn("{} delivery transaction(s) still running after the shutdown grace; their jobs stay queued",
                 busy_.load());
    for (auto& t : workers_) t.detach();
  }
  workers_.clear();
  batcher_->stop();
  return clean;
}

}  // namespace websmtp::service
