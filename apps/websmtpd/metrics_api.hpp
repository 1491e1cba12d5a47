#pragma once
// GET /metrics (admin port) and GET /openapi.json (both ports).
#include <string_view>

#include "http/router.hpp"
#include "websmtp/service/gateway.hpp"

namespace websmtp::daemon {

// GET /metrics: every figure in the Prometheus text format (0.0.4).
void add_metrics_route(http::Router& router, service::Gateway& gateway);

// GET /openapi.json: docs/openapi.json, compiled in.
void add_openapi_route(http::Router& router);

// Logs the route table at debug level, one "route <listener> <METHOD> <path>" line per method
// (a parameter as {param}): what tests/integration/test_openapi.py compares with the spec.
void log_routes(std::string_view listener, const http::Router& router);

}  // namespace websmtp::daemon
