#include "websmtp/store/write_batcher.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <limits>
#include <unordered_map>

#include "websmtp/common/metrics.hpp"
#include "websmtp/common/thread.hpp"

namespace websmtp::store {

namespace {

constexpr std::int64_t kNever = std::numeric_limits<std::int64_t>::max();

// Adds `incoming` to the kept outcomes (moving from it). An outcome for a job already kept
// supersedes the kept one, but keeps its first_attempt: the store still has the job as it was
// before the older attempt.
void supersede(std::vector<JobUpdate>& kept, std::vector<JobUpdate>& incoming) {
  if (kept.empty()) {
    std::swap(kept, incoming);
    return;
  }
  std::unordered_map<std::int64_t, std::size_t> at;
  at.reserve(kept.size() + incoming.size());
  for (std::size_t i = 0; i < kept.size(); ++i) at.emplace(kept[i].seq, i);
  for (auto& u : incoming) {
    auto [it, fresh] = at.emplace(u.seq, kept.size());
    if (fresh) {
      kept.push_back(std::move(u));
      continue;
    }
    // The older attempt's history and suppressions are not in the newer outcome: keep them.
    JobUpdate& old = kept[it->second];
    bool first_attempt = old.first_attempt;
    u.attempts.insert(u.attempts.begin(), std::make_move_iterator(old.attempts.begin()),
                      std::make_move_iterator(old.attempts.end()));
    u.suppress.insert(u.suppress.begin(), std::make_move_iterator(old.suppress.begin()),
                      std::make_move_iterator(old.suppress.end()));
    old = std::move(u);
    old.first_attempt = first_attempt;
  }
  incoming.clear();
}

std::int64_t earliest_retry(const std::vector<JobUpdate>& updates) {
  std::int64_t t = kNever;
  for (const auto& u : updates)
    if (u.next_at_ms) t = std::min(t, *u.next_at_ms);
  return t;
}

}  // namespace

WriteBatcher::WriteBatcher(Store& store, const Clock& clock, Options options, UpdateDone on_update, PurgeDone on_purge,
                           RetryDue on_retry_due)
    : store_(store),
      clock_(clock),
      options_(std::move(options)),
      on_update_(std::move(on_update)),
      on_purge_(std::move(on_purge)),
      on_retry_due_(std::move(on_retry_due)),
      thread_([this] {
        name_this_thread("ws-commit");
        run();
      }) {}

WriteBatcher::~WriteBatcher() { stop(); }

void WriteBatcher::insert(job::Job job, InsertDone done) {
  {
    std::lock_guard lock(mu_);
    if (!stopping_) {
      inserts_.push_back({std::move(job), std::move(done), {}, {}});
      // The commit thread takes every pending insert when it wakes: one wake-up is enough.
      if (inserts_.size() == 1) cv_.notify_one();
      return;
    }
  }
  done(std::move(job), false, "the server is shutting down");
}

void WriteBatcher::insert_many(std::vector<job::Job> jobs, BatchDone done) {
  if (jobs.empty()) return done(std::move(jobs), true, {});
  {
    std::lock_guard lock(mu_);
    if (!stopping_) {
      inserts_.push_back({{}, {}, std::move(jobs), std::move(done)});
      if (inserts_.size() == 1) cv_.notify_one();
      return;
    }
  }
  done(std::move(jobs), false, "the server is shutting down");
}

void WriteBatcher::update(JobUpdate update) {
  std::lock_guard lock(mu_);
  std::int64_t due = update.next_at_ms.value_or(kNever);
  incoming_due_ms_ = std::min(incoming_due_ms_, due);
  if (updates_.empty()) first_update_ms_ = clock_.now_ms();
  updates_.push_back(std::move(update));
  // The first pending outcome wakes the thread (which then lingers for more), a full batch
  // ends the linger; others only if due before the time it sleeps until (while commits fail,
  // a deferral may have to be handed back earlier).
  if (updates_.size() == 1 || updates_.size() == options_.outcome_batch || due < wake_at_) cv_.notify_one();
}

void WriteBatcher::edit(JobEdit edit, EditDone done) {
  {
    std::lock_guard lock(mu_);
    if (!stopping_) {
      edits_.emplace_back(std::move(edit), std::move(done));
      if (edits_.size() == 1) cv_.notify_one();
      return;
    }
  }
  done(edit, false, "the server is shutting down");
}

bool WriteBatcher::failing() const {
  std::lock_guard lock(mu_);
  return failing_;
}

void WriteBatcher::stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_ && !thread_.joinable()) return;
    stopping_ = true;
    cv_.notify_one();
  }
  if (thread_.joinable()) thread_.join();
}

