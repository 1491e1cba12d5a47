#include <gtest/gtest.h>

#include "websmtp/service/status_cache.hpp"

using websmtp::service::StatusCache;

namespace {
websmtp::job::Job job_with(const std::string& ref) {
  websmtp::job::Job j;
  j.ref = ref;
  j.message = "big body";
  j.recipients.push_back({.address = "x@y.zz"});
  return j;
}
}  // namespace

TEST(StatusCache, EvictsTheLeastRecentlyUsed) {
  StatusCache c(2);
  c.put(job_with("a"), 1000, 0);
  c.put(job_with("b"), 1000, 0);
  ASSERT_TRUE(c.get("a", 0));  // a is now the most recent
  c.put(job_with("c"), 1000, 0);
  EXPECT_TRUE(c.get("a", 0));
  EXPECT_FALSE(c.get("b", 0));
  EXPECT_TRUE(c.get("c", 0));
  EXPECT_EQ(c.size(), 2u);
}

TEST(StatusCache, ExpiresEntriesAndDropsMessages) {
  StatusCache c(10);
  c.put(job_with("a"), 100, 0);
  auto j = c.get("a", 99);
  ASSERT_TRUE(j);
  EXPECT_TRUE(j->message.empty());
  EXPECT_FALSE(c.get("a", 100));
}

TEST(StatusCache, UpdatesOnlyCachedEntries) {
  StatusCache c(10);
  c.put(job_with("a"), 1000, 0);
  std::vector<websmtp::job::Recipient> rs{{.address = "x@y.zz", .state = websmtp::job::RecipientState::kDelivered}};
  c.update_if_present("a", rs, true, 5, 2000);
  c.update_if_present("zzz", rs, true, 5, 2000);
  auto j = c.get("a", 1500);
  ASSERT_TRUE(j);
  EXPECT_EQ(j->recipients[0].state, websmtp::job::RecipientState::kDelivered);
  EXPECT_EQ(j->completed, 5);
  EXPECT_FALSE(c.get("zzz", 0));
}

TEST(StatusCache, DoesNotCacheAReadThatAnOutcomeOvertook) {
  StatusCache c(10);
  auto token = c.generation("a");               // a reader takes the token, then reads the store...
  c.update_if_present("a", {}, true, 5, 2000);  // ...while an outcome for "a" commits
  c.put(job_with("a"), 1000, token);            // the (older) read must not be cached
  EXPECT_FALSE(c.get("a", 0));
  c.put(job_with("a"), 1000, c.generation("a"));
  EXPECT_TRUE(c.get("a", 0));
}
