#include "websmtp/service/admin.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <unordered_set>

#include <nlohmann/json.hpp>

#include "websmtp/common/uuid.hpp"
#include "websmtp/job/json.hpp"
#include "websmtp/job/validation.hpp"
#include "websmtp/service/delivery.hpp"

namespace websmtp::service {

namespace {

using nlohmann::json;

constexpr std::string_view kPausedKey = "paused";

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

Error unavailable() {
  return Error{ErrorKind::kUnavailable, "store_unavailable", "the store cannot be read or written; retry shortly", ""};
}

Error unknown_ref() {
  return Error{ErrorKind::kNotFound, "unknown_ref", "no job with this ref (never issued, or purged)", "ref"};
}

Error already_completed() {
  return Error{ErrorKind::kConflict, "already_completed", "the job is completed: every recipient is delivered or failed",
               "ref"};
}

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

// The earliest retry among deferred recipients (Unix s), or null.
json next_attempt(const job::Job& j) {
  std::int64_t next = 0;
  for (const auto& r : j.recipients)
    if (r.state == job::RecipientState::kDeferred && (next == 0 || r.next_attempt < next)) next = r.next_attempt;
  return next ? json(next) : json(nullptr);
}

json summary(const job::Job& j, bool in_flight) {
  json recipients = json::array();
  for (const auto& r : j.recipients) recipients.push_back({{"address", r.address}, {"state", job::to_string(r.state)}});
  return {{"ref", j.ref},
          {"status", job::job_status(j)},
          {"in_flight", in_flight},
          {"time_submitted", j.submitted},
          {"from", j.sender},
          {"recipients", std::move(recipients)},
          {"next_attempt", next_attempt(j)}};
}

}  // namespace

Result<JobsPage> parse_jobs_query(const JobsQuery& q) {
  JobsPage p;
  p.filter = store::JobFilter::kAll;
  if (q.state) {
    const std::string& s = *q.state;
    if (s == "queued")
      p.filter = store::JobFilter::kQueued;
    else if (s == "in_flight")
      p.filter.reset();
    else if (s == "deferred")
      p.filter = store::JobFilter::kDeferred;
    else if (s == "completed")
      p.filter = store::JobFilter::kCompleted;
    else if (s == "failed")
      p.filter = store::JobFilter::kFailed;
    else
      return fail(ErrorKind::kInvalid, "invalid_state",
                  "state must be one of: queued, in_flight, deferred, completed, failed", "state");
  }
  if (q.limit) {
    const std::string& l = *q.limit;
    bool digits = !l.empty() && l.size() <= 4 && std::all_of(l.begin(), l.end(), [](char c) { return c >= '0' && c <= '9'; });
    std::size_t n = digits ? std::stoul(l) : 0;
    if (n < 1 || n > kMaxJobsPage)
      return fail(ErrorKind::kInvalid, "invalid_limit",
                  "limit must be a whole number from 1 to " + std::to_string(kMaxJobsPage), "limit");
    p.limit = n;
  }
  if (q.after) {
    if (!is_uuid(*q.after))
      return fail(ErrorKind::kInvalid, "invalid_after", "after must be a job ref (the previous page's next)", "after");
    p.after = lower(*q.after);
  }
  return p;
}

std::optional<store::JobUpdate> cancel_job(const job::Job& j, std::int64_t now_ms) {
  if (job::all_final(j)) return std::nullopt;
  job::Job c = j;
  for (auto& r : c.recipients)
    if (!job::is_final(r.state)) fail_unattempted(r, "cancelled", now_ms / 1000);
  return update_after_attempt(std::move(c), now_ms);
}

std::optional<store::JobUpdate> retry_job(const job::Job& j, std::int64_t now_ms) {
  job::Job c = j;
  bool any = false;
  for (auto& r : c.recipients) {
    if (r.state != job::RecipientState::kDeferred) continue;
    r.next_attempt = now_ms / 1000;
    any = true;
  }
  if (!any) return std::nullopt;
  store::JobUpdate u = update_after_attempt(std::move(c), now_ms);
  u.next_at_ms = now_ms;
  return u;
}

AdminService::AdminService(store::Store& store, store::WriteBatcher& batcher, queue::Dispatcher& dispatcher,
                           Suppressions& suppressions, const Clock& clock, EditCommitted on_edit)
    : store_(store),
      batcher_(batcher),
      dispatcher_(dispatcher),
      suppressions_(suppressions),
      clock_(clock),
      on_edit_(std::move(on_edit)) {}

Result<job::Job> AdminService::find(std::string_view ref) {
  if (!is_uuid(ref))
    return fail(ErrorKind::kInvalid, "invalid_ref", "a job ref is a UUID like f683a80c-ba2d-4285-8e1d-4aeaeb37a729",
                "ref");
  try {
    auto j = store_.find(lower(ref));
    if (!j) return tl::unexpected(unknown_ref());
    return std::move(*j);
  } catch (const store::StoreError&) {
    return tl::unexpected(unavailable());
  }
}

Result<std::string> AdminService::jobs(const JobsQuery& q) {
  auto page = parse_jobs_query(q);
  if (!page) return tl::unexpected(page.error());
  try {
    std::int64_t before = 0;
    if (!page->after.empty()) {
      auto cursor = store_.find(page->after);
      if (!cursor)
        return fail(ErrorKind::kInvalid, "invalid_after", "no job with this ref (it may have been purged)", "after");
      before = cursor->seq;
    }
    auto out_seqs = dispatcher_.in_flight_seqs();
    std::unordered_set<std::int64_t> out(out_seqs.begin(), out_seqs.end());
    std::vector<job::Job> jobs;
    if (page->filter == store::JobFilter::kQueued || page->filter == store::JobFilter::kDeferred) {
      // A job out with a worker is in flight only: left out here. At most out.size() rows go, so
      // that many more are read.
      jobs = store_.list_jobs(*page->filter, before, page->limit + 1 + out.size());
      std::erase_if(jobs, [&](const job::Job& j) { return out.count(j.seq) > 0; });
      if (jobs.size() > page->limit + 1) jobs.resize(page->limit + 1);
    } else if (page->filter) {
      jobs = store_.list_jobs(*page->filter, before, page->limit + 1);
    } else {
      // in_flight: what the workers hold now, newest first, with the same cursor.
      std::sort(out_seqs.rbegin(), out_seqs.rend());
      for (auto seq : out_seqs) {
        if (before && seq >= before) continue;
        if (jobs.size() > page->limit) break;
        if (auto j = store_.find_seq(seq)) jobs.push_back(std::move(*j));
      }
    }
    json next = nullptr;
    if (jobs.size() > page->limit) {
      jobs.resize(page->limit);
      next = jobs.back().ref;
    }
    json list = json::array();
    for (const auto& j : jobs) list.push_back(summary(j, out.count(j.seq) > 0));
    return dump({{"jobs", std::move(list)}, {"next", std::move(next)}});
  } catch (const store::StoreError&) {
    return tl::unexpected(unavailable());
  }
}

Result<std::string> AdminService::job(std::string_view ref, bool with_body) {
  auto j = find(ref);
  if (!j) return tl::unexpected(j.error());
  try {
    json doc = job::status_json(*j);
    auto history = store_.attempts(j->seq);
    json rcpt_to = json::array();
    for (auto& r : doc["recipients"]) {
      json h = json::array();
      const std::string& address = r["address"].get_ref<const std::string&>();
      for (const auto& a : history) {
        if (a.address != address) continue;
        json e = {{"time", a.time}, {"smtp_code", a.smtp_code}, {"smtp_reply", a.smtp_reply}};
        e["host"] = a.host.empty() ? json(nullptr) : json(a.host);
        h.push_back(std::move(e));
      }
      r["history"] = std::move(h);
      rcpt_to.push_back(address);
    }
    auto out = dispatcher_.in_flight_seqs();
    doc["from"] = j->sender;
    doc["submitted_by"] = j->submitted_by.empty() ? json(nullptr) : json(j->submitted_by);
    doc["envelope"] = {{"mail_from", j->sender}, {"rcpt_to", std::move(rcpt_to)}};
    doc["in_flight"] = std::find(out.begin(), out.end(), j->seq) != out.end();
    doc["next_attempt"] = next_attempt(*j);
    if (with_body) {
      // The message is kept until the job is finished (then dropped to keep the store small).
      auto message = store_.find_message(j->seq);
      doc["message"] = message ? json(*message) : json(nullptr);
    }
    return dump(doc);
  } catch (const store::StoreError&) {
    return tl::unexpected(unavailable());
  }
}

void AdminService::edit(const job::Job& j, std::function<std::optional<store::JobUpdate>(const job::Job&)> apply,
                        std::function<void(const store::JobEdit&, bool ok, const std::string& error)> then,
                        bool keep_if_in_flight) {
  store::JobEdit e;
  e.seq = j.seq;
  e.apply = std::move(apply);
  batcher_.edit(std::move(e), [this, then = std::move(then), keep_if_in_flight](const store::JobEdit& e, bool ok,
                                                                                const std::string& error) {
    bool in_flight = ok && e.result && on_edit_(*e.result);
    then(e, ok, error);
    return keep_if_in_flight && in_flight;
  });
}

void AdminService::retry(std::string_view ref, Done done) {
  auto j = find(ref);
  if (!j) return done(tl::unexpected(j.error()));
  if (job::all_final(*j)) return done(tl::unexpected(already_completed()));
  auto finished = std::make_shared<bool>(false);
  edit(
      *j,
      [this, finished](const job::Job& job) {
        *finished = job::all_final(job);
        return retry_job(job, clock_.now_ms());
      },
      [done = std::move(done), finished, ref = j->ref](const store::JobEdit& e, bool ok, const std::string& error) {
        if (!ok) return done(fail(ErrorKind::kUnavailable, "store_unavailable", "cannot store the retry: " + error));
        if (!e.found) return done(tl::unexpected(unknown_ref()));
        if (*finished) return done(tl::unexpected(already_completed()));
        done(dump({{"ref", ref}, {"retried", e.result ? 1 : 0}}));
      },
      false);
}

void AdminService::retry_all(Done done) {
  std::vector<job::Job> deferred;
  try {
    std::int64_t before = 0;
    for (;;) {
      auto page = store_.list_jobs(store::JobFilter::kDeferred, before, kMaxJobsPage);
      if (page.empty()) break;
      before = page.back().seq;
      for (auto& j : page) deferred.push_back(std::move(j));
      if (page.size() < kMaxJobsPage) break;
    }
  } catch (const store::StoreError&) {
    return done(tl::unexpected(unavailable()));
  }
  if (deferred.empty()) return done(dump({{"retried", 0}}));
  // Every edit goes into the next commit round; the answer is sent when the last is done.
  struct Tally {
    std::atomic<std::size_t> left;
    std::atomic<std::int64_t> retried{0};
    std::atomic<bool> failed{false};
    Done done;
  };
  auto tally = std::make_shared<Tally>();
  tally->left = deferred.size();
  tally->done = std::move(done);
  for (const auto& j : deferred) {
    edit(
        j, [this](const job::Job& job) { return retry_job(job, clock_.now_ms()); },
        [tally](const store::JobEdit& e, bool ok, const std::string&) {
          if (!ok) tally->failed = true;
          if (e.result) ++tally->retried;
          if (--tally->left > 0) return;
          if (tally->failed && tally->retried == 0)
            return tally->done(fail(ErrorKind::kUnavailable, "store_unavailable", "cannot store the retries"));
          tally->done(dump({{"retried", tally->retried.load()}}));
        },
        false);
  }
}

void AdminService::cancel(std::string_view ref, Done done) {
  auto j = find(ref);
  if (!j) return done(tl::unexpected(j.error()));
  if (job::all_final(*j)) return done(tl::unexpected(already_completed()));
  edit(
      *j, [this](const job::Job& job) { return cancel_job(job, clock_.now_ms()); },
      [done = std::move(done)](const store::JobEdit& e, bool ok, const std::string& error) {
        if (!ok) return done(fail(ErrorKind::kUnavailable, "store_unavailable", "cannot store the cancel: " + error));
        if (!e.found) return done(tl::unexpected(unknown_ref()));
        if (!e.result) return done(tl::unexpected(already_completed()));
        done(dump(job::status_json(store::job_after(*e.result))));
      },
      true);
}

bool AdminService::stored_pause(store::Store& store) { return store.setting(kPausedKey).value_or("0") == "1"; }

Result<std::string> AdminService::set_paused(bool paused) {
  try {
    store_.put_setting(kPausedKey, paused ? "1" : "0");
  } catch (const store::StoreError&) {
    return tl::unexpected(unavailable());
  }
  dispatcher_.set_paused(paused);
  spdlog::info("delivery {} by the admin API", paused ? "paused" : "resumed");
  return dump({{"paused", paused}});
}

namespace {
json suppression_json(const store::SuppressionRecord& s) {
  json e = {{"address", s.address}, {"reason", s.reason}, {"created", s.created}};
  if (s.smtp_code) e["smtp_code"] = s.smtp_code;
  if (!s.smtp_reply.empty()) e["smtp_reply"] = s.smtp_reply;
  return e;
}
}  // namespace

Result<std::string> AdminService::suppressions() {
  auto list = suppressions_.list();
  if (!list) return tl::unexpected(list.error());
  json out = json::array();
  for (const auto& s : *list) out.push_back(suppression_json(s));
  return dump({{"suppressions", std::move(out)}});
}

Result<std::pair<std::string, bool>> AdminService::suppress(std::string_view address, std::string_view body) {
  // The body is optional; when given it is an object with no field (none is defined yet), so
  // that a client's misspelt field is not silently ignored.
  if (body.find_first_not_of(" \t\r\n") != std::string_view::npos) {
    auto doc = job::parse_json_object(body);
    if (!doc) return tl::unexpected(doc.error());
    for (auto it = doc->begin(); it != doc->end(); ++it)
      return fail(ErrorKind::kInvalid, "unknown_field", "a suppression has no field \"" + it.key() + "\"", it.key());
  }
  auto added = suppressions_.add(address, clock_.now_s());
  if (!added) return tl::unexpected(added.error());
  return std::pair{dump(suppression_json(added->entry)), added->fresh};
}

Result<bool> AdminService::unsuppress(std::string_view address) { return suppressions_.remove(address); }

}  // namespace websmtp::service
