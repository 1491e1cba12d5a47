#include <gtest/gtest.h>

#include "websmtp/config/config.hpp"

using namespace websmtp::config;

namespace {
Config load_env(std::map<std::string, std::string> env) {
  return load(
      [&](const std::string& k) -> std::optional<std::string> {
        auto it = env.find(k);
        if (it == env.end()) return std::nullopt;
        return it->second;
      },
      {});
}

std::string failing_key(std::map<std::string, std::string> env) {
  try {
    load_env(std::move(env));
  } catch (const ConfigError& e) {
    return e.key;
  }
  return {};
}
}  // namespace

TEST(WebhookConfig, DefaultsAndValues) {
  auto d = load_env({{"DELIVERY", "sandbox"}});
  EXPECT_EQ(d.webhook_secret, "");
  EXPECT_EQ(d.webhook_retry_min_s, 10);
  EXPECT_EQ(d.webhook_retry_max_s, 3600);
  EXPECT_FALSE(d.webhook_allow_private);
  auto c = load_env({{"DELIVERY", "sandbox"},
                     {"WEBHOOK_SECRET", "whsec_0123456789abcdef"},
                     {"WEBHOOK_RETRY_MIN", "1s"},
                     {"WEBHOOK_RETRY_MAX", "2h"},
                     {"WEBHOOK_ALLOW_PRIVATE", "true"}});
  EXPECT_EQ(c.webhook_secret, "whsec_0123456789abcdef");
  EXPECT_EQ(c.webhook_retry_min_s, 1);
  EXPECT_EQ(c.webhook_retry_max_s, 7200);
  EXPECT_TRUE(c.webhook_allow_private);
}

TEST(WebhookConfig, BadValuesNameTheirKey) {
  EXPECT_EQ(failing_key({{"DELIVERY", "sandbox"}, {"WEBHOOK_SECRET", "short"}}), "WEBHOOK_SECRET");
  EXPECT_EQ(failing_key({{"DELIVERY", "sandbox"}, {"WEBHOOK_RETRY_MIN", "soon"}}), "WEBHOOK_RETRY_MIN");
  EXPECT_EQ(failing_key({{"DELIVERY", "sandbox"}, {"WEBHOOK_RETRY_MIN", "2h"}, {"WEBHOOK_RETRY_MAX", "1h"}}),
            "WEBHOOK_RETRY_MAX");
  EXPECT_EQ(failing_key({{"DELIVERY", "sandbox"}, {"WEBHOOK_ALLOW_PRIVATE", "maybe"}}), "WEBHOOK_ALLOW_PRIVATE");
}
