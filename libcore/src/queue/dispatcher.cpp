#include "websmtp/queue/dispatcher.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <unordered_map>

#include "websmtp/common/thread.hpp"

namespace websmtp::queue {

namespace {
// After a failed store read, the next refill waits this long (the jobs stay stored).
constexpr std::int64_t kReadRetryMs = 1000;
}  // namespace

Dispatcher::Dispatcher(store::Store& store, const Clock& clock, Options options)
    : store_(store), clock_(clock), options_(std::move(options)) {}

Dispatcher::~Dispatcher() { stop(); }

void Dispatcher::start() {
  thread_ = std::thread([this] {
    name_this_thread("ws-dispatch");
    run();
  });
}

void Dispatcher::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  work_cv_.notify_all();
  refill_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  std::vector<std::int64_t> unused;
  {
    std::lock_guard lock(mu_);
    for (const auto& j : ready_) unused.push_back(j.seq);
    ready_.clear();
    unused.insert(unused.end(), unclaim_.begin(), unclaim_.end());
    unclaim_.clear();
  }
  if (unused.empty()) return;
  try {
    store_.release(options_.owner, unused);
  } catch (const std::exception& e) {
    spdlog::warn("dispatcher: cannot give back {} claims: {}", unused.size(), e.what());
  }
}

void Dispatcher::offer(job::Job&& job) {
  {
    std::lock_guard lock(mu_);
    if (!stopping_ && !backlog_ && ready_.size() < options_.buffer) {
      ready_.push_back(std::move(job));
      work_cv_.notify_one();
      return;
    }
  }
  // Older jobs wait in the store (or the buffer is full): keep FIFO order, fetch it later.
  if (options_.release_inline) {
    // The claim is given back before the backlog is flagged, so a refill that has not seen the
    // flag yet cannot conclude the store is drained while this job sits in it unclaimed.
    try {
      store_.release(options_.owner, std::span<const std::int64_t>(&job.seq, 1));
    } catch (const std::exception& e) {
      spdlog::warn("dispatcher: cannot give back the claim on job {}: {}", job.ref, e.what());
    }
    std::lock_guard lock(mu_);
    backlog_ = true;
    ++overflow_gen_;
    // Wake the refill thread only when it has room to fill; under a submit storm with busy
    // workers this would otherwise cost two context switches per submit.
    if (ready_.size() < options_.buffer / 2) refill_cv_.notify_one();
    return;
  }
  // Its claim is given back by the dispatcher thread (with the others that overflowed
  // meanwhile) before it next claims, so a refill cannot conclude the store is drained while
  // this job sits in it still claimed; the backlog is flagged in the same step as the job is
  // queued for release, so a refill that started before this one does not clear the flag.
  std::lock_guard lock(mu_);
  backlog_ = true;
  ++overflow_gen_;
  unclaim_.push_back(job.seq);
  // Wake the dispatcher thread when it has room to fill, or for the first claim to give back
  // (another node may take the job at once); under a submit storm with busy workers a wake per
  // submit would cost two context switches each.
  if (ready_.size() < options_.buffer / 2 || unclaim_.size() == 1) refill_cv_.notify_one();
}

void Dispatcher::release_unclaimed() {
  std::vector<std::int64_t> seqs;
  {
    std::lock_guard lock(mu_);
    seqs.swap(unclaim_);
  }
  if (seqs.empty()) return;
  try {
    store_.release(options_.owner, seqs);
  } catch (...) {
    std::lock_guard lock(mu_);
    unclaim_.insert(unclaim_.end(), seqs.begin(), seqs.end());
    throw;
  }
}

std::optional<job::Job> Dispatcher::take() {
  std::unique_lock lock(mu_);
  work_cv_.wait(lock, [&] { return stopping_ || (!paused_ && !ready_.empty()); });
  if (stopping_) return std::nullopt;
  job::Job j = std::move(ready_.front());
  ready_.pop_front();
  out_.emplace(j.seq, !j.started);
  if (backlog_ && ready_.size() < options_.buffer / 2) refill_cv_.notify_one();
  return j;
}

void Dispatcher::release(std::int64_t seq, std::optional<std::int64_t> next_at_ms) {
  std::lock_guard lock(mu_);
  out_.erase(seq);
  if (next_at_ms && (!timer_ms_ || *next_at_ms < *timer_ms_)) {
    timer_ms_ = *next_at_ms;
    refill_cv_.notify_one();
  }
}

bool Dispatcher::requeue(store::JobUpdate& uncommitted) {
  std::lock_guard lock(mu_);
  if (stopping_) return false;
  out_.erase(uncommitted.seq);
  requeued_.push_back(std::move(uncommitted));
  refill_cv_.notify_one();
  return true;
}

std::size_t Dispatcher::in_flight() const {
  std::lock_guard lock(mu_);
  return out_.size();
}

std::size_t Dispatcher::ready() const {
  std::lock_guard lock(mu_);
  return ready_.size();
}

std::vector<std::int64_t> Dispatcher::in_flight_seqs() const {
  std::lock_guard lock(mu_);
  std::vector<std::int64_t> seqs;
  seqs.reserve(out_.size());
  for (const auto& [seq, first] : out_) seqs.push_back(seq);
  return seqs;
}

std::size_t Dispatcher::in_flight_first_attempts() const {
  std::lock_guard lock(mu_);
  return static_cast<std::size_t>(std::count_if(out_.begin(), out_.end(), [](const auto& e) { return e.second; }));
}

void Dispatcher::set_paused(bool paused) {
  {
    std::lock_guard lock(mu_);
    paused_ = paused;
  }
  if (!paused) work_cv_.notify_all();
}

