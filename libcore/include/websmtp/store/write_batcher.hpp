#pragma once
// Group commit: one thread owns the store's write side. Submits and delivery outcomes
// queue here; each round commits everything pending in one transaction, then runs the
// callbacks (which send the HTTP 202s and release jobs to the dispatcher). Concurrent
// submitters therefore share a commit instead of paying one each.
//
// When a commit fails (disk full, I/O error), the new jobs of that round are refused at once
// (their clients get a 503) and the outcomes are kept and committed again, with back-off,
// until the store takes them; a later outcome for the same job supersedes a kept one. A kept
// deferral whose retry time comes while the store still fails is handed back (RetryDue): the
// job is attempted again on time from its in-memory state, and that attempt's outcome, which
// includes this one, is what gets committed.
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "websmtp/common/clock.hpp"
#include "websmtp/store/store.hpp"

namespace websmtp::store {

class WriteBatcher {
 public:
  // ok=false: the job was not stored (error says why); the client must not get a 202.
  using InsertDone = std::function<void(job::Job&& job, bool ok, const std::string& error)>;
  // All the jobs of one insert_many(), in the order given, stored together or not at all.
  using BatchDone = std::function<void(std::vector<job::Job>&& jobs, bool ok, const std::string& error)>;
  using UpdateDone = std::function<void(const JobUpdate& update)>;
  using PurgeDone = std::function<void(const Counts& removed)>;
  // A kept, uncommitted outcome whose retry is due (next_at_ms <= now). Returns true when it
  // took the update (moving from it) to attempt the job again; false leaves it kept.
  using RetryDue = std::function<bool(JobUpdate& update)>;
  // After an edit's round: ok=false when it could not be committed (nothing of it was written;
  // edits are not retried, the operator is told). Runs on the commit thread. Returning true
  // keeps the edit for the job's next outcome, which it is applied to again before that is
  // written (a cancel while an attempt is in flight: the attempt's outcome must not bring the
  // job back); that outcome is then marked `refinish`.
  using EditDone = std::function<bool(const JobEdit& edit, bool ok, const std::string& error)>;

  struct Options {
    std::size_t max_batch = 1024;  // jobs per commit (an insert_many() larger than this commits alone)
    std::int64_t status_ttl_s = 7 * 86400;
    std::int64_t purge_interval_ms = 60'000;
    std::int64_t retry_min_ms = 100;  // back-off after a failed commit, doubling up to retry_max_ms
    std::int64_t retry_max_ms = 5000;
    std::string owner = std::string(kLocalOwner);  // claims the inserted jobs (empty: nobody)
    std::int64_t lease_ms = kDefaultLeaseMs;
    // Delivery outcomes alone wait up to this long (or until outcome_batch of them are
    // pending) so that one transaction commits many: nobody waits on an outcome's commit the
    // way a client waits on a submit's. Submits never wait.
    std::int64_t outcome_linger_ms = 0;
    std::size_t outcome_batch = 256;
  };

  WriteBatcher(Store& store, const Clock& clock, Options options, UpdateDone on_update, PurgeDone on_purge,
               RetryDue on_retry_due = {});
  ~WriteBatcher();
  WriteBatcher(const WriteBatcher&) = delete;
  WriteBatcher& operator=(const WriteBatcher&) = delete;

  void insert(job::Job job, InsertDone done);
  // All or nothing: the jobs are committed in one transaction, never split across two.
  void insert_many(std::vector<job::Job> jobs, BatchDone done);
  // Outcomes are never dropped: on a store error they are retried until they commit (or,
  // when due for a retry, handed back through RetryDue).
  void update(JobUpdate update);
  // An operator's edit of a stored job (store.hpp), committed in the next round (no linger).
  void edit(JobEdit edit, EditDone done);
  // Commits what is pending and stops the thread.
  void stop();

  // True while the last commit failed (store full or failing); submit answers 503 then.
  bool failing() const;

 private:
  struct PendingInsert {
    job::Job job;  // insert()
    InsertDone done;
    std::vector<job::Job> jobs;  // insert_many()
    BatchDone batch_done;
    std::size_t size() const { return batch_done ? jobs.size() : 1; }
  };
  void run();
  bool commit_round(std::vector<PendingInsert>& inserts, std::vector<JobUpdate>& updates,
                    std::vector<std::pair<JobEdit, EditDone>>& edits);
  void hand_back_due(std::vector<JobUpdate>& updates);
  void reapply_kept_edits(std::vector<JobUpdate>& updates);
  void purge_if_due(std::int64_t& next_purge);

  Store& store_;
  const Clock& clock_;
  Options options_;
  UpdateDone on_update_;
  PurgeDone on_purge_;
  RetryDue on_retry_due_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<PendingInsert> inserts_;
  std::vector<JobUpdate> updates_;
  std::vector<std::pair<JobEdit, EditDone>> edits_;
  std::int64_t incoming_due_ms_ = INT64_MAX;  // earliest next_at_ms in updates_
  std::int64_t first_update_ms_ = 0;          // when updates_ last became non-empty
  std::int64_t wake_at_ = INT64_MIN;          // what the commit thread sleeps until (MIN: it does not sleep)
  bool stopping_ = false;
  bool failing_ = false;
  // Per-round buffers of the commit thread, kept to reuse their capacity.
  std::vector<job::Job*> insert_ptrs_;
  std::vector<std::uint32_t> batch_sizes_;
  std::vector<JobEdit*> edit_ptrs_;
  // Edits kept for a job's next outcome (commit thread only), with the outcome they wrote.
  struct KeptEdit {
    std::function<std::optional<JobUpdate>(const job::Job&)> apply;
    Outcome wrote = Outcome::kPending;
  };
  std::unordered_map<std::int64_t, KeptEdit> kept_edits_;
  std::thread thread_;
};

}  // namespace websmtp::store
