#pragma once
// Small shared helpers: UUIDs, time, durations, base64, hashing. Pure and thread-safe.
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace websmtp {

// A random (version 4) UUID in canonical lower-case form.
std::string new_uuid();
// A time-ordered (version 7, RFC 9562) UUID: 48 bits of Unix milliseconds, then 74 random
// bits. Job refs use it so the store's ref index grows at its right edge instead of touching
// a random page per insert (which multiplied the bytes written per commit).
std::string new_uuid_v7(std::int64_t unix_ms);
// True for the canonical 8-4-4-4-12 hex form (either case).
bool is_uuid(std::string_view s);

// Parses "300", "300s", "5m", "2h", "5d" into seconds; nullopt when malformed or negative.
std::optional<std::int64_t> parse_duration_s(std::string_view s);
// Parses "10485760", "10MiB", "512KiB", "1GiB", "10MB" into bytes.
std::optional<std::int64_t> parse_size_bytes(std::string_view s);

std::optional<std::string> base64_decode(std::string_view in);
std::string base64_encode(std::string_view in);

// 64-bit FNV-1a, used to compare request bodies for Idempotency-Key.
std::uint64_t fnv1a64(std::string_view s);
std::string hex64(std::uint64_t v);

// Names the calling thread (shown by top -H, gdb, perf); at most 15 characters.
void name_this_thread(const char* name);

// Lowers the calling thread's CPU priority to `nice` (Linux: nice is per thread). Best effort.
void set_this_thread_nice(int nice);

// Time source, injectable so queue and retry tests never sleep.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual std::int64_t now_ms() const = 0;
  std::int64_t now_s() const { return now_ms() / 1000; }
};

class SystemClock final : public Clock {
 public:
  std::int64_t now_ms() const override {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
};

class ManualClock final : public Clock {
 public:
  explicit ManualClock(std::int64_t start_ms = 1'700'000'000'000) : now_(start_ms) {}
  std::int64_t now_ms() const override { return now_; }
  void advance_ms(std::int64_t d) { now_ += d; }
  void set_ms(std::int64_t t) { now_ = t; }

 private:
  std::int64_t now_;
};

}  // namespace websmtp
