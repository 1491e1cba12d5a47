#pragma once
// Jobs and outcomes for store, group-commit and dispatcher tests.
#include <cstdint>
#include <string>
#include <vector>

#include "websmtp/common/uuid.hpp"
#include "websmtp/store/store.hpp"

namespace websmtp::test_support {

// The ManualClock's default start: the time tests' jobs are submitted at.
constexpr std::int64_t kT0 = 1'700'000'000'000;

// Pointers to the jobs, as Commit::inserts takes them.
inline std::vector<job::Job*> ptrs_of(std::vector<job::Job>& jobs) {
  std::vector<job::Job*> p;
  for (auto& j : jobs) p.push_back(&j);
  return p;
}

inline std::vector<std::int64_t> seqs_of(const std::vector<job::Job>& jobs) {
  std::vector<std::int64_t> s;
  for (const auto& j : jobs) s.push_back(j.seq);
  return s;
}

// A job as a submit makes it, not stored yet; its message names its ref.
inline job::Job make_job(std::int64_t submitted_s = kT0 / 1000, int recipients = 1) {
  job::Job j;
  j.ref = new_uuid_v7(submitted_s * 1000);
  j.submitted = submitted_s;
  j.sender = "a@b.cc";
  j.message = "Subject: x\r\n\r\nbody " + j.ref + "\r\n";
  for (int i = 0; i < recipients; ++i) {
    job::Recipient r;
    r.address = "r";
    r.address += std::to_string(i);
    r.address += "@y.zz";
    j.recipients.push_back(std::move(r));
  }
  return j;
}

// The outcome of an attempt that deferred every recipient until next_at_ms.
inline store::JobUpdate deferral(const job::Job& j, std::int64_t next_at_ms, bool first_attempt = true) {
  store::JobUpdate u{.seq = j.seq,
                     .ref = j.ref,
                     .submitted = j.submitted,
                     .first_attempt = first_attempt,
                     .recipients = j.recipients,
                     .next_at_ms = next_at_ms};
  for (auto& r : u.recipients) {
    r.state = job::RecipientState::kDeferred;
    r.attempts += 1;
  }
  return u;
}

// The outcome of an attempt that delivered every recipient.
inline store::JobUpdate delivered(const job::Job& j, bool first_attempt = false,
                                  std::int64_t completed_s = kT0 / 1000) {
  store::JobUpdate u{.seq = j.seq,
                     .ref = j.ref,
                     .submitted = j.submitted,
                     .first_attempt = first_attempt,
                     .recipients = j.recipients,
                     .completed = completed_s,
                     .outcome = store::Outcome::kDelivered};
  for (auto& r : u.recipients) {
    r.state = job::RecipientState::kDelivered;
    r.attempts += 1;
  }
  return u;
}

}  // namespace websmtp::test_support
