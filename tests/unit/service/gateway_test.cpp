// The gateway end to end inside one process: real SQLite store, group commit, dispatcher
// and workers, with a fake transport. (Integration tests do the same against real SMTP peers.)
#include <gtest/gtest.h>

#include <future>
#include <map>
#include <thread>

#include "../../support/temp_dir.hpp"
#include "websmtp/common/uuid.hpp"
#include "websmtp/service/gateway.hpp"
#include "websmtp/store/forwarding_store.hpp"

using namespace websmtp;
using namespace std::chrono_literals;

namespace {

struct Deliveries {
  std::mutex mu;
  std::multimap<std::string, std::string> by_ref;  // ref -> recipient
  std::function<smtp::Reply(std::string_view)> reply = [](std::string_view) {
    return smtp::Reply{250, "2.0.0 ok", false};
  };
  std::atomic<bool> block{false};
  std::atomic<int> entered{0};  // deliver() calls started
};

class FakeTransport final : public smtp::Transport {
 public:
  explicit FakeTransport(Deliveries& d) : d_(d) {}
  std::vector<smtp::Reply> deliver(const smtp::Envelope& env, std::string_view) override {
    ++d_.entered;
    if (env.before_data) env.before_data();
    while (d_.block) std::this_thread::sleep_for(1ms);
    std::vector<smtp::Reply> out;
    std::lock_guard lock(d_.mu);
    for (auto r : env.recipients) {
      out.push_back(d_.reply(r));
      if (out.back().code / 100 == 2) d_.by_ref.emplace(std::string(env.ref), std::string(r));
    }
    return out;
  }

 private:
  Deliveries& d_;
};

// A store whose commits can be made to fail, as on a full disk.
class FlakyStore final : public store::ForwardingStore {
 public:
  using ForwardingStore::ForwardingStore;
  std::atomic<bool> failing{false};
  void commit(const store::Commit& c) override {
    if (failing) throw store::StoreError("database or disk is full");
    ForwardingStore::commit(c);
  }
};

// As a shared store meets it: another node's commit stores a job under the same
// Idempotency-Key (with `foreign_hash`) between this node's check of the key and its commit,
// which then leaves its own keyed job out (seq 0).
class KeyTakenStore final : public store::ForwardingStore {
 public:
  using ForwardingStore::ForwardingStore;
  std::string foreign_hash;  // empty: the same request as the one committed
  std::string foreign_ref;
  void commit(const store::Commit& c) override {
    std::vector<job::Job*> kept;
    for (job::Job* j : c.inserts) {
      if (j->idempotency_key.empty()) {
        kept.push_back(j);
        continue;
      }
      job::Job other = *j;
      other.ref = new_uuid();
      if (!foreign_hash.empty()) other.request_hash = foreign_hash;
      job::Job* o = &other;
      ForwardingStore::commit(store::Commit{.inserts = std::span<job::Job* const>(&o, 1)});
      foreign_ref = other.ref;
      j->seq = 0;
    }
    store::Commit rest = c;
    rest.inserts = kept;
    rest.batches = {};
    ForwardingStore::commit(rest);
  }
};

config::Config test_config(const test_support::TempDir& dir, int threads = 2) {
  config::Config c;
  c.data_dir = dir.path().string();
  c.delivery = config::Delivery::kSandbox;
  c.threads = threads;
  c.retry_min_s = 1;
  c.retry_max_s = 2;
  return c;
}

Result<service::Accepted> submit_sync(service::Gateway& g, const std::string& body, const std::string& key = "") {
  std::promise<Result<service::Accepted>> p;
  auto f = p.get_future();
  g.submits().submit(service::Caller{}, body, key, [&p](Result<service::Accepted> r) { p.set_value(std::move(r)); });
  return f.get();
}

std::string job_body(const std::string& to) {
  return R"({"from":"a@b.cc","to":[")" + to + R"("],"subject":"s","body":"hello"})";
}

nlohmann::json wait_status(service::Gateway& g, const std::string& ref, const std::string& want) {
  auto deadline = std::chrono::steady_clock::now() + 20s;
  nlohmann::json j;
  while (std::chrono::steady_clock::now() < deadline) {
    auto s = g.statuses().status(service::Caller{}, ref);
    if (s) {
      j = nlohmann::json::parse(*s);
      if (j["status"] == want) return j;
    }
    std::this_thread::sleep_for(2ms);
  }
  return j;
}

}  // namespace

