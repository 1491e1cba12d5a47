#include "websmtp/webhook/destination.hpp"

#include <gtest/gtest.h>

using namespace websmtp;
using namespace websmtp::webhook;

namespace {

struct Case {
  const char* ip;
  AddressClass kind;
};

}  // namespace

TEST(WebhookDestination, ClassifiesAddresses) {
  const Case kCases[] = {
      // IPv4
      {"0.0.0.0", AddressClass::kUnspecified},
      {"0.1.2.3", AddressClass::kUnspecified},
      {"10.0.0.1", AddressClass::kPrivate},
      {"10.255.255.255", AddressClass::kPrivate},
      {"100.63.255.255", AddressClass::kPublic},
      {"100.64.0.1", AddressClass::kSharedCgnat},
      {"100.127.255.255", AddressClass::kSharedCgnat},
      {"100.128.0.0", AddressClass::kPublic},
      {"127.0.0.1", AddressClass::kLoopback},
      {"127.255.0.9", AddressClass::kLoopback},
      {"169.254.169.254", AddressClass::kLinkLocal},
      {"172.15.255.255", AddressClass::kPublic},
      {"172.16.0.1", AddressClass::kPrivate},
      {"172.31.255.255", AddressClass::kPrivate},
      {"172.32.0.0", AddressClass::kPublic},
      {"192.0.0.8", AddressClass::kReserved},
      {"192.0.2.10", AddressClass::kDocumentation},
      {"192.88.99.1", AddressClass::kReserved},
      {"192.168.1.1", AddressClass::kPrivate},
      {"198.18.0.1", AddressClass::kReserved},
      {"198.19.255.255", AddressClass::kReserved},
      {"198.51.100.7", AddressClass::kDocumentation},
      {"203.0.113.9", AddressClass::kDocumentation},
      {"224.0.0.1", AddressClass::kMulticast},
      {"239.255.255.250", AddressClass::kMulticast},
      {"240.0.0.1", AddressClass::kReserved},
      {"255.255.255.255", AddressClass::kReserved},
      {"8.8.8.8", AddressClass::kPublic},
      {"93.184.216.34", AddressClass::kPublic},
      // IPv6
      {"::", AddressClass::kUnspecified},
      {"::1", AddressClass::kLoopback},
      {"::2", AddressClass::kReserved},
      {"::ffff:127.0.0.1", AddressClass::kLoopback},  // IPv4-mapped: what it carries
      {"::ffff:10.1.2.3", AddressClass::kPrivate},
      {"::ffff:169.254.169.254", AddressClass::kLinkLocal},
      {"::ffff:8.8.8.8", AddressClass::kPublic},
      {"::ffff:7f00:1", AddressClass::kLoopback},  // the same, written in hex
      {"64:ff9b::a00:1", AddressClass::kPrivate},  // NAT64 of 10.0.0.1
      {"64:ff9b::808:808", AddressClass::kPublic},
      {"64:ff9b:1::1", AddressClass::kPrivate},
      {"2002:7f00:1::1", AddressClass::kLoopback},  // 6to4 of 127.0.0.1
      {"2002:808:808::1", AddressClass::kPublic},
      {"fc00::1", AddressClass::kPrivate},
      {"fd12:3456::1", AddressClass::kPrivate},
      {"fe80::1", AddressClass::kLinkLocal},
      {"febf::1", AddressClass::kLinkLocal},
      {"fec0::1", AddressClass::kPrivate},
      {"ff02::1", AddressClass::kMulticast},
      {"2001:db8::1", AddressClass::kDocumentation},
      {"3fff::1", AddressClass::kDocumentation},
      {"2001::1", AddressClass::kReserved},  // Teredo
      {"100::1", AddressClass::kReserved},   // discard prefix
      {"4000::1", AddressClass::kReserved},  // outside 2000::/3
      {"2606:4700:4700::1111", AddressClass::kPublic},
      {"2a00:1450:4001:81c::200e", AddressClass::kPublic},
  };
  for (const auto& c : kCases) {
    SCOPED_TRACE(c.ip);
    auto kind = classify_ip(c.ip);
    ASSERT_TRUE(kind.has_value());
    EXPECT_STREQ(to_string(*kind), to_string(c.kind));
  }
  EXPECT_FALSE(classify_ip("example.com").has_value());
  EXPECT_FALSE(classify_ip("127.1").has_value());
}