void WriteBatcher::run() {
  std::vector<PendingInsert> inserts;
  std::vector<JobUpdate> updates;  // this round's outcomes, and those kept after a failed commit
  std::vector<std::pair<JobEdit, EditDone>> edits;
  std::int64_t next_purge = clock_.now_ms();
  std::int64_t backoff_ms = 0;     // > 0 while commits fail
  std::int64_t retry_at = kNever;  // next commit attempt while they do
  std::int64_t kept_due = kNever;  // earliest retry time among the kept outcomes
  int failed_rounds_while_stopping = 0;
  for (;;) {
    bool stopping;
    {
      std::unique_lock lock(mu_);
      for (;;) {
        if (stopping_ || !inserts_.empty() || !edits_.empty()) break;
        bool kept = !updates.empty();
        std::int64_t deadline = next_purge;
        if (!updates_.empty() && !kept) {
          std::int64_t linger_end = first_update_ms_ + options_.outcome_linger_ms;
          if (updates_.size() >= options_.outcome_batch || clock_.now_ms() >= linger_end) break;
          deadline = std::min(deadline, linger_end);
        }
        if (kept) {
          deadline = std::min(deadline, retry_at);
          if (on_retry_due_) deadline = std::min({deadline, kept_due, incoming_due_ms_});
        }
        if (clock_.now_ms() >= deadline) break;
        wake_at_ = deadline;
        clock_.wait_until(cv_, lock, deadline);
        wake_at_ = std::numeric_limits<std::int64_t>::min();
      }
      stopping = stopping_;
      // Whole submits only: the jobs of one insert_many() never straddle two commits.
      std::size_t n = 0, jobs = 0;
      while (n < inserts_.size() && (n == 0 || jobs + inserts_[n].size() <= options_.max_batch))
        jobs += inserts_[n++].size();
      if (n == inserts_.size()) {
        std::swap(inserts, inserts_);
      } else {
        std::move(inserts_.begin(), inserts_.begin() + static_cast<std::ptrdiff_t>(n), std::back_inserter(inserts));
        inserts_.erase(inserts_.begin(), inserts_.begin() + static_cast<std::ptrdiff_t>(n));
      }
      supersede(updates, updates_);
      std::swap(edits, edits_);
      incoming_due_ms_ = kNever;
      if (stopping && inserts.empty() && updates.empty() && inserts_.empty() && edits.empty()) return;
    }

    if (!inserts.empty() || !updates.empty() || !edits.empty()) {
      std::int64_t attempted_ms = clock_.now_ms();
      if (commit_round(inserts, updates, edits)) {
        backoff_ms = 0;
        retry_at = kNever;
      } else {
        backoff_ms = std::min(backoff_ms ? backoff_ms * 2 : options_.retry_min_ms, options_.retry_max_ms);
        retry_at = attempted_ms + backoff_ms;
        if (!stopping) hand_back_due(updates);
        kept_due = earliest_retry(updates);
        // At shutdown, give up on outcomes only after repeated failures: the jobs stay
        // in the store and are attempted again after restart (at-least-once).
        if (stopping && ++failed_rounds_while_stopping >= 5) {
          spdlog::error("giving up on {} outcomes at shutdown; those jobs will be retried after restart",
                        updates.size());
          return;
        }
      }
    }
    purge_if_due(next_purge);
  }
}

