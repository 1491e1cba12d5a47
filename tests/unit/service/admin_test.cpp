// The admin API's pure parts (query parsing, the cancel and retry edits, what a suppression
// matches) and the group commit's handling of a cancel while an attempt is in flight.
#include "websmtp/service/admin.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <mutex>

#include "../../support/manual_clock.hpp"
#include "../../support/temp_dir.hpp"
#include "../store/test_jobs.hpp"

using namespace websmtp;
using namespace websmtp::service;
using namespace std::chrono_literals;
using job::RecipientState;

TEST(AdminJobsQuery, DefaultsAndBounds) {
  auto p = parse_jobs_query({});
  ASSERT_TRUE(p);
  EXPECT_EQ(p->limit, kDefaultJobsPage);
  EXPECT_EQ(p->filter, store::JobFilter::kAll);
  auto inflight = parse_jobs_query({.state = "in_flight", .limit = "1000"});
  ASSERT_TRUE(inflight);
  EXPECT_FALSE(inflight->filter);
  EXPECT_EQ(inflight->limit, 1000u);
  for (const char* bad : {"0", "1001", "-1", "ten", "", "99999"}) {
    auto r = parse_jobs_query({.limit = bad});
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().field, "limit");
  }
  auto s = parse_jobs_query({.state = "paused"});
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().field, "state");
  auto a = parse_jobs_query({.after = "not-a-ref"});
  ASSERT_FALSE(a);
  EXPECT_EQ(a.error().field, "after");
  auto ok = parse_jobs_query({.after = "F683A80C-BA2D-4285-8E1D-4AEAEB37A729"});
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->after, "f683a80c-ba2d-4285-8e1d-4aeaeb37a729");
}

TEST(AdminEdits, CancelFailsWhatIsNotFinalAndCompletesTheJob) {
  auto j = test_support::make_job(1000, 3);
  j.started = true;
  j.recipients[0].state = RecipientState::kDelivered;
  j.recipients[1].state = RecipientState::kDeferred;
  j.recipients[1].next_attempt = 5000;
  auto u = cancel_job(j, 2'000'000);
  ASSERT_TRUE(u);
  EXPECT_EQ(u->recipients[0].state, RecipientState::kDelivered);
  for (int i : {1, 2}) {
    EXPECT_EQ(u->recipients[i].state, RecipientState::kFailed);
    EXPECT_EQ(u->recipients[i].reason, "cancelled");
    EXPECT_EQ(u->recipients[i].time, 2000);
  }
  EXPECT_EQ(u->outcome, store::Outcome::kFailed);
  EXPECT_EQ(u->completed, 2000);
  EXPECT_FALSE(u->next_at_ms);
  for (auto& r : j.recipients) r.state = RecipientState::kDelivered;
  EXPECT_FALSE(cancel_job(j, 2'000'000));  // finished: nothing to cancel
}

TEST(AdminEdits, RetryMakesDeferredRecipientsDueNow) {
  auto j = test_support::make_job(1000, 2);
  EXPECT_FALSE(retry_job(j, 2'000'500));  // never attempted: nothing deferred
  j.started = true;
  j.recipients[0].state = RecipientState::kDeferred;
  j.recipients[0].next_attempt = 9000;
  j.recipients[1].state = RecipientState::kFailed;
  auto u = retry_job(j, 2'000'500);
  ASSERT_TRUE(u);
  EXPECT_EQ(u->recipients[0].next_attempt, 2000);
  EXPECT_EQ(u->next_at_ms, 2'000'500);
  EXPECT_EQ(u->outcome, store::Outcome::kPending);
  EXPECT_FALSE(u->first_attempt);
}

TEST(Suppressions, MatchesAddressesInLowerCaseAndRecognisesMailboxRejects) {
  EXPECT_EQ(Suppressions::normalize("Bob.Smith@Example.ORG"), "bob.smith@example.org");
  EXPECT_TRUE(Suppressions::is_mailbox_reject(550, "5.1.1 <x@y.zz>: user unknown"));
  EXPECT_TRUE(Suppressions::is_mailbox_reject(553, " 5.1.3 bad address"));
  EXPECT_FALSE(Suppressions::is_mailbox_reject(550, "5.7.1 relaying denied"));  // policy, not the mailbox
  EXPECT_FALSE(Suppressions::is_mailbox_reject(451, "4.1.1 try later"));
  EXPECT_FALSE(Suppressions::is_mailbox_reject(550, "user unknown"));  // no enhanced status
  EXPECT_TRUE(Suppressions::is_mailbox_reject(550, "5.1.10 null MX"));
  EXPECT_FALSE(Suppressions::is_mailbox_reject(553, "5.1.8 bad sender's system address"));  // the sender's
  EXPECT_FALSE(Suppressions::is_mailbox_reject(553, "5.1.7 bad sender's mailbox syntax"));
  EXPECT_FALSE(Suppressions::is_mailbox_reject(550, "5.1.x odd"));
  test_support::TempDir dir;
  auto store = store::open_sqlite({dir.file("db"), false});
  Suppressions s(*store);
  EXPECT_FALSE(s.contains("a@x.zz"));
  ASSERT_TRUE(s.add("A@X.zz", 10));
  auto same = s.add("a@x.ZZ", 11);
  ASSERT_TRUE(same);
  EXPECT_FALSE(same->fresh);               // the same entry,
  EXPECT_EQ(same->entry.created, 10);      // as it was stored
  EXPECT_EQ(same->entry.address, "a@x.zz");
  EXPECT_TRUE(s.contains("a@X.ZZ"));
  EXPECT_FALSE(s.add("not an address", 12));
  auto bounce = s.bounced("B@y.zz", 550, "5.1.1 unknown", 13);
  ASSERT_TRUE(bounce);
  EXPECT_EQ(bounce->address, "b@y.zz");
  EXPECT_FALSE(s.bounced("b@y.zz", 550, "5.1.1 unknown", 14));  // already there
  EXPECT_TRUE(s.remove("A@x.zz"));
  EXPECT_FALSE(s.contains("a@x.zz"));
  auto gone = s.remove("a@x.zz");
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().kind, ErrorKind::kNotFound);
  // Reloaded from the store.
  Suppressions again(*store);
  EXPECT_FALSE(again.contains("a@x.zz"));
}

