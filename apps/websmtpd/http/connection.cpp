#include "connection.hpp"

#include "error_status.hpp"

#include <sys/socket.h>

#include <cerrno>
#include <optional>

#include <spdlog/spdlog.h>

namespace websmtp::daemon::http {

namespace {
std::atomic<std::int64_t> g_answers_in_flight{0};
constexpr std::int64_t kCloseLingerMs = 5000;
constexpr std::int64_t kMaxQueuedBytes = 16 * 1024 * 1024;  // answers waiting for a client that does not read
constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";

std::int64_t steady_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

Response refusal(ErrorKind kind, std::string code, std::string message, std::string field = {}) {
  return error_response(Error{kind, std::move(code), std::move(message), std::move(field)});
}
}  // namespace

std::int64_t answers_in_flight() { return g_answers_in_flight.load(); }

// ---- Exchange -------------------------------------------------------------------------

struct Exchange::State {
  std::shared_ptr<Connection> conn;
  bool head = false;
  bool keep_alive = true;
  std::string extra_headers;
  std::atomic<int> phase{0};          // 0: handler running, 1: answered, 2: handler returned unanswered
  std::atomic<bool> answered{false};  // Exchange is copyable (std::function needs it): once only

  State(std::shared_ptr<Connection> c, bool h, bool k) : conn(std::move(c)), head(h), keep_alive(k) {
    g_answers_in_flight.fetch_add(1, std::memory_order_relaxed);
  }
  ~State() {
    if (!answered.exchange(true)) {
      spdlog::error("a request was left unanswered; answering 500");
      if (answer(refusal(ErrorKind::kInternal, "internal_error", "internal error"))) conn->pump();
    }
    g_answers_in_flight.fetch_sub(1, std::memory_order_relaxed);
  }
  // Writes the answer; returns true when the request loop must be continued by this thread.
  bool answer(Response r) {
    if (!extra_headers.empty()) r.headers.insert(0, extra_headers);
    conn->write(render(r, head, keep_alive), !keep_alive);
    return phase.exchange(1) == 2;
  }
};

bool Exchange::head_request() const { return s_->head; }
Connection& Exchange::connection() const { return *s_->conn; }

void Exchange::add_header(std::string_view name, std::string_view value) {
  append_header(s_->extra_headers, name, value);
}

void Exchange::send(Response response) {
  if (!s_ || s_->answered.exchange(true)) return;
  auto state = std::move(s_);
  if (state->answer(std::move(response))) state->conn->pump();
}

// ---- Connection -----------------------------------------------------------------------

Connection::Connection(int fd, std::weak_ptr<Pistache::Tcp::Peer> peer, const ConnectionLimits& limits,
                       const RequestHandler* handler, std::string client_address)
    : fd_(fd),
      peer_(std::move(peer)),
      limits_(limits),
      handler_(handler),
      client_address_(std::move(client_address)),
      idle_since_ms_(steady_ms()),
      evictable_since_ms_(idle_since_ms_) {}

bool Connection::evict() {
  std::lock_guard lock(mu_);
  if (closed_ || discard_ || busy_ || queued_ || request_started_ms_ || body_wanted_ >= 0 || !in_.empty()) return false;
  discard_ = true;
  evictable_since_ms_.store(0, std::memory_order_relaxed);
  ::shutdown(fd_, SHUT_RDWR);  // the reactor sees the close and ends the connection
  return true;
}

void Connection::check_timeouts(std::int64_t now_ms) {
  std::lock_guard lock(mu_);
  if (closed_) return;
  if (discard_) {
    // Answered with "close" (or refused) and half-closed: a client that never closes its side
    // does not keep the descriptor.
    if (discard_since_ms_ && now_ms - discard_since_ms_ > kCloseLingerMs) ::shutdown(fd_, SHUT_RDWR);
    return;
  }
  Error why;
  if (head_done_ms_ && body_wanted_ >= 0 && now_ms - head_done_ms_ > limits_.body_timeout_ms) {
    why = Error{ErrorKind::kTimeout, "body_timeout", "the request body did not arrive in time (HTTP_BODY_TIMEOUT)"};
  } else if (request_started_ms_ && body_wanted_ < 0 && now_ms - request_started_ms_ > limits_.header_timeout_ms) {
    why = Error{ErrorKind::kTimeout, "header_timeout",
                "the request headers did not arrive in time (HTTP_HEADER_TIMEOUT)"};
  } else if (!busy_ && !request_started_ms_ &&
             now_ms - idle_since_ms_ > (spoke_ ? limits_.idle_timeout_ms : limits_.header_timeout_ms)) {
    // Nothing to say: an idle keep-alive connection just ends, and so does one that connected
    // and never sent a byte (its first request was due within the header timeout).
    ::shutdown(fd_, SHUT_RDWR);
    discard_ = true;
    evictable_since_ms_.store(0, std::memory_order_relaxed);
    return;
  } else {
    return;
  }
  if (busy_ || queued_) return;  // an answer is owed or still queued first; the next check will see it
  discard_ = true;
  discard_since_ms_ = now_ms;
  in_.clear();
  std::string bytes = render(error_response(why), false, false);
  (void)::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  ::shutdown(fd_, SHUT_WR);  // the reaper ends it after the linger if the client does not
}

void Connection::on_input(const char* data, std::size_t len) {
  std::function<void()> hurry;
  bool run = false;
  {
    std::lock_guard lock(mu_);
    if (closed_) return;
    if (discard_) {
      discarded_ += static_cast<std::int64_t>(len);
      if (discarded_ > limits_.max_discard_bytes) ::shutdown(fd_, SHUT_RDWR);
      return;
    }
    if (in_.empty() && body_wanted_ < 0 && !request_started_ms_) request_started_ms_ = steady_ms();
    spoke_ = true;
    evictable_since_ms_.store(0, std::memory_order_relaxed);
    // Requests piling up behind an answer still owed (a client that pipelines and does not
    // read): past one request's worth of bytes, the connection is cut.
    if (in_.size() + len > limits_.max_head_bytes + static_cast<std::size_t>(limits_.max_body_bytes) + 65536 ||
        queued_bytes_ > kMaxQueuedBytes) {
      discard_ = true;
      discard_since_ms_ = steady_ms();
      in_.clear();
      ::shutdown(fd_, SHUT_RDWR);
      return;
    }
    in_.append(data, len);
    if (busy_) {
      hurry = std::move(hurry_);  // a long-poll owes the answer: it answers now and goes on
      hurry_ = nullptr;
    } else {
      busy_ = run = true;
    }
  }
  if (hurry) hurry();
  if (run) pump();
}

void Connection::close() {
  std::function<void()> hurry;
  {
    std::lock_guard lock(mu_);
    closed_ = true;
    in_.clear();
    hurry = std::move(hurry_);
    hurry_ = nullptr;
  }
  if (hurry) hurry();  // a long-poll on a closed connection need not wait out its time
}

void Connection::set_hurry(std::function<void()> hurry) {
  {
    std::lock_guard lock(mu_);
    if (closed_) return;
    // A request already waits behind this long-poll (it came in the same read): answer now.
    if (in_.empty()) {
      hurry_ = std::move(hurry);
      return;
    }
  }
  hurry();
}

void Connection::write(std::string bytes, bool close_after) {
  std::optional<Pistache::Async::Promise<ssize_t>> promise;
  std::int64_t queued = 0;
  {
    std::lock_guard lock(mu_);
    hurry_ = nullptr;
    if (closed_) return;
    if (close_after) {
      discard_ = true;
      discard_since_ms_ = steady_ms();
    }
    if (!queued_) {
      ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n == static_cast<ssize_t>(bytes.size())) {
        if (close_after) ::shutdown(fd_, SHUT_WR);
        return;
      }
      if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) return;  // the peer is gone; the reactor will see it
      bytes.erase(0, n < 0 ? 0 : static_cast<std::size_t>(n));
      queued_ = true;
    }
    // The socket is full (a client that does not read): Pistache's queue waits for room.
    auto peer = peer_.lock();
    if (!peer) return;
    std::size_t size = bytes.size();
    queued = static_cast<std::int64_t>(size);
    queued_bytes_ += queued;
    promise.emplace(peer->send(Pistache::RawBuffer(std::move(bytes), size)));
  }
  // Attached without mu_: Pistache runs the callback under the promise's own lock, at once
  // if the write is already done.
  std::weak_ptr<Connection> self = weak_from_this();
  promise->then(
      [self, close_after, queued](ssize_t) {
        if (auto c = self.lock()) {
          std::lock_guard l(c->mu_);
          c->queued_bytes_ -= queued;
          if (close_after && !c->closed_) ::shutdown(c->fd_, SHUT_WR);
        }
      },
      Pistache::Async::IgnoreException);
}

