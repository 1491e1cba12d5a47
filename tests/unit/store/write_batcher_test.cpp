// The group commit against a real SQLite store, with time driven by a ManualClock: back-off,
// purge interval and retry hand-back happen when the test moves the clock, never by sleeping.
#include "websmtp/store/write_batcher.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>

#include "../../support/manual_clock.hpp"
#include "../../support/temp_dir.hpp"
#include "test_jobs.hpp"
#include "websmtp/store/forwarding_store.hpp"

using namespace websmtp;
using namespace websmtp::store;
using namespace websmtp::test_support;
using namespace std::chrono_literals;

namespace {

// Everything a test waits for, observed from the commit thread. Waits are bounded (a hang
// fails the test) and return as soon as the condition holds.
struct Observed {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::size_t> commit_sizes;  // jobs inserted per successful commit
  int commit_attempts = 0;
  std::vector<JobUpdate> committed;
  std::vector<JobUpdate> handed_back;
  Counts purged;
  std::vector<std::pair<std::size_t, bool>> insert_results;  // (jobs, ok) per insert callback

  template <class F>
  auto read(F f) {
    std::lock_guard lock(mu);
    return f();
  }
  template <class Pred>
  bool wait(Pred pred) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, 10s, pred);
  }
  void note(auto fn) {
    {
      std::lock_guard lock(mu);
      fn();
    }
    cv.notify_all();
  }
};

// Records commits; fails them while `failing`, and can hold them at a gate.
class RecordingStore final : public ForwardingStore {
 public:
  RecordingStore(std::unique_ptr<Store> inner, Observed& o) : ForwardingStore(std::move(inner)), o_(o) {}
  std::atomic<bool> failing{false};
  std::atomic<bool> gate_closed{false};

  void commit(const Commit& c) override {
    bool fail = failing;  // decided before the attempt is visible to the test
    {
      std::unique_lock lock(o_.mu);
      ++o_.commit_attempts;
      o_.cv.notify_all();
      o_.cv.wait(lock, [&] { return !gate_closed; });
    }
    if (fail) throw StoreError("database or disk is full");
    ForwardingStore::commit(c);
    o_.note([&] { o_.commit_sizes.push_back(c.inserts.size()); });
  }
  void open_gate() {
    o_.note([&] { gate_closed = false; });
  }

 private:
  Observed& o_;
};

struct Fixture {
  TempDir dir;
  websmtp::testing::ManualClock clock{kT0};
  Observed o;
  RecordingStore store{open_sqlite({dir.file("db"), false}), o};
  std::atomic<bool> take_handed_back{true};

  std::unique_ptr<WriteBatcher> batcher(WriteBatcher::Options options = {}) {
    return std::make_unique<WriteBatcher>(
        store, clock, options, [this](const JobUpdate& u) { o.note([&] { o.committed.push_back(u); }); },
        [this](const Counts& c) {
          o.note([&] {
            o.purged.completed += c.completed;
            o.purged.failed += c.failed;
          });
        },
        [this](JobUpdate& u) {
          if (!take_handed_back) return false;
          o.note([&] { o.handed_back.push_back(std::move(u)); });
          return true;
        });
  }
  WriteBatcher::InsertDone record_insert() {
    return [this](job::Job&&, bool ok, const std::string&) { o.note([&] { o.insert_results.emplace_back(1, ok); }); };
  }
  WriteBatcher::BatchDone record_batch() {
    return [this](std::vector<job::Job>&& jobs, bool ok, const std::string&) {
      o.note([&] { o.insert_results.emplace_back(jobs.size(), ok); });
    };
  }
  job::Job stored_job() {
    auto j = make_job();
    job::Job* p = &j;
    store.inner().insert({&p, 1});
    return j;
  }
};

}  // namespace

TEST(WriteBatcher, CommitsInsertsAndClaimsThemForTheSubmitter) {
  Fixture f;
  auto b = f.batcher();
  std::vector<job::Job> stored;  // guarded by f.o.mu
  for (int i = 0; i < 3; ++i)
    b->insert(make_job(), [&](job::Job&& j, bool ok, const std::string&) {
      EXPECT_TRUE(ok);
      EXPECT_GT(j.seq, 0);
      f.o.note([&] { stored.push_back(std::move(j)); });
    });
  ASSERT_TRUE(f.o.wait([&] { return stored.size() == 3; }));
  EXPECT_EQ(f.store.counts().queued, 3);
  EXPECT_TRUE(f.store.claim_due("other-node", kT0, kDefaultLeaseMs, 10).empty());  // held by the submitter
  EXPECT_EQ(f.store.renew(kLocalOwner, kT0, kDefaultLeaseMs), 3u);
}

