#pragma once
// Idempotency-Key bookkeeping: a key names one request of one caller for 24 hours. The same
// key with the same body replays the first answer; with another body it is a conflict; while
// the first request is still being committed, a second one is refused rather than raced.
#include <cstdint>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "websmtp/common/error.hpp"
#include "websmtp/service/caller.hpp"
#include "websmtp/store/store.hpp"

namespace websmtp::service {

class IdempotencyKeys {
 public:
  explicit IdempotencyKeys(store::Store& store) : store_(store) {}

  // The key as stored: scoped to the caller, so two callers' keys never collide. Checks the
  // client's key (1 to 255 printable ASCII characters).
  static Result<std::string> scoped(const Caller& caller, std::string_view key);

  // Empty: a new request; the key is now reserved until release(). Refs: the same request was
  // accepted before (replay; every job of a batch, in order). kConflict: another body, or the
  // first request is still in flight.
  Result<std::vector<std::string>> reserve(const std::string& key, const std::string& request_hash, std::int64_t now_s);
  void release(const std::string& key);

 private:
  store::Store& store_;
  std::mutex mu_;
  std::set<std::string, std::less<>> pending_;
};

}  // namespace websmtp::service
