// PostgreSQL implementation of the job store (STORE=postgres): the schema of SqliteStore plus
// the claim columns. See store.hpp for the claim rules and postgres_store.hpp for the extras.
#include "websmtp/store/postgres_store.hpp"

#include <libpq-fe.h>
#include <poll.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_set>

#include "websmtp/common/thread.hpp"
#include "store_sql.hpp"
#include "websmtp/common/uuid.hpp"
#include "websmtp/job/json.hpp"
#include "websmtp/webhook/event.hpp"

namespace websmtp::store {

namespace {

// The advisory lock key under which the schema is created and migrated (any constant will do,
// as long as every node uses the same one): "websmtp" in ASCII.
constexpr std::int64_t kSchemaLockKey = 0x77656273'6d7470;
constexpr const char* kChannel = "websmtp_change";

// The schema, as ordered forward migrations (a released one never changes).
constexpr const char* kSchemaV1 = R"sql(
CREATE TABLE jobs(
  seq BIGSERIAL PRIMARY KEY,
  ref TEXT NOT NULL UNIQUE,
  submitted BIGINT NOT NULL,
  completed BIGINT NOT NULL DEFAULT 0,
  started INTEGER NOT NULL DEFAULT 0,
  outcome INTEGER NOT NULL DEFAULT 0,
  next_at BIGINT,
  sender TEXT NOT NULL,
  message BYTEA,
  recipients TEXT NOT NULL,
  idem_key TEXT,
  request_hash TEXT,
  batch BIGINT,
  submitted_by TEXT,
  claimed_by TEXT,
  lease_until BIGINT,
  on_wire INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX jobs_due ON jobs(next_at, seq) WHERE next_at IS NOT NULL;
CREATE INDEX jobs_done ON jobs(completed) WHERE outcome <> 0;
CREATE UNIQUE INDEX jobs_idem ON jobs(idem_key) WHERE idem_key IS NOT NULL;
CREATE INDEX jobs_batch ON jobs(batch) WHERE batch IS NOT NULL;
CREATE INDEX jobs_claimed ON jobs(claimed_by) WHERE claimed_by IS NOT NULL;
CREATE INDEX jobs_lease ON jobs(lease_until) WHERE claimed_by IS NOT NULL;
CREATE TABLE api_keys(
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  type TEXT NOT NULL,
  prefix TEXT NOT NULL,
  hash TEXT NOT NULL UNIQUE,
  policy TEXT NOT NULL,
  created BIGINT NOT NULL,
  last_used BIGINT NOT NULL DEFAULT 0,
  revoked BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE attempts(
  id BIGSERIAL PRIMARY KEY,
  seq BIGINT NOT NULL,
  address TEXT NOT NULL,
  time BIGINT NOT NULL,
  smtp_code INTEGER NOT NULL,
  smtp_reply TEXT NOT NULL,
  host TEXT NOT NULL
);
CREATE INDEX attempts_seq ON attempts(seq);
CREATE TABLE suppressions(
  address TEXT PRIMARY KEY,
  reason TEXT NOT NULL,
  created BIGINT NOT NULL,
  smtp_code INTEGER NOT NULL DEFAULT 0,
  smtp_reply TEXT NOT NULL DEFAULT ''
);
CREATE TABLE settings(
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
)sql";

// Version 2: webhooks (as SQLite's version 5): the job's callback_url and the outbox of
// job.completed events, written by the commit that completes the job.
constexpr const char* kSchemaV2Webhooks = R"sql(
ALTER TABLE jobs ADD COLUMN callback_url TEXT;
CREATE TABLE webhook_outbox(
  id TEXT PRIMARY KEY,
  job_ref TEXT NOT NULL,
  url TEXT NOT NULL,
  body TEXT NOT NULL,
  created BIGINT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_at BIGINT NOT NULL
);
CREATE INDEX webhook_outbox_due ON webhook_outbox(next_at);
)sql";

// Version 3: each node's figures (NodeFigures), summed by GET /admin/queue on any node. Times
// in Unix ms; `seen` is written with the database's clock.
constexpr const char* kSchemaV3Nodes = R"sql(
CREATE TABLE nodes(
  node_id TEXT PRIMARY KEY,
  started BIGINT NOT NULL,
  seen BIGINT NOT NULL,
  stopped BIGINT NOT NULL DEFAULT 0,
  submitted BIGINT NOT NULL DEFAULT 0,
  delivered BIGINT NOT NULL DEFAULT 0,
  failed BIGINT NOT NULL DEFAULT 0,
  workers BIGINT NOT NULL DEFAULT 0,
  workers_busy BIGINT NOT NULL DEFAULT 0,
  in_flight BIGINT NOT NULL DEFAULT 0,
  in_flight_first BIGINT NOT NULL DEFAULT 0
);
)sql";

// Version 4: the node whose sender holds a webhook event (webhook_due with a claim sets it with
// next_at, the claim's end; webhook_failed clears it, as does a restart of that node).
constexpr const char* kSchemaV4WebhookClaims = R"sql(
ALTER TABLE webhook_outbox ADD COLUMN claimed_by TEXT;
)sql";

// Version 5: the queue figures kept as counters, one row per node (each node adds its own
// commits' changes to its row: no row is shared, so no commit waits on another node's), so that
// counting the queue reads a few rows instead of every job. Started from the jobs as they are.
// And an index of the jobs nobody holds, so that a claim does not read past every job other
// nodes hold.
constexpr const char* kSchemaV5Counts = R"sql(
CREATE TABLE job_counts(
  node TEXT PRIMARY KEY,
  queued BIGINT NOT NULL DEFAULT 0,
  deferred BIGINT NOT NULL DEFAULT 0,
  completed BIGINT NOT NULL DEFAULT 0,
  failed BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX jobs_claimable ON jobs(next_at, seq) WHERE next_at IS NOT NULL AND claimed_by IS NULL;
INSERT INTO job_counts(node, queued, deferred, completed, failed)
SELECT '', count(*) FILTER (WHERE outcome = 0 AND started = 0), count(*) FILTER (WHERE outcome = 0 AND started <> 0),
       count(*) FILTER (WHERE outcome = 1), count(*) FILTER (WHERE outcome = 2) FROM jobs;
)sql";

struct Migration {
  int version;
  const char* sql;
};
constexpr Migration kMigrations[] = {{1, kSchemaV1},
                                     {2, kSchemaV2Webhooks},
                                     {3, kSchemaV3Nodes},
                                     {4, kSchemaV4WebhookClaims},
                                     {5, kSchemaV5Counts}};
constexpr int kSchemaVersion = kMigrations[std::size(kMigrations) - 1].version;

constexpr const char* kJobCols = "seq, ref, submitted, completed, started, sender, recipients, submitted_by";

// A query's result, cleared however the scope is left.
class Res {
 public:
  explicit Res(PGresult* r) : r_(r) {}
  ~Res() { PQclear(r_); }
  Res(Res&& o) noexcept : r_(std::exchange(o.r_, nullptr)) {}
  Res(const Res&) = delete;
  Res& operator=(const Res&) = delete;

  int rows() const { return PQntuples(r_); }
  bool null(int row, int col) const { return PQgetisnull(r_, row, col); }
  std::string text(int row, int col) const {
    return std::string(PQgetvalue(r_, row, col), static_cast<std::size_t>(PQgetlength(r_, row, col)));
  }
  std::int64_t i64(int row, int col) const { return null(row, col) ? 0 : std::stoll(PQgetvalue(r_, row, col)); }
  std::int64_t affected() const {
    const char* n = PQcmdTuples(r_);
    return n && *n ? std::stoll(n) : 0;
  }
  // A bytea column read as text (hex format, "\x...").
  std::string bytes(int row, int col) const {
    if (null(row, col)) return {};
    std::size_t n = 0;
    unsigned char* p = PQunescapeBytea(reinterpret_cast<const unsigned char*>(PQgetvalue(r_, row, col)), &n);
    if (!p) throw StoreError("postgres: cannot decode a bytea value");
    std::string out(reinterpret_cast<char*>(p), n);
    PQfreemem(p);
    return out;
  }

