#pragma once
// Who may use the public API, and how much: AUTH_MODE (API keys, JWT bearer tokens), the
// per-key and per-subject quotas, the per-address limit (RATE_LIMIT_IP, with TRUSTED_PROXIES
// deciding whose X-Forwarded-For counts), the origins a browser may call from (CORS_ORIGINS and
// every live publishable key's), and the status tokens that make statuses private.
// No HTTP here: the daemon hands over header values and gets a Caller or an Error.
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "websmtp/auth/client_address.hpp"
#include "websmtp/auth/keys.hpp"
#include "websmtp/auth/principal.hpp"
#include "websmtp/auth/rate_limit.hpp"
#include "websmtp/auth/status_token.hpp"
#include "websmtp/common/clock.hpp"
#include "websmtp/common/error.hpp"
#include "websmtp/config/config.hpp"
#include "websmtp/service/caller.hpp"
#include "websmtp/store/store.hpp"

namespace websmtp::auth {
class JwtVerifier;
}

namespace websmtp::service {

class Access {
 public:
  // Throws config::ConfigError for a key file that cannot be used.
  Access(const config::Config& config, store::Store& store, const Clock& clock);
  ~Access();

  // AUTH_MODE is not none: credentials required, statuses private.
  bool required() const { return keys_on_ || jwt_on_; }

  // The client's address (X-Forwarded-For believed from TRUSTED_PROXIES only).
  std::string client_address(std::string_view peer, std::optional<std::string_view> forwarded_for) const;
  // RATE_LIMIT_IP: one request from `address`. kRateLimited when over; `d` gets the state.
  std::optional<Error> limit_address(const std::string& address, auth::Decision& d);
  bool address_limited() const { return bool(ip_quota_); }

  struct Credentials {
    std::optional<std::string_view> authorization;  // the Authorization header
    std::optional<std::string_view> origin;         // the Origin header
    bool submit = false;                            // a route that submits mail (scope mail:send)
  };
  // Fills caller.id / caller.principal / caller.private_statuses. 401 (unauthorized) for no
  // credential or one that is not valid; 403 (forbidden, with field) for a valid one that may
  // not do this here (a publishable key from another origin, a token without the scope).
  std::optional<Error> authenticate(const Credentials& c, Caller& caller) const;

  // CORS: CORS_ORIGINS, or an origin of a live publishable key.
  bool origin_allowed(std::string_view origin) const;
  bool any_origin() const { return any_origin_; }

  auth::KeyRegistry& keys() { return *keys_; }
  const auth::StatusTokens* status_tokens() const { return tokens_.get(); }
  const Clock& clock() const { return clock_; }

 private:
  void init_jwt(const config::Config& config);
  std::optional<Error> authenticate_jwt(std::string_view token, bool submit, Caller& caller) const;

  const Clock& clock_;
  bool keys_on_, jwt_on_;
  std::vector<std::string> cors_origins_;
  bool any_origin_ = false;
  auth::TrustedProxies proxies_;
  auth::Quota ip_quota_;
  auth::Quota jwt_quota_;
  mutable auth::RateLimiter limiter_;       // per key / per subject (jobs)
  mutable auth::RateLimiter ip_limiter_;    // per address (requests)
  std::unique_ptr<auth::KeyRegistry> keys_;
  std::unique_ptr<auth::StatusTokens> tokens_;
  std::shared_ptr<const auth::JwtVerifier> jwt_;  // shared: its deleter travels with it
};

}  // namespace websmtp::service
