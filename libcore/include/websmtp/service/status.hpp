#pragma once
// Reading a job's status: the status cache in front of the store, STATUS_TTL expiry, and the
// public status document. Safe from any thread.
#include <cstdint>
#include <string>
#include <string_view>

#include "websmtp/auth/status_token.hpp"
#include "websmtp/common/clock.hpp"
#include "websmtp/common/error.hpp"
#include "websmtp/job/model.hpp"
#include "websmtp/service/caller.hpp"
#include "websmtp/service/status_cache.hpp"
#include "websmtp/store/store.hpp"

namespace websmtp::service {

class StatusService {
 public:
  StatusService(store::Store& store, const Clock& clock, std::int64_t status_ttl_s, std::size_t cache_size);
  // Private statuses (authentication on): tokens that open a job's status to whoever holds one.
  void set_status_tokens(const auth::StatusTokens* tokens) { tokens_ = tokens; }

  // The job (without its message): kInvalid for a malformed ref, kNotFound for one never
  // issued or expired (or, with private statuses, not the caller's and no valid token),
  // kUnavailable when the store cannot be read.
  Result<job::Job> lookup(const Caller& caller, std::string_view ref);
  // The public status document as JSON text.
  Result<std::string> status(const Caller& caller, std::string_view ref);

  // A committed attempt outcome: refreshes the cached entry if there is one.
  void outcome_committed(const store::JobUpdate& u);
  // Another node changed the job (a shared store): the cached entry is dropped.
  void remote_change(const std::string& ref) { cache_.invalidate(ref); }
  // Changes by other nodes may have been missed: nothing cached is trusted.
  void remote_change_all() { cache_.invalidate_all(); }

 private:
  std::int64_t cache_expiry(std::int64_t completed_s) const;

  store::Store& store_;
  const Clock& clock_;
  std::int64_t status_ttl_s_;
  StatusCache cache_;
  const auth::StatusTokens* tokens_ = nullptr;
};

// The status document of `job` as JSON text (invalid UTF-8 replaced, never thrown on).
std::string status_text(const job::Job& job);

}  // namespace websmtp::service