 private:
  PGresult* r_;
};

// Parameters of one statement, as text (a bytea one in binary; a null one as nullopt).
class Params {
 public:
  Params& add(std::string v) {
    values_.push_back(std::move(v));
    nulls_.push_back(false);
    binary_.push_back(0);
    return *this;
  }
  Params& add(std::string_view v) { return add(std::string(v)); }
  Params& add(const char* v) { return add(std::string(v)); }
  Params& add(std::int64_t v) { return add(std::to_string(v)); }
  Params& add(int v) { return add(std::to_string(v)); }
  // Bytes sent as they are (binary format), not copied: `v` must outlive the statement's run.
  Params& add_bytes_view(std::string_view v) {
    add(std::string());
    borrowed_.resize(values_.size());
    borrowed_.back() = v;
    binary_.back() = 1;
    return *this;
  }
  Params& add_null() {
    add(std::string());
    nulls_.back() = true;
    return *this;
  }
  Params& add_or_null(const std::optional<std::int64_t>& v) { return v ? add(*v) : add_null(); }
  Params& add_text_or_null(std::string_view v) { return v.empty() ? add_null() : add(v); }

  int size() const { return static_cast<int>(values_.size()); }
  std::vector<const char*> values() const {
    std::vector<const char*> p;
    for (std::size_t i = 0; i < values_.size(); ++i)
      p.push_back(nulls_[i] ? nullptr : borrowed(i) ? borrowed_[i]->data() : values_[i].data());
    return p;
  }
  std::vector<int> lengths() const {
    std::vector<int> l;
    for (std::size_t i = 0; i < values_.size(); ++i)
      l.push_back(static_cast<int>(borrowed(i) ? borrowed_[i]->size() : values_[i].size()));
    return l;
  }
  const int* formats() const { return binary_.data(); }

 private:
  bool borrowed(std::size_t i) const { return i < borrowed_.size() && borrowed_[i]; }

  std::vector<std::string> values_;
  std::vector<bool> nulls_;
  std::vector<int> binary_;
  std::vector<std::optional<std::string_view>> borrowed_;  // add_bytes_view()'s, by index
};

// Text as PostgreSQL stores it: valid UTF-8 without NUL. An SMTP reply may hold any byte; one
// that PostgreSQL refuses would fail the whole group commit again and again, so a byte that is
// not part of a well-formed UTF-8 sequence (and NUL) is written as U+FFFD, as the JSON of the
// status shows such bytes on either store.
std::string pg_text(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    std::size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    bool ok = n > 0 && c != 0 && i + n <= s.size() && !(n == 2 && c < 0xC2) && !(n == 4 && c > 0xF4);
    for (std::size_t k = 1; ok && k < n; ++k) ok = (static_cast<unsigned char>(s[i + k]) & 0xC0) == 0x80;
    if (ok && n == 3) {
      auto c1 = static_cast<unsigned char>(s[i + 1]);
      ok = !(c == 0xE0 && c1 < 0xA0) && !(c == 0xED && c1 >= 0xA0);  // overlong, surrogates
    }
    if (ok && n == 4) {
      auto c1 = static_cast<unsigned char>(s[i + 1]);
      ok = !(c == 0xF0 && c1 < 0x90) && !(c == 0xF4 && c1 >= 0x90);  // overlong, beyond U+10FFFF
    }
    if (!ok) {
      out += "\xEF\xBF\xBD";
      ++i;
      continue;
    }
    out.append(s.substr(i, n));
    i += n;
  }
  return out;
}

// An array parameter in PostgreSQL's text form ({"a","b\"c",NULL,3}): one statement writes
// the rows of a whole commit.
class ArrayLiteral {
 public:
  ArrayLiteral& add(std::string_view v) {
    sep();
    text_ += '"';
    // Plain ASCII (recipients' JSON, refs, most replies) needs no UTF-8 repair: escaped as is.
    bool ascii = std::all_of(v.begin(), v.end(), [](char c) { return c > 0 && static_cast<unsigned char>(c) < 0x80; });
    std::string repaired;
    if (!ascii) repaired = pg_text(v);
    for (char c : ascii ? v : std::string_view(repaired)) {
      if (c == '"' || c == '\\') text_ += '\\';
      text_ += c;
    }
    text_ += '"';
    return *this;
  }
  ArrayLiteral& add(std::int64_t v) {
    sep();
    text_ += std::to_string(v);
    return *this;
  }
  ArrayLiteral& add_or_null(const std::optional<std::int64_t>& v) {
    if (v) return add(*v);
    sep();
    text_ += "NULL";
    return *this;
  }
  bool empty() const { return text_.size() == 1; }
  std::string str() const { return text_ + '}'; }

 private:
  void sep() {
    if (text_.size() > 1) text_ += ',';
  }
  std::string text_ = "{";
};

// A deadlock or serialization failure: the transaction was rolled back and may simply be run
// again.
struct TransientError : StoreError {
  using StoreError::StoreError;
};

bool transient(const PGresult* r) {
  const char* state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
  return state && (std::string_view(state) == "40P01" || std::string_view(state) == "40001");
}

// One libpq connection with its prepared statements (prepared on first use, by name).
class Conn {
 public:
  explicit Conn(const std::string& url) : pg_(PQconnectdb(url.c_str())) {
    if (!pg_ || PQstatus(pg_) != CONNECTION_OK) {
      std::string msg = pg_ ? PQerrorMessage(pg_) : "out of memory";
      PQfinish(pg_);
      pg_ = nullptr;
      throw StoreError("postgres: cannot connect: " + trim(msg));
    }
    PQsetNoticeProcessor(pg_, [](void*, const char*) {}, nullptr);
    // A transaction here never idles (a commit is one pipeline): one that does belongs to a node
    // frozen mid-commit (SIGSTOP, a partition with the socket open) and holds row locks other
    // nodes' commits wait on; PostgreSQL ends it.
    PQclear(PQexec(pg_, "SET idle_in_transaction_session_timeout = '30s'"));
  }
  ~Conn() { PQfinish(pg_); }
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  bool ok() const { return !broken_ && PQstatus(pg_) == CONNECTION_OK; }
  PGconn* get() const { return pg_; }
  // Not to be reused (left in a state the pool cannot trust: a pipeline that failed midway).
  void set_broken() { broken_ = true; }

  // Prepares `sql` under `name` unless this connection already has it.
  void prepare(const char* name, const char* sql) {
    if (prepared_.count(name)) return;
    Res r = check(PQprepare(pg_, name, sql, 0, nullptr), sql);
    prepared_.insert(name);
  }

  void exec(const char* sql) { Res r = check(PQexec(pg_, sql), sql); }
  Res query(const char* sql) { return check(PQexec(pg_, sql), sql); }

  // Runs the statement `sql`, prepared once per connection under `name`.
  Res run(const char* name, const char* sql, const Params& p) {
    prepare(name, sql);
    auto values = p.values();
    auto lengths = p.lengths();
    return check(PQexecPrepared(pg_, name, p.size(), values.data(), lengths.data(), p.formats(), 0), sql);
  }
  // A one-off statement (not prepared).
  Res run_once(const std::string& sql, const Params& p) {
    auto values = p.values();
    auto lengths = p.lengths();
    return check(PQexecParams(pg_, sql.c_str(), p.size(), nullptr, values.data(), lengths.data(), p.formats(), 0),
                 sql.c_str());
  }

  static std::string trim(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    return s;
  }

 private:
  Res check(PGresult* r, const char* sql) {
    auto st = PQresultStatus(r);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) return Res(r);
    std::string msg = r ? PQresultErrorMessage(r) : PQerrorMessage(pg_);
    bool again = transient(r);
    PQclear(r);
    (void)sql;
    if (again) throw TransientError("postgres: " + trim(msg));
    throw StoreError("postgres: " + trim(msg));
  }

  PGconn* pg_;
  std::unordered_set<std::string> prepared_;
  bool broken_ = false;
};

// Statements sent together and answered together: one round trip for all of them (libpq's
// pipeline mode) instead of one each. (Statements over arrays of seqs or refs are not prepared:
// a generic plan made while the table was small would scan it whole for as long as the
// connection lives.) They run in order; after an error the server skips the
// rest up to the sync, and run() throws the first error once every result is read. Each
// statement's result goes to its callback, in order.
class Pipeline {
 public:
  using OnResult = std::function<void(const Res&)>;

  // A prepared statement (prepared on this connection first if need be).
  Pipeline& add(const char* name, const char* sql, Params p, OnResult on_result = {}) {
    steps_.push_back({name, sql, std::move(p), std::move(on_result)});
    return *this;
  }
  // A statement without parameters (BEGIN, COMMIT), not prepared.
  Pipeline& add(const char* sql) {
    steps_.push_back({nullptr, sql, Params(), {}});
    return *this;
  }
  // A statement planned for its parameters at each run (not prepared): one whose best plan
  // depends on them, such as `= ANY($1)` over a table that grows.
  Pipeline& add_unprepared(const char* sql, Params p, OnResult on_result = {}) {
    steps_.push_back({nullptr, sql, std::move(p), std::move(on_result)});
    return *this;
  }
  bool empty() const { return steps_.empty(); }

