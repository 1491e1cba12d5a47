#pragma once
// Reading SMTP replies: multi-line framing (RFC 5321 4.2.1), lines of at most 4 KiB, at
// most 200 lines, and one deadline for a whole reply, so that a peer that trickles bytes
// cannot hold a worker past it. Poco's own reader has none of these bounds, and it spins
// forever when the peer closes in the middle of a reply.
#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "websmtp/smtp/connection.hpp"

namespace websmtp::smtp {

// One reply as the peer sent it.
struct Response {
  int code = 0;                    // 0: not an SMTP reply (the offending line is the text)
  std::string text;                // the lines' text without their codes, joined by "; "
  std::vector<std::string> lines;  // each line's text (an EHLO reply: one capability a line)
};

// Pure framing: bytes in, complete replies out.
class ReplyFramer {
 public:
  static constexpr std::size_t kMaxLineBytes = 4096;
  static constexpr std::size_t kMaxLines = 200;
  enum class Step { kNeedMore, kReply, kLineTooLong, kTooManyLines };

  void append(std::string_view bytes) { buffer_.append(bytes); }
  // Takes the next complete reply out of the bytes received. A line that is not an SMTP
  // reply line ends the reply with code 0 and (the start of) that line as its text.
  Step next(Response& out);
  // Part of a reply has arrived (a closed connection is then "mid-reply").
  bool started() const { return !buffer_.empty() || !partial_.lines.empty(); }
  // Forgets everything received (STARTTLS: nothing sent in plaintext may count after it).
  void clear();

 private:
  std::string buffer_;  // received, not yet taken as lines
  Response partial_;    // the lines of a multi-line reply so far
};

// Reads one reply from `c` within `timeout` in total.
IoResult<Response> read_reply(Connection& c, ReplyFramer& framer, std::chrono::milliseconds timeout);

}  // namespace websmtp::smtp