TEST(Gateway, DeliversAndReportsStatus) {
  test_support::TempDir dir;
  Deliveries d;
  SystemClock clock;
  service::Gateway g(
      test_config(dir), store::open_sqlite({dir.file("db"), false}), [&] { return std::make_unique<FakeTransport>(d); },
      clock);
  g.start();
  auto r = submit_sync(g, job_body("x@y.zz"));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_FALSE(r->replayed);
  auto st = wait_status(g, r->ref, "completed");
  EXPECT_EQ(st["status"], "completed");
  EXPECT_EQ(st["recipients"][0]["state"], "delivered");
  auto q = g.queue_stats();
  EXPECT_EQ(q["completed"], 1);
  EXPECT_EQ(q["submitted_total"], 1);
  EXPECT_EQ(q["delivered_total"], 1);
  EXPECT_EQ(q["queued"], 0);
  EXPECT_TRUE(g.stop(5s));
}

TEST(Gateway, ConcurrentSubmitsAreEachDeliveredOnce) {
  test_support::TempDir dir;
  Deliveries d;
  SystemClock clock;
  service::Gateway g(
      test_config(dir, 4), store::open_sqlite({dir.file("db"), false}),
      [&] { return std::make_unique<FakeTransport>(d); }, clock);
  g.start();
  constexpr int kThreads = 8, kPerThread = 150;
  std::vector<std::thread> threads;
  std::mutex mu;
  std::vector<std::string> refs;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        std::string to = "u";  // (appended, not "u" + ...: GCC 12's -Wrestrict false positive)
        to += std::to_string(t) + "-" + std::to_string(i) + "@y.zz";
        auto r = submit_sync(g, job_body(to));
        ASSERT_TRUE(r);
        std::lock_guard lock(mu);
        refs.push_back(r->ref);
      }
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_EQ(refs.size(), static_cast<std::size_t>(kThreads * kPerThread));
  for (const auto& ref : refs) ASSERT_EQ(wait_status(g, ref, "completed")["status"], "completed");
  std::lock_guard lock(d.mu);
  EXPECT_EQ(d.by_ref.size(), refs.size());
  for (const auto& ref : refs) EXPECT_EQ(d.by_ref.count(ref), 1u);
  EXPECT_TRUE(g.stop(5s));
}

TEST(Gateway, DefersThenDeliversOnRetry) {
  test_support::TempDir dir;
  Deliveries d;
  std::atomic<int> calls{0};
  d.reply = [&](std::string_view) {
    return ++calls == 1 ? smtp::Reply{451, "4.3.0 later", false} : smtp::Reply{250, "ok", false};
  };
  SystemClock clock;
  service::Gateway g(
      test_config(dir, 1), store::open_sqlite({dir.file("db"), false}),
      [&] { return std::make_unique<FakeTransport>(d); }, clock);
  g.start();
  auto r = submit_sync(g, job_body("x@y.zz"));
  ASSERT_TRUE(r);
  auto st = wait_status(g, r->ref, "processing");
  EXPECT_EQ(st["recipients"][0]["state"], "deferred");
  EXPECT_EQ(st["recipients"][0]["smtp_code"], 451);
  EXPECT_TRUE(st["recipients"][0].contains("next_attempt"));
  st = wait_status(g, r->ref, "completed");
  EXPECT_EQ(st["recipients"][0]["state"], "delivered");
  EXPECT_EQ(st["recipients"][0]["attempts"], 2);
  EXPECT_TRUE(g.stop(5s));
}

