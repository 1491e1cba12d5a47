#include "websmtp/webhook/lookups.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <future>

using websmtp::webhook::Lookups;

TEST(WebhookLookups, RunsTasksOnItsThreadsAndBoundsTheQueue) {
  EXPECT_FALSE(Lookups::on_this_thread());
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<int> ran{0};
  std::atomic<bool> on_lookup_thread{false};
  {
    Lookups lookups(1, 2);
    std::promise<void> started;
    // The one thread is held by the first task; two more may wait, a fourth is refused.
    ASSERT_TRUE(lookups.post([&] {
      on_lookup_thread = Lookups::on_this_thread();
      started.set_value();
      released.wait();
      ++ran;
    }));
    started.get_future().wait();
    EXPECT_TRUE(lookups.post([&] { ++ran; }));
    EXPECT_TRUE(lookups.post([&] { ++ran; }));
    EXPECT_FALSE(lookups.post([&] { ++ran; }));
    release.set_value();
  }  // the destructor runs what was queued
  EXPECT_EQ(ran.load(), 3);
  EXPECT_TRUE(on_lookup_thread.load());
}
