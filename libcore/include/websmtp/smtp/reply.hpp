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
};

}  // namespace websmtp::smtp
