// SQLite implementation of the job store: one row per job (WAL mode).
// Recipients live in a compact JSON column so a job is read and updated as one row.
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <iterator>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "websmtp/common/thread.hpp"
#include "store_sql.hpp"
#include "websmtp/common/uuid.hpp"
#include "websmtp/job/json.hpp"
#include "websmtp/store/store.hpp"
#include "websmtp/webhook/event.hpp"

namespace websmtp::store {

namespace {

class Db {
 public:
  Db(const std::string& path, bool sync_full) {
    int rc =
        sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
    if (rc != SQLITE_OK) {
      std::string msg = db_ ? sqlite3_errmsg(db_) : "out of memory";
      sqlite3_close(db_);
      db_ = nullptr;
      throw StoreError("cannot open " + path + ": " + msg);
    }
    sqlite3_busy_timeout(db_, 5000);
    exec("PRAGMA journal_mode=WAL");
    exec(sync_full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL");
    exec("PRAGMA temp_store=MEMORY");
    exec("PRAGMA cache_size=-8000");  // 8 MB page cache: RSS stays flat however many jobs wait
  }
  ~Db() { sqlite3_close_v2(db_); }
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;

  void exec(const char* sql) {
    char* err = nullptr;
    if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
      std::string msg = err ? err : sqlite3_errmsg(db_);
      sqlite3_free(err);
      throw StoreError(std::string("sqlite: ") + msg);
    }
  }
  // The first column of the first row (0 without one).
  std::int64_t query_int(const char* sql) {
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db_, sql, -1, &st, nullptr) != SQLITE_OK)
      throw StoreError(std::string("sqlite: ") + sqlite3_errmsg(db_));
    int rc = sqlite3_step(st);
    std::int64_t v = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) throw StoreError(std::string("sqlite: ") + sqlite3_errmsg(db_));
    return v;
  }
  sqlite3* get() const { return db_; }

 private:
  sqlite3* db_ = nullptr;
};

// A prepared statement, reset after each use.
class Stmt {
 public:
  Stmt(Db& db, const char* sql) : db_(db.get()) {
    if (sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt_, nullptr) != SQLITE_OK)
      throw StoreError(std::string("sqlite prepare: ") + sqlite3_errmsg(db_));
  }
  ~Stmt() { sqlite3_finalize(stmt_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  Stmt& bind(int i, std::int64_t v) { return check(sqlite3_bind_int64(stmt_, i, v)); }
  // Text and blobs are bound without a copy (SQLITE_STATIC): the bytes must stay valid until
  // the statement is reset, so bind only what outlives the ResetGuard (never a temporary).
  Stmt& bind(int i, std::string_view v) {
    return check(sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC));
  }
  Stmt& bind(int i, std::string&& v) = delete;
  Stmt& bind_blob(int i, std::string_view v) {
    return check(sqlite3_bind_blob(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC));
  }
  Stmt& bind_null(int i) { return check(sqlite3_bind_null(stmt_, i)); }
  // Steps once: true when a row is available.
  bool step() {
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    std::string msg = sqlite3_errmsg(db_);
    sqlite3_reset(stmt_);
    throw StoreError("sqlite: " + msg);
  }
  void run() {
    step();
    reset();
  }
  // Bindings are cleared too: a statically bound buffer is not left behind to dangle.
  void reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  std::int64_t i64(int col) const { return sqlite3_column_int64(stmt_, col); }
  bool is_null(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }
  std::string text(int col) const {
    auto p = reinterpret_cast<const char*>(sqlite3_column_blob(stmt_, col));
    return p ? std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(stmt_, col))) : std::string();
  }

 private:
  Stmt& check(int rc) {
    if (rc != SQLITE_OK) throw StoreError(std::string("sqlite bind: ") + sqlite3_errmsg(db_));
    return *this;
  }
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
};

// Resets a statement however the scope is left.
struct ResetGuard {
  Stmt& s;
  ~ResetGuard() { s.reset(); }
};

// One process per database file: an exclusive POSIX lock on `<db>.lock`, held while the store
// is open. The kernel drops it when the process dies, however it dies, so a restart after
// kill -9 never finds a stale lock. (POSIX locks belong to the process: a second store object
// on the same file inside one process is not refused, which tests that simulate a crash by
// abandoning a store rely on.)
class FileLock {
 public:
  explicit FileLock(const std::string& db_path) : path_(db_path + ".lock") {
    fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd_ < 0) throw StoreError("cannot open " + path_ + ": " + std::strerror(errno));
    struct flock fl {};
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    if (::fcntl(fd_, F_SETLK, &fl) == 0) return;
    int err = errno;
    std::string holder;
    if (err == EAGAIN || err == EACCES) {
      struct flock probe {};
      probe.l_type = F_WRLCK;
      probe.l_whence = SEEK_SET;
      if (::fcntl(fd_, F_GETLK, &probe) == 0 && probe.l_type != F_UNLCK)
        holder = " (pid " + std::to_string(probe.l_pid) + ")";
    }
    ::close(fd_);
    if (err == EAGAIN || err == EACCES)
      throw StoreError("the store " + db_path + " is in use by another websmtpd" + holder +
                       "; one process per DATA_DIR: stop it, or give this one another DATA_DIR");
    throw StoreError("cannot lock " + path_ + ": " + std::strerror(err));
  }
  ~FileLock() { ::close(fd_); }
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

 private:
  std::string path_;
  int fd_ = -1;
};

