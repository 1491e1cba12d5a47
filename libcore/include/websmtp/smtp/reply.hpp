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
};

}  // namespace websmtp::smtp
