#include <gtest/gtest.h>

#include "websmtp/smtp/session.hpp"
#include "websmtp/smtp/session_reuse.hpp"

using namespace websmtp::smtp;
using std::chrono::milliseconds;

namespace {
const Timeouts kTimeouts{milliseconds(30'000), milliseconds(300'000), milliseconds(120'000), milliseconds(600'000)};
constexpr SessionState kAllStates[] = {SessionState::kDisconnected, SessionState::kConnect,  SessionState::kGreeting,
                                       SessionState::kEhlo,         SessionState::kStartTls, SessionState::kAuth,
                                       SessionState::kReady,        SessionState::kMail,     SessionState::kRcpt,
                                       SessionState::kData,         SessionState::kDot,      SessionState::kRset,
                                       SessionState::kQuit,         SessionState::kBroken};
}  // namespace

TEST(SessionTimeouts, EachStateWaitsAsLongAsItsOption) {
  EXPECT_EQ(timeout_for(SessionState::kConnect, kTimeouts), kTimeouts.connect);
  for (auto s : {SessionState::kGreeting, SessionState::kEhlo, SessionState::kStartTls, SessionState::kAuth,
                 SessionState::kMail, SessionState::kRcpt, SessionState::kRset})
    EXPECT_EQ(timeout_for(s, kTimeouts), kTimeouts.command) << to_string(s);
  EXPECT_EQ(timeout_for(SessionState::kData, kTimeouts), kTimeouts.data_ack);
  EXPECT_EQ(timeout_for(SessionState::kDot, kTimeouts), kTimeouts.dot);
  for (auto s : {SessionState::kDisconnected, SessionState::kReady, SessionState::kBroken})
    EXPECT_EQ(timeout_for(s, kTimeouts), milliseconds::zero()) << to_string(s) << " waits for nothing";
}

TEST(SessionTimeouts, QuitNeverHoldsTheWorkerLong) {
  EXPECT_EQ(timeout_for(SessionState::kQuit, kTimeouts), kQuitTimeout);
  Timeouts quick = kTimeouts;
  quick.command = milliseconds(1'000);
  EXPECT_EQ(timeout_for(SessionState::kQuit, quick), milliseconds(1'000));
}

TEST(SessionTimeouts, EveryStateHasAName) {
  for (auto s : kAllStates) EXPECT_STRNE(to_string(s), "?");
}

TEST(SessionFailure, UnansweredRecipientsTakeA4xxCodeOrNone) {
  std::vector<Reply> replies{{250, "ok"}, {550, "5.1.1 unknown"}, {}};
  apply_failure(replies, Failure{SessionState::kRcpt, 421, "connection closed by the peer"});
  EXPECT_EQ(replies[0].code, 421);
  EXPECT_EQ(replies[0].text, "connection closed by the peer");
  EXPECT_EQ(replies[1].code, 550) << "the peer's own answer stands";
  EXPECT_EQ(replies[2].code, 421);

  std::vector<Reply> greeted{{}};
  apply_failure(greeted, Failure{SessionState::kGreeting, 554, "greeting: 554 go away"});
  EXPECT_EQ(greeted[0].code, 0) << "a 5xx that is not about the recipient never fails it";
  EXPECT_EQ(greeted[0].text, "greeting: 554 go away");
  EXPECT_FALSE(greeted[0].uncertain);
}

TEST(SessionFailure, AfterTheFinalDotAcceptedRecipientsAreUncertain) {
  std::vector<Reply> replies{{250, "ok"}, {451, "later"}};
  apply_failure(replies, Failure{SessionState::kDot, 0, "timed out after 600s waiting for a reply"});
  EXPECT_TRUE(replies[0].uncertain);
  EXPECT_EQ(replies[0].code, 0);
  EXPECT_FALSE(replies[1].uncertain);
  EXPECT_EQ(replies[1].code, 451);

  std::vector<Reply> before{{250, "ok"}};
  apply_failure(before, Failure{SessionState::kData, 0, "connection closed while sending"});
  EXPECT_FALSE(before[0].uncertain) << "the message never went out in full";
}

TEST(SessionFailure, ARefusedLoginIsTheRelaysAnswerForEveryRecipientAsASoftBounce) {
  std::vector<Reply> replies(2);
  apply_failure(replies, Failure{SessionState::kAuth, 535, "AUTH: 535 5.7.8 Authentication credentials invalid"});
  for (const auto& r : replies) {
    EXPECT_EQ(r.code, 535);
    EXPECT_EQ(r.text, "AUTH: 535 5.7.8 Authentication credentials invalid");
    EXPECT_TRUE(r.soft_bounce);
    EXPECT_FALSE(r.uncertain);
  }
  std::vector<Reply> temporary(1);
  apply_failure(temporary, Failure{SessionState::kAuth, 454, "AUTH: 454 4.7.0 try later"});
  EXPECT_EQ(temporary[0].code, 454);
  EXPECT_FALSE(temporary[0].soft_bounce) << "a 4xx defers by itself";
  std::vector<Reply> unoffered(1);
  apply_failure(unoffered, Failure{SessionState::kAuth, 0, "SMTP_USER is set but the relay does not offer AUTH"});
  EXPECT_EQ(unoffered[0].code, 0);
  EXPECT_FALSE(unoffered[0].soft_bounce);
}

TEST(SessionReuse, AKeptSessionIsUsedResetOrReopened) {
  EXPECT_EQ(before_use(SessionState::kReady), BeforeUse::kUse);
  for (auto s : {SessionState::kMail, SessionState::kRcpt, SessionState::kData, SessionState::kDot})
    EXPECT_EQ(before_use(s), BeforeUse::kReset) << to_string(s);
  for (auto s : {SessionState::kDisconnected, SessionState::kBroken, SessionState::kAuth, SessionState::kRset})
    EXPECT_EQ(before_use(s), BeforeUse::kOpen) << to_string(s);
}

TEST(SessionReuse, OnlyASilentlyDeadKeptSessionIsReopenedAndOnlyOnce) {
  EXPECT_TRUE(reopen_after_failure(true, 1, 0, SessionState::kMail));
  EXPECT_FALSE(reopen_after_failure(false, 1, 0, SessionState::kGreeting)) << "a new session failed: no retry";
  EXPECT_FALSE(reopen_after_failure(true, 2, 0, SessionState::kMail)) << "once";
  EXPECT_FALSE(reopen_after_failure(true, 1, 1, SessionState::kRcpt)) << "the peer had answered";
  EXPECT_FALSE(reopen_after_failure(true, 1, 0, SessionState::kDot)) << "never once the dot is out";
}

TEST(SessionKey, OrdersAndComparesByHostPortAndTls) {
  SessionKey a{"mx1.example.net", 25, TlsMode::kOpportunistic};
  SessionKey b{"mx1.example.net", 25, TlsMode::kStartTls};
  EXPECT_EQ(a, (SessionKey{"mx1.example.net", 25, TlsMode::kOpportunistic}));
  EXPECT_NE(a, b);
  EXPECT_TRUE(a < b || b < a);
}