// The schema, as an ordered list of forward migrations. Version 1 is the schema of the
// releases before versioning (they left user_version at 0); a migration never changes once
// released: later changes are new entries.
constexpr const char* kSchemaV1 = R"sql(
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

// Version 2: POST /mail/batch. The jobs of a batch after its first one name it (its seq) in
// `batch`; the first holds the batch's Idempotency-Key, so a replay finds every ref.
constexpr const char* kSchemaV2 = R"sql(
ALTER TABLE jobs ADD COLUMN batch INTEGER;
CREATE INDEX jobs_batch ON jobs(batch) WHERE batch IS NOT NULL;
)sql";

struct Migration {
  int version;
  const char* sql;
};
// Version 3: who submitted each job (status privacy), and API keys (hashes only).
constexpr const char* kSchemaV3 = R"sql(
ALTER TABLE jobs ADD COLUMN submitted_by TEXT;
CREATE TABLE api_keys(
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  type TEXT NOT NULL,
  prefix TEXT NOT NULL,
  hash TEXT NOT NULL UNIQUE,
  policy TEXT NOT NULL,
  created INTEGER NOT NULL,
  last_used INTEGER NOT NULL DEFAULT 0,
  revoked INTEGER NOT NULL DEFAULT 0
);
)sql";

// Version 4: the admin API. Every SMTP attempt per recipient (history; written with the
// attempt's outcome, deleted with the job), suppressed recipients, and gateway settings
// (the pause, which survives a restart).
constexpr const char* kSchemaV4 = R"sql(
CREATE TABLE attempts(
  seq INTEGER NOT NULL,
  address TEXT NOT NULL,
  time INTEGER NOT NULL,
  smtp_code INTEGER NOT NULL,
  smtp_reply TEXT NOT NULL,
  host TEXT NOT NULL
);
CREATE INDEX attempts_seq ON attempts(seq);
CREATE TABLE suppressions(
  address TEXT PRIMARY KEY,
  reason TEXT NOT NULL,
  created INTEGER NOT NULL,
  smtp_code INTEGER NOT NULL DEFAULT 0,
  smtp_reply TEXT NOT NULL DEFAULT ''
);
CREATE TABLE settings(
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
)sql";

// Version 5 (webhooks, a step of its own so that it can be renumbered when merged): the job's
// callback_url, and the outbox of job.completed events. An event is written by the commit that
// completes its job and leaves when it is delivered or given up.
constexpr const char* kSchemaV5Webhooks = R"sql(
ALTER TABLE jobs ADD COLUMN callback_url TEXT;
CREATE TABLE webhook_outbox(
  id TEXT PRIMARY KEY,
  job_ref TEXT NOT NULL,
  url TEXT NOT NULL,
  body TEXT NOT NULL,
  created INTEGER NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_at INTEGER NOT NULL
);
CREATE INDEX webhook_outbox_due ON webhook_outbox(next_at);
)sql";

constexpr Migration kMigrations[] = {{1, kSchemaV1}, {2, kSchemaV2}, {3, kSchemaV3}, {4, kSchemaV4},
                                     {5, kSchemaV5Webhooks}};
constexpr int kSchemaVersion = kMigrations[std::size(kMigrations) - 1].version;

// Brings the database to kSchemaVersion in one transaction (a failed migration changes
// nothing), or refuses a database written by a newer binary.
void migrate(Db& db, const std::string& path) {
  db.exec("BEGIN IMMEDIATE");
  int from = 0;
  try {
    from = static_cast<int>(db.query_int("PRAGMA user_version"));
    if (from == 0 && db.query_int("SELECT count(*) FROM sqlite_master WHERE type='table' AND name='jobs'") > 0)
      from = 1;  // written before the schema was versioned
    if (from > kSchemaVersion)
      throw StoreError("the store " + path + " has schema version " + std::to_string(from) +
                       ", newer than this websmtpd knows (" + std::to_string(kSchemaVersion) +
                       "): run the newer websmtpd that wrote it, or restore a backup");
    for (const auto& m : kMigrations)
      if (m.version > from) db.exec(m.sql);
    if (from != kSchemaVersion) db.exec(("PRAGMA user_version=" + std::to_string(kSchemaVersion)).c_str());
    db.exec("COMMIT");
  } catch (const StoreError& e) {
    try {
      db.exec("ROLLBACK");
    } catch (const StoreError&) {
    }
    if (from > kSchemaVersion) throw;
    throw StoreError("cannot migrate the store " + path + " from schema version " + std::to_string(from) + " to " +
                     std::to_string(kSchemaVersion) + " (nothing was changed): " + e.what());
  }
  if (from != kSchemaVersion && from != 0)
    spdlog::info("store {}: schema migrated from version {} to {}", path, from, kSchemaVersion);
}

// The claims this store object holds (see store.hpp: SQLite keeps them in memory).
class Claims {
 public:
  Claims() { by_seq_.reserve(4096); }

