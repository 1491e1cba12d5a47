#include "websmtp/smtp/reply_reader.hpp"

namespace websmtp::smtp {

namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// "250 text", "250-text" (more lines follow) or a bare "250".
bool is_reply_line(std::string_view line) {
  return line.size() >= 3 && is_digit(line[0]) && is_digit(line[1]) && is_digit(line[2]) &&
         (line.size() == 3 || line[3] == ' ' || line[3] == '-');
}

}  // namespace

ReplyFramer::Step ReplyFramer::next(Response& out) {
  for (;;) {
    auto nl = buffer_.find('\n');
    if (nl == std::string::npos) return buffer_.size() > kMaxLineBytes ? Step::kLineTooLong : Step::kNeedMore;
    std::size_t length = nl > 0 && buffer_[nl - 1] == '\r' ? nl - 1 : nl;
    if (length > kMaxLineBytes) return Step::kLineTooLong;
    std::string line = buffer_.substr(0, length);
    buffer_.erase(0, nl + 1);
    if (!is_reply_line(line)) {
      out = Response{0, line.substr(0, 200), {}};
      partial_ = {};
      return Step::kReply;
    }
    std::string text = line.size() > 4 ? line.substr(4) : std::string();
    if (partial_.lines.empty()) partial_.code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
    if (!partial_.lines.empty()) partial_.text += "; ";
    partial_.text += text;
    partial_.lines.push_back(std::move(text));
    if (line.size() == 3 || line[3] == ' ') {
      out = std::move(partial_);
      partial_ = {};
      return Step::kReply;
    }
    if (partial_.lines.size() >= kMaxLines) return Step::kTooManyLines;
  }
}

void ReplyFramer::clear() {
  buffer_.clear();
  partial_ = {};
}

IoResult<Response> read_reply(Connection& c, ReplyFramer& framer, std::chrono::milliseconds timeout) {
  using std::chrono::steady_clock;
  const auto deadline = steady_clock::now() + timeout;
  auto timed_out = [&] {
    return tl::unexpected(
        IoError{"timed out after " + std::to_string(timeout.count() / 1000) + "s waiting for a reply", true});
  };
  Response r;
  for (;;) {
    switch (framer.next(r)) {
      case ReplyFramer::Step::kReply:
        return r;
      case ReplyFramer::Step::kLineTooLong:
        return tl::unexpected(IoError{"reply line longer than 4 KiB"});
      case ReplyFramer::Step::kTooManyLines:
        return tl::unexpected(IoError{"reply longer than 200 lines"});
      case ReplyFramer::Step::kNeedMore:
        break;
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - steady_clock::now());
    if (left.count() <= 0) return timed_out();
    bool started = framer.started();
    char buf[4096];
    auto n = c.receive(buf, sizeof buf, left);
    if (!n && n.error().timeout) continue;  // the socket's wait is bounded by a quantum; the deadline decides
    if (!n) return tl::unexpected(n.error());
    if (*n == 0)
      return tl::unexpected(IoError{started ? "connection closed mid-reply" : "connection closed by the peer"});
    framer.append(std::string_view(buf, *n));
  }
}

}  // namespace websmtp::smtp