TEST(WriteBatcher, NeverSplitsTheJobsOfOneInsertManyAcrossCommits) {
  Fixture f;
  auto b = f.batcher({.max_batch = 4});
  f.store.gate_closed = true;
  b->insert(make_job(), f.record_insert());  // commit 1, held at the gate while the rest queue up
  ASSERT_TRUE(f.o.wait([&] { return f.o.commit_attempts == 1; }));
  auto three = [] { return std::vector<job::Job>{make_job(), make_job(), make_job()}; };
  b->insert_many(three(), f.record_batch());
  b->insert_many(three(), f.record_batch());
  b->insert(make_job(), f.record_insert());
  std::vector<job::Job> six;
  for (int i = 0; i < 6; ++i) six.push_back(make_job());
  b->insert_many(std::move(six), f.record_batch());  // over max_batch: commits alone, whole
  f.store.open_gate();
  ASSERT_TRUE(f.o.wait([&] { return f.o.insert_results.size() == 5; }));
  EXPECT_EQ(f.o.commit_sizes, (std::vector<std::size_t>{1, 3, 3 + 1, 6}));
  for (auto [n, ok] : f.o.insert_results) EXPECT_TRUE(ok);
  EXPECT_EQ(f.store.counts().queued, 14);
}

TEST(WriteBatcher, ABatchThatFailsStoresNoneOfItsJobs) {
  Fixture f;
  auto b = f.batcher();
  std::vector<job::Job> jobs{make_job(), make_job()};
  jobs[1].ref = jobs[0].ref;  // the second violates UNIQUE(ref)
  std::string first_ref = jobs[0].ref;
  b->insert_many(std::move(jobs), f.record_batch());
  ASSERT_TRUE(f.o.wait([&] { return f.o.insert_results.size() == 1; }));
  EXPECT_EQ(f.o.insert_results[0], std::make_pair(std::size_t{2}, false));
  EXPECT_FALSE(f.store.find(first_ref));
}

TEST(WriteBatcher, AFailedCommitRefusesItsInsertsAndKeepsItsOutcomesUntilTheStoreRecovers) {
  Fixture f;
  auto b = f.batcher({.retry_min_ms = 100, .retry_max_ms = 1000});
  auto j = f.stored_job();
  f.store.failing = true;
  b->update(delivered(j, true));
  b->insert(make_job(), f.record_insert());
  ASSERT_TRUE(f.o.wait([&] { return !f.o.insert_results.empty(); }));
  EXPECT_FALSE(f.o.insert_results[0].second);  // the client gets a 503: nothing half-stored
  EXPECT_TRUE(b->failing());
  EXPECT_TRUE(f.o.committed.empty());
  int attempts = f.o.read([&] { return f.o.commit_attempts; });
  f.clock.advance_ms(1000);  // the longest back-off: tried again, still failing
  ASSERT_TRUE(f.o.wait([&] { return f.o.commit_attempts > attempts; }));
  f.store.failing = false;
  f.clock.advance_ms(1000);
  ASSERT_TRUE(f.o.wait([&] { return f.o.committed.size() == 1; }));
  EXPECT_EQ(f.o.committed[0].seq, j.seq);
  EXPECT_FALSE(b->failing());
  EXPECT_EQ(f.store.counts().completed, 1);
  EXPECT_EQ(f.store.counts().queued, 0);
}

TEST(WriteBatcher, HandsBackAKeptDeferralWhenItsRetryIsDue) {
  Fixture f;
  auto b = f.batcher({.retry_min_ms = 100, .retry_max_ms = 5000});
  auto j = f.stored_job();
  auto other = f.stored_job();
  f.store.failing = true;
  b->update(deferral(j, kT0 + 1500));
  b->update(delivered(other));  // final: kept until it commits, never handed back
  ASSERT_TRUE(f.o.wait([&] { return f.o.commit_attempts >= 1; }));
  f.clock.advance_ms(1000);  // back-off rounds, not yet due
  EXPECT_TRUE(f.o.handed_back.empty());
  // Back-off is at 200 ms and growing; the retry time, not the back-off, decides.
  f.clock.set_ms(kT0 + 1500);
  ASSERT_TRUE(f.o.wait([&] { return f.o.handed_back.size() == 1; }));
  EXPECT_EQ(f.o.handed_back[0].seq, j.seq);
  EXPECT_EQ(f.o.handed_back[0].recipients[0].attempts, 1);
  EXPECT_TRUE(f.o.committed.empty());
  // The store recovers: the final outcome lands; the handed-back one is not written.
  f.store.failing = false;
  f.clock.advance_ms(5000);
  ASSERT_TRUE(f.o.wait([&] { return f.o.committed.size() == 1; }));
  EXPECT_EQ(f.o.committed[0].seq, other.seq);
  EXPECT_FALSE(f.store.find(j.ref)->started);
}