  // Claims `seq` for `owner` unless someone holds it; true when it did.
  bool try_claim(std::int64_t seq, std::string_view owner) {
    auto o = owner_index(owner);
    if (!by_seq_.emplace(seq, o).second) return false;
    ++owners_[o].held;
    return true;
  }
  // Drops the claim on `seq`, whoever holds it (an outcome was committed).
  void drop(std::int64_t seq) {
    auto it = by_seq_.find(seq);
    if (it == by_seq_.end()) return;
    --owners_[it->second].held;
    by_seq_.erase(it);
  }
  // Drops the claim on `seq` if `owner` holds it.
  void drop(std::int64_t seq, std::string_view owner) {
    auto it = by_seq_.find(seq);
    if (it != by_seq_.end() && owners_[it->second].name == owner) drop(seq);
  }
  std::size_t held_by(std::string_view owner) {
    for (const auto& o : owners_)
      if (o.name == owner) return o.held;
    return 0;
  }

 private:
  struct Owner {
    std::string name;
    std::size_t held = 0;
  };
  std::uint32_t owner_index(std::string_view owner) {
    for (std::size_t i = 0; i < owners_.size(); ++i)
      if (owners_[i].name == owner) return static_cast<std::uint32_t>(i);
    owners_.push_back({std::string(owner)});
    return static_cast<std::uint32_t>(owners_.size() - 1);
  }
  std::unordered_map<std::int64_t, std::uint32_t> by_seq_;  // seq -> index in owners_
  std::vector<Owner> owners_;                               // a node has one; tests may use several
};

class SqliteStore final : public Store {
 public:
  explicit SqliteStore(const SqliteOptions& o)
      : path_(o.path),
        lock_(o.path),
        writer_(o.path, o.synchronous_full),
        reader_(o.path, o.synchronous_full),
        init_(writer_, o.path),
        insert_(writer_,
                "INSERT INTO jobs(ref, submitted, next_at, sender, message, recipients, idem_key, request_hash, batch, "
                "submitted_by, callback_url) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"),
        update_(writer_,
                "UPDATE jobs SET recipients=?2, started=?3, completed=?4, next_at=?5, outcome=?6, "
                "message=CASE WHEN ?6 <> 0 THEN NULL ELSE message END WHERE seq=?1"),
        release_idem_(writer_, "UPDATE jobs SET idem_key=NULL WHERE idem_key=?1 AND submitted < ?2"),
        begin_(writer_, "BEGIN IMMEDIATE"),
        commit_(writer_, "COMMIT"),
        rollback_(writer_, "ROLLBACK"),
        // Purges go in slices of kPurgeSlice rows so one never holds the write lock long
        // (a million expired jobs would otherwise stall every submit for seconds).
        purge_slice_(writer_,
                     "SELECT seq, outcome FROM jobs WHERE outcome <> 0 AND completed < ?1 ORDER BY completed LIMIT ?2"),
        purge_(writer_, "DELETE FROM jobs WHERE seq = ?1"),
        purge_attempts_(writer_, "DELETE FROM attempts WHERE seq = ?1"),
        insert_attempt_(writer_,
                        "INSERT INTO attempts(seq, address, time, smtp_code, smtp_reply, host) "
                        "VALUES(?1, ?2, ?3, ?4, ?5, ?6)"),
        insert_suppression_(writer_,
                            "INSERT OR IGNORE INTO suppressions(address, reason, created, smtp_code, smtp_reply) "
                            "VALUES(?1, ?2, ?3, ?4, ?5)"),
        edit_read_(writer_,
                   "SELECT seq, ref, submitted, completed, started, sender, recipients, submitted_by FROM jobs "
                   "WHERE seq=?1"),
        find_(reader_,
              "SELECT seq, ref, submitted, completed, started, sender, recipients, submitted_by FROM jobs WHERE ref=?1"),
        find_seq_(reader_,
                  "SELECT seq, ref, submitted, completed, started, sender, recipients, submitted_by FROM jobs "
                  "WHERE seq=?1"),
        due_(reader_,
             "SELECT seq FROM jobs WHERE next_at IS NOT NULL AND next_at <= ?1 ORDER BY next_at, seq LIMIT ?2"),
        // Stepped only as far as needed: claimed rows are skipped on the way.
        due_all_(reader_, "SELECT seq FROM jobs WHERE next_at IS NOT NULL AND next_at <= ?1 ORDER BY next_at, seq"),
        load_(reader_,
              "SELECT seq, ref, submitted, completed, started, sender, recipients, submitted_by, message, idem_key "
              "FROM jobs WHERE seq=?1 AND outcome = 0 AND next_at <= ?2"),
        next_due_(reader_, "SELECT min(next_at) FROM jobs WHERE next_at IS NOT NULL AND next_at > ?1"),
        // Never-started jobs are due since their submit time, so they lead the jobs_due index.
        oldest_(reader_,
                "SELECT submitted, seq FROM jobs WHERE next_at IS NOT NULL AND started = 0 ORDER BY next_at, seq "
                "LIMIT ?1"),
        idem_(reader_, "SELECT seq, ref, request_hash, submitted FROM jobs WHERE idem_key=?1"),
        batch_refs_(reader_, "SELECT ref FROM jobs WHERE batch=?1 ORDER BY seq"),
        checkpointer_(o.path, o.synchronous_full) {
    // Checkpoints copy the WAL into the database file. SQLite runs them inside the commit
    // that crosses the threshold, which would stall the group commit (and every client
    // waiting on it); a separate connection does them instead, woken by the WAL hook.
    writer_.exec("PRAGMA wal_autocheckpoint=0");
    writer_.exec("PRAGMA journal_size_limit=67108864");
    sqlite3_wal_hook(writer_.get(), &SqliteStore::on_wal, this);
    checkpoint_thread_ = std::thread([this] {
      name_this_thread("ws-checkpoint");
      checkpoint_loop();
    });
  }

