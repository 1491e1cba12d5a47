#pragma once
// Hands jobs to delivery workers. The store is the queue: the dispatcher keeps only a
// bounded buffer of ready jobs in memory (so a million waiting jobs cost disk, not RSS),
// refills it from the store when it runs low, and sleeps until the next retry is due.
// Nothing polls: submits, outcomes and the retry timer wake it; timed waits go through the
// Clock, so tests drive them.
//
// Which jobs are this node's is the store's claims (store.hpp): a refill claims due jobs, a
// submit arrives claimed, the commit of an outcome releases the claim. The dispatcher keeps
// no claim set of its own, only the ready buffer and which jobs are out with a worker.
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "websmtp/common/clock.hpp"
#include "websmtp/store/store.hpp"

namespace websmtp::queue {

class Dispatcher {
 public:
  struct Options {
    std::size_t buffer = 1024;                            // ready jobs held in memory
    std::string owner = std::string(store::kLocalOwner);  // this node's claims (as the WriteBatcher's)
    std::int64_t lease_ms = store::kDefaultLeaseMs;       // renewed every third of it
    // How a submit that does not fit gives its claim back: at once on the offering thread (a
    // store whose claims live in memory: SQLite), or by the dispatcher's thread, several per
    // store call (a shared store, where each is a round trip the group commit would wait on).
    bool release_inline = true;
  };

  Dispatcher(store::Store& store, const Clock& clock, Options options);
  ~Dispatcher();
  Dispatcher(const Dispatcher&) = delete;
  Dispatcher& operator=(const Dispatcher&) = delete;

  void start();
  // Workers get nothing more; blocked take() calls return nullopt. The claims on jobs still
  // in the buffer are given back.
  void stop();

  // A job just committed by a submit, claimed for this node. Goes straight to a worker when
  // nothing older waits; otherwise its claim is given back and a refill fetches it in order.
  void offer(job::Job&& job);
  // Blocks until a job is ready (or nullopt once stopped).
  std::optional<job::Job> take();
  // The outcome of an attempt is committed (which released the claim). A deferred job is due
  // again at next_at_ms.
  void release(std::int64_t seq, std::optional<std::int64_t> next_at_ms);
  // An attempt's outcome that could not be committed, due for its retry (the WriteBatcher's
  // RetryDue). The job is still claimed and the store still holds it as it was before that
  // attempt: it goes back to a worker with this outcome's recipients. Takes the update (moving
  // from it) and returns true, or returns false once stopped (the caller keeps it).
  bool requeue(store::JobUpdate& uncommitted);

  std::size_t in_flight() const;
  std::size_t ready() const;
  // The jobs out with a worker right now.
  std::vector<std::int64_t> in_flight_seqs() const;
  // Of those, the ones on their first attempt (still "queued" in the store's counts; the
  // others are still "deferred" there).
  std::size_t in_flight_first_attempts() const;

  // Operator controls (admin API).
  // Paused: workers get no job (transactions in flight finish); submits and refills go on.
  void set_paused(bool paused);
  bool paused() const;
  // Stored jobs became due at `at_ms` (a retry): the refill runs then.
  void wake(std::int64_t at_ms);
  // An edit finished this job in the store (a cancel). A copy waiting in the buffer, or one a
  // refill is reading right now, is dropped and its claim given back. Returns true when a
  // worker has the job now: its attempt's outcome is still to come.
  bool finished_by_edit(std::int64_t seq);

 private:
  void run();
  void refill();
  void load_requeued();
  // Gives back the claims in unclaim_ (one store call); on a store error they stay pending.
  void release_unclaimed();

  store::Store& store_;
  const Clock& clock_;
  Options options_;
  mutable std::mutex mu_;
  std::condition_variable work_cv_;    // workers wait here
  std::condition_variable refill_cv_;  // the refill thread waits here
  std::deque<job::Job> ready_;
  // Taken by a worker, outcome not committed yet; whether it is the job's first attempt.
  std::unordered_map<std::int64_t, bool> out_;
  std::vector<store::JobUpdate> requeued_;  // handed back, waiting for their message to be read
  // (release_inline = false) Submitted jobs that did not fit (or came behind older stored ones):
  // claimed by their commit, their claims are given back in one store call by the dispatcher
  // thread, before its next claim (backlog_ stays set meanwhile).
  std::vector<std::int64_t> unclaim_;
  bool backlog_ = true;                     // the store may hold due jobs that are not in memory
  std::uint64_t overflow_gen_ = 0;
  std::optional<std::int64_t> timer_ms_;  // earliest known retry time
  std::int64_t renew_at_ms_ = 0;
  bool stopping_ = false;
  bool paused_ = false;
  // Jobs finished by an edit while no copy was in memory: a refill under way may have claimed
  // one from before the edit; it drops them. Cleared by each refill.
  std::unordered_set<std::int64_t> finished_;
  std::thread thread_;
};

}  // namespace websmtp::queue
