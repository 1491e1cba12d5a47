#include "websmtp/common/uuid.hpp"

#include <cctype>
#include <random>

namespace websmtp {

namespace {
std::mt19937_64& rng() {
  thread_local std::mt19937_64 gen{[] {
    std::random_device rd;
    return (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
  }()};
  return gen;
}

constexpr char kHex[] = "0123456789abcdef";
}  // namespace

std::string new_uuid() {
  std::uint64_t hi = rng()(), lo = rng()();
  hi = (hi & 0xFFFFFFFFFFFF0FFFULL) | 0x0000000000004000ULL;  // version 4
  lo = (lo & 0x3FFFFFFFFFFFFFFFULL) | 0x8000000000000000ULL;  // variant 10
  std::string out(36, '-');
  int pos = 0;
  auto put = [&](std::uint64_t v, int nibbles) {
    for (int i = nibbles - 1; i >= 0; --i) {
      if (pos == 8 || pos == 13 || pos == 18 || pos == 23) ++pos;
      out[pos++] = kHex[(v >> (i * 4)) & 0xF];
    }
  };
  put(hi, 16);
  put(lo, 16);
  return out;
}

std::string new_uuid_v7(std::int64_t unix_ms) {
  std::uint64_t hi = (static_cast<std::uint64_t>(unix_ms) & 0xFFFFFFFFFFFFULL) << 16;
  hi |= 0x7000ULL | (rng()() & 0x0FFFULL);                                       // version 7 + rand_a
  std::uint64_t lo = (rng()() & 0x3FFFFFFFFFFFFFFFULL) | 0x8000000000000000ULL;  // variant 10 + rand_b
  std::string out(36, '-');
  int pos = 0;
  auto put = [&](std::uint64_t v) {
    for (int i = 15; i >= 0; --i) {
      if (pos == 8 || pos == 13 || pos == 18 || pos == 23) ++pos;
      out[pos++] = kHex[(v >> (i * 4)) & 0xF];
    }
  };
  put(hi);
  put(lo);
  return out;
}

bool is_uuid(std::string_view s) {
  if (s.size() != 36) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (s[i] != '-') return false;
    } else if (!std::isxdigit(static_cast<unsigned char>(s[i]))) {
      return false;
    }
  }
  return true;
}

}  // namespace websmtp
