#include "websmtp/webhook/sender.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <map>
#include <thread>

#include "../../support/manual_clock.hpp"
#include "../../support/temp_dir.hpp"
#include "../store/test_jobs.hpp"
#include "websmtp/webhook/event.hpp"

using namespace websmtp;
using websmtp::test_support::kT0;

namespace {

// Waits (bounded) for a condition another thread makes true.
bool eventually(const std::function<bool()>& cond) {
  auto end = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < end) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return cond();
}

struct Call {
  std::string host_ip;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string header(const std::string& name) const {
    for (const auto& [n, v] : headers)
      if (n == name) return v;
    return {};
  }
};

// A store holding one job with `callback_url`, completed: its event is in the outbox.
std::unique_ptr<store::Store> store_with_event(const test_support::TempDir& dir, const std::string& callback_url) {
  auto store = store::open_sqlite({dir.file("db")});
  job::Job j = test_support::make_job();
  j.callback_url = callback_url;
  job::Job* p = &j;
  store->insert(std::span<job::Job* const>(&p, 1));
  store::JobUpdate u = test_support::delivered(j);
  store->update(std::span<const store::JobUpdate>(&u, 1));
  return store;
}

}  // namespace

TEST(WebhookSender, RetriesWithBackoffThenStopsOnSuccess) {
  test_support::TempDir dir;
  websmtp::testing::ManualClock clock(kT0);
  auto store = store_with_event(dir, "http://127.0.0.1:9/hook?x=1");

  std::mutex mu;
  std::vector<Call> calls;
  std::vector<int> answers = {500, 0, 200};  // an error, a refused connection, then success
  webhook::SenderOptions o{
      .secret = "whsec_0123456789abcdef", .retry_min_ms = 1000, .retry_max_ms = 4000, .allow_private = true};
  webhook::Sender sender(*store, clock, o,
                         [&](const webhook::CallbackUrl& url, const webhook::Address& a, const std::string& body,
                             const std::vector<std::pair<std::string, std::string>>& headers) {
                           EXPECT_EQ(url.target, "/hook?x=1");
                           std::lock_guard l(mu);
                           calls.push_back({a.ip, body, headers});
                           int status = answers[std::min(calls.size(), answers.size()) - 1];
                           return webhook::PostResult{status, status ? "" : "connection refused"};
                         });
  auto count = [&] {
    std::lock_guard l(mu);
    return calls.size();
  };
  sender.start();
  ASSERT_TRUE(eventually([&] { return store->webhook_next_at() == kT0 + 1000; }));
  EXPECT_EQ(count(), 1u);
  clock.advance_ms(999);
  sender.wake();
  clock.advance_ms(1);  // the first retry: min
  ASSERT_TRUE(eventually([&] { return store->webhook_next_at() == kT0 + 1000 + 2000; }));
  EXPECT_EQ(count(), 2u);
  clock.advance_ms(2000);  // doubled
  ASSERT_TRUE(eventually([&] { return !store->webhook_next_at(); }));
  sender.stop();

  ASSERT_EQ(calls.size(), 3u);
  for (const auto& c : calls) {
    EXPECT_EQ(c.host_ip, "127.0.0.1");
    EXPECT_EQ(c.body, calls[0].body);  // the same event every time
    EXPECT_EQ(c.header("Host"), "127.0.0.1:9");
    EXPECT_EQ(c.header("Content-Type"), "application/json");
    EXPECT_EQ(c.header("User-Agent").rfind("websmtp/", 0), 0u);
  }
  EXPECT_EQ(calls[0].header("Websmtp-Signature"), webhook::signature_header(o.secret, kT0 / 1000, calls[0].body));
  EXPECT_EQ(calls[2].header("Websmtp-Signature"),
            webhook::signature_header(o.secret, (kT0 + 3000) / 1000, calls[2].body));
}

TEST(WebhookSender, DropsAnEventAfterItsRetryWindow) {
  test_support::TempDir dir;
  websmtp::testing::ManualClock clock(kT0);
  auto store = store_with_event(dir, "http://127.0.0.1:9/");
  clock.advance_ms(24 * 3600 * 1000LL);  // the receiver was down all day
  std::atomic<int> posts{0};
  webhook::Sender sender(*store, clock, {.secret = "whsec_0123456789abcdef", .allow_private = true},
                         [&](const auto&, const auto&, const auto&, const auto&) {
                           ++posts;
                           return webhook::PostResult{503, {}};
                         });
  sender.start();
  ASSERT_TRUE(eventually([&] { return !store->webhook_next_at(); }));
  sender.stop();
  EXPECT_EQ(posts.load(), 1);
}

TEST(WebhookSender, SendsEachEventOnceAcrossThreads) {
  test_support::TempDir dir;
  websmtp::testing::ManualClock clock(kT0);
  auto store = store::open_sqlite({dir.file("db")});
  std::vector<job::Job> jobs(40, test_support::make_job());
  std::vector<job::Job*> ptrs;
  for (auto& j : jobs) {
    j.ref = new_uuid_v7(kT0);
    j.callback_url = "http://127.0.0.1:9/";
    ptrs.push_back(&j);
  }
  store->insert(ptrs);
  std::mutex mu;
  std::map<std::string, int> posts;  // event body -> POSTs
  webhook::Sender sender(*store, clock, {.secret = "whsec_0123456789abcdef", .allow_private = true, .threads = 4},
                         [&](const auto&, const auto&, const std::string& body, const auto&) {
                           std::lock_guard l(mu);
                           ++posts[body];
                           return webhook::PostResult{204, {}};
                         });
  sender.start();
  std::vector<store::JobUpdate> done;
  for (const auto& j : jobs) done.push_back(test_support::delivered(j));
  for (std::size_t i = 0; i < done.size(); i += 10) {  // completed in four commits, each waking the sender
    store->update(std::span<const store::JobUpdate>(done).subspan(i, 10));
    sender.wake();
  }
  ASSERT_TRUE(eventually([&] {
    std::lock_guard l(mu);
    return posts.size() == jobs.size() && !store->webhook_next_at();
  }));
  sender.stop();
  for (const auto& [body, n] : posts) EXPECT_EQ(n, 1) << body;
}
