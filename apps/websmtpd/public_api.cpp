#include "public_api.hpp"

#include <algorithm>
#include <memory>

#include "http/error_status.hpp"

namespace websmtp::daemon {

namespace {

using http::Context;
using http::Method;
using http::Response;

constexpr std::string_view kAllowMethods = "GET, POST, OPTIONS";
constexpr std::string_view kAllowHeaders = "Authorization, Content-Type, Idempotency-Key";
constexpr std::string_view kExposeHeaders =
    "Location, Retry-After, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset";

Error cors_denied() {
  return Error{ErrorKind::kForbidden, "cors_origin_denied", "this origin is not in CORS_ORIGINS", "Origin"};
}

// CORS (api.md): an allowed Origin gets its answer marked for the browser, a preflight is
// answered here; a disallowed one gets no Access-Control-* header, and is refused on the
// mail routes and for preflights.
http::PreHandler cors(std::vector<std::string> origins) {
  bool any = std::find(origins.begin(), origins.end(), "*") != origins.end();
  return [origins = std::move(origins), any](Context& ctx) {
    auto origin = ctx.request.header("Origin");
    bool preflight = ctx.request.method == Method::kOptions && ctx.route->browser;
    if (!origin) {
      if (!preflight) return true;
      ctx.answer(Error{ErrorKind::kInvalid, "missing_origin", "a preflight request needs an Origin header", "Origin"});
      return false;
    }
    bool allowed = any || std::find(origins.begin(), origins.end(), *origin) != origins.end();
    if (!allowed) {
      // Liveness stays readable (without CORS headers); mail routes and preflights refuse.
      if (!preflight && ctx.route->path.rfind("/mail/", 0) != 0) return true;
      ctx.answer(cors_denied());
      return false;
    }
    ctx.exchange.add_header("Access-Control-Allow-Origin", *origin);
    ctx.exchange.add_header("Vary", "Origin");
    if (!preflight) {
      ctx.exchange.add_header("Access-Control-Expose-Headers", kExposeHeaders);
      return true;
    }
    Response r;
    r.status = 204;
    r.content_type = {};
    r.add_header("Access-Control-Allow-Methods", kAllowMethods);
    r.add_header("Access-Control-Allow-Headers", kAllowHeaders);
    r.add_header("Access-Control-Max-Age", "600");
    ctx.answer(std::move(r));
    return false;
  };
}

// The Idempotency-Key header: absent, or exactly one non-empty value.
std::optional<Error> idempotency_key(const Context& ctx, std::string_view& key) {
  std::size_t n = ctx.request.header_count("Idempotency-Key");
  if (n == 0) return std::nullopt;
  if (n > 1)
    return Error{ErrorKind::kInvalid, "invalid_idempotency_key", "Idempotency-Key is given more than once",
                 "Idempotency-Key"};
  key = *ctx.request.header("Idempotency-Key");
  if (key.empty())
    return Error{ErrorKind::kInvalid, "invalid_idempotency_key", "Idempotency-Key must not be empty",
                 "Idempotency-Key"};
  return std::nullopt;
}

Error shutting_down() {
  return Error{ErrorKind::kUnavailable, "shutting_down", "the server is shutting down; retry shortly", ""};
}

// {"ref":"..."}: a ref is a UUID, nothing to escape.
Response accepted_response(const service::Accepted& a) {
  Response r;
  r.status = a.replayed ? 200 : 202;
  r.add_header("Location", "/mail/status/" + a.ref);
  r.body.reserve(48);
  r.body = "{\"ref\":\"";
  r.body += a.ref;
  r.body += "\"}";
  return r;
}

Response batch_response(const service::BatchAccepted& a) {
  Response r;
  r.status = a.replayed ? 200 : 202;
  r.body.reserve(12 + a.refs.size() * 39);
  r.body = "{\"refs\":[";
  for (std::size_t i = 0; i < a.refs.size(); ++i) {
    if (i) r.body += ',';
    r.body += '"';
    r.body += a.refs[i];
    r.body += '"';
  }
  r.body += "]}";
  return r;
}

// ?wait=N (0..60) and ?since=<status word>.
struct WaitParams {
  int wait_s = -1;  // -1: no long-poll
  std::string since;
};
std::optional<Error> wait_params(const Context& ctx, WaitParams& out) {
  auto wait = ctx.request.query_param("wait");
  if (!wait) return std::nullopt;
  if (wait->empty() || wait->size() > 2 ||
      !std::all_of(wait->begin(), wait->end(), [](char c) { return c >= '0' && c <= '9'; }) || std::stoi(*wait) > 60)
    return Error{ErrorKind::kInvalid, "invalid_wait", "wait must be a whole number of seconds from 0 to 60", "wait"};
  out.wait_s = std::stoi(*wait);
  out.since = ctx.request.query_param("since").value_or("");
  if (!out.since.empty() && out.since != "not started" && out.since != "processing" && out.since != "completed")
    return Error{ErrorKind::kInvalid, "invalid_since", "since must be one of: not started, processing, completed",
                 "since"};
  return std::nullopt;
}

}  // namespace

void build_public_api(http::Router& router, service::Gateway& gateway, const PublicApiOptions& options,
                      const std::atomic<bool>& draining) {
  router.use(cors(options.cors_origins));

  // Both submit routes: refused while draining, one Idempotency-Key at most, answered on the
  // group commit's thread once the jobs are durable.
  auto submit_route = [&gateway, &draining](auto submit, auto respond) {
    return [&gateway, &draining, submit, respond](Context& ctx) {
      if (draining) return ctx.answer(shutting_down());
      std::string_view key;
      if (auto e = idempotency_key(ctx, key)) return ctx.answer(*e);
      (gateway.submits().*submit)(ctx.caller, ctx.request.body, key,
                                  [ex = std::move(ctx.exchange), respond](auto r) mutable {
                                    ex.send(r ? respond(*r) : http::error_response(r.error()));
                                  });
    };
  };
  router.add("/mail/send", false, true)
      .on(Method::kPost, submit_route(&service::SubmitService::submit, accepted_response));
  router.add("/mail/batch", false, true)
      .on(Method::kPost, submit_route(&service::SubmitService::submit_batch, batch_response));

  router.add("/mail/status/", true, true).on(Method::kGet, [&gateway](Context& ctx) {
    WaitParams w;
    if (auto e = wait_params(ctx, w)) return ctx.answer(*e);
    if (w.wait_s < 0) {
      auto r = gateway.statuses().status(ctx.caller, ctx.param);
      if (!r) return ctx.answer(r.error());
      return ctx.answer_json(200, std::move(*r));
    }
    auto& conn = ctx.exchange.connection();
    auto done = [ex = std::move(ctx.exchange)](Result<std::string> r) mutable {
      if (!r) return ex.send(http::error_response(r.error()));
      Response resp;
      resp.body = std::move(*r);
      ex.send(std::move(resp));
    };
    std::string ref(ctx.param);
    std::uint64_t id =
        gateway.longpolls().watch(ctx.caller, ref, w.since, std::chrono::seconds(w.wait_s), std::move(done));
    // A request arriving behind this long-poll on the same connection makes it answer now.
    if (id != 0) conn.set_hurry([&gateway, ref, id] { gateway.longpolls().release(ref, id); });
  });

  auto health = [&draining](std::string body, bool readiness) {
    return [&draining, body = std::move(body), readiness](Context& ctx) {
      if (readiness && draining)
        return ctx.answer(Error{ErrorKind::kUnavailable, "shutting_down", "the server is shutting down", ""});
      ctx.answer_json(200, body);
    };
  };
  router.add("/status", false, true).on(Method::kGet, health("\"ok\"", false));
  router.add("/healthz", false, true).on(Method::kGet, health("{\"status\":\"ok\"}", false));
  router.add("/readyz", false, true).on(Method::kGet, health("{\"status\":\"ok\"}", true));
}

void build_admin_api(http::Router& router, service::Gateway& gateway) {
  router.add("/admin/queue").on(Method::kGet, [&gateway](Context& ctx) {
    ctx.answer_json(200, gateway.queue_stats().dump());
  });
}

}  // namespace websmtp::daemon
