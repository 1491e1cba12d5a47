#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>


#include "../../support/temp_dir.hpp"
#include "test_jobs.hpp"
#include "websmtp/common/uuid.hpp"
#include "websmtp/store/store.hpp"

using namespace websmtp;
using namespace websmtp::store;
using websmtp::test_support::make_job;

namespace {
std::vector<job::Job*> ptrs_of(std::vector<job::Job>& jobs) {
  std::vector<job::Job*> p;
  for (auto& j : jobs) p.push_back(&j);
  return p;
}

std::vector<std::int64_t> seqs_of(const std::vector<job::Job>& jobs) {
  std::vector<std::int64_t> s;
  for (const auto& j : jobs) s.push_back(j.seq);
  return s;
}

}  // namespace

TEST(SqliteStore, InsertsAndFindsJobsWithRecipients) {
  test_support::TempDir dir;
  auto s = open_sqlite({dir.file("db"), false});
  auto j = make_job(1000, 3);
  j.recipients[1].kind = job::RecipientKind::kBcc;
  job::Job* p = &j;
  s->insert({&p, 1});
  EXPECT_GT(j.seq, 0);
  auto found = s->find(j.ref);
  ASSERT_TRUE(found);
  EXPECT_EQ(found->recipients.size(), 3u);
  EXPECT_EQ(found->recipients[1].kind, job::RecipientKind::kBcc);
  EXPECT_TRUE(found->message.empty());  // status reads do not load the body
  EXPECT_FALSE(s->find(new_uuid()));
}

TEST(SqliteStore, SurvivesReopening) {
  test_support::TempDir dir;
  job::Job j = make_job(1000);
  {
    auto s = open_sqlite({dir.file("db"), false});
    job::Job* p = &j;
    s->insert({&p, 1});
  }
  auto s = open_sqlite({dir.file("db"), false});
  auto due = s->due(1000 * 1000, 10);
  ASSERT_EQ(due.size(), 1u);
  auto loaded = s->load(due, 1000 * 1000);
  ASSERT_EQ(loaded.size(), 1u);
  EXPECT_EQ(loaded[0].message, j.message);
  EXPECT_EQ(s->counts().queued, 1);
}

