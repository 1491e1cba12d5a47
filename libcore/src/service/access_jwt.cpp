// JWT bearer tokens (AUTH_MODE=jwt): the verifier checks the token; here the token becomes a
// caller with its scope and its per-subject quota.
#include <spdlog/spdlog.h>

#include <algorithm>

#include "websmtp/auth/jwt.hpp"
#include "websmtp/service/access.hpp"

namespace websmtp::service {

namespace {
constexpr std::string_view kSendScope = "mail:send";
}

void Access::init_jwt(const config::Config& config) {
  auth::JwtOptions o;
  o.hs256_secret = config.jwt_hs256_secret;
  o.public_key_file = config.jwt_public_key_file;
  o.jwks_file = config.jwt_jwks_file;
  o.issuer = config.jwt_issuer;
  o.audience = config.jwt_audience;
  auto v = auth::JwtVerifier::create(o);
  if (!v) throw config::ConfigError(v.error().field.empty() ? "AUTH_MODE" : v.error().field, v.error().message);
  spdlog::info("JWT bearer tokens accepted ({}{}{})", (*v)->algorithm(),
               config.jwt_issuer.empty() ? "" : ", issuer " + config.jwt_issuer,
               config.jwt_audience.empty() ? "" : ", audience " + config.jwt_audience);
  if (config.jwt_audience.empty())
    spdlog::warn("JWT_AUDIENCE is not set: a token the same issuer made for another service is accepted here too");
  jwt_ = std::shared_ptr<const auth::JwtVerifier>(std::move(*v));
}

std::optional<Error> Access::authenticate_jwt(std::string_view token, bool submit, Caller& caller) const {
  if (!jwt_) return Error{ErrorKind::kUnauthorized, "unauthorized", "not a valid API key (AUTH_MODE=keys)", ""};
  auto claims = jwt_->verify(token, clock_.now_ms() / 1000);
  if (!claims) return claims.error();
  if (submit && std::find(claims->scopes.begin(), claims->scopes.end(), kSendScope) == claims->scopes.end())
    return Error{ErrorKind::kForbidden, "forbidden", "the token's scope does not hold mail:send", "scope"};
  auto p = std::make_shared<auth::Principal>();
  p->kind = auth::Principal::Kind::kJwt;
  p->id = "sub:" + claims->subject;
  p->scopes = std::move(claims->scopes);
  p->limiter = &limiter_;
  p->per_minute = jwt_quota_;
  caller.id = p->id;
  caller.principal = std::move(p);
  return std::nullopt;
}

}  // namespace websmtp::service