  void run(Conn& c) {
    if (steps_.empty()) return;
    for (const auto& st : steps_)
      if (st.name) c.prepare(st.name, st.sql);
    PGconn* pg = c.get();
    if (!PQenterPipelineMode(pg)) fail(c, "cannot enter pipeline mode");
    for (const auto& st : steps_) {
      auto values = st.params.values();
      auto lengths = st.params.lengths();
      int sent = st.name ? PQsendQueryPrepared(pg, st.name, st.params.size(), values.data(), lengths.data(),
                                               st.params.formats(), 0)
                         : PQsendQueryParams(pg, st.sql, st.params.size(), nullptr, values.data(), lengths.data(),
                                             st.params.formats(), 0);
      if (!sent) fail(c, PQerrorMessage(pg));
    }
    if (!PQpipelineSync(pg)) fail(c, PQerrorMessage(pg));
    std::string error, callback_error;
    bool retry = false, committed = false;
    for (auto& st : steps_) {
      PGresult* r = PQgetResult(pg);
      if (!r) fail(c, PQerrorMessage(pg));
      Res res(r);
      auto status = PQresultStatus(r);
      if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) {
        if (!st.name && std::string_view(st.sql) == "COMMIT") committed = true;
        if (st.on_result && error.empty() && callback_error.empty()) try {
            st.on_result(res);
          } catch (const std::exception& e) {
            callback_error = e.what();
          }
      } else if (status != PGRES_PIPELINE_ABORTED && error.empty()) {
        error = PQresultErrorMessage(r);
        if (error.empty()) error = "a statement failed";
        retry = transient(r);
      }
      while (PGresult* more = PQgetResult(pg)) PQclear(more);  // the statement's end (NULL)
    }
    {
      PGresult* r = PQgetResult(pg);
      bool synced = r && PQresultStatus(r) == PGRES_PIPELINE_SYNC;
      PQclear(r);
      if (!synced || !PQexitPipelineMode(pg)) fail(c, PQerrorMessage(pg));
    }
    steps_.clear();
    if (retry) throw TransientError("postgres: " + Conn::trim(error));
    if (!error.empty()) throw StoreError("postgres: " + Conn::trim(error));
    // A result this side could not read: before the COMMIT it fails the transaction (rolled back
    // by the caller); once the COMMIT went through, what is stored stands and is not reported
    // as a failure (which would refuse stored jobs and write outcomes twice).
    if (!callback_error.empty()) {
      if (!committed) throw StoreError("postgres: cannot read a result: " + callback_error);
      spdlog::error("postgres store: cannot read a result of a committed transaction: {}", callback_error);
    }
  }

 private:
  struct Step {
    const char* name;
    const char* sql;
    Params params;
    OnResult on_result;
  };
  [[noreturn]] static void fail(Conn& c, const std::string& why) {
    c.set_broken();
    throw StoreError("postgres: " + Conn::trim(why));
  }
  std::vector<Step> steps_;
};

// A small pool: a thread borrows a connection for one call (or one transaction) and gives it
// back; a broken one is dropped, so the next call connects afresh (PostgreSQL restarted).
class Pool {
 public:
  Pool(std::string url, std::size_t max) : url_(std::move(url)), max_(std::max<std::size_t>(max, 1)) {}

  class Lease {
   public:
    Lease(Pool& pool, std::unique_ptr<Conn> c) : pool_(pool), c_(std::move(c)) {}
    ~Lease() { pool_.give_back(std::move(c_)); }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    Conn* operator->() { return c_.get(); }
    Conn& operator*() { return *c_; }

   private:
    Pool& pool_;
    std::unique_ptr<Conn> c_;
  };

  Lease take() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return !idle_.empty() || open_ < max_; });
    while (!idle_.empty()) {
      auto c = std::move(idle_.back());
      idle_.pop_back();
      // A server that restarted closed it: reading what is pending (without blocking) says so
      // now rather than by failing the caller's statement.
      if (PQconsumeInput(c->get()) && c->ok()) return Lease(*this, std::move(c));
      --open_;
    }
    ++open_;
    lock.unlock();
    try {
      return Lease(*this, std::make_unique<Conn>(url_));
    } catch (...) {
      lock.lock();
      --open_;
      cv_.notify_one();
      throw;
    }
  }

 private:
  void give_back(std::unique_ptr<Conn> c) {
    std::lock_guard lock(mu_);
    // A connection left inside a transaction (an exception midway) or broken is not reused.
    if (c && c->ok() && PQtransactionStatus(c->get()) == PQTRANS_IDLE)
      idle_.push_back(std::move(c));
    else
      --open_;
    cv_.notify_one();
  }

  std::string url_;
  std::size_t max_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<Conn>> idle_;
  std::size_t open_ = 0;
};

// BEGIN ... COMMIT on one connection; rolled back when the scope is left without commit().
// (kInPipeline: BEGIN and COMMIT are sent in the caller's Pipeline; committed() says it went.)
class Tx {
 public:
  enum Mode { kNow, kInPipeline };
  explicit Tx(Conn& c, Mode mode = kNow) : c_(c) {
    if (mode == kNow) c_.exec("BEGIN");
  }
  ~Tx() {
    if (!done_ && c_.ok() && PQtransactionStatus(c_.get()) != PQTRANS_IDLE) PQclear(PQexec(c_.get(), "ROLLBACK"));
  }
  void commit() {
    c_.exec("COMMIT");
    done_ = true;
  }
  void committed() { done_ = true; }

 private:
  Conn& c_;
  bool done_ = false;
};

void migrate(Conn& c) {
  Tx tx(c);
  c.run_once("SELECT pg_advisory_xact_lock($1)", Params().add(kSchemaLockKey));
  c.exec("CREATE TABLE IF NOT EXISTS websmtp_schema(version INTEGER NOT NULL)");
  Res v = c.query("SELECT max(version) FROM websmtp_schema");
  int from = static_cast<int>(v.i64(0, 0));
  if (from > kSchemaVersion)
    throw StoreError("the database has websmtp schema version " + std::to_string(from) +
                     ", newer than this websmtpd knows (" + std::to_string(kSchemaVersion) + ")");
  for (const auto& m : kMigrations)
    if (m.version > from) c.exec(m.sql);
  if (from != kSchemaVersion) {
    c.exec("DELETE FROM websmtp_schema");
    c.run_once("INSERT INTO websmtp_schema(version) VALUES($1)", Params().add(kSchemaVersion));
  }
  tx.commit();
  if (from != kSchemaVersion)
    spdlog::info("postgres store: schema {} to version {}", from == 0 ? "created" : "migrated", kSchemaVersion);
}

job::Job row_to_job(const Res& r, int row, bool with_message) {
  job::Job j;
  j.seq = r.i64(row, 0);
  j.ref = r.text(row, 1);
  j.submitted = r.i64(row, 2);
  j.completed = r.i64(row, 3);
  j.started = r.i64(row, 4) != 0;
  j.sender = r.text(row, 5);
  j.recipients = job::recipients_from_store(r.text(row, 6));
  j.submitted_by = r.text(row, 7);
  if (with_message) {
    j.message = r.bytes(row, 8);
    j.idempotency_key = r.text(row, 9);
  }
  return j;
}

std::string seq_array(std::span<const std::int64_t> seqs) {
  ArrayLiteral a;
  for (auto seq : seqs) a.add(seq);
  return a.str();
}

class PostgresStore final : public SharedStore {
 public:
  explicit PostgresStore(const PostgresOptions& o) : options_(o), pool_(o.url, o.pool) {
    auto c = pool_.take();
    migrate(*c);
    // Claims a previous process under this NODE_ID left (kill -9, then a restart): nothing here
    // holds them, and this node's renewals would otherwise keep them from ever expiring. A job
    // whose message was on the wire keeps that note for whoever claims it next.
    Res r = c->run_once("UPDATE jobs SET claimed_by = NULL, lease_until = NULL WHERE claimed_by = $1",
                        Params().add(o.node_id));
    if (r.affected() > 0) {
      spdlog::warn("postgres store: released {} claims left by a previous process of node {}", r.affected(),
                   o.node_id);
      notify(*c, "");
    }
    // Its webhook claims too (claimed_by is set only while a sender holds the event): due now,
    // with the attempts they had, rather than at the claim's end (LEASE_TIMEOUT away).
    Res w = c->run_once(
        "UPDATE webhook_outbox SET next_at = LEAST(next_at, $2), claimed_by = NULL WHERE claimed_by = $1",
        Params().add(o.node_id).add(unix_now_ms()));
    if (w.affected() > 0) {
      spdlog::warn("postgres store: released {} webhook events held by a previous process of node {}", w.affected(),
                   o.node_id);
      notify(*c, "!");
    }
  }

