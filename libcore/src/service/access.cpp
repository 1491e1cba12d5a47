#include "websmtp/service/access.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace websmtp::service {

namespace {

Error unauthorized(std::string why) { return Error{ErrorKind::kUnauthorized, "unauthorized", std::move(why), ""}; }
Error forbidden(std::string why, std::string field) {
  return Error{ErrorKind::kForbidden, "forbidden", std::move(why), std::move(field)};
}

// "Bearer <credential>" (the scheme case-insensitive, RFC 7235 2.1), else nullopt.
std::optional<std::string_view> bearer(std::string_view header) {
  if (header.size() < 7) return std::nullopt;
  for (std::size_t i = 0; i < 6; ++i)
    if (std::tolower(static_cast<unsigned char>(header[i])) != "bearer"[i]) return std::nullopt;
  if (header[6] != ' ') return std::nullopt;
  std::string_view v = header.substr(7);
  while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
  while (!v.empty() && v.back() == ' ') v.remove_suffix(1);
  if (v.empty()) return std::nullopt;
  return v;
}

}  // namespace

Access::Access(const config::Config& config, store::Store& store, const Clock& clock)
    : clock_(clock),
      keys_on_(config.auth_keys),
      jwt_on_(config.auth_jwt),
      cors_origins_(config.cors_origins),
      proxies_(*auth::TrustedProxies::parse(config.trusted_proxies)),
      ip_quota_(*auth::parse_quota(config.rate_limit_ip, "RATE_LIMIT_IP")),
      jwt_quota_{config.jwt_rate_per_minute, 60'000},
      keys_(std::make_unique<auth::KeyRegistry>(store, clock)) {
  any_origin_ = std::find(cors_origins_.begin(), cors_origins_.end(), "*") != cors_origins_.end();
  std::sort(cors_origins_.begin(), cors_origins_.end());
  if (required()) tokens_ = std::make_unique<auth::StatusTokens>(auth::StatusTokens::from_dir(config.data_dir));
  if (jwt_on_) init_jwt(config);
  if (!required() && config.host != "127.0.0.1" && config.host != "::1" && config.host != "localhost")
    spdlog::warn("AUTH_MODE=none and HOST={} is not loopback: anyone who reaches port {} can send mail through this "
                 "gateway. Set AUTH_MODE=keys (and create keys with websmtpctl keys create) before exposing it",
                 config.host, config.port);
}


Access::~Access() = default;

std::string Access::client_address(std::string_view peer, std::optional<std::string_view> forwarded_for) const {
  return proxies_.client(peer, forwarded_for);
}

std::optional<Error> Access::limit_address(const std::string& address, auth::Decision& d) {
  d = ip_limiter_.take(address, ip_quota_, 1, clock_.now_ms());
  if (d.allowed) return std::nullopt;
  Error e{ErrorKind::kRateLimited, "rate_limited",
          "too many requests from this address (RATE_LIMIT_IP); retry after " + std::to_string(d.retry_after_s) + " s",
          ""};
  e.retry_after_s = d.retry_after_s;
  return e;
}

std::optional<Error> Access::authenticate(const Credentials& c, Caller& caller) const {
  if (!required()) return std::nullopt;
  caller.private_statuses = true;
  if (!c.authorization) return unauthorized("this route needs Authorization: Bearer <API key or token>");
  auto credential = bearer(*c.authorization);
  if (!credential) return unauthorized("the Authorization header must be: Bearer <API key or token>");

  if (auth::KeyRegistry::looks_like_key(*credential)) {
    if (!keys_on_) return unauthorized("API keys are not accepted here (AUTH_MODE)");
    auto key = keys_->find(*credential);
    if (!key) return unauthorized("unknown or revoked API key");
    if (key->type == auth::KeyType::kPublishable) {
      // A publishable key is public by design: what binds it is the page it is used from.
      if (!c.origin) return forbidden("a publishable key is honoured only from a web page of its origins", "origin");
      std::string o(*c.origin);
      std::transform(o.begin(), o.end(), o.begin(), [](unsigned char ch) { return std::tolower(ch); });
      if (!std::binary_search(key->policy.origins.begin(), key->policy.origins.end(), o))
        return forbidden("this publishable key may not be used from " + std::string(*c.origin), "origin");
    }
    auto p = std::make_shared<auth::Principal>();
    p->kind = auth::Principal::Kind::kKey;
    p->id = "key:" + key->id;
    p->limiter = &limiter_;
    if (key->policy.rate_per_minute) p->per_minute = auth::Quota{*key->policy.rate_per_minute, 60'000};
    if (key->policy.rate_per_day) p->per_day = auth::Quota{*key->policy.rate_per_day, 86'400'000};
    p->key = std::move(key);
    caller.id = p->id;
    caller.principal = std::move(p);
    return std::nullopt;
  }
  return authenticate_jwt(*credential, c.submit, caller);
}

bool Access::origin_allowed(std::string_view origin) const {
  if (any_origin_ || std::binary_search(cors_origins_.begin(), cors_origins_.end(), origin)) return true;
  return keys_on_ && keys_->origin_allowed(origin);
}

}  // namespace websmtp::service
