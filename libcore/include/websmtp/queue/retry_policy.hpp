#pragma once
// What one delivery attempt means for a recipient: delivered, failed for good, or deferred
// until a backoff time. Pure; the clock and the jitter seed are arguments.
#include <cstdint>
#include <string>

#include "websmtp/job/model.hpp"
#include "websmtp/smtp/reply.hpp"

namespace websmtp::queue {

struct RetryOptions {
  std::int64_t retry_min_s = 300;
  std::int64_t retry_max_s = 4000;
  std::int64_t max_lifetime_s = 5 * 86400;
  bool fail_after_data_timeout = false;  // AFTER_DATA_TIMEOUT=fail
};

// Delay before retry number `attempts` (1-based): RETRY_MIN doubled per attempt, capped at
// RETRY_MAX, with up to +-10% jitter derived from `jitter_seed` (so retries of many jobs that
// failed together spread out).
std::int64_t backoff_s(int attempts, const RetryOptions& o, std::uint64_t jitter_seed);

// Applies an attempt's reply to the recipient.
void apply_attempt(job::Recipient& r, const smtp::Reply& reply, std::int64_t submitted_s, std::int64_t now_s,
                   std::uint64_t jitter_seed, const RetryOptions& o);

}  // namespace websmtp::queue
