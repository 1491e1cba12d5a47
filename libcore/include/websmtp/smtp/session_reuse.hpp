#pragma once
// Reusing SMTP sessions across jobs (Postfix's smtp_reuse): what a kept session needs before
// its next transaction, when a failure deserves one more try on a new connection, and one
// delivery over a kept session. Kept out of Session, which only talks SMTP, so that the relay
// transport (one key) and a pool keyed by host (direct MX delivery) share it.
#include <cstdint>
#include <string_view>
#include <vector>

#include "websmtp/smtp/session.hpp"

namespace websmtp::smtp {

// What a session kept from an earlier job needs before the next transaction.
enum class BeforeUse {
  kOpen,   // none open (never, closed, broken): connect
  kReset,  // the last transaction was refused part-way: RSET first
  kUse,    // ready as it is
};
BeforeUse before_use(SessionState s);

// A kept session that fails before the peer said anything in this job was most likely closed
// by the peer while idle (Postfix closes after 300 s): one more try on a new connection rather
// than deferring a job the peer never saw. Never once the final dot is out.
bool reopen_after_failure(bool reused, int tries, std::uint64_t replies_this_try, SessionState failed_in);

// What became of one delivery beyond the replies: where a failed step stopped (the next MX
// is worth a try when it stopped before any recipient was answered), and whether the session
// was encrypted while the peer answered.
struct Delivered {
  std::vector<Reply> replies;
  bool failed = false;                            // a step failed (the session was ended)
  SessionState failed_in = SessionState::kReady;  // that step
  bool refused_at_mail = false;                   // the peer refused MAIL FROM (every reply is its answer)
  bool tls = false;
};

// Delivers `env` over `session` to `key`, opening or resetting the session as it needs, and
// leaves it open for the next job, or ended (QUIT when it can still talk) after a failure.
// One reply per recipient.
Delivered deliver_reusing_detailed(Session& session, const SessionKey& key, const Envelope& env,
                                   std::string_view message);
inline std::vector<Reply> deliver_reusing(Session& session, const SessionKey& key, const Envelope& env,
                                          std::string_view message) {
  return deliver_reusing_detailed(session, key, env, message).replies;
}

}  // namespace websmtp::smtp
