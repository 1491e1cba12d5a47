#include "websmtp/auth/keys.hpp"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include <fstream>

#include "../../support/manual_clock.hpp"
#include "../../support/temp_dir.hpp"
#include "websmtp/auth/principal.hpp"
#include "websmtp/auth/status_token.hpp"
#include "websmtp/job/validation.hpp"
#include "websmtp/store/store.hpp"

namespace websmtp::auth {
namespace {

using nlohmann::json;
using test_support::TempDir;
using testing::ManualClock;

struct KeysTest : ::testing::Test {
  TempDir dir;
  ManualClock clock;
  std::unique_ptr<store::Store> store = store::open_sqlite({dir.file("websmtp.db")});
};

TEST_F(KeysTest, CreatesAKeyShownOnceAndStoresOnlyItsHash) {
  KeyRegistry reg(*store, clock);
  auto c = reg.create(json{{"name", "billing"}, {"senders", {"*@example.org"}}, {"rate_per_minute", 10}});
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->secret.rfind("sk_", 0), 0u);
  EXPECT_GE(c->secret.size(), 40u);
  EXPECT_EQ(c->key->prefix, c->secret.substr(0, 12));
  EXPECT_EQ(reg.find(c->secret).get(), c->key.get());
  EXPECT_EQ(reg.find(c->secret + "x"), nullptr);
  EXPECT_EQ(reg.find("sk_nope"), nullptr);
  // The database holds no key, only a hash of it.
  for (const auto& r : store->list_keys()) {
    EXPECT_EQ(r.hash.size(), 64u);
    EXPECT_EQ(r.policy_json.find(c->secret), std::string::npos);
    EXPECT_NE(r.hash, c->secret);
  }
  std::ifstream db(dir.file("websmtp.db"), std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(db)), {});
  EXPECT_EQ(bytes.find(c->secret), std::string::npos);
}

TEST_F(KeysTest, KeysSurviveARestartAndRevocationIsImmediate) {
  std::string secret, id;
  {
    KeyRegistry reg(*store, clock);
    auto c = reg.create(json{{"name", "a"}});
    ASSERT_TRUE(c);
    secret = c->secret;
    id = c->key->id;
  }
  KeyRegistry reg(*store, clock);
  auto k = reg.find(secret);
  ASSERT_NE(k, nullptr);
  EXPECT_EQ(k->id, id);
  ASSERT_TRUE(reg.revoke(id));
  EXPECT_EQ(reg.find(secret), nullptr);
  EXPECT_FALSE(reg.revoke(id));  // already revoked: 404
  EXPECT_EQ(reg.revoke("key_unknown").error().kind, ErrorKind::kNotFound);
  ASSERT_EQ(reg.list().size(), 1u);
  EXPECT_NE(reg.list()[0]->revoked, 0);
  KeyRegistry again(*store, clock);
  EXPECT_EQ(again.find(secret), nullptr);  // revocation is stored
}

TEST_F(KeysTest, PublishableKeysNeedOriginsAndSecretKeysMustNotHaveThem) {
  KeyRegistry reg(*store, clock);
  auto no_origin = reg.create(json{{"name", "form"}, {"type", "publishable"}});
  ASSERT_FALSE(no_origin);
  EXPECT_EQ(no_origin.error().field, "origins");
  auto secret_with_origin = reg.create(json{{"name", "s"}, {"origins", {"https://a.example"}}});
  ASSERT_FALSE(secret_with_origin);
  EXPECT_EQ(secret_with_origin.error().field, "origins");
  auto pk = reg.create(json{{"name", "form"}, {"type", "publishable"}, {"origins", {"https://Shop.Example"}}});
  ASSERT_TRUE(pk);
  EXPECT_EQ(pk->secret.rfind("pk_", 0), 0u);
  EXPECT_TRUE(reg.origin_allowed("https://shop.example"));
  EXPECT_FALSE(reg.origin_allowed("https://evil.example"));
  ASSERT_TRUE(reg.revoke(pk->key->id));
  EXPECT_FALSE(reg.origin_allowed("https://shop.example"));  // a revoked key's origins go too
}

TEST_F(KeysTest, RefusesBadKeyBodies) {
  KeyRegistry reg(*store, clock);
  struct Case {
    json body;
    const char* field;
  } cases[] = {
      {json{{"type", "secret"}}, "name"},
      {json{{"name", ""}}, "name"},
      {json{{"name", "a\nb"}}, "name"},
      {json{{"name", "a"}, {"type", "admin"}}, "type"},
      {json{{"name", "a"}, {"colour", "red"}}, "colour"},
      {json{{"name", "a"}, {"senders", "a@b.example"}}, "senders"},
      {json{{"name", "a"}, {"senders", {"not an address"}}}, "senders[0]"},
      {json{{"name", "a"}, {"recipients", {"ok@b.example", 7}}}, "recipients[1]"},
      {json{{"name", "a"}, {"recipient_domains", {"bad domain"}}}, "recipient_domains[0]"},
      {json{{"name", "a"}, {"max_recipients", 0}}, "max_recipients"},
      {json{{"name", "a"}, {"rate_per_day", "10"}}, "rate_per_day"},
      {json{{"name", "a"}, {"type", "publishable"}, {"origins", {"https://a.example/path"}}}, "origins[0]"},
      {json{{"name", "a"}, {"type", "publishable"}, {"origins", {"javascript:alert(1)"}}}, "origins[0]"},
  };
  for (const auto& c : cases) {
    auto r = reg.create(c.body);
    ASSERT_FALSE(r) << c.body.dump();
    EXPECT_EQ(r.error().field, c.field) << c.body.dump();
  }
  EXPECT_TRUE(reg.list().empty());
}

