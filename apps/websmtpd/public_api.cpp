#include "public_api.hpp"

#include <algorithm>
#include <memory>

#include "http/error_status.hpp"
#include "metrics_api.hpp"
#include "websmtp/common/text.hpp"
#include "websmtp/job/validation.hpp"

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
  return Error{ErrorKind::kForbidden, "cors_origin_denied",
               "this origin is not in CORS_ORIGINS nor an origin of a live publishable key", "Origin"};
}

// Every value of a header that may be repeated (X-Forwarded-For), joined as one list.
std::optional<std::string> joined_header(const http::Request& r, std::string_view name) {
  std::optional<std::string> out;
  for (const auto& [n, v] : r.headers) {
    if (!iequals(n, name)) continue;
    if (out)
      *out += ", ";
    else
      out.emplace();
    *out += v;
  }
  return out;
}

bool is_submit_route(const http::Route& r) { return r.path == "/mail/send" || r.path == "/mail/batch"; }
// Liveness and readiness stay open to probes and load balancers (api.md: GET /status).
// So does the API's description.
bool is_open_route(const http::Route& r) {
  return r.path == "/status" || r.path == "/healthz" || r.path == "/readyz" || r.path == "/openapi.json";
}

// Answers an error; a refused submit is also counted by its code (websmtp_submits_total).
void refuse(Context& ctx, const Error& e, service::Metrics& metrics) {
  if (ctx.route && is_submit_route(*ctx.route) && ctx.request.method == Method::kPost) metrics.submit_refused(e.code);
  ctx.answer(e);
}

void add_rate_headers(http::Exchange& ex, const auth::Decision& d) {
  if (!d.limit) return;
  ex.add_header("RateLimit-Limit", std::to_string(d.limit));
  ex.add_header("RateLimit-Remaining", std::to_string(d.remaining));
  ex.add_header("RateLimit-Reset", std::to_string(d.reset_s));
}

// The client's address (TRUSTED_PROXIES) and RATE_LIMIT_IP, before anything else is done.
http::PreHandler client_limit(service::Access& access, service::Metrics& metrics) {
  return [&access, &metrics](Context& ctx) {
    auto xff = joined_header(ctx.request, "X-Forwarded-For");
    ctx.caller.address = access.client_address(ctx.caller.address, xff ? std::optional<std::string_view>(*xff)
                                                                         : std::nullopt);
    if (!access.address_limited()) return true;
    auth::Decision d;
    if (auto e = access.limit_address(ctx.caller.address, d)) {
      refuse(ctx, *e, metrics);
      return false;
    }
    return true;
  };
}

// CORS (api.md): an allowed Origin gets its answer marked for the browser, a preflight is
// answered here; a disallowed one gets no Access-Control-* header, and is refused on the
// mail routes and for preflights. Allowed: CORS_ORIGINS and the origins of live publishable keys.
http::PreHandler cors(service::Access& access, service::Metrics& metrics) {
  return [&access, &metrics](Context& ctx) {
    auto origin = ctx.request.header("Origin");
    bool preflight = ctx.request.method == Method::kOptions && ctx.route->browser;
    if (!origin) {
      if (!preflight) return true;
      refuse(ctx, Error{ErrorKind::kInvalid, "missing_origin", "a preflight request needs an Origin header", "Origin"},
             metrics);
      return false;
    }
    if (!access.origin_allowed(*origin)) {
      // Liveness stays readable (without CORS headers); mail routes and preflights refuse.
      if (!preflight && ctx.route->path.rfind("/mail/", 0) != 0) return true;
      refuse(ctx, cors_denied(), metrics);
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

// AUTH_MODE: the caller's key or token, on every public route but liveness. A status request
// may instead carry the job's status token (?token=), which opens that one status.
http::PreHandler authenticate(service::Access& access, service::Metrics& metrics) {
  return [&access, &metrics](Context& ctx) {
    if (!access.required() || is_open_route(*ctx.route)) return true;
    if (ctx.request.header_count("Authorization") > 1) {
      refuse(ctx, Error{ErrorKind::kUnauthorized, "unauthorized", "one Authorization header, not several", ""}, metrics);
      return false;
    }
    auto authorization = ctx.request.header("Authorization");
    if (ctx.route->has_param && ctx.route->path == "/mail/status/") {
      if (auto token = ctx.request.query_param("token")) ctx.caller.status_token = std::move(*token);
      if (!authorization && !ctx.caller.status_token.empty()) {
        ctx.caller.private_statuses = true;
        return true;
      }
    }
    service::Access::Credentials c{authorization, ctx.request.header("Origin"), is_submit_route(*ctx.route)};
    if (auto e = access.authenticate(c, ctx.caller)) {
      refuse(ctx, *e, metrics);
      return false;
    }
    // Submits report their quota after charging it; other routes report it as it stands.
    if (ctx.caller.principal && !is_submit_route(*ctx.route))
      add_rate_headers(ctx.exchange, auth::peek(*ctx.caller.principal, access.clock().now_ms()));
    return true;
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

// {"ref":"..."}: a ref is a UUID and a status token base64url, nothing to escape.
Response accepted_response(const service::Accepted& a) {
  Response r;
  r.status = a.replayed ? 200 : 202;
  r.add_header("Location", "/mail/status/" + a.ref);
  r.body.reserve(48 + a.status_token.size() + 18);
  r.body = "{\"ref\":\"";
  r.body += a.ref;
  if (!a.status_token.empty()) {
    r.body += "\",\"status_token\":\"";
    r.body += a.status_token;
  }
  r.body += "\"}";
  return r;
}

// ["a","b"] of strings that need no escaping (refs, status tokens).
void append_plain_strings(std::string& out, const std::vector<std::string>& v) {
  out += '[';
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (i) out += ',';
    out += '"';
    out += v[i];
    out += '"';
  }
  out += ']';
}

Response batch_response(const service::BatchAccepted& a) {
  Response r;
  r.status = a.replayed ? 200 : 202;
  r.body.reserve(12 + a.refs.size() * 39 + a.status_tokens.size() * 27);
  r.body = "{\"refs\":";
  append_plain_strings(r.body, a.refs);
  if (!a.status_tokens.empty()) {
    r.body += ",\"status_tokens\":";
    append_plain_strings(r.body, a.status_tokens);
  }
  r.body += '}';
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

void build_public_api(http::Router& router, service::Gateway& gateway, const std::atomic<bool>& draining) {
  service::Access& access = gateway.access();
  service::Metrics& metrics = gateway.metrics();
  router.use(client_limit(access, metrics));
  router.use(cors(access, metrics));
  router.use(authenticate(access, metrics));

  // Both submit routes: refused while draining, one Idempotency-Key at most, answered on the
  // group commit's thread once the jobs are durable.
  auto submit_route = [&gateway, &draining](auto submit, auto respond) {
    return [&gateway, &draining, submit, respond](Context& ctx) {
      if (draining) return refuse(ctx, shutting_down(), gateway.metrics());
      std::string_view key;
      if (auto e = idempotency_key(ctx, key)) return refuse(ctx, *e, gateway.metrics());
      std::shared_ptr<const auth::Principal> principal = ctx.caller.principal;
      (gateway.submits().*submit)(ctx.caller, ctx.request.body, key,
                                  [ex = std::move(ctx.exchange), respond, principal, &gateway](auto r) mutable {
                                    if (principal)
                                      add_rate_headers(ex, auth::peek(*principal, gateway.access().clock().now_ms()));
                                    if (!r) gateway.metrics().submit_refused(r.error().code);
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
  add_openapi_route(router);
}

}  // namespace websmtp::daemon
