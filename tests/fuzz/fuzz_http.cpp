// The HTTP gate's framing: a Connection fed the input in chunks split where the fuzzer says,
// over one end of a socketpair, with a handler that answers every request with a fixed
// Response (at once, later, or by throwing, as the request's target asks). Every answer is
// read back from the other end and must be well framed, in request order, each exactly once.
//
// Input: byte 0 picks the limits and what happens at the end; byte 1 the number of split
// points (0..15), each then given as a 16-bit offset; the rest is the byte stream.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_support.hpp"
#include "http/connection.hpp"
#include "http/message.hpp"
#include "websmtp/common/text.hpp"

using namespace websmtp::daemon::http;
using websmtp::iequals;

namespace {

ConnectionLimits limits_for(unsigned variant) {
  ConnectionLimits l;
  switch (variant & 3) {
    case 0:
      break;  // the daemon's defaults
    case 1:
      l.max_head_bytes = 256;
      l.max_body_bytes = 512;
      l.max_discard_bytes = 1024;
      break;
    case 2:
      l.max_head_bytes = 48;
      l.max_body_bytes = 8;
      l.max_discard_bytes = 16;
      break;
    case 3:
      l.max_body_bytes = 0;
      break;
  }
  return l;
}

bool inside(std::string_view view, const std::string& buffer) {
  if (view.empty()) return true;
  return view.data() >= buffer.data() && view.data() + view.size() <= buffer.data() + buffer.size();
}

struct Harness {
  std::vector<bool> head;          // per handled request: was it HEAD
  std::vector<Exchange> deferred;  // answered after the next chunk (or at the end)

  void handle(Request&& in, Exchange ex) {
    Request req = std::move(in);  // moving rebases the views: they must still point into req
    FUZZ_CHECK(inside(req.target, req.raw) && inside(req.path, req.raw) && inside(req.query, req.raw), "target view");
    for (const auto& [name, value] : req.headers) FUZZ_CHECK(inside(name, req.raw) && inside(value, req.raw), "header");
    FUZZ_CHECK(req.body.data() == req.body_buf.data() && req.body.size() == req.body_buf.size(), "body view");
    std::int64_t declared = 0;
    if (auto cl = req.header("Content-Length")) std::from_chars(cl->data(), cl->data() + cl->size(), declared);
    FUZZ_CHECK(static_cast<std::int64_t>(req.body.size()) == declared, "body length");
    FUZZ_CHECK(ex.head_request() == (req.method == Method::kHead), "head flag");
    (void)req.query_param("wait");
    (void)req.header_count("Authorization");

    const std::size_t n = head.size();
    head.push_back(ex.head_request());
    ex.add_header("X-N", std::to_string(n));
    if (req.target.find("throw") != std::string_view::npos) throw std::runtime_error("handler failed");
    if (req.target.find("late") != std::string_view::npos) {
      deferred.push_back(std::move(ex));
      return;
    }
    ex.send(answer());
  }

  static Response answer() {
    Response r;
    r.status = 202;
    r.add_header("Location", "/mail/status/x");
    r.body = R"({"ref":"x"})";
    return r;
  }

  void answer_deferred() {
    auto now = std::move(deferred);
    deferred.clear();
    for (auto& ex : now) ex.send(answer());  // may run later requests, which may defer again
  }
};

void drain(int fd, std::string& out) {
  char buf[65536];
  for (;;) {
    ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n <= 0) return;
    out.append(buf, static_cast<std::size_t>(n));
  }
}

