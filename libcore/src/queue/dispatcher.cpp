#include "websmtp/queue/dispatcher.hpp"

#include <spdlog/spdlog.h>

#include "websmtp/common/thread.hpp"

namespace websmtp::queue {

Dispatcher::Dispatcher(store::Store& store, const Clock& clock, Options options)
    : store_(store), clock_(clock), options_(options) {}

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
}

void Dispatcher::offer(job::Job&& job) {
  std::lock_guard lock(mu_);
  if (!backlog_ && ready_.size() < options_.buffer && !claimed_.contains(job.seq)) {
    claimed_.insert(job.seq);
    ready_.push_back(std::move(job));
    work_cv_.notify_one();
    return;
  }
  // Older jobs wait in the store (or the buffer is full): keep FIFO order, fetch it later.
  backlog_ = true;
  ++overflow_gen_;
  // Wake the refill thread only when it has room to fill; under a submit storm with busy
  // workers this would otherwise cost two context switches per submit.
  if (ready_.size() < options_.buffer / 2) refill_cv_.notify_one();
}

std::optional<job::Job> Dispatcher::take() {
  std::unique_lock lock(mu_);
  work_cv_.wait(lock, [&] { return stopping_ || !ready_.empty(); });
  if (stopping_) return std::nullopt;
  job::Job j = std::move(ready_.front());
  ready_.pop_front();
  if (backlog_ && ready_.size() < options_.buffer / 2) refill_cv_.notify_one();
  return j;
}

void Dispatcher::release(std::int64_t seq, std::optional<std::int64_t> next_at_ms) {
  std::lock_guard lock(mu_);
  claimed_.erase(seq);
  if (next_at_ms && (!timer_ms_ || *next_at_ms < *timer_ms_)) {
    timer_ms_ = *next_at_ms;
    refill_cv_.notify_one();
  }
}

std::size_t Dispatcher::in_flight() const {
  std::lock_guard lock(mu_);
  return claimed_.size() - ready_.size();
}

std::size_t Dispatcher::ready() const {
  std::lock_guard lock(mu_);
  return ready_.size();
}

void Dispatcher::run() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    auto want_refill = [&] {
      return (backlog_ && ready_.size() < options_.buffer / 2) || (timer_ms_ && clock_.now_ms() >= *timer_ms_);
    };
    if (!want_refill()) {
      if (timer_ms_) {
        auto wait = std::chrono::milliseconds(std::max<std::int64_t>(1, *timer_ms_ - clock_.now_ms()));
        refill_cv_.wait_for(lock, wait);
      } else {
        refill_cv_.wait(lock);
      }
      continue;
    }
    if (timer_ms_ && clock_.now_ms() >= *timer_ms_) {
      timer_ms_.reset();
      backlog_ = true;
    }
    lock.unlock();
    try {
      refill();
    } catch (const std::exception& e) {
      // The store is failing: jobs stay stored; try again shortly.
      spdlog::warn("dispatcher: cannot read due jobs: {}", e.what());
      lock.lock();
      if (!timer_ms_ || *timer_ms_ > clock_.now_ms() + 1000) timer_ms_ = clock_.now_ms() + 1000;
      continue;
    }
    lock.lock();
  }
}

void Dispatcher::refill() {
  std::size_t want, skip;
  std::uint64_t gen;
  {
    std::lock_guard lock(mu_);
    want = options_.buffer - ready_.size();
    skip = claimed_.size();
    gen = overflow_gen_;
  }
  std::int64_t now = clock_.now_ms();
  // Jobs already claimed are still due in the store until their outcome commits; ask
  // for enough rows to see past them.
  std::size_t limit = want + skip;
  auto seqs = store_.due(now, limit);
  bool exhausted = seqs.size() < limit;
  {
    std::lock_guard lock(mu_);
    std::erase_if(seqs, [&](std::int64_t s) { return claimed_.contains(s); });
  }
  if (seqs.size() > want) {
    exhausted = false;  // due jobs were left out: more remain in the store
    seqs.resize(want);
  }
  auto jobs = store_.load(seqs, now);
  auto next = store_.next_due_after(now);

  std::lock_guard lock(mu_);
  std::size_t added = 0;
  for (auto& j : jobs) {
    if (claimed_.contains(j.seq)) continue;
    claimed_.insert(j.seq);
    ready_.push_back(std::move(j));
    ++added;
  }
  if (added) work_cv_.notify_all();
  // Every due job is in memory now, unless a submit overflowed meanwhile.
  if (exhausted && gen == overflow_gen_) backlog_ = false;
  if (next && (!timer_ms_ || *next < *timer_ms_)) timer_ms_ = *next;
}

}  // namespace websmtp::queue
