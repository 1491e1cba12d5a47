#pragma once
// One client connection: request framing, answer order, and writing answers.
//
// Requests are framed here (head up to 64 KiB, then exactly Content-Length bytes) and handed
// to the router one at a time. An answer may come later from another thread (a submit is
// answered after its group commit, a long-poll on a status change); requests that arrive
// behind it wait in the buffer, so answers keep request order (RFC 9112 9.3.2), and the
// thread that writes the late answer goes on with them.
//
// Answers are written straight to the socket by whichever thread has them (one send(2),
// no hand-off to the reactor, no wake-up). Only when the socket cannot take an answer whole
// does the rest go through Pistache's write queue, which then carries every later answer on
// that connection too, to keep their order. The reactor calls close() before it closes the
// descriptor, and every write checks it under the same lock, so a late answer never reaches
// a descriptor that was closed, or reused by another connection.
#include <pistache/peer.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "message.hpp"

namespace websmtp::daemon::http {

class Exchange;
// Routes one request; answers through the Exchange now or later.
using RequestHandler = std::function<void(Request&& request, Exchange exchange)>;

struct ConnectionLimits {
  std::size_t max_head_bytes = 64 * 1024;
  std::int64_t max_body_bytes = 10 * 1024 * 1024;
  std::int64_t max_discard_bytes = 1 << 20;  // after a refused body, read this much, then reset
  std::int64_t header_timeout_ms = 10'000;   // from a request's first byte to the end of its head
  std::int64_t body_timeout_ms = 30'000;     // from the end of the head to the end of the body
  std::int64_t idle_timeout_ms = 300'000;    // a kept-alive connection with nothing to do
};

// Requests whose answer is not written yet, across all connections (shutdown waits for 0).
std::int64_t answers_in_flight();

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(int fd, std::weak_ptr<Pistache::Tcp::Peer> peer, const ConnectionLimits& limits,
             const RequestHandler* handler, std::string client_address);

  // Reactor thread: bytes arrived.
  void on_input(const char* data, std::size_t len);
  // Reactor thread: the peer is gone and the descriptor is about to be closed.
  void close();

  // Writes an answer (any thread); with `close_after`, half-closes after it.
  void write(std::string bytes, bool close_after);
  // A pending answer that can be given early (a long-poll): called when another request
  // arrives behind it, so that one does not wait out the long-poll.
  void set_hurry(std::function<void()> hurry);

  const std::string& client_address() const { return client_address_; }

  // Since when the connection has had nothing to do (no request begun, no answer owed), in
  // steady milliseconds; 0 while it is busy. Read without the lock by the server when it is at
  // MAX_CONNECTIONS and looks for an idle connection to make room.
  std::int64_t idle_since_ms() const { return evictable_since_ms_.load(std::memory_order_relaxed); }
  // Closes the connection if it is still idle (a keep-alive connection may be closed between
  // requests, RFC 9112 9.3); returns whether it did.
  bool evict();

  // Called about once a second from the server's reaper thread: a request that arrives too
  // slowly gets 408 and the connection is shut down (the reactor then sees it close); so is
  // a connection idle for too long, or one that never sent a byte within the header timeout.
  // Never touches one that is owed an answer.
  void check_timeouts(std::int64_t now_ms);

 private:
  friend class Exchange;
  enum class Frame { kIncomplete, kRequest, kRefused };
  // Takes the next complete request out of the buffer (mu_ held). `send_continue` is set once
  // a head with "Expect: 100-continue" is read and its body is not here yet; `head_refused`
  // when a refused request was a HEAD (its answer then has no body).
  Frame next_request_locked(Request& out, Response& refusal, bool& head_refused, bool& send_continue);
  // Runs requests while they are answered at once; returns when one is answered later (its
  // Exchange continues the loop) or the buffer holds no complete request.
  void pump();

  const int fd_;
  std::weak_ptr<Pistache::Tcp::Peer> peer_;
  const ConnectionLimits limits_;
  const RequestHandler* handler_;
  const std::string client_address_;

  std::mutex mu_;
  std::string in_;                 // received, not yet handed over
  std::size_t scanned_ = 0;        // bytes of in_ already searched for the end of the head
  std::int64_t body_wanted_ = -1;  // once the head is parsed: head + body length
  Request pending_head_;           // parsed head waiting for its body
  bool busy_ = false;              // a thread runs the request loop, or an answer is owed
  bool closed_ = false;            // the reactor is closing the descriptor
  bool discard_ = false;           // a refused or final request: drop further input
  bool queued_ = false;            // part of an answer went through Pistache's queue
  bool spoke_ = false;             // the client has sent something since it connected
  std::int64_t discarded_ = 0;
  std::function<void()> hurry_;
  std::int64_t request_started_ms_ = 0;              // first byte of the request being received (0: none)
  std::int64_t head_done_ms_ = 0;                    // its head was complete (0: not yet)
  std::int64_t idle_since_ms_ = 0;                   // nothing received or owed since
  std::int64_t discard_since_ms_ = 0;                // when the connection was answered for the last time
  std::int64_t queued_bytes_ = 0;                    // handed to Pistache's write queue and not written yet
  std::atomic<std::int64_t> evictable_since_ms_{0};  // see idle_since_ms()
};

// One request's answer, given exactly once (a second send is ignored; an Exchange dropped
// unanswered answers 500). Cheap to move into a callback.
class Exchange {
 public:
  Exchange() = default;
  bool head_request() const;
  Connection& connection() const;
  // A header every answer to this request carries (CORS, rate limits), set by pre-handlers.
  void add_header(std::string_view name, std::string_view value);
  void send(Response response);

 private:
  friend class Connection;
  struct State;
  explicit Exchange(std::shared_ptr<State> s) : s_(std::move(s)) {}
  std::shared_ptr<State> s_;
};

}  // namespace websmtp::daemon::http
