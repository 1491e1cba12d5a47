// The admin API's guard: which Host headers name the admin listener, the bearer check.
#include "admin_guard.hpp"

#include <gtest/gtest.h>

#include "websmtp/config/config.hpp"

using namespace websmtp::daemon;

TEST(AdminGuard, HostMustNameTheLoopbackListener) {
  for (const char* ok :
       {"localhost", "LocalHost:8081", "127.0.0.1", "127.0.0.1:8081", "[::1]", "[::1]:8081", "[0:0::1]:8081"})
    EXPECT_TRUE(admin_host_allowed(ok, "127.0.0.1", 8081)) << ok;
  for (const char* bad :
       {"evil.example", "evil.example:8081", "127.0.0.1:8082", "localhost:", "localhost:x", "127.0.0.2", "::1", "[::1",
        "[::1]x", "", ":8081", "localhost.:8081", "10.0.0.5", "[::2]", "127.0.0.1:08081x"})
    EXPECT_FALSE(admin_host_allowed(bad, "127.0.0.1", 8081)) << bad;
}

TEST(AdminGuard, HostMayNameAdminHost) {
  EXPECT_TRUE(admin_host_allowed("10.0.0.5:9000", "10.0.0.5", 9000));
  EXPECT_TRUE(admin_host_allowed("admin.internal", "admin.internal", 9000));
  EXPECT_TRUE(admin_host_allowed("[fd00::5]:9000", "fd00::5", 9000));
  EXPECT_FALSE(admin_host_allowed("10.0.0.6:9000", "10.0.0.5", 9000));
  // A wildcard listener answers on every address: any IP literal, never a name other than localhost.
  EXPECT_TRUE(admin_host_allowed("192.0.2.7:9000", "0.0.0.0", 9000));
  EXPECT_TRUE(admin_host_allowed("[2001:db8::7]", "::", 9000));
  EXPECT_FALSE(admin_host_allowed("rebound.example:9000", "0.0.0.0", 9000));
}

TEST(AdminGuard, BearerTokenMustMatchExactly) {
  const std::string token = "0123456789abcdef-token";
  EXPECT_TRUE(bearer_matches("Bearer " + token, token));
  EXPECT_TRUE(bearer_matches("bearer  " + token, token));
  EXPECT_FALSE(bearer_matches(std::nullopt, token));
  EXPECT_FALSE(bearer_matches("Bearer", token));
  EXPECT_FALSE(bearer_matches("Bearer " + token + "x", token));
  EXPECT_FALSE(bearer_matches("Bearer " + token.substr(1), token));
  EXPECT_FALSE(bearer_matches("Basic " + token, token));
  EXPECT_FALSE(bearer_matches("Bearer" + token, token));
  EXPECT_TRUE(constant_time_equals("", ""));
  EXPECT_FALSE(constant_time_equals("a", ""));
  EXPECT_FALSE(constant_time_equals("", "a"));
  EXPECT_FALSE(constant_time_equals(std::string_view("a\0", 2), "a"));
}

TEST(AdminGuard, LoopbackHostsNeedNoToken) {
  using websmtp::config::is_loopback_host;
  for (const char* h : {"127.0.0.1", "127.8.9.10", "localhost", "::1", "[::1]"}) EXPECT_TRUE(is_loopback_host(h)) << h;
  for (const char* h : {"0.0.0.0", "::", "10.0.0.1", "example.org", "128.0.0.1", ""})
    EXPECT_FALSE(is_loopback_host(h)) << h;
}
