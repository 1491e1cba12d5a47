#include "websmtp/smtp/session_reuse.hpp"

#include <spdlog/spdlog.h>

namespace websmtp::smtp {

BeforeUse before_use(SessionState s) {
  switch (s) {
    case SessionState::kReady:
      return BeforeUse::kUse;
    case SessionState::kMail:
    case SessionState::kRcpt:
    case SessionState::kData:
    case SessionState::kDot:
      return BeforeUse::kReset;
    default:
      return BeforeUse::kOpen;  // closed, broken, or stopped during set-up or RSET
  }
}

bool reopen_after_failure(bool reused, int tries, std::uint64_t replies_this_try, SessionState failed_in) {
  return reused && tries == 1 && replies_this_try == 0 && failed_in != SessionState::kDot;
}

std::vector<Reply> deliver_reusing(Session& session, const SessionKey& key, const Envelope& env,
                                   std::string_view message) {
  std::vector<Reply> replies;
  for (int tries = 1;; ++tries) {
    replies.assign(env.recipients.size(), Reply{});
    const std::uint64_t replies_before = session.replies_read();
    bool reused = false;
    Status status;
    switch (before_use(session.state())) {
      case BeforeUse::kOpen:
        status = session.open(key);
        break;
      case BeforeUse::kReset:
        reused = true;
        status = session.reset();
        if (!status) {  // RSET refused or unanswered: start afresh
          reused = false;
          status = session.open(key);
        }
        break;
      case BeforeUse::kUse:
        reused = true;
        break;
    }
    if (status) status = session.send(env, message, replies);
    if (status) return replies;
    const Failure& f = status.error();
    if (reopen_after_failure(reused, tries, session.replies_read() - replies_before, f.state)) {
      spdlog::debug("smtp {}:{}: idle session is gone ({}); reconnecting", key.host, key.port, f.reason);
      session.close();
      continue;
    }
    spdlog::debug("smtp {}:{}: {} failed: {}", key.host, key.port, to_string(f.state), f.reason);
    apply_failure(replies, f);
    session.quit();
    return replies;
  }
}

}  // namespace websmtp::smtp
