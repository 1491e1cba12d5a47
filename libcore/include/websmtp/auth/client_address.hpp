#pragma once
// Who the client is when websmtpd sits behind a reverse proxy: X-Forwarded-For is believed only
// when the connection comes from one of TRUSTED_PROXIES, and then only as far back as the chain
// of trusted proxies goes (the rightmost address that is not one of them is the client).
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "websmtp/common/error.hpp"

namespace websmtp::auth {

class TrustedProxies {
 public:
  TrustedProxies() = default;
  // A comma list of addresses or CIDR blocks (IPv4 or IPv6); empty: trust nobody.
  static Result<TrustedProxies> parse(std::string_view list);

  bool empty() const { return nets_.empty(); }
  bool trusted(std::string_view address) const;
  // The client's address, given the peer's and the X-Forwarded-For header value(s), if any.
  std::string client(std::string_view peer, std::optional<std::string_view> forwarded_for) const;

 private:
  struct Net {
    int family = 0;  // AF_INET or AF_INET6
    std::array<std::uint8_t, 16> addr{};
    int prefix = 0;
  };
  std::vector<Net> nets_;
};

}  // namespace websmtp::auth
