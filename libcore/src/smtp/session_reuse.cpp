#include "websmtp/smtp/session_reuse.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "websmtp/common/metrics.hpp"

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

Delivered deliver_reusing_detailed(Session& session, const SessionKey& key, const Envelope& env,
                                   std::string_view message) {
  Delivered out;
  std::vector<Reply>& replies = out.replies;
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
    if (status) metrics::smtp_session_used(reused);
    if (status) {
      out.tls = session.tls();  // before send: a 421 closes the session
      status = session.send(env, message, replies);
    }
    if (status) {
      // Session::send gives every recipient the refusal of MAIL FROM as its reply.
      // Recipients failed for good unsent (smtputf8_required) were not part of the transaction.
      out.refused_at_mail = std::any_of(replies.begin(), replies.end(), [](const Reply& r) { return !r.permanent; }) &&
                            std::all_of(replies.begin(), replies.end(), [](const Reply& r) {
                              return r.permanent || (r.code >= 400 && r.text.rfind("MAIL FROM: ", 0) == 0);
                            });
      return out;
    }
    const Failure& f = status.error();
    if (reopen_after_failure(reused, tries, session.replies_read() - replies_before, f.state)) {
      spdlog::debug("smtp {}:{}: idle session is gone ({}); reconnecting", key.host, key.port, f.reason);
      session.close();
      continue;
    }
    spdlog::debug("smtp {}:{}: {} failed: {}", key.host, key.port, to_string(f.state), f.reason);
    apply_failure(replies, f);
    out.failed = true;
    out.failed_in = f.state;
    if (f.state == SessionState::kConnect || f.state == SessionState::kGreeting) out.tls = false;
    session.quit();
    return out;
  }
}

}  // namespace websmtp::smtp
