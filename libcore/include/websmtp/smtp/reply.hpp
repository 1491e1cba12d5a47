#pragma once
// A transport's word on one recipient after one attempt: what the queue records and decides on.
#include <string>

namespace websmtp::smtp {

struct Reply {
  // The SMTP reply code; 0: no SMTP reply at all (connect failure, timeout, dropped
  // connection), which counts as temporary.
  int code = 0;
  std::string text;
  // The message was sent but the reply to the final dot was lost, so the peer may have taken it.
  bool uncertain = false;
  // A 5xx that is no verdict on the recipient (the relay refused our AUTH: a wrong password
  // is fixed by the operator): deferred like a 4xx, as Postfix's smtp_sasl_auth_soft_bounce.
  bool soft_bounce = false;
  // Failed for good without a peer's 5xx (direct delivery: the domain does not exist, or has a
  // null MX); `reason` names why (no_such_domain, null_mx).
  bool permanent = false;
  std::string reason;
  // Not attempted at all: every session allowed to the MX host was in use (MX_MAX_PER_HOST).
  // The recipient is due again shortly, no attempt counted; the worker never waits for a slot.
  bool busy = false;
  // The host that answered (the relay, or the MX host), empty when none did; whether the
  // session with it was encrypted.
  std::string host;
  bool tls = false;
  // The peer's own reply to this recipient's RCPT TO (not MAIL FROM's, DATA's or the final
  // dot's, which are about the sender or the message): only such a reply judges the mailbox.
  bool rcpt_reply = false;
};

}  // namespace websmtp::smtp
