#pragma once
// The durable job store. The queue and the service layer talk to this interface only;
// SqliteStore is the embedded default. Write methods are called from one thread (the
// WriteBatcher); read methods may be called from any thread.
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "websmtp/job/model.hpp"

namespace websmtp::store {

// A failed store operation (disk full, I/O error, corruption). Carries whether it may pass.
// Most finished jobs one purge_finished() call deletes.
constexpr std::int64_t kPurgeSlice = 2000;

// How long an Idempotency-Key is honoured (api.md: 24 h).
constexpr std::int64_t kIdempotencyWindowS = 24 * 3600;

struct StoreError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Job outcome classes, kept as a column so counts and purges need no JSON parsing.
enum class Outcome : int { kPending = 0, kDelivered = 1, kFailed = 2 };

struct JobUpdate {
  std::int64_t seq = 0;
  std::string ref;             // not written: carried for the status cache and logs
  std::int64_t submitted = 0;  // not written: carried likewise
  bool first_attempt = false;  // not written: the job was "not started" before this attempt
  std::vector<job::Recipient> recipients;
  bool started = true;
  std::int64_t completed = 0;              // Unix seconds; 0 while pending
  std::optional<std::int64_t> next_at_ms;  // when to try again; nullopt once final
  Outcome outcome = Outcome::kPending;
};

struct Counts {
  std::int64_t queued = 0;     // never attempted
  std::int64_t deferred = 0;   // attempted, waiting for a retry
  std::int64_t completed = 0;  // finished, every recipient delivered
  std::int64_t failed = 0;     // finished, at least one recipient failed
};

struct IdempotencyHit {
  std::string ref;
  std::string request_hash;
  std::int64_t submitted = 0;
};

class Store {
 public:
  virtual ~Store() = default;

  // Durably inserts the jobs in one transaction and assigns their seq. Throws StoreError.
  virtual void insert(std::span<job::Job* const> jobs) = 0;
  // Applies delivery outcomes in one transaction. Throws StoreError.
  virtual void update(std::span<const JobUpdate> updates) = 0;
  // Inserts and updates in one transaction (the group commit). Throws StoreError.
  virtual void commit(std::span<job::Job* const> inserts, std::span<const JobUpdate> updates) = 0;
  // Deletes finished jobs completed before the given time, at most a slice of them per call
  // (call again while it returns a full slice); returns what it removed.
  virtual Counts purge_finished(std::int64_t completed_before_s) = 0;

  // The job (without its message body), or nullopt.
  virtual std::optional<job::Job> find(std::string_view ref) = 0;
  virtual std::optional<job::Job> find_seq(std::int64_t seq) = 0;
  // Seqs of unfinished jobs due at `now_ms`, oldest first.
  virtual std::vector<std::int64_t> due(std::int64_t now_ms, std::size_t limit) = 0;
  // Full jobs (with message) by seq that are still due at `now_ms`; others are left out.
  virtual std::vector<job::Job> load(std::span<const std::int64_t> seqs, std::int64_t now_ms) = 0;
  // The earliest retry time after `now_ms`, if any job waits for one.
  virtual std::optional<std::int64_t> next_due_after(std::int64_t now_ms) = 0;
  virtual Counts counts() = 0;
  // Submit time of the oldest never-attempted job.
  virtual std::optional<std::int64_t> oldest_queued_submitted() = 0;
  virtual std::optional<IdempotencyHit> find_idempotency(std::string_view key) = 0;
};

struct SqliteOptions {
  std::string path;  // database file
  bool synchronous_full = false;
};

std::unique_ptr<Store> open_sqlite(const SqliteOptions& options);

}  // namespace websmtp::store
