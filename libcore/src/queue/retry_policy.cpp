#include "websmtp/queue/retry_policy.hpp"

#include <algorithm>

namespace websmtp::queue {

std::int64_t backoff_s(int attempts, const RetryOptions& o, std::uint64_t jitter_seed) {
  std::int64_t delay = o.retry_min_s;
  for (int i = 1; i < attempts && delay < o.retry_max_s; ++i) delay *= 2;
  delay = std::min(delay, o.retry_max_s);
  // splitmix64 of the seed, mapped to [-10%, +10%].
  std::uint64_t z = jitter_seed + 0x9E3779B97F4A7C15ULL * static_cast<std::uint64_t>(attempts);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  z ^= z >> 31;
  double frac = static_cast<double>(z % 2001) / 1000.0 - 1.0;  // [-1, 1]
  auto jittered = static_cast<std::int64_t>(static_cast<double>(delay) * (1.0 + 0.1 * frac));
  return std::clamp<std::int64_t>(jittered, 1, o.retry_max_s);
}

void apply_attempt(job::Recipient& r, const smtp::Reply& reply, std::int64_t submitted_s, std::int64_t now_s,
                   std::uint64_t jitter_seed, const RetryOptions& o) {
  using job::RecipientState;
  r.attempts += 1;
  r.smtp_code = reply.code;
  r.smtp_reply = reply.text;
  r.time = now_s;
  r.next_attempt = 0;
  r.host = reply.host;
  r.tls = reply.tls;
  if (reply.permanent) {
    r.state = RecipientState::kFailed;
    r.reason = reply.reason.empty() ? "rejected" : reply.reason;
    return;
  }
  if (reply.code >= 200 && reply.code < 300) {
    r.state = RecipientState::kDelivered;
    r.reason.clear();
    return;
  }
  if (reply.code >= 500 && !reply.soft_bounce) {
    r.state = RecipientState::kFailed;
    r.reason = "rejected";
    return;
  }
  // Temporary: a 4xx, a soft bounce, or no reply at all.
  if (reply.uncertain) {
    if (o.fail_after_data_timeout) {
      r.state = RecipientState::kFailed;
      r.reason = "unknown_after_data";  // the peer may have the message; we will not resend it
      return;
    }
    r.possible_duplicate = true;  // a later delivery may repeat the one the peer maybe took
  }
  std::int64_t deadline = submitted_s + o.max_lifetime_s;
  if (now_s >= deadline) {
    r.state = RecipientState::kFailed;
    r.reason = "expired";
    return;
  }
  r.state = RecipientState::kDeferred;
  // The last try happens at the deadline, not after it.
  r.next_attempt = std::min(now_s + backoff_s(r.attempts, o, jitter_seed), deadline);
}

}  // namespace websmtp::queue
