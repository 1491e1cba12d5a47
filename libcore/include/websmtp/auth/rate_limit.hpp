#pragma once
// Rate limits by GCRA (the generic cell rate algorithm: a token bucket kept as one
// timestamp per caller). A quota of N per window lets N requests through at once and then one
// every window/N; it never sleeps and never makes a caller wait, it only says no and when to
// come back. Callers are spread over independently locked shards, so one noisy caller never
// contends with the others beyond a short critical section.
#include <array>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "websmtp/common/error.hpp"

namespace websmtp::auth {

struct Quota {
  std::int64_t limit = 0;      // requests (or jobs) per window; 0: no limit
  std::int64_t window_ms = 0;  // e.g. 60'000
  explicit operator bool() const { return limit > 0 && window_ms > 0; }
};

// "120/m", "10/s", "1000/h", "5000/d" (empty: no limit). Error names `key`.
Result<Quota> parse_quota(std::string_view text, std::string_view key);

// What a limit says about one caller: RateLimit-* header values and, when refused, how long
// until the request would pass.
struct Decision {
  bool allowed = true;
  std::int64_t limit = 0;
  std::int64_t remaining = 0;
  std::int64_t reset_s = 0;        // seconds until the whole quota is available again
  std::int64_t retry_after_s = 0;  // when refused: seconds until this cost would pass
};

class RateLimiter {
 public:
  // Takes `cost` units from `who`'s bucket if they fit (all or nothing).
  Decision take(std::string_view who, const Quota& q, std::int64_t cost, std::int64_t now_ms);
  // Gives back what a take() took (when a second quota refused the same request).
  void refund(std::string_view who, const Quota& q, std::int64_t cost);
  // The bucket's state without taking anything.
  Decision peek(std::string_view who, const Quota& q, std::int64_t now_ms);
  std::size_t size() const;

 private:
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  struct Shard {
    mutable std::mutex mu;
    std::unordered_map<std::string, std::int64_t, Hash, std::equal_to<>> tat;  // theoretical arrival time, ms
    std::int64_t next_sweep_ms = 0;
  };
  Shard& shard(std::string_view who);
  static Decision state(const Quota& q, std::int64_t tat, std::int64_t now_ms);
  static constexpr std::size_t kShards = 64;
  std::array<Shard, kShards> shards_;
};

// The most restrictive of two decisions, for the RateLimit-* headers.
Decision tighter(const Decision& a, const Decision& b);

}  // namespace websmtp::auth
