#pragma once
// Who is asking. The daemon's pre-handlers establish it (the client's address; the API key or
// JWT subject once authenticated) and pass it into every use case, which scopes what the
// caller may see and replay (idempotency keys, statuses) and enforces its policy by it.
#include <memory>
#include <string>

#include "websmtp/auth/principal.hpp"

namespace websmtp::service {

struct Caller {
  // Stable identity of an authenticated caller ("key:<id>", "sub:<subject>"); empty for an
  // anonymous one (AUTH_MODE=none), who shares one scope with every other anonymous caller.
  std::string id;
  // The client's address as the daemon believes it (for logs and per-address limits).
  std::string address;
  // Set when authenticated: the key or token, its policy and quotas.
  std::shared_ptr<const auth::Principal> principal;
  // With authentication on, statuses are private: only `id` that submitted a job, or a
  // request carrying the job's status token (`status_token`), may read it.
  bool private_statuses = false;
  std::string status_token;
};

}  // namespace websmtp::service
