#include "websmtp/auth/client_address.hpp"

#include <arpa/inet.h>

#include <charconv>

namespace websmtp::auth {

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Parses an IPv4 or IPv6 literal (an IPv4-mapped IPv6 address counts as IPv4).
bool parse_ip(std::string_view text, int& family, std::array<std::uint8_t, 16>& out) {
  if (text.size() > 2 && text.front() == '[' && text.back() == ']') text = text.substr(1, text.size() - 2);
  std::string s(text);
  out.fill(0);
  if (inet_pton(AF_INET, s.c_str(), out.data()) == 1) {
    family = AF_INET;
    return true;
  }
  if (inet_pton(AF_INET6, s.c_str(), out.data()) == 1) {
    static constexpr std::uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (std::equal(std::begin(kMapped), std::end(kMapped), out.begin())) {
      std::array<std::uint8_t, 16> v4{};
      std::copy(out.begin() + 12, out.end(), v4.begin());
      out = v4;
      family = AF_INET;
    } else {
      family = AF_INET6;
    }
    return true;
  }
  return false;
}

}  // namespace

Result<TrustedProxies> TrustedProxies::parse(std::string_view list) {
  TrustedProxies t;
  while (!list.empty()) {
    auto comma = list.find(',');
    std::string_view item = trim(list.substr(0, comma));
    list = comma == std::string_view::npos ? std::string_view{} : list.substr(comma + 1);
    if (item.empty()) continue;
    Net n;
    auto slash = item.find('/');
    std::string_view ip = item.substr(0, slash);
    auto bad = [&] {
      return fail(ErrorKind::kInvalid, "invalid_config",
                  "TRUSTED_PROXIES: \"" + std::string(item) + "\" is not an address or CIDR block", "TRUSTED_PROXIES");
    };
    if (!parse_ip(ip, n.family, n.addr)) return bad();
    int max = n.family == AF_INET ? 32 : 128;
    n.prefix = max;
    if (slash != std::string_view::npos) {
      std::string_view p = item.substr(slash + 1);
      auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), n.prefix);
      if (ec != std::errc() || end != p.data() + p.size() || n.prefix < 0 || n.prefix > max) return bad();
    }
    t.nets_.push_back(n);
  }
  return t;
}

bool TrustedProxies::trusted(std::string_view address) const {
  if (nets_.empty()) return false;
  int family = 0;
  std::array<std::uint8_t, 16> a{};
  if (!parse_ip(trim(address), family, a)) return false;
  for (const auto& n : nets_) {
    if (n.family != family) continue;
    int bits = n.prefix, i = 0;
    bool match = true;
    for (; bits >= 8; bits -= 8, ++i)
      if (a[i] != n.addr[i]) {
        match = false;
        break;
      }
    if (match && bits > 0) {
      std::uint8_t mask = static_cast<std::uint8_t>(0xff << (8 - bits));
      match = (a[i] & mask) == (n.addr[i] & mask);
    }
    if (match) return true;
  }
  return false;
}

std::string TrustedProxies::client(std::string_view peer, std::optional<std::string_view> forwarded_for) const {
  if (!forwarded_for || !trusted(peer)) return std::string(peer);
  std::string_view list = *forwarded_for;
  std::string_view last_valid;
  // Right to left: each hop appended the address it got the request from.
  while (!list.empty()) {
    auto comma = list.rfind(',');
    std::string_view hop = trim(comma == std::string_view::npos ? list : list.substr(comma + 1));
    list = comma == std::string_view::npos ? std::string_view{} : list.substr(0, comma);
    int family = 0;
    std::array<std::uint8_t, 16> a{};
    if (!parse_ip(hop, family, a)) break;  // garbage: stop believing the chain here
    last_valid = hop;
    if (!trusted(hop)) return std::string(hop);
  }
  return last_valid.empty() ? std::string(peer) : std::string(last_valid);
}

}  // namespace websmtp::auth