  ~SqliteStore() override {
    {
      std::lock_guard lock(ckpt_mu_);
      ckpt_stop_ = true;
    }
    ckpt_cv_.notify_one();
    checkpoint_thread_.join();
    sqlite3_wal_hook(writer_.get(), nullptr, nullptr);
  }

  void commit(const Commit& c) override {
    std::lock_guard lock(write_mu_);
    bool claimed = false;
    begin_.run();
    try {
      write_inserts(c);
      write_updates(c.updates);
      write_edits(c.edits);
      // Claimed before COMMIT: the rows become visible to claim_due() already held.
      if (!c.owner.empty() && !c.inserts.empty()) {
        std::lock_guard cl(claims_mu_);
        for (job::Job* j : c.inserts) claims_.try_claim(j->seq, c.owner);
        claimed = true;
      }
      commit_.run();
    } catch (...) {
      try {
        if (!sqlite3_get_autocommit(writer_.get())) rollback_.run();
      } catch (...) {
      }
      if (claimed) {
        std::lock_guard cl(claims_mu_);
        for (job::Job* j : c.inserts) claims_.drop(j->seq);
      }
      throw;
    }
    // Released after COMMIT: claim_due() reads the due rows under claims_mu_, so it either
    // still sees the claim or already sees the committed outcome, never the job's old state
    // unclaimed.
    if (!c.updates.empty()) {
      std::lock_guard cl(claims_mu_);
      for (const auto& u : c.updates) claims_.drop(u.seq);
    }
  }

  Counts purge_finished(std::int64_t before_s) override {
    std::lock_guard lock(write_mu_);
    Counts c;
    std::vector<std::int64_t> seqs;
    {
      ResetGuard g{purge_slice_};
      purge_slice_.bind(1, before_s).bind(2, kPurgeSlice);
      while (purge_slice_.step()) {
        seqs.push_back(purge_slice_.i64(0));
        (purge_slice_.i64(1) == static_cast<int>(Outcome::kDelivered) ? c.completed : c.failed) += 1;
      }
    }
    if (seqs.empty()) return c;
    begin_.run();
    try {
      for (auto seq : seqs) {
        ResetGuard g{purge_};
        purge_.bind(1, seq).step();
        ResetGuard ga{purge_attempts_};
        purge_attempts_.bind(1, seq).step();
      }
      commit_.run();
    } catch (...) {
      if (!sqlite3_get_autocommit(writer_.get())) rollback_.run();
      throw;
    }
    return c;
  }

  // A lease here never expires: no other process can hold the store (see store.hpp).
  std::vector<job::Job> claim_due(std::string_view owner, std::int64_t now_ms, std::int64_t /*lease_ms*/,
                                  std::size_t limit) override {
    std::vector<job::Job> out;
    std::vector<std::int64_t> seqs, gone;
    try {
      while (out.size() < limit) {
        std::size_t want = limit - out.size();
        seqs.clear();
        {
          std::lock_guard cl(claims_mu_);
          std::lock_guard rl(read_mu_);
          ResetGuard g{due_all_};
          due_all_.bind(1, now_ms);
          while (seqs.size() < want && due_all_.step()) {
            std::int64_t seq = due_all_.i64(0);
            if (claims_.try_claim(seq, owner)) seqs.push_back(seq);
          }
        }
        bool exhausted = seqs.size() < want;
        // Bodies are read outside claims_mu_ (the group commit waits on it): the rows are ours.
        gone.clear();
        {
          std::lock_guard rl(read_mu_);
          out.reserve(out.size() + seqs.size());
          for (auto seq : seqs) {
            ResetGuard g{load_};
            load_.bind(1, seq).bind(2, now_ms);
            if (load_.step())
              out.push_back(row_to_job(load_, true));
            else
              gone.push_back(seq);  // finished meanwhile by someone not holding the claim
          }
        }
        seqs.clear();
        if (!gone.empty()) release(owner, gone);
        if (exhausted) break;
      }
    } catch (...) {
      std::lock_guard cl(claims_mu_);
      for (const auto& j : out) claims_.drop(j.seq, owner);
      for (auto seq : seqs) claims_.drop(seq, owner);
      throw;
    }
    return out;
  }

  std::size_t renew(std::string_view owner, std::int64_t, std::int64_t) override {
    std::lock_guard cl(claims_mu_);
    return claims_.held_by(owner);
  }

  void release(std::string_view owner, std::span<const std::int64_t> seqs) override {
    std::lock_guard cl(claims_mu_);
    for (auto seq : seqs) claims_.drop(seq, owner);
  }

  std::optional<job::Job> find(std::string_view ref) override {
    std::lock_guard lock(read_mu_);
    ResetGuard g{find_};
    find_.bind(1, ref);
    if (!find_.step()) return std::nullopt;
    return row_to_job(find_, false);
  }

