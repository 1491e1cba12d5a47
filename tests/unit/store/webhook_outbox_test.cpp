// The store's webhook outbox: the commit that completes a job with a callback_url writes its
// event in the same transaction; the schema step that adds it (version 4) migrates old stores.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <nlohmann/json.hpp>

#include "../../support/temp_dir.hpp"
#include "raw_sqlite.hpp"
#include "test_jobs.hpp"
#include "websmtp/service/status.hpp"
#include "websmtp/store/store.hpp"

using namespace websmtp;
using namespace websmtp::store;
using websmtp::test_support::deferral;
using websmtp::test_support::delivered;
using websmtp::test_support::kT0;
using websmtp::test_support::make_job;

namespace {

void insert(Store& s, job::Job& j) {
  job::Job* p = &j;
  s.insert(std::span<job::Job* const>(&p, 1));
}

}  // namespace

TEST(WebhookOutbox, CompletingCommitWritesOneEventWithThePublicStatus) {
  test_support::TempDir dir;
  auto s = open_sqlite({dir.file("db")});
  EXPECT_TRUE(s->has_webhook_outbox());
  job::Job plain = make_job();
  job::Job hooked = make_job();
  hooked.callback_url = "https://hooks.example.com/in";
  insert(*s, plain);
  insert(*s, hooked);
  EXPECT_TRUE(s->webhook_due(INT64_MAX, 10, 0).empty());

  // A deferral writes nothing; the completing outcome writes the event, once.
  JobUpdate d = deferral(hooked, kT0 + 1000);
  s->update(std::span<const JobUpdate>(&d, 1));
  EXPECT_TRUE(s->webhook_due(INT64_MAX, 10, 0).empty());
  std::vector<JobUpdate> done = {delivered(plain), delivered(hooked)};
  s->update(done);
  s->update(std::span<const JobUpdate>(&done[1], 1));  // a repeated completion adds nothing

  auto due = s->webhook_due(kT0, 10, 0);
  ASSERT_EQ(due.size(), 1u);
  const auto& e = due[0];
  EXPECT_EQ(e.job_ref, hooked.ref);
  EXPECT_EQ(e.url, "https://hooks.example.com/in");
  EXPECT_EQ(e.attempts, 0);
  EXPECT_EQ(e.created, kT0 / 1000);
  EXPECT_EQ(e.next_at_ms, kT0);
  auto body = nlohmann::json::parse(e.body);
  EXPECT_EQ(body["id"], e.id);
  EXPECT_EQ(body["type"], "job.completed");
  auto status = s->find(hooked.ref);
  ASSERT_TRUE(status);
  EXPECT_EQ(body["data"].dump(), service::status_text(*status));  // what GET /mail/status answers
  EXPECT_EQ(s->webhook_next_at(), kT0);

  // A failed attempt moves it; a delivered one removes it.
  s->webhook_failed(e.id, 1, kT0 + 10'000);
  EXPECT_TRUE(s->webhook_due(kT0 + 9'999, 10, 0).empty());
  auto again = s->webhook_due(kT0 + 10'000, 10, 0);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].id, e.id);
  EXPECT_EQ(again[0].body, e.body);  // the same bytes on every attempt
  EXPECT_EQ(again[0].attempts, 1);
  s->webhook_delivered(e.id);
  EXPECT_TRUE(s->webhook_due(INT64_MAX, 10, 0).empty());
  EXPECT_FALSE(s->webhook_next_at());
}

TEST(WebhookOutbox, EventSurvivesReopen) {
  test_support::TempDir dir;
  std::string id;
  {
    auto s = open_sqlite({dir.file("db")});
    job::Job j = make_job();
    j.callback_url = "http://127.0.0.1:9/hook";
    insert(*s, j);
    JobUpdate u = delivered(j);
    s->update(std::span<const JobUpdate>(&u, 1));
    auto due = s->webhook_due(INT64_MAX, 10, 0);
    ASSERT_EQ(due.size(), 1u);
    id = due[0].id;
  }
  auto s = open_sqlite({dir.file("db")});
  auto due = s->webhook_due(INT64_MAX, 10, 0);
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].id, id);
}

// Schema version 3 exactly as the binaries before webhooks left it (frozen here on purpose).
constexpr const char* kVersion3Ddl = R"sql(
CREATE TABLE jobs(
  seq INTEGER PRIMARY KEY, ref TEXT NOT NULL UNIQUE, submitted INTEGER NOT NULL,
  completed INTEGER NOT NULL DEFAULT 0, started INTEGER NOT NULL DEFAULT 0, outcome INTEGER NOT NULL DEFAULT 0,
  next_at INTEGER, sender TEXT NOT NULL, message BLOB, recipients TEXT NOT NULL, idem_key TEXT, request_hash TEXT,
  batch INTEGER, submitted_by TEXT);
CREATE INDEX jobs_due ON jobs(next_at, seq) WHERE next_at IS NOT NULL;
CREATE INDEX jobs_done ON jobs(completed) WHERE outcome <> 0;
CREATE UNIQUE INDEX jobs_idem ON jobs(idem_key) WHERE idem_key IS NOT NULL;
CREATE INDEX jobs_batch ON jobs(batch) WHERE batch IS NOT NULL;
CREATE TABLE api_keys(id TEXT PRIMARY KEY, name TEXT NOT NULL, type TEXT NOT NULL, prefix TEXT NOT NULL,
  hash TEXT NOT NULL UNIQUE, policy TEXT NOT NULL, created INTEGER NOT NULL, last_used INTEGER NOT NULL DEFAULT 0,
  revoked INTEGER NOT NULL DEFAULT 0);
INSERT INTO jobs(seq, ref, submitted, next_at, sender, message, recipients)
  VALUES(1, '0190b3c4-0000-7000-8000-000000000001', 1700000000, 1700000000000, 'a@b.cc', 'm', '[{"a":"r@y.zz"}]');
PRAGMA user_version=3;
)sql";

TEST(WebhookOutbox, MigrationStepAddsCallbackUrlAndOutbox) {
  test_support::TempDir dir;
  test_support::raw_exec(dir.file("db"), "PRAGMA journal_mode=WAL");
  test_support::raw_exec(dir.file("db"), kVersion3Ddl);
  auto s = open_sqlite({dir.file("db")});
  ASSERT_GE(sqlite_schema_version(), 4);
  // The old job is there, without a callback; completing it writes no event.
  auto old = s->find("0190b3c4-0000-7000-8000-000000000001");
  ASSERT_TRUE(old);
  JobUpdate u = delivered(*old);
  s->update(std::span<const JobUpdate>(&u, 1));
  EXPECT_TRUE(s->webhook_due(INT64_MAX, 10, 0).empty());
  // A new job's callback goes through the migrated schema.
  job::Job j = make_job();
  j.callback_url = "https://hooks.example.com/";
  insert(*s, j);
  JobUpdate v = delivered(j);
  s->update(std::span<const JobUpdate>(&v, 1));
  EXPECT_EQ(s->webhook_due(INT64_MAX, 10, 0).size(), 1u);
}
