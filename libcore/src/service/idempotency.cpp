#include "websmtp/service/idempotency.hpp"

#include <algorithm>

namespace websmtp::service {

Result<std::string> IdempotencyKeys::scoped(const Caller& caller, std::string_view key) {
  if (key.empty() || key.size() > 255 ||
      !std::all_of(key.begin(), key.end(), [](char c) { return c >= 0x20 && c < 0x7F; }))
    return fail(ErrorKind::kInvalid, "invalid_idempotency_key",
                "Idempotency-Key must be 1 to 255 printable ASCII characters", "Idempotency-Key");
  // Anonymous callers keep the bare key (what earlier versions stored); others get their own
  // scope, separated by a character no client key can contain.
  if (caller.id.empty()) return std::string(key);
  return caller.id + '\x1f' + std::string(key);
}

Result<std::vector<std::string>> IdempotencyKeys::reserve(const std::string& key, const std::string& request_hash,
                                                          std::int64_t now_s) {
  std::lock_guard lock(mu_);
  if (pending_.contains(key))
    return fail(ErrorKind::kConflict, "idempotency_key_in_use",
                "a request with this Idempotency-Key is being processed", "Idempotency-Key");
  std::optional<store::IdempotencyHit> hit;
  try {
    hit = store_.find_idempotency(key);
  } catch (const store::StoreError&) {
    return fail(ErrorKind::kUnavailable, "store_unavailable", "the job store cannot be read; retry shortly");
  }
  if (hit && hit->submitted >= now_s - store::kIdempotencyWindowS) {
    if (hit->request_hash == request_hash) return std::move(hit->refs);
    return fail(ErrorKind::kConflict, "idempotency_conflict",
                "this Idempotency-Key was used with a different request body within 24 hours", "Idempotency-Key");
  }
  pending_.insert(key);
  return std::vector<std::string>();
}

void IdempotencyKeys::release(const std::string& key) {
  std::lock_guard lock(mu_);
  pending_.erase(key);
}

}  // namespace websmtp::service
