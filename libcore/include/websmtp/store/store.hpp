#pragma once
// The durable job store. The queue and the service layer talk to this interface only;
// SqliteStore is the embedded default. Write methods are called from one thread (the
// WriteBatcher); read and claim methods may be called from any thread.
//
// Claims. A job is attempted by one node at a time: the node that holds its claim. A claim
// has an owner (a node id) and a lease. claim_due() takes due jobs nobody holds (or whose
// lease expired), a commit's inserts are claimed by the submitting node (a fresh submit goes
// straight to one of its workers), renew() extends a node's leases, and the commit that writes
// a job's outcome releases its claim in the same transaction (so a released job is never read
// back in its old state). release() gives claims up without an outcome (a job the node will
// not attempt after all, shutdown).
//
// A shared store (PostgreSQL, STORE=postgres) persists claims as columns (claimed_by,
// lease_until): claim_due is `UPDATE ... WHERE seq IN (SELECT ... FOR UPDATE SKIP LOCKED)
// RETURNING`, a dead node's jobs come back once their lease (LEASE_TIMEOUT) expires, and an
// outcome commit should check it still holds the claim (a node that lost it must not overwrite
// the taker's state).
//
// DECISION for SQLite: claims live inside the store object, not in a column. One process per
// database file is enforced (an exclusive lock on `<db>.lock`, taken at open), so no other
// node can contend for a claim and leases never need to expire; the previous process's claims
// are void at open simply because memory does not survive it, so recovery after kill -9
// starts delivering at once instead of waiting out a lease. A persisted claim would cost a
// write (of a row that holds the message) per claim and per refill, contend with the group
// commit for SQLite's single writer, and a reset of stale claims at every start; the submit
// path and the delivery drain would pay for a contention that cannot happen.
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "websmtp/job/model.hpp"

