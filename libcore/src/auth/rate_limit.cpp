#include "websmtp/auth/rate_limit.hpp"

#include <algorithm>
#include <charconv>
#include <functional>

namespace websmtp::auth {

Result<Quota> parse_quota(std::string_view text, std::string_view key) {
  if (text.empty()) return Quota{};
  auto bad = [&] {
    return fail(ErrorKind::kInvalid, "invalid_config",
                std::string(key) + " must look like 120/m (a count per s, m, h or d), not \"" + std::string(text) + "\"",
                std::string(key));
  };
  auto slash = text.find('/');
  if (slash == std::string_view::npos || slash + 2 != text.size()) return bad();
  std::int64_t n = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + slash, n);
  if (ec != std::errc() || p != text.data() + slash || n <= 0) return bad();
  std::int64_t window = 0;
  switch (text.back()) {
    case 's': window = 1000; break;
    case 'm': window = 60'000; break;
    case 'h': window = 3'600'000; break;
    case 'd': window = 86'400'000; break;
    default: return bad();
  }
  return Quota{n, window};
}

RateLimiter::Shard& RateLimiter::shard(std::string_view who) {
  return shards_[std::hash<std::string_view>{}(who) % kShards];
}

// GCRA: each unit advances the theoretical arrival time (tat) by T = window/limit; a request
// passes while tat - now stays within the window (the burst is the whole quota).
Decision RateLimiter::state(const Quota& q, std::int64_t tat, std::int64_t now_ms) {
  Decision d;
  d.limit = q.limit;
  std::int64_t t = std::max<std::int64_t>(1, q.window_ms / q.limit);
  std::int64_t used = std::max<std::int64_t>(0, tat - now_ms);  // ms of quota in use
  d.remaining = std::clamp<std::int64_t>((q.window_ms - used) / t, 0, q.limit);
  d.reset_s = (used + 999) / 1000;
  return d;
}

Decision RateLimiter::take(std::string_view who, const Quota& q, std::int64_t cost, std::int64_t now_ms) {
  if (!q) return Decision{};
  std::int64_t t = std::max<std::int64_t>(1, q.window_ms / q.limit);
  Shard& s = shard(who);
  std::lock_guard lock(s.mu);
  // Buckets that have refilled are worth nothing: dropped now and then so that a flood of
  // one-off callers (addresses) does not grow the map for ever.
  if (now_ms >= s.next_sweep_ms && s.tat.size() > 1024) {
    std::erase_if(s.tat, [&](const auto& kv) { return kv.second <= now_ms; });
    s.next_sweep_ms = now_ms + 10'000;
  }
  auto it = s.tat.find(who);
  std::int64_t tat = it == s.tat.end() ? now_ms : std::max(it->second, now_ms);
  std::int64_t new_tat = tat + cost * t;
  if (new_tat - now_ms > q.window_ms) {
    Decision d = state(q, tat, now_ms);
    d.allowed = false;
    d.retry_after_s = std::max<std::int64_t>(1, (new_tat - q.window_ms - now_ms + 999) / 1000);
    // A cost larger than the whole quota never fits: say when the quota is full again.
    if (cost > q.limit) d.retry_after_s = std::max<std::int64_t>(1, d.reset_s);
    return d;
  }
  if (it == s.tat.end())
    s.tat.emplace(std::string(who), new_tat);
  else
    it->second = new_tat;
  return state(q, new_tat, now_ms);
}

void RateLimiter::refund(std::string_view who, const Quota& q, std::int64_t cost) {
  if (!q) return;
  Shard& s = shard(who);
  std::lock_guard lock(s.mu);
  auto it = s.tat.find(who);
  if (it != s.tat.end()) it->second -= cost * std::max<std::int64_t>(1, q.window_ms / q.limit);
}

Decision RateLimiter::peek(std::string_view who, const Quota& q, std::int64_t now_ms) {
  if (!q) return Decision{};
  Shard& s = shard(who);
  std::lock_guard lock(s.mu);
  auto it = s.tat.find(who);
  return state(q, it == s.tat.end() ? now_ms : it->second, now_ms);
}

std::size_t RateLimiter::size() const {
  std::size_t n = 0;
  for (const auto& s : shards_) {
    std::lock_guard lock(s.mu);
    n += s.tat.size();
  }
  return n;
}

Decision tighter(const Decision& a, const Decision& b) {
  if (!a.limit) return b;
  if (!b.limit) return a;
  if (a.allowed != b.allowed) return a.allowed ? b : a;
  return a.remaining <= b.remaining ? a : b;
}

}  // namespace websmtp::auth