TEST(Gateway, ResumesStoredJobsAfterRestart) {
  test_support::TempDir dir;
  SystemClock clock;
  std::vector<std::string> refs;
  // First life: the transport hangs, as a crashed process would leave things. The stuck
  // worker is abandoned by stop(), so what it references must live on (static, never freed).
  static auto* stuck = new Deliveries;
  stuck->block = true;
  static service::Gateway* first = nullptr;
  first = new service::Gateway(
      test_config(dir, 1), store::open_sqlite({dir.file("db"), false}),
      [] { return std::make_unique<FakeTransport>(*stuck); }, clock);
  first->start();
  for (int i = 0; i < 50; ++i) refs.push_back(submit_sync(*first, job_body("x@y.zz"))->ref);
  // Wait (bounded) until the worker is inside the transport: on a loaded machine it may not
  // have taken its first job yet.
  for (int i = 0; i < 20000 && stuck->entered == 0; ++i) std::this_thread::sleep_for(1ms);
  ASSERT_GT(stuck->entered.load(), 0);
  EXPECT_FALSE(first->stop(100ms));  // one transaction is stuck in the fake transport
  {
    std::lock_guard lock(stuck->mu);
    EXPECT_TRUE(stuck->by_ref.empty());
  }
  Deliveries d2;
  service::Gateway g2(
      test_config(dir, 2), store::open_sqlite({dir.file("db"), false}),
      [&] { return std::make_unique<FakeTransport>(d2); }, clock);
  g2.start();
  for (const auto& ref : refs) EXPECT_EQ(wait_status(g2, ref, "completed")["status"], "completed");
  EXPECT_TRUE(g2.stop(5s));
  std::lock_guard lock(d2.mu);
  EXPECT_EQ(d2.by_ref.size(), refs.size());
  // The job whose message was on the wire when the first life ended may have reached the
  // peer: its redelivery is flagged; the 49 that never left are not.
  int flagged = 0;
  for (const auto& ref : refs) {
    auto st = nlohmann::json::parse(*g2.statuses().status(service::Caller{}, ref));
    if (st["recipients"][0].value("possible_duplicate", false)) ++flagged;
  }
  EXPECT_EQ(flagged, 1);
}

TEST(Gateway, RefusesSubmitsWhileTheStoreFailsAndRecovers) {
  test_support::TempDir dir;
  Deliveries d;
  SystemClock clock;
  auto flaky = std::make_unique<FlakyStore>(store::open_sqlite({dir.file("db"), false}));
  auto* store = flaky.get();
  service::Gateway g(
      test_config(dir, 1), std::move(flaky), [&] { return std::make_unique<FakeTransport>(d); }, clock);
  g.start();
  store->failing = true;
  auto r = submit_sync(g, job_body("x@y.zz"));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().kind, ErrorKind::kUnavailable);
  store->failing = false;
  auto ok = submit_sync(g, job_body("x@y.zz"));
  ASSERT_TRUE(ok);
  EXPECT_EQ(wait_status(g, ok->ref, "completed")["status"], "completed");
  EXPECT_FALSE(g.statuses().status(service::Caller{}, new_uuid()));
  EXPECT_TRUE(g.stop(5s));
}

TEST(Gateway, OutcomesAreKeptUntilTheStoreAcceptsThem) {
  test_support::TempDir dir;
  Deliveries d;
  d.block = true;
  SystemClock clock;
  auto flaky = std::make_unique<FlakyStore>(store::open_sqlite({dir.file("db"), false}));
  auto* store = flaky.get();
  service::Gateway g(
      test_config(dir, 1), std::move(flaky), [&] { return std::make_unique<FakeTransport>(d); }, clock);
  g.start();
  auto r = submit_sync(g, job_body("x@y.zz"));
  ASSERT_TRUE(r);
  store->failing = true;  // the outcome of the delivery below cannot be written yet
  d.block = false;
  std::this_thread::sleep_for(300ms);
  store->failing = false;  // the writer retries and the outcome lands
  auto st = wait_status(g, r->ref, "completed");
  EXPECT_EQ(st["status"], "completed");
  std::lock_guard lock(d.mu);
  EXPECT_EQ(d.by_ref.count(r->ref), 1u);
}

TEST(Gateway, IdempotencyKeyReplaysOrConflicts) {
  test_support::TempDir dir;
  Deliveries d;
  SystemClock clock;
  service::Gateway g(
      test_config(dir, 1), store::open_sqlite({dir.file("db"), false}),
      [&] { return std::make_unique<FakeTransport>(d); }, clock);
  g.start();
  auto first = submit_sync(g, job_body("x@y.zz"), "key-1");
  ASSERT_TRUE(first);
  EXPECT_FALSE(first->replayed);
  auto again = submit_sync(g, job_body("x@y.zz"), "key-1");
  ASSERT_TRUE(again);
  EXPECT_TRUE(again->replayed);
  EXPECT_EQ(again->ref, first->ref);
  auto other = submit_sync(g, job_body("other@y.zz"), "key-1");
  ASSERT_FALSE(other);
  EXPECT_EQ(other.error().kind, ErrorKind::kConflict);
  auto bad = submit_sync(g, job_body("x@y.zz"), std::string("bad\x01key"));
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().kind, ErrorKind::kInvalid);
  EXPECT_TRUE(g.stop(5s));
}

