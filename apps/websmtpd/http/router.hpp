#pragma once
// The route table and the chain of pre-handlers every routed request passes through
// (CORS today; authentication and rate limits next), so that a handler only does its route's
// own work. A path matches exactly, or as a prefix followed by one parameter (/mail/status/:ref).
#include <deque>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "connection.hpp"
#include "websmtp/common/error.hpp"
#include "websmtp/service/caller.hpp"

namespace websmtp::daemon::http {

struct Route;

// What a handler gets: the request, the way to answer it, who is asking, the path parameter.
struct Context {
  Request request;
  Exchange exchange;
  service::Caller caller;
  std::string_view param;
  const Route* route = nullptr;

  void answer(Response r) { exchange.send(std::move(r)); }
  void answer(const Error& e);
  void answer_json(int status, std::string body);
};

using Handler = std::function<void(Context&)>;
// Runs before the route's handler; returns false when it answered the request itself.
using PreHandler = std::function<bool(Context&)>;

struct Route {
  std::string path;
  bool has_param = false;  // `path` is a prefix and the rest of the path is the parameter
  bool browser = false;    // a public route that web pages call (CORS applies)
  std::vector<std::pair<Method, Handler>> methods;
  std::string allow;  // the Allow header: methods, plus HEAD with GET, plus OPTIONS for browser routes

  Route& on(Method m, Handler h);
};

class Router {
 public:
  Route& add(std::string path, bool has_param = false, bool browser = false);
  Router& use(PreHandler p);
  // A pre-handler that runs before the route is looked up, for every request (an unknown path
  // too, with Context::route null): for checks that concern the listener, not a route (the
  // admin API's Host and token), so that nothing is told to a caller that fails them.
  Router& guard(PreHandler p);
  void dispatch(Request&& request, Exchange exchange) const;
  // The route table, in the order routes were added (listed at start, see log_routes).
  const std::deque<Route>& routes() const { return routes_; }

 private:
  std::deque<Route> routes_;
  std::vector<PreHandler> pre_;
  std::vector<PreHandler> guards_;
};

}  // namespace websmtp::daemon::http
