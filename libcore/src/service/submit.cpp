#include "websmtp/service/submit.hpp"

#include <spdlog/spdlog.h>

#include "websmtp/common/hash.hpp"
#include "websmtp/common/idn.hpp"
#include "websmtp/common/uuid.hpp"
#include "websmtp/job/envelope.hpp"
#include "websmtp/job/validation.hpp"
#include "websmtp/message/mime.hpp"
#include "websmtp/webhook/destination.hpp"

namespace websmtp::service {

namespace {

tl::unexpected<Error> shutting_down() {
  return fail(ErrorKind::kUnavailable, "shutting_down", "the server is shutting down; retry shortly");
}
tl::unexpected<Error> lookups_busy() {
  return fail(ErrorKind::kUnavailable, "callback_lookups_busy",
              "too many callback_url host names are being resolved; retry shortly", "callback_url");
}
tl::unexpected<Error> not_stored() {
  return fail(ErrorKind::kUnavailable, "store_unavailable",
              "the job could not be stored; nothing was queued, retry shortly");
}

// Prefixes an error about one job of a batch with that job's place: jobs[3].to.
Error in_batch(Error e, std::size_t index) {
  std::string where = "jobs[" + std::to_string(index) + "]";
  e.field = e.field.empty() ? where : where + "." + e.field;
  e.message = where + ": " + e.message;
  return e;
}

}  // namespace

SubmitService::SubmitService(Options options, store::Store& store, store::WriteBatcher& batcher,
                             queue::Dispatcher& dispatcher, Metrics& metrics, const Clock& clock)
    : options_(std::move(options)),
      batcher_(batcher),
      dispatcher_(dispatcher),
      metrics_(metrics),
      clock_(clock),
      idempotency_(store) {
  if (options_.webhooks_signed && !options_.webhook_allow_private) lookups_ = std::make_unique<webhook::Lookups>();
}

job::Job SubmitService::make_job(job::MailRequest&& req, std::int64_t now_ms) const {
  job::Job j;
  j.ref = new_uuid_v7(now_ms);
  j.submitted = now_ms / 1000;
  // The envelope carries an internationalised domain as its A-labels (api.md); the From header does too
  // (build_message), and the DKIM key is looked up by, and signs as (d=), that form.
  j.sender = ascii_domain_address(req.from.address);
  j.recipients = job::envelope_recipients(req);
  j.callback_url = req.callback_url.value_or("");
  message::BuildOptions mo;
  mo.message_id_domain = options_.message_id_domain;
  mo.date_unix = j.submitted;
  j.message = message::build_message(req, mo);
  // Signed here, once: the stored bytes are what every attempt sends, so retries carry the same signature.
  if (options_.dkim) options_.dkim->sign(j.message, j.sender, j.submitted);
  return j;
}

std::optional<Error> SubmitService::admit(const Caller& caller, std::span<const job::Job> jobs, std::int64_t now_ms,
                                          bool batch) const {
  if (!caller.principal) return std::nullopt;
  const auth::Principal& p = *caller.principal;
  if (p.key)
    for (std::size_t i = 0; i < jobs.size(); ++i)
      if (auto e = auth::check_message_size(p.key->policy, jobs[i].message.size()))
        return batch ? in_batch(std::move(*e), i) : std::move(*e);
  auth::Decision d;
  return auth::charge(p, static_cast<std::int64_t>(jobs.size()), now_ms, d);
}

std::optional<Error> SubmitService::check_callback(const job::MailRequest& req) const {
  if (!req.callback_url) return std::nullopt;
  if (!options_.webhooks_signed)
    return Error{ErrorKind::kInvalid, "webhooks_disabled",
                 "callback_url cannot be used: this server has no WEBHOOK_SECRET, and unsigned webhooks are not sent",
                 "callback_url"};
  auto url = webhook::parse_callback_url(*req.callback_url, "callback_url");
  if (!url) return std::move(url.error());
  if (options_.webhook_allow_private) return std::nullopt;
  if (auto checked = webhook::checked_addresses(*url, false, "callback_url"); !checked)
    return std::move(checked.error());
  return std::nullopt;
}

bool SubmitService::resolve_elsewhere(const job::MailRequest& req) const {
  if (!req.callback_url || !lookups_ || webhook::Lookups::on_this_thread()) return false;
  auto url = webhook::parse_callback_url(*req.callback_url, "callback_url");
  return url && !webhook::classify_ip(url->host);  // an IP literal is checked at once
}

bool SubmitService::resolve_later(std::function<void()> again) { return lookups_->post(std::move(again)); }

std::string SubmitService::token_for(const Caller& caller, const std::string& ref) const {
  return caller.private_statuses && options_.status_tokens ? options_.status_tokens->token(ref) : std::string();
}

// A keyed request whose key another node's commit took between this node's check and its own
// commit (a shared store: the store left the job out, seq 0): answered as the replay, or the
// conflict, it turned out to be. Runs on the commit thread; rare.
Result<std::vector<std::string>> SubmitService::replay_of(const std::string& key, const std::string& request_hash) {
  spdlog::info("Idempotency-Key taken by another node between the check and the commit: answered as its replay");
  auto refs = idempotency_.reserve(key, request_hash, clock_.now_ms() / 1000);
  if (refs && refs->empty()) {  // the other job is gone again (its key expired): retry as new
    idempotency_.release(key);
    return not_stored();
  }
  return refs;
}

void SubmitService::accepted(job::Job&& stored) {
  spdlog::debug("job {} accepted: {} recipient(s), {} bytes", stored.ref, stored.recipients.size(),
                stored.message.size());
  dispatcher_.offer(std::move(stored));
}

void SubmitService::submit(const Caller& caller, std::string_view body, std::string_view idempotency_key,
                           SubmitDone done) {
  if (stopping_) return done(shutting_down());
  auto req = job::parse_request(body, job::Limits{options_.max_recipients});
  if (!req) return done(tl::unexpected(std::move(req.error())));
  if (caller.principal && caller.principal->key)
    if (auto e = auth::check_policy(caller.principal->key->policy, *req)) return done(tl::unexpected(std::move(*e)));
  std::int64_t now_ms = clock_.now_ms();

  // A replay is answered before anything is rendered or resolved (the callback's host may not
  // resolve any more: the job was accepted all the same).
  std::string key, hash;
  if (!idempotency_key.empty()) {
    auto scoped = IdempotencyKeys::scoped(caller, idempotency_key);
    if (!scoped) return done(tl::unexpected(std::move(scoped.error())));
    hash = hex64(fnv1a64(body));
    auto replay = idempotency_.reserve(*scoped, hash, now_ms / 1000);
    if (!replay) return done(tl::unexpected(std::move(replay.error())));
    if (!replay->empty()) {
      std::string token = token_for(caller, replay->front());
      return done(Accepted{std::move(replay->front()), true, std::move(token)});
    }
    key = std::move(*scoped);
  }
  if (resolve_elsewhere(*req)) {
    if (!key.empty()) idempotency_.release(key);  // taken again on the lookup thread
    auto again = [this, caller, body = std::string(body), key = std::string(idempotency_key), done]() mutable {
      submit(caller, body, key, std::move(done));
    };
    if (!resolve_later(std::move(again))) done(lookups_busy());
    return;
  }
  if (auto e = check_callback(*req)) {
    if (!key.empty()) idempotency_.release(key);
    return done(tl::unexpected(std::move(*e)));
  }
  job::Job j = make_job(std::move(*req), now_ms);
  if (auto e = admit(caller, std::span<const job::Job>(&j, 1), now_ms, false)) {
    if (!key.empty()) idempotency_.release(key);
    return done(tl::unexpected(std::move(*e)));
  }
  j.idempotency_key = std::move(key);
  j.request_hash = std::move(hash);
  j.submitted_by = caller.id;
  bool tokens = caller.private_statuses;

  batcher_.insert(std::move(j), [this, tokens, done = std::move(done)](job::Job&& stored, bool ok, const std::string&) {
    if (!stored.idempotency_key.empty()) idempotency_.release(stored.idempotency_key);
    if (!ok) return done(not_stored());
    if (stored.seq == 0) {
      auto refs = replay_of(stored.idempotency_key, stored.request_hash);
      if (!refs) return done(tl::unexpected(std::move(refs.error())));
      Accepted a{std::move(refs->front()), true, {}};
      if (tokens && options_.status_tokens) a.status_token = options_.status_tokens->token(a.ref);
      return done(std::move(a));
    }
    metrics_.submitted(1);
    Accepted a{stored.ref, false, {}};
    if (tokens && options_.status_tokens) a.status_token = options_.status_tokens->token(a.ref);
    accepted(std::move(stored));
    done(std::move(a));
  });
}

void SubmitService::submit_batch(const Caller& caller, std::string_view body, std::string_view idempotency_key,
                                 BatchDone done) {
  if (stopping_) return done(shutting_down());
  auto root = job::parse_json_object(body);
  if (!root) return done(tl::unexpected(std::move(root.error())));
  auto list = root->find("jobs");
  if (list == root->end() || list->is_null())
    return done(fail(ErrorKind::kInvalid, "missing_field",
                     "jobs is required: an array of 1 to " + std::to_string(options_.max_batch) + " jobs", "jobs"));
  if (!list->is_array()) return done(fail(ErrorKind::kInvalid, "invalid_type", "jobs must be an array", "jobs"));
  if (list->empty() || list->size() > options_.max_batch)
    return done(
        fail(ErrorKind::kUnprocessable, "invalid_batch_size",
             "jobs must hold 1 to " + std::to_string(options_.max_batch) + " jobs, not " + std::to_string(list->size()),
             "jobs"));
  for (auto it = root->begin(); it != root->end(); ++it)
    if (it.key() != "jobs")
      return done(
          fail(ErrorKind::kInvalid, "unknown_field", "a batch has only \"jobs\", not \"" + it.key() + "\"", it.key()));

  std::int64_t now_ms = clock_.now_ms();
  std::vector<job::MailRequest> reqs;
  reqs.reserve(list->size());
  for (std::size_t i = 0; i < list->size(); ++i) {
    auto req = job::parse_job((*list)[i], job::Limits{options_.max_recipients});
    if (!req) return done(tl::unexpected(in_batch(std::move(req.error()), i)));
    if (caller.principal && caller.principal->key)
      if (auto e = auth::check_policy(caller.principal->key->policy, *req))
        return done(tl::unexpected(in_batch(std::move(*e), i)));
    reqs.push_back(std::move(*req));
  }

  // The key covers the whole batch: the first job holds it, with a fingerprint that cannot
  // match a /mail/send body; the store finds every ref of the batch from it.
  std::string key, batch_hash;
  if (!idempotency_key.empty()) {
    auto scoped = IdempotencyKeys::scoped(caller, idempotency_key);
    if (!scoped) return done(tl::unexpected(std::move(scoped.error())));
    key = std::move(*scoped);
    batch_hash = hex64(fnv1a64(body) ^ 0x6261746368ULL);  // "batch"
    auto replay = idempotency_.reserve(key, batch_hash, now_ms / 1000);
    if (!replay) return done(tl::unexpected(std::move(replay.error())));
    if (!replay->empty()) {
      BatchAccepted out{std::move(*replay), true, {}};
      if (caller.private_statuses)
        for (const auto& r : out.refs) out.status_tokens.push_back(token_for(caller, r));
      return done(std::move(out));
    }
  }
  // Callback hosts are resolved on a lookup thread, before anything is rendered.
  for (std::size_t i = 0; i < reqs.size(); ++i) {
    if (!resolve_elsewhere(reqs[i])) continue;
    if (!key.empty()) idempotency_.release(key);  // taken again on the lookup thread
    auto again = [this, caller, body = std::string(body), key = std::string(idempotency_key), done]() mutable {
      submit_batch(caller, body, key, std::move(done));
    };
    if (!resolve_later(std::move(again))) done(tl::unexpected(in_batch(lookups_busy().value(), i)));
    return;
  }
  std::vector<job::Job> jobs;
  jobs.reserve(reqs.size());
  for (std::size_t i = 0; i < reqs.size(); ++i) {
    if (auto e = check_callback(reqs[i])) {
      if (!key.empty()) idempotency_.release(key);
      return done(tl::unexpected(in_batch(std::move(*e), i)));
    }
    jobs.push_back(make_job(std::move(reqs[i]), now_ms));
    jobs.back().submitted_by = caller.id;
  }
  if (!key.empty()) {
    jobs.front().idempotency_key = key;
    jobs.front().request_hash = batch_hash;
  }
  if (auto e = admit(caller, jobs, now_ms, true)) {
    if (!key.empty()) idempotency_.release(key);
    return done(tl::unexpected(std::move(*e)));
  }
  bool tokens = caller.private_statuses;

  batcher_.insert_many(std::move(jobs), [this, key, tokens, done = std::move(done)](std::vector<job::Job>&& stored,
                                                                                    bool ok, const std::string&) {
    if (!key.empty()) idempotency_.release(key);
    if (!ok) return done(not_stored());
    if (stored.front().seq == 0) {
      auto refs = replay_of(key, stored.front().request_hash);
      if (!refs) return done(tl::unexpected(std::move(refs.error())));
      BatchAccepted out{std::move(*refs), true, {}};
      if (tokens && options_.status_tokens)
        for (const auto& r : out.refs) out.status_tokens.push_back(options_.status_tokens->token(r));
      return done(std::move(out));
    }
    metrics_.submitted(static_cast<std::int64_t>(stored.size()));
    BatchAccepted out;
    out.refs.reserve(stored.size());
    for (auto& j : stored) {
      out.refs.push_back(j.ref);
      if (tokens && options_.status_tokens) out.status_tokens.push_back(options_.status_tokens->token(j.ref));
      accepted(std::move(j));
    }
    done(std::move(out));
  });
}

}  // namespace websmtp::service