  ~PostgresStore() override { stop_listening(); }

  // One group commit: one transaction and, unless it holds an operator's edit, one round trip
  // (BEGIN, the inserts, the webhook events of the jobs it completes, every outcome in one
  // statement, the notifications and COMMIT, sent as one pipeline).
  void commit(const Commit& c) override {
    for (int attempt = 1;; ++attempt) {
      try {
        return commit_once(c);
      } catch (const StoreError& e) {
        for (job::Job* j : c.inserts) j->seq = 0;  // nothing of it is stored
        if (attempt == 3 || !dynamic_cast<const TransientError*>(&e)) throw;
        spdlog::warn("postgres store: commit rolled back ({}); running it again", e.what());
      }
    }
  }

  void commit_once(const Commit& c) {
    auto conn = pool_.take();
    Tx tx(*conn, Tx::kInPipeline);
    const std::string owner(c.owner.empty() ? std::string_view(options_.node_id) : c.owner);
    Pipeline p;
    p.add("BEGIN");
    add_inserts(p, c);
    std::vector<std::int64_t> lost;
    add_outcomes(p, c.updates, &owner, lost);
    // Heard by every node at COMMIT: long-polls and status caches of the outcomes' refs, and
    // idle dispatchers for inserts nobody claimed.
    std::vector<std::string> notes;
    notes.reserve(c.updates.size() + 1);
    for (const auto& u : c.updates) notes.push_back(u.ref);
    if (!c.inserts.empty() && c.owner.empty()) notes.emplace_back();
    add_notify(p, notes);
    if (c.edits.empty()) p.add("COMMIT");
    p.run(*conn);
    if (c.edits.empty()) {
      tx.committed();
    } else {
      std::vector<std::string> edited;
      // In the order of their jobs, as every commit locks rows: two nodes' edits and outcomes
      // never wait for each other in a cycle.
      std::vector<JobEdit*> edits(c.edits.begin(), c.edits.end());
      std::sort(edits.begin(), edits.end(), [](const JobEdit* a, const JobEdit* b) { return a->seq < b->seq; });
      for (JobEdit* e : edits) {
        write_edit(*conn, *e);
        if (e->result) edited.push_back("~" + e->result->ref);
      }
      Pipeline q;
      add_notify(q, edited);
      q.add("COMMIT");
      q.run(*conn);
      tx.committed();
    }
    for (auto seq : lost)
      spdlog::warn("job seq {}: this node's claim was taken over (lease expired); its outcome is not written", seq);
  }

  Counts purge_finished(std::int64_t before_s) override {
    auto conn = pool_.take();
    Tx tx(*conn);
    Res r = conn->run("purge",
                      "DELETE FROM jobs WHERE seq IN (SELECT seq FROM jobs WHERE outcome <> 0 AND completed < $1 "
                      "ORDER BY completed LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING seq, outcome",
                      Params().add(before_s).add(kPurgeSlice));
    Counts c;
    std::vector<std::int64_t> seqs;
    for (int i = 0; i < r.rows(); ++i) {
      seqs.push_back(r.i64(i, 0));
      (r.i64(i, 1) == static_cast<int>(Outcome::kDelivered) ? c.completed : c.failed) += 1;
    }
    if (!seqs.empty()) {
      conn->run("purge_attempts", "DELETE FROM attempts WHERE seq = ANY($1::bigint[])", Params().add(seq_array(seqs)));
      conn->run("purge_counts",
                "INSERT INTO job_counts(node, completed, failed) VALUES($1, -$2::bigint, -$3::bigint) ON CONFLICT(node) "
                "DO UPDATE SET completed = job_counts.completed + EXCLUDED.completed, failed = job_counts.failed + "
                "EXCLUDED.failed",
                Params().add(options_.node_id).add(c.completed).add(c.failed));
    }
    tx.commit();
    return c;
  }