// Reads the answers back: status line, fields, Content-Length bytes of body (none for HEAD).
// Answers to handled requests carry X-N in order; a refusal (no X-N) is the last answer;
// "100 Continue" may come before any of them.
void check_answers(std::string_view out, const Harness& h) {
  std::size_t pos = 0;
  std::size_t next = 0;
  bool refused = false;
  while (pos < out.size()) {
    FUZZ_CHECK(!refused, "an answer after the connection's last one");
    std::string_view rest = out.substr(pos);
    FUZZ_CHECK(rest.substr(0, 9) == "HTTP/1.1 " && rest.size() > 12, std::string(rest.substr(0, 40)));
    auto end = rest.find("\r\n\r\n");
    FUZZ_CHECK(end != std::string_view::npos, "answer head not terminated");
    if (rest[9] == '1') {  // an interim answer ("100 Continue"): a head alone, a final one follows
      FUZZ_CHECK(rest.substr(9, 4) == "100 ", std::string(rest.substr(0, end)));
      pos += end + 4;
      continue;
    }
    std::string_view head = rest.substr(0, end + 2);
    std::int64_t length = -1;
    std::int64_t n = -1;
    for (std::size_t p = head.find("\r\n") + 2; p < head.size();) {
      auto eol = head.find("\r\n", p);
      std::string_view field = head.substr(p, eol - p);
      p = eol + 2;
      auto colon = field.find(": ");
      FUZZ_CHECK(colon != std::string_view::npos, std::string(field));
      std::string_view name = field.substr(0, colon), value = field.substr(colon + 2);
      if (iequals(name, "Content-Length")) std::from_chars(value.data(), value.data() + value.size(), length);
      if (name == "X-N") std::from_chars(value.data(), value.data() + value.size(), n);
    }
    FUZZ_CHECK(length >= 0, std::string(head));
    bool bodyless = false;
    if (n >= 0) {
      FUZZ_CHECK(static_cast<std::size_t>(n) == next,
                 "answers out of order or repeated: got " + std::to_string(n) + ", expected " + std::to_string(next));
      FUZZ_CHECK(next < h.head.size(), "an answer to a request never handled");
      bodyless = h.head[next];
      ++next;
    } else {
      // The connection's last answer; a refused HEAD request's has no body.
      refused = true;
      bodyless = pos + end + 4 == out.size();
    }
    pos += end + 4 + (bodyless ? 0 : static_cast<std::size_t>(length));
    FUZZ_CHECK(pos <= out.size(), "answer body truncated");
  }
  FUZZ_CHECK(next == h.head.size(),
             "handled " + std::to_string(h.head.size()) + " requests, answered " + std::to_string(next));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  websmtp::fuzz::Bytes in(data, size);
  const unsigned config = in.byte();
  const std::size_t splits = in.byte() & 15;
  std::vector<std::size_t> cuts;
  for (std::size_t i = 0; i < splits; ++i) cuts.push_back(in.u16());
  const std::string_view stream = in.rest();
  for (auto& c : cuts) c %= stream.size() + 1;
  cuts.push_back(stream.size());
  std::sort(cuts.begin(), cuts.end());

  int fds[2];
  FUZZ_CHECK(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0, "socketpair");
  int big = 4 << 20;
  ::setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
  ::setsockopt(fds[1], SOL_SOCKET, SO_RCVBUF, &big, sizeof big);

  Harness h;
  const RequestHandler handler = [&h](Request&& req, Exchange ex) { h.handle(std::move(req), std::move(ex)); };
  std::string answers;
  {
    auto conn = std::make_shared<Connection>(fds[0], std::weak_ptr<Pistache::Tcp::Peer>(), limits_for(config), &handler,
                                             "127.0.0.1");
    std::size_t from = 0;
    for (std::size_t cut : cuts) {
      if (cut > from) conn->on_input(stream.data() + from, cut - from);
      from = std::max(from, cut);
      if (config & 4) h.answer_deferred();
      drain(fds[1], answers);
    }
    while (!h.deferred.empty()) h.answer_deferred();
    if (config & 8) conn->check_timeouts(std::int64_t{1} << 60);  // every timeout has passed
    drain(fds[1], answers);
    conn->close();
  }
  drain(fds[1], answers);
  ::close(fds[0]);
  ::close(fds[1]);
  check_answers(answers, h);
  return 0;
}