TEST(Suppressions, OneEntryPerMailboxWhateverTheDomainSpelling) {
  EXPECT_EQ(Suppressions::normalize("Bob@b\u00fccher.example"), "bob@xn--bcher-kva.example");
  EXPECT_EQ(Suppressions::normalize("bob@B\u00dcCHER.example"), "bob@xn--bcher-kva.example");
  EXPECT_EQ(Suppressions::normalize("bob@XN--BCHER-KVA.example"), "bob@xn--bcher-kva.example");
  test_support::TempDir dir;
  auto store = store::open_sqlite({dir.file("db"), false});
  // A row stored before the A-label form: rewritten when the list is loaded.
  store->add_suppression({"old@b\u00fccher.example", "bounce", 5, 550, "5.1.1 unknown"});
  Suppressions s(*store);
  EXPECT_TRUE(s.contains("old@xn--bcher-kva.example"));
  auto rows = store->list_suppressions();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].address, "old@xn--bcher-kva.example");
  EXPECT_EQ(rows[0].reason, "bounce");
  auto added = s.add("bob@b\u00fccher.example", 10);
  ASSERT_TRUE(added);
  EXPECT_TRUE(added->fresh);
  EXPECT_EQ(added->entry.address, "bob@xn--bcher-kva.example");
  EXPECT_FALSE(s.add("bob@B\u00dcCHER.example", 11)->fresh);
  EXPECT_TRUE(s.contains("BOB@xn--bcher-kva.example"));
  EXPECT_FALSE(s.bounced("bob@xn--bcher-kva.example", 550, "5.1.1 unknown", 12));  // already there
  EXPECT_TRUE(s.remove("bob@B\u00dcCHER.example"));
  EXPECT_FALSE(s.contains("bob@b\u00fccher.example"));
}

// A cancel committed while the job's attempt is in flight is applied again to that attempt's
// outcome: what it delivered stays delivered, the rest stays cancelled, nothing is due again.
TEST(WriteBatcherEdits, AKeptCancelWinsOverTheOutcomeInFlight) {
  test_support::TempDir dir;
  websmtp::testing::ManualClock clock{test_support::kT0};
  auto store = store::open_sqlite({dir.file("db"), false});
  auto j = test_support::make_job(test_support::kT0 / 1000, 2);
  job::Job* p = &j;
  store->insert({&p, 1});

  std::mutex mu;
  std::condition_variable cv;
  std::vector<store::JobUpdate> committed;
  bool edited = false;
  store::WriteBatcher b(
      *store, clock, {},
      [&](const store::JobUpdate& u) {
        std::lock_guard lock(mu);
        committed.push_back(u);
        cv.notify_all();
      },
      [](const store::Counts&) {});
  store::JobEdit e{.seq = j.seq, .apply = [&](const job::Job& job) { return cancel_job(job, clock.now_ms()); }};
  b.edit(std::move(e), [&](const store::JobEdit& e, bool ok, const std::string&) {
    EXPECT_TRUE(ok && e.result);
    std::lock_guard lock(mu);
    edited = true;
    cv.notify_all();
    return true;  // a worker has the job
  });
  {
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, 10s, [&] { return edited; }));
  }
  // The attempt that was in flight: one recipient delivered, one deferred.
  auto u = test_support::deferral(j, test_support::kT0 + 60'000);
  u.recipients[0].state = RecipientState::kDelivered;
  u.attempts = {{"r0@y.zz", 1, 250, "ok", "h"}, {"r1@y.zz", 1, 451, "later", "h"}};
  b.update(std::move(u));
  {
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, 10s, [&] { return !committed.empty(); }));
  }
  b.stop();
  const auto& c = committed[0];
  EXPECT_TRUE(c.refinish);
  EXPECT_EQ(c.was, store::Outcome::kFailed);
  EXPECT_EQ(c.recipients[0].state, RecipientState::kDelivered);
  EXPECT_EQ(c.recipients[1].state, RecipientState::kFailed);
  EXPECT_EQ(c.recipients[1].reason, "cancelled");
  EXPECT_FALSE(c.next_at_ms);
  auto stored = store->find(j.ref);
  ASSERT_TRUE(stored);
  EXPECT_EQ(stored->recipients[0].state, RecipientState::kDelivered);
  EXPECT_EQ(stored->recipients[1].reason, "cancelled");
  EXPECT_EQ(store->attempts(j.seq).size(), 2u);
  EXPECT_FALSE(store->next_due_after(0));
}
