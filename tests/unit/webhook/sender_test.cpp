#include "websmtp/webhook/sender.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
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

// A resolver that answers only when the test lets it (a DNS server that does not answer). Held
// by shared_ptr: the sender may leave its lookup thread running past the test's end.
struct HangingResolver {
  struct State {
    std::mutex mu;
    std::condition_variable cv;
    bool released = false;
    int calls = 0;
  };
  std::shared_ptr<State> state = std::make_shared<State>();
  webhook::Resolver resolver() const {
    return [state = state](const webhook::CallbackUrl&) -> Result<std::vector<webhook::Address>> {
      std::unique_lock lock(state->mu);
      ++state->calls;
      state->cv.notify_all();
      state->cv.wait(lock, [&] { return state->released; });
      return std::vector<webhook::Address>{{"192.0.2.1"}};
    };
  }
  int calls() const {
    std::lock_guard lock(state->mu);
    return state->calls;
  }
  void release() const {
    {
      std::lock_guard lock(state->mu);
      state->released = true;
    }
    state->cv.notify_all();
  }
  ~HangingResolver() { release(); }
};

// Declared after the sender: lets a hanging lookup go before the sender's threads are joined,
// so that a test that fails does not hang.
struct ReleaseFirst {
  const HangingResolver& dns;
  ~ReleaseFirst() { dns.release(); }
};

// A TCP port on 127.0.0.1 whose connections the kernel completes but nobody ever answers.
class SilentListener {
 public:
  SilentListener() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd_, 8) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      ADD_FAILURE() << "cannot listen on 127.0.0.1";
      return;
    }
    port_ = ntohs(addr.sin_port);
  }
  ~SilentListener() {
    if (fd_ >= 0) ::close(fd_);
  }
  std::uint16_t port() const { return port_; }

 private:
  int fd_ = -1;
  std::uint16_t port_ = 0;
};

