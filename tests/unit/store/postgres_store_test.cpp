// PostgresStore against a real PostgreSQL: WEBSMTP_TEST_DATABASE_URL names an empty database
// the tests may wipe (tests/integration/test_postgres_store.py starts a PostgreSQL 15 and runs
// them); without it they skip.
#include <gtest/gtest.h>
#include <libpq-fe.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <set>
#include <thread>

#include "test_jobs.hpp"
#include "websmtp/store/postgres_store.hpp"

using namespace websmtp;
using namespace websmtp::store;
using websmtp::test_support::make_job;
using websmtp::test_support::ptrs_of;
using websmtp::test_support::seqs_of;

namespace {

std::string database_url() {
  const char* u = std::getenv("WEBSMTP_TEST_DATABASE_URL");
  return u ? u : "";
}

// Drops every table: each test starts from an empty database, as a first node would.
void wipe(const std::string& url) {
  PGconn* c = PQconnectdb(url.c_str());
  ASSERT_EQ(PQstatus(c), CONNECTION_OK) << PQerrorMessage(c);
  PGresult* r = PQexec(c, "SET client_min_messages = warning; DROP SCHEMA public CASCADE; CREATE SCHEMA public");
  EXPECT_EQ(PQresultStatus(r), PGRES_COMMAND_OK) << PQresultErrorMessage(r);
  PQclear(r);
  PQfinish(c);
}

// Runs `sql` (statements without results) on a connection of its own.
void exec(const std::string& url, const char* sql) {
  PGconn* c = PQconnectdb(url.c_str());
  ASSERT_EQ(PQstatus(c), CONNECTION_OK) << PQerrorMessage(c);
  PGresult* r = PQexec(c, sql);
  EXPECT_EQ(PQresultStatus(r), PGRES_COMMAND_OK) << PQresultErrorMessage(r);
  PQclear(r);
  PQfinish(c);
}

// The queue counts taken from every job row, as the figures were counted before the counters.
Counts recount(const std::string& url) {
  Counts c;
  PGconn* pg = PQconnectdb(url.c_str());
  PGresult* r = PQexec(pg, "SELECT started, outcome, count(*) FROM jobs GROUP BY started, outcome");
  for (int i = 0; i < PQntuples(r); ++i) {
    std::int64_t n = std::stoll(PQgetvalue(r, i, 2));
    int outcome = std::stoi(PQgetvalue(r, i, 1));
    (outcome == 1 ? c.completed : outcome == 2 ? c.failed : std::stoi(PQgetvalue(r, i, 0)) ? c.deferred : c.queued) += n;
  }
  PQclear(r);
  PQfinish(pg);
  return c;
}

std::int64_t unix_now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// `n` jobs with a callback_url, completed by `s`: their events are in the outbox, due.
std::vector<job::Job> completed_with_callbacks(SharedStore& s, const std::string& node, int n) {
  std::vector<job::Job> jobs;
  for (int i = 0; i < n; ++i) {
    jobs.push_back(make_job(100));
    jobs.back().callback_url = "https://hooks.example.com/" + std::to_string(i);
  }
  auto p = ptrs_of(jobs);
  s.commit(Commit{.inserts = p, .owner = node, .lease_until_ms = 500'000});
  std::vector<JobUpdate> u;
  for (auto& j : jobs)
    u.push_back({.seq = j.seq, .recipients = j.recipients, .completed = 150, .outcome = Outcome::kDelivered});
  s.commit(Commit{.updates = u, .owner = node});
  return jobs;
}

std::set<std::string> ids_of(const std::vector<WebhookEvent>& events) {
  std::set<std::string> ids;
  for (const auto& e : events) ids.insert(e.id);
  return ids;
}

// What a node hears on its LISTEN connection (start_listening), waited for bounded.
class Heard {
 public:
  std::function<void(const std::string&)> callback() {
    return [this](const std::string& item) {
      std::lock_guard lock(mu_);
      items_.push_back(item);
      cv_.notify_all();
    };
  }
  long count(const std::string& item) {
    std::lock_guard lock(mu_);
    return std::count(items_.begin(), items_.end(), item);
  }
  // Waits up to 10 s for `item`; then how many times it was heard.
  long wait_for(const std::string& item) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, std::chrono::seconds(10),
                 [&] { return std::find(items_.begin(), items_.end(), item) != items_.end(); });
    return std::count(items_.begin(), items_.end(), item);
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> items_;
};

bool same(const Counts& a, const Counts& b) {
  return a.queued == b.queued && a.deferred == b.deferred && a.completed == b.completed && a.failed == b.failed;
}

class PostgresStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    url_ = database_url();
    if (url_.empty()) GTEST_SKIP() << "WEBSMTP_TEST_DATABASE_URL is not set";
    wipe(url_);
  }
  std::unique_ptr<SharedStore> open(const std::string& node = "node-a") { return open_postgres({url_, node, 4}); }

  std::string url_;
};

