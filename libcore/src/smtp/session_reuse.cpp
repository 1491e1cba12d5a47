#include "websmtp/smtp/session_reuse.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <numeric>

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

namespace {

// One transaction (with the reconnect of reopen_after_failure).
Delivered deliver_once(Session& session, const SessionKey& key, const Envelope& env, std::string_view message) {
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

}  // namespace

Delivered deliver_reusing_detailed(Session& session, const SessionKey& key, const Envelope& env,
                                   std::string_view message) {
  Delivered out = deliver_once(session, key, env, message);
  // RFC 5321 4.5.3.1.10: a 452 to RCPT once the peer has taken some recipients means "too many
  // recipients for one transaction": the message went to those it took; the rest go at once
  // in the next transaction of the same session, not after a retry delay. Each turn takes at
  // least one recipient more, so the turns end.
  std::vector<std::size_t> turn(env.recipients.size());
  std::iota(turn.begin(), turn.end(), std::size_t{0});
  while (!out.failed && session.state() == SessionState::kReady) {
    std::vector<std::size_t> rest;
    bool taken = false;
    for (auto i : turn) {
      if (out.replies[i].code == 452)
        rest.push_back(i);
      else if (out.replies[i].code / 100 == 2)
        taken = true;
    }
    if (rest.empty() || !taken) break;
    spdlog::debug("smtp {}:{}: {} recipient(s) over the peer's limit per transaction; sending them next", key.host,
                  key.port, rest.size());
    Envelope sub{env.ref, env.sender, {}, {}};  // the message was on the wire already: before_data has been told
    for (auto i : rest) sub.recipients.push_back(env.recipients[i]);
    Delivered more = deliver_once(session, key, sub, message);
    for (std::size_t k = 0; k < rest.size(); ++k) out.replies[rest[k]] = std::move(more.replies[k]);
    out.failed = more.failed;
    out.failed_in = more.failed_in;
    turn = std::move(rest);
  }
  return out;
}

}  // namespace websmtp::smtp
