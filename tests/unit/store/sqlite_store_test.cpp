#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>

#include "../../support/temp_dir.hpp"
#include "test_jobs.hpp"
#include "websmtp/common/uuid.hpp"
#include "websmtp/job/json.hpp"
#include "websmtp/store/store.hpp"

using namespace websmtp;
using namespace websmtp::store;
using websmtp::test_support::make_job;
using websmtp::test_support::ptrs_of;
using websmtp::test_support::seqs_of;

namespace {

// Raw access to a database file, as another program (or an older websmtpd) would have it.
class RawDb {
 public:
  explicit RawDb(const std::string& path) { EXPECT_EQ(sqlite3_open(path.c_str(), &db_), SQLITE_OK); }
  ~RawDb() { sqlite3_close(db_); }
  void exec(const std::string& sql) {
    char* err = nullptr;
    EXPECT_EQ(sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err), SQLITE_OK) << (err ? err : "") << "\n" << sql;
    sqlite3_free(err);
  }
  std::int64_t integer(const std::string& sql) {
    sqlite3_stmt* st = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db_, sql.c_str(), -1, &st, nullptr), SQLITE_OK) << sqlite3_errmsg(db_);
    std::int64_t v = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
    sqlite3_finalize(st);
    return v;
  }

 private:
  sqlite3* db_ = nullptr;
};

// The schema exactly as the releases before versioning created it (schema version 1; they
// left user_version at 0). Frozen here on purpose: it is what databases in the field hold.
constexpr const char* kVersion1Ddl = R"sql(
CREATE TABLE IF NOT EXISTS jobs(
  seq INTEGER PRIMARY KEY,
  ref TEXT NOT NULL UNIQUE,
  submitted INTEGER NOT NULL,
  completed INTEGER NOT NULL DEFAULT 0,
  started INTEGER NOT NULL DEFAULT 0,
  outcome INTEGER NOT NULL DEFAULT 0,
  next_at INTEGER,
  sender TEXT NOT NULL,
  message BLOB,
  recipients TEXT NOT NULL,
  idem_key TEXT,
  request_hash TEXT
);
CREATE INDEX IF NOT EXISTS jobs_due ON jobs(next_at, seq) WHERE next_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_done ON jobs(completed) WHERE outcome <> 0;
CREATE UNIQUE INDEX IF NOT EXISTS jobs_idem ON jobs(idem_key) WHERE idem_key IS NOT NULL;
)sql";

