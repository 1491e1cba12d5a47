// The dispatcher against a real SQLite store, with time driven by a ManualClock: retry timers
// fire when the test moves the clock, never by sleeping.
#include "websmtp/queue/dispatcher.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <set>
#include <thread>

#include "../../support/manual_clock.hpp"
#include "../../support/temp_dir.hpp"
#include "../store/test_jobs.hpp"
#include "websmtp/store/forwarding_store.hpp"
#include "websmtp/store/write_batcher.hpp"

using namespace websmtp;
using namespace std::chrono_literals;
using namespace websmtp::test_support;

namespace {

// take() with a bound: a dispatcher that never hands the job out fails the test instead of
// hanging it.
std::optional<job::Job> take(queue::Dispatcher& d) {
  auto f = std::async(std::launch::async, [&] { return d.take(); });
  if (f.wait_for(10s) != std::future_status::ready) {
    ADD_FAILURE() << "no job became ready";
    d.stop();
  }
  return f.get();
}

struct Fixture {
  TempDir dir;
  websmtp::testing::ManualClock clock{kT0};
  std::unique_ptr<store::Store> store = store::open_sqlite({dir.file("db"), false});

  // Jobs stored unclaimed (as found after a restart), submitted at the given seconds.
  std::vector<job::Job> stored(std::vector<std::int64_t> submitted_s) {
    std::vector<job::Job> jobs;
    for (auto s : submitted_s) jobs.push_back(make_job(s));
    std::vector<job::Job*> p;
    for (auto& j : jobs) p.push_back(&j);
    store->insert(p);
    return jobs;
  }
  // What the group commit does for a submit: stored, claimed for this node.
  job::Job submitted() {
    auto j = make_job(clock.now_s());
    job::Job* p = &j;
    store->commit(store::Commit{.inserts = {&p, 1}, .owner = store::kLocalOwner});
    return j;
  }
  // What the gateway does with an attempt's outcome: commit, then release.
  void commit_deferral(queue::Dispatcher& d, const job::Job& j, std::int64_t next_at_ms) {
    std::vector<store::JobUpdate> u{deferral(j, next_at_ms)};
    store->update(u);
    d.release(j.seq, next_at_ms);
  }
  void commit_delivered(queue::Dispatcher& d, const job::Job& j) {
    std::vector<store::JobUpdate> u{delivered(j)};
    store->update(u);
    d.release(j.seq, std::nullopt);
  }
  std::unique_ptr<queue::Dispatcher> dispatcher(queue::Dispatcher::Options options = {}) {
    auto d = std::make_unique<queue::Dispatcher>(*store, clock, options);
    d->start();
    return d;
  }
  // A started dispatcher, and the one stored job a worker took from it.
  std::pair<std::unique_ptr<queue::Dispatcher>, job::Job> one_job_taken() {
    stored({clock.now_s()});
    auto d = dispatcher();
    auto j = take(*d);
    return {std::move(d), j.value()};  // take() has failed the test if there is none
  }
};

}  // namespace

TEST(Dispatcher, RefillsFromTheStoreInDueOrder) {
  Fixture f;
  auto jobs = f.stored({kT0 / 1000 - 3, kT0 / 1000 - 2, kT0 / 1000 - 1});
  // The first job was deferred until after the second was submitted.
  std::vector<store::JobUpdate> u{{.seq = jobs[0].seq, .recipients = jobs[0].recipients, .next_at_ms = kT0 - 1500}};
  f.store->update(u);
  auto d = f.dispatcher();
  std::vector<std::int64_t> order;
  for (int i = 0; i < 3; ++i) {
    auto j = take(*d);
    ASSERT_TRUE(j);
    EXPECT_EQ(j->message, "Subject: x\r\n\r\nbody " + j->ref + "\r\n");
    order.push_back(j->seq);
  }
  EXPECT_EQ(order, (std::vector<std::int64_t>{jobs[1].seq, jobs[0].seq, jobs[2].seq}));
  EXPECT_EQ(d->in_flight(), 3u);
}

TEST(Dispatcher, NoDueJobIsDroppedWhenARefillIsCutToTheBuffer) {
  Fixture f;
  std::vector<std::int64_t> times(20, kT0 / 1000 - 1);
  auto old = f.stored(times);
  auto d = f.dispatcher({.buffer = 4});
  std::vector<std::int64_t> taken;
  std::set<std::int64_t> fresh;
  for (int i = 0; i < 30; ++i) {
    if (i % 3 == 0) {  // submits keep arriving while the backlog drains
      auto j = f.submitted();
      fresh.insert(j.seq);
      d->offer(std::move(j));
    }
    auto j = take(*d);
    ASSERT_TRUE(j);
    taken.push_back(j->seq);
    f.commit_delivered(*d, *j);
  }
  std::set<std::int64_t> distinct(taken.begin(), taken.end());
  EXPECT_EQ(distinct.size(), 30u) << "a job was handed out twice";
  for (const auto& j : old) EXPECT_TRUE(distinct.contains(j.seq));
  for (auto seq : fresh) EXPECT_TRUE(distinct.contains(seq));
  // FIFO: the stored backlog went before the submits that overflowed it.
  for (std::size_t i = 0; i < old.size(); ++i) EXPECT_EQ(taken[i], old[i].seq);
  EXPECT_EQ(f.store->counts().completed, 30);
  EXPECT_EQ(d->in_flight(), 0u);
}

