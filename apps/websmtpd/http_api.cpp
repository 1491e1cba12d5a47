#include "http_api.hpp"

#include <pistache/peer.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <algorithm>

#include <nlohmann/json.hpp>

namespace websmtp::daemon {

namespace {

using Pistache::Http::Code;
using Pistache::Http::Method;
using Pistache::Http::Request;
using Pistache::Http::ResponseWriter;
namespace Header = Pistache::Http::Header;

// A header with a run-time name. Pistache 0.0.5 writes only typed headers into responses
// (addRaw() headers are silently dropped), so every header we send goes through this.
class TextHeader final : public Header::Header {
 public:
  TextHeader(std::string name, std::string value) : name_(std::move(name)), value_(std::move(value)) {}
  const char* name() const override { return name_.c_str(); }
  // Deliberately unlike any typed header's hash, so header_cast<> never mistakes it for one.
  uint64_t hash() const override { return 0x7765627374787448ULL; }
  void write(std::ostream& os) const override { os << value_; }

 private:
  std::string name_;
  std::string value_;
};

void set_header(ResponseWriter& rw, std::string name, std::string value) {
  rw.headers().add(std::make_shared<TextHeader>(std::move(name), std::move(value)));
}

// HTTP/1.1 keeps the connection open unless the client asks otherwise. (Pistache 0.0.5
// answers "Connection: close" to any client that did not send "keep-alive", which makes
// curl, wrk and browsers reconnect for every request.)
void set_connection(const Request& req, ResponseWriter& rw) {
  bool keep = req.version() == Pistache::Http::Version::Http11;
  if (auto c = req.headers().tryGet<Header::Connection>())
    keep = c->control() == Pistache::Http::ConnectionControl::KeepAlive;
  rw.headers().remove<Header::Connection>();
  rw.headers().add<Header::Connection>(keep ? Pistache::Http::ConnectionControl::KeepAlive
                                            : Pistache::Http::ConnectionControl::Close);
}

// Sends, then half-closes the connection when the answer says "Connection: close"
// (Pistache 0.0.5 writes the header but keeps the connection open).
void send_body(ResponseWriter& rw, int status, const std::string& body) {
  auto c = rw.headers().tryGet<Header::Connection>();
  bool close = c && c->control() == Pistache::Http::ConnectionControl::Close;
  auto promise = rw.send(static_cast<Code>(status), body);
  if (!close) return;
  auto peer = rw.peer();
  int fd = peer ? peer->fd() : -1;
  promise.then(
      [fd](ssize_t) {
        if (fd >= 0) ::shutdown(fd, SHUT_WR);
      },
      Pistache::Async::IgnoreException);
}

void send_json(ResponseWriter& rw, int status, const std::string& body) {
  set_header(rw, "Content-Type", "application/json; charset=utf-8");
  send_body(rw, status, body);
}

void send_error(ResponseWriter& rw, const ApiError& e) {
  if (e.status == 503) set_header(rw, "Retry-After", "5");
  send_json(rw, e.status, error_body(e));
}

std::string origin_of(const Request& req) {
  auto raw = req.headers().tryGetRaw("Origin");
  return raw ? raw->value() : std::string();
}

// Adds the CORS answer for an allowed Origin; returns false when the origin is not allowed.
bool apply_cors(const HttpContext& ctx, const Request& req, ResponseWriter& rw) {
  std::string origin = origin_of(req);
  if (origin.empty()) return true;
  bool any = false, listed = false;
  for (const auto& o : ctx.cors_origins) {
    if (o == "*")
      any = true;
    else if (o == origin)
      listed = true;
  }
  if (!any && !listed) return false;
  set_header(rw, "Access-Control-Allow-Origin", listed ? origin : "*");
  if (listed) set_header(rw, "Vary", "Origin");
  set_header(rw, "Access-Control-Expose-Headers", "Location, Retry-After");
  return true;
}

void preflight(const HttpContext& ctx, const Request& req, ResponseWriter& rw, const char* methods) {
  if (!apply_cors(ctx, req, rw))
    return send_error(rw, ApiError{403, "cors_origin_denied", "this origin is not in CORS_ORIGINS", "Origin"});
  set_header(rw, "Access-Control-Allow-Methods", methods);
  set_header(rw, "Access-Control-Allow-Headers", "Content-Type, Idempotency-Key, Authorization");
  set_header(rw, "Access-Control-Max-Age", "600");
  send_body(rw, 204, "");
}

void method_not_allowed(ResponseWriter& rw, const char* allow) {
  set_header(rw, "Allow", allow);
  send_error(rw, ApiError{405, "method_not_allowed", std::string("this path answers ") + allow, ""});
}

void answer_submit(ResponseWriter& rw, const Result<service::Accepted>& r) {
  if (!r) return send_error(rw, r.error());
  set_header(rw, "Location", "/mail/status/" + r->ref);
  send_json(rw, r->status, "{\"ref\":\"" + r->ref + "\"}");  // a ref is a UUID: nothing to escape
}

// Takes an answer over from the request handler so it can be sent later, from any thread:
// the connection's later requests wait for it (answer order) and shutdown drains it.
template <typename T, typename Send>
std::function<void(T)> answer_later(const std::shared_ptr<HttpContext>& ctx, ResponseWriter response, Send send) {
  auto pending = pending_answers(response.peer());
  auto writer = std::make_shared<ResponseWriter>(std::move(response));
  ++ctx->in_flight;
  pending->add();
  return [ctx, pending, writer, send](T r) {
    try {
      send(*writer, r);
    } catch (const std::exception& e) {
      spdlog::warn("could not send an answer: {}", e.what());
    }
    pending->done();
    --ctx->in_flight;
  };
}

}  // namespace

std::string error_body(const ApiError& e) {
  nlohmann::json j = {{"error", e.message}, {"code", e.code}};
  if (!e.field.empty()) j["field"] = e.field;
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

void PublicHandler::onRequest(const Request& request, ResponseWriter response) {
  set_connection(request, response);
  try {
    route(request, response);
  } catch (const std::exception& e) {
    // Never e.what() to the client: it may name internals.
    spdlog::error("unhandled error on {} {}: {}", Pistache::Http::methodString(request.method()), request.resource(),
                  e.what());
    send_error(response, ApiError{500, "internal_error", "internal error", ""});
  } catch (...) {
    send_error(response, ApiError{500, "internal_error", "internal error", ""});
  }
}

void PublicHandler::route(const Request& request, ResponseWriter& response) {
  const std::string& path = request.resource();
  const Method m = request.method();
  constexpr std::string_view kStatusPrefix = "/mail/status/";

  if (path == "/mail/send") {
    if (m == Method::Options) return preflight(*ctx_, request, response, "POST, OPTIONS");
    if (!apply_cors(*ctx_, request, response))
      return send_error(response, ApiError{403, "cors_origin_denied", "this origin is not in CORS_ORIGINS", "Origin"});
    if (m != Method::Post) return method_not_allowed(response, "POST, OPTIONS");
    return submit(request, std::move(response));
  }
  if (path.compare(0, kStatusPrefix.size(), kStatusPrefix) == 0) {
    if (m == Method::Options) return preflight(*ctx_, request, response, "GET, OPTIONS");
    if (!apply_cors(*ctx_, request, response))
      return send_error(response, ApiError{403, "cors_origin_denied", "this origin is not in CORS_ORIGINS", "Origin"});
    if (m != Method::Get && m != Method::Head) return method_not_allowed(response, "GET, HEAD, OPTIONS");
    return status(request, std::move(response), path.substr(kStatusPrefix.size()));
  }
  if (path == "/status" || path == "/healthz" || path == "/readyz") {
    if (m == Method::Options) return preflight(*ctx_, request, response, "GET, OPTIONS");
    apply_cors(*ctx_, request, response);
    if (m != Method::Get && m != Method::Head) return method_not_allowed(response, "GET, HEAD, OPTIONS");
    if (path == "/readyz" && ctx_->draining)
      return send_error(response, ApiError{503, "shutting_down", "the server is shutting down", ""});
    return send_json(response, 200, path == "/status" ? "\"ok\"" : "{\"status\":\"ok\"}");
  }
  send_error(response, ApiError{404, "not_found", "no such route: " + path.substr(0, 200), ""});
}

void PublicHandler::submit(const Request& request, ResponseWriter response) {
  if (ctx_->draining)
    return send_error(response, ApiError{503, "shutting_down", "the server is shutting down; retry shortly", ""});
  std::string key;
  if (auto raw = request.headers().tryGetRaw("Idempotency-Key")) {
    key = raw->value();
    if (key.empty())
      return send_error(
          response, ApiError{400, "invalid_idempotency_key", "Idempotency-Key must not be empty", "Idempotency-Key"});
  }
  // The answer is sent from the store's writer thread once the job is committed.
  ctx_->gateway->submit(request.body(), key,
                        answer_later<Result<service::Accepted>>(ctx_, std::move(response), answer_submit));
}

void PublicHandler::status(const Request& request, ResponseWriter response, const std::string& ref) {
  const auto& query = request.query();
  auto wait_param = query.get("wait");
  if (!wait_param) {
    auto result = ctx_->gateway->status(ref);
    if (!result) return send_error(response, result.error());
    return send_json(response, 200, *result);
  }
  int wait_s = -1;
  if (wait_param->size() <= 2 && !wait_param->empty() &&
      std::all_of(wait_param->begin(), wait_param->end(), [](char c) { return c >= '0' && c <= '9'; }))
    wait_s = std::stoi(*wait_param);
  if (wait_s < 0 || wait_s > 60)
    return send_error(response,
                      ApiError{400, "invalid_wait", "wait must be a whole number of seconds from 0 to 60", "wait"});
  std::string since = query.get("since").value_or("");
  for (auto& c : since)
    if (c == '+') c = ' ';  // "not+started" from a form-encoded query
  if (since == "not%20started") since = "not started";
  if (!since.empty() && since != "not started" && since != "processing" && since != "completed")
    return send_error(
        response, ApiError{400, "invalid_since", "since must be one of: not started, processing, completed", "since"});
  auto pending = pending_answers(response.peer());
  std::uint64_t id =
      ctx_->gateway->watch_status(ref, since, std::chrono::seconds(wait_s),
                                  answer_later<Result<std::string>>(
                                      ctx_, std::move(response), [](ResponseWriter& rw, const Result<std::string>& r) {
                                        if (!r) return send_error(rw, r.error());
                                        send_json(rw, 200, *r);
                                      }));
  if (id != 0) {
    // A request arriving behind this long-poll on the same connection makes it answer now.
    std::lock_guard lock(pending->mu);
    if (pending->count > 0) pending->hurry = [gateway = ctx_->gateway, ref, id] { gateway->release_watch(ref, id); };
  }
}

void AdminHandler::onRequest(const Request& request, ResponseWriter response) {
  set_connection(request, response);
  try {
    const std::string& path = request.resource();
    if (path == "/admin/queue") {
      if (request.method() != Method::Get && request.method() != Method::Head)
        return method_not_allowed(response, "GET, HEAD");
      return send_json(response, 200, ctx_->gateway->queue_stats().dump());
    }
    send_error(response, ApiError{404, "not_found", "no such admin route: " + path.substr(0, 200), ""});
  } catch (const std::exception& e) {
    spdlog::error("unhandled admin error: {}", e.what());
    send_error(response, ApiError{500, "internal_error", "internal error", ""});
  }
}

}  // namespace websmtp::daemon
