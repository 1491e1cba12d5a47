#pragma once
// The admin API's guard: a pre-handler on the admin router that every request passes first.
//  - Host must name the admin listener (localhost, 127.0.0.1, [::1] or ADMIN_HOST, with or
//    without the admin port): a web page that rebinds its own name to 127.0.0.1 (DNS
//    rebinding) still sends its own name, and gets 403 bad_host.
//  - With ADMIN_TOKEN set, "Authorization: Bearer <ADMIN_TOKEN>" is required (401
//    unauthorized with WWW-Authenticate: Bearer), compared in constant time.
// The checks are pure functions, unit-tested without a server.
#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "http/router.hpp"

namespace websmtp::daemon {

// True if `host` (a Host header's value) names the admin listener bound at `admin_host`:
// port `admin_port`. When `admin_host` is a wildcard (0.0.0.0, ::), any IP literal is
// accepted too: DNS rebinding needs a name, and the listener answers on every address.
bool admin_host_allowed(std::string_view host, std::string_view admin_host, int admin_port);

// True if `authorization` is "Bearer <token>" (scheme case-insensitive) with exactly `token`.
bool bearer_matches(std::optional<std::string_view> authorization, std::string_view token);

// Compares in a time that depends on the lengths only, never on where the bytes differ.
bool constant_time_equals(std::string_view given, std::string_view expected);

struct AdminGuardOptions {
  std::string admin_host;  // ADMIN_HOST
  std::string token;       // ADMIN_TOKEN; empty: none required
  // The admin listener's port, known once it is bound (ADMIN_PORT may be 0).
  std::shared_ptr<const std::atomic<int>> port;
};

http::PreHandler admin_guard(AdminGuardOptions options);

}  // namespace websmtp::daemon
