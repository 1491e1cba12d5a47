#include <gtest/gtest.h>

#include "websmtp/queue/retry_policy.hpp"

using namespace websmtp;
using namespace websmtp::queue;
using job::RecipientState;

namespace {
const RetryOptions kOpts{300, 4000, 5 * 86400, false};
constexpr std::int64_t kT0 = 1'700'000'000;
}  // namespace

TEST(RetryPolicy, DeliversOn2xx) {
  job::Recipient r;
  apply_attempt(r, {250, "2.0.0 Ok", false}, kT0, kT0 + 1, 42, kOpts);
  EXPECT_EQ(r.state, RecipientState::kDelivered);
  EXPECT_EQ(r.attempts, 1);
  EXPECT_EQ(r.smtp_code, 250);
  EXPECT_EQ(r.time, kT0 + 1);
}

TEST(RetryPolicy, FailsAtOnceOn5xx) {
  job::Recipient r;
  apply_attempt(r, {550, "5.1.1 user unknown", false}, kT0, kT0, 42, kOpts);
  EXPECT_EQ(r.state, RecipientState::kFailed);
  EXPECT_EQ(r.reason, "rejected");
  EXPECT_EQ(r.smtp_reply, "5.1.1 user unknown");
}

TEST(RetryPolicy, DefersOn4xxAndConnectionErrors) {
  for (int code : {421, 451, 0}) {
    job::Recipient r;
    apply_attempt(r, {code, "try later", false}, kT0, kT0, 42, kOpts);
    EXPECT_EQ(r.state, RecipientState::kDeferred) << code;
    EXPECT_GE(r.next_attempt, kT0 + 270);
    EXPECT_LE(r.next_attempt, kT0 + 330);
  }
}

TEST(RetryPolicy, ASoftBounceDefersWithTheRelaysReplyUntilMaxLifetime) {
  // The relay refused our AUTH: not the recipient's fault, so a fixed password lets it go out.
  smtp::Reply refused{535, "AUTH: 535 5.7.8 Authentication credentials invalid", false, true};
  job::Recipient r;
  apply_attempt(r, refused, kT0, kT0, 42, kOpts);
  EXPECT_EQ(r.state, RecipientState::kDeferred);
  EXPECT_EQ(r.smtp_code, 535);
  EXPECT_EQ(r.smtp_reply, refused.text);
  EXPECT_TRUE(r.reason.empty());
  apply_attempt(r, refused, kT0, kT0 + kOpts.max_lifetime_s, 42, kOpts);
  EXPECT_EQ(r.state, RecipientState::kFailed);
  EXPECT_EQ(r.reason, "expired");
  EXPECT_EQ(r.smtp_code, 535);
}

TEST(RetryPolicy, BackoffDoublesUpToTheMaximumWithBoundedJitter) {
  for (std::uint64_t seed = 0; seed < 50; ++seed) {
    EXPECT_NEAR(backoff_s(1, kOpts, seed), 300, 30);
    EXPECT_NEAR(backoff_s(2, kOpts, seed), 600, 60);
    EXPECT_NEAR(backoff_s(3, kOpts, seed), 1200, 120);
    EXPECT_NEAR(backoff_s(4, kOpts, seed), 2400, 240);
    EXPECT_LE(backoff_s(5, kOpts, seed), 4000);
    EXPECT_GE(backoff_s(5, kOpts, seed), 3600);
    EXPECT_LE(backoff_s(60, kOpts, seed), 4000);
  }
  // Jitter spreads jobs that failed together.
  EXPECT_NE(backoff_s(3, kOpts, 1), backoff_s(3, kOpts, 2));
}

TEST(RetryPolicy, GivesUpAfterMaxLifetime) {
  RetryOptions o{1, 4, 10, false};
  job::Recipient r;
  std::int64_t now = kT0;
  int guard = 0;
  while (r.state != RecipientState::kFailed && guard++ < 100) {
    apply_attempt(r, {451, "4.3.0 busy", false}, kT0, now, 7, o);
    if (r.state == RecipientState::kDeferred) {
      EXPECT_LE(r.next_attempt, kT0 + 10);  // the last try is at the deadline, never past it
      now = r.next_attempt;
    }
  }
  EXPECT_EQ(r.state, RecipientState::kFailed);
  EXPECT_EQ(r.reason, "expired");
  EXPECT_EQ(r.smtp_code, 451);
  EXPECT_EQ(r.smtp_reply, "4.3.0 busy");
  EXPECT_GE(now, kT0 + 10);
}

TEST(RetryPolicy, FlagsAPossibleDuplicateAfterALostDataReply) {
  job::Recipient r;
  apply_attempt(r, {0, "timeout after DATA", true}, kT0, kT0, 1, kOpts);
  EXPECT_EQ(r.state, RecipientState::kDeferred);
  EXPECT_TRUE(r.possible_duplicate);
  apply_attempt(r, {250, "ok", false}, kT0, kT0 + 400, 1, kOpts);
  EXPECT_EQ(r.state, RecipientState::kDelivered);
  EXPECT_TRUE(r.possible_duplicate);
  EXPECT_EQ(r.attempts, 2);
}

TEST(RetryPolicy, AfterDataTimeoutFailModeDoesNotResend) {
  RetryOptions o = kOpts;
  o.fail_after_data_timeout = true;
  job::Recipient r;
  apply_attempt(r, {0, "timeout after DATA", true}, kT0, kT0, 1, o);
  EXPECT_EQ(r.state, RecipientState::kFailed);
  EXPECT_EQ(r.reason, "unknown_after_data");
}