TEST(WebhookDestination, ParsesCallbackUrls) {
  auto u = parse_callback_url("https://Hooks.Example.com/in?x=1#frag", "callback_url");
  ASSERT_TRUE(u) << u.error().message;
  EXPECT_TRUE(u->https);
  EXPECT_EQ(u->host, "hooks.example.com");
  EXPECT_EQ(u->port, 443);
  EXPECT_EQ(u->target, "/in?x=1");
  EXPECT_EQ(u->host_header(), "hooks.example.com");

  u = parse_callback_url("http://[::1]:8080", "callback_url");
  ASSERT_TRUE(u) << u.error().message;
  EXPECT_EQ(u->host, "::1");
  EXPECT_EQ(u->port, 8080);
  EXPECT_EQ(u->target, "/");
  EXPECT_EQ(u->host_header(), "[::1]:8080");

  u = parse_callback_url("HTTP://10.0.0.1?q", "callback_url");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->target, "/?q");
  EXPECT_FALSE(u->https);
}

TEST(WebhookDestination, RefusesMalformedCallbackUrls) {
  for (const char* bad :
       {"", "ftp://example.com/", "example.com/hook", "http://", "http:///x", "https://user:pw@example.com/",
        "https://user@example.com/", "http://example.com:0/", "http://example.com:65536/", "http://example.com:/",
        "http://example.com:8o/", "http://exa mple.com/", "http://[::1/", "http://[nope]/", "http://-a.com/",
        "http://127.1/", "http://2130706433/", "http://a..b/", "http://\xc3\xa9.fr/"}) {
    SCOPED_TRACE(bad);
    auto u = parse_callback_url(bad, "jobs[2].callback_url");
    ASSERT_FALSE(u);
    EXPECT_EQ(u.error().code, "invalid_callback_url");
    EXPECT_EQ(u.error().field, "jobs[2].callback_url");
  }
  std::string longest = "https://example.com/" + std::string(kMaxCallbackUrlBytes - 20, 'a');
  EXPECT_TRUE(parse_callback_url(longest, "callback_url"));
  EXPECT_FALSE(parse_callback_url(longest + "a", "callback_url"));
}

TEST(WebhookDestination, RefusesNonPublicDestinationsUnlessAllowed) {
  for (const char* url : {"http://127.0.0.1:9/", "http://10.0.0.1/", "http://[::1]/", "http://localhost/",
                          "http://169.254.169.254/latest/meta-data/", "http://[::ffff:127.0.0.1]/"}) {
    SCOPED_TRACE(url);
    auto u = parse_callback_url(url, "callback_url");
    ASSERT_TRUE(u);
    auto checked = checked_addresses(*u, false, "callback_url");
    ASSERT_FALSE(checked);
    EXPECT_EQ(checked.error().code, "callback_url_not_public");
    EXPECT_EQ(checked.error().field, "callback_url");
    auto allowed = checked_addresses(*u, true, "callback_url");
    ASSERT_TRUE(allowed) << allowed.error().message;
    EXPECT_FALSE(allowed->empty());
  }
  // A public literal passes without any DNS.
  auto u = parse_callback_url("https://93.184.216.34/hook", "callback_url");
  ASSERT_TRUE(u);
  auto checked = checked_addresses(*u, false, "callback_url");
  ASSERT_TRUE(checked);
  EXPECT_EQ(checked->front().ip, "93.184.216.34");
}