TEST_F(KeysTest, LastUseIsNotedAndSaved) {
  std::string secret;
  {
    KeyRegistry reg(*store, clock);
    secret = reg.create(json{{"name", "a"}})->secret;
    clock.advance_ms(5000);
    ASSERT_NE(reg.find(secret), nullptr);
    EXPECT_EQ(key_json(*reg.list()[0])["last_used"], clock.now_ms() / 1000);
  }  // saved at destruction
  EXPECT_EQ(store->list_keys()[0].last_used, clock.now_ms() / 1000);
}

job::MailRequest request(const char* from, std::vector<std::string> to, std::vector<std::string> bcc = {}) {
  job::MailRequest r;
  r.from = {"", from};
  for (auto& a : to) r.to.push_back({"", a});
  for (auto& a : bcc) r.bcc.push_back({"", a});
  return r;
}

TEST(KeyPolicy, SendersMatchAddressesAndWildcardDomains) {
  auto p = *policy_from_json(json{{"senders", {"noreply@shop.example", "*@mail.example"}}}, KeyType::kSecret);
  EXPECT_FALSE(check_policy(p, request("noreply@shop.example", {"a@b.example"})));
  EXPECT_FALSE(check_policy(p, request("NoReply@Shop.Example", {"a@b.example"})));
  EXPECT_FALSE(check_policy(p, request("anyone@mail.example", {"a@b.example"})));
  auto e = check_policy(p, request("ceo@shop.example", {"a@b.example"}));
  ASSERT_TRUE(e);
  EXPECT_EQ(e->kind, ErrorKind::kForbidden);
  EXPECT_EQ(e->code, "forbidden");
  EXPECT_EQ(e->field, "from");
  EXPECT_TRUE(check_policy(p, request("x@sub.mail.example", {"a@b.example"})));  // not a subdomain wildcard
}

TEST(KeyPolicy, FixedRecipientsCoverToCcAndBcc) {
  auto p = *policy_from_json(json{{"recipients", {"owner@shop.example"}}}, KeyType::kSecret);
  EXPECT_FALSE(check_policy(p, request("f@x.example", {"owner@shop.example"})));
  auto e = check_policy(p, request("f@x.example", {"owner@shop.example"}, {"spy@evil.example"}));
  ASSERT_TRUE(e);
  EXPECT_EQ(e->field, "bcc[0]");
}

TEST(KeyPolicy, RecipientDomainsCountAndSize) {
  auto p = *policy_from_json(json{{"recipient_domains", {"shop.example"}}, {"max_recipients", 2},
                                  {"max_message_bytes", 1000}},
                             KeyType::kSecret);
  EXPECT_FALSE(check_policy(p, request("f@x.example", {"a@shop.example", "b@SHOP.example"})));
  EXPECT_EQ(check_policy(p, request("f@x.example", {"a@shop.example", "b@other.example"}))->field, "to[1]");
  EXPECT_EQ(check_policy(p, request("f@x.example", {"a@shop.example", "b@shop.example", "c@shop.example"}))->field,
            "to");
  EXPECT_FALSE(check_message_size(p, 1000));
  EXPECT_EQ(check_message_size(p, 1001)->kind, ErrorKind::kForbidden);
}

TEST(Principal, ChargesMinuteAndDayQuotasTogether) {
  RateLimiter rl;
  Principal p;
  p.id = "key:k";
  p.limiter = &rl;
  p.per_minute = Quota{5, 60'000};
  p.per_day = Quota{7, 86'400'000};
  Decision d;
  std::int64_t t = 1'700'000'000'000;
  EXPECT_FALSE(charge(p, 5, t, d));
  EXPECT_EQ(d.remaining, 0);  // the minute's quota is the tighter
  auto e = charge(p, 1, t, d);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->kind, ErrorKind::kRateLimited);
  EXPECT_GE(e->retry_after_s, 1);
  t += 60'000;
  EXPECT_FALSE(charge(p, 2, t, d));  // 7 of the day's 7
  e = charge(p, 1, t, d);
  ASSERT_TRUE(e);  // the day refuses ...
  EXPECT_GT(e->retry_after_s, 3600);
  EXPECT_EQ(peek(p, t).limit, 7);
  // ... and the minute's quota was not charged for the refused job.
  EXPECT_EQ(rl.peek("key:k#m", p.per_minute, t).remaining, 3);
}

TEST(StatusTokens, AreStableAcrossRestartsAndSpecificToARef) {
  TempDir dir;
  auto a = StatusTokens::from_dir(dir.path().string());
  auto b = StatusTokens::from_dir(dir.path().string());
  std::string ref = "01a21e01-5724-7b35-bd3c-4360bba9caf5";
  EXPECT_EQ(a.token(ref), b.token(ref));
  EXPECT_TRUE(b.valid(ref, a.token(ref)));
  EXPECT_FALSE(b.valid("01a21e01-5724-7b35-bd3c-4360bba9caf6", a.token(ref)));
  EXPECT_FALSE(b.valid(ref, ""));
  struct stat st {};
  ASSERT_EQ(::stat(dir.file("status-token.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_NE(StatusTokens::from_dir(TempDir().path().string()).token(ref), a.token(ref));
}

}  // namespace
}  // namespace websmtp::auth