bool Dispatcher::paused() const {
  std::lock_guard lock(mu_);
  return paused_;
}

void Dispatcher::wake(std::int64_t at_ms) {
  std::lock_guard lock(mu_);
  if (!timer_ms_ || at_ms < *timer_ms_) timer_ms_ = at_ms;
  refill_cv_.notify_one();
}

bool Dispatcher::finished_by_edit(std::int64_t seq) {
  std::int64_t drop = 0;
  {
    std::lock_guard lock(mu_);
    if (out_.count(seq)) return true;
    auto it = std::find_if(ready_.begin(), ready_.end(), [&](const job::Job& j) { return j.seq == seq; });
    if (it == ready_.end()) {
      finished_.insert(seq);
      return false;
    }
    ready_.erase(it);
    drop = seq;
  }
  try {
    store_.release(options_.owner, std::span<const std::int64_t>(&drop, 1));
  } catch (const std::exception& e) {
    spdlog::warn("dispatcher: cannot give back the claim on a cancelled job: {}", e.what());
  }
  return false;
}

void Dispatcher::run() {
  std::unique_lock lock(mu_);
  renew_at_ms_ = clock_.now_ms() + options_.lease_ms / 3;
  std::int64_t reads_at_ms = 0;  // no store read before this (after a failed one)
  while (!stopping_) {
    std::int64_t now = clock_.now_ms();
    if (now >= renew_at_ms_) {
      renew_at_ms_ = now + options_.lease_ms / 3;
      lock.unlock();
      try {
        store_.renew(options_.owner, now, options_.lease_ms);
      } catch (const std::exception& e) {
        spdlog::warn("dispatcher: cannot renew this node's claims: {}", e.what());
      }
      lock.lock();
      continue;
    }
    bool timer_due = timer_ms_ && now >= *timer_ms_;
    bool want_refill = (backlog_ && ready_.size() < options_.buffer / 2) || timer_due;
    bool want = want_refill || !requeued_.empty() || !unclaim_.empty();
    if (!want || now < reads_at_ms) {
      std::int64_t deadline = renew_at_ms_;
      if (timer_ms_) deadline = std::min(deadline, *timer_ms_);
      if (want) deadline = std::min(deadline, reads_at_ms);
      clock_.wait_until(refill_cv_, lock, deadline);
      continue;
    }
    if (timer_due) {
      timer_ms_.reset();
      backlog_ = true;
    }
    lock.unlock();
    try {
      release_unclaimed();
      load_requeued();
      if (want_refill) refill();
    } catch (const std::exception& e) {
      // The store is failing: jobs stay stored; try again shortly.
      spdlog::warn("dispatcher: cannot read due jobs: {}", e.what());
      reads_at_ms = clock_.now_ms() + kReadRetryMs;
    }
    lock.lock();
  }
}

// Handed-back jobs: the message comes from the store (whose row is still as before the
// uncommitted attempt, and due), the recipients from the uncommitted outcome. The row's
// `started` is kept, so the next outcome knows whether the store saw the job started.
void Dispatcher::load_requeued() {
  std::vector<store::JobUpdate> held;
  {
    std::lock_guard lock(mu_);
    if (requeued_.empty()) return;
    held.swap(requeued_);
  }
  std::vector<std::int64_t> seqs;
  seqs.reserve(held.size());
  for (const auto& u : held) seqs.push_back(u.seq);
  std::vector<job::Job> jobs;
  try {
    jobs = store_.load(seqs, clock_.now_ms());
  } catch (...) {
    std::lock_guard lock(mu_);
    std::move(held.begin(), held.end(), std::back_inserter(requeued_));
    throw;
  }
  std::unordered_map<std::int64_t, job::Job*> by_seq;
  for (auto& j : jobs) by_seq.emplace(j.seq, &j);
  std::vector<job::Job> back;
  back.reserve(held.size());
  for (auto& u : held) {
    auto it = by_seq.find(u.seq);
    if (it == by_seq.end()) {
      spdlog::warn("job {}: no longer pending in the store; its uncommitted outcome is dropped", u.ref);
      continue;
    }
    job::Job& j = *it->second;
    j.recipients = std::move(u.recipients);
    back.push_back(std::move(j));
  }
  std::lock_guard lock(mu_);
  for (auto& j : back) ready_.push_back(std::move(j));
  if (!back.empty()) work_cv_.notify_all();
}

void Dispatcher::refill() {
  release_unclaimed();  // before claiming: a job given back here is found by this claim
  std::size_t want;
  std::uint64_t gen;
  {
    std::lock_guard lock(mu_);
    want = options_.buffer > ready_.size() ? options_.buffer - ready_.size() : 0;
    gen = overflow_gen_;
  }
  std::int64_t now = clock_.now_ms();
  std::vector<job::Job> jobs;
  if (want > 0) jobs = store_.claim_due(options_.owner, now, options_.lease_ms, want);
  bool exhausted = jobs.size() < want;
  std::vector<std::int64_t> dropped;
  {
    std::lock_guard lock(mu_);
    for (auto& j : jobs) {
      if (finished_.count(j.seq))
        dropped.push_back(j.seq);  // read before an edit finished it
      else
        ready_.push_back(std::move(j));
    }
    finished_.clear();
    if (!jobs.empty()) work_cv_.notify_all();
    // Every due job is in memory now, unless a submit overflowed meanwhile.
    if (exhausted && gen == overflow_gen_) backlog_ = false;
  }
  if (!dropped.empty()) store_.release(options_.owner, dropped);
  auto next = store_.next_due_after(now);
  std::lock_guard lock(mu_);
  if (next && (!timer_ms_ || *next < *timer_ms_)) timer_ms_ = *next;
}

}  // namespace websmtp::queue
