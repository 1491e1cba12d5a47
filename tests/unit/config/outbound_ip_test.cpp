// OUTBOUND_IP and the IPv6 forms of DNS_SERVER (sending-domain check, issue 8).
#include <gtest/gtest.h>

#include "websmtp/config/config.hpp"

using namespace websmtp::config;

namespace {
std::string key_refused(const std::string& key, const std::string& value) {
  try {
    load(
        [&](const std::string& k) -> std::optional<std::string> {
          if (k == key) return value;
          return std::nullopt;
        },
        {});
  } catch (const ConfigError& e) {
    return e.key;
  }
  return "";
}
Config with(const std::string& key, const std::string& value) {
  return load(
      [&](const std::string& k) -> std::optional<std::string> {
        if (k == key) return value;
        return std::nullopt;
      },
      {});
}
}  // namespace

TEST(OutboundIpConfig, AcceptsIpv4AndIpv6Only) {
  EXPECT_EQ(with("OUTBOUND_IP", "192.0.2.10").outbound_ip, "192.0.2.10");
  EXPECT_EQ(with("OUTBOUND_IP", "2001:db8::25").outbound_ip, "2001:db8::25");
  EXPECT_EQ(Config{}.outbound_ip, "");
  for (const char* bad : {"192.0.2.300", "mail.example.org", "192.0.2.0/24", "[2001:db8::1]"})
    EXPECT_EQ(key_refused("OUTBOUND_IP", bad), "OUTBOUND_IP") << bad;
}

TEST(OutboundIpConfig, DnsServerTakesIpv6) {
  EXPECT_EQ(with("DNS_SERVER", "[::1]:5353").dns_server, "[::1]:5353");
  EXPECT_EQ(with("DNS_SERVER", "::1").dns_server, "::1");
  EXPECT_EQ(with("DNS_SERVER", "127.0.0.1").dns_server, "127.0.0.1");
  for (const char* bad : {"[::1]:0", "[::1", "[127.0.0.1]:53", "dns.example:53"})
    EXPECT_EQ(key_refused("DNS_SERVER", bad), "DNS_SERVER") << bad;
}
