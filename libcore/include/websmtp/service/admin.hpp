#pragma once
// The admin API's queue control (api.md "Admin HTTP API"): list and inspect jobs, retry and
// cancel them, pause and resume delivery. JSON out, no HTTP framework.
//
// Retry and cancel are edits of the stored job applied by the group commit (store.hpp
// JobEdit): they never race an attempt's outcome. A cancel of a job out with a worker is
// applied again to that attempt's outcome, so the attempt finishes (what it delivered stays
// delivered) but nothing of the job is retried.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "websmtp/common/clock.hpp"
#include "websmtp/common/error.hpp"
#include "websmtp/queue/dispatcher.hpp"
#include "websmtp/service/suppressions.hpp"
#include "websmtp/store/store.hpp"
#include "websmtp/store/write_batcher.hpp"

namespace websmtp::service {

// GET /admin/jobs parameters, as given (absent: the default).
struct JobsQuery {
  std::optional<std::string> state;  // queued | in_flight | deferred | completed | failed
  std::optional<std::string> limit;  // 1..kMaxJobsPage, default kDefaultJobsPage
  std::optional<std::string> after;  // a ref from a previous page's "next"
};
constexpr std::size_t kDefaultJobsPage = 50;
constexpr std::size_t kMaxJobsPage = 1000;

// The parsed query; kInvalid with field state / limit / after. `after` is resolved by the
// caller (it needs the store).
struct JobsPage {
  std::optional<store::JobFilter> filter;  // nullopt: in_flight
  std::size_t limit = kDefaultJobsPage;
  std::string after;  // lower-cased ref, or empty
};
Result<JobsPage> parse_jobs_query(const JobsQuery& q);

// The job edits, pure. Cancel: every recipient not delivered or failed yet fails with reason
// `cancelled`; nullopt when the job is finished. Retry: deferred recipients are due at now;
// nullopt when none is deferred.
std::optional<store::JobUpdate> cancel_job(const job::Job& job, std::int64_t now_ms);
std::optional<store::JobUpdate> retry_job(const job::Job& job, std::int64_t now_ms);

class AdminService {
 public:
  // Called on the commit thread once an edit is committed, with what it wrote; returns true
  // when the job is out with a worker (the gateway's status cache, long-polls, figures and
  // dispatcher are told there).
  using EditCommitted = std::function<bool(const store::JobUpdate& u)>;
  // JSON text (or the error) of an asynchronous action; may run on the commit thread.
  using Done = std::function<void(Result<std::string>)>;

  AdminService(store::Store& store, store::WriteBatcher& batcher, queue::Dispatcher& dispatcher,
               Suppressions& suppressions, const Clock& clock, EditCommitted on_edit);

  Result<std::string> jobs(const JobsQuery& q);
  Result<std::string> job(std::string_view ref, bool with_body);
  void retry(std::string_view ref, Done done);
  void retry_all(Done done);
  void cancel(std::string_view ref, Done done);

  // Persisted first (a restart keeps it), then applied.
  Result<std::string> set_paused(bool paused);
  bool paused() const { return dispatcher_.paused(); }
  // The pause as the store holds it (at start).
  static bool stored_pause(store::Store& store);

  Result<std::string> suppressions();
  // The entry as stored (JSON) and whether it is new (201) or was already there, unchanged
  // (200). `body` is empty or a JSON object without fields (unknown_field otherwise).
  Result<std::pair<std::string, bool>> suppress(std::string_view address, std::string_view body);
  Result<bool> unsuppress(std::string_view address);

 private:
  Result<job::Job> find(std::string_view ref);
  void edit(const job::Job& j, std::function<std::optional<store::JobUpdate>(const job::Job&)> apply,
            std::function<void(const store::JobEdit&, bool ok, const std::string& error)> then, bool keep_if_in_flight);

  store::Store& store_;
  store::WriteBatcher& batcher_;
  queue::Dispatcher& dispatcher_;
  Suppressions& suppressions_;
  const Clock& clock_;
  EditCommitted on_edit_;
};

}  // namespace websmtp::service
