// The store's admin API additions: keyset paging, attempt history, edits inside the group
// commit, suppressions, settings, and the migration to schema version 4.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <algorithm>
#include <set>

#include "../../support/temp_dir.hpp"
#include "raw_sqlite.hpp"
#include "test_jobs.hpp"
#include "websmtp/job/json.hpp"
#include "websmtp/store/store.hpp"

using namespace websmtp;
using namespace websmtp::store;
using websmtp::test_support::make_job;
using websmtp::test_support::raw_exec;
using websmtp::test_support::raw_integer;

namespace {

std::vector<job::Job> insert_jobs(Store& s, int n) {
  std::vector<job::Job> jobs;
  for (int i = 0; i < n; ++i) jobs.push_back(make_job(1000 + i));
  std::vector<job::Job*> p;
  for (auto& j : jobs) p.push_back(&j);
  s.insert(p);
  return jobs;
}

std::vector<std::string> refs(const std::vector<job::Job>& jobs) {
  std::vector<std::string> out;
  for (const auto& j : jobs) out.push_back(j.ref);
  return out;
}

JobUpdate finished(const job::Job& j, job::RecipientState state) {
  JobUpdate u{.seq = j.seq, .ref = j.ref, .submitted = j.submitted, .recipients = j.recipients, .completed = 2000};
  for (auto& r : u.recipients) r.state = state;
  u.outcome = state == job::RecipientState::kDelivered ? Outcome::kDelivered : Outcome::kFailed;
  return u;
}

}  // namespace

TEST(AdminStore, PagesNewestFirstWithoutRepeatsOrSkipsWhileJobsArrive) {
  test_support::TempDir dir;
  auto s = open_sqlite({dir.file("db"), false});
  auto first = insert_jobs(*s, 10);
  std::vector<std::string> seen;
  std::int64_t before = 0;
  for (int page = 0; page < 10; ++page) {
    auto got = s->list_jobs(JobFilter::kAll, before, 3);
    if (got.empty()) break;
    for (const auto& j : got) seen.push_back(j.ref);
    before = got.back().seq;
    insert_jobs(*s, 2);  // newer jobs arrive between pages: they are never in a later page
  }
  auto expected = refs(first);
  std::reverse(expected.begin(), expected.end());
  EXPECT_EQ(seen, expected);
  EXPECT_EQ(s->list_jobs(JobFilter::kAll, 0, 1000).size(), 10u + 2 * 4);
}

TEST(AdminStore, FiltersByState) {
  test_support::TempDir dir;
  auto s = open_sqlite({dir.file("db"), false});
  auto jobs = insert_jobs(*s, 4);
  std::vector<JobUpdate> u{test_support::deferral(jobs[1], 5'000'000), finished(jobs[2], job::RecipientState::kDelivered),
                           finished(jobs[3], job::RecipientState::kFailed)};
  s->update(u);
  auto only = [&](JobFilter f) { return refs(s->list_jobs(f, 0, 10)); };
  EXPECT_EQ(only(JobFilter::kQueued), std::vector<std::string>{jobs[0].ref});
  EXPECT_EQ(only(JobFilter::kDeferred), std::vector<std::string>{jobs[1].ref});
  EXPECT_EQ(only(JobFilter::kCompleted), std::vector<std::string>{jobs[2].ref});
  EXPECT_EQ(only(JobFilter::kFailed), std::vector<std::string>{jobs[3].ref});
  EXPECT_TRUE(s->list_jobs(JobFilter::kAll, jobs[0].seq, 10).empty());
}

TEST(AdminStore, RecordsHistoryWithTheOutcomeAndPurgesItWithTheJob) {
  test_support::TempDir dir;
  auto s = open_sqlite({dir.file("db"), false});
  auto jobs = insert_jobs(*s, 1);
  auto d = test_support::deferral(jobs[0], 5'000'000);
  d.attempts = {{"r0@y.zz", 1500, 451, "4.3.0 later", "relay.test"}};
  s->update({&d, 1});
  auto f = finished(jobs[0], job::RecipientState::kDelivered);
  f.attempts = {{"r0@y.zz", 1600, 250, "2.0.0 ok", "relay.test"}};
  s->update({&f, 1});
  auto h = s->attempts(jobs[0].seq);
  ASSERT_EQ(h.size(), 2u);
  EXPECT_EQ(h[0].smtp_code, 451);
  EXPECT_EQ(h[0].smtp_reply, "4.3.0 later");
  EXPECT_EQ(h[0].host, "relay.test");
  EXPECT_EQ(h[1].time, 1600);
  EXPECT_EQ(s->purge_finished(3000).completed, 1);
  EXPECT_TRUE(s->attempts(jobs[0].seq).empty());
}

