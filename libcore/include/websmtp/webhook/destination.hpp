#pragma once
// Where a webhook may go (api.md: Webhooks). A callback_url is checked twice: its form when a
// job is validated (pure), and its destination when the job is submitted and again before
// every POST (the host is resolved and every address classified), so that neither a
// private address nor a DNS answer that changes after the submit (rebinding) points the
// gateway at its own network.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "websmtp/common/error.hpp"

namespace websmtp::webhook {

inline constexpr std::size_t kMaxCallbackUrlBytes = 2048;

struct CallbackUrl {
  bool https = false;
  std::string host;  // lower case; an IPv6 literal without its brackets
  std::uint16_t port = 0;
  std::string target;  // path and query, "/" when the URL has none (never the fragment)
  // The Host header: the host as written (brackets around IPv6) and the port when it is not the
  // scheme's default.
  std::string host_header() const;
};

// http or https, a host, no userinfo, an optional port (1..65535), at most 2048 bytes of
// printable ASCII. Pure: nothing is resolved. The error names `field`.
Result<CallbackUrl> parse_callback_url(std::string_view url, const std::string& field);

// What kind of address a destination is. Everything but kPublic is refused unless
// WEBHOOK_ALLOW_PRIVATE=true.
enum class AddressClass {
  kPublic,
  kUnspecified,    // 0.0.0.0/8, ::
  kLoopback,       // 127.0.0.0/8, ::1
  kPrivate,        // RFC 1918, ULA fc00::/7, site-local fec0::/10, NAT64 local-use 64:ff9b:1::/48
  kSharedCgnat,    // 100.64.0.0/10
  kLinkLocal,      // 169.254.0.0/16 (cloud metadata), fe80::/10
  kMulticast,      // 224.0.0.0/4, ff00::/8
  kDocumentation,  // 192.0.2/24, 198.51.100/24, 203.0.113/24, 2001:db8::/32, 3fff::/20
  kReserved,       // everything else that is not global unicast (240/4, broadcast, benchmarking, ...)
};
const char* to_string(AddressClass c);

// An IPv4 address (host byte order) or an IPv6 address (16 bytes, network order). IPv6
// addresses that carry an IPv4 address (IPv4-mapped ::ffff:0:0/96, NAT64 64:ff9b::/96,
// 6to4 2002::/16) are classified by the IPv4 address they carry.
AddressClass classify_v4(std::uint32_t addr);
AddressClass classify_v6(const std::uint8_t (&addr)[16]);
// A textual IP address (no brackets); nullopt when it is not one.
std::optional<AddressClass> classify_ip(std::string_view ip);

// One resolved address of a callback host.
struct Address {
  std::string ip;  // textual, no brackets
  AddressClass kind = AddressClass::kPublic;
};

// The host's addresses: an IP literal as is, a name through the system resolver (every
// address it answers). kInvalid "callback_url_unresolvable" when the name has none.
Result<std::vector<Address>> resolve(const CallbackUrl& url, const std::string& field);

// Resolves the host and refuses it (kInvalid "callback_url_not_public", naming `field`) when
// any of its addresses is not public, unless `allow_private`. Returns the addresses to
// connect to: each one passed the check.
Result<std::vector<Address>> checked_addresses(const CallbackUrl& url, bool allow_private, const std::string& field);

}  // namespace websmtp::webhook