  std::optional<job::Job> find_seq(std::int64_t seq) override {
    std::lock_guard lock(read_mu_);
    ResetGuard g{find_seq_};
    find_seq_.bind(1, seq);
    if (!find_seq_.step()) return std::nullopt;
    return row_to_job(find_seq_, false);
  }

  std::vector<std::int64_t> due(std::int64_t now_ms, std::size_t limit) override {
    std::lock_guard lock(read_mu_);
    ResetGuard g{due_};
    due_.bind(1, now_ms).bind(2, static_cast<std::int64_t>(limit));
    std::vector<std::int64_t> out;
    while (due_.step()) out.push_back(due_.i64(0));
    return out;
  }

  std::vector<job::Job> load(std::span<const std::int64_t> seqs, std::int64_t now_ms) override {
    std::lock_guard lock(read_mu_);
    std::vector<job::Job> out;
    out.reserve(seqs.size());
    for (auto seq : seqs) {
      ResetGuard g{load_};
      load_.bind(1, seq).bind(2, now_ms);
      if (load_.step()) out.push_back(row_to_job(load_, true));
    }
    return out;
  }

  std::optional<std::int64_t> next_due_after(std::int64_t now_ms) override {
    std::lock_guard lock(read_mu_);
    ResetGuard g{next_due_};
    next_due_.bind(1, now_ms);
    if (next_due_.step() && !next_due_.is_null(0)) return next_due_.i64(0);
    return std::nullopt;
  }

  Counts counts() override { return counts_as_of_now()(); }

  std::function<Counts()> counts_as_of_now() override {
    // A scan of every row, on its own connection (WAL readers do not block each other, so the
    // dispatcher's and status reads go on meanwhile), in a read transaction begun here: its
    // snapshot is the database as it is now.
    auto db = std::make_shared<Db>(path_, false);
    db->exec("BEGIN");
    db->query_int("SELECT count(*) FROM (SELECT 1 FROM jobs LIMIT 1)");  // the first read pins the snapshot
    return [db] {
      Stmt counts(*db, "SELECT started, outcome, count(*) FROM jobs GROUP BY started, outcome");
      Counts c;
      while (counts.step()) sql::add_count(c, counts.i64(0) != 0, static_cast<Outcome>(counts.i64(1)), counts.i64(2));
      counts.reset();
      db->exec("COMMIT");
      return c;
    };
  }

  std::optional<std::int64_t> oldest_queued_submitted(std::span<const std::int64_t> attempting = {}) override {
    std::lock_guard lock(read_mu_);
    ResetGuard g{oldest_};
    // At most one row past the jobs being attempted (they lead the order, being the oldest due).
    oldest_.bind(1, static_cast<std::int64_t>(attempting.size() + 1));
    while (oldest_.step())
      if (std::find(attempting.begin(), attempting.end(), oldest_.i64(1)) == attempting.end()) return oldest_.i64(0);
    return std::nullopt;
  }

  std::optional<IdempotencyHit> find_idempotency(std::string_view key) override {
    std::lock_guard lock(read_mu_);
    IdempotencyHit hit;
    std::int64_t seq;
    {
      ResetGuard g{idem_};
      idem_.bind(1, key);
      if (!idem_.step()) return std::nullopt;
      seq = idem_.i64(0);
      hit = IdempotencyHit{idem_.text(1), idem_.text(2), idem_.i64(3), {}};
    }
    hit.refs.push_back(hit.ref);
    ResetGuard g{batch_refs_};
    batch_refs_.bind(1, seq);
    while (batch_refs_.step()) hit.refs.push_back(batch_refs_.text(0));
    return hit;
  }

 private:
  void write_inserts(const Commit& c) {
    std::size_t at = 0;
    for (std::size_t run = 0; at < c.inserts.size(); ++run) {
      std::size_t n = run < c.batches.size() ? std::max<std::uint32_t>(1, c.batches[run]) : 1;
      std::int64_t first_seq = 0;
      for (std::size_t k = 0; k < n && at < c.inserts.size(); ++k, ++at) {
        insert_one(*c.inserts[at], first_seq);
        if (k == 0) first_seq = c.inserts[at]->seq;
      }
    }
  }

  // `first_seq`: the seq of the first job of j's batch, 0 when j is the first (or alone).
  void insert_one(job::Job& j, std::int64_t first_seq) {
    bool keyed = first_seq == 0 && !j.idempotency_key.empty();
    if (keyed) {
      // A key is honoured for 24 h; an older job holding it gives it up.
      ResetGuard g{release_idem_};
      release_idem_.bind(1, j.idempotency_key).bind(2, j.submitted - kIdempotencyWindowS).run();
    }
    std::string recipients = job::recipients_to_store(j.recipients);
    ResetGuard g{insert_};
    insert_.bind(1, j.ref).bind(2, j.submitted).bind(3, j.submitted * 1000).bind(4, j.sender);
    insert_.bind_blob(5, j.message).bind(6, recipients);
    if (keyed)
      insert_.bind(7, j.idempotency_key).bind(8, j.request_hash);
    else
      insert_.bind_null(7).bind_null(8);
    if (first_seq == 0)
      insert_.bind_null(9);
    else
      insert_.bind(9, first_seq);
    if (j.submitted_by.empty())
      insert_.bind_null(10);
    else
      insert_.bind(10, j.submitted_by);
    if (j.callback_url.empty())
      insert_.bind_null(11);
    else
      insert_.bind(11, j.callback_url);
    insert_.step();
    j.seq = sqlite3_last_insert_rowid(writer_.get());
  }