namespace websmtp::store {

// Most finished jobs one purge_finished() call deletes.
constexpr std::int64_t kPurgeSlice = 2000;

// How long an Idempotency-Key is honoured (api.md: 24 h).
constexpr std::int64_t kIdempotencyWindowS = 24 * 3600;

// The claim owner of a single-node gateway, and how long a claim lasts without renewal
// (api.md: LEASE_TIMEOUT, 60 s).
inline constexpr std::string_view kLocalOwner = "local";
constexpr std::int64_t kDefaultLeaseMs = 60'000;

// A failed store operation (disk full, I/O error, corruption).
struct StoreError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Job outcome classes, kept as a column so counts and purges need no JSON parsing.
enum class Outcome : int { kPending = 0, kDelivered = 1, kFailed = 2 };

// One SMTP attempt for one recipient (the admin API's history), written with the outcome of the
// attempt, in the same transaction.
struct AttemptRecord {
  std::string address;  // the recipient
  std::int64_t time = 0;  // Unix seconds
  int smtp_code = 0;      // 0: no reply (connection failed, timed out)
  std::string smtp_reply;
  std::string host;  // the SMTP host that answered (relay or MX); empty: none
};

// A recipient address that is never sent to (admin API). `address` is normalised by the
// caller (see service/suppressions.hpp).
struct SuppressionRecord {
  std::string address;
  std::string reason;  // "manual" | "bounce"
  std::int64_t created = 0;  // Unix seconds
  int smtp_code = 0;         // bounce: the reply that added it
  std::string smtp_reply;
};

struct JobUpdate {
  std::int64_t seq = 0;
  std::string ref;             // not written: carried for the status cache, logs and the webhook event
  std::int64_t submitted = 0;  // not written: carried likewise
  bool first_attempt = false;  // not written: the job was "not started" before this attempt
  std::vector<job::Recipient> recipients;
  bool started = true;
  std::int64_t completed = 0;              // Unix seconds; 0 while pending
  std::optional<std::int64_t> next_at_ms;  // when to try again; nullopt once final
  Outcome outcome = Outcome::kPending;
  // The attempts this update records (history), and the addresses its permanent rejects
  // suppress; both written in the same transaction as the outcome.
  std::vector<AttemptRecord> attempts;
  std::vector<SuppressionRecord> suppress;
  // Not written: the job had already been finished by an operator's edit (a cancel) while
  // this attempt was in flight; the update is that edit applied again over the attempt's
  // outcome. `was` is the outcome the edit had committed.
  bool refinish = false;
  Outcome was = Outcome::kPending;
};

// The job as an update leaves it (without sender, message and submitter).
inline job::Job job_after(const JobUpdate& u) {
  job::Job j;
  j.seq = u.seq;
  j.ref = u.ref;
  j.submitted = u.submitted;
  j.started = u.started;
  j.completed = u.completed;
  j.recipients = u.recipients;
  return j;
}

// An operator's change to a stored job (admin API: retry, cancel). It is applied inside the
// group commit, after that commit's outcomes, to the job as stored then (read and written in
// the same transaction), so it never races an attempt's outcome. `apply` gets the job without
// its message and returns the job's new state, or nullopt to leave it unchanged. An edit
// never takes or gives up a claim.
struct JobEdit {
  std::int64_t seq = 0;
  std::function<std::optional<JobUpdate>(const job::Job&)> apply;
  // Out (set by commit()): whether the job was found, and what was written.
  bool found = false;
  std::optional<JobUpdate> result;
};

// Which jobs list_jobs() returns (the admin API's states, but in_flight: only the node
// knows what its workers hold).
enum class JobFilter { kAll, kQueued, kDeferred, kCompleted, kFailed };
// What one group commit writes, in one transaction.
struct Commit {
  // Their seq is assigned. A shared store leaves out a keyed job whose Idempotency-Key another
  // node's commit holds (within the window), and the rest of its run: their seq stays 0 (the
  // submitter answers the replay). SQLite, one process reserving keys in memory, never meets
  // that case and throws on it.
  std::span<job::Job* const> inserts;
  // Sizes of consecutive runs of `inserts` submitted together (POST /mail/batch), summing to
  // inserts.size(); empty: every insert stands alone. A run shares the Idempotency-Key of its
  // first job (the others' keys are ignored), and find_idempotency() returns all its refs.
  std::span<const std::uint32_t> batches;
  std::span<const JobUpdate> updates;  // outcomes; each releases the job's claim
  std::span<JobEdit* const> edits;     // applied after the updates
  std::string_view owner;              // claims the inserts (empty: left unclaimed)
  std::int64_t lease_until_ms = 0;
};

struct Counts {
  std::int64_t queued = 0;     // never attempted
  std::int64_t deferred = 0;   // attempted, waiting for a retry
  std::int64_t completed = 0;  // finished, every recipient delivered
  std::int64_t failed = 0;     // finished, at least one recipient failed
};

struct IdempotencyHit {
  std::string ref;  // the (first) job the key was used for
  std::string request_hash;
  std::int64_t submitted = 0;
  std::vector<std::string> refs;  // every job stored under the key, in order ({ref} unless a batch)
};

// An API key as stored: never the key itself, only its SHA-256 (the auth layer owns the
// meaning of type and policy; the store keeps them as given).
struct ApiKeyRecord {
  std::string id;
  std::string name;
  std::string type;         // "secret" | "publishable"
  std::string prefix;       // the key's first characters, to recognise it in a list
  std::string hash;         // hex SHA-256 of the full key
  std::string policy_json;  // the key's policy as a JSON object
  std::int64_t created = 0;  // Unix seconds
  std::int64_t last_used = 0;
  std::int64_t revoked = 0;  // Unix seconds; 0 while live
};

// A webhook event in the outbox (webhook/sender.hpp). The commit that completes a job with a
// callback_url writes its event in the same transaction, so no crash can lose it.
struct WebhookEvent {
  std::string id;
  std::string job_ref;
  std::string url;
  std::string body;          // the exact bytes POSTed on every attempt
  std::int64_t created = 0;  // Unix seconds
  int attempts = 0;          // failed attempts so far
  std::int64_t next_at_ms = 0;
};

class Store {
 public:
  virtual ~Store() = default;

  // Inserts and updates in one transaction (the group commit); claims and releases as
  // described above. Throws StoreError, and then nothing of it is stored.
  virtual void commit(const Commit& c) = 0;
  // Durably inserts the jobs, unclaimed, in one transaction and assigns their seq.
  void insert(std::span<job::Job* const> jobs) { commit(Commit{.inserts = jobs}); }
  // Applies delivery outcomes in one transaction.
  void update(std::span<const JobUpdate> updates) { commit(Commit{.updates = updates}); }
  // Deletes finished jobs completed before the given time, at most a slice of them per call
  // (call again while it returns a full slice); returns what it removed.
  virtual Counts purge_finished(std::int64_t completed_before_s) = 0;

  // Claims up to `limit` unfinished jobs due at `now_ms` that nobody holds, oldest due first,
  // for `owner` until now_ms + lease_ms, and returns them with their message. Fewer than
  // `limit` means no other claimable job was due.
  virtual std::vector<job::Job> claim_due(std::string_view owner, std::int64_t now_ms, std::int64_t lease_ms,
                                          std::size_t limit) = 0;
  // Extends every lease `owner` holds to now_ms + lease_ms; returns how many claims it holds.
  virtual std::size_t renew(std::string_view owner, std::int64_t now_ms, std::int64_t lease_ms) = 0;
  // Gives up `owner`'s claims on these jobs (without an outcome): they are claimable again.
  virtual void release(std::string_view owner, std::span<const std::int64_t> seqs) = 0;

