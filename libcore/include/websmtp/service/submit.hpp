#pragma once
// Accepting mail: a request is validated, rendered once into the message every attempt will
// send, and handed to the group commit; the caller is answered only after its commit.
#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "websmtp/auth/status_token.hpp"
#include "websmtp/common/clock.hpp"
#include "websmtp/common/error.hpp"
#include "websmtp/job/model.hpp"
#include "websmtp/message/dkim.hpp"
#include "websmtp/queue/dispatcher.hpp"
#include "websmtp/service/caller.hpp"
#include "websmtp/service/idempotency.hpp"
#include "websmtp/service/metrics.hpp"
#include "websmtp/store/write_batcher.hpp"
#include "websmtp/webhook/lookups.hpp"

namespace websmtp::service {

struct Accepted {
  std::string ref;
  bool replayed = false;     // an Idempotency-Key named an earlier, identical request
  std::string status_token;  // with private statuses (authentication on)
};
struct BatchAccepted {
  std::vector<std::string> refs;  // in the order the jobs were given
  bool replayed = false;
  std::vector<std::string> status_tokens;  // likewise, with private statuses
};
using SubmitDone = std::function<void(Result<Accepted>)>;
using BatchDone = std::function<void(Result<BatchAccepted>)>;

class SubmitService {
 public:
  struct Options {
    int max_recipients = 1000;
    std::string message_id_domain;
    std::size_t max_batch = 100;
    const auth::StatusTokens* status_tokens = nullptr;  // set when statuses are private
    const message::dkim::Signer* dkim = nullptr;        // signs each rendered message once
    // Webhooks: a job's callback_url is refused unless WEBHOOK_SECRET is set (webhooks_signed),
    // and where it points is checked unless WEBHOOK_ALLOW_PRIVATE.
    bool webhooks_signed = false;
    bool webhook_allow_private = false;
  };
  SubmitService(Options options, store::Store& store, store::WriteBatcher& batcher, queue::Dispatcher& dispatcher,
                Metrics& metrics, const Clock& clock);

  // Validates and stores one job. `done` runs exactly once: on this thread for a refused
  // request, otherwise on the group commit's thread after the commit (never before it).
  void submit(const Caller& caller, std::string_view body, std::string_view idempotency_key, SubmitDone done);
  // {"jobs": [...]}: all valid and committed together, or none stored. An invalid job is
  // reported with its index in `field` (jobs[3].to).
  void submit_batch(const Caller& caller, std::string_view body, std::string_view idempotency_key, BatchDone done);

  // From now on every submit is refused (kUnavailable, shutting_down).
  void stop() { stopping_ = true; }

 private:
  job::Job make_job(job::MailRequest&& req, std::int64_t now_ms) const;
  // The caller's policy, then its quotas (`jobs` of them), for jobs about to be stored.
  std::optional<Error> admit(const Caller& caller, std::span<const job::Job> jobs, std::int64_t now_ms,
                             bool batch) const;
  std::string token_for(const Caller& caller, const std::string& ref) const;
  // The callback_url's destination (resolved: this does DNS), or nullopt when it has none.
  std::optional<Error> check_callback(const job::MailRequest& req) const;
  // True when check_callback() would resolve a host name and this is not a lookup thread: the
  // submit is then run again on one (lookups_), off the HTTP thread.
  bool resolve_elsewhere(const job::MailRequest& req) const;
  // Queues `again` on a lookup thread; false when too many wait (the caller answers 503).
  bool resolve_later(std::function<void()> again);
  void accepted(job::Job&& stored);
  Result<std::vector<std::string>> replay_of(const std::string& key, const std::string& request_hash);

  Options options_;
  store::WriteBatcher& batcher_;
  queue::Dispatcher& dispatcher_;
  Metrics& metrics_;
  const Clock& clock_;
  IdempotencyKeys idempotency_;
  std::atomic<bool> stopping_{false};
  std::unique_ptr<webhook::Lookups> lookups_;  // last: its threads stop first
};

}  // namespace websmtp::service
