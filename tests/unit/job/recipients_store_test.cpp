// The store's compact recipients column: what is written reads back the same, whatever an SMTP
// peer put in its reply (quotes, backslashes, control characters, UTF-8, invalid bytes).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "websmtp/job/json.hpp"

using namespace websmtp::job;

TEST(RecipientsColumn, RoundTripsEveryField) {
  Recipient a;
  a.address = "bob@example.net";
  a.kind = RecipientKind::kBcc;
  a.state = RecipientState::kDeferred;
  a.attempts = 3;
  a.smtp_code = 451;
  a.smtp_reply = R"(4.3.0 "try" \later\ )";
  a.time = 1700000000;
  a.next_attempt = 1700000300;
  a.reason = "";
  a.possible_duplicate = true;
  Recipient b;
  b.address = "c@example.com";
  b.state = RecipientState::kFailed;
  b.smtp_reply = "5.1.1 gr\xc3\xbc\xc3\x9f \x01\t tab\n \xff bad";
  b.reason = "rejected";
  Recipient c;  // nothing but the address
  c.address = "d@example.org";
  std::string text = recipients_to_store({a, b, c});
  ASSERT_TRUE(nlohmann::json::accept(text)) << text;
  auto back = recipients_from_store(text);
  ASSERT_EQ(back.size(), 3u);
  EXPECT_EQ(back[0].address, a.address);
  EXPECT_EQ(back[0].kind, a.kind);
  EXPECT_EQ(back[0].state, a.state);
  EXPECT_EQ(back[0].attempts, 3);
  EXPECT_EQ(back[0].smtp_code, 451);
  EXPECT_EQ(back[0].smtp_reply, a.smtp_reply);
  EXPECT_EQ(back[0].time, a.time);
  EXPECT_EQ(back[0].next_attempt, a.next_attempt);
  EXPECT_TRUE(back[0].possible_duplicate);
  EXPECT_EQ(back[1].reason, "rejected");
  EXPECT_EQ(back[1].smtp_reply.substr(0, 12), "5.1.1 gr\xc3\xbc\xc3\x9f");  // valid UTF-8 kept
  EXPECT_NE(back[1].smtp_reply.find("\xef\xbf\xbd"), std::string::npos);    // the invalid byte replaced
  EXPECT_EQ(back[2].address, c.address);
  EXPECT_EQ(back[2].state, RecipientState::kQueued);
  EXPECT_FALSE(back[2].possible_duplicate);
  EXPECT_EQ(recipients_to_store({}), "[]");
}

TEST(RecipientsStore, HostAndTlsSurviveTheRoundTripAndReachTheStatus) {
  Recipient r;
  r.address = "bob@example.net";
  r.state = RecipientState::kDelivered;
  r.host = "mx1.example.net";
  r.tls = true;
  auto back = recipients_from_store(recipients_to_store({r}));
  ASSERT_EQ(back.size(), 1u);
  EXPECT_EQ(back[0].host, "mx1.example.net");
  EXPECT_TRUE(back[0].tls);
  Job j;
  j.recipients = {r, Recipient{}};
  auto doc = status_json(j);
  EXPECT_EQ(doc["recipients"][0]["host"], "mx1.example.net");
  EXPECT_EQ(doc["recipients"][0]["tls"], true);
  EXPECT_FALSE(doc["recipients"][1].contains("host"));  // no attempt reached a host yet
}
