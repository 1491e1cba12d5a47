#pragma once
// Shared by the fuzz targets: an invariant check that stops the run with a message (libFuzzer
// then writes the input to a crash file; the replay runner fails the ctest), and small helpers.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#define FUZZ_CHECK(cond, what)                                                              \
  do {                                                                                      \
    if (!(cond)) {                                                                          \
      std::fprintf(stderr, "%s:%d: invariant broken: %s (%s)\n", __FILE__, __LINE__, #cond, \
                   std::string(what).c_str());                                              \
      std::abort();                                                                         \
    }                                                                                       \
  } while (0)

namespace websmtp::fuzz {

// Libraries log refusals and unhandled handler errors: noise at a million runs a minute.
inline const bool kQuietLogs = [] {
  spdlog::set_level(spdlog::level::off);
  return true;
}();

// True when nlohmann would write `s` into an answer without replacing anything.
inline bool is_valid_utf8(std::string_view s) {
  try {
    (void)nlohmann::json(std::string(s)).dump();
    return true;
  } catch (const nlohmann::json::type_error&) {
    return false;
  }
}

inline bool has_cr_lf_nul(std::string_view s) {
  return s.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos;
}

// Reads the input front to back; past the end it yields zeros and empty strings.
class Bytes {
 public:
  Bytes(const unsigned char* data, std::size_t size) : p_(reinterpret_cast<const char*>(data)), n_(size) {}
  unsigned char byte() { return n_ ? (--n_, static_cast<unsigned char>(*p_++)) : 0; }
  std::size_t u16() { return byte() | (std::size_t{byte()} << 8); }
  std::string_view rest() {
    std::string_view r(p_, n_);
    p_ += n_;
    n_ = 0;
    return r;
  }
  std::size_t size() const { return n_; }

 private:
  const char* p_;
  std::size_t n_;
};

}  // namespace websmtp::fuzz
