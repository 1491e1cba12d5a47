#include "websmtp/webhook/destination.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstring>
#include <memory>

#include "websmtp/common/text.hpp"

namespace websmtp::webhook {

namespace {

tl::unexpected<Error> bad_url(const std::string& field, const std::string& why) {
  return fail(ErrorKind::kInvalid, "invalid_callback_url", field + " " + why, field);
}

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

bool is_v4_literal(const std::string& h) {
  in_addr a{};
  return ::inet_pton(AF_INET, h.c_str(), &a) == 1;
}

// A DNS name (common/text.hpp) whose last label is not all digits: no top-level domain is
// numeric, and "127.1" or "2130706433" would be read as IPv4 by some resolvers.
bool is_host_name(std::string_view h) {
  if (!is_dns_name(h)) return false;
  std::string_view last = h.substr(h.rfind('.') + 1);
  return !std::all_of(last.begin(), last.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
}

bool in_v4(std::uint32_t a, std::uint32_t net, int bits) {
  return bits == 0 || (a >> (32 - bits)) == (net >> (32 - bits));
}

constexpr std::uint32_t v4(int a, int b, int c, int d) {
  return (static_cast<std::uint32_t>(a) << 24) | (static_cast<std::uint32_t>(b) << 16) |
         (static_cast<std::uint32_t>(c) << 8) | static_cast<std::uint32_t>(d);
}

// The first `bits` bits of `a` equal those of `prefix` (given as its leading bytes).
bool in_v6(const std::uint8_t (&a)[16], std::initializer_list<std::uint8_t> prefix, int bits) {
  auto p = prefix.begin();
  for (int i = 0; bits > 0; ++i, bits -= 8) {
    std::uint8_t want = i < static_cast<int>(prefix.size()) ? p[i] : 0;
    std::uint8_t mask = bits >= 8 ? 0xFF : static_cast<std::uint8_t>(0xFF << (8 - bits));
    if ((a[i] & mask) != (want & mask)) return false;
  }
  return true;
}

std::uint32_t v4_at(const std::uint8_t (&a)[16], int offset) {
  return (static_cast<std::uint32_t>(a[offset]) << 24) | (static_cast<std::uint32_t>(a[offset + 1]) << 16) |
         (static_cast<std::uint32_t>(a[offset + 2]) << 8) | a[offset + 3];
}

}  // namespace

std::string CallbackUrl::host_header() const {
  std::string h;
  const bool v6 = host.find(':') != std::string::npos;
  h.reserve(host.size() + 8);
  if (v6) h += '[';
  h += host;
  if (v6) h += ']';
  if (port != (https ? 443 : 80)) {
    h += ':';
    h += std::to_string(port);
  }
  return h;
}

Result<CallbackUrl> parse_callback_url(std::string_view url, const std::string& field) {
  if (url.empty()) return bad_url(field, "is empty");
  if (url.size() > kMaxCallbackUrlBytes)
    return bad_url(field, "is longer than " + std::to_string(kMaxCallbackUrlBytes) + " bytes");
  if (!std::all_of(url.begin(), url.end(), [](char c) { return c > 0x20 && c < 0x7F; }))
    return bad_url(field, "must be printable ASCII without spaces (percent-encode the rest)");
  CallbackUrl u;
  auto sep = url.find("://");
  std::string scheme = lower(url.substr(0, sep == std::string_view::npos ? 0 : sep));
  if (scheme == "https")
    u.https = true;
  else if (scheme != "http")
    return bad_url(field, "must be an http:// or https:// URL");
  std::string_view rest = url.substr(sep + 3);
  auto end = rest.find_first_of("/?#");
  std::string_view authority = rest.substr(0, end);
  std::string_view tail = end == std::string_view::npos ? std::string_view() : rest.substr(end);
  if (authority.find('@') != std::string_view::npos) return bad_url(field, "must not carry a user name or password");
  std::string_view host = authority, port;
  if (!authority.empty() && authority.front() == '[') {
    auto close = authority.find(']');
    if (close == std::string_view::npos) return bad_url(field, "has an unclosed '[' in its host");
    host = authority.substr(1, close - 1);
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return bad_url(field, "has characters after its IPv6 host");
      port = after.substr(1);
    }
    in6_addr a{};
    if (::inet_pton(AF_INET6, std::string(host).c_str(), &a) != 1)
      return bad_url(field, "has an invalid IPv6 address in its host");
    u.host = lower(host);
  } else {
    if (auto colon = authority.find(':'); colon != std::string_view::npos) {
      host = authority.substr(0, colon);
      port = authority.substr(colon + 1);
    }
    if (host.empty()) return bad_url(field, "has no host");
    u.host = lower(host);
    if (!is_v4_literal(u.host) && !is_host_name(u.host))
      return bad_url(field, "has an invalid host: '" + u.host.substr(0, 100) + "'");
  }
  if (u.host.empty()) return bad_url(field, "has no host");
  u.port = u.https ? 443 : 80;
  if (!port.empty() || authority.ends_with(':')) {
    int p = 0;
    auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
    if (port.empty() || ec != std::errc() || ptr != port.data() + port.size() || p < 1 || p > 65535)
      return bad_url(field, "has an invalid port");
    u.port = static_cast<std::uint16_t>(p);
  }
  tail = tail.substr(0, tail.find('#'));  // the fragment is the client's, never sent
  if (tail.empty())
    u.target = "/";
  else if (tail.front() == '?')
    u.target = "/" + std::string(tail);
  else
    u.target = std::string(tail);
  return u;
}

const char* to_string(AddressClass c) {
  switch (c) {
    case AddressClass::kPublic:
      return "public";
    case AddressClass::kUnspecified:
      return "unspecified";
    case AddressClass::kLoopback:
      return "loopback";
    case AddressClass::kPrivate:
      return "private";
    case AddressClass::kSharedCgnat:
      return "shared (CGNAT)";
    case AddressClass::kLinkLocal:
      return "link-local";
    case AddressClass::kMulticast:
      return "multicast";
    case AddressClass::kDocumentation:
      return "documentation";
    case AddressClass::kReserved:
      return "reserved";
  }
  return "reserved";
}

AddressClass classify_v4(std::uint32_t a) {
  struct Range {
    std::uint32_t net;
    int bits;
    AddressClass kind;
  };
  static constexpr Range kRanges[] = {
      {v4(0, 0, 0, 0), 8, AddressClass::kUnspecified},      // "this network"
      {v4(10, 0, 0, 0), 8, AddressClass::kPrivate},         // RFC 1918
      {v4(100, 64, 0, 0), 10, AddressClass::kSharedCgnat},  // RFC 6598
      {v4(127, 0, 0, 0), 8, AddressClass::kLoopback},
      {v4(169, 254, 0, 0), 16, AddressClass::kLinkLocal},  // cloud metadata lives here
      {v4(172, 16, 0, 0), 12, AddressClass::kPrivate},
      {v4(192, 0, 0, 0), 24, AddressClass::kReserved},  // IETF protocol assignments
      {v4(192, 0, 2, 0), 24, AddressClass::kDocumentation},
      {v4(192, 88, 99, 0), 24, AddressClass::kReserved},  // 6to4 relay anycast
      {v4(192, 168, 0, 0), 16, AddressClass::kPrivate},
      {v4(198, 18, 0, 0), 15, AddressClass::kReserved},  // benchmarking
      {v4(198, 51, 100, 0), 24, AddressClass::kDocumentation},
      {v4(203, 0, 113, 0), 24, AddressClass::kDocumentation},
      {v4(224, 0, 0, 0), 4, AddressClass::kMulticast},
      {v4(240, 0, 0, 0), 4, AddressClass::kReserved},  // and 255.255.255.255
  };
  for (const auto& r : kRanges)
    if (in_v4(a, r.net, r.bits)) return r.kind;
  return AddressClass::kPublic;
}

AddressClass classify_v6(const std::uint8_t (&a)[16]) {
  static constexpr std::uint8_t kZero[16] = {};
  if (std::memcmp(a, kZero, 15) == 0)
    return a[15] == 0 ? AddressClass::kUnspecified : a[15] == 1 ? AddressClass::kLoopback : AddressClass::kReserved;
  // Addresses that carry an IPv4 address are what that address is.
  if (in_v6(a, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF}, 96)) return classify_v4(v4_at(a, 12));  // ::ffff:a.b.c.d
  if (in_v6(a, {0x00, 0x64, 0xFF, 0x9B}, 96)) return classify_v4(v4_at(a, 12));                    // NAT64 64:ff9b::/96
  if (in_v6(a, {0x20, 0x02}, 16)) return classify_v4(v4_at(a, 2));                        // 6to4 2002:a.b.c.d::/48
  if (in_v6(a, {0x00, 0x64, 0xFF, 0x9B, 0x00, 0x01}, 48)) return AddressClass::kPrivate;  // NAT64 local use
  if (in_v6(a, {0xFC}, 7)) return AddressClass::kPrivate;                                 // ULA
  if (in_v6(a, {0xFE, 0xC0}, 10)) return AddressClass::kPrivate;                          // site-local (deprecated)
  if (in_v6(a, {0xFE, 0x80}, 10)) return AddressClass::kLinkLocal;
  if (in_v6(a, {0xFF}, 8)) return AddressClass::kMulticast;
  if (in_v6(a, {0x20, 0x01, 0x0D, 0xB8}, 32)) return AddressClass::kDocumentation;
  if (in_v6(a, {0x3F, 0xFF}, 20)) return AddressClass::kDocumentation;  // RFC 9637
  if (in_v6(a, {0x20, 0x01}, 23)) return AddressClass::kReserved;       // IETF protocol assignments, Teredo
  if (!in_v6(a, {0x20}, 3)) return AddressClass::kReserved;             // not global unicast (2000::/3)
  return AddressClass::kPublic;
}

