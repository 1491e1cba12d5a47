#pragma once
// The Pistache adapter: routes, CORS, keep-alive, the body-size gate, and the one place
// where a libcore ApiError becomes an HTTP status. Routing is a plain switch on the path
// (Pistache 0.0.5's Router races on methods without a route, and we answer every method
// on every path anyway).
#include <pistache/http.h>

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "websmtp/common/error.hpp"
#include "websmtp/service/gateway.hpp"

namespace websmtp::daemon {

struct HttpContext {
  service::Gateway* gateway = nullptr;
  std::vector<std::string> cors_origins;
  std::int64_t max_body_bytes = 0;
  std::atomic<bool> draining{false};
  std::atomic<int> in_flight{0};  // requests whose answer is not sent yet (async submits)
};

// Shared by both endpoints: the gate that closes connections sending oversized bodies, and
// the response helpers.
class GatedHandler : public Pistache::Http::Handler {
 public:
  explicit GatedHandler(std::shared_ptr<HttpContext> ctx) : ctx_(std::move(ctx)) {}

  void onConnection(const std::shared_ptr<Pistache::Tcp::Peer>& peer) override;
  void onInput(const char* buffer, size_t len, const std::shared_ptr<Pistache::Tcp::Peer>& peer) override;

 protected:
  std::shared_ptr<HttpContext> ctx_;
};

class PublicHandler final : public GatedHandler {
 public:
  HTTP_PROTOTYPE(PublicHandler)
  using GatedHandler::GatedHandler;
  void onRequest(const Pistache::Http::Request& request, Pistache::Http::ResponseWriter response) override;

 private:
  void route(const Pistache::Http::Request& request, Pistache::Http::ResponseWriter& response);
  void submit(const Pistache::Http::Request& request, Pistache::Http::ResponseWriter response);
  void status(const Pistache::Http::Request& request, Pistache::Http::ResponseWriter response, const std::string& ref);
};

class AdminHandler final : public GatedHandler {
 public:
  HTTP_PROTOTYPE(AdminHandler)
  using GatedHandler::GatedHandler;
  void onRequest(const Pistache::Http::Request& request, Pistache::Http::ResponseWriter response) override;
};

// Answers still owed on one connection (submits waiting for their commit, long-polls). The
// gate holds a later request from that connection until they are out, so answers keep the
// order of the requests even when the next one arrives before the previous answer.
struct PendingAnswers {
  std::mutex mu;
  std::condition_variable cv;
  int count = 0;
  std::function<void()> hurry;  // makes a waiting long-poll answer now

  void add() {
    std::lock_guard lock(mu);
    ++count;
  }
  void done() {
    std::lock_guard lock(mu);
    if (--count == 0) hurry = nullptr;
    cv.notify_all();
  }
};

// The connection's PendingAnswers (created by the gate when the connection opened).
std::shared_ptr<PendingAnswers> pending_answers(const std::shared_ptr<Pistache::Tcp::Peer>& peer);

// {error, code, field} as JSON text.
std::string error_body(const ApiError& e);

}  // namespace websmtp::daemon