TEST(Dispatcher, RetryTimerFiresWhenTheClockAdvances) {
  Fixture f;
  auto [d, j] = f.one_job_taken();
  f.commit_deferral(*d, j, kT0 + 3'600'000);  // an hour: only the manual clock can get there in time
  EXPECT_EQ(d->in_flight(), 0u);
  f.clock.advance_ms(3'599'999);
  EXPECT_EQ(d->ready(), 0u);
  f.clock.advance_ms(1);
  auto again = take(*d);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->seq, j.seq);
  EXPECT_EQ(again->message, j.message);
}

TEST(Dispatcher, ClaimsAreReleasedByTheOutcomeAndAtStop) {
  Fixture f;
  auto jobs = f.stored({kT0 / 1000 - 1, kT0 / 1000, kT0 / 1000});
  auto d = f.dispatcher();
  auto j = take(*d);
  ASSERT_TRUE(j);
  EXPECT_EQ(j->seq, jobs[0].seq);
  // One out with a worker, two in the buffer: all this node's.
  EXPECT_TRUE(f.store->claim_due("other-node", kT0 + 3'600'000, store::kDefaultLeaseMs, 10).empty());
  f.commit_deferral(*d, *j, kT0 + 10'000);
  auto other = f.store->claim_due("other-node", kT0 + 10'000, store::kDefaultLeaseMs, 10);
  ASSERT_EQ(other.size(), 1u);
  EXPECT_EQ(other[0].seq, jobs[0].seq);
  d->stop();  // the buffered jobs' claims are given back
  EXPECT_EQ(f.store->claim_due("other-node", kT0, store::kDefaultLeaseMs, 10).size(), 2u);
}

TEST(Dispatcher, AHandedBackJobIsAttemptedAgainWithItsUncommittedOutcome) {
  Fixture f;
  auto [d, j] = f.one_job_taken();
  auto u = deferral(j, kT0);
  ASSERT_TRUE(d->requeue(u));
  EXPECT_EQ(d->in_flight(), 0u);
  auto again = take(*d);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->seq, j.seq);
  EXPECT_EQ(again->message, j.message);
  EXPECT_EQ(again->recipients[0].attempts, 1);
  EXPECT_EQ(again->recipients[0].state, job::RecipientState::kDeferred);
  EXPECT_FALSE(again->started);  // as the store has it: the next outcome is its first attempt
  EXPECT_TRUE(f.store->claim_due("other-node", kT0, store::kDefaultLeaseMs, 10).empty());  // still ours
  d->stop();
  store::JobUpdate late{.seq = j.seq, .recipients = j.recipients};
  EXPECT_FALSE(d->requeue(late));
  EXPECT_EQ(late.recipients.size(), 1u);  // left to the caller
}

// The full-disk case end to end: a deferral whose commit fails is attempted again at its
// retry time while the store still fails, and only the final outcome is committed, once.
TEST(Dispatcher, ADeferralThatCannotBeCommittedIsRetriedOnTime) {
  struct FailingStore final : store::ForwardingStore {
    using ForwardingStore::ForwardingStore;
    std::atomic<bool> failing{false};
    void commit(const store::Commit& c) override {
      if (failing) throw store::StoreError("database or disk is full");
      ForwardingStore::commit(c);
    }
  };
  Fixture f;
  FailingStore failing_store(std::move(f.store));
  queue::Dispatcher d(failing_store, f.clock, {});
  std::mutex mu;
  std::condition_variable cv;
  std::vector<store::JobUpdate> committed;
  store::WriteBatcher b(
      failing_store, f.clock, {.retry_min_ms = 100},
      [&](const store::JobUpdate& u) {
        d.release(u.seq, u.next_at_ms);
        std::lock_guard lock(mu);
        committed.push_back(u);
        cv.notify_all();
      },
      [](const store::Counts&) {}, [&](store::JobUpdate& u) { return d.requeue(u); });
  d.start();
  std::promise<job::Job> stored;
  b.insert(make_job(), [&](job::Job&& j, bool ok, const std::string&) {
    EXPECT_TRUE(ok);
    d.offer(job::Job(j));
    stored.set_value(std::move(j));
  });
  auto j = take(d);
  ASSERT_TRUE(j);
  failing_store.failing = true;
  b.update(deferral(*j, kT0 + 1000));
  f.clock.advance_ms(1000);  // the retry time: the store still fails
  auto again = take(d);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->recipients[0].attempts, 1);
  b.update(delivered(*again, /*first_attempt=*/!again->started, f.clock.now_s()));
  failing_store.failing = false;  // space returns
  f.clock.advance_ms(5000);
  {
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, 10s, [&] { return !committed.empty(); }));
    ASSERT_EQ(committed.size(), 1u);
    EXPECT_TRUE(committed[0].first_attempt);
  }
  auto row = failing_store.find(stored.get_future().get().ref);
  ASSERT_TRUE(row);
  EXPECT_EQ(row->recipients[0].attempts, 2);
  EXPECT_EQ(row->recipients[0].state, job::RecipientState::kDelivered);
  EXPECT_EQ(failing_store.counts().completed, 1);
  EXPECT_EQ(d.in_flight(), 0u);
  b.stop();
  d.stop();
}

