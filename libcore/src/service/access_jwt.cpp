// JWT bearer tokens (AUTH_MODE=jwt): TEMPORARY until the verifier lands.
#include "websmtp/service/access.hpp"

namespace websmtp::auth {
class JwtVerifier {};
}  // namespace websmtp::auth

namespace websmtp::service {



void Access::init_jwt(const config::Config&) {}

std::optional<Error> Access::authenticate_jwt(std::string_view, bool, Caller&) const {
  return Error{ErrorKind::kUnauthorized, "unauthorized", "JWT bearer tokens are not accepted", ""};
}

}  // namespace websmtp::service
