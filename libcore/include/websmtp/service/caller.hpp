#pragma once
// Who is asking. The daemon's pre-handlers establish it (address today; API key or JWT
// subject once authentication exists) and pass it into every use case, which scopes what the
// caller may see and replay (idempotency keys now, status privacy later) by it.
#include <string>

namespace websmtp::service {

struct Caller {
  // Stable identity of an authenticated caller ("key:<id>", "sub:<subject>"); empty for an
  // anonymous one (AUTH_MODE=none), who shares one scope with every other anonymous caller.
  std::string id;
  // The client's address as the daemon believes it (for logs and per-address limits).
  std::string address;
};

}  // namespace websmtp::service
