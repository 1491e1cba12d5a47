#include "websmtp/store/write_batcher.hpp"

#include <spdlog/spdlog.h>

#include "websmtp/common/thread.hpp"

namespace websmtp::store {

WriteBatcher::WriteBatcher(Store& store, const Clock& clock, Options options, UpdateDone on_update, PurgeDone on_purge)
    : store_(store),
      clock_(clock),
      options_(std::move(options)),
      on_update_(std::move(on_update)),
      on_purge_(std::move(on_purge)),
      thread_([this] {
        name_this_thread("ws-commit");
        run();
      }) {}

WriteBatcher::~WriteBatcher() { stop(); }

void WriteBatcher::insert(job::Job job, InsertDone done) {
  {
    std::lock_guard lock(mu_);
    if (!stopping_) {
      inserts_.push_back({std::move(job), std::move(done)});
      cv_.notify_one();
      return;
    }
  }
  done(std::move(job), false, "the server is shutting down");
}

void WriteBatcher::update(JobUpdate update) {
  std::lock_guard lock(mu_);
  updates_.push_back(std::move(update));
  cv_.notify_one();
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
  std::vector<JobUpdate> updates;
  std::vector<job::Job*> insert_ptrs;
  std::int64_t next_purge = clock_.now_ms();
  std::int64_t retry_delay_ms = 0;
  int failed_rounds_while_stopping = 0;
  for (;;) {
    {
      std::unique_lock lock(mu_);
      auto has_work = [&] { return stopping_ || !inserts_.empty() || !updates_.empty(); };
      if (retry_delay_ms > 0) {
        // Back off after a store error; outcomes we still hold are retried below.
        cv_.wait_for(lock, std::chrono::milliseconds(retry_delay_ms), [&] { return stopping_ || !inserts_.empty(); });
      } else if (updates.empty()) {
        auto wait_ms = std::max<std::int64_t>(1, next_purge - clock_.now_ms());
        cv_.wait_for(lock, std::chrono::milliseconds(wait_ms), has_work);
      }
      std::size_t take = std::min(inserts_.size(), options_.max_batch);
      for (std::size_t i = 0; i < take; ++i) inserts.push_back(std::move(inserts_[i]));
      inserts_.erase(inserts_.begin(), inserts_.begin() + static_cast<std::ptrdiff_t>(take));
      for (auto& u : updates_) updates.push_back(std::move(u));
      updates_.clear();
      if (stopping_ && inserts.empty() && updates.empty() && inserts_.empty()) return;
    }

    if (!inserts.empty() || !updates.empty()) {
      insert_ptrs.clear();
      for (auto& p : inserts) insert_ptrs.push_back(&p.job);
      std::string error;
      try {
        store_.commit(Commit{.inserts = insert_ptrs,
                             .updates = updates,
                             .owner = options_.owner,
                             .lease_until_ms = clock_.now_ms() + options_.lease_ms});
      } catch (const StoreError& e) {
        error = e.what();
      }
      {
        std::lock_guard lock(mu_);
        failing_ = !error.empty();
      }
      if (error.empty()) {
        retry_delay_ms = 0;
        for (auto& p : inserts) p.done(std::move(p.job), true, {});
        for (const auto& u : updates) on_update_(u);
        updates.clear();
      } else {
        spdlog::error("store commit failed ({} new jobs refused, {} outcomes kept for retry): {}", inserts.size(),
                      updates.size(), error);
        for (auto& p : inserts) p.done(std::move(p.job), false, error);
        retry_delay_ms = std::min<std::int64_t>(retry_delay_ms ? retry_delay_ms * 2 : 100, 5000);
        // At shutdown, give up on outcomes only after repeated failures: the jobs stay
        // in the store and are attempted again after restart (at-least-once).
        if (stopping_ && ++failed_rounds_while_stopping >= 5) {
          spdlog::error("giving up on {} outcomes at shutdown; those jobs will be retried after restart",
                        updates.size());
          return;
        }
      }
      inserts.clear();
    }

    if (clock_.now_ms() >= next_purge) {
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
  }
}

}  // namespace websmtp::store