  // The job (without its message body), or nullopt.
  virtual std::optional<job::Job> find(std::string_view ref) = 0;
  virtual std::optional<job::Job> find_seq(std::int64_t seq) = 0;
  // Seqs of unfinished jobs due at `now_ms`, oldest first, claimed or not.
  virtual std::vector<std::int64_t> due(std::int64_t now_ms, std::size_t limit) = 0;
  // Full jobs (with message) by seq that are still due at `now_ms`; others are left out.
  virtual std::vector<job::Job> load(std::span<const std::int64_t> seqs, std::int64_t now_ms) = 0;
  // The earliest retry time after `now_ms`, if any job waits for one.
  virtual std::optional<std::int64_t> next_due_after(std::int64_t now_ms) = 0;
  virtual Counts counts() = 0;
  // The counts as they are now, counted later: the store's state is pinned before this
  // returns (jobs submitted or finished afterwards are not in them), the slow part runs when
  // the returned function is called, on any thread, once. The default counts at once.
  virtual std::function<Counts()> counts_as_of_now() {
    return [c = counts()] { return c; };
  }
  // Submit time of the oldest never-attempted job, but for the jobs in `attempting` (out with a
  // worker now: in flight, not queued).
  virtual std::optional<std::int64_t> oldest_queued_submitted(std::span<const std::int64_t> attempting = {}) = 0;
  virtual std::optional<IdempotencyHit> find_idempotency(std::string_view key) = 0;

  // API keys (rarely written: created, revoked, last use noted now and then).
  virtual void insert_key(const ApiKeyRecord& key) = 0;
  // False when there is no such live key.
  virtual bool revoke_key(std::string_view id, std::int64_t now_s) = 0;
  virtual void note_keys_used(std::span<const std::pair<std::string, std::int64_t>> id_and_time) = 0;
  virtual std::vector<ApiKeyRecord> list_keys() = 0;

  // ---- Admin API.
  // Jobs in `filter`, newest first (by seq, descending), with seq < before_seq (0: from the
  // newest), at most `limit`. Keyset paging: a page never repeats or skips a job whatever is
  // inserted or finished meanwhile. Without their message.
  virtual std::vector<job::Job> list_jobs(JobFilter filter, std::int64_t before_seq, std::size_t limit) = 0;
  // The stored message of a job (dropped once the job is finished: nullopt then).
  virtual std::optional<std::string> find_message(std::int64_t seq) = 0;
  // Every attempt recorded for the job, oldest first.
  virtual std::vector<AttemptRecord> attempts(std::int64_t seq) = 0;

  // Suppressions (rare writes, on a connection of their own like the keys').
  virtual std::vector<SuppressionRecord> list_suppressions() = 0;
  // True when the address was not suppressed before (an existing entry is left as it is).
  virtual bool add_suppression(const SuppressionRecord& s) = 0;
  // False when there was no such entry.
  virtual bool remove_suppression(std::string_view address) = 0;

  // Small durable settings of the whole gateway (e.g. "paused").
  virtual std::optional<std::string> setting(std::string_view key) = 0;
  virtual void put_setting(std::string_view key, std::string_view value) = 0;

  // The webhook outbox. A store without one (the defaults) never writes an event, and says so
  // here: websmtpd then refuses to start with WEBHOOK_SECRET rather than accept callbacks it
  // would never send.
  virtual bool has_webhook_outbox() const { return false; }
  // Up to `limit` events due at `now_ms`, earliest first. With `claim_ms` > 0, a store shared by
  // several nodes claims them for this node: none is due again, for any node, before
  // now_ms + claim_ms, unless this node's webhook_failed() says otherwise (one sender per event;
  // a dead node's events come back when its claims lapse). A store of one process ignores it.
  virtual std::vector<WebhookEvent> webhook_due(std::int64_t /*now_ms*/, std::size_t /*limit*/,
                                                std::int64_t /*claim_ms*/) {
    return {};
  }
  // The earliest next_at_ms of any event, if there is one.
  virtual std::optional<std::int64_t> webhook_next_at() { return std::nullopt; }
  // The event was delivered (or given up): it leaves the outbox.
  virtual void webhook_delivered(std::string_view /*id*/) {}
  // The event's attempt failed: `attempts` failures so far, the next one at `next_at_ms`. A shared
  // store applies it only while this node still holds the event's claim (another node that
  // took over a lapsed claim decides now).
  virtual void webhook_failed(std::string_view /*id*/, int /*attempts*/, std::int64_t /*next_at_ms*/) {}
};

struct SqliteOptions {
  std::string path;  // database file; `<path>.lock` is held while the store is open
  bool synchronous_full = false;
};

// The schema version this binary writes. Opening an older database migrates it forward (in one
// transaction); a newer one is refused with StoreError.
int sqlite_schema_version();

// Throws StoreError when the database cannot be opened, is newer than this binary, or is in
// use by another process.
std::unique_ptr<Store> open_sqlite(const SqliteOptions& options);

}  // namespace websmtp::store
