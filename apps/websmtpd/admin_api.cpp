// The admin API's routes (api.md "Admin HTTP API"): queue figures and control, jobs, suppressions,
// API keys. The admin port's guard (Host, ADMIN_TOKEN) runs before any of them (admin_guard).
#include <memory>

#include "admin_domain.hpp"
#include "http/error_status.hpp"
#include "metrics_api.hpp"
#include "public_api.hpp"
#include "websmtp/job/validation.hpp"

namespace websmtp::daemon {

namespace {

using http::Context;
using http::Method;
using http::Response;

// A path segment: %XX decoded ('+' is itself: addresses carry it).
std::string decode_segment(std::string_view s) {
  auto hex = [](char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
  };
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && hex(s[i + 1]) >= 0 && hex(s[i + 2]) >= 0) {
      out += static_cast<char>(hex(s[i + 1]) * 16 + hex(s[i + 2]));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

Response no_content() {
  Response r;
  r.status = 204;
  r.content_type = {};
  return r;
}

// An answer that comes later (from the group commit's thread, once an edit is durable).
std::function<void(Result<std::string>)> answer_later(Context& ctx) {
  return [ex = std::move(ctx.exchange)](Result<std::string> r) mutable {
    if (!r) return ex.send(http::error_response(r.error()));
    Response resp;
    resp.body = std::move(*r);
    ex.send(std::move(resp));
  };
}

void answer(Context& ctx, const Result<std::string>& r) {
  if (!r) return ctx.answer(r.error());
  ctx.answer_json(200, *r);
}

Error no_such_route(std::string_view path) {
  return Error{ErrorKind::kNotFound, "not_found", "no such route: " + std::string(path.substr(0, 200))};
}

void build_queue_routes(http::Router& router, service::Gateway& gateway) {
  router.add("/admin/queue").on(Method::kGet, [&gateway](Context& ctx) {
    ctx.answer_json(200, gateway.queue_stats().dump());
  });
  service::AdminService& admin = gateway.admin();
  router.add("/admin/pause").on(Method::kPost, [&admin](Context& ctx) { answer(ctx, admin.set_paused(true)); });
  router.add("/admin/resume").on(Method::kPost, [&admin](Context& ctx) { answer(ctx, admin.set_paused(false)); });
  router.add("/admin/retry").on(Method::kPost, [&admin](Context& ctx) { admin.retry_all(answer_later(ctx)); });

  router.add("/admin/jobs").on(Method::kGet, [&admin](Context& ctx) {
    service::JobsQuery q{ctx.request.query_param("state"), ctx.request.query_param("limit"),
                         ctx.request.query_param("after")};
    answer(ctx, admin.jobs(q));
  });
  // /admin/jobs/:ref (GET), /admin/jobs/:ref/retry and /admin/jobs/:ref/cancel (POST). The
  // other method on either path is a 405 naming the right one, as the router answers elsewhere.
  router.add("/admin/jobs/", true)
      .on(Method::kGet,
          [&admin](Context& ctx) {
            if (std::size_t slash = ctx.param.find('/'); slash != std::string_view::npos) {
              std::string_view action = ctx.param.substr(slash + 1);
              if (action == "retry" || action == "cancel") return ctx.answer(http::method_not_allowed_response("POST"));
              return ctx.answer(no_such_route(ctx.request.path));
            }
            auto body = ctx.request.query_param("body");
            answer(ctx, admin.job(ctx.param, body && (*body == "1" || *body == "true")));
          })
      .on(Method::kPost, [&admin](Context& ctx) {
        std::string_view p = ctx.param;
        std::size_t slash = p.find('/');
        std::string_view action = slash == std::string_view::npos ? std::string_view() : p.substr(slash + 1);
        std::string ref(p.substr(0, slash));
        if (action == "retry") return admin.retry(ref, answer_later(ctx));
        if (action == "cancel") return admin.cancel(ref, answer_later(ctx));
        if (slash == std::string_view::npos) return ctx.answer(http::method_not_allowed_response("GET, HEAD"));
        ctx.answer(no_such_route(ctx.request.path));
      });
}

void build_suppression_routes(http::Router& router, service::AdminService& admin) {
  router.add("/admin/suppressions").on(Method::kGet, [&admin](Context& ctx) { answer(ctx, admin.suppressions()); });
  router.add("/admin/suppressions/", true)
      .on(Method::kPut,
          [&admin](Context& ctx) {
            auto r = admin.suppress(decode_segment(ctx.param), ctx.request.body);
            if (!r) return ctx.answer(r.error());
            ctx.answer_json(r->second ? 201 : 200, r->first);
          })
      .on(Method::kDelete, [&admin](Context& ctx) {
        auto r = admin.unsuppress(decode_segment(ctx.param));
        if (!r) return ctx.answer(r.error());
        ctx.answer(no_content());
      });
}

void build_key_routes(http::Router& router, service::Gateway& gateway) {
  // API keys: the full key appears once, in the answer that creates it.
  auth::KeyRegistry& keys = gateway.access().keys();
  router.add("/admin/keys")
      .on(Method::kPost,
          [&keys](Context& ctx) {
            auto body = job::parse_json_object(ctx.request.body);
            if (!body) return ctx.answer(body.error());
            auto created = keys.create(*body);
            if (!created) return ctx.answer(created.error());
            nlohmann::json j = auth::key_json(*created->key);
            j["key"] = created->secret;
            Response r;
            r.status = 201;
            r.add_header("Location", "/admin/keys/" + created->key->id);
            r.add_header("Cache-Control", "no-store");
            r.body = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
            ctx.answer(std::move(r));
          })
      .on(Method::kGet, [&keys](Context& ctx) {
        nlohmann::json list = nlohmann::json::array();
        for (const auto& k : keys.list()) list.push_back(auth::key_json(*k));
        ctx.answer_json(200, nlohmann::json{{"keys", std::move(list)}}.dump(-1, ' ', false,
                                                                              nlohmann::json::error_handler_t::replace));
      });
  router.add("/admin/keys/", true).on(Method::kDelete, [&keys](Context& ctx) {
    auto r = keys.revoke(ctx.param);
    if (!r) return ctx.answer(r.error());
    ctx.answer(no_content());
  });
}

}  // namespace

void build_admin_api(http::Router& router, service::Gateway& gateway) {
  add_metrics_route(router, gateway);
  add_openapi_route(router);
  build_queue_routes(router, gateway);
  build_suppression_routes(router, gateway.admin());
  build_key_routes(router, gateway);
  add_domain_check_route(router, gateway);  // GET /admin/domains/:domain/check
}

}  // namespace websmtp::daemon