  std::vector<job::Job> claim_due(std::string_view owner, std::int64_t now_ms, std::int64_t lease_ms,
                                  std::size_t limit) override {
    auto conn = pool_.take();
    // Unclaimed due jobs (jobs_claimable) and jobs whose lease ran out (jobs_lease), oldest due
    // first: neither read walks past the jobs other nodes hold.
    Res r = conn->run_once(
        "WITH a AS (SELECT seq, next_at FROM jobs WHERE next_at IS NOT NULL AND next_at <= $3 AND claimed_by IS NULL "
        "ORDER BY next_at, seq LIMIT $4 FOR UPDATE SKIP LOCKED), b AS (SELECT seq, next_at FROM jobs WHERE claimed_by "
        "IS NOT NULL AND lease_until < $3 AND next_at IS NOT NULL AND next_at <= $3 ORDER BY lease_until LIMIT $4 "
        "FOR UPDATE SKIP LOCKED), pick AS (SELECT seq FROM (SELECT * FROM a UNION ALL SELECT * FROM b) x ORDER BY "
        "next_at, seq LIMIT $4) UPDATE jobs SET claimed_by = $1, lease_until = $2 WHERE seq = ANY(ARRAY(SELECT seq "
        "FROM pick)) RETURNING jobs.seq, ref, submitted, completed, started, sender, recipients, submitted_by, message, "
        "idem_key, on_wire, next_at",
        Params().add(owner).add(now_ms + lease_ms).add(now_ms).add(static_cast<std::int64_t>(limit)));
    std::vector<std::pair<std::int64_t, job::Job>> rows;
    rows.reserve(static_cast<std::size_t>(r.rows()));
    for (int i = 0; i < r.rows(); ++i) {
      job::Job j = row_to_job(r, i, true);
      j.interrupted_on_wire = r.i64(i, 10) != 0;
      rows.emplace_back(r.i64(i, 11), std::move(j));
    }
    std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) {
      return a.first != b.first ? a.first < b.first : a.second.seq < b.second.seq;
    });
    std::vector<job::Job> out;
    out.reserve(rows.size());
    for (auto& [at, j] : rows) out.push_back(std::move(j));
    return out;
  }

  std::size_t renew(std::string_view owner, std::int64_t now_ms, std::int64_t lease_ms) override {
    auto conn = pool_.take();
    Res r = conn->run("renew", "UPDATE jobs SET lease_until = $2 WHERE claimed_by = $1",
                      Params().add(owner).add(now_ms + lease_ms));
    return static_cast<std::size_t>(r.affected());
  }

  void release(std::string_view owner, std::span<const std::int64_t> seqs) override {
    if (seqs.empty()) return;
    auto conn = pool_.take();
    conn->run_once("UPDATE jobs SET claimed_by = NULL, lease_until = NULL WHERE seq = ANY($2::bigint[]) AND "
                   "claimed_by = $1",
              Params().add(owner).add(seq_array(seqs)));
    notify(*conn, "");  // another node may take them now
  }

  void note_on_wire(std::int64_t seq, std::string_view owner) override {
    auto conn = pool_.take();
    conn->run("on_wire", "UPDATE jobs SET on_wire = 1 WHERE seq = $1 AND claimed_by = $2", Params().add(seq).add(owner));
  }

  std::optional<job::Job> find(std::string_view ref) override {
    return find_one("find", "SELECT seq, ref, submitted, completed, started, sender, recipients, submitted_by FROM jobs "
                            "WHERE ref = $1",
                    Params().add(ref));
  }

  std::optional<job::Job> find_seq(std::int64_t seq) override {
    return find_one("find_seq", "SELECT seq, ref, submitted, completed, started, sender, recipients, submitted_by FROM "
                                "jobs WHERE seq = $1",
                    Params().add(seq));
  }

  std::vector<std::int64_t> due(std::int64_t now_ms, std::size_t limit) override {
    auto conn = pool_.take();
    Res r = conn->run("due",
                      "SELECT seq FROM jobs WHERE next_at IS NOT NULL AND next_at <= $1 ORDER BY next_at, seq LIMIT $2",
                      Params().add(now_ms).add(static_cast<std::int64_t>(limit)));
    std::vector<std::int64_t> out;
    for (int i = 0; i < r.rows(); ++i) out.push_back(r.i64(i, 0));
    return out;
  }

  std::vector<job::Job> load(std::span<const std::int64_t> seqs, std::int64_t now_ms) override {
    if (seqs.empty()) return {};
    auto conn = pool_.take();
    Res r = conn->run_once("SELECT seq, ref, submitted, completed, started, sender, recipients, submitted_by, message, "
                      "idem_key FROM jobs WHERE seq = ANY($1::bigint[]) AND outcome = 0 AND next_at <= $2",
                      Params().add(seq_array(seqs)).add(now_ms));
    std::unordered_map<std::int64_t, job::Job> by_seq;
    for (int i = 0; i < r.rows(); ++i) {
      auto j = row_to_job(r, i, true);
      by_seq.emplace(j.seq, std::move(j));
    }
    std::vector<job::Job> out;
    for (auto seq : seqs)
      if (auto it = by_seq.find(seq); it != by_seq.end()) out.push_back(std::move(it->second));
    return out;
  }

  // The next retry, or the earliest end of another node's lease (a dead node's jobs come back
  // then): the dispatcher's timer, so lease expiry is found without polling.
  std::optional<std::int64_t> next_due_after(std::int64_t now_ms) override {
    auto conn = pool_.take();
    Res r = conn->run("next_due",
                      "SELECT (SELECT min(next_at) FROM jobs WHERE next_at IS NOT NULL AND next_at > $1), "
                      "(SELECT min(lease_until) FROM jobs WHERE claimed_by IS NOT NULL AND claimed_by <> $2 AND "
                      "lease_until > $1 AND next_at IS NOT NULL)",
                      Params().add(now_ms).add(options_.node_id));
    std::optional<std::int64_t> next;
    for (int col = 0; col < 2; ++col)
      if (!r.null(0, col)) next = next ? std::min(*next, r.i64(0, col) + col) : r.i64(0, col) + col;
    return next;
  }

  // The sum of the nodes' counter rows (kSchemaV5Counts): a few rows, however many jobs.
  Counts counts() override {
    auto conn = pool_.take();
    Res r = conn->query(
        "SELECT coalesce(sum(queued), 0), coalesce(sum(deferred), 0), coalesce(sum(completed), 0), "
        "coalesce(sum(failed), 0) FROM job_counts");
    return Counts{r.i64(0, 0), r.i64(0, 1), r.i64(0, 2), r.i64(0, 3)};
  }

  std::optional<std::int64_t> oldest_queued_submitted(std::span<const std::int64_t> attempting = {}) override {
    auto conn = pool_.take();
    // At most one row past the jobs being attempted (they lead the order, being the oldest due).
    Res r = conn->run_once("SELECT submitted, seq FROM jobs WHERE next_at IS NOT NULL AND started = 0 ORDER BY next_at, seq "
                      "LIMIT $1",
                      Params().add(static_cast<std::int64_t>(attempting.size() + 1)));
    for (int i = 0; i < r.rows(); ++i)
      if (std::find(attempting.begin(), attempting.end(), r.i64(i, 1)) == attempting.end()) return r.i64(i, 0);
    return std::nullopt;
  }

  std::optional<IdempotencyHit> find_idempotency(std::string_view key) override {
    auto conn = pool_.take();
    Res r = conn->run("idem", "SELECT seq, ref, request_hash, submitted FROM jobs WHERE idem_key = $1",
                      Params().add(key));
    if (r.rows() == 0) return std::nullopt;
    IdempotencyHit hit{r.text(0, 1), r.text(0, 2), r.i64(0, 3), {}};
    hit.refs.push_back(hit.ref);
    Res b = conn->run("batch_refs", "SELECT ref FROM jobs WHERE batch = $1 ORDER BY seq", Params().add(r.i64(0, 0)));
    for (int i = 0; i < b.rows(); ++i) hit.refs.push_back(b.text(i, 0));
    return hit;
  }

  void insert_key(const ApiKeyRecord& k) override {
    auto conn = pool_.take();
    conn->run("insert_key",
              "INSERT INTO api_keys(id, name, type, prefix, hash, policy, created) VALUES($1,$2,$3,$4,$5,$6,$7)",
              Params().add(k.id).add(k.name).add(k.type).add(k.prefix).add(k.hash).add(k.policy_json).add(k.created));
  }
  bool revoke_key(std::string_view id, std::int64_t now_s) override {
    auto conn = pool_.take();
    Res r = conn->run("revoke_key", "UPDATE api_keys SET revoked = $2 WHERE id = $1 AND revoked = 0",
                      Params().add(id).add(std::max<std::int64_t>(now_s, 1)));
    return r.affected() > 0;
  }
  void note_keys_used(std::span<const std::pair<std::string, std::int64_t>> used) override {
    if (used.empty()) return;
    auto conn = pool_.take();
    Tx tx(*conn);
    for (const auto& [id, t] : used)
      conn->run("key_used", "UPDATE api_keys SET last_used = GREATEST(last_used, $2) WHERE id = $1",
                Params().add(id).add(t));
    tx.commit();
  }
  std::vector<ApiKeyRecord> list_keys() override {
    auto conn = pool_.take();
    Res r = conn->query(
        "SELECT id, name, type, prefix, hash, policy, created, last_used, revoked FROM api_keys ORDER BY created, id");
    std::vector<ApiKeyRecord> out;
    for (int i = 0; i < r.rows(); ++i)
      out.push_back({r.text(i, 0), r.text(i, 1), r.text(i, 2), r.text(i, 3), r.text(i, 4), r.text(i, 5), r.i64(i, 6),
                     r.i64(i, 7), r.i64(i, 8)});
    return out;
  }

  std::vector<job::Job> list_jobs(JobFilter filter, std::int64_t before_seq, std::size_t limit) override {
    std::string sql = std::string("SELECT ") + kJobCols + " FROM jobs WHERE seq < $1 AND (" + sql::job_filter(filter) +
                      ") ORDER BY seq DESC LIMIT $2";
    auto conn = pool_.take();
    Res r = conn->run_once(sql, Params().add(before_seq > 0 ? before_seq : INT64_MAX).add(static_cast<std::int64_t>(limit)));
    std::vector<job::Job> out;
    for (int i = 0; i < r.rows(); ++i) out.push_back(row_to_job(r, i, false));
    return out;
  }

  std::optional<std::string> find_message(std::int64_t seq) override {
    auto conn = pool_.take();
    Res r = conn->run("find_message", "SELECT message FROM jobs WHERE seq = $1", Params().add(seq));
    if (r.rows() == 0 || r.null(0, 0)) return std::nullopt;
    return r.bytes(0, 0);
  }

  std::vector<AttemptRecord> attempts(std::int64_t seq) override {
    auto conn = pool_.take();
    Res r = conn->run("attempts",
                      "SELECT address, time, smtp_code, smtp_reply, host FROM attempts WHERE seq = $1 ORDER BY id",
                      Params().add(seq));
    std::vector<AttemptRecord> out;
    for (int i = 0; i < r.rows(); ++i)
      out.push_back({r.text(i, 0), r.i64(i, 1), static_cast<int>(r.i64(i, 2)), r.text(i, 3), r.text(i, 4)});
    return out;
  }

  std::vector<SuppressionRecord> list_suppressions() override {
    auto conn = pool_.take();
    Res r = conn->query("SELECT address, reason, created, smtp_code, smtp_reply FROM suppressions ORDER BY address");
    std::vector<SuppressionRecord> out;
    for (int i = 0; i < r.rows(); ++i)
      out.push_back({r.text(i, 0), r.text(i, 1), r.i64(i, 2), static_cast<int>(r.i64(i, 3)), r.text(i, 4)});
    return out;
  }
  bool add_suppression(const SuppressionRecord& s) override {
    auto conn = pool_.take();
    return insert_suppression(*conn, s);
  }
  bool remove_suppression(std::string_view address) override {
    auto conn = pool_.take();
    return conn->run("remove_suppression", "DELETE FROM suppressions WHERE address = $1", Params().add(address))
               .affected() > 0;
  }
  std::optional<std::string> setting(std::string_view key) override {
    auto conn = pool_.take();
    Res r = conn->run("setting", "SELECT value FROM settings WHERE key = $1", Params().add(key));
    if (r.rows() == 0) return std::nullopt;
    return r.text(0, 0);
  }
  void put_setting(std::string_view key, std::string_view value) override {
    auto conn = pool_.take();
    Tx tx(*conn);
    conn->run("put_setting",
              "INSERT INTO settings(key, value) VALUES($1, $2) ON CONFLICT(key) DO UPDATE SET value = EXCLUDED.value",
              Params().add(key).add(value));
    std::string what = "=";
    what += key;
    notify(*conn, what);
    tx.commit();
  }

  // ---- The nodes table (GET /admin/queue's gateway figures).
  // The counters never go down (GREATEST): a process that could not read its row's values at
  // start, or a second process misconfigured with the same NODE_ID, cannot lower the sums.
  void report_node(const NodeFigures& f) override {
    auto conn = pool_.take();
    conn->run("report_node",
              "INSERT INTO nodes(node_id, started, seen, stopped, submitted, delivered, failed, workers, workers_busy, "
              "in_flight, in_flight_first) VALUES($1, $2, (extract(epoch FROM clock_timestamp()) * 1000)::bigint, $3, "
              "$4, $5, $6, $7, $8, $9, $10) ON CONFLICT(node_id) DO UPDATE SET started = EXCLUDED.started, "
              "seen = EXCLUDED.seen, stopped = EXCLUDED.stopped, submitted = GREATEST(nodes.submitted, "
              "EXCLUDED.submitted), delivered = GREATEST(nodes.delivered, EXCLUDED.delivered), "
              "failed = GREATEST(nodes.failed, EXCLUDED.failed), workers = EXCLUDED.workers, "
              "workers_busy = EXCLUDED.workers_busy, in_flight = EXCLUDED.in_flight, "
              "in_flight_first = EXCLUDED.in_flight_first",
              Params()
                  .add(f.node_id)
                  .add(f.started_ms)
                  .add(f.stopped_ms)
                  .add(f.submitted)
                  .add(f.delivered)
                  .add(f.failed)
                  .add(f.workers)
                  .add(f.workers_busy)
                  .add(f.in_flight)
                  .add(f.in_flight_first));
  }
  std::vector<NodeFigures> nodes() override {
    auto conn = pool_.take();
    Res r = conn->query(
        "SELECT node_id, started, seen, stopped, (extract(epoch FROM clock_timestamp()) * 1000)::bigint - seen, "
        "submitted, delivered, failed, workers, workers_busy, in_flight, in_flight_first FROM nodes ORDER BY node_id");
    std::vector<NodeFigures> out;
    for (int i = 0; i < r.rows(); ++i)
      out.push_back({.node_id = r.text(i, 0),
                     .started_ms = r.i64(i, 1),
                     .seen_ms = r.i64(i, 2),
                     .stopped_ms = r.i64(i, 3),
                     .age_ms = r.i64(i, 4),
                     .submitted = r.i64(i, 5),
                     .delivered = r.i64(i, 6),
                     .failed = r.i64(i, 7),
                     .workers = r.i64(i, 8),
                     .workers_busy = r.i64(i, 9),
                     .in_flight = r.i64(i, 10),
                     .in_flight_first = r.i64(i, 11)});
    return out;
  }

  void stop_listening() override {
    stop_listening_ = true;
    if (listener_.joinable()) listener_.join();
  }

  // The webhook outbox. Every node's sender reads it, and claims what it sends (webhook_due with
  // claim_ms): an event is sent by one node at a time. A claim is its next_at moved to the
  // claim's end, so a dead node's event is simply due again then. Only a node slower than its
  // claim can make a second copy go out (at least once: receivers dedupe on the event id).
  bool has_webhook_outbox() const override { return true; }
  std::vector<WebhookEvent> webhook_due(std::int64_t now_ms, std::size_t limit, std::int64_t claim_ms) override {
    auto conn = pool_.take();
    Res r = claim_ms <= 0
                ? conn->run("webhook_due",
                            "SELECT id, job_ref, url, body, created, attempts, next_at FROM webhook_outbox "
                            "WHERE next_at <= $1 ORDER BY next_at LIMIT $2",
                            Params().add(now_ms).add(static_cast<std::int64_t>(limit)))
                // SKIP LOCKED: two nodes claiming at once take different events, neither waits.
                : conn->run("webhook_claim",
                            "UPDATE webhook_outbox o SET next_at = $2, claimed_by = $3 FROM (SELECT id, next_at FROM "
                            "webhook_outbox WHERE next_at <= $1 ORDER BY next_at LIMIT $4 FOR UPDATE SKIP LOCKED) d "
                            "WHERE o.id = d.id RETURNING o.id, o.job_ref, o.url, o.body, o.created, o.attempts, "
                            "d.next_at",
                            Params().add(now_ms).add(now_ms + claim_ms).add(options_.node_id).add(
                                static_cast<std::int64_t>(limit)));
    std::vector<WebhookEvent> out;
    for (int i = 0; i < r.rows(); ++i)
      out.push_back({r.text(i, 0), r.text(i, 1), r.text(i, 2), r.text(i, 3), r.i64(i, 4), static_cast<int>(r.i64(i, 5)),
                     r.i64(i, 6)});
    // RETURNING keeps no order.
    std::sort(out.begin(), out.end(), [](const WebhookEvent& a, const WebhookEvent& b) {
      return a.next_at_ms != b.next_at_ms ? a.next_at_ms < b.next_at_ms : a.id < b.id;
    });
    return out;
  }
  std::optional<std::int64_t> webhook_next_at() override {
    auto conn = pool_.take();
    Res r = conn->query("SELECT min(next_at) FROM webhook_outbox");
    if (r.null(0, 0)) return std::nullopt;
    return r.i64(0, 0);
  }
  // Whoever holds the claim now: once the receiver has the event, a further copy (from a node
  // that took a lapsed claim over) would only be one more for it to drop.
  void webhook_delivered(std::string_view id) override {
    auto conn = pool_.take();
    conn->run("webhook_delivered", "DELETE FROM webhook_outbox WHERE id = $1", Params().add(id));
  }
  // Only the claim's holder (or for an event nobody holds): a node whose claim lapsed must not
  // move the next_at of the node sending the event now, which would let a third one send it too.
  // The claim ends here. One handed back due now (a sender cut short by a graceful stop) is
  // announced ("!": webhook events are due), or the other nodes would sleep until the claim's end.
  void webhook_failed(std::string_view id, int attempts, std::int64_t next_at_ms) override {
    auto conn = pool_.take();
    Res r = conn->run("webhook_failed",
                      "UPDATE webhook_outbox SET attempts = $2, next_at = $3, claimed_by = NULL WHERE id = $1 AND "
                      "(claimed_by = $4 OR claimed_by IS NULL)",
                      Params().add(id).add(attempts).add(next_at_ms).add(options_.node_id));
    if (r.affected() > 0 && next_at_ms <= unix_now_ms()) notify(*conn, "!");
  }
  static std::int64_t unix_now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
  }

  void start_listening(std::function<void(const std::string&)> on_change) override {
    if (listener_.joinable()) return;
    // Listening before this returns: a node that says it is ready hears every change after.
    std::unique_ptr<Conn> conn;
    try {
      conn = listen_connection();
    } catch (const StoreError& e) {
      spdlog::warn("postgres store: cannot LISTEN yet ({}); retrying", e.what());
    }
    listener_ = std::thread([this, on_change = std::move(on_change), conn = std::move(conn)]() mutable {
      name_this_thread("ws-pg-listen");
      listen_loop(std::move(conn), on_change);
    });
  }

 private:
  std::optional<job::Job> find_one(const char* name, const char* sql, const Params& p) {
    auto conn = pool_.take();
    Res r = conn->run(name, sql, p);
    if (r.rows() == 0) return std::nullopt;
    return row_to_job(r, 0, false);
  }

  // What every other node hears when the transaction commits: "<node>\n<item>\n<item>...", an
  // item being a ref (that job changed), empty (new or released jobs anyone may claim) or
  // "=<key>" (a setting). A commit's items go in as few notifications as fit PostgreSQL's 8000
  // bytes: every listening node reads every notification, so one per outcome would cost each
  // node the whole gateway's outcome rate.
  std::string note_payload(std::string_view item) const {
    std::string payload = options_.node_id;
    payload += '\n';
    payload += item;
    return payload;
  }
  void notify(Conn& conn, std::string_view item) {
    conn.run("notify", "SELECT pg_notify($1, $2)", Params().add(kChannel).add(note_payload(item)));
  }
  void add_notify(Pipeline& p, std::span<const std::string> items) {
    if (items.empty()) return;
    static constexpr std::size_t kMaxPayload = 7000;
    ArrayLiteral payloads;
    std::string payload;
    for (const auto& item : items) {
      if (!payload.empty() && payload.size() + 1 + item.size() > kMaxPayload) {
        payloads.add(payload);
        payload.clear();
      }
      payload += payload.empty() ? options_.node_id : std::string();
      payload += '\n';
      payload += item;
    }
    payloads.add(payload);
    p.add("notify_many", "SELECT pg_notify($1, x) FROM unnest($2::text[]) AS x",
          Params().add(kChannel).add(payloads.str()));
  }

  // The inserts, one statement each (the message is a binary parameter). A run submitted
  // together (a batch) points at its first job by seq; a keyed first job whose Idempotency-Key
  // another node's commit took meanwhile is not inserted (ON CONFLICT), nor is the rest of its
  // run, and their seq stays 0: the submitter answers them as the replay they turned out to be.
  // Keyed runs go in the order of their keys: two nodes' commits that hold some of the same keys
  // then wait for each other's key in one order, never in a cycle (a deadlock would refuse both
  // commits' jobs).
  void add_inserts(Pipeline& p, const Commit& c) {
    if (c.inserts.empty()) return;
    std::vector<std::pair<std::size_t, std::size_t>> runs;  // (first insert, size)
    for (std::size_t at = 0, run = 0; at < c.inserts.size(); ++run) {
      std::size_t n = run < c.batches.size() ? std::max<std::uint32_t>(1, c.batches[run]) : 1;
      n = std::min(n, c.inserts.size() - at);
      runs.emplace_back(at, n);
      at += n;
    }
    // Only the keyed runs are reordered, among the places they hold: the others keep their
    // place in the submission order.
    std::vector<std::size_t> keyed;
    for (std::size_t i = 0; i < runs.size(); ++i)
      if (!c.inserts[runs[i].first]->idempotency_key.empty()) keyed.push_back(i);
    std::vector<std::pair<std::size_t, std::size_t>> by_key;
    for (auto i : keyed) by_key.push_back(runs[i]);
    std::stable_sort(by_key.begin(), by_key.end(), [&](const auto& x, const auto& y) {
      return c.inserts[x.first]->idempotency_key < c.inserts[y.first]->idempotency_key;
    });
    for (std::size_t k = 0; k < keyed.size(); ++k) runs[keyed[k]] = by_key[k];
    ArrayLiteral refs;
    for (auto [at, n] : runs) {
      const job::Job* first = nullptr;
      for (std::size_t k = 0; k < n; ++k) {
        job::Job& j = *c.inserts[at + k];
        add_insert(p, j, first, c);
        refs.add(j.ref);
        if (!first) first = &j;
      }
    }
    // Counted as they were stored (a job left out for its Idempotency-Key is not).
    p.add_unprepared(
        "INSERT INTO job_counts(node, queued) SELECT $1, count(*) FROM jobs WHERE ref = ANY($2::text[]) "
        "ON CONFLICT(node) DO UPDATE SET queued = job_counts.queued + EXCLUDED.queued",
        Params().add(options_.node_id).add(refs.str()));
  }

  void add_insert(Pipeline& p, job::Job& j, const job::Job* first, const Commit& c) {
    static constexpr const char* kCols =
        "ref, submitted, next_at, sender, message, recipients, submitted_by, callback_url, claimed_by, lease_until";
    static const std::string kInsert =
        std::string("INSERT INTO jobs(") + kCols + ") VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10) RETURNING seq";
    static const std::string kInsertKeyed = std::string("INSERT INTO jobs(") + kCols +
                                            ", idem_key, request_hash) VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12) "
                                            "ON CONFLICT (idem_key) WHERE idem_key IS NOT NULL DO NOTHING RETURNING seq";
    static const std::string kInsertMember =
        std::string("INSERT INTO jobs(") + kCols +
        ", batch) SELECT $1::text, $2::bigint, $3::bigint, $4::text, $5::bytea, $6::text, $7::text, $8::text, "
        "$9::text, $10::bigint, f.seq FROM jobs f WHERE f.ref = $11 RETURNING seq";
    bool keyed = !first && !j.idempotency_key.empty();
    if (keyed)
      p.add("release_idem", "UPDATE jobs SET idem_key = NULL WHERE idem_key = $1 AND submitted < $2",
            Params().add(j.idempotency_key).add(j.submitted - kIdempotencyWindowS));
    Params q;
    q.add(j.ref).add(j.submitted).add(j.submitted * 1000).add(j.sender).add_bytes_view(j.message);
    q.add(job::recipients_to_store(j.recipients)).add_text_or_null(j.submitted_by).add_text_or_null(j.callback_url);
    if (c.owner.empty())
      q.add_null().add_null();
    else
      q.add(c.owner).add(c.lease_until_ms);
    j.seq = 0;
    auto take_seq = [&j](const Res& r) {
      if (r.rows() > 0) j.seq = r.i64(0, 0);
    };
    if (first)
      p.add("insert_member", kInsertMember.c_str(), std::move(q.add(first->ref)), take_seq);
    else if (keyed)
      p.add("insert_keyed", kInsertKeyed.c_str(), std::move(q.add(j.idempotency_key).add(j.request_hash)), take_seq);
    else
      p.add("insert", kInsert.c_str(), std::move(q), take_seq);
  }

  // Outcomes (owner set: attempts' outcomes, written only while `owner` holds the claim, which
  // they release; the seqs of those whose claim was lost go to `lost`) or an operator's edit
  // (owner null: written whatever holds the claim, which goes only when the edit finishes a job
  // another node holds: that node's outcome, were it written, would undo the edit). With each,
  // in the same transaction: the job.completed events of the jobs it completes that have a
  // callback_url, its attempt history and the suppressions it adds. Two statements in all.
  void add_outcomes(Pipeline& p, std::span<const JobUpdate> updates, const std::string* owner,
                    std::vector<std::int64_t>& lost) {
    if (updates.empty()) return;
    static constexpr const char* kEvents =
        "WITH j AS (SELECT seq, ref, callback_url FROM jobs WHERE seq = ANY($1::bigint[]) AND completed = 0 AND "
        "callback_url IS NOT NULL AND ($2::text IS NULL OR claimed_by = $2::text) ORDER BY seq FOR UPDATE), "
        "ins AS (INSERT INTO webhook_outbox(id, job_ref, url, body, created, next_at) SELECT e.id, j.ref, j.callback_url, "
        "e.body, e.created, e.next_at FROM j JOIN unnest($1::bigint[], $3::text[], $4::text[], $5::bigint[], "
        "$6::bigint[]) AS e(seq, id, body, created, next_at) ON e.seq = j.seq RETURNING 1) "
        "SELECT pg_notify($7, $8) WHERE EXISTS (SELECT 1 FROM ins)";
    static constexpr const char* kOutcomes =
        "WITH v AS (SELECT * FROM unnest($1::bigint[], $2::text[], $3::int[], $4::bigint[], $5::bigint[], $6::int[]) "
        "AS v(seq, recipients, started, completed, next_at, outcome)), "
        "o AS (SELECT seq, started, outcome FROM jobs WHERE seq = ANY($1::bigint[]) AND ($7::text IS NULL OR "
        "claimed_by = $7::text) ORDER BY seq FOR UPDATE), "
        "u AS (UPDATE jobs SET recipients = v.recipients, started = v.started, completed = v.completed, next_at = "
        "v.next_at, outcome = v.outcome, message = CASE WHEN v.outcome <> 0 THEN NULL ELSE jobs.message END, "
        "claimed_by = CASE WHEN $7::text IS NOT NULL OR (v.outcome <> 0 AND jobs.claimed_by <> $8::text) THEN NULL "
        "ELSE jobs.claimed_by END, lease_until = CASE WHEN $7::text IS NOT NULL OR (v.outcome <> 0 AND "
        "jobs.claimed_by <> $8::text) THEN NULL ELSE jobs.lease_until END, on_wire = CASE WHEN $7::text IS NOT NULL "
        "THEN 0 ELSE jobs.on_wire END FROM v JOIN o ON o.seq = v.seq WHERE jobs.seq = v.seq AND ($7::text IS NULL OR "
        "jobs.claimed_by = $7::text) RETURNING jobs.seq, jobs.started, jobs.outcome, o.started AS was_started, "
        "o.outcome AS was_outcome), "
        "h AS (INSERT INTO attempts(seq, address, time, smtp_code, smtp_reply, host) SELECT a.seq, a.address, a.time, "
        "a.code, a.reply, a.host FROM unnest($9::bigint[], $10::text[], $11::bigint[], $12::int[], $13::text[], "
        "$14::text[]) WITH ORDINALITY AS a(seq, address, time, code, reply, host, n) WHERE a.seq IN (SELECT seq FROM "
        "u) ORDER BY a.n), "
        "s AS (INSERT INTO suppressions(address, reason, created, smtp_code, smtp_reply) SELECT x.address, x.reason, "
        "x.created, x.code, x.reply FROM unnest($15::bigint[], $16::text[], $17::text[], $18::bigint[], $19::int[], "
        "$20::text[]) WITH ORDINALITY AS x(seq, address, reason, created, code, reply, n) WHERE x.seq IN (SELECT seq "
        "FROM u) ORDER BY x.n ON CONFLICT(address) DO NOTHING), "
        "c AS (INSERT INTO job_counts(node, queued, deferred, completed, failed) SELECT $8::text, "
        "count(*) FILTER (WHERE outcome = 0 AND started = 0) - count(*) FILTER (WHERE was_outcome = 0 AND "
        "was_started = 0), count(*) FILTER (WHERE outcome = 0 AND started <> 0) - count(*) FILTER (WHERE "
        "was_outcome = 0 AND was_started <> 0), count(*) FILTER (WHERE outcome = 1) - count(*) FILTER (WHERE "
        "was_outcome = 1), count(*) FILTER (WHERE outcome = 2) - count(*) FILTER (WHERE was_outcome = 2) FROM u "
        "ON CONFLICT(node) DO UPDATE SET queued = job_counts.queued + EXCLUDED.queued, deferred = "
        "job_counts.deferred + EXCLUDED.deferred, completed = job_counts.completed + EXCLUDED.completed, failed = "
        "job_counts.failed + EXCLUDED.failed) "
        "SELECT seq FROM u";
    ArrayLiteral seq, recipients, started, completed, next_at, outcome;
    ArrayLiteral h_seq, h_address, h_time, h_code, h_reply, h_host;
    ArrayLiteral s_seq, s_address, s_reason, s_created, s_code, s_reply;
    ArrayLiteral e_seq, e_id, e_body, e_created, e_next_at;
    // One outcome per job and commit (the batcher keeps only the latest); should two come, the
    // first is written and the second counts as lost, as two UPDATEs in a row would have it.
    auto asked = std::make_shared<std::vector<std::int64_t>>();
    std::unordered_set<std::int64_t> seen;
    for (const auto& u : updates) {
      asked->push_back(u.seq);
      if (!seen.insert(u.seq).second) continue;
      seq.add(u.seq);
      recipients.add(job::recipients_to_store(u.recipients));
      started.add(std::int64_t{u.started});
      completed.add(u.completed);
      next_at.add_or_null(u.next_at_ms);
      outcome.add(static_cast<std::int64_t>(u.outcome));
      for (const auto& a : u.attempts) {
        h_seq.add(u.seq);
        h_address.add(a.address);
        h_time.add(a.time);
        h_code.add(std::int64_t{a.smtp_code});
        h_reply.add(a.smtp_reply);
        h_host.add(a.host);
      }
      for (const auto& x : u.suppress) {
        s_seq.add(u.seq);
        s_address.add(x.address);
        s_reason.add(x.reason);
        s_created.add(x.created);
        s_code.add(std::int64_t{x.smtp_code});
        s_reply.add(x.smtp_reply);
      }
      if (u.outcome != Outcome::kPending) {
        // The event as it will be sent, should the job have a callback_url (known only to the
        // row, which the statement reads and locks).
        job::Job j = job_after(u);
        j.started = true;
        std::string id = new_uuid_v7(u.completed * 1000);
        e_seq.add(u.seq);
        e_body.add(webhook::completed_event_body(id, u.completed, j));
        e_id.add(id);
        e_created.add(u.completed);
        e_next_at.add(u.completed * 1000);
      }
    }
    auto owner_param = [owner](Params& q) -> Params& { return owner ? q.add(*owner) : q.add_null(); };
    if (!e_seq.empty()) {
      Params q;
      q.add(e_seq.str());
      owner_param(q).add(e_id.str()).add(e_body.str()).add(e_created.str()).add(e_next_at.str());
      q.add(kChannel).add(note_payload("!"));  // heard by the other nodes' senders, if any event is written
      p.add_unprepared(kEvents, std::move(q));
    }
    Params q;
    q.add(seq.str()).add(recipients.str()).add(started.str()).add(completed.str()).add(next_at.str()).add(outcome.str());
    owner_param(q).add(options_.node_id);
    q.add(h_seq.str()).add(h_address.str()).add(h_time.str()).add(h_code.str()).add(h_reply.str()).add(h_host.str());
    q.add(s_seq.str()).add(s_address.str()).add(s_reason.str()).add(s_created.str()).add(s_code.str()).add(s_reply.str());
    p.add_unprepared(kOutcomes, std::move(q), [asked, &lost](const Res& r) {
      std::unordered_set<std::int64_t> written;
      for (int i = 0; i < r.rows(); ++i) written.insert(r.i64(i, 0));
      for (auto s : *asked)
        if (!written.erase(s)) lost.push_back(s);
    });
  }

  bool insert_suppression(Conn& conn, const SuppressionRecord& s) {
    return conn
               .run("insert_suppression",
                    "INSERT INTO suppressions(address, reason, created, smtp_code, smtp_reply) VALUES($1,$2,$3,$4,$5) "
                    "ON CONFLICT(address) DO NOTHING",
                    Params().add(s.address).add(s.reason).add(s.created).add(s.smtp_code).add(pg_text(s.smtp_reply)))
               .affected() > 0;
  }

  // An operator's edit: the row is locked, read, changed and written back in the transaction
  // (add_outcomes without an owner: the claim stays, but for an edit that finishes a job
  // another node holds; that node drops the job when it hears of the change, and one already
  // on the wire finishes without its outcome being recorded).
  void write_edit(Conn& conn, JobEdit& e) {
    e.found = false;
    e.result.reset();
    Res r = conn.run("edit_read",
                     "SELECT seq, ref, submitted, completed, started, sender, recipients, submitted_by FROM jobs "
                     "WHERE seq = $1 FOR UPDATE",
                     Params().add(e.seq));
    if (r.rows() == 0) return;
    e.found = true;
    job::Job stored = row_to_job(r, 0, false);
    e.result = e.apply(stored);
    if (!e.result) return;
    e.result->seq = e.seq;
    if (e.result->ref.empty()) e.result->ref = stored.ref;
    if (e.result->submitted == 0) e.result->submitted = stored.submitted;
    Pipeline p;
    std::vector<std::int64_t> unused;  // an edit holds the row it writes: nothing is lost
    add_outcomes(p, std::span<const JobUpdate>(&*e.result, 1), nullptr, unused);
    p.run(conn);
  }

  std::unique_ptr<Conn> listen_connection() {
    auto conn = std::make_unique<Conn>(options_.url);
    conn->exec((std::string("LISTEN ") + kChannel).c_str());
    return conn;
  }

  void listen_loop(std::unique_ptr<Conn> conn, const std::function<void(const std::string&)>& on_change) {
    while (!stop_listening_) {
      try {
        if (!conn || !conn->ok()) {
          conn = listen_connection();
          // Whatever was missed while not listening: every cached status, claimable job, setting.
          on_change("*");
        }
        pollfd pfd{PQsocket(conn->get()), POLLIN, 0};
        int n = ::poll(&pfd, 1, 200);
        if (n < 0) continue;
        if (n > 0 && !PQconsumeInput(conn->get())) throw StoreError(PQerrorMessage(conn->get()));
        while (PGnotify* note = PQnotifies(conn->get())) {
          std::string payload = note->extra ? note->extra : "";
          PQfreemem(note);
          auto nl = payload.find('\n');
          if (nl == std::string::npos || payload.compare(0, nl, options_.node_id) == 0) continue;  // ours
          for (std::size_t at = nl + 1;;) {
            auto end = payload.find('\n', at);
            on_change(payload.substr(at, end == std::string::npos ? std::string::npos : end - at));
            if (end == std::string::npos) break;
            at = end + 1;
          }
        }
      } catch (const std::exception& e) {
        spdlog::warn("postgres store: the LISTEN connection failed ({}); reconnecting", e.what());
        conn.reset();
        for (int i = 0; i < 10 && !stop_listening_; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    }
  }

  PostgresOptions options_;
  Pool pool_;
  std::atomic<bool> stop_listening_{false};
  std::thread listener_;
};

}  // namespace

std::unique_ptr<SharedStore> open_postgres(const PostgresOptions& options) {
  return std::make_unique<PostgresStore>(options);
}

}  // namespace websmtp::store