TEST(Dispatcher, PausedHandsOutNothingUntilResumed) {
  Fixture f;
  auto d = f.dispatcher();
  d->set_paused(true);
  auto j = f.submitted();
  d->offer(std::move(j));
  auto pending = std::async(std::launch::async, [&] { return d->take(); });
  EXPECT_EQ(pending.wait_for(200ms), std::future_status::timeout);  // bounded watch: nothing handed out
  EXPECT_TRUE(d->paused());
  d->set_paused(false);
  ASSERT_EQ(pending.wait_for(10s), std::future_status::ready);
  EXPECT_TRUE(pending.get());
  EXPECT_EQ(d->in_flight_seqs().size(), 1u);
}

TEST(Dispatcher, AJobFinishedByAnEditLeavesTheBufferAndItsClaim) {
  Fixture f;
  auto d = f.dispatcher();
  d->set_paused(true);  // it stays in the buffer
  auto j = f.submitted();
  auto seq = j.seq;
  d->offer(std::move(j));
  // In the buffer at once, or through a refill when the dispatcher has not read the store yet.
  for (int i = 0; i < 1000 && d->ready() == 0; ++i) std::this_thread::sleep_for(10ms);
  ASSERT_EQ(d->ready(), 1u);
  EXPECT_FALSE(d->finished_by_edit(seq));  // not with a worker
  EXPECT_EQ(d->ready(), 0u);
  EXPECT_EQ(f.store->renew(store::kLocalOwner, kT0, store::kDefaultLeaseMs), 0u);
  // One a worker has: its outcome is still to come.
  auto [d2, taken] = f.one_job_taken();
  EXPECT_TRUE(d2->finished_by_edit(taken.seq));
}

namespace {
// Notes the threads that give claims back, and how many claims.
class ReleaseWatch final : public store::ForwardingStore {
 public:
  using ForwardingStore::ForwardingStore;
  void release(std::string_view owner, std::span<const std::int64_t> seqs) override {
    {
      std::lock_guard lock(mu);
      threads.insert(std::this_thread::get_id());
      released += seqs.size();
      ++calls;
    }
    ForwardingStore::release(owner, seqs);
  }
  std::mutex mu;
  std::set<std::thread::id> threads;
  std::size_t released = 0, calls = 0;
};
}  // namespace

// On a shared store, submits that overflow the buffer give their claims back from the
// dispatcher's thread, several per store call, never on the thread that offers them (the group commit's, whose next round
// would wait on a store round trip per job); every job is still handed out once, in order.
TEST(Dispatcher, OverflowedClaimsAreGivenBackOffTheOfferingThread) {
  Fixture f;
  auto watch = std::make_unique<ReleaseWatch>(std::move(f.store));
  auto* w = watch.get();
  f.store = std::move(watch);
  auto d = f.dispatcher({.buffer = 4, .release_inline = false});  // as on a shared store
  std::vector<std::int64_t> offered;
  for (int i = 0; i < 20; ++i) {
    auto j = f.submitted();
    offered.push_back(j.seq);
    d->offer(std::move(j));
  }
  std::vector<std::int64_t> taken;
  for (int i = 0; i < 20; ++i) {
    auto j = take(*d);
    ASSERT_TRUE(j);
    taken.push_back(j->seq);
    f.commit_delivered(*d, *j);
  }
  EXPECT_EQ(taken, offered);
  std::lock_guard lock(w->mu);
  EXPECT_FALSE(w->threads.contains(std::this_thread::get_id()));
  EXPECT_GE(w->released, 16u);  // every job past the buffer
}