Connection::Frame Connection::next_request_locked(Request& out, Response& refused, bool& head_refused,
                                                  bool& send_continue) {
  if (body_wanted_ < 0) {
    // Looking for the end of the head.
    std::size_t from = scanned_ >= 3 ? scanned_ - 3 : 0;
    std::size_t end = in_.find("\r\n\r\n", from);
    if (end == std::string::npos) {
      scanned_ = in_.size();
      if (in_.size() > limits_.max_head_bytes) {
        refused =
            refusal(ErrorKind::kHeadersTooLarge, "headers_too_large", "the request headers are larger than 64 KiB");
        return Frame::kRefused;
      }
      return Frame::kIncomplete;
    }
    if (end > limits_.max_head_bytes) {
      refused = refusal(ErrorKind::kHeadersTooLarge, "headers_too_large", "the request headers are larger than 64 KiB");
      return Frame::kRefused;
    }
    pending_head_ = Request();
    pending_head_.raw.assign(in_, 0, end);
    Head head;
    HeadError parsed = parse_head(pending_head_, end, head);
    head_refused = pending_head_.method == Method::kHead;
    switch (parsed) {
      case HeadError::kNone:
        break;
      case HeadError::kExpectation:
        refused = expectation_failed_response();
        return Frame::kRefused;
      case HeadError::kBadLength:
        refused = refusal(ErrorKind::kInvalid, "bad_content_length", "Content-Length must be one decimal number",
                          "Content-Length");
        return Frame::kRefused;
      case HeadError::kLengthRequired:
        refused = refusal(ErrorKind::kLengthRequired, "length_required",
                          "send the body with a Content-Length (chunked bodies are not accepted)");
        return Frame::kRefused;
      case HeadError::kUnsupportedVersion:
        refused = refusal(ErrorKind::kVersionNotSupported, "http_version_not_supported",
                          "only HTTP/1.0 and HTTP/1.1 are served");
        return Frame::kRefused;
      case HeadError::kMalformed:
        refused = refusal(ErrorKind::kInvalid, "bad_request", "the request line or a header field is malformed");
        return Frame::kRefused;
    }
    if (head.content_length > limits_.max_body_bytes) {
      refused =
          refusal(ErrorKind::kTooLarge, "body_too_large",
                  "the request body (" + std::to_string(head.content_length) +
                      " bytes) is larger than MAX_BODY_BYTES (" + std::to_string(limits_.max_body_bytes) + " bytes)");
      return Frame::kRefused;
    }
    in_.erase(0, end + 4);
    scanned_ = 0;
    body_wanted_ = head.content_length;
    head_done_ms_ = steady_ms();
    // The client waits for this before it sends the body (RFC 9110 10.1.1); every answer before
    // it has been written, so it keeps its place. Not needed when the body came along anyway.
    send_continue = head.expect_continue && static_cast<std::int64_t>(in_.size()) < body_wanted_;
  }
  if (static_cast<std::int64_t>(in_.size()) < body_wanted_) return Frame::kIncomplete;
  out = std::move(pending_head_);
  auto n = static_cast<std::size_t>(body_wanted_);
  if (in_.size() == n) {
    out.body_buf.swap(in_);
    in_.clear();
  } else {
    out.body_buf.assign(in_, 0, n);
    in_.erase(0, n);
  }
  out.body = out.body_buf;
  body_wanted_ = -1;
  head_done_ms_ = 0;
  request_started_ms_ = in_.empty() ? 0 : steady_ms();
  return Frame::kRequest;
}