// Commits one round; runs the inserts' callbacks either way and, on success, the updates'
// (clearing them). On failure the updates are kept for the next round.
bool WriteBatcher::commit_round(std::vector<PendingInsert>& inserts, std::vector<JobUpdate>& updates,
                                std::vector<std::pair<JobEdit, EditDone>>& edits) {
  reapply_kept_edits(updates);
  edit_ptrs_.clear();
  for (auto& e : edits) edit_ptrs_.push_back(&e.first);
  insert_ptrs_.clear();
  batch_sizes_.clear();
  bool batches = std::any_of(inserts.begin(), inserts.end(), [](const PendingInsert& p) { return bool(p.batch_done); });
  for (auto& p : inserts) {
    if (p.batch_done) {
      for (auto& j : p.jobs) insert_ptrs_.push_back(&j);
    } else {
      insert_ptrs_.push_back(&p.job);
    }
    if (batches) batch_sizes_.push_back(static_cast<std::uint32_t>(p.size()));
  }
  Commit c{insert_ptrs_, batch_sizes_, updates, edit_ptrs_, options_.owner, clock_.now_ms() + options_.lease_ms};
  std::string error;
  try {
    metrics::ScopedTimer timed(metrics::process().store_commit_seconds);
    store_.commit(c);
  } catch (const std::exception& e) {
    error = e.what();
    if (error.empty()) error = "store error";
  }
  bool ok = error.empty();
  {
    std::lock_guard lock(mu_);
    failing_ = !ok;
  }
  if (!ok)
    spdlog::error("store commit failed ({} new jobs refused, {} outcomes kept for retry): {}", insert_ptrs_.size(),
                  updates.size(), error);
  for (auto& p : inserts) {
    if (p.batch_done)
      p.batch_done(std::move(p.jobs), ok, error);
    else
      p.done(std::move(p.job), ok, error);
  }
  inserts.clear();
  if (ok) {
    for (const auto& u : updates) on_update_(u);
    updates.clear();
  }
  // After the outcomes' callbacks: an edit's callback sees the dispatcher as these left it.
  for (auto& [e, done] : edits) {
    if (done(e, ok, error) && ok && e.result) kept_edits_[e.seq] = KeptEdit{e.apply, e.result->outcome};
  }
  edits.clear();
  return ok;
}

// An outcome of a job an edit is kept for: the edit is applied again over it (the attempt's
// recipients, its history and suppressions stay), and the job stays as the edit left it.
void WriteBatcher::reapply_kept_edits(std::vector<JobUpdate>& updates) {
  if (kept_edits_.empty()) return;
  for (auto& u : updates) {
    auto it = kept_edits_.find(u.seq);
    if (it == kept_edits_.end()) continue;
    std::optional<JobUpdate> again = it->second.apply(job_after(u));
    if (again) {
      again->seq = u.seq;
      again->ref = std::move(u.ref);
      again->submitted = u.submitted;
      again->first_attempt = u.first_attempt;
      again->attempts = std::move(u.attempts);
      again->suppress = std::move(u.suppress);
      u = std::move(*again);
    }
    u.refinish = true;
    u.was = it->second.wrote;
    kept_edits_.erase(it);
  }
}

// After a failed commit: kept deferrals whose retry time has come are handed back, so the job
// is attempted on time however long the store keeps failing.
void WriteBatcher::hand_back_due(std::vector<JobUpdate>& updates) {
  if (!on_retry_due_) return;
  std::int64_t now = clock_.now_ms();
  std::erase_if(updates, [&](JobUpdate& u) { return u.next_at_ms && *u.next_at_ms <= now && on_retry_due_(u); });
}

void WriteBatcher::purge_if_due(std::int64_t& next_purge) {
  if (clock_.now_ms() < next_purge) return;
  next_purge = clock_.now_ms() + options_.purge_interval_ms;
  try {
    auto removed = store_.purge_finished(clock_.now_s() - options_.status_ttl_s);
    std::int64_t n = removed.completed + removed.failed;
    if (n > 0) {
      spdlog::debug("purged {} finished jobs older than the status TTL", n);
      on_purge_(removed);
    }
    // A full slice: more are waiting; take the next slice after the next commit round.
    if (n >= kPurgeSlice) next_purge = clock_.now_ms();
  } catch (const StoreError& e) {
    spdlog::warn("purge failed: {}", e.what());
  }
}

}  // namespace websmtp::store
