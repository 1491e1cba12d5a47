#include "admin_guard.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <charconv>

#include "http/error_status.hpp"
#include "websmtp/common/text.hpp"

namespace websmtp::daemon {

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

std::string unbracket(std::string_view s) {
  if (s.size() >= 2 && s.front() == '[' && s.back() == ']') s = s.substr(1, s.size() - 2);
  return std::string(s);
}

bool is_ipv4_literal(const std::string& s) {
  in_addr a{};
  return ::inet_pton(AF_INET, s.c_str(), &a) == 1;
}

bool is_ipv6_literal(const std::string& s) {
  in6_addr a{};
  return ::inet_pton(AF_INET6, s.c_str(), &a) == 1;
}

// The same address written two ways ("::1" and "0:0::1") compares equal.
bool same_address(const std::string& a, const std::string& b) {
  if (a == b) return true;
  in6_addr x{}, y{};
  return ::inet_pton(AF_INET6, a.c_str(), &x) == 1 && ::inet_pton(AF_INET6, b.c_str(), &y) == 1 &&
         std::equal(x.s6_addr, x.s6_addr + 16, y.s6_addr);
}

}  // namespace

bool admin_host_allowed(std::string_view host, std::string_view admin_host, int admin_port) {
  // Split "name[:port]" or "[v6][:port]".
  std::string_view name = host;
  std::string_view port;
  bool bracketed = false;
  if (!host.empty() && host.front() == '[') {
    std::size_t close = host.find(']');
    if (close == std::string_view::npos) return false;
    name = host.substr(1, close - 1);
    std::string_view rest = host.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return false;
      port = rest.substr(1);
      if (port.empty()) return false;
    }
    bracketed = true;
  } else if (std::size_t colon = host.rfind(':'); colon != std::string_view::npos) {
    name = host.substr(0, colon);
    port = host.substr(colon + 1);
    if (port.empty() || name.find(':') != std::string_view::npos) return false;  // a bare IPv6 literal
  }
  if (name.empty()) return false;
  if (!port.empty()) {
    int n = 0;
    auto [p, ec] = std::from_chars(port.data(), port.data() + port.size(), n);
    if (ec != std::errc() || p != port.data() + port.size() || n != admin_port) return false;
  }
  std::string n = lower(name);
  if (bracketed ? !is_ipv6_literal(n) : is_ipv6_literal(n)) return false;
  if (n == "localhost" || n == "127.0.0.1" || (bracketed && same_address(n, "::1"))) return true;
  std::string own = lower(unbracket(admin_host));
  if (own.empty() || own == "0.0.0.0" || same_address(own, "::")) return is_ipv4_literal(n) || bracketed;
  return same_address(n, own);
}

bool constant_time_equals(std::string_view given, std::string_view expected) {
  // Every byte of `expected` is looked at whatever `given` holds; only the lengths show.
  unsigned char diff = given.size() == expected.size() ? 0 : 1;
  for (std::size_t i = 0; i < expected.size(); ++i) {
    unsigned char g = i < given.size() ? static_cast<unsigned char>(given[i]) : 0;
    diff |= static_cast<unsigned char>(g ^ static_cast<unsigned char>(expected[i]));
  }
  return diff == 0;
}

bool bearer_matches(std::optional<std::string_view> authorization, std::string_view token) {
  if (!authorization) return false;
  std::string_view v = *authorization;
  constexpr std::string_view kScheme = "bearer";
  if (v.size() <= kScheme.size() || !iequals(v.substr(0, kScheme.size()), kScheme) || v[kScheme.size()] != ' ')
    return false;
  v.remove_prefix(kScheme.size());
  while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
  return constant_time_equals(v, token);
}

http::PreHandler admin_guard(AdminGuardOptions options) {
  return [o = std::move(options)](http::Context& ctx) {
    auto host = ctx.request.header("Host");
    if (ctx.request.header_count("Host") != 1 || !admin_host_allowed(*host, o.admin_host, o.port->load())) {
      ctx.answer(Error{ErrorKind::kForbidden, "bad_host",
                       "the Host header must name the admin listener (localhost, 127.0.0.1, [::1] or ADMIN_HOST)",
                       "Host"});
      return false;
    }
    if (o.token.empty()) return true;
    if (ctx.request.header_count("Authorization") != 1 ||
        !bearer_matches(ctx.request.header("Authorization"), o.token)) {
      // error_response adds the one WWW-Authenticate: Bearer (RFC 6750 3) of every 401.
      ctx.answer(Error{ErrorKind::kUnauthorized, "unauthorized", "the admin API needs Authorization: Bearer <ADMIN_TOKEN>",
                       ""});
      return false;
    }
    return true;
  };
}

}  // namespace websmtp::daemon