TEST_F(PostgresStoreTest, InsertsFindsAndLoadsJobsWithTheirExactBytes) {
  auto s = open();
  auto j = make_job(1000, 3);
  j.message += std::string("8-bit \xc3\xa9 and a NUL \0 byte\r\n", 27);
  j.recipients[1].kind = job::RecipientKind::kBcc;
  j.submitted_by = "key:k1";
  job::Job* p = &j;
  s->insert({&p, 1});
  EXPECT_GT(j.seq, 0);
  auto found = s->find(j.ref);
  ASSERT_TRUE(found);
  EXPECT_EQ(found->recipients.size(), 3u);
  EXPECT_EQ(found->recipients[1].kind, job::RecipientKind::kBcc);
  EXPECT_EQ(found->submitted_by, "key:k1");
  EXPECT_TRUE(found->message.empty());
  EXPECT_EQ(s->find_seq(j.seq)->ref, j.ref);
  auto loaded = s->load(std::vector<std::int64_t>{j.seq}, 1000 * 1000);
  ASSERT_EQ(loaded.size(), 1u);
  EXPECT_EQ(loaded[0].message, j.message);
  EXPECT_EQ(*s->find_message(j.seq), j.message);
  EXPECT_EQ(s->counts().queued, 1);
  EXPECT_EQ(s->oldest_queued_submitted(), 1000);
}

