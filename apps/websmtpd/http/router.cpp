#include "router.hpp"

#include "error_status.hpp"

namespace websmtp::daemon::http {

void Context::answer(const Error& e) { exchange.send(error_response(e)); }

void Context::answer_json(int status, std::string body) {
  Response r;
  r.status = status;
  r.body = std::move(body);
  exchange.send(std::move(r));
}

Route& Route::on(Method m, Handler h) {
  methods.emplace_back(m, std::move(h));
  allow.clear();
  for (const auto& [method, _] : methods) {
    if (!allow.empty()) allow += ", ";
    allow += to_string(method);
    if (method == Method::kGet) allow += ", HEAD";
  }
  if (browser) allow += ", OPTIONS";
  return *this;
}

Route& Router::add(std::string path, bool has_param, bool browser) {
  Route r;
  r.path = std::move(path);
  r.has_param = has_param;
  r.browser = browser;
  routes_.push_back(std::move(r));
  return routes_.back();
}

Router& Router::use(PreHandler p) {
  pre_.push_back(std::move(p));
  return *this;
}

Router& Router::guard(PreHandler p) {
  guards_.push_back(std::move(p));
  return *this;
}

void Router::dispatch(Request&& request, Exchange exchange) const {
  Context ctx{std::move(request), std::move(exchange), {}, {}, nullptr};
  ctx.caller.address = ctx.exchange.connection().client_address();
  for (const auto& g : guards_)
    if (!g(ctx)) return;
  std::string_view path = ctx.request.path;
  for (const auto& r : routes_) {
    if (r.has_param ? path.size() > r.path.size() && path.substr(0, r.path.size()) == r.path : path == r.path) {
      ctx.route = &r;
      if (r.has_param) ctx.param = path.substr(r.path.size());
      break;
    }
  }
  if (!ctx.route)
    return ctx.answer(Error{ErrorKind::kNotFound, "not_found", "no such route: " + std::string(path.substr(0, 200))});
  for (const auto& p : pre_)
    if (!p(ctx)) return;
  Method m = ctx.request.method == Method::kHead ? Method::kGet : ctx.request.method;
  for (const auto& [method, handler] : ctx.route->methods)
    if (method == m) return handler(ctx);
  ctx.answer(method_not_allowed_response(ctx.route->allow));
}

}  // namespace websmtp::daemon::http