TEST(WriteBatcher, KeepsADueDeferralWhenNobodyTakesIt) {
  Fixture f;
  f.take_handed_back = false;  // e.g. the dispatcher is stopping
  auto b = f.batcher({.retry_min_ms = 100});
  auto j = f.stored_job();
  f.store.failing = true;
  b->update(deferral(j, kT0 + 100));
  ASSERT_TRUE(f.o.wait([&] { return f.o.commit_attempts >= 1; }));
  f.store.failing = false;
  f.clock.advance_ms(200);
  ASSERT_TRUE(f.o.wait([&] { return f.o.committed.size() == 1; }));
  EXPECT_EQ(f.store.find(j.ref)->recipients[0].attempts, 1);
}

TEST(WriteBatcher, ALaterOutcomeSupersedesAKeptOne) {
  Fixture f;
  auto b = f.batcher({.retry_min_ms = 100});
  auto j = f.stored_job();
  f.store.failing = true;
  auto first = deferral(j, kT0 + 3'600'000, /*first_attempt=*/true);
  first.attempts = {{"r0@y.zz", 1, 451, "later", "h"}};
  b->update(std::move(first));
  ASSERT_TRUE(f.o.wait([&] { return f.o.commit_attempts >= 1; }));
  auto second = delivered(j, /*first_attempt=*/false);
  second.attempts = {{"r0@y.zz", 2, 250, "ok", "h"}};
  b->update(std::move(second));
  f.store.failing = false;
  f.clock.advance_ms(100);
  ASSERT_TRUE(f.o.wait([&] { return !f.o.committed.empty(); }));
  ASSERT_EQ(f.o.committed.size(), 1u);  // one outcome per job: counted once
  EXPECT_EQ(f.o.committed[0].outcome, Outcome::kDelivered);
  EXPECT_TRUE(f.o.committed[0].first_attempt);  // the store never saw the job started
  EXPECT_EQ(f.store.counts().completed, 1);
  auto history = f.store.attempts(j.seq);  // both attempts are in the history
  ASSERT_EQ(history.size(), 2u);
  EXPECT_EQ(history[0].smtp_code, 451);
  EXPECT_EQ(history[1].smtp_code, 250);
}

TEST(WriteBatcher, PurgesFinishedJobsOnItsInterval) {
  Fixture f;
  auto j = f.stored_job();
  std::vector<JobUpdate> done{delivered(j)};
  done[0].completed = kT0 / 1000 - 20;
  f.store.inner().update(done);
  auto b = f.batcher({.status_ttl_s = 10, .purge_interval_ms = 60'000});
  ASSERT_TRUE(f.o.wait([&] { return f.o.purged.completed == 1; }));  // the first purge runs at start
  auto k = f.stored_job();
  done = {delivered(k)};
  f.store.inner().update(done);
  f.clock.advance_ms(30'000);  // completed 30 s ago, but the interval has not passed
  b->insert(make_job(), f.record_insert());
  ASSERT_TRUE(f.o.wait([&] { return f.o.insert_results.size() == 1; }));
  EXPECT_EQ(f.o.purged.completed, 1);
  EXPECT_TRUE(f.store.find(k.ref));
  f.clock.advance_ms(30'000);
  ASSERT_TRUE(f.o.wait([&] { return f.o.purged.completed == 2; }));
  EXPECT_FALSE(f.store.find(k.ref));
}

TEST(WriteBatcher, StopCommitsWhatIsPending) {
  Fixture f;
  auto b = f.batcher();
  auto j = f.stored_job();
  b->update(delivered(j));
  b->stop();
  EXPECT_EQ(f.store.counts().completed, 1);
  std::optional<bool> ok;
  b->insert(make_job(), [&](job::Job&&, bool o, const std::string&) { ok = o; });
  EXPECT_EQ(ok, false);  // refused at once after stop
}

TEST(WriteBatcher, OutcomesLingerToShareACommitButSubmitsNeverWait) {
  Fixture f;
  auto b = f.batcher({.outcome_linger_ms = 5, .outcome_batch = 3});
  auto j1 = f.stored_job();
  auto j2 = f.stored_job();
  b->update(delivered(j1, /*first_attempt=*/true));
  // The clock has not moved: the outcome waits for company.
  b->insert(make_job(), f.record_insert());
  ASSERT_TRUE(f.o.wait([&] { return f.o.insert_results.size() == 1; }));  // a submit does not wait
  b->update(delivered(j2, /*first_attempt=*/true));
  EXPECT_TRUE(f.o.read([&] { return f.o.committed.size(); }) <= 2u);
  f.clock.advance_ms(5);
  ASSERT_TRUE(f.o.wait([&] { return f.o.committed.size() == 2; }));
  // A full batch commits at once, without the clock.
  std::vector<job::Job> more;
  for (int i = 0; i < 3; ++i) more.push_back(f.stored_job());
  for (auto& j : more) b->update(delivered(j, /*first_attempt=*/true));
  ASSERT_TRUE(f.o.wait([&] { return f.o.committed.size() == 5; }));
  EXPECT_EQ(f.store.counts().completed, 5);
}
