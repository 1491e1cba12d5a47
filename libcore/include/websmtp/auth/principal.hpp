#pragma once
// An authenticated caller: an API key or a JWT subject, with what it may do and the rate
// limits that apply to it. Built by the daemon's authentication step; carried in
// service::Caller into the use cases, which enforce the policy once the request is parsed.
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "websmtp/auth/keys.hpp"
#include "websmtp/auth/rate_limit.hpp"
#include "websmtp/common/error.hpp"
#include "websmtp/job/model.hpp"

namespace websmtp::auth {

struct Principal {
  enum class Kind { kKey, kJwt };
  Kind kind = Kind::kKey;
  std::string id;                       // "key:<id>" or "sub:<subject>": the caller's identity
  std::shared_ptr<const ApiKey> key;    // kKey
  std::vector<std::string> scopes;      // kJwt
  // Jobs submitted: up to two quotas (per minute, per day), counted under `id`.
  RateLimiter* limiter = nullptr;
  Quota per_minute, per_day;
};

// Charges `jobs` submitted jobs to the principal's quotas (both or neither): kRateLimited with
// retry_after_s when over one. `d` receives the RateLimit-* values either way.
std::optional<Error> charge(const Principal& p, std::int64_t jobs, std::int64_t now_ms, Decision& d);
// The RateLimit-* values without charging (limit 0: no quota applies).
Decision peek(const Principal& p, std::int64_t now_ms);

// What a key's policy says about a parsed job: kForbidden with `field` naming the part at
// fault (from, to[2], cc[0], ...).
std::optional<Error> check_policy(const KeyPolicy& policy, const job::MailRequest& req);
// max_message_bytes against the rendered message.
std::optional<Error> check_message_size(const KeyPolicy& policy, std::size_t message_bytes);

}  // namespace websmtp::auth
