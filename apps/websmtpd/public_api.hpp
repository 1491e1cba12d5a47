#pragma once
// The public API's routes (api.md): submit, batch, status with long-poll, liveness, and the
// pre-handlers they pass through (client address and its limit, CORS, authentication).
#include <atomic>
#include <string>
#include <vector>

#include "http/router.hpp"
#include "websmtp/service/gateway.hpp"

namespace websmtp::daemon {

// Builds the public router. `draining` turns submits and /readyz into 503.
void build_public_api(http::Router& router, service::Gateway& gateway, const std::atomic<bool>& draining);

// The admin API (admin_api.cpp; loopback by default): queue figures and control, jobs,
// suppressions, API keys.
void build_admin_api(http::Router& router, service::Gateway& gateway);

}  // namespace websmtp::daemon
