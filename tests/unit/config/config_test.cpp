#include <gtest/gtest.h>

#include "websmtp/config/config.hpp"

using namespace websmtp::config;

namespace {
Config load_with(std::map<std::string, std::string> env, std::map<std::string, std::string> dotenv = {}) {
  return load(
      [&](const std::string& k) -> std::optional<std::string> {
        auto it = env.find(k);
        if (it == env.end()) return std::nullopt;
        return it->second;
      },
      dotenv);
}
}  // namespace

TEST(Config, SeedKeysAndDefaults) {
  auto c = load_with({{"SMTP_SERVER", "relay.example.com"}, {"THREADS", "4"}, {"PORT", "9000"}});
  EXPECT_EQ(c.delivery, Delivery::kRelay);
  EXPECT_EQ(c.smtp_port, 25);
  EXPECT_EQ(c.threads, 4);
  EXPECT_EQ(c.port, 9000);
  EXPECT_EQ(c.admin_port, 8081);
  EXPECT_EQ(c.retry_min_s, 300);
  EXPECT_EQ(c.retry_max_s, 4000);
  EXPECT_EQ(c.max_lifetime_s, 5 * 86400);
  EXPECT_EQ(c.max_body_bytes, 10 * 1024 * 1024);
  EXPECT_EQ(c.smtp_tls, TlsMode::kOpportunistic);
}

TEST(Config, EnvironmentWinsOverDotenv) {
  auto c = load_with({{"DELIVERY", "sandbox"}, {"PORT", "1234"}}, {{"PORT", "5678"}, {"THREADS", "3"}});
  EXPECT_EQ(c.port, 1234);
  EXPECT_EQ(c.threads, 3);
}

TEST(Config, GinModeIsALogLevelAlias) {
  EXPECT_EQ(load_with({{"DELIVERY", "sandbox"}, {"GIN_MODE", "debug"}}).log_level, "debug");
  EXPECT_EQ(load_with({{"DELIVERY", "sandbox"}, {"GIN_MODE", "release"}}).log_level, "info");
  EXPECT_EQ(load_with({{"DELIVERY", "sandbox"}, {"GIN_MODE", "debug"}, {"LOG_LEVEL", "warn"}}).log_level, "warn");
}

TEST(Config, BadValuesNameTheirKey) {
  auto key_of = [](std::map<std::string, std::string> env) {
    try {
      load_with(env);
    } catch (const ConfigError& e) {
      return e.key;
    }
    return std::string("none");
  };
  EXPECT_EQ(key_of({{"DELIVERY", "sandbox"}, {"PORT", "http"}}), "PORT");
  EXPECT_EQ(key_of({{"DELIVERY", "sandbox"}, {"PORT", "70000"}}), "PORT");
  EXPECT_EQ(key_of({{"DELIVERY", "sandbox"}, {"THREADS", "0"}}), "THREADS");
  EXPECT_EQ(key_of({{"DELIVERY", "sandbox"}, {"RETRY_MIN", "5 minutes"}}), "RETRY_MIN");
  EXPECT_EQ(key_of({{"DELIVERY", "sandbox"}, {"SMTP_TLS", "maybe"}}), "SMTP_TLS");
  EXPECT_EQ(key_of({{"DELIVERY", "sandbox"}, {"MAX_BODY_BYTES", "huge"}}), "MAX_BODY_BYTES");
  EXPECT_EQ(key_of({{"DELIVERY", "sandbox"}, {"CORS_ORIGINS", "example.com"}}), "CORS_ORIGINS");
  EXPECT_EQ(key_of({{"DELIVERY", "sandbox"}, {"RETRY_MIN", "10m"}, {"RETRY_MAX", "5m"}}), "RETRY_MAX");
}

TEST(Config, DirectMxIsTheDefaultWithoutSmtpServer) {
  auto c = load_with({});
  EXPECT_EQ(c.delivery, Delivery::kMx);
  EXPECT_EQ(c.smtp_port, 25);
  EXPECT_EQ(c.mx_tls, websmtp::smtp::MxTls::kOpportunistic);
  EXPECT_TRUE(c.dns_server.empty());
  auto d = load_with({{"DNS_SERVER", "127.0.0.1:5353"}, {"MX_TLS", "require"}, {"SMTP_PORT", "2525"}});
  EXPECT_EQ(d.dns_server, "127.0.0.1:5353");
  EXPECT_EQ(d.mx_tls, websmtp::smtp::MxTls::kRequire);
  EXPECT_EQ(d.smtp_port, 2525);
}

TEST(Config, BadMxKeysAreNamed) {
  auto key_of = [](std::map<std::string, std::string> env) -> std::string {
    try {
      load_with(env);
    } catch (const ConfigError& e) {
      return e.key;
    }
    return "";
  };
  EXPECT_EQ(key_of({{"DNS_SERVER", "dns.example"}}), "DNS_SERVER");
  EXPECT_EQ(key_of({{"DNS_SERVER", "127.0.0.1:0"}}), "DNS_SERVER");
  EXPECT_EQ(key_of({{"MX_TLS", "maybe"}}), "MX_TLS");
  EXPECT_EQ(key_of({{"SMTP_CA_FILE", "/nonexistent/ca.pem"}}), "SMTP_CA_FILE");
  EXPECT_EQ(key_of({{"MX_MAX_PER_HOST", "0"}}), "MX_MAX_PER_HOST");
}

TEST(Config, DotenvParsesCommentsQuotesAndExport) {
  auto m = parse_dotenv(
      "# comment\nPORT=8080 # trailing\nexport THREADS=2\nSMTP_PWD=\"p#ss word\"\nEMPTY=   # nothing\n\nBAD LINE\n");
  EXPECT_EQ(m["PORT"], "8080");
  EXPECT_EQ(m["THREADS"], "2");
  EXPECT_EQ(m["SMTP_PWD"], "p#ss word");
  EXPECT_EQ(m["EMPTY"], "");
  EXPECT_FALSE(m.contains("BAD LINE"));
}

TEST(Config, EveryKeyIsDocumented) {
  for (const auto& k : keys()) EXPECT_GT(std::string(k.help).size(), 5u) << k.name;
}