// Writes a version-1 database the way the old binary did (WAL, rows as it wrote them):
// seq 1 pending (never attempted, with an Idempotency-Key), 2 deferred until t=2000 s,
// 3 delivered (message dropped), 4 failed.
void write_version1_db(const std::string& path, int user_version) {
  RawDb db(path);
  db.exec("PRAGMA journal_mode=WAL");
  db.exec(kVersion1Ddl);
  if (user_version) db.exec("PRAGMA user_version=" + std::to_string(user_version));
  job::Recipient queued{.address = "q@y.zz"};
  job::Recipient deferred{.address = "d@y.zz",
                          .state = job::RecipientState::kDeferred,
                          .attempts = 1,
                          .smtp_code = 451,
                          .smtp_reply = "4.3.0 later",
                          .time = 1000,
                          .next_attempt = 2000};
  job::Recipient delivered{.address = "ok@y.zz",
                           .state = job::RecipientState::kDelivered,
                           .attempts = 1,
                           .smtp_code = 250,
                           .smtp_reply = "2.0.0 ok",
                           .time = 1001};
  job::Recipient failed{.address = "no@y.zz",
                        .state = job::RecipientState::kFailed,
                        .attempts = 1,
                        .smtp_code = 550,
                        .smtp_reply = "5.1.1 unknown",
                        .time = 1001,
                        .reason = "rejected"};
  auto row = [&](int seq, const char* ref, int started, int outcome, const char* next_at, const char* message,
                 const job::Recipient& r, const char* idem) {
    db.exec(
        "INSERT INTO jobs(seq, ref, submitted, completed, started, outcome, next_at, sender, message, "
        "recipients, idem_key, request_hash) VALUES(" +
        std::to_string(seq) + ", '" + ref + "', 1000, " + (outcome ? "1001" : "0") + ", " + std::to_string(started) +
        ", " + std::to_string(outcome) + ", " + next_at + ", 'a@b.cc', " + message + ", '" +
        job::recipients_to_store({r}) + "', " + idem + ", " + (std::string(idem) == "NULL" ? "NULL" : "'h1'") + ")");
  };
  row(1, "00000000-0000-7000-8000-000000000001", 0, 0, "1000000", "CAST('msg-1' AS BLOB)", queued, "'key-1'");
  row(2, "00000000-0000-7000-8000-000000000002", 1, 0, "2000000", "CAST('msg-2' AS BLOB)", deferred, "NULL");
  row(3, "00000000-0000-7000-8000-000000000003", 1, 1, "NULL", "NULL", delivered, "NULL");
  row(4, "00000000-0000-7000-8000-000000000004", 1, 2, "NULL", "NULL", failed, "NULL");
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

TEST(SqliteStore, MigratesAVersion1DatabaseKeepingEveryJobDeliverable) {
  for (int user_version : {0, 1}) {  // as the old binary left it, and as stamped by hand
    SCOPED_TRACE(user_version);
    test_support::TempDir dir;
    write_version1_db(dir.file("db"), user_version);
    {
      auto s = open_sqlite({dir.file("db"), false});
      auto c = s->counts();
      EXPECT_EQ(c.queued, 1);
      EXPECT_EQ(c.deferred, 1);
      EXPECT_EQ(c.completed, 1);
      EXPECT_EQ(c.failed, 1);
      auto done = s->find("00000000-0000-7000-8000-000000000003");
      ASSERT_TRUE(done);
      EXPECT_EQ(done->recipients[0].smtp_reply, "2.0.0 ok");
      auto hit = s->find_idempotency("key-1");
      ASSERT_TRUE(hit);
      EXPECT_EQ(hit->ref, "00000000-0000-7000-8000-000000000001");
      EXPECT_EQ(hit->refs, std::vector<std::string>{hit->ref});

      // Due in order: the pending job now, the deferred one at its retry time.
      auto first = s->claim_due(kLocalOwner, 1'500'000, kDefaultLeaseMs, 10);
      ASSERT_EQ(first.size(), 1u);
      EXPECT_EQ(first[0].message, "msg-1");
      EXPECT_EQ(s->next_due_after(1'500'000), 2'000'000);
      auto second = s->claim_due(kLocalOwner, 2'000'000, kDefaultLeaseMs, 10);
      ASSERT_EQ(second.size(), 1u);
      EXPECT_EQ(second[0].message, "msg-2");
      EXPECT_EQ(second[0].recipients[0].attempts, 1);
      EXPECT_EQ(second[0].recipients[0].next_attempt, 2000);

      // Their outcomes commit on the migrated schema, and new jobs (batches too) go in.
      std::vector<JobUpdate> outcomes;
      for (auto* j : {&first[0], &second[0]}) {
        j->recipients[0].state = job::RecipientState::kDelivered;
        outcomes.push_back(
            {.seq = j->seq, .recipients = j->recipients, .completed = 2001, .outcome = Outcome::kDelivered});
      }
      s->update(outcomes);
      std::vector<job::Job> batch{make_job(3000), make_job(3000)};
      batch[0].idempotency_key = "key-2";
      auto p = ptrs_of(batch);
      std::vector<std::uint32_t> sizes{2};
      s->commit(Commit{.inserts = p, .batches = sizes});
      EXPECT_EQ(batch[0].seq, 5);
      EXPECT_EQ(s->counts().completed, 3);
      EXPECT_EQ(s->counts().queued, 2);
      EXPECT_EQ(s->purge_finished(1002).completed, 1);  // the old delivered job
    }
    RawDb raw(dir.file("db"));
    EXPECT_EQ(raw.integer("PRAGMA user_version"), sqlite_schema_version());
    EXPECT_EQ(raw.integer("SELECT count(*) FROM pragma_table_info('jobs') WHERE name='batch'"), 1);
  }
}

TEST(SqliteStore, OpensItsOwnSchemaWithoutMigrating) {
  test_support::TempDir dir;
  auto j = make_job(1000);
  {
    auto s = open_sqlite({dir.file("db"), false});
    job::Job* p = &j;
    s->insert({&p, 1});
  }
  EXPECT_EQ(RawDb(dir.file("db")).integer("PRAGMA user_version"), sqlite_schema_version());
  auto s = open_sqlite({dir.file("db"), false});
  EXPECT_TRUE(s->find(j.ref));
}

TEST(SqliteStore, RefusesADatabaseNewerThanItsSchema) {
  test_support::TempDir dir;
  write_version1_db(dir.file("db"), sqlite_schema_version() + 1);
  try {
    open_sqlite({dir.file("db"), false});
    FAIL() << "opened a database from a newer version";
  } catch (const StoreError& e) {
    EXPECT_NE(std::string(e.what()).find("newer"), std::string::npos) << e.what();
  }
  EXPECT_EQ(RawDb(dir.file("db")).integer("PRAGMA user_version"), sqlite_schema_version() + 1);  // untouched
}

TEST(SqliteStore, AFailedMigrationChangesNothing) {
  test_support::TempDir dir;
  write_version1_db(dir.file("db"), 0);
  RawDb(dir.file("db")).exec("CREATE TABLE jobs_batch(x)");  // the name version 2's index needs
  EXPECT_THROW(open_sqlite({dir.file("db"), false}), StoreError);
  RawDb raw(dir.file("db"));
  EXPECT_EQ(raw.integer("PRAGMA user_version"), 0);
  EXPECT_EQ(raw.integer("SELECT count(*) FROM pragma_table_info('jobs') WHERE name='batch'"), 0);
  raw.exec("DROP TABLE jobs_batch");
  auto s = open_sqlite({dir.file("db"), false});  // and the next start succeeds
  EXPECT_EQ(s->counts().queued, 1);
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

TEST(SqliteStore, ABatchIsFoundWholeByItsIdempotencyKey) {
  test_support::TempDir dir;
  auto s = open_sqlite({dir.file("db"), false});
  std::vector<job::Job> jobs{make_job(100), make_job(100), make_job(100), make_job(100), make_job(100)};
  jobs[0].idempotency_key = "single";
  jobs[0].request_hash = "h0";
  jobs[1].idempotency_key = "batch";
  jobs[1].request_hash = "hb";
  jobs[2].idempotency_key = "ignored";  // not the first of its batch
  auto p = ptrs_of(jobs);
  std::vector<std::uint32_t> sizes{1, 3, 1};
  s->commit(Commit{.inserts = p, .batches = sizes});
  EXPECT_EQ(s->find_idempotency("single")->refs, std::vector<std::string>{jobs[0].ref});
  auto hit = s->find_idempotency("batch");
  ASSERT_TRUE(hit);
  EXPECT_EQ(hit->ref, jobs[1].ref);
  EXPECT_EQ(hit->request_hash, "hb");
  EXPECT_EQ(hit->refs, (std::vector<std::string>{jobs[1].ref, jobs[2].ref, jobs[3].ref}));
  EXPECT_FALSE(s->find_idempotency("ignored"));
}

// The start-up count runs beside delivery, so it must count the store as it was when asked:
// jobs submitted while it runs are counted by the metrics' own deltas, not twice.
TEST(SqliteStore, CountsAsOfNowIgnoreLaterJobs) {
  test_support::TempDir dir;
  auto s = open_sqlite({dir.file("db"), false});
  auto a = test_support::make_job();
  job::Job* pa = &a;
  s->insert({&pa, 1});
  auto count = s->counts_as_of_now();
  auto b = test_support::make_job();
  job::Job* pb = &b;
  s->insert({&pb, 1});
  EXPECT_EQ(count().queued, 1);
  EXPECT_EQ(s->counts().queued, 2);
}