std::int64_t steady_now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
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
                             const std::vector<std::pair<std::string, std::string>>& headers, std::int64_t) {
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
                         [&](const auto&, const auto&, const auto&, const auto&, std::int64_t) {
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
                         [&](const auto&, const auto&, const std::string& body, const auto&, std::int64_t) {
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

// The claim on a shared store is sized for one send (claim_ms >= 2 * total_timeout_ms): the
// lookup and every address share one deadline, each POST gets only what is left of it.
TEST(WebhookSender, OneDeadlineCoversTheLookupAndEveryAddress) {
  test_support::TempDir dir;
  websmtp::testing::ManualClock clock(kT0);
  auto store = store_with_event(dir, "http://hooks.example.com/hook");
  constexpr std::int64_t kTotal = 3000, kLookup = 300, kRefusedAfter = 400;
  std::mutex mu;
  std::vector<std::pair<std::string, std::int64_t>> calls;  // address, budget
  webhook::SenderOptions o{.secret = "whsec_0123456789abcdef", .retry_min_ms = 1000, .total_timeout_ms = kTotal};
  webhook::Sender sender(
      *store, clock, o,
      [&](const auto&, const webhook::Address& a, const auto&, const auto&, std::int64_t budget) {
        {
          std::lock_guard l(mu);
          calls.emplace_back(a.ip, budget);
        }
        if (a.ip == "192.0.2.1") {  // refuses, after a while
          std::this_thread::sleep_for(std::chrono::milliseconds(kRefusedAfter));
          return webhook::PostResult{0, "connection refused"};
        }
        if (a.ip == "192.0.2.2") {  // takes the connection and never answers: cut at its budget
          std::this_thread::sleep_for(std::chrono::milliseconds(std::max<std::int64_t>(budget, 0)));
          return webhook::PostResult{0, "no answer within the total timeout"};
        }
        return webhook::PostResult{200, {}};  // never reached: the deadline has passed
      },
      {},
      [&](const webhook::CallbackUrl& url) -> Result<std::vector<webhook::Address>> {
        EXPECT_EQ(url.host, "hooks.example.com");
        std::this_thread::sleep_for(std::chrono::milliseconds(kLookup));
        return std::vector<webhook::Address>{{"192.0.2.1"}, {"192.0.2.2"}, {"192.0.2.3"}};
      });
  sender.start();
  ASSERT_TRUE(eventually([&] { return store->webhook_next_at() == kT0 + 1000; }));  // failed, retried later
  sender.stop();
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[0].first, "192.0.2.1");
  EXPECT_EQ(calls[1].first, "192.0.2.2");
  EXPECT_LE(calls[0].second, kTotal - kLookup);  // the lookup counted
  EXPECT_LE(calls[1].second, calls[0].second - kRefusedAfter);  // the rest, not a fresh total
  EXPECT_GT(calls[1].second, 0);
}

namespace {

// A sender of one event whose host lookup hangs until the test ends; it counts its POSTs.
struct HangingLookupSender {
  explicit HangingLookupSender(webhook::SenderOptions o)
      : store(store_with_event(dir, "http://hooks.example.com/hook")),
        sender(
            *store, clock, std::move(o),
            [this](const auto&, const auto&, const auto&, const auto&, std::int64_t) {
              ++posts;
              return webhook::PostResult{200, {}};
            },
            {}, dns.resolver()) {}
  test_support::TempDir dir;
  websmtp::testing::ManualClock clock{kT0};
  std::unique_ptr<store::Store> store;
  HangingResolver dns;
  std::atomic<int> posts{0};
  webhook::Sender sender;
  ReleaseFirst release{dns};  // last: destroyed first
};

}  // namespace

TEST(WebhookSender, ALookupThatDoesNotAnswerEndsTheSendAtItsDeadline) {
  HangingLookupSender t({.secret = "whsec_0123456789abcdef", .retry_min_ms = 1000, .total_timeout_ms = 200});
  t.sender.start();
  // A failed attempt, while the lookup still hangs.
  ASSERT_TRUE(eventually([&] { return t.store->webhook_next_at() == kT0 + 1000; }));
  EXPECT_EQ(t.dns.calls(), 1);
  EXPECT_EQ(t.store->webhook_due(kT0 + 1000, 10, 0).at(0).attempts, 1);
  t.sender.stop();
  EXPECT_EQ(t.posts.load(), 0);
}

TEST(WebhookSender, StopEndsTheWaitForALookup) {
  HangingLookupSender t({.secret = "whsec_0123456789abcdef", .total_timeout_ms = 600'000});  // only stop() ends it
  t.sender.start();
  ASSERT_TRUE(eventually([&] { return t.dns.calls() == 1; }));
  t.sender.stop();
  EXPECT_EQ(t.posts.load(), 0);
  // Not the receiver's failure: the event is due as it was, for the next start.
  auto due = t.store->webhook_due(kT0, 10, 0);
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].attempts, 0);
}

// The real client against a receiver that takes the connection and never answers (nor, for
// https, completes the handshake): cut at the budget it was given, not at its total timeout.
TEST(WebhookHttpPoster, AReceiverThatNeverAnswersIsCutAtTheBudget) {
  SilentListener silent;
  auto poster = webhook::http_poster({.connect_timeout_ms = 60'000, .total_timeout_ms = 60'000});
  for (bool https : {false, true}) {
    webhook::CallbackUrl url{.https = https, .host = "127.0.0.1", .port = silent.port(), .target = "/"};
    std::int64_t start = steady_now_ms();
    auto r = poster.post(url, {"127.0.0.1", webhook::AddressClass::kLoopback}, "{}",
                         {{"Host", url.host_header()}, {"Content-Type", "application/json"}}, 300);
    std::int64_t took = steady_now_ms() - start;
    EXPECT_EQ(r.status, 0) << https;
    EXPECT_NE(r.error.find("total timeout"), std::string::npos) << https << ": " << r.error;
    EXPECT_LT(took, 30'000) << https;  // far below the 60 s it would have been given on its own
  }
  // Nothing at all once the budget is spent.
  auto spent = poster.post({.host = "127.0.0.1", .port = silent.port(), .target = "/"}, {"127.0.0.1"}, "{}", {}, 0);
  EXPECT_EQ(spent.status, 0);
}