  void write_updates(std::span<const JobUpdate> updates) {
    for (const auto& u : updates) write_update(u);
  }

  void write_update(const JobUpdate& u) {
    {
      if (u.outcome != Outcome::kPending) write_webhook_event(u);
      std::string recipients = job::recipients_to_store(u.recipients);
      ResetGuard g{update_};
      update_.bind(1, u.seq).bind(2, recipients).bind(3, std::int64_t{u.started}).bind(4, u.completed);
      if (u.next_at_ms)
        update_.bind(5, *u.next_at_ms);
      else
        update_.bind_null(5);
      update_.bind(6, static_cast<std::int64_t>(u.outcome));
      update_.step();
    }
    for (const auto& a : u.attempts) {
      ResetGuard g{insert_attempt_};
      insert_attempt_.bind(1, u.seq).bind(2, a.address).bind(3, a.time).bind(4, std::int64_t{a.smtp_code});
      insert_attempt_.bind(5, a.smtp_reply).bind(6, a.host).step();
    }
    for (const auto& s : u.suppress) {
      ResetGuard g{insert_suppression_};
      insert_suppression_.bind(1, s.address).bind(2, s.reason).bind(3, s.created).bind(4, std::int64_t{s.smtp_code});
      insert_suppression_.bind(5, s.smtp_reply).step();
    }
  }

  // Read, changed and written back inside the commit's transaction: nothing else writes the
  // row in between (this connection is the only writer).
  void write_edits(std::span<JobEdit* const> edits) {
    for (JobEdit* e : edits) {
      e->found = false;
      e->result.reset();
      std::optional<job::Job> j;
      {
        ResetGuard g{edit_read_};
        edit_read_.bind(1, e->seq);
        if (edit_read_.step()) j = row_to_job(edit_read_, false);
      }
      if (!j) continue;
      e->found = true;
      e->result = e->apply(*j);
      if (e->result) {
        e->result->seq = e->seq;
        write_update(*e->result);
      }
    }
  }

  // ---- Admin API reads (the reader connection).
 public:
  std::vector<job::Job> list_jobs(JobFilter filter, std::int64_t before_seq, std::size_t limit) override {
    const char* where = sql::job_filter(filter);
    // No index per state: the scan walks the primary key downwards from the cursor, so a page
    // costs the rows it passes over; an index on the state would cost every submit and every
    // outcome a write for the sake of a rare operator's read.
    std::string sql =
        "SELECT seq, ref, submitted, completed, started, sender, recipients, submitted_by FROM jobs WHERE seq < ?1 "
        "AND (" +
        std::string(where) + ") ORDER BY seq DESC LIMIT ?2";
    // On a connection of its own: a page that passes over many rows must not hold up the
    // dispatcher's and the status reads (WAL readers do not block each other).
    std::lock_guard lock(admin_mu_);
    if (!admin_db_) admin_db_ = std::make_unique<Db>(path_, false);
    Stmt st(*admin_db_, sql.c_str());
    st.bind(1, before_seq > 0 ? before_seq : INT64_MAX).bind(2, static_cast<std::int64_t>(limit));
    std::vector<job::Job> out;
    ResetGuard g{st};
    while (st.step()) out.push_back(row_to_job(st, false));
    return out;
  }

  std::optional<std::string> find_message(std::int64_t seq) override {
    std::lock_guard lock(read_mu_);
    Stmt st(reader_, "SELECT message FROM jobs WHERE seq=?1");
    ResetGuard g{st};
    st.bind(1, seq);
    if (!st.step() || st.is_null(0)) return std::nullopt;
    return st.text(0);
  }

  std::vector<AttemptRecord> attempts(std::int64_t seq) override {
    std::lock_guard lock(read_mu_);
    Stmt st(reader_, "SELECT address, time, smtp_code, smtp_reply, host FROM attempts WHERE seq=?1 ORDER BY rowid");
    ResetGuard g{st};
    st.bind(1, seq);
    std::vector<AttemptRecord> out;
    while (st.step())
      out.push_back({st.text(0), st.i64(1), static_cast<int>(st.i64(2)), st.text(3), st.text(4)});
    return out;
  }

