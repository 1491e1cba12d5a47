#pragma once
// Verifies OAuth2 access tokens sent as `Authorization: Bearer <jwt>` (api.md, "JWT bearer
// tokens"). Pure: no network (keys come from the configuration, never from the token's
// `jku`/`x5u`/`jwk`), no clock (the caller passes `now`), so every rule is tested directly.
//
// The accepted algorithm comes from the configured key, never from the token: HS256 for
// JWT_HS256_SECRET, RS256 or ES256 from the type of the key in JWT_PUBLIC_KEY_FILE, and for
// JWT_JWKS_FILE from each key (kty/crv, `alg` when present), the key being chosen by `kid`.
// So there is no algorithm option: api.md has none, and a key cannot disagree with itself.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "websmtp/common/error.hpp"

namespace websmtp::auth {

struct JwtOptions {
  // Exactly one of the three key sources.
  std::string hs256_secret;     // JWT_HS256_SECRET: the raw bytes are the key, at least 32 of them
  std::string public_key_file;  // JWT_PUBLIC_KEY_FILE: PEM public key, RSA >= 2048 bits or EC P-256
  std::string jwks_file;        // JWT_JWKS_FILE: a JWKS document; keys without `kid` are not used
  std::string issuer;           // JWT_ISSUER: when non-empty, `iss` must equal it
  std::string audience;         // JWT_AUDIENCE: when non-empty, `aud` (a string or an array) must hold it
  std::int64_t leeway_s = 60;   // clock skew allowed on exp, nbf and iat (0..3600; api.md fixes 60)
};

struct JwtClaims {
  std::string subject;              // `sub`: the caller
  std::vector<std::string> scopes;  // from `scope` (space-separated) and `scp` (array or string)
  std::int64_t expires_at = 0;      // `exp`, Unix seconds
  nlohmann::json raw;               // the whole payload, for claims this type does not name
};

class JwtVerifier {
 public:
  // Loads and checks the keys. A bad option or key file is an Error of kind kInvalid, code
  // `invalid_config`, whose `field` is the configuration key at fault (JWT_PUBLIC_KEY_FILE, ...).
  static Result<std::unique_ptr<JwtVerifier>> create(const JwtOptions& options);
  ~JwtVerifier();
  JwtVerifier(const JwtVerifier&) = delete;
  JwtVerifier& operator=(const JwtVerifier&) = delete;

  // A refused token is an Error of kind kUnauthorized, code `unauthorized`, with a message
  // saying why (never a secret). Thread-safe: may be called concurrently on one verifier.
  Result<JwtClaims> verify(std::string_view token, std::int64_t now_s) const;

  // "HS256", "RS256" or "ES256"; for a JWKS, the algorithms of its keys joined by ','.
  const std::string& algorithm() const;

  // Compact tokens longer than this are refused before any decoding.
  static constexpr std::size_t kMaxTokenBytes = 8192;

 private:
  struct Impl;
  explicit JwtVerifier(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;  // keeps OpenSSL types out of this header
};

}  // namespace websmtp::auth
