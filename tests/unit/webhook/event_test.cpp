#include "websmtp/webhook/event.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "websmtp/service/status.hpp"

using namespace websmtp;
using namespace websmtp::webhook;

TEST(WebhookEvent, SignsTimestampDotBody) {
  // Expected value from Python: hmac.new(secret, b'1700000000.{"a":1}', hashlib.sha256).hexdigest()
  EXPECT_EQ(signature_header("whsec_0123456789abcdef", 1700000000, R"({"a":1})"),
            "t=1700000000,v1=9f5e37cdc7ea587c7c02062d93283cad000d66a831b2a1676418696db47ed6c2");
  EXPECT_NE(signature_header("whsec_0123456789abcdef", 1700000001, R"({"a":1})"),
            signature_header("whsec_0123456789abcdef", 1700000000, R"({"a":1})"));
}

TEST(WebhookEvent, BackoffDoublesFromMinUpToMax) {
  EXPECT_EQ(retry_delay_ms(1, 10'000, 3'600'000), 10'000);
  EXPECT_EQ(retry_delay_ms(2, 10'000, 3'600'000), 20'000);
  EXPECT_EQ(retry_delay_ms(3, 10'000, 3'600'000), 40'000);
  EXPECT_EQ(retry_delay_ms(9, 10'000, 3'600'000), 2'560'000);
  EXPECT_EQ(retry_delay_ms(10, 10'000, 3'600'000), 3'600'000);
  EXPECT_EQ(retry_delay_ms(1000, 10'000, 3'600'000), 3'600'000);  // no overflow
  EXPECT_EQ(retry_delay_ms(5, 1'000, 1'000), 1'000);
}

TEST(WebhookEvent, CarriesThePublicStatusAsData) {
  job::Job j;
  j.ref = "0190b3c4-0000-7000-8000-000000000001";
  j.submitted = 1700000000;
  j.completed = 1700000005;
  j.started = true;
  j.recipients.push_back({.address = "bob@example.net",
                          .state = job::RecipientState::kDelivered,
                          .attempts = 1,
                          .smtp_code = 250,
                          .smtp_reply = "2.0.0 Ok",
                          .time = 1700000005});
  std::string body = completed_event_body("evt-1", 1700000005, j);
  auto doc = nlohmann::json::parse(body);
  EXPECT_EQ(doc["id"], "evt-1");
  EXPECT_EQ(doc["type"], "job.completed");
  EXPECT_EQ(doc["created"], 1700000005);
  EXPECT_EQ(doc["data"].dump(), service::status_text(j));
  EXPECT_EQ(doc["data"]["status"], "completed");
}
