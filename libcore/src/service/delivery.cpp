#include "websmtp/service/delivery.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "websmtp/common/hash.hpp"
#include "websmtp/common/idn.hpp"
#include "websmtp/common/thread.hpp"

namespace websmtp::service {

namespace {
// Recipients whose MX host had every session in use (MX_MAX_PER_HOST) are tried again this
// soon, with no attempt counted: a worker never waits for a session itself.
constexpr std::int64_t kBusyRetryMs = 1000;
}  // namespace

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
    // Whole-second backoff, measured from now; none deferred (recipients left untried): now.
    u.next_at_ms = next == INT64_MAX ? now_ms : next * 1000 + now_ms % 1000;
  }
  return u;
}

void fail_unattempted(job::Recipient& r, const char* reason, std::int64_t now_s) {
  r.state = job::RecipientState::kFailed;
  r.reason = reason;
  r.time = now_s;
  r.next_attempt = 0;
}

std::vector<store::AttemptRecord> apply_interrupted_attempt(job::Job& j, const queue::RetryOptions& retry,
                                                            std::int64_t now_ms) {
  smtp::Reply lost{0, "websmtpd stopped while the message was being sent; the outcome is unknown", true};
  std::vector<store::AttemptRecord> history;
  for (auto& r : j.recipients) {
    if (job::is_final(r.state)) continue;
    queue::apply_attempt(r, lost, j.submitted, now_ms / 1000, fnv1a64(j.ref), retry);
    if (r.state == job::RecipientState::kDeferred) r.next_attempt = now_ms / 1000;  // ours, not the peer's: now
    history.push_back({r.address, now_ms / 1000, 0, lost.text, {}});
  }
  return history;
}

void recover_interrupted_attempts(store::Store& store, queue::InflightJournal& journal,
                                  const queue::RetryOptions& retry, const Clock& clock) {
  std::vector<store::JobUpdate> updates;
  std::int64_t now_ms = clock.now_ms();
  for (const auto& e : journal.recover()) {
    auto j = store.find_seq(e.seq);
    if (!j || j->completed) continue;
    std::int64_t attempts = 0;
    for (const auto& r : j->recipients)
      if (!job::is_final(r.state)) attempts = std::max<std::int64_t>(attempts, r.attempts);
    if (attempts != e.attempts_before) continue;  // that attempt's outcome was committed
    std::vector<store::AttemptRecord> history = apply_interrupted_attempt(*j, retry, now_ms);
    spdlog::warn("job {}: interrupted while its message was on the wire; flagged as a possible duplicate", j->ref);
    updates.push_back(update_after_attempt(std::move(*j), now_ms));
    updates.back().attempts = std::move(history);
  }
  if (!updates.empty()) store.update(updates);
  journal.reset();
}

DeliveryWorkers::DeliveryWorkers(Options options, TransportFactory transports, queue::Dispatcher& dispatcher,
                                 store::WriteBatcher& batcher, queue::InflightJournal& journal, Metrics& metrics,
                                 const Clock& clock, Suppressions* suppressions)
    : options_(options),
      transports_(std::move(transports)),
      dispatcher_(dispatcher),
      batcher_(batcher),
      journal_(journal),
      metrics_(metrics),
      clock_(clock),
      suppressions_(suppressions) {}

DeliveryWorkers::~DeliveryWorkers() { stop(std::chrono::milliseconds(0)); }

void DeliveryWorkers::start() {
  for (int i = 0; i < options_.threads; ++i)
    threads_.emplace_back([this] {
      name_this_thread("ws-worker");
      // Delivery is throughput work on a durable queue; a 202 is what a client waits for. On
      // a busy CPU the workers yield to the HTTP and commit threads (the backlog drains when
      // the burst ends); on an idle one, nice changes nothing.
      set_this_thread_nice(options_.nice);
      run();
    });
}

bool DeliveryWorkers::stop(std::chrono::milliseconds grace) {
  if (threads_.empty()) return true;
  bool clean;
  {
    std::unique_lock lock(busy_mu_);
    clean = busy_cv_.wait_for(lock, grace, [&] { return busy_ == 0; });
  }
  if (clean) {
    for (auto& t : threads_) t.join();
  } else {
    spdlog::warn("{} delivery transaction(s) still running after the shutdown grace; their jobs stay queued",
                 busy_.load());
    for (auto& t : threads_) t.detach();
  }
  threads_.clear();
  return clean;
}

void DeliveryWorkers::run() {
  std::unique_ptr<smtp::Transport> transport = transports_();
  while (auto job = dispatcher_.take()) {
    ++busy_;
    attempt(*job, *transport);
    if (--busy_ == 0) {
      std::lock_guard lock(busy_mu_);
      busy_cv_.notify_all();
    }
  }
}