std::optional<AddressClass> classify_ip(std::string_view ip) {
  std::string s(ip);
  in_addr a4{};
  if (::inet_pton(AF_INET, s.c_str(), &a4) == 1) return classify_v4(ntohl(a4.s_addr));
  in6_addr a6{};
  if (::inet_pton(AF_INET6, s.c_str(), &a6) == 1) {
    std::uint8_t bytes[16];
    std::memcpy(bytes, a6.s6_addr, 16);
    return classify_v6(bytes);
  }
  return std::nullopt;
}

Result<std::vector<Address>> resolve(const CallbackUrl& url, const std::string& field) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  if (classify_ip(url.host)) hints.ai_flags = AI_NUMERICHOST;
  addrinfo* res = nullptr;
  int rc = ::getaddrinfo(url.host.c_str(), nullptr, &hints, &res);
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> owned(res, &::freeaddrinfo);
  if (rc != 0 || !res)
    return fail(ErrorKind::kInvalid, "callback_url_unresolvable",
                field + ": the host " + url.host + " cannot be resolved (" + ::gai_strerror(rc) + ")", field);
  std::vector<Address> out;
  for (auto* ai = res; ai; ai = ai->ai_next) {
    char text[INET6_ADDRSTRLEN] = {};
    if (ai->ai_family == AF_INET) {
      auto* sin = reinterpret_cast<const sockaddr_in*>(ai->ai_addr);
      ::inet_ntop(AF_INET, &sin->sin_addr, text, sizeof text);
    } else if (ai->ai_family == AF_INET6) {
      auto* sin6 = reinterpret_cast<const sockaddr_in6*>(ai->ai_addr);
      ::inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof text);
    } else {
      continue;
    }
    std::string ip = text;
    if (std::any_of(out.begin(), out.end(), [&](const Address& a) { return a.ip == ip; })) continue;
    out.push_back({ip, classify_ip(ip).value_or(AddressClass::kReserved)});
  }
  if (out.empty())
    return fail(ErrorKind::kInvalid, "callback_url_unresolvable",
                field + ": the host " + url.host + " has no IPv4 or IPv6 address", field);
  return out;
}

Result<std::vector<Address>> checked_addresses(const CallbackUrl& url, bool allow_private, const std::string& field) {
  auto addresses = resolve(url, field);
  if (!addresses || allow_private) return addresses;
  for (const auto& a : *addresses)
    if (a.kind != AddressClass::kPublic)
      return fail(ErrorKind::kInvalid, "callback_url_not_public",
                  field + ": " + url.host + " is " + a.ip + ", a " + to_string(a.kind) +
                      " address; webhooks go to public addresses only (WEBHOOK_ALLOW_PRIVATE=true allows others)",
                  field);
  return addresses;
}

}  // namespace websmtp::webhook