TEST(SqliteStore, DueOrderAndRetryTimes) {
  test_support::TempDir dir;
  auto s = open_sqlite({dir.file("db"), false});
  std::vector<job::Job> jobs;
  for (int i = 0; i < 5; ++i) jobs.push_back(make_job(100 + i));
  std::vector<job::Job*> ptrs;
  for (auto& j : jobs) ptrs.push_back(&j);
  s->insert(ptrs);
  // Defer job 0 until t=500 s; complete job 1.
  JobUpdate defer{.seq = jobs[0].seq, .recipients = jobs[0].recipients, .next_at_ms = 500'000};
  JobUpdate done{
      .seq = jobs[1].seq, .recipients = jobs[1].recipients, .completed = 110, .outcome = Outcome::kDelivered};
  std::vector<JobUpdate> updates{defer, done};
  s->update(updates);
  auto due = s->due(200'000, 10);
  ASSERT_EQ(due.size(), 3u);
  EXPECT_EQ(due[0], jobs[2].seq);
  EXPECT_EQ(s->next_due_after(200'000), 500'000);
  EXPECT_EQ(s->due(600'000, 10).front(), jobs[2].seq);
  EXPECT_TRUE(s->load(std::vector<std::int64_t>{jobs[0].seq}, 200'000).empty());  // not due yet
  auto c = s->counts();
  EXPECT_EQ(c.queued, 3);
  EXPECT_EQ(c.deferred, 1);
  EXPECT_EQ(c.completed, 1);
  EXPECT_EQ(s->oldest_queued_submitted(), 102);
}

TEST(SqliteStore, PurgesFinishedJobsOnly) {
  test_support::TempDir dir;
  auto s = open_sqlite({dir.file("db"), false});
  auto a = make_job(100), b = make_job(100), c = make_job(100);
  std::vector<job::Job*> ptrs{&a, &b, &c};
  s->insert(ptrs);
  std::vector<JobUpdate> u{{.seq = a.seq, .recipients = a.recipients, .completed = 150, .outcome = Outcome::kDelivered},
                           {.seq = b.seq, .recipients = b.recipients, .completed = 300, .outcome = Outcome::kFailed}};
  s->update(u);
  auto removed = s->purge_finished(200);
  EXPECT_EQ(removed.completed, 1);
  EXPECT_EQ(removed.failed, 0);
  EXPECT_FALSE(s->find(a.ref));
  EXPECT_TRUE(s->find(b.ref));
  EXPECT_TRUE(s->find(c.ref));
}

TEST(SqliteStore, IdempotencyKeysAreUniqueWithinTheWindow) {
  test_support::TempDir dir;
  auto s = open_sqlite({dir.file("db"), false});
  auto a = make_job(1000);
  a.idempotency_key = "k1";
  a.request_hash = "h1";
  job::Job* p = &a;
  s->insert({&p, 1});
  auto hit = s->find_idempotency("k1");
  ASSERT_TRUE(hit);
  EXPECT_EQ(hit->ref, a.ref);
  EXPECT_EQ(hit->request_hash, "h1");
  // Within 24 h a second insert with the key is refused by the store.
  auto b = make_job(2000);
  b.idempotency_key = "k1";
  p = &b;
  EXPECT_THROW(s->insert({&p, 1}), StoreError);
  // After 24 h the old job gives the key up.
  auto c = make_job(1000 + kIdempotencyWindowS + 1);
  c.idempotency_key = "k1";
  p = &c;
  s->insert({&p, 1});
  EXPECT_EQ(s->find_idempotency("k1")->ref, c.ref);
}

TEST(SqliteStore, AFailedBatchLeavesNothingBehind) {
  test_support::TempDir dir;
  auto s = open_sqlite({dir.file("db"), false});
  auto a = make_job(1), b = make_job(1);
  b.ref = a.ref;  // violates UNIQUE(ref): the whole batch must roll back
  std::vector<job::Job*> ptrs{&a, &b};
  EXPECT_THROW(s->insert(ptrs), StoreError);
  EXPECT_FALSE(s->find(a.ref));
  auto c = make_job(1);
  job::Job* p = &c;
  s->insert({&p, 1});  // and the store still works
  EXPECT_TRUE(s->find(c.ref));
}

TEST(SqliteStore, PurgesInBoundedSlices) {
  test_support::TempDir dir;
  auto s = open_sqlite({dir.file("db"), false});
  std::vector<job::Job> jobs;
  for (int i = 0; i < kPurgeSlice + 500; ++i) jobs.push_back(make_job(100));
  std::vector<job::Job*> ptrs;
  for (auto& j : jobs) ptrs.push_back(&j);
  s->insert(ptrs);
  std::vector<JobUpdate> done;
  for (auto& j : jobs)
    done.push_back({.seq = j.seq, .recipients = j.recipients, .completed = 150, .outcome = Outcome::kDelivered});
  s->update(done);
  EXPECT_EQ(s->purge_finished(200).completed, kPurgeSlice);
  EXPECT_EQ(s->purge_finished(200).completed, 500);
  EXPECT_EQ(s->purge_finished(200).completed, 0);
  EXPECT_EQ(s->counts().completed, 0);
}

TEST(SqliteStore, ASecondProcessCannotOpenTheSameStore) {
  test_support::TempDir dir;
  auto s = open_sqlite({dir.file("db"), false});
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    int rc = 3;
    try {
      open_sqlite({dir.file("db"), false});
      rc = 1;
    } catch (const StoreError& e) {
      rc = std::string(e.what()).find("in use by another websmtpd (pid " + std::to_string(::getppid())) !=
                   std::string::npos
               ? 0
               : 2;
    }
    ::_exit(rc);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "1: opened; 2: refused without naming the holder";
  s.reset();
  EXPECT_TRUE(open_sqlite({dir.file("db"), false}));  // free again once closed
}

TEST(SqliteStore, ClaimsDueJobsOnceInDueOrder) {
  test_support::TempDir dir;
  auto s = open_sqlite({dir.file("db"), false});
  std::vector<job::Job> jobs;
  for (int i = 0; i < 6; ++i) jobs.push_back(make_job(100 + i));
  auto p = ptrs_of(jobs);
  s->insert(p);
  // Job 0 is deferred past job 3's submit time: due order is next_at, then seq.
  std::vector<JobUpdate> u{{.seq = jobs[0].seq, .recipients = jobs[0].recipients, .next_at_ms = 103'500}};
  s->update(u);
  auto a = s->claim_due("node-a", 200'000, kDefaultLeaseMs, 3);
  EXPECT_EQ(seqs_of(a), (std::vector<std::int64_t>{jobs[1].seq, jobs[2].seq, jobs[3].seq}));
  EXPECT_EQ(a[0].message, jobs[1].message);
  auto b = s->claim_due("node-b", 200'000, kDefaultLeaseMs, 10);  // skips what node-a holds
  EXPECT_EQ(seqs_of(b), (std::vector<std::int64_t>{jobs[0].seq, jobs[4].seq, jobs[5].seq}));
  EXPECT_TRUE(s->claim_due("node-b", 200'000, kDefaultLeaseMs, 10).empty());
  EXPECT_EQ(s->renew("node-a", 200'000, kDefaultLeaseMs), 3u);
  EXPECT_EQ(s->renew("node-b", 200'000, kDefaultLeaseMs), 3u);
  EXPECT_EQ(s->due(200'000, 10).size(), 6u);  // claimed jobs are still due
}

TEST(SqliteStore, AnOutcomeReleasesTheClaimAndReleaseGivesItBack) {
  test_support::TempDir dir;
  auto s = open_sqlite({dir.file("db"), false});
  std::vector<job::Job> jobs{make_job(100), make_job(100)};
  auto p = ptrs_of(jobs);
  s->insert(p);
  auto claimed = s->claim_due("node-a", 100'000, kDefaultLeaseMs, 10);
  ASSERT_EQ(claimed.size(), 2u);
  // Deferred to 150 s: released by the commit, claimable again once due.
  std::vector<JobUpdate> u{{.seq = jobs[0].seq, .recipients = jobs[0].recipients, .next_at_ms = 150'000}};
  s->update(u);
  EXPECT_TRUE(s->claim_due("node-b", 100'000, kDefaultLeaseMs, 10).empty());
  EXPECT_EQ(seqs_of(s->claim_due("node-b", 150'000, kDefaultLeaseMs, 10)), std::vector<std::int64_t>{jobs[0].seq});
  // Only the holder can give a claim back.
  s->release("node-b", std::vector<std::int64_t>{jobs[1].seq});
  EXPECT_TRUE(s->claim_due("node-b", 150'000, kDefaultLeaseMs, 10).empty());
  s->release("node-a", std::vector<std::int64_t>{jobs[1].seq});
  EXPECT_EQ(seqs_of(s->claim_due("node-b", 150'000, kDefaultLeaseMs, 10)), std::vector<std::int64_t>{jobs[1].seq});
  EXPECT_EQ(s->renew("node-a", 150'000, kDefaultLeaseMs), 0u);
}

TEST(SqliteStore, InsertsAreClaimedForTheSubmitterAndClaimsDoNotOutliveTheProcess) {
  test_support::TempDir dir;
  std::vector<job::Job> jobs{make_job(100), make_job(100)};
  {
    auto s = open_sqlite({dir.file("db"), false});
    auto p = ptrs_of(jobs);
    s->commit(Commit{.inserts = p, .owner = kLocalOwner, .lease_until_ms = 160'000});
    EXPECT_TRUE(s->claim_due("other", 100'000, kDefaultLeaseMs, 10).empty());
    EXPECT_EQ(s->renew(kLocalOwner, 100'000, kDefaultLeaseMs), 2u);
  }
  // As after kill -9: the new process claims at once, no lease to wait out.
  auto s = open_sqlite({dir.file("db"), false});
  EXPECT_EQ(s->claim_due(kLocalOwner, 100'000, kDefaultLeaseMs, 10).size(), 2u);
}

TEST(SqliteStore, AFailedCommitClaimsNothingAndReleasesNothing) {
  test_support::TempDir dir;
  auto s = open_sqlite({dir.file("db"), false});
  auto a = make_job(100);
  job::Job* pa = &a;
  s->insert({&pa, 1});
  ASSERT_EQ(s->claim_due("node", 100'000, kDefaultLeaseMs, 10).size(), 1u);
  auto b = make_job(100), c = make_job(100);
  c.ref = b.ref;  // UNIQUE(ref): the commit fails
  std::vector<job::Job*> p{&b, &c};
  std::vector<JobUpdate> u{{.seq = a.seq, .recipients = a.recipients, .next_at_ms = 100'000}};
  EXPECT_THROW(s->commit(Commit{.inserts = p, .updates = u, .owner = "node"}), StoreError);
  EXPECT_EQ(s->renew("node", 100'000, kDefaultLeaseMs), 1u);  // a is still held, nothing new is
  EXPECT_TRUE(s->claim_due("other", 100'000, kDefaultLeaseMs, 10).empty());
}