  // ---- Suppressions and settings: rare writes, on the keys' connection.
  std::vector<SuppressionRecord> list_suppressions() override {
    std::lock_guard lock(keys_mu_);
    Stmt st(keys_db(), "SELECT address, reason, created, smtp_code, smtp_reply FROM suppressions ORDER BY address");
    ResetGuard g{st};
    std::vector<SuppressionRecord> out;
    while (st.step()) out.push_back({st.text(0), st.text(1), st.i64(2), static_cast<int>(st.i64(3)), st.text(4)});
    return out;
  }
  bool add_suppression(const SuppressionRecord& r) override {
    std::lock_guard lock(keys_mu_);
    Stmt st(keys_db(),
            "INSERT OR IGNORE INTO suppressions(address, reason, created, smtp_code, smtp_reply) "
            "VALUES(?1, ?2, ?3, ?4, ?5)");
    st.bind(1, r.address).bind(2, r.reason).bind(3, r.created).bind(4, std::int64_t{r.smtp_code});
    st.bind(5, r.smtp_reply).run();
    return sqlite3_changes(keys_db().get()) > 0;
  }
  bool remove_suppression(std::string_view address) override {
    std::lock_guard lock(keys_mu_);
    Stmt st(keys_db(), "DELETE FROM suppressions WHERE address=?1");
    st.bind(1, address).run();
    return sqlite3_changes(keys_db().get()) > 0;
  }
  std::optional<std::string> setting(std::string_view key) override {
    std::lock_guard lock(keys_mu_);
    Stmt st(keys_db(), "SELECT value FROM settings WHERE key=?1");
    ResetGuard g{st};
    st.bind(1, key);
    if (!st.step()) return std::nullopt;
    return st.text(0);
  }
  void put_setting(std::string_view key, std::string_view value) override {
    std::lock_guard lock(keys_mu_);
    Stmt st(keys_db(), "INSERT INTO settings(key, value) VALUES(?1, ?2) ON CONFLICT(key) DO UPDATE SET value=?2");
    st.bind(1, key).bind(2, value).run();
  }

  // A job with a callback_url that this update completes gets its job.completed event, in the
  // same transaction as the outcome (before the UPDATE: a job completes once).
  void write_webhook_event(const JobUpdate& u) {
    auto& o = outbox_;
    job::Job j;
    std::string url;
    {
      ResetGuard g{o.job};
      o.job.bind(1, u.seq);
      if (!o.job.step()) return;
      j.ref = o.job.text(0);
      j.submitted = o.job.i64(1);
      url = o.job.text(2);
    }
    j.started = true;
    j.completed = u.completed;
    j.recipients = u.recipients;
    const std::string id = new_uuid_v7(u.completed * 1000);
    const std::string body = webhook::completed_event_body(id, u.completed, j);
    ResetGuard g{o.insert};
    o.insert.bind(1, id).bind(2, j.ref).bind(3, url).bind(4, body).bind(5, u.completed).bind(6, u.completed * 1000);
    o.insert.step();
  }

 public:
  bool has_webhook_outbox() const override { return true; }
  // One process: its sender's threads share out the due events themselves (no claim).
  std::vector<WebhookEvent> webhook_due(std::int64_t now_ms, std::size_t limit, std::int64_t /*claim_ms*/) override {
    std::lock_guard lock(read_mu_);
    ResetGuard g{outbox_.due};
    outbox_.due.bind(1, now_ms).bind(2, static_cast<std::int64_t>(limit));
    std::vector<WebhookEvent> out;
    while (outbox_.due.step()) {
      auto& s = outbox_.due;
      out.push_back({s.text(0), s.text(1), s.text(2), s.text(3), s.i64(4), static_cast<int>(s.i64(5)), s.i64(6)});
    }
    return out;
  }
  std::optional<std::int64_t> webhook_next_at() override {
    std::lock_guard lock(read_mu_);
    ResetGuard g{outbox_.next};
    if (outbox_.next.step() && !outbox_.next.is_null(0)) return outbox_.next.i64(0);
    return std::nullopt;
  }
  void webhook_delivered(std::string_view id) override {
    std::lock_guard lock(write_mu_);
    ResetGuard g{outbox_.remove};
    outbox_.remove.bind(1, id).step();
  }
  void webhook_failed(std::string_view id, int attempts, std::int64_t next_at_ms) override {
    std::lock_guard lock(write_mu_);
    ResetGuard g{outbox_.retry};
    outbox_.retry.bind(1, id).bind(2, std::int64_t{attempts}).bind(3, next_at_ms).step();
  }

 private:
  // ---- API keys: a connection of their own (rare writes; SQLite's busy timeout orders them
  // with the group commit's).
 public:
  void insert_key(const ApiKeyRecord& k) override {
    std::lock_guard lock(keys_mu_);
    Stmt st(keys_db(), "INSERT INTO api_keys(id, name, type, prefix, hash, policy, created) VALUES(?1,?2,?3,?4,?5,?6,?7)");
    st.bind(1, k.id).bind(2, k.name).bind(3, k.type).bind(4, k.prefix).bind(5, k.hash).bind(6, k.policy_json);
    st.bind(7, k.created).run();
  }
  bool revoke_key(std::string_view id, std::int64_t now_s) override {
    std::lock_guard lock(keys_mu_);
    Stmt st(keys_db(), "UPDATE api_keys SET revoked=?2 WHERE id=?1 AND revoked=0");
    st.bind(1, id).bind(2, std::max<std::int64_t>(now_s, 1)).run();
    return sqlite3_changes(keys_db().get()) > 0;
  }
  void note_keys_used(std::span<const std::pair<std::string, std::int64_t>> used) override {
    if (used.empty()) return;
    std::lock_guard lock(keys_mu_);
    Db& db = keys_db();
    db.exec("BEGIN IMMEDIATE");
    try {
      Stmt st(db, "UPDATE api_keys SET last_used=max(last_used, ?2) WHERE id=?1");
      for (const auto& [id, t] : used) {
        st.bind(1, id).bind(2, t);
        st.run();
      }
      db.exec("COMMIT");
    } catch (...) {
      if (!sqlite3_get_autocommit(db.get())) db.exec("ROLLBACK");
      throw;
    }
  }
  std::vector<ApiKeyRecord> list_keys() override {
    std::lock_guard lock(keys_mu_);
    Stmt st(keys_db(),
            "SELECT id, name, type, prefix, hash, policy, created, last_used, revoked FROM api_keys ORDER BY created, id");
    std::vector<ApiKeyRecord> out;
    ResetGuard g{st};
    while (st.step()) {
      ApiKeyRecord k;
      k.id = st.text(0);
      k.name = st.text(1);
      k.type = st.text(2);
      k.prefix = st.text(3);
      k.hash = st.text(4);
      k.policy_json = st.text(5);
      k.created = st.i64(6);
      k.last_used = st.i64(7);
      k.revoked = st.i64(8);
      out.push_back(std::move(k));
    }
    return out;
  }

