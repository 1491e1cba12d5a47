#include "websmtp/service/status.hpp"

#include <algorithm>

#include "websmtp/common/uuid.hpp"
#include "websmtp/job/json.hpp"

namespace websmtp::service {

namespace {
constexpr std::int64_t kNever = INT64_MAX;
}

std::string status_text(const job::Job& job) {
  return job::status_json(job).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

StatusService::StatusService(store::Store& store, const Clock& clock, std::int64_t status_ttl_s, std::size_t cache_size)
    : store_(store), clock_(clock), status_ttl_s_(status_ttl_s), cache_(cache_size) {}

std::int64_t StatusService::cache_expiry(std::int64_t completed_s) const {
  return completed_s ? (completed_s + status_ttl_s_) * 1000 : kNever;
}

Result<job::Job> StatusService::lookup(const Caller& caller, std::string_view ref_view) {
  if (!is_uuid(ref_view))
    return fail(ErrorKind::kInvalid, "invalid_ref", "a job ref is a UUID like f683a80c-ba2d-4285-8e1d-4aeaeb37a729",
                "ref");
  std::string ref(ref_view);
  std::transform(ref.begin(), ref.end(), ref.begin(), [](unsigned char c) { return std::tolower(c); });
  std::int64_t now = clock_.now_ms();
  auto expired = [&](const job::Job& j) { return j.completed && j.completed + status_ttl_s_ <= now / 1000; };
  std::optional<job::Job> j = cache_.get(ref, now);
  if (!j) {
    std::uint64_t generation = cache_.generation(ref);
    try {
      j = store_.find(ref);
    } catch (const store::StoreError&) {
      return fail(ErrorKind::kUnavailable, "store_unavailable", "the job store cannot be read; retry shortly");
    }
    if (j && !expired(*j)) cache_.put(*j, cache_expiry(j->completed), generation);
  }
  // Someone else's job answers exactly like one that never existed: a ref reveals nothing.
  auto visible = [&](const job::Job& job) {
    if (!caller.private_statuses) return true;
    if (!caller.id.empty() && job.submitted_by == caller.id) return true;
    return !caller.status_token.empty() && tokens_ && tokens_->valid(ref, caller.status_token);
  };
  if (!j || expired(*j) || !visible(*j))
    return fail(ErrorKind::kNotFound, "unknown_ref", "no job with this ref (never issued, or its status expired)",
                "ref");
  return std::move(*j);
}

Result<std::string> StatusService::status(const Caller& caller, std::string_view ref) {
  auto j = lookup(caller, ref);
  if (!j) return tl::unexpected(std::move(j.error()));
  return status_text(*j);
}

void StatusService::outcome_committed(const store::JobUpdate& u) {
  cache_.update_if_present(u.ref, u.recipients, true, u.completed, cache_expiry(u.completed));
}

}  // namespace websmtp::service
