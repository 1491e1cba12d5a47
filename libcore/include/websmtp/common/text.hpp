#pragma once
// ASCII text helpers: case-insensitive comparison (header names, SMTP keywords, URL schemes)
// and DNS names. Header-only
// so that websmtpctl, which links no part of the core, shares it too.
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace websmtp {

constexpr char ascii_lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

constexpr bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
  return true;
}

constexpr bool istarts_with(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

// A DNS name as DKIM selectors and domains are written (RFC 6376 3.1, RFC 5321 4.1.2):
// dot-separated labels of 1-63 letters, digits and hyphens (no hyphen at either end of a
// label), underscores allowed too (selectors such as "s_2024" exist); 253 bytes at most.
constexpr bool is_dns_name(std::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  std::size_t label = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '.') {
      if (label == 0 || s[i - 1] == '-') return false;
      label = 0;
      continue;
    }
    const bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    if (!alnum && c != '-' && c != '_') return false;
    if (c == '-' && label == 0) return false;
    if (++label > 63) return false;
  }
  return label > 0 && s.back() != '-';
}

// A TXT record's value as the strings of at most 255 bytes each that DNS holds (RFC 1035
// 3.3.14); resolvers give verifiers their concatenation (RFC 6376 3.6.2.2). `dkim keygen` and
// the domain check's "publish" advice write records this way.
inline constexpr std::size_t kTxtStringBytes = 255;
inline std::vector<std::string> txt_strings(std::string_view record) {
  std::vector<std::string> out;
  for (std::size_t i = 0; i < record.size(); i += kTxtStringBytes) out.emplace_back(record.substr(i, kTxtStringBytes));
  return out;
}

}  // namespace websmtp