 private:
  Db& keys_db() {
    if (!keys_db_) keys_db_ = std::make_unique<Db>(path_, false);
    return *keys_db_;
  }

  static job::Job row_to_job(const Stmt& s, bool with_message) {
    job::Job j;
    j.seq = s.i64(0);
    j.ref = s.text(1);
    j.submitted = s.i64(2);
    j.completed = s.i64(3);
    j.started = s.i64(4) != 0;
    j.sender = s.text(5);
    j.recipients = job::recipients_from_store(s.text(6));
    j.submitted_by = s.text(7);
    if (with_message) {
      j.message = s.text(8);
      j.idempotency_key = s.text(9);
    }
    return j;
  }

  static int on_wal(void* self, sqlite3*, const char*, int pages) {
    if (pages >= kCheckpointPages) {
      auto* store = static_cast<SqliteStore*>(self);
      std::lock_guard lock(store->ckpt_mu_);
      store->ckpt_wanted_ = true;
      store->ckpt_cv_.notify_one();
    }
    return SQLITE_OK;
  }

  void checkpoint_loop() {
    std::unique_lock lock(ckpt_mu_);
    while (true) {
      ckpt_cv_.wait(lock, [&] { return ckpt_stop_ || ckpt_wanted_; });
      if (ckpt_stop_) return;
      ckpt_wanted_ = false;
      lock.unlock();
      // PASSIVE never blocks the writer; frames a reader still needs wait for the next round.
      sqlite3_wal_checkpoint_v2(checkpointer_.get(), nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
      lock.lock();
    }
  }

  static constexpr int kCheckpointPages = 10000;  // ~40 MB of WAL: a page rewritten many times is copied once

  struct SchemaInit {
    SchemaInit(Db& db, const std::string& path) { migrate(db, path); }
  };

  std::string path_;
  FileLock lock_;  // first: nothing is opened before the file is ours
  Db writer_;
  Db reader_;
  SchemaInit init_;
  std::mutex write_mu_;
  std::mutex read_mu_;
  std::mutex claims_mu_;  // taken before read_mu_, never the other way round
  Claims claims_;
  Stmt insert_, update_, release_idem_, begin_, commit_, rollback_, purge_slice_, purge_, purge_attempts_;
  Stmt insert_attempt_, insert_suppression_, edit_read_;
  Stmt find_, find_seq_, due_, due_all_, load_, next_due_, oldest_, idem_, batch_refs_;
  Db checkpointer_;
  std::mutex keys_mu_;
  std::unique_ptr<Db> keys_db_;  // opened on first use
  std::mutex admin_mu_;
  std::unique_ptr<Db> admin_db_;  // list_jobs(), opened on first use
  std::mutex ckpt_mu_;
  std::condition_variable ckpt_cv_;
  bool ckpt_wanted_ = false;
  bool ckpt_stop_ = false;
  std::thread checkpoint_thread_;
  // The webhook outbox: written on the group commit's connection (under write_mu_), read on the
  // reader's (under read_mu_).
  struct OutboxStmts {
    OutboxStmts(Db& w, Db& r)
        : job(w,
              "SELECT ref, submitted, callback_url FROM jobs "
              "WHERE seq=?1 AND completed=0 AND callback_url IS NOT NULL"),
          insert(w, "INSERT INTO webhook_outbox(id, job_ref, url, body, created, next_at) VALUES(?1,?2,?3,?4,?5,?6)"),
          remove(w, "DELETE FROM webhook_outbox WHERE id=?1"),
          retry(w, "UPDATE webhook_outbox SET attempts=?2, next_at=?3 WHERE id=?1"),
          due(r,
              "SELECT id, job_ref, url, body, created, attempts, next_at FROM webhook_outbox WHERE next_at <= ?1 "
              "ORDER BY next_at LIMIT ?2"),
          next(r, "SELECT min(next_at) FROM webhook_outbox") {}
    Stmt job, insert, remove, retry, due, next;
  };
  OutboxStmts outbox_{writer_, reader_};
};

}  // namespace

int sqlite_schema_version() { return kSchemaVersion; }

std::unique_ptr<Store> open_sqlite(const SqliteOptions& options) { return std::make_unique<SqliteStore>(options); }

}  // namespace websmtp::store
