#pragma once
// What the SQL stores (SQLite, PostgreSQL) share beyond their dialects: the admin API's job
// states as a condition on the jobs table, and the queue counts from a GROUP BY started, outcome.
#include <cstdint>

#include "websmtp/store/store.hpp"

namespace websmtp::store::sql {

// A condition on `jobs` (valid in both dialects) selecting the jobs of `filter`.
inline const char* job_filter(JobFilter filter) {
  switch (filter) {
    case JobFilter::kAll:
      break;
    case JobFilter::kQueued:
      return "outcome = 0 AND started = 0";
    case JobFilter::kDeferred:
      return "outcome = 0 AND started <> 0";
    case JobFilter::kCompleted:
      return "outcome = 1";
    case JobFilter::kFailed:
      return "outcome = 2";
  }
  return "1 = 1";
}

// Adds one row of `SELECT started, outcome, count(*) FROM jobs GROUP BY started, outcome`.
inline void add_count(Counts& c, bool started, Outcome outcome, std::int64_t n) {
  if (outcome == Outcome::kDelivered)
    c.completed += n;
  else if (outcome == Outcome::kFailed)
    c.failed += n;
  else if (started)
    c.deferred += n;
  else
    c.queued += n;
}

}  // namespace websmtp::store::sql
