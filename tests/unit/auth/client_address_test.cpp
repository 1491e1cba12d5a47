#include "websmtp/auth/client_address.hpp"

#include <gtest/gtest.h>

namespace websmtp::auth {
namespace {

TEST(TrustedProxies, NobodyIsTrustedByDefault) {
  TrustedProxies none;
  EXPECT_EQ(none.client("203.0.113.9", "198.51.100.1"), "203.0.113.9");
}

TEST(TrustedProxies, MatchesAddressesAndCidrBlocks) {
  auto t = TrustedProxies::parse("10.0.0.0/8, 192.168.1.7, ::1, fd00::/8");
  ASSERT_TRUE(t);
  EXPECT_TRUE(t->trusted("10.200.3.4"));
  EXPECT_TRUE(t->trusted("192.168.1.7"));
  EXPECT_FALSE(t->trusted("192.168.1.8"));
  EXPECT_TRUE(t->trusted("::1"));
  EXPECT_TRUE(t->trusted("::ffff:10.1.1.1"));  // IPv4-mapped counts as IPv4
  EXPECT_TRUE(t->trusted("fd12::5"));
  EXPECT_FALSE(t->trusted("fe80::1"));
  EXPECT_FALSE(t->trusted("not an address"));
}

TEST(TrustedProxies, BelievesForwardedForOnlyFromATrustedPeer) {
  auto t = *TrustedProxies::parse("127.0.0.1");
  EXPECT_EQ(t.client("127.0.0.1", "203.0.113.5"), "203.0.113.5");
  EXPECT_EQ(t.client("198.51.100.2", "203.0.113.5"), "198.51.100.2");
  EXPECT_EQ(t.client("127.0.0.1", std::nullopt), "127.0.0.1");
}

TEST(TrustedProxies, TakesTheRightmostUntrustedHop) {
  auto t = *TrustedProxies::parse("127.0.0.1,10.0.0.0/8");
  // A client may forge the left part; the hops our proxies appended are on the right.
  EXPECT_EQ(t.client("127.0.0.1", "1.2.3.4, 203.0.113.5, 10.0.0.3"), "203.0.113.5");
  EXPECT_EQ(t.client("127.0.0.1", "10.0.0.9, 10.0.0.3"), "10.0.0.9");  // all trusted: the leftmost
  EXPECT_EQ(t.client("127.0.0.1", "garbage, 203.0.113.5"), "203.0.113.5");
  EXPECT_EQ(t.client("127.0.0.1", "203.0.113.5, garbage"), "127.0.0.1");  // stops at garbage
}

TEST(TrustedProxies, RefusesWhatIsNotAnAddressOrBlock) {
  for (const char* bad : {"10.0.0.0/33", "::1/129", "example.org", "10.0.0.0/", "1.2.3.4/x"}) {
    auto t = TrustedProxies::parse(bad);
    ASSERT_FALSE(t) << bad;
    EXPECT_EQ(t.error().field, "TRUSTED_PROXIES");
  }
}

}  // namespace
}  // namespace websmtp::auth