TEST_F(PostgresStoreTest, DueOrderRetryTimesCountsAndPurge) {
  auto s = open();
  std::vector<job::Job> jobs;
  for (int i = 0; i < 5; ++i) jobs.push_back(make_job(100 + i));
  auto p = ptrs_of(jobs);
  s->insert(p);
  ASSERT_EQ(s->claim_due("node-a", 200'000, kDefaultLeaseMs, 2).size(), 2u);  // jobs 0 and 1
  std::vector<JobUpdate> u{{.seq = jobs[0].seq, .recipients = jobs[0].recipients, .next_at_ms = 500'000},
                           {.seq = jobs[1].seq,
                            .recipients = jobs[1].recipients,
                            .completed = 110,
                            .outcome = Outcome::kDelivered,
                            .attempts = {{"r0@y.zz", 110, 250, "2.0.0 ok", "relay"}}}};
  s->commit(Commit{.updates = u, .owner = "node-a"});
  EXPECT_EQ(s->due(200'000, 10), (std::vector<std::int64_t>{jobs[2].seq, jobs[3].seq, jobs[4].seq}));
  EXPECT_EQ(s->next_due_after(200'000), 500'000);
  auto c = s->counts();
  EXPECT_EQ(c.queued, 3);
  EXPECT_EQ(c.deferred, 1);
  EXPECT_EQ(c.completed, 1);
  EXPECT_FALSE(s->find_message(jobs[1].seq));  // dropped once finished
  ASSERT_EQ(s->attempts(jobs[1].seq).size(), 1u);
  EXPECT_EQ(s->attempts(jobs[1].seq)[0].host, "relay");
  auto removed = s->purge_finished(200);
  EXPECT_EQ(removed.completed, 1);
  EXPECT_FALSE(s->find(jobs[1].ref));
  EXPECT_TRUE(s->attempts(jobs[1].seq).empty());
  EXPECT_TRUE(s->find(jobs[0].ref));
}

TEST_F(PostgresStoreTest, ClaimsDueJobsOnceInDueOrder) {
  auto s = open();
  std::vector<job::Job> jobs;
  for (int i = 0; i < 6; ++i) jobs.push_back(make_job(100 + i));
  auto p = ptrs_of(jobs);
  s->insert(p);
  ASSERT_EQ(s->claim_due("node-a", 100'000, kDefaultLeaseMs, 1).size(), 1u);
  std::vector<JobUpdate> u{{.seq = jobs[0].seq, .recipients = jobs[0].recipients, .next_at_ms = 103'500}};
  s->commit(Commit{.updates = u, .owner = "node-a"});
  auto a = s->claim_due("node-a", 200'000, kDefaultLeaseMs, 3);
  EXPECT_EQ(seqs_of(a), (std::vector<std::int64_t>{jobs[1].seq, jobs[2].seq, jobs[3].seq}));
  EXPECT_EQ(a[0].message, jobs[1].message);
  auto b = s->claim_due("node-b", 200'000, kDefaultLeaseMs, 10);
  EXPECT_EQ(seqs_of(b), (std::vector<std::int64_t>{jobs[0].seq, jobs[4].seq, jobs[5].seq}));
  EXPECT_TRUE(s->claim_due("node-b", 200'000, kDefaultLeaseMs, 10).empty());
  EXPECT_EQ(s->renew("node-a", 200'000, kDefaultLeaseMs), 3u);
  EXPECT_EQ(s->renew("node-b", 200'000, kDefaultLeaseMs), 3u);
  // Only the holder gives a claim back.
  s->release("node-b", std::vector<std::int64_t>{jobs[1].seq});
  EXPECT_TRUE(s->claim_due("node-c", 200'000, kDefaultLeaseMs, 10).empty());
  s->release("node-a", std::vector<std::int64_t>{jobs[1].seq});
  EXPECT_EQ(seqs_of(s->claim_due("node-c", 200'000, kDefaultLeaseMs, 10)), std::vector<std::int64_t>{jobs[1].seq});
}

TEST_F(PostgresStoreTest, ADeadNodesClaimsComeBackAfterTheLeaseAndItsLateOutcomeIsNotWritten) {
  auto a = open("node-a");
  auto b = open("node-b");
  std::vector<job::Job> jobs{make_job(100), make_job(100)};
  auto p = ptrs_of(jobs);
  a->commit(Commit{.inserts = p, .owner = "node-a", .lease_until_ms = 160'000});
  EXPECT_TRUE(b->claim_due("node-b", 150'000, 10'000, 10).empty());
  // Node b's timer: the end of node a's lease.
  EXPECT_EQ(b->next_due_after(150'000), 160'001);
  // Node a renews one more time, then dies: its claims expire at 170 s.
  EXPECT_EQ(a->renew("node-a", 160'000, 10'000), 2u);
  EXPECT_TRUE(b->claim_due("node-b", 169'000, 10'000, 10).empty());
  auto taken = b->claim_due("node-b", 170'001, 10'000, 10);
  ASSERT_EQ(taken.size(), 2u);
  EXPECT_FALSE(taken[0].interrupted_on_wire);
  // Node a was not dead after all: its outcome comes too late and changes nothing.
  std::vector<JobUpdate> late{
      {.seq = jobs[0].seq, .recipients = jobs[0].recipients, .completed = 171, .outcome = Outcome::kFailed}};
  a->commit(Commit{.updates = late, .owner = "node-a"});
  EXPECT_EQ(b->find(jobs[0].ref)->completed, 0);
  EXPECT_EQ(b->renew("node-b", 171'000, 10'000), 2u);
  std::vector<JobUpdate> done{
      {.seq = jobs[0].seq, .recipients = jobs[0].recipients, .completed = 172, .outcome = Outcome::kDelivered}};
  b->commit(Commit{.updates = done, .owner = "node-b"});
  EXPECT_EQ(b->find(jobs[0].ref)->completed, 172);
  EXPECT_EQ(b->renew("node-b", 172'000, 10'000), 1u);
}

TEST_F(PostgresStoreTest, AMessageOnTheWireIsFlaggedToTheNodeThatTakesTheJobOver) {
  auto a = open("node-a");
  auto b = open("node-b");
  std::vector<job::Job> jobs{make_job(100), make_job(100)};
  auto p = ptrs_of(jobs);
  a->commit(Commit{.inserts = p, .owner = "node-a", .lease_until_ms = 110'000});
  a->note_on_wire(jobs[0].seq, "node-a");
  a->note_on_wire(jobs[1].seq, "node-b");  // not b's claim: ignored
  auto taken = b->claim_due("node-b", 120'000, 10'000, 10);
  ASSERT_EQ(taken.size(), 2u);
  EXPECT_TRUE(taken[0].interrupted_on_wire);
  EXPECT_FALSE(taken[1].interrupted_on_wire);
  // The taker's outcome clears the note.
  std::vector<JobUpdate> u{{.seq = jobs[0].seq, .recipients = jobs[0].recipients, .next_at_ms = 120'000}};
  b->commit(Commit{.updates = u, .owner = "node-b"});
  auto again = a->claim_due("node-a", 120'000, 10'000, 10);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_FALSE(again[0].interrupted_on_wire);
}

TEST_F(PostgresStoreTest, ANodeRestartedUnderItsNameReleasesWhatItsPredecessorHeld) {
  std::vector<job::Job> jobs{make_job(100), make_job(100)};
  {
    auto a = open("node-a");
    auto p = ptrs_of(jobs);
    a->commit(Commit{.inserts = p, .owner = "node-a", .lease_until_ms = 500'000});
    a->note_on_wire(jobs[1].seq, "node-a");
  }  // kill -9
  auto again = open("node-a");
  EXPECT_EQ(again->renew("node-a", 100'000, 10'000), 0u);  // its renewals do not keep them held
  auto taken = open("node-b")->claim_due("node-b", 100'000, 10'000, 10);
  ASSERT_EQ(taken.size(), 2u);  // at once, not after the lease
  EXPECT_FALSE(taken[0].interrupted_on_wire);
  EXPECT_TRUE(taken[1].interrupted_on_wire);
}

TEST_F(PostgresStoreTest, ACancelOfAJobAnotherNodeHoldsIsNotUndoneByItsOutcome) {
  auto a = open("node-a");
  auto b = open("node-b");
  std::vector<job::Job> jobs{make_job(100), make_job(100)};
  auto p = ptrs_of(jobs);
  b->commit(Commit{.inserts = p, .owner = "node-b", .lease_until_ms = 500'000});
  auto cancel = [](const job::Job& j) -> std::optional<JobUpdate> {
    return JobUpdate{.seq = j.seq, .ref = j.ref, .recipients = j.recipients, .completed = 150,
                     .outcome = Outcome::kFailed};
  };
  JobEdit remote{.seq = jobs[0].seq, .apply = cancel};
  JobEdit own{.seq = jobs[1].seq, .apply = cancel};
  std::vector<JobEdit*> ea{&remote}, eb{&own};
  a->commit(Commit{.edits = ea, .owner = "node-a"});
  b->commit(Commit{.edits = eb, .owner = "node-b"});
  // Node b's attempts end afterwards: the remote cancel stands; its own edit is its to refinish.
  std::vector<JobUpdate> u{
      {.seq = jobs[0].seq, .recipients = jobs[0].recipients, .completed = 160, .outcome = Outcome::kDelivered},
      {.seq = jobs[1].seq, .recipients = jobs[1].recipients, .completed = 160, .outcome = Outcome::kFailed}};
  b->commit(Commit{.updates = u, .owner = "node-b"});
  EXPECT_EQ(a->find(jobs[0].ref)->completed, 150);
  EXPECT_EQ(a->find(jobs[1].ref)->completed, 160);
}

TEST_F(PostgresStoreTest, TheCommitThatCompletesAJobWithACallbackWritesItsWebhookEvent) {
  auto s = open();
  std::vector<job::Job> jobs{make_job(100), make_job(100)};
  jobs[0].callback_url = "https://hooks.example.com/x";
  auto p = ptrs_of(jobs);
  s->commit(Commit{.inserts = p, .owner = "node-a", .lease_until_ms = 500'000});
  EXPECT_TRUE(s->has_webhook_outbox());
  EXPECT_FALSE(s->webhook_next_at());
  std::vector<JobUpdate> u{{.seq = jobs[0].seq,
                            .ref = jobs[0].ref,
                            .submitted = jobs[0].submitted,
                            .recipients = jobs[0].recipients,
                            .completed = 150,
                            .outcome = Outcome::kDelivered},
                           {.seq = jobs[1].seq,
                            .ref = jobs[1].ref,
                            .submitted = jobs[1].submitted,
                            .recipients = jobs[1].recipients,
                            .completed = 150,
                            .outcome = Outcome::kDelivered}};
  s->commit(Commit{.updates = u, .owner = "node-a"});
  // Written once: a later commit of the same job (a cancel's refinish) adds no second event.
  s->commit(Commit{.updates = std::span<const JobUpdate>(u.data(), 1), .owner = "node-a"});
  auto due = s->webhook_due(150'000, 10, 0);
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].job_ref, jobs[0].ref);
  EXPECT_EQ(due[0].url, "https://hooks.example.com/x");
  EXPECT_NE(due[0].body.find(jobs[0].ref), std::string::npos);
  s->webhook_failed(due[0].id, 1, 160'000);
  EXPECT_TRUE(s->webhook_due(150'000, 10, 0).empty());
  EXPECT_EQ(s->webhook_next_at(), 160'000);
  s->webhook_delivered(due[0].id);
  EXPECT_FALSE(s->webhook_next_at());
}

TEST_F(PostgresStoreTest, AWebhookEventIsClaimedByOneNodeUntilItsClaimLapses) {
  auto a = open("node-a");
  auto b = open("node-b");
  std::vector<job::Job> jobs{make_job(100)};
  jobs[0].callback_url = "https://hooks.example.com/x";
  auto p = ptrs_of(jobs);
  a->commit(Commit{.inserts = p, .owner = "node-a", .lease_until_ms = 500'000});
  std::vector<JobUpdate> u{
      {.seq = jobs[0].seq, .recipients = jobs[0].recipients, .completed = 150, .outcome = Outcome::kDelivered}};
  a->commit(Commit{.updates = u, .owner = "node-a"});

  // Node A claims it for 30 s: due for nobody meanwhile, node A included.
  auto due = a->webhook_due(150'000, 10, 30'000);
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].next_at_ms, 150'000);  // when it was due, not the claim's end
  EXPECT_TRUE(b->webhook_due(179'999, 10, 30'000).empty());
  EXPECT_TRUE(a->webhook_due(179'999, 10, 30'000).empty());
  EXPECT_EQ(b->webhook_next_at(), 180'000);
  // Node B cannot move an event node A holds.
  b->webhook_failed(due[0].id, 1, 150'000);
  EXPECT_EQ(b->webhook_next_at(), 180'000);

  // Node A died: the claim lapses and node B takes the event over, with A's attempts.
  auto again = b->webhook_due(180'000, 10, 30'000);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].id, due[0].id);
  EXPECT_EQ(again[0].attempts, 0);
  // Node A was only slow: its late failure does not move node B's claim...
  a->webhook_failed(due[0].id, 1, 181'000);
  EXPECT_TRUE(a->webhook_due(200'000, 10, 30'000).empty());
  EXPECT_EQ(a->webhook_next_at(), 210'000);
  // ...node B's does, and releases the event to whichever node looks next.
  b->webhook_failed(due[0].id, 1, 211'000);
  auto third = a->webhook_due(211'000, 10, 30'000);
  ASSERT_EQ(third.size(), 1u);
  EXPECT_EQ(third[0].attempts, 1);
  // A delivery ends it, whoever reports it.
  b->webhook_delivered(due[0].id);
  EXPECT_FALSE(a->webhook_next_at());
}

TEST_F(PostgresStoreTest, ANodeRestartedUnderItsNameReleasesTheWebhookEventsItsPredecessorHeld) {
  const std::int64_t now = unix_now_ms();
  std::string failed;
  std::set<std::string> held;
  {
    auto a = open("node-a");
    completed_with_callbacks(*a, "node-a", 3);
    auto claimed = a->webhook_due(now, 10, 60'000);
    ASSERT_EQ(claimed.size(), 3u);
    // One failed at the receiver (retried in an hour); the other two are being sent.
    failed = claimed[0].id;
    a->webhook_failed(failed, 1, now + 3'600'000);
    held = {claimed[1].id, claimed[2].id};
  }  // kill -9
  auto b = open("node-b");
  EXPECT_TRUE(b->webhook_due(now, 10, 60'000).empty());  // held for the claim's minute
  auto again = open("node-a");
  // At once, not after the claim, with the attempts they had; the failed one keeps its retry time.
  auto taken = b->webhook_due(unix_now_ms(), 10, 60'000);
  EXPECT_EQ(ids_of(taken), held);
  for (const auto& e : taken) EXPECT_EQ(e.attempts, 0);
  EXPECT_EQ(ids_of(b->webhook_due(now + 3'599'999, 10, 0)), held);
  auto all = b->webhook_due(now + 3'600'000, 10, 0);
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all.back().id, failed);
  EXPECT_EQ(all.back().attempts, 1);
}

TEST_F(PostgresStoreTest, AWebhookClaimHandedBackDueNowIsAnnouncedToTheOtherNodes) {
  Heard heard;  // first: outlives the listener thread that calls into it
  auto a = open("node-a");
  auto b = open("node-b");
  completed_with_callbacks(*a, "node-a", 2);  // (its own "!" is sent before b listens)
  b->start_listening(heard.callback());
  const std::int64_t now = unix_now_ms();
  auto claimed = a->webhook_due(now, 10, 60'000);
  ASSERT_EQ(claimed.size(), 2u);
  a->webhook_failed(claimed[0].id, 1, now + 3'600'000);  // the receiver failed: this node retries it later
  // Notifications arrive in commit order: once a later marker is heard, the failure above was
  // heard too if it was announced at all.
  a->put_setting("marker", "1");
  ASSERT_EQ(heard.wait_for("=marker"), 1);
  EXPECT_EQ(heard.count("!"), 0);  // the failure with a retry time is not announced
  a->webhook_failed(claimed[1].id, claimed[1].attempts, now);  // cut short by a graceful stop: handed back
  EXPECT_EQ(heard.wait_for("!"), 1);
  // The other node takes it at once (not at the claim's end), with the attempts it had.
  auto taken = b->webhook_due(unix_now_ms(), 10, 60'000);
  ASSERT_EQ(taken.size(), 1u);
  EXPECT_EQ(taken[0].id, claimed[1].id);
  EXPECT_EQ(taken[0].attempts, 0);
  b->stop_listening();
}

TEST_F(PostgresStoreTest, ConcurrentNodesClaimDisjointWebhookEvents) {
  auto seed = open("seed");
  std::vector<job::Job> jobs;
  for (int i = 0; i < 60; ++i) {
    jobs.push_back(make_job(100));
    jobs.back().callback_url = "https://hooks.example.com/" + std::to_string(i);
  }
  auto p = ptrs_of(jobs);
  seed->commit(Commit{.inserts = p, .owner = "seed", .lease_until_ms = 500'000});
  std::vector<JobUpdate> u;
  for (auto& j : jobs)
    u.push_back({.seq = j.seq, .recipients = j.recipients, .completed = 150, .outcome = Outcome::kDelivered});
  seed->commit(Commit{.updates = u, .owner = "seed"});

  std::mutex mu;
  std::multiset<std::string> claimed;
  std::vector<std::thread> threads;
  for (int n = 0; n < 3; ++n)
    threads.emplace_back([&, n] {
      auto s = open("node-" + std::to_string(n));
      for (int round = 0; round < 100; ++round) {  // bounded: 60 events, one or two per call
        auto due = s->webhook_due(150'000, 1 + round % 2, 60'000);
        if (due.empty()) break;
        std::lock_guard lock(mu);
        for (const auto& e : due) claimed.insert(e.id);
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(claimed.size(), 60u);
  EXPECT_EQ(std::set<std::string>(claimed.begin(), claimed.end()).size(), 60u) << "an event claimed twice";
}

TEST_F(PostgresStoreTest, ConcurrentNodesNeverClaimTheSameJob) {
  auto seed = open("seed");
  std::vector<job::Job> jobs;
  for (int i = 0; i < 600; ++i) jobs.push_back(make_job(100));
  auto p = ptrs_of(jobs);
  seed->insert(p);
  constexpr int kNodes = 4;
  std::vector<std::vector<std::int64_t>> got(kNodes);
  std::vector<std::thread> threads;
  for (int n = 0; n < kNodes; ++n)
    threads.emplace_back([&, n] {
      auto s = open("node-" + std::to_string(n));
      while (true) {
        auto batch = s->claim_due("node-" + std::to_string(n), 200'000, kDefaultLeaseMs, 7);
        if (batch.empty()) break;
        for (const auto& j : batch) got[n].push_back(j.seq);
      }
    });
  for (auto& t : threads) t.join();
  std::set<std::int64_t> all;
  std::size_t total = 0;
  for (const auto& g : got) {
    total += g.size();
    all.insert(g.begin(), g.end());
  }
  EXPECT_EQ(total, jobs.size());
  EXPECT_EQ(all.size(), jobs.size());
}

TEST_F(PostgresStoreTest, ManyNodesStartingAtOnceCreateTheSchemaOnce) {
  std::vector<std::thread> threads;
  std::atomic<int> opened{0};
  for (int n = 0; n < 6; ++n)
    threads.emplace_back([&, n] {
      auto s = open("node-" + std::to_string(n));
      ++opened;
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(opened.load(), 6);
  auto s = open();
  EXPECT_EQ(s->counts().queued, 0);
}

TEST_F(PostgresStoreTest, IdempotencyKeysBatchesAndTheirWindow) {
  auto s = open();
  std::vector<job::Job> jobs{make_job(100), make_job(100), make_job(100), make_job(100)};
  jobs[0].idempotency_key = "single";
  jobs[0].request_hash = "h0";
  jobs[1].idempotency_key = "batch";
  jobs[1].request_hash = "hb";
  auto p = ptrs_of(jobs);
  std::vector<std::uint32_t> sizes{1, 3};
  s->commit(Commit{.inserts = p, .batches = sizes});
  EXPECT_EQ(s->find_idempotency("single")->refs, std::vector<std::string>{jobs[0].ref});
  auto hit = s->find_idempotency("batch");
  ASSERT_TRUE(hit);
  EXPECT_EQ(hit->request_hash, "hb");
  EXPECT_EQ(hit->refs, (std::vector<std::string>{jobs[1].ref, jobs[2].ref, jobs[3].ref}));
  // Within the window a job with the key is not stored (another node's commit took the key
  // first: its seq stays 0, and so do the seqs of the rest of its batch), while the other jobs
  // of the same commit are.
  auto again = make_job(100 + 60);
  again.idempotency_key = "single";
  std::vector<job::Job> run{make_job(100 + 60), make_job(100 + 60), make_job(100 + 60), make_job(100 + 60)};
  run[0].idempotency_key = "batch";
  run[0].request_hash = "other";
  std::vector<job::Job*> mixed{&again, &run[0], &run[1], &run[2], &run[3]};
  std::vector<std::uint32_t> runs{1, 3, 1};
  s->commit(Commit{.inserts = mixed, .batches = runs});
  EXPECT_EQ(again.seq, 0);
  EXPECT_EQ(run[0].seq, 0);
  EXPECT_EQ(run[1].seq, 0);
  EXPECT_EQ(run[2].seq, 0);
  EXPECT_GT(run[3].seq, jobs[3].seq);
  EXPECT_FALSE(s->find(again.ref));
  EXPECT_FALSE(s->find(run[1].ref));
  EXPECT_TRUE(s->find(run[3].ref));
  EXPECT_EQ(s->find_idempotency("single")->refs, std::vector<std::string>{jobs[0].ref});
  EXPECT_EQ(s->find_idempotency("batch")->refs, (std::vector<std::string>{jobs[1].ref, jobs[2].ref, jobs[3].ref}));
  auto later = make_job(100 + kIdempotencyWindowS + 1);
  later.idempotency_key = "single";
  job::Job* pl = &later;
  s->insert({&pl, 1});
  EXPECT_EQ(s->find_idempotency("single")->ref, later.ref);
}

TEST_F(PostgresStoreTest, KeysSuppressionsSettingsAndEdits) {
  auto s = open();
  s->insert_key({"k1", "web", "secret", "sk_abc", "hash1", R"({"senders":["*@x.org"]})", 100, 0, 0});
  s->note_keys_used(std::vector<std::pair<std::string, std::int64_t>>{{"k1", 150}, {"k1", 120}});
  auto keys = s->list_keys();
  ASSERT_EQ(keys.size(), 1u);
  EXPECT_EQ(keys[0].last_used, 150);
  EXPECT_EQ(keys[0].policy_json, R"({"senders":["*@x.org"]})");
  EXPECT_TRUE(s->revoke_key("k1", 200));
  EXPECT_FALSE(s->revoke_key("k1", 201));

  EXPECT_TRUE(s->add_suppression({"a@x.org", "manual", 100, 0, ""}));
  EXPECT_FALSE(s->add_suppression({"a@x.org", "bounce", 101, 550, "no"}));
  EXPECT_EQ(s->list_suppressions().at(0).reason, "manual");
  EXPECT_TRUE(s->remove_suppression("a@x.org"));
  EXPECT_FALSE(s->remove_suppression("a@x.org"));

  EXPECT_FALSE(s->setting("paused"));
  s->put_setting("paused", "1");
  s->put_setting("paused", "0");
  EXPECT_EQ(s->setting("paused"), "0");

  std::vector<job::Job> jobs{make_job(100), make_job(100)};
  auto p = ptrs_of(jobs);
  s->insert(p);
  JobEdit cancel{.seq = jobs[1].seq, .apply = [](const job::Job& j) -> std::optional<JobUpdate> {
                   JobUpdate u{.seq = j.seq, .ref = j.ref, .recipients = j.recipients, .completed = 300,
                               .outcome = Outcome::kFailed};
                   return u;
                 }};
  JobEdit missing{.seq = 999999, .apply = [](const job::Job&) -> std::optional<JobUpdate> { return std::nullopt; }};
  std::vector<JobEdit*> edits{&cancel, &missing};
  s->commit(Commit{.edits = edits});
  EXPECT_TRUE(cancel.found);
  EXPECT_FALSE(missing.found);
  EXPECT_EQ(s->find(jobs[1].ref)->completed, 300);
  auto failed = s->list_jobs(JobFilter::kFailed, 0, 10);
  ASSERT_EQ(failed.size(), 1u);
  EXPECT_EQ(failed[0].ref, jobs[1].ref);
  auto all = s->list_jobs(JobFilter::kAll, 0, 1);
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].seq, jobs[1].seq);  // newest first
  EXPECT_EQ(s->list_jobs(JobFilter::kAll, all[0].seq, 10).front().seq, jobs[0].seq);
}

TEST_F(PostgresStoreTest, AnotherNodesOutcomeIsHeardOnTheListenConnection) {
  Heard heard;  // first: outlives the listener thread that calls into it
  auto a = open("node-a");
  auto b = open("node-b");
  b->start_listening(heard.callback());
  auto j = make_job(100);
  job::Job* p = &j;
  // Listening when start_listening() returns: nothing committed after it is missed.
  a->commit(Commit{.inserts = {&p, 1}, .owner = "node-a", .lease_until_ms = 200'000});
  std::vector<JobUpdate> u{{.seq = j.seq, .ref = j.ref, .recipients = j.recipients, .completed = 101,
                            .outcome = Outcome::kDelivered}};
  a->commit(Commit{.updates = u, .owner = "node-a"});
  EXPECT_GE(heard.wait_for(j.ref), 1);
  // Its own commits are not reported back to a node.
  b->put_setting("paused", "1");
  a->put_setting("paused", "0");
  EXPECT_EQ(heard.wait_for("=paused"), 1);
  b->stop_listening();
}

TEST_F(PostgresStoreTest, NodesReportTheirFiguresAndCountersNeverGoDown) {
  auto a = open("node-a");
  auto b = open("node-b");
  EXPECT_TRUE(a->nodes().empty());
  NodeFigures f{.node_id = "node-a", .started_ms = 1000, .submitted = 10, .delivered = 9, .failed = 1,
                .workers = 4, .workers_busy = 2, .in_flight = 3, .in_flight_first = 1};
  a->report_node(f);
  b->report_node({.node_id = "node-b", .started_ms = 2000, .submitted = 5, .workers = 2});
  auto rows = b->nodes();
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].node_id, "node-a");
  EXPECT_EQ(rows[0].started_ms, 1000);
  EXPECT_GT(rows[0].seen_ms, 0);  // the database's clock
  EXPECT_GE(rows[0].age_ms, 0);
  EXPECT_LT(rows[0].age_ms, 60'000);
  EXPECT_EQ(rows[0].stopped_ms, 0);
  EXPECT_EQ(rows[0].submitted, 10);
  EXPECT_EQ(rows[0].delivered, 9);
  EXPECT_EQ(rows[0].failed, 1);
  EXPECT_EQ(rows[0].workers, 4);
  EXPECT_EQ(rows[0].workers_busy, 2);
  EXPECT_EQ(rows[0].in_flight, 3);
  EXPECT_EQ(rows[0].in_flight_first, 1);
  EXPECT_EQ(rows[1].node_id, "node-b");
  // A later report replaces the row, but a counter is never lowered; stopped is noted.
  f.submitted = 3;
  f.delivered = 12;
  f.stopped_ms = 5000;
  f.in_flight = 0;
  a->report_node(f);
  rows = a->nodes();
  EXPECT_EQ(rows[0].submitted, 10);
  EXPECT_EQ(rows[0].delivered, 12);
  EXPECT_EQ(rows[0].stopped_ms, 5000);
  EXPECT_EQ(rows[0].in_flight, 0);
}

}  // namespace

// A group commit's outcomes go in one statement: each job's history in order, the suppressions
// they add (one entry per address however many jobs bounce it), nothing of an outcome whose
// claim was lost, and a peer's reply stored whatever bytes it holds.
TEST_F(PostgresStoreTest, OneCommitsOutcomesWriteHistorySuppressionsAndAnyReplyBytes) {
  auto a = open("node-a");
  auto b = open("node-b");
  std::vector<job::Job> jobs{make_job(100), make_job(100), make_job(100)};
  auto p = ptrs_of(jobs);
  a->commit(Commit{.inserts = p, .owner = "node-a", .lease_until_ms = 500'000});
  // Node b has taken the third job over (node a's lease ran out).
  a->release("node-a", std::vector<std::int64_t>{jobs[2].seq});
  ASSERT_EQ(b->claim_due("node-b", 100'000, 60'000, 10).size(), 1u);
  static constexpr char kOdd[] = "550 5.1.1 \xff\xfe bad \xc3 byte and a NUL \0 there";
  const std::string odd(kOdd, sizeof kOdd - 1);
  auto update = [&](const job::Job& j, std::int64_t t) {
    JobUpdate u{.seq = j.seq, .ref = j.ref, .submitted = j.submitted, .recipients = j.recipients, .completed = t,
                .outcome = Outcome::kFailed};
    u.attempts = {{"first@x.org", t, 451, "451 try later", "mx1"}, {"first@x.org", t, 550, odd, "mx2"}};
    u.suppress = {{"gone@x.org", "bounce", t, 550, odd}};
    return u;
  };
  std::vector<JobUpdate> u{update(jobs[0], 150), update(jobs[1], 151), update(jobs[2], 152)};
  a->commit(Commit{.updates = u, .owner = "node-a"});
  EXPECT_EQ(a->find(jobs[0].ref)->completed, 150);
  EXPECT_EQ(a->find(jobs[1].ref)->completed, 151);
  EXPECT_EQ(a->find(jobs[2].ref)->completed, 0);  // node b's claim: not written
  auto h = a->attempts(jobs[0].seq);
  ASSERT_EQ(h.size(), 2u);
  EXPECT_EQ(h[0].smtp_code, 451);
  EXPECT_EQ(h[1].smtp_code, 550);
  EXPECT_EQ(h[1].host, "mx2");
  EXPECT_EQ(h[1].smtp_reply,
            "550 5.1.1 \xEF\xBF\xBD\xEF\xBF\xBD bad \xEF\xBF\xBD byte and a NUL \xEF\xBF\xBD there");
  EXPECT_EQ(a->attempts(jobs[1].seq).size(), 2u);
  EXPECT_TRUE(a->attempts(jobs[2].seq).empty());
  auto sup = a->list_suppressions();
  ASSERT_EQ(sup.size(), 1u);
  EXPECT_EQ(sup[0].address, "gone@x.org");
  EXPECT_EQ(sup[0].created, 150);
  EXPECT_EQ(sup[0].smtp_reply, h[1].smtp_reply);
}

// The queue figures are the nodes' counter rows: after inserts on two nodes, attempts, a lost
// claim, a keyed insert left out, a cancel from the other node, a retry and a purge they equal
// a count of every row; and a database of the version before them gets them from its jobs.
TEST_F(PostgresStoreTest, QueueCountsFromCounterRowsMatchTheJobs) {
  auto a = open("node-a");
  auto b = open("node-b");
  auto check = [&](const char* when, Store* other = nullptr) {
    Counts want = recount(url_);
    Counts got = (other ? other : a.get())->counts();
    EXPECT_TRUE(same(got, want)) << when << ": counters " << got.queued << "/" << got.deferred << "/" << got.completed
                                 << "/" << got.failed << ", rows " << want.queued << "/" << want.deferred << "/"
                                 << want.completed << "/" << want.failed;
    if (!other) {
      EXPECT_TRUE(same(b->counts(), want)) << when;
    }
  };
  std::vector<job::Job> ja{make_job(100), make_job(100), make_job(100), make_job(100)};
  ja[0].idempotency_key = "k";
  ja[0].request_hash = "h";
  auto pa = ptrs_of(ja);
  a->commit(Commit{.inserts = pa, .owner = "node-a", .lease_until_ms = 500'000});
  std::vector<job::Job> jb{make_job(100), make_job(100)};
  jb[1].idempotency_key = "k";  // taken by node a: left out
  auto pb = ptrs_of(jb);
  b->commit(Commit{.inserts = pb});
  EXPECT_EQ(jb[1].seq, 0);
  check("inserts");
  EXPECT_EQ(a->counts().queued, 5);

  auto outcome = [](const job::Job& j, Outcome o, std::optional<std::int64_t> next) {
    return JobUpdate{.seq = j.seq, .ref = j.ref, .submitted = j.submitted, .recipients = j.recipients,
                     .completed = o == Outcome::kPending ? 0 : 150, .next_at_ms = next, .outcome = o};
  };
  // Node a: one delivered, one failed, one deferred; its fourth job's lease ran out and node b
  // holds it, so node a's outcome for it is lost.
  a->release("node-a", std::vector<std::int64_t>{ja[3].seq});
  ASSERT_FALSE(b->claim_due("node-b", 100'000, 60'000, 10).empty());
  std::vector<JobUpdate> ua{outcome(ja[0], Outcome::kDelivered, std::nullopt),
                            outcome(ja[1], Outcome::kFailed, std::nullopt),
                            outcome(ja[2], Outcome::kPending, 200'000), outcome(ja[3], Outcome::kDelivered, std::nullopt)};
  a->commit(Commit{.updates = ua, .owner = "node-a"});
  check("outcomes");
  EXPECT_EQ(a->counts().completed, 1);

  // Node b cancels the deferred job, then retries the failed one.
  auto cancel = [](const job::Job& j) -> std::optional<JobUpdate> {
    return JobUpdate{.seq = j.seq, .ref = j.ref, .recipients = j.recipients, .completed = 160,
                     .outcome = Outcome::kFailed};
  };
  auto retry = [](const job::Job& j) -> std::optional<JobUpdate> {
    return JobUpdate{.seq = j.seq, .ref = j.ref, .recipients = j.recipients, .started = true, .next_at_ms = 1};
  };
  JobEdit e1{.seq = ja[2].seq, .apply = cancel};
  JobEdit e2{.seq = ja[1].seq, .apply = retry};
  std::vector<JobEdit*> edits{&e1, &e2};
  b->commit(Commit{.edits = edits, .owner = "node-b"});
  check("edits");

  // Purged by node b though node a completed them.
  Counts purged = b->purge_finished(1000);
  EXPECT_EQ(purged.completed + purged.failed, 2);  // ja[0] delivered, ja[2] cancelled
  check("purge");

  // A database of the version before the counters: its counts come from its jobs.
  a.reset();
  b.reset();
  exec(url_, "DROP TABLE job_counts; DROP INDEX jobs_claimable; UPDATE websmtp_schema SET version = 4");
  auto c = open("node-c");
  check("migrated", c.get());
  EXPECT_EQ(c->counts().queued + c->counts().deferred, 3);
}

// Two nodes' operators edit the same two jobs at once, listed in opposite orders (retry --all
// lists newest first): the edits lock rows in one order, so neither commit deadlocks.
TEST_F(PostgresStoreTest, EditsOfTheSameJobsFromTwoNodesNeverDeadlock) {
  auto a = open("node-a");
  auto b = open("node-b");
  std::vector<job::Job> jobs{make_job(100), make_job(100)};
  auto p = ptrs_of(jobs);
  a->commit(Commit{.inserts = p});
  std::atomic<int> applied{0};
  auto slow_retry = [&applied](const job::Job& j) -> std::optional<JobUpdate> {
    if (applied++ < 2) std::this_thread::sleep_for(std::chrono::milliseconds(300));
    return JobUpdate{.seq = j.seq, .ref = j.ref, .recipients = j.recipients, .started = true, .next_at_ms = 1};
  };
  JobEdit ax{.seq = jobs[0].seq, .apply = slow_retry}, ay{.seq = jobs[1].seq, .apply = slow_retry};
  JobEdit by{.seq = jobs[1].seq, .apply = slow_retry}, bx{.seq = jobs[0].seq, .apply = slow_retry};
  std::vector<JobEdit*> ea{&ax, &ay}, eb{&by, &bx};
  std::atomic<int> failures{0};
  auto run = [&failures](Store& s, std::vector<JobEdit*>& edits, const char* node) {
    try {
      s.commit(Commit{.edits = edits, .owner = node});
    } catch (const StoreError& e) {
      ++failures;
      ADD_FAILURE() << node << ": " << e.what();
    }
  };
  std::thread ta([&] { run(*a, ea, "node-a"); });
  std::thread tb([&] { run(*b, eb, "node-b"); });
  ta.join();
  tb.join();
  EXPECT_EQ(failures, 0);
  EXPECT_TRUE(ax.found && ay.found && bx.found && by.found);
  EXPECT_EQ(a->counts().deferred, 2);
}
