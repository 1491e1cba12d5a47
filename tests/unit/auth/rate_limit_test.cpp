#include "websmtp/auth/rate_limit.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

namespace websmtp::auth {
namespace {

constexpr std::int64_t kT0 = 1'700'000'000'000;

TEST(RateLimiter, LetsTheWholeQuotaThroughAtOnceThenOneEveryInterval) {
  RateLimiter rl;
  Quota q{10, 60'000};  // one every 6 s
  for (int i = 0; i < 10; ++i) {
    auto d = rl.take("k", q, 1, kT0);
    ASSERT_TRUE(d.allowed) << i;
    EXPECT_EQ(d.limit, 10);
    EXPECT_EQ(d.remaining, 9 - i);
  }
  auto refused = rl.take("k", q, 1, kT0);
  EXPECT_FALSE(refused.allowed);
  EXPECT_EQ(refused.remaining, 0);
  EXPECT_EQ(refused.retry_after_s, 6);
  EXPECT_EQ(refused.reset_s, 60);
  EXPECT_FALSE(rl.take("k", q, 1, kT0 + 5'999).allowed);
  EXPECT_TRUE(rl.take("k", q, 1, kT0 + 6'000).allowed);
  // After a full window of silence the whole quota is back.
  auto later = rl.peek("k", q, kT0 + 6'000 + 60'000);
  EXPECT_EQ(later.remaining, 10);
  EXPECT_EQ(later.reset_s, 0);
}

TEST(RateLimiter, ACostIsTakenWholeOrNotAtAll) {
  RateLimiter rl;
  Quota q{100, 60'000};
  EXPECT_TRUE(rl.take("k", q, 60, kT0).allowed);
  auto d = rl.take("k", q, 50, kT0);  // 60 + 50 > 100
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.remaining, 40);  // nothing taken
  EXPECT_TRUE(rl.take("k", q, 40, kT0).allowed);
  // More than the whole quota never fits: the answer says when the quota is full again.
  auto huge = rl.take("other", q, 101, kT0);
  EXPECT_FALSE(huge.allowed);
}

TEST(RateLimiter, CallersDoNotShareBuckets) {
  RateLimiter rl;
  Quota q{1, 60'000};
  EXPECT_TRUE(rl.take("a", q, 1, kT0).allowed);
  EXPECT_FALSE(rl.take("a", q, 1, kT0).allowed);
  EXPECT_TRUE(rl.take("b", q, 1, kT0).allowed);
}

TEST(RateLimiter, RefundGivesBackWhatWasTaken) {
  RateLimiter rl;
  Quota q{2, 60'000};
  EXPECT_TRUE(rl.take("a", q, 2, kT0).allowed);
  rl.refund("a", q, 1);
  EXPECT_TRUE(rl.take("a", q, 1, kT0).allowed);
  EXPECT_FALSE(rl.take("a", q, 1, kT0).allowed);
}

TEST(RateLimiter, NoQuotaMeansNoLimit) {
  RateLimiter rl;
  for (int i = 0; i < 1000; ++i) EXPECT_TRUE(rl.take("a", Quota{}, 1, kT0).allowed);
  EXPECT_EQ(rl.size(), 0u);
}

TEST(RateLimiter, RefilledBucketsOfOneOffCallersAreDropped) {
  RateLimiter rl;
  Quota q{5, 1'000};
  for (int i = 0; i < 100'000; ++i) rl.take("addr" + std::to_string(i), q, 1, kT0);
  EXPECT_EQ(rl.size(), 100'000u);
  // Long after, new callers sweep the refilled ones away shard by shard.
  for (int i = 0; i < 100'000; ++i) rl.take("new" + std::to_string(i), q, 1, kT0 + 60'000);
  EXPECT_LT(rl.size(), 150'000u);
}

TEST(RateLimiter, ConcurrentTakesNeverExceedTheQuota) {
  RateLimiter rl;
  Quota q{1000, 60'000};
  std::atomic<int> allowed{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&] {
      for (int i = 0; i < 1000; ++i)
        if (rl.take("shared", q, 1, kT0).allowed) ++allowed;
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ(allowed.load(), 1000);
}

TEST(ParseQuota, ReadsCountPerUnit) {
  EXPECT_EQ(parse_quota("120/m", "K")->limit, 120);
  EXPECT_EQ(parse_quota("120/m", "K")->window_ms, 60'000);
  EXPECT_EQ(parse_quota("10/s", "K")->window_ms, 1'000);
  EXPECT_EQ(parse_quota("5/h", "K")->window_ms, 3'600'000);
  EXPECT_EQ(parse_quota("5/d", "K")->window_ms, 86'400'000);
  EXPECT_FALSE(bool(*parse_quota("", "K")));
  for (const char* bad : {"120", "0/m", "-1/m", "1/x", "a/m", "1/mm", "/m"}) {
    auto q = parse_quota(bad, "RATE_LIMIT_IP");
    ASSERT_FALSE(q) << bad;
    EXPECT_EQ(q.error().field, "RATE_LIMIT_IP");
  }
}

TEST(Tighter, PicksTheRefusalThenTheFewestRemaining) {
  Decision a{true, 10, 5, 30, 0}, b{true, 100, 2, 80, 0}, no{false, 10, 0, 60, 6};
  EXPECT_EQ(tighter(a, b).limit, 100);
  EXPECT_FALSE(tighter(a, no).allowed);
  EXPECT_EQ(tighter(Decision{}, a).limit, 10);
}

}  // namespace
}  // namespace websmtp::auth
