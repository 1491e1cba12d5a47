#include "websmtp/common/units.hpp"

#include <cctype>
#include <charconv>
#include <string>

namespace websmtp {

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

}  // namespace websmtp