TEST(AdminStore, AppliesAnEditAfterTheOutcomesOfItsCommit) {
  test_support::TempDir dir;
  auto s = open_sqlite({dir.file("db"), false});
  auto jobs = insert_jobs(*s, 2);
  auto d = test_support::deferral(jobs[0], 5'000'000);
  int seen_attempts = -1;
  JobEdit e{.seq = jobs[0].seq, .apply = [&](const job::Job& j) -> std::optional<JobUpdate> {
              seen_attempts = j.recipients[0].attempts;  // the outcome of the same commit is there
              JobUpdate u{.ref = j.ref, .recipients = j.recipients, .completed = 3000, .outcome = Outcome::kFailed};
              u.recipients[0].state = job::RecipientState::kFailed;
              u.recipients[0].reason = "cancelled";
              return u;
            }};
  JobEdit untouched{.seq = jobs[1].seq, .apply = [](const job::Job&) { return std::optional<JobUpdate>(); }};
  JobEdit missing{.seq = 999, .apply = [](const job::Job&) { return std::optional<JobUpdate>(JobUpdate{}); }};
  JobEdit* edits[] = {&e, &untouched, &missing};
  s->commit(Commit{.updates = {&d, 1}, .edits = edits});
  EXPECT_EQ(seen_attempts, 1);
  EXPECT_TRUE(e.found && e.result);
  EXPECT_TRUE(untouched.found);
  EXPECT_FALSE(untouched.result);
  EXPECT_FALSE(missing.found);
  auto j = s->find(jobs[0].ref);
  ASSERT_TRUE(j);
  EXPECT_EQ(j->recipients[0].reason, "cancelled");
  EXPECT_EQ(j->completed, 3000);
  EXPECT_EQ(s->counts().failed, 1);
  EXPECT_EQ(s->counts().queued, 1);
  auto due = s->claim_due(kLocalOwner, 6'000'000, kDefaultLeaseMs, 10);  // the cancelled job is not due any more
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].ref, jobs[1].ref);
}

TEST(AdminStore, KeepsSuppressionsAndAddsBouncesWithTheOutcome) {
  test_support::TempDir dir;
  auto s = open_sqlite({dir.file("db"), false});
  EXPECT_TRUE(s->add_suppression({"a@x.zz", "manual", 100, 0, {}}));
  EXPECT_FALSE(s->add_suppression({"a@x.zz", "manual", 200, 0, {}}));
  auto jobs = insert_jobs(*s, 1);
  auto f = finished(jobs[0], job::RecipientState::kFailed);
  f.suppress = {{"r0@y.zz", "bounce", 300, 550, "5.1.1 user unknown"}};
  s->update({&f, 1});
  auto list = s->list_suppressions();
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0].address, "a@x.zz");
  EXPECT_EQ(list[0].created, 100);
  EXPECT_EQ(list[1].reason, "bounce");
  EXPECT_EQ(list[1].smtp_code, 550);
  EXPECT_EQ(list[1].smtp_reply, "5.1.1 user unknown");
  EXPECT_TRUE(s->remove_suppression("a@x.zz"));
  EXPECT_FALSE(s->remove_suppression("a@x.zz"));
  EXPECT_EQ(s->list_suppressions().size(), 1u);
}

TEST(AdminStore, KeepsThePauseAcrossARestart) {
  test_support::TempDir dir;
  {
    auto s = open_sqlite({dir.file("db"), false});
    EXPECT_FALSE(s->setting("paused"));
    s->put_setting("paused", "1");
    s->put_setting("paused", "0");
    s->put_setting("paused", "1");
  }
  auto s = open_sqlite({dir.file("db"), false});
  EXPECT_EQ(s->setting("paused").value_or(""), "1");
}

TEST(AdminStore, MigratesAVersion3DatabaseToTheAdminSchema) {
  test_support::TempDir dir;
  std::string path = dir.file("db");
  job::Job j = make_job(1000);
  {
    auto s = open_sqlite({path, false});
    job::Job* p = &j;
    s->insert({&p, 1});
  }
  // Back to version 3 as that release left it: without the admin tables (nor the webhooks' of version 5).
  raw_exec(path,
           "DROP TABLE attempts; DROP TABLE suppressions; DROP TABLE settings; DROP TABLE webhook_outbox; "
           "ALTER TABLE jobs DROP COLUMN callback_url; PRAGMA user_version=3;");
  ASSERT_EQ(raw_integer(path, "PRAGMA user_version"), 3);
  {
    auto s = open_sqlite({path, false});
    EXPECT_TRUE(s->find(j.ref));
    auto d = test_support::deferral(j, 5'000'000);
    d.attempts = {{"r0@y.zz", 1500, 451, "4.3.0 later", ""}};
    s->update({&d, 1});
    EXPECT_EQ(s->attempts(j.seq).size(), 1u);
    s->put_setting("paused", "1");
    EXPECT_TRUE(s->add_suppression({"a@x.zz", "manual", 1, 0, {}}));
  }
  EXPECT_EQ(raw_integer(path, "PRAGMA user_version"), sqlite_schema_version());
  EXPECT_EQ(sqlite_schema_version(), 5);  // 4: the admin tables, 5: webhooks
  EXPECT_EQ(raw_integer(path, "SELECT count(*) FROM sqlite_master WHERE name IN ('attempts','suppressions','settings')"),
            3);
}