void Connection::pump() {
  auto self = shared_from_this();
  for (;;) {
    Request req;
    Response refused;
    Frame f;
    bool head_refused = false;
    bool send_continue = false;
    {
      std::lock_guard lock(mu_);
      if (closed_ || discard_) {
        busy_ = false;
        return;
      }
      f = next_request_locked(req, refused, head_refused, send_continue);
      if (f == Frame::kIncomplete && !send_continue) {
        busy_ = false;
        if (!request_started_ms_) {
          idle_since_ms_ = steady_ms();
          evictable_since_ms_.store(idle_since_ms_, std::memory_order_relaxed);
        }
        return;
      }
      if (f == Frame::kRefused) {
        discard_ = true;
        in_.clear();
      }
    }
    if (send_continue) {
      // Still busy_: a body arriving meanwhile waits in the buffer for the next turn of this loop.
      write(std::string(kContinue), false);
      continue;
    }
    if (f == Frame::kRefused) {
      // The connection's last answer (after any still queued): then it is half-closed and
      // further input dropped.
      write(render(refused, head_refused, false), true);
      std::lock_guard lock(mu_);
      busy_ = false;
      return;
    }
    bool head = req.method == Method::kHead;
    auto state = std::make_shared<Exchange::State>(self, head, req.keep_alive);
    try {
      (*handler_)(std::move(req), Exchange(state));
    } catch (const std::exception& e) {
      // Never e.what() to the client: it may name internals. The dropped Exchange answers 500.
      spdlog::error("unhandled error while handling a request: {}", e.what());
    } catch (...) {
      spdlog::error("unhandled error while handling a request");
    }
    // Answered inside the handler: go on with the next request. Otherwise whoever answers
    // later continues the loop.
    if (state->phase.exchange(2) != 1) return;
  }
}

}  // namespace websmtp::daemon::http
