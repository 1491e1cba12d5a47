#include "metrics_api.hpp"

#include <spdlog/spdlog.h>

#include "openapi_json.hpp"

namespace websmtp::daemon {

void add_metrics_route(http::Router& router, service::Gateway& gateway) {
  router.add("/metrics").on(http::Method::kGet, [&gateway](http::Context& ctx) {
    http::Response r;
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    r.add_header("Cache-Control", "no-store");
    r.body = gateway.metrics_text();
    ctx.answer(std::move(r));
  });
}

void add_openapi_route(http::Router& router) {
  router.add("/openapi.json", false, true).on(http::Method::kGet, [](http::Context& ctx) {
    ctx.answer_json(200, std::string(kOpenApiJson));
  });
}

void log_routes(std::string_view listener, const http::Router& router) {
  for (const auto& r : router.routes())
    for (const auto& [method, _] : r.methods)
      spdlog::debug("route {} {} {}{}", listener, http::to_string(method), r.path, r.has_param ? "{param}" : "");
}

}  // namespace websmtp::daemon