void DeliveryWorkers::attempt(job::Job& j, smtp::Transport& transport) {
  // Taken over from a node that stopped with this job's message on the wire: that attempt is
  // recorded first (as a restart does from the in-flight journal), then this one is made.
  std::vector<store::AttemptRecord> history;
  if (j.interrupted_on_wire) {
    spdlog::warn("job {}: taken over from a node that stopped while its message was on the wire; flagged as a "
                 "possible duplicate",
                 j.ref);
    history = apply_interrupted_attempt(j, options_.retry, clock_.now_ms());
    j.interrupted_on_wire = false;
  }
  smtp::Envelope env{j.ref, j.sender, {}};
  std::vector<std::size_t> pending;
  // RCPT TO carries an internationalised domain as its A-labels (api.md), in relay and MX mode
  // alike; the status keeps the address as the client gave it.
  std::vector<std::string> rcpts;
  for (std::size_t i = 0; i < j.recipients.size(); ++i) {
    auto& r = j.recipients[i];
    if (job::is_final(r.state)) continue;
    if (suppressions_ && suppressions_->contains(r.address)) {
      std::int64_t now_ms = clock_.now_ms();
      fail_unattempted(r, "suppressed", now_ms / 1000);
      metrics_.recipient_failed_unattempted(r);
      spdlog::warn("job {} {} failed (suppressed): not attempted", j.ref, r.address);
      continue;
    }
    pending.push_back(i);
    rcpts.push_back(ascii_domain_address(j.recipients[i].address));
  }
  env.recipients.assign(rcpts.begin(), rcpts.end());
  std::int64_t attempts_before = 0;
  for (auto i : pending) attempts_before = std::max<std::int64_t>(attempts_before, j.recipients[i].attempts);
  env.before_data = [&] {
    journal_.begin(j.seq, attempts_before);
    if (options_.on_wire) options_.on_wire(j.seq);
  };
  std::vector<smtp::Reply> replies;
  if (!pending.empty()) replies = transport.deliver(env, j.message);

  std::int64_t now_ms = clock_.now_ms();
  std::int64_t now = now_ms / 1000;
  std::uint64_t seed = fnv1a64(j.ref);
  std::vector<store::SuppressionRecord> suppress;
  history.reserve(history.size() + pending.size());
  bool busy = false;  // some recipients were not tried: their MX host had every session in use
  for (std::size_t k = 0; k < pending.size(); ++k) {
    auto& r = j.recipients[pending[k]];
    if (replies[k].busy) {  // no attempt: the recipient stays as it was, due again shortly
      busy = true;
      if (r.state == job::RecipientState::kDeferred) r.next_attempt = std::max(r.next_attempt, now + 1);
      continue;
    }
    queue::apply_attempt(r, replies[k], j.submitted, now, seed, options_.retry);
    metrics_.recipient_result(r, j.ref, j.submitted, now_ms);
    history.push_back({r.address, now, r.smtp_code, r.smtp_reply, r.host});
    // Only the peer's verdict on this recipient's RCPT names the mailbox: a 5.1.x to DATA or to
    // the final dot is about the message, and suppresses nobody.
    if (suppressions_ && r.state == job::RecipientState::kFailed && replies[k].rcpt_reply &&
        Suppressions::is_mailbox_reject(r.smtp_code, r.smtp_reply)) {
      if (auto s = suppressions_->bounced(r.address, r.smtp_code, r.smtp_reply, now)) {
        spdlog::info("{} suppressed: the mailbox was refused ({} {})", r.address, r.smtp_code, r.smtp_reply);
        suppress.push_back(std::move(*s));
      }
    }
    switch (r.state) {
      case job::RecipientState::kDelivered:
        spdlog::info("job {} {} delivered: {} {}", j.ref, r.address, r.smtp_code, r.smtp_reply);
        break;
      case job::RecipientState::kFailed:
        spdlog::warn("job {} {} failed ({}): {} {}", j.ref, r.address, r.reason, r.smtp_code, r.smtp_reply);
        break;
      default:
        spdlog::info("job {} {} deferred (attempt {}, next in {}s): {} {}", j.ref, r.address, r.attempts,
                     r.next_attempt - now, r.smtp_code, r.smtp_reply);
    }
  }
  store::JobUpdate u = update_after_attempt(std::move(j), now_ms);
  if (busy) {
    // The job counts as started ("processing") even when nothing was tried: the queue
    // figures move it from queued to deferred, as for any attempt.
    // (next_at_ms is now when no recipient is deferred: none was tried.)
    std::int64_t soon = now_ms + kBusyRetryMs;
    if (!u.completed) u.next_at_ms = u.next_at_ms && *u.next_at_ms > now_ms ? std::min(*u.next_at_ms, soon) : soon;
  }
  u.attempts = std::move(history);
  u.suppress = std::move(suppress);
  batcher_.update(std::move(u));
}

}  // namespace websmtp::service
