#include "websmtp/common/util.hpp"

#include <pthread.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <array>
#include <cctype>
#include <charconv>
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
constexpr char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
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

namespace {
std::optional<std::int64_t> parse_number_with_unit(std::string_view s, std::string_view& unit) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  std::int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p == s.data() || v < 0) return std::nullopt;
  unit = s.substr(static_cast<std::size_t>(p - s.data()));
  return v;
}
}  // namespace

std::optional<std::int64_t> parse_duration_s(std::string_view s) {
  std::string_view unit;
  auto v = parse_number_with_unit(s, unit);
  if (!v) return std::nullopt;
  std::int64_t mul = 0;
  if (unit.empty() || unit == "s")
    mul = 1;
  else if (unit == "m")
    mul = 60;
  else if (unit == "h")
    mul = 3600;
  else if (unit == "d")
    mul = 86400;
  else
    return std::nullopt;
  // At most ~10 years: keeps every ms, us and ns computation made from it in range.
  if (*v > 10LL * 366 * 86400 / mul) return std::nullopt;
  return *v * mul;
}

std::optional<std::int64_t> parse_size_bytes(std::string_view s) {
  std::string_view unit;
  auto v = parse_number_with_unit(s, unit);
  if (!v) return std::nullopt;
  std::string u;
  for (char c : unit) u += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  std::int64_t mul = 0;
  if (u.empty() || u == "b")
    mul = 1;
  else if (u == "k" || u == "kib")
    mul = 1024;
  else if (u == "kb")
    mul = 1000;
  else if (u == "m" || u == "mib")
    mul = 1024 * 1024;
  else if (u == "mb")
    mul = 1000 * 1000;
  else if (u == "g" || u == "gib")
    mul = 1024LL * 1024 * 1024;
  else if (u == "gb")
    mul = 1000LL * 1000 * 1000;
  else
    return std::nullopt;
  if (*v > INT64_MAX / mul) return std::nullopt;
  return *v * mul;
}

std::optional<std::string> base64_decode(std::string_view in) {
  static const std::array<std::int8_t, 256> table = [] {
    std::array<std::int8_t, 256> t{};
    t.fill(-1);
    for (int i = 0; i < 64; ++i) t[static_cast<unsigned char>(kB64[i])] = static_cast<std::int8_t>(i);
    t['-'] = 62;  // accept the URL-safe alphabet too
    t['_'] = 63;
    return t;
  }();
  std::string out;
  out.reserve(in.size() / 4 * 3 + 3);
  std::uint32_t acc = 0;
  int bits = 0;
  std::size_t pad = 0;
  for (char c : in) {
    if (c == '\r' || c == '\n' || c == ' ' || c == '\t') continue;
    if (c == '=') {
      ++pad;
      continue;
    }
    if (pad) return std::nullopt;  // data after padding
    auto v = table[static_cast<unsigned char>(c)];
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  if (pad > 2 || bits >= 6) return std::nullopt;
  return out;
}

std::string base64_encode(std::string_view in) {
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    std::uint32_t v = (static_cast<unsigned char>(in[i]) << 16) | (static_cast<unsigned char>(in[i + 1]) << 8) |
                      static_cast<unsigned char>(in[i + 2]);
    out += kB64[(v >> 18) & 63];
    out += kB64[(v >> 12) & 63];
    out += kB64[(v >> 6) & 63];
    out += kB64[v & 63];
  }
  if (i < in.size()) {
    std::uint32_t v = static_cast<unsigned char>(in[i]) << 16;
    if (i + 1 < in.size()) v |= static_cast<unsigned char>(in[i + 1]) << 8;
    out += kB64[(v >> 18) & 63];
    out += kB64[(v >> 12) & 63];
    out += (i + 1 < in.size()) ? kB64[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::uint64_t fnv1a64(std::string_view s) {
  std::uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return h;
}

std::string hex64(std::uint64_t v) {
  std::string out(16, '0');
  for (int i = 15; i >= 0; --i, v >>= 4) out[static_cast<std::size_t>(i)] = kHex[v & 0xF];
  return out;
}

void name_this_thread(const char* name) { pthread_setname_np(pthread_self(), name); }

void set_this_thread_nice(int nice) {
  if (nice > 0) (void)setpriority(PRIO_PROCESS, static_cast<id_t>(::syscall(SYS_gettid)), nice);
}

}  // namespace websmtp