TEST(Gateway, StatusRefusesMalformedRefsAndForgetsUnknownOnes) {
  test_support::TempDir dir;
  Deliveries d;
  SystemClock clock;
  service::Gateway g(
      test_config(dir, 1), store::open_sqlite({dir.file("db"), false}),
      [&] { return std::make_unique<FakeTransport>(d); }, clock);
  g.start();
  auto bad = g.statuses().status(service::Caller{}, "not-a-ref");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().kind, ErrorKind::kInvalid);
  auto unknown = g.statuses().status(service::Caller{}, new_uuid());
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().kind, ErrorKind::kNotFound);
  EXPECT_EQ(unknown.error().code, "unknown_ref");
  EXPECT_TRUE(g.stop(5s));
}

TEST(Gateway, LongPollAnswersWhenTheStatusChanges) {
  test_support::TempDir dir;
  Deliveries d;
  d.block = true;
  SystemClock clock;
  service::Gateway g(
      test_config(dir, 1), store::open_sqlite({dir.file("db"), false}),
      [&] { return std::make_unique<FakeTransport>(d); }, clock);
  g.start();
  auto r = submit_sync(g, job_body("x@y.zz"));
  ASSERT_TRUE(r);
  std::promise<Result<std::string>> p;
  auto f = p.get_future();
  g.longpolls().watch(service::Caller{}, r->ref, "not started", 20s,
                      [&p](Result<std::string> s) { p.set_value(std::move(s)); });
  EXPECT_EQ(f.wait_for(50ms), std::future_status::timeout);  // nothing happened yet
  d.block = false;
  ASSERT_EQ(f.wait_for(10s), std::future_status::ready);
  auto s = f.get();
  ASSERT_TRUE(s);
  EXPECT_EQ(nlohmann::json::parse(*s)["status"], "completed");
  EXPECT_TRUE(g.stop(5s));
}

TEST(Gateway, LongPollTimesOutWithTheCurrentStatus) {
  test_support::TempDir dir;
  Deliveries d;
  d.reply = [](std::string_view) { return smtp::Reply{451, "later", false}; };
  SystemClock clock;
  auto cfg = test_config(dir, 1);
  cfg.retry_min_s = 3600;
  cfg.retry_max_s = 3600;
  service::Gateway g(
      cfg, store::open_sqlite({dir.file("db"), false}), [&] { return std::make_unique<FakeTransport>(d); }, clock);
  g.start();
  auto r = submit_sync(g, job_body("x@y.zz"));
  ASSERT_TRUE(r);
  ASSERT_EQ(wait_status(g, r->ref, "processing")["status"], "processing");
  std::promise<Result<std::string>> p;
  auto f = p.get_future();
  g.longpolls().watch(service::Caller{}, r->ref, "", 200ms, [&p](Result<std::string> s) { p.set_value(std::move(s)); });
  ASSERT_EQ(f.wait_for(10s), std::future_status::ready);
  auto s = f.get();
  ASSERT_TRUE(s);
  EXPECT_EQ(nlohmann::json::parse(*s)["status"], "processing");
  EXPECT_TRUE(g.stop(5s));
}

// Two nodes took the same Idempotency-Key at once and the other one committed first: this
// node's request is answered as that job's replay (200, its ref), or as a conflict when the
// bodies differ; never a second job, never a 503.
TEST(Gateway, AKeyAnotherNodeCommittedFirstIsAnsweredAsItsReplay) {
  test_support::TempDir dir;
  Deliveries d;
  SystemClock clock;
  auto taken = std::make_unique<KeyTakenStore>(store::open_sqlite({dir.file("db"), false}));
  auto* store = taken.get();
  service::Gateway g(
      test_config(dir, 1), std::move(taken), [&] { return std::make_unique<FakeTransport>(d); }, clock);
  g.start();
  auto r = submit_sync(g, job_body("x@y.zz"), "key-1");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_TRUE(r->replayed);
  EXPECT_EQ(r->ref, store->foreign_ref);
  // One job stored: the other node's (which that node delivers).
  EXPECT_TRUE(g.statuses().status(service::Caller{}, r->ref));
  auto counts = store->counts();
  EXPECT_EQ(counts.queued + counts.deferred + counts.completed + counts.failed, 1);
  store->foreign_hash = "another body";
  auto conflict = submit_sync(g, job_body("x@y.zz"), "key-2");
  ASSERT_FALSE(conflict);
  EXPECT_EQ(conflict.error().kind, ErrorKind::kConflict);
  EXPECT_EQ(conflict.error().code, "idempotency_conflict");
  EXPECT_TRUE(g.stop(5s));
}
