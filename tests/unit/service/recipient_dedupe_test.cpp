// A repeated recipient through the whole submit path: one RCPT, one status entry. (The rule
// itself is tested in tests/unit/job/envelope_test.cpp.)
#include <gtest/gtest.h>

#include <future>
#include <mutex>
#include <thread>

#include "../../support/temp_dir.hpp"
#include "websmtp/service/gateway.hpp"

using namespace websmtp;
using namespace std::chrono_literals;

namespace {

struct Rcpts {
  std::mutex mu;
  std::vector<std::string> seen;
};

class RecordingTransport final : public smtp::Transport {
 public:
  explicit RecordingTransport(Rcpts& r) : r_(r) {}
  std::vector<smtp::Reply> deliver(const smtp::Envelope& env, std::string_view) override {
    if (env.before_data) env.before_data();
    std::lock_guard lock(r_.mu);
    std::vector<smtp::Reply> out;
    for (auto rcpt : env.recipients) {
      r_.seen.emplace_back(rcpt);
      out.push_back(smtp::Reply{250, "2.0.0 ok", false});
    }
    return out;
  }

 private:
  Rcpts& r_;
};

}  // namespace

TEST(SubmitDedupe, ARecipientListedInToCcAndBccGetsOneRcptAndOneStatusEntry) {
  test_support::TempDir dir;
  config::Config c;
  c.data_dir = dir.path().string();
  c.delivery = config::Delivery::kSandbox;
  c.threads = 1;
  Rcpts rcpts;
  SystemClock clock;
  service::Gateway g(
      c, store::open_sqlite({dir.file("db"), false}), [&] { return std::make_unique<RecordingTransport>(rcpts); },
      clock);
  g.start();

  std::promise<Result<service::Accepted>> p;
  auto f = p.get_future();
  g.submits().submit(service::Caller{},
                     R"({"from":"a@b.cc","to":["bob@example.net","x@y.zz"],"cc":["Bob <bob@EXAMPLE.net>"],)"
                     R"("bcc":["bob@example.NET","x@y.zz"],"subject":"s","body":"b"})",
                     "", [&p](Result<service::Accepted> r) { p.set_value(std::move(r)); });
  auto accepted = f.get();
  ASSERT_TRUE(accepted) << accepted.error().message;

  nlohmann::json st;
  for (auto deadline = std::chrono::steady_clock::now() + 20s; std::chrono::steady_clock::now() < deadline;) {
    auto s = g.statuses().status(service::Caller{}, accepted->ref);
    if (s) st = nlohmann::json::parse(*s);
    if (st.value("status", "") == "completed") break;
    std::this_thread::sleep_for(2ms);
  }
  ASSERT_EQ(st["status"], "completed") << st.dump();
  ASSERT_EQ(st["recipients"].size(), 2u) << st.dump();
  EXPECT_EQ(st["recipients"][0]["address"], "bob@example.net");
  EXPECT_EQ(st["recipients"][0]["kind"], "to");
  EXPECT_EQ(st["recipients"][1]["address"], "x@y.zz");
  {
    std::lock_guard lock(rcpts.mu);
    EXPECT_EQ(rcpts.seen, (std::vector<std::string>{"bob@example.net", "x@y.zz"}));
  }
  EXPECT_TRUE(g.stop(5s));
}
